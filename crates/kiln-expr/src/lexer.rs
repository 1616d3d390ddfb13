//! Splits expression text into tokens, following GitHub's lexical rules:
//! numbers may carry a sign (there is no binary minus), a `.` is a property
//! dereference only after something that can be dereferenced, and anything
//! unrecognised is read up to the next boundary character and rejected whole.

use std::ops::Range;

use crate::coerce;
use crate::error::{ParseError, ParseErrorKind};

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    Star,
    Bang,
    Ne,
    Eq,
    Gt,
    Ge,
    Lt,
    Le,
    And,
    Or,
    Number(f64),
    Str(String),
    Ident,
    True,
    False,
    Null,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub kind: Tok,
    pub span: Range<usize>,
}

/// Tokenizes `src`. Byte spans index into `src`.
pub(crate) fn tokenize(src: &str) -> Result<Vec<Token>, ParseError> {
    if src.encode_utf16().count() > crate::MAX_LENGTH {
        return Err(ParseError::new(ParseErrorKind::TooLong, 0..src.len()));
    }
    let mut lexer = Lexer {
        src,
        pos: 0,
        tokens: Vec::new(),
    };
    lexer.run()?;
    Ok(lexer.tokens)
}

struct Lexer<'s> {
    src: &'s str,
    pos: usize,
    tokens: Vec<Token>,
}

impl Lexer<'_> {
    fn run(&mut self) -> Result<(), ParseError> {
        while let Some(c) = self.peek() {
            let start = self.pos;
            self.pos += c.len_utf8();
            let kind = match c {
                ' ' | '\t' | '\r' | '\n' => continue,
                '(' => Tok::LParen,
                ')' => Tok::RParen,
                '[' => Tok::LBracket,
                ']' => Tok::RBracket,
                ',' => Tok::Comma,
                '*' => Tok::Star,
                '.' if self.dot_is_dereference() => Tok::Dot,
                '.' | '-' | '+' | '0'..='9' => self.number(start)?,
                '!' => self.pair('=', Tok::Ne, Tok::Bang),
                '<' => self.pair('=', Tok::Le, Tok::Lt),
                '>' => self.pair('=', Tok::Ge, Tok::Gt),
                '=' if self.eat('=') => Tok::Eq,
                '&' if self.eat('&') => Tok::And,
                '|' if self.eat('|') => Tok::Or,
                '\'' => self.string(start)?,
                _ => self.word(start)?,
            };
            self.tokens.push(Token {
                kind,
                span: start..self.pos,
            });
        }
        Ok(())
    }

    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn eat(&mut self, expected: char) -> bool {
        if self.peek() == Some(expected) {
            self.pos += expected.len_utf8();
            true
        } else {
            false
        }
    }

    fn pair(&mut self, second: char, both: Tok, single: Tok) -> Tok {
        if self.eat(second) { both } else { single }
    }

    /// `.` dereferences only what came just before: a name, `]`, `)` or `*`.
    /// Elsewhere it starts a number such as `.5`.
    fn dot_is_dereference(&self) -> bool {
        matches!(
            self.tokens.last().map(|t| &t.kind),
            Some(Tok::Ident | Tok::RBracket | Tok::RParen | Tok::Star)
        )
    }

    fn skip_to_boundary(&mut self, allow_dot: bool) {
        while let Some(c) = self.peek() {
            if is_boundary(c) && !(allow_dot && c == '.') {
                break;
            }
            self.pos += c.len_utf8();
        }
    }

    fn number(&mut self, start: usize) -> Result<Tok, ParseError> {
        self.skip_to_boundary(true);
        let lexeme = &self.src[start..self.pos];
        let value = coerce::parse_number(lexeme);
        if value.is_nan() {
            return Err(self.invalid(start));
        }
        Ok(Tok::Number(value))
    }

    fn string(&mut self, start: usize) -> Result<Tok, ParseError> {
        let mut value = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(ParseError::new(
                    ParseErrorKind::UnterminatedString,
                    start..self.pos,
                ));
            };
            self.pos += c.len_utf8();
            if c == '\'' {
                // `''` is an escaped quote; a lone `'` ends the string.
                if !self.eat('\'') {
                    return Ok(Tok::Str(value));
                }
            }
            value.push(c);
        }
    }

    /// A name, a keyword, or (for anything else) an invalid token.
    fn word(&mut self, start: usize) -> Result<Tok, ParseError> {
        self.skip_to_boundary(false);
        let lexeme = &self.src[start..self.pos];
        if !is_identifier(lexeme) {
            return Err(self.invalid(start));
        }
        // After a dot every word is a property name: `foo.true`, `foo.null`.
        if matches!(self.tokens.last().map(|t| &t.kind), Some(Tok::Dot)) {
            return Ok(Tok::Ident);
        }
        Ok(match lexeme {
            "true" => Tok::True,
            "false" => Tok::False,
            "null" => Tok::Null,
            "NaN" => Tok::Number(f64::NAN),
            "Infinity" => Tok::Number(f64::INFINITY),
            _ => Tok::Ident,
        })
    }

    fn invalid(&self, start: usize) -> ParseError {
        ParseError::new(
            ParseErrorKind::InvalidToken(self.src[start..self.pos].to_owned()),
            start..self.pos,
        )
    }
}

