//! The GitHub Actions workflow model: parse a workflow or action file into
//! typed structures that keep source positions, with every problem of the
//! file reported at once as a [`Diagnostic`]. Synchronous and pure.

mod check;
pub mod diagnostic;
pub mod filter;
mod locate;
pub mod model;
mod parse;
pub mod span;
mod suggest;
pub mod trigger;
pub mod yaml;

pub use diagnostic::{Diagnostic, Severity};
pub use model::*;
pub use parse::{parse_action, parse_workflow};
pub use span::{Pos, Span, Spanned};
