//! Recursive-descent parser with GitHub's precedence (tightest first):
//! `( )` `[ ]` `.`, then `!`, then `< <= > >=`, then `== !=`, then `&&`, then `||`.
//!
//! Nesting is counted as GitHub counts it (each sub-expression, `!`, `.`/`[ ]`
//! step and `&&`/`||` chain adds a level) and rejected beyond [`MAX_DEPTH`],
//! which also bounds the recursion of this parser and of the evaluator.
//! Unknown contexts and functions and wrong argument counts are parse errors,
//! as in GitHub.

use std::collections::HashSet;
use std::ops::Range;

use crate::MAX_DEPTH;
use crate::ast::{Accessor, CompareOp, Expr, Function, LogicalOp, Node, NodeKind};
use crate::coerce;
use crate::error::{ParseError, ParseErrorKind};
use crate::lexer::{Tok, Token, tokenize};
use crate::value::Value;

/// What an expression may refer to. The default accepts any context name and
/// every function, including the status functions and `hashFiles`.
#[derive(Debug, Clone)]
pub struct ParseOptions {
    /// Context names the expression may use (compared ignoring case), or
    /// `None` to accept any name (unknown ones evaluate to `null`).
    pub contexts: Option<Vec<String>>,
    /// Allow `success()`, `always()`, `cancelled()` and `failure()`.
    pub status_functions: bool,
    /// Allow `hashFiles(…)`.
    pub hash_files: bool,
}

impl Default for ParseOptions {
    fn default() -> Self {
        Self {
            contexts: None,
            status_functions: true,
            hash_files: true,
        }
    }
}

impl ParseOptions {
    /// Options allowing exactly the given context names (and all functions).
    pub fn with_contexts<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            contexts: Some(names.into_iter().map(Into::into).collect()),
            ..Self::default()
        }
    }
}

/// Parses an expression (the text inside `${{ }}`), accepting any context name.
pub fn parse(src: &str) -> Result<Expr, ParseError> {
    parse_with(src, &ParseOptions::default())
}

/// Parses an expression, checking context and function names against `options`.
pub fn parse_with(src: &str, options: &ParseOptions) -> Result<Expr, ParseError> {
    let tokens = tokenize(src)?;
    let contexts = options
        .contexts
        .as_ref()
        .map(|names| names.iter().map(|n| coerce::fold(n)).collect());
    let mut parser = Parser {
        src,
        tokens,
        pos: 0,
        depth: 0,
        options,
        contexts,
    };
    let root = parser.parse_root()?;
    Ok(Expr {
        source: src.to_owned(),
        root,
    })
}

struct Parser<'a> {
    src: &'a str,
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
    options: &'a ParseOptions,
    contexts: Option<HashSet<String>>,
}

type PResult<T> = Result<T, ParseError>;