fn is_boundary(c: char) -> bool {
    matches!(
        c,
        '(' | '[' | ')' | ']' | ',' | '.' | '!' | '>' | '<' | '=' | '&' | '|'
    ) || coerce::is_js_whitespace(c)
}

/// `[A-Za-z_][A-Za-z0-9_-]*`
fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<Tok> {
        tokenize(src)
            .expect("lexes")
            .into_iter()
            .map(|t| t.kind)
            .collect()
    }

    fn invalid(src: &str) -> String {
        match tokenize(src).expect_err("should fail").kind() {
            ParseErrorKind::InvalidToken(s) => s.clone(),
            other => panic!("unexpected error {other:?}"),
        }
    }

    #[test]
    fn operators_and_punctuation() {
        use Tok::*;
        assert_eq!(
            kinds("a.b[*] == !c && (d != 1) || e <= 2 >= 3 < 4 > 5, f"),
            vec![
                Ident,
                Dot,
                Ident,
                LBracket,
                Star,
                RBracket,
                Eq,
                Bang,
                Ident,
                And,
                LParen,
                Ident,
                Ne,
                Number(1.0),
                RParen,
                Or,
                Ident,
                Le,
                Number(2.0),
                Ge,
                Number(3.0),
                Lt,
                Number(4.0),
                Gt,
                Number(5.0),
                Comma,
                Ident
            ]
        );
    }

    #[test]
    fn numbers_carry_their_sign() {
        assert_eq!(kinds("-1"), vec![Tok::Number(-1.0)]);
        assert_eq!(kinds("+.5"), vec![Tok::Number(0.5)]);
        assert_eq!(kinds("0xff"), vec![Tok::Number(255.0)]);
        assert_eq!(kinds("1.2E+2"), vec![Tok::Number(120.0)]);
        assert_eq!(kinds("-Infinity"), vec![Tok::Number(f64::NEG_INFINITY)]);
        assert_eq!(invalid("-0xFF"), "-0xFF");
        assert_eq!(invalid("0x01p2"), "0x01p2");
        assert_eq!(invalid("1.2.3"), "1.2.3");
    }

    #[test]
    fn strings_unescape_doubled_quotes() {
        assert_eq!(kinds("'it''s'"), vec![Tok::Str("it's".into())]);
        assert_eq!(kinds("'a''''b'"), vec![Tok::Str("a''b".into())]);
        assert_eq!(kinds("'}}'"), vec![Tok::Str("}}".into())]);
        let err = tokenize("'foo").expect_err("unterminated");
        assert_eq!(err.kind(), &ParseErrorKind::UnterminatedString);
    }

    #[test]
    fn keywords_are_names_after_a_dot() {
        assert_eq!(kinds("foo.true"), vec![Tok::Ident, Tok::Dot, Tok::Ident]);
        assert_eq!(kinds("true"), vec![Tok::True]);
        assert_eq!(kinds("True"), vec![Tok::Ident]);
    }

    #[test]
    fn invalid_tokens_extend_to_a_boundary() {
        assert_eq!(invalid("1 =2 =3"), "=2");
        assert_eq!(invalid("1 & < 2"), "&");
        assert_eq!(invalid("foo.b@r"), "b@r");
        assert_eq!(invalid("github/workflow.md"), "github/workflow");
        assert_eq!(invalid("..github/workflow.md"), "..github/workflow.md");
        assert_eq!(invalid("😊 x"), "😊");
        let err = tokenize("1 @abc 2").expect_err("invalid");
        assert_eq!(err.span(), 2..6);
    }

    #[test]
    fn length_is_limited() {
        let long = "1".repeat(crate::MAX_LENGTH + 1);
        assert_eq!(
            tokenize(&long).expect_err("too long").kind(),
            &ParseErrorKind::TooLong
        );
    }
}
