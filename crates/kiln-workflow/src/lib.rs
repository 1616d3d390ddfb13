//! The GitHub Actions workflow model: parse a workflow or action file into
//! typed structures that keep source positions, with every problem of the
//! file reported at once as a [`Diagnostic`]. Synchronous and pure.

pub mod diagnostic;
pub mod model;
pub mod span;
pub mod yaml;

pub use diagnostic::{Diagnostic, Severity};
pub use model::*;
pub use span::{Pos, Span, Spanned};
