//! Exit codes shared by every subcommand.

use std::process::ExitCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Everything succeeded.
    Success = 0,
    /// The thing checked or run failed (a job failed, a file has errors).
    Failure = 1,
    /// Bad input or an internal error.
    BadInput = 2,
}

impl From<Code> for ExitCode {
    fn from(code: Code) -> ExitCode {
        ExitCode::from(code as u8)
    }
}
