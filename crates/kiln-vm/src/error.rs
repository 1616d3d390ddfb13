//! The one error type of the VM subsystem.

use std::io;

/// Everything that can go wrong while allocating or driving a VM.
///
/// Messages are lowercase and never repeat their source: the caller prints the
/// chain once.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VmError {
    /// The backend could not produce a machine.
    #[error("vm allocation failed: {reason}")]
    Allocation {
        reason: String,
        #[source]
        source: Option<io::Error>,
    },
    /// The command could not be started at all (not found, not executable, ...).
    #[error("failed to start `{program}`")]
    Spawn {
        program: String,
        #[source]
        source: io::Error,
    },
    /// The command was started but the backend lost track of it.
    #[error("exec failed: {reason}")]
    Exec {
        reason: String,
        #[source]
        source: Option<io::Error>,
    },
    /// The request itself is malformed (empty argv, ...).
    #[error("invalid exec request: {0}")]
    InvalidRequest(String),
    /// A guest path is not absolute or contains `..`, NUL, ...
    #[error("invalid guest path `{path}`: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    /// The guest path does not exist.
    #[error("not found in vm: {path}")]
    NotFound { path: String },
    /// A file or archive operation failed.
    #[error("{op} `{path}` failed")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
    /// The machine is gone (released, crashed, or its agent disconnected).
    #[error("vm {0} is no longer available")]
    Released(String),
}

impl VmError {
    /// An [`VmError::Io`] that maps "no such file" to [`VmError::NotFound`],
    /// so callers can tell a missing path from a broken machine.
    pub(crate) fn io(op: &'static str, path: &str, source: io::Error) -> Self {
        if source.kind() == io::ErrorKind::NotFound {
            VmError::NotFound {
                path: path.to_owned(),
            }
        } else {
            VmError::Io {
                op,
                path: path.to_owned(),
                source,
            }
        }
    }
}

/// An error and its sources on one line, for log fields.
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}
