//! What can go wrong talking to an agent.

use std::time::Duration;

use crate::{ProtocolError, Reply};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("agent did not answer {what} within {after:?}")]
    Timeout { what: &'static str, after: Duration },
    #[error(
        "protocol version mismatch: host speaks {host}, agent speaks {agent} (is the guest image stale?)"
    )]
    VersionMismatch { host: u32, agent: u32 },
    #[error("agent is not reading: a request could not be queued within {0:?}")]
    SendTimeout(Duration),
    #[error("a handshake is already in progress on this connection")]
    HandshakeInProgress,
    #[error("agent rejected the handshake: {0}")]
    Rejected(String),
    #[error("agent failed {what}: {message}")]
    Remote { what: &'static str, message: String },
    #[error("agent answered {what} with {reply}")]
    UnexpectedReply { what: &'static str, reply: String },
    #[error("agent connection lost")]
    ConnectionLost(#[source] LostReason),
    #[error("cannot encode request")]
    Encode(#[source] ProtocolError),
}

impl ClientError {
    pub(crate) fn unexpected(what: &'static str, reply: &Reply) -> ClientError {
        ClientError::UnexpectedReply {
            what,
            reply: format!("{reply:?}"),
        }
    }

    pub(crate) fn lost(reason: LostReason) -> ClientError {
        match reason {
            LostReason::VersionMismatch { host, agent } => {
                ClientError::VersionMismatch { host, agent }
            }
            reason => ClientError::ConnectionLost(reason),
        }
    }
}

/// Why a connection ended. Shared by every call that was waiting on it, hence
/// `Clone` and rendered messages instead of source errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LostReason {
    #[error("the agent closed the connection")]
    Closed,
    #[error("the agent sent nothing for {0:?}")]
    Unresponsive(Duration),
    #[error("the agent reported a protocol error: {0}")]
    AgentProtocolError(String),
    #[error("the agent sent a bad frame: {0}")]
    Malformed(String),
    #[error("protocol version mismatch: host speaks {host}, agent speaks {agent}")]
    VersionMismatch { host: u32, agent: u32 },
    #[error("channel i/o failed: {0}")]
    Io(String),
}

/// An error and its sources on one line, for [`LostReason`]'s strings.
pub(crate) fn render_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}
