//! Error types. Parse errors carry a byte span so callers can point at
//! `file:line:col`; evaluation errors carry no position (GitHub reports them
//! against the whole expression).

use std::ops::Range;

use crate::{MAX_DEPTH, MAX_LENGTH};

/// Which stage rejected an expression (GitHub's test data tells lexing and
/// parsing errors apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The text could not be split into tokens.
    Lexing,
    /// The tokens do not form a valid expression.
    Parsing,
}

/// A syntax error, with the byte span of the offending token in the source.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{kind}")]
pub struct ParseError {
    kind: ParseErrorKind,
    span: Range<usize>,
}

impl ParseError {
    pub(crate) fn new(kind: ParseErrorKind, span: Range<usize>) -> Self {
        Self { kind, span }
    }

    /// What went wrong.
    pub fn kind(&self) -> &ParseErrorKind {
        &self.kind
    }

    /// Byte offset of the offending token in the parsed text.
    pub fn offset(&self) -> usize {
        self.span.start
    }

    /// Byte span of the offending token in the parsed text.
    pub fn span(&self) -> Range<usize> {
        self.span.clone()
    }

    /// Whether the lexer or the parser rejected the text.
    pub fn phase(&self) -> Phase {
        match self.kind {
            ParseErrorKind::InvalidToken(_)
            | ParseErrorKind::UnterminatedString
            | ParseErrorKind::TooLong => Phase::Lexing,
            _ => Phase::Parsing,
        }
    }

    /// Moves the span, for expressions embedded in a larger text.
    pub(crate) fn shifted(mut self, by: usize) -> Self {
        self.span = self.span.start + by..self.span.end + by;
        self
    }
}

/// The kinds of syntax error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// Text that is not a token (`=`, `&`, `0xZZ`, `b@r`, …).
    #[error("unexpected symbol '{0}'")]
    InvalidToken(String),
    /// A `'` string without its closing quote.
    #[error("unterminated string literal")]
    UnterminatedString,
    /// The expression is longer than GitHub accepts.
    #[error("exceeded max expression length {MAX_LENGTH}")]
    TooLong,
    /// A valid token in a place where it is not allowed.
    #[error("unexpected symbol '{0}'")]
    UnexpectedSymbol(String),
    /// The expression stops after the given token.
    #[error("unexpected end of expression after '{0}'")]
    UnexpectedEnd(String),
    /// A context name that is not available here.
    #[error("unrecognized named-value '{0}'")]
    UnrecognizedNamedValue(String),
    /// A function name that does not exist or is not available here.
    #[error("unrecognized function '{0}'")]
    UnrecognizedFunction(String),
    /// Fewer arguments than the function needs.
    #[error("too few parameters supplied to '{0}'")]
    TooFewParameters(String),
    /// More arguments than the function takes.
    #[error("too many parameters supplied to '{0}'")]
    TooManyParameters(String),
    /// `case` takes predicate/value pairs plus a default.
    #[error("even number of parameters supplied to '{0}', which requires an odd number")]
    EvenParameters(String),
    /// Nesting deeper than GitHub accepts.
    #[error("exceeded max expression depth {MAX_DEPTH}")]
    TooDeep,
    /// `${{ }}` with nothing inside.
    #[error("an expression was expected")]
    EmptyExpression,
    /// `${{` without a closing `}}`.
    #[error("the expression is not closed: '${{{{' has no matching '}}}}'")]
    UnclosedExpression,
}

/// A boxed error from the host (for example `hashFiles` I/O failures).
pub type HostError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error while evaluating a parsed expression.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// Unbalanced or malformed braces in a `format` string.
    #[error("the following format string is invalid: {0}")]
    InvalidFormat(String),
    /// A `{N}` placeholder beyond the supplied arguments.
    #[error("the following format string references more arguments than were supplied: {0}")]
    FormatArgumentCount(String),
    /// `{0:spec}` format specifiers, which only apply to dates.
    #[error("the format specifiers '{specifiers}' are not valid for objects of type '{kind}'")]
    FormatSpecifiers {
        /// The text after the colon.
        specifiers: String,
        /// The kind of the argument.
        kind: &'static str,
    },
    /// `fromJSON` got an empty or blank string.
    #[error("error parsing JSON in fromJSON: empty input")]
    FromJsonEmpty,
    /// `fromJSON` got text that is not JSON.
    #[error("error parsing JSON in fromJSON")]
    FromJson(#[source] serde_json::Error),
    /// A `case` predicate that is not a boolean.
    #[error("case predicate must evaluate to a boolean value")]
    CasePredicate,
    /// The evaluation held more than GitHub's 1 MiB budget of values.
    #[error("the maximum allowed memory size was exceeded")]
    MemoryExceeded,
    /// `hashFiles` was called but no host provides it.
    #[error("hashFiles is not available in this context")]
    HashFilesUnavailable,
    /// The host's `hashFiles` failed.
    #[error("hashFiles failed")]
    HashFiles(#[source] HostError),
}

/// Any error from parsing or evaluating.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The text is not a valid expression or template.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The expression failed while evaluating.
    #[error(transparent)]
    Eval(#[from] EvalError),
}