impl Parser<'_> {
    fn parse_root(&mut self) -> PResult<Option<Node>> {
        if self.at_end() {
            return Ok(None);
        }
        let node = self.expression()?;
        if !self.at_end() {
            return Err(self.unexpected());
        }
        Ok(Some(node))
    }

    fn expression(&mut self) -> PResult<Node> {
        self.nested(Self::logical_or)
    }

    fn logical_or(&mut self) -> PResult<Node> {
        self.logical(LogicalOp::Or, &Tok::Or, Self::logical_and)
    }

    fn logical_and(&mut self) -> PResult<Node> {
        self.logical(LogicalOp::And, &Tok::And, Self::equality)
    }

    /// A flat `a op b op c …` chain; the chain itself is one nesting level.
    fn logical(
        &mut self,
        op: LogicalOp,
        tok: &Tok,
        operand: fn(&mut Self) -> PResult<Node>,
    ) -> PResult<Node> {
        let first = operand(self)?;
        if !self.check(tok) {
            return Ok(first);
        }
        self.nested(|p| {
            let mut operands = vec![first];
            while p.eat(tok) {
                operands.push(operand(p)?);
            }
            Ok(Node {
                span: span_of(&operands),
                kind: NodeKind::Logical { op, operands },
            })
        })
    }

    fn equality(&mut self) -> PResult<Node> {
        self.compare_chain(Self::comparison, |t| match t {
            Tok::Eq => Some(CompareOp::Eq),
            Tok::Ne => Some(CompareOp::Ne),
            _ => None,
        })
    }

    fn comparison(&mut self) -> PResult<Node> {
        self.compare_chain(Self::unary, |t| match t {
            Tok::Lt => Some(CompareOp::Lt),
            Tok::Le => Some(CompareOp::Le),
            Tok::Gt => Some(CompareOp::Gt),
            Tok::Ge => Some(CompareOp::Ge),
            _ => None,
        })
    }

    fn compare_chain(
        &mut self,
        operand: fn(&mut Self) -> PResult<Node>,
        op_of: fn(&Tok) -> Option<CompareOp>,
    ) -> PResult<Node> {
        let first = operand(self)?;
        let mut rest = Vec::new();
        while let Some(op) = self.peek().and_then(|t| op_of(&t.kind)) {
            self.pos += 1;
            rest.push((op, operand(self)?));
        }
        if rest.is_empty() {
            return Ok(first);
        }
        let end = rest.last().map_or(first.span.end, |(_, n)| n.span.end);
        Ok(Node {
            span: first.span.start..end,
            kind: NodeKind::Compare {
                first: Box::new(first),
                rest,
            },
        })
    }

    fn unary(&mut self) -> PResult<Node> {
        let Some(bang) = self.peek().filter(|t| t.kind == Tok::Bang).cloned() else {
            return self.postfix();
        };
        self.pos += 1;
        self.nested(|p| {
            let inner = p.unary()?;
            Ok(Node {
                span: bang.span.start..inner.span.end,
                kind: NodeKind::Not(Box::new(inner)),
            })
        })
    }

    /// Property and index steps; only after a group, a call or a context.
    fn postfix(&mut self) -> PResult<Node> {
        let (node, indexable) = self.call_or_primary()?;
        if !indexable {
            return Ok(node);
        }
        // Each step is a nesting level until the whole chain is done.
        let outer_depth = self.depth;
        let result = self.access_steps(node);
        self.depth = outer_depth;
        result
    }

    fn access_steps(&mut self, mut node: Node) -> PResult<Node> {
        loop {
            let accessor = if self.eat(&Tok::LBracket) {
                let accessor = if self.eat(&Tok::Star) {
                    Accessor::Star
                } else {
                    Accessor::Index(Box::new(self.expression()?))
                };
                if !self.eat(&Tok::RBracket) {
                    return Err(self.unexpected());
                }
                self.enter()?;
                accessor
            } else if self.eat(&Tok::Dot) {
                self.enter()?;
                let accessor = match self.peek().map(|t| &t.kind) {
                    Some(Tok::Ident) => Accessor::Property(self.lexeme(self.pos).to_owned()),
                    Some(Tok::Star) => Accessor::Star,
                    _ => return Err(self.unexpected()),
                };
                self.pos += 1;
                accessor
            } else {
                return Ok(node);
            };
            node = Node {
                span: node.span.start..self.prev_end(),
                kind: NodeKind::Access {
                    target: Box::new(node),
                    accessor,
                },
            };
        }
    }

    /// Returns the node and whether `.`/`[ ]` may follow it.
    fn call_or_primary(&mut self) -> PResult<(Node, bool)> {
        let Some(tok) = self.peek().cloned() else {
            return Err(self.unexpected_end());
        };
        self.pos += 1;
        let value = match &tok.kind {
            Tok::True => Some(Value::Bool(true)),
            Tok::False => Some(Value::Bool(false)),
            Tok::Null => Some(Value::Null),
            Tok::Number(n) => Some(Value::Number(*n)),
            Tok::Str(s) => Some(Value::String(s.clone())),
            _ => None,
        };
        if let Some(value) = value {
            let node = Node {
                kind: NodeKind::Literal(value),
                span: tok.span,
            };
            return Ok((node, false));
        }
        match &tok.kind {
            Tok::LParen => {
                let inner = self.expression()?;
                if self.at_end() {
                    return Err(self.unexpected_end());
                }
                if !self.eat(&Tok::RParen) {
                    return Err(self.unexpected());
                }
                // Groups are transparent; the span covers the parentheses.
                Ok((
                    Node {
                        span: tok.span.start..self.prev_end(),
                        kind: inner.kind,
                    },
                    true,
                ))
            }
            Tok::Ident if self.check(&Tok::LParen) => {
                self.pos += 1;
                self.call(tok.span).map(|n| (n, true))
            }
            Tok::Ident => {
                let name = &self.src[tok.span.clone()];
                let known = |allowed: &HashSet<String>| allowed.contains(&coerce::fold(name));
                if self
                    .contexts
                    .as_ref()
                    .is_some_and(|allowed| !known(allowed))
                {
                    return Err(ParseError::new(
                        ParseErrorKind::UnrecognizedNamedValue(name.to_owned()),
                        tok.span,
                    ));
                }
                Ok((
                    Node {
                        kind: NodeKind::Context(name.to_owned()),
                        span: tok.span,
                    },
                    true,
                ))
            }
            _ => {
                self.pos -= 1;
                Err(self.unexpected())
            }
        }
    }

    fn call(&mut self, name_span: Range<usize>) -> PResult<Node> {
        let mut args = Vec::new();
        while !self.eat(&Tok::RParen) {
            args.push(self.expression()?);
            if !self.check(&Tok::RParen) && !self.eat(&Tok::Comma) {
                return Err(self.unexpected());
            }
        }
        let name = &self.src[name_span.clone()];
        let function = Function::from_name(name)
            .filter(|f| self.function_allowed(*f))
            .ok_or_else(|| {
                ParseError::new(
                    ParseErrorKind::UnrecognizedFunction(name.to_owned()),
                    name_span.clone(),
                )
            })?;
        let (min, max) = function.arity();
        let error = if args.len() < min {
            Some(ParseErrorKind::TooFewParameters(name.to_owned()))
        } else if args.len() > max {
            Some(ParseErrorKind::TooManyParameters(name.to_owned()))
        } else if function == Function::Case && args.len() % 2 == 0 {
            Some(ParseErrorKind::EvenParameters(name.to_owned()))
        } else {
            None
        };
        if let Some(kind) = error {
            return Err(ParseError::new(kind, name_span));
        }
        Ok(Node {
            span: name_span.start..self.prev_end(),
            kind: NodeKind::Call { function, args },
        })
    }

    fn function_allowed(&self, f: Function) -> bool {
        match f {
            Function::HashFiles => self.options.hash_files,
            f if f.is_status() => self.options.status_functions,
            _ => true,
        }
    }

    /// Runs `f` one nesting level deeper.
    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> PResult<T>) -> PResult<T> {
        self.enter()?;
        let result = f(self);
        self.depth -= 1;
        result
    }

    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let span = self
                .peek()
                .map_or(self.src.len()..self.src.len(), |t| t.span.clone());
            return Err(ParseError::new(ParseErrorKind::TooDeep, span));
        }
        Ok(())
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn at_end(&self) -> bool {
        self.pos >= self.tokens.len()
    }

    fn check(&self, kind: &Tok) -> bool {
        self.peek().is_some_and(|t| &t.kind == kind)
    }

    fn eat(&mut self, kind: &Tok) -> bool {
        let hit = self.check(kind);
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn lexeme(&self, index: usize) -> &str {
        self.tokens
            .get(index)
            .map_or("", |t| &self.src[t.span.clone()])
    }

    fn prev_end(&self) -> usize {
        self.pos
            .checked_sub(1)
            .and_then(|i| self.tokens.get(i))
            .map_or(0, |t| t.span.end)
    }

    /// The next token is not allowed here.
    fn unexpected(&self) -> ParseError {
        match self.peek() {
            Some(t) => ParseError::new(
                ParseErrorKind::UnexpectedSymbol(self.src[t.span.clone()].to_owned()),
                t.span.clone(),
            ),
            None => self.unexpected_end(),
        }
    }

    /// The text ended too early; points at the last token.
    fn unexpected_end(&self) -> ParseError {
        let last = self.tokens.len().checked_sub(1);
        let span = last
            .and_then(|i| self.tokens.get(i))
            .map_or(0..0, |t| t.span.clone());
        ParseError::new(
            ParseErrorKind::UnexpectedEnd(last.map_or("", |i| self.lexeme(i)).to_owned()),
            span,
        )
    }
}

