//! One module per subcommand.

pub mod bench;
pub mod expr;
pub mod image;
pub mod logs;
pub mod run;
pub mod runs;
pub mod serve;
pub mod validate;
