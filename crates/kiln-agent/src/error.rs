//! Errors that stop the agent (as opposed to errors of one request, which
//! become `Reply::Error` and are never fatal).

use std::io;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("virtio port {name:?} did not appear within {waited:?}")]
    PortNotFound { name: String, waited: Duration },
    #[error("cannot scan {path} for virtio ports")]
    PortScan {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot listen on {path}")]
    Listen {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot listen on vsock port {port}")]
    VsockListen {
        port: u32,
        #[source]
        source: io::Error,
    },
    #[error("cannot accept a connection")]
    Accept(#[source] io::Error),
    #[error("cannot use stdio as the channel")]
    Stdio(#[source] io::Error),
}
