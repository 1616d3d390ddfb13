//! One module per subcommand.

pub mod expr;
pub mod image;
pub mod run;
pub mod validate;
