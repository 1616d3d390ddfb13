//! One module per subcommand.

pub mod expr;
pub mod run;
pub mod validate;