fn span_of(nodes: &[Node]) -> Range<usize> {
    let start = nodes.first().map_or(0, |n| n.span.start);
    let end = nodes.last().map_or(0, |n| n.span.end);
    start..end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(src: &str) -> Node {
        parse(src).expect("parses").root.expect("non-empty")
    }

    fn error(src: &str) -> ParseErrorKind {
        parse_with(src, &ParseOptions::with_contexts(["foo"]))
            .expect_err("should fail")
            .kind()
            .clone()
    }

    /// A compact rendering of the tree, for precedence checks.
    fn show(node: &Node) -> String {
        match &node.kind {
            NodeKind::Literal(v) => v.to_display_string(),
            NodeKind::Context(name) => name.clone(),
            NodeKind::Access { target, accessor } => match accessor {
                Accessor::Property(p) => format!("{}.{p}", show(target)),
                Accessor::Index(i) => format!("{}[{}]", show(target), show(i)),
                Accessor::Star => format!("{}.*", show(target)),
            },
            NodeKind::Not(inner) => format!("!{}", show(inner)),
            NodeKind::Compare { first, rest } => {
                let mut out = format!("({}", show(first));
                for (op, n) in rest {
                    out.push_str(&format!(" {op:?} {}", show(n)));
                }
                out + ")"
            }
            NodeKind::Logical { op, operands } => {
                let parts: Vec<_> = operands.iter().map(show).collect();
                format!("{op:?}[{}]", parts.join(", "))
            }
            NodeKind::Call { function, args } => {
                let parts: Vec<_> = args.iter().map(show).collect();
                format!("{}({})", function.name(), parts.join(", "))
            }
        }
    }

    #[test]
    fn precedence() {
        assert_eq!(show(&tree("!2 < 3")), "(!2 Lt 3)");
        assert_eq!(show(&tree("!(2 < 3)")), "!(2 Lt 3)");
        assert_eq!(show(&tree("1 < 2 == 3 >= 4")), "((1 Lt 2) Eq (3 Ge 4))");
        assert_eq!(show(&tree("a || b && c || d")), "Or[a, And[b, c], d]");
        assert_eq!(show(&tree("!a.b[c.d].*")), "!a.b[c.d].*");
        assert_eq!(show(&tree("(a).b")), "a.b");
        assert_eq!(
            show(&tree("FORMAT('{0}', join(fromJson('[1]'), '-'))")),
            "format({0}, join(fromJSON([1]), -))"
        );
    }

    #[test]
    fn spans_are_byte_ranges() {
        let node = tree("  foo.bar[0] ");
        assert_eq!(node.span, 2..12);
        let NodeKind::Access { target, .. } = &node.kind else {
            panic!("expected an index step");
        };
        assert_eq!(target.span, 2..9);
        assert_eq!(tree("'é' == x").span, 0..9);
    }

    #[test]
    fn empty_expression_has_no_root() {
        assert!(parse("").expect("parses").root().is_none());
        assert!(parse(" \n ").expect("parses").root().is_none());
    }

    #[test]
    fn syntax_errors() {
        use ParseErrorKind::*;
        assert_eq!(error("1 <"), UnexpectedEnd("<".into()));
        assert_eq!(error("1 2"), UnexpectedSymbol("2".into()));
        assert_eq!(error("'a'[0]"), UnexpectedSymbol("[".into()));
        assert_eq!(error("foo.1"), UnexpectedSymbol("1".into()));
        assert_eq!(error("foo[1"), UnexpectedEnd("1".into()));
        assert_eq!(error("(1"), UnexpectedEnd("1".into()));
        assert_eq!(error("bar"), UnrecognizedNamedValue("bar".into()));
        assert_eq!(
            error("FOO.x && nope()"),
            UnrecognizedFunction("nope".into())
        );
        assert_eq!(error("join()"), TooFewParameters("join".into()));
        assert_eq!(
            error("contains(1, 2, 3)"),
            TooManyParameters("contains".into())
        );
        assert_eq!(
            error("case(true, 1, false, 2)"),
            EvenParameters("case".into())
        );
        assert_eq!(error("success(1)"), TooManyParameters("success".into()));
    }

    #[test]
    fn special_functions_can_be_disallowed() {
        let options = ParseOptions {
            status_functions: false,
            hash_files: false,
            ..ParseOptions::default()
        };
        for src in ["always()", "hashFiles('*.lock')"] {
            let err = parse_with(src, &options).expect_err("disallowed");
            assert!(matches!(
                err.kind(),
                ParseErrorKind::UnrecognizedFunction(_)
            ));
        }
        assert!(parse_with("contains('a', 'b')", &options).is_ok());
    }

    #[test]
    fn depth_is_limited_like_github() {
        let nots = |n: usize| format!("{}false", "!".repeat(n));
        assert!(parse(&nots(MAX_DEPTH - 1)).is_ok());
        assert_eq!(
            parse(&nots(MAX_DEPTH)).expect_err("too deep").kind(),
            &ParseErrorKind::TooDeep
        );
        let props = |n: usize| format!("a{}", ".b".repeat(n));
        assert!(parse(&props(MAX_DEPTH - 1)).is_ok());
        assert!(parse(&props(MAX_DEPTH)).is_err());
        // Deep nesting is rejected without exhausting the stack.
        let parens = format!("{}1{}", "(".repeat(5000), ")".repeat(5000));
        assert_eq!(
            parse(&parens).expect_err("too deep").kind(),
            &ParseErrorKind::TooDeep
        );
        let calls = format!("{}1{}", "toJSON(".repeat(5000), ")".repeat(5000));
        assert!(parse(&calls).is_err());
    }

    #[test]
    fn long_flat_chains_are_not_nesting() {
        let chain = vec!["1"; 4000].join(" == ");
        assert!(parse(&chain).is_ok());
        let chain = vec!["a"; 4000].join(" && ");
        assert!(parse(&chain).is_ok());
    }
}
