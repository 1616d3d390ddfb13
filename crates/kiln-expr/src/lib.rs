//! GitHub Actions expressions (`${{ … }}`): lexer, parser and evaluator with
//! GitHub's exact semantics — loose equality with JavaScript-like coercion,
//! case-insensitive strings and property names, `.*` object filters, `&&`/`||`
//! returning operand values, and GitHub's number formatting.
//!
//! The crate is synchronous and pure: run-dependent functions (`success()` &
//! co., `hashFiles`) are answered by a [`Host`] the caller supplies.
//!
//! ```
//! use kiln_expr::{Contexts, EvalContext, Value, evaluate, parse};
//!
//! let mut contexts = Contexts::new();
//! contexts.insert("github", Value::from(serde_json::json!({"ref": "refs/heads/main"})));
//! let expr = parse("startsWith(github.REF, 'refs/heads/') && 'branch'")?;
//! let value = evaluate(&expr, &EvalContext::new(&contexts))?;
//! assert_eq!(value, Value::from("branch"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Module map: `lexer` → `parser` → [`ast`] → `eval` (over `val`, `functions`,
//! `json`, `memory`); `coerce` for scalar conversions; `template` and
//! `condition` for `${{ }}` text and `if:` values.

pub mod ast;
mod coerce;
mod condition;
mod context;
mod error;
mod eval;
mod functions;
mod json;
mod lexer;
mod memory;
mod parser;
mod template;
mod val;
mod value;

pub use ast::{Expr, Function};
pub use condition::{evaluate_condition, parse_condition};
pub use context::{Contexts, EvalContext, Host, Status};
pub use error::{Error, EvalError, HostError, ParseError, ParseErrorKind, Phase};
pub use eval::evaluate;
pub use parser::{ParseOptions, parse, parse_with};
pub use template::{
    TemplatePart, evaluate_template, find_expressions, find_expressions_with, interpolate,
};
pub use value::{Object, Value};

/// Deepest nesting GitHub accepts in one expression.
pub const MAX_DEPTH: usize = 50;

/// Longest expression GitHub accepts, in UTF-16 code units.
pub const MAX_LENGTH: usize = 21_000;

/// Memory budget of one evaluation, in bytes (GitHub's 1 MiB).
pub const MAX_MEMORY: usize = 1024 * 1024;
