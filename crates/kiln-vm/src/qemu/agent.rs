//! Getting the one agent connection of a VM.
//!
//! QEMU listens on the agent socket (`server=on,wait=off`) from its start,
//! long before the guest's agent runs. The host connects at once and sends
//! `hello` on that connection: QEMU holds the bytes until the guest opens the
//! port (virtio-serial delivers nothing to a closed multiport port), so the
//! hello is answered as soon as the agent is up. If the connection breaks
//! (the agent hung up) or stays silent for a whole attempt, the host
//! reconnects and sends a fresh hello; attempts grow longer so a slow boot
//! on a loaded host is not cut short again and again. Everything is bounded
//! by the boot deadline, and QEMU exiting ends the wait at once.

use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use kiln_protocol::{AgentClient, AgentInfo, ClientConfig, ClientError};
use tokio::net::UnixStream;
use tokio::time::Instant;

use super::process::Process;

/// The first attempt's length; each next attempt is twice as long.
const FIRST_ATTEMPT: Duration = Duration::from_secs(5);
/// Pause before reconnecting after a refused connect or a hang-up.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

#[derive(Debug)]
pub(crate) enum BootError {
    /// QEMU ended before the agent answered.
    QemuExited(ExitStatus),
    /// No answer by the deadline; `last` says what the last attempt saw.
    Timeout { after: Duration, last: String },
    /// The agent answered, but refused us (token, protocol version).
    Agent(ClientError),
}

impl std::fmt::Display for BootError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BootError::QemuExited(status) => write!(f, "qemu exited during boot ({status})"),
            BootError::Timeout { after, last } => {
                write!(
                    f,
                    "the guest agent did not answer within {after:?} ({last})"
                )
            }
            BootError::Agent(e) => write!(f, "the guest agent refused the connection: {e}"),
        }
    }
}

/// Connects to the agent behind `socket` and completes the handshake.
pub(crate) async fn connect(
    socket: &Path,
    token: &str,
    config: &ClientConfig,
    boot_timeout: Duration,
    qemu: &Process,
) -> Result<(AgentClient, AgentInfo), BootError> {
    let started = Instant::now();
    let deadline = started + boot_timeout;
    let mut attempt = FIRST_ATTEMPT;
    let mut last = String::from("not connected yet");
    let outcome = async {
        loop {
            if Instant::now() >= deadline {
                return Err(BootError::Timeout {
                    after: boot_timeout,
                    last: last.clone(),
                });
            }
            let stream = match UnixStream::connect(socket).await {
                Ok(stream) => stream,
                Err(e) => {
                    last = format!("cannot connect to {}: {e}", socket.display());
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
            };
            let client = AgentClient::new(stream, config.clone());
            let until = deadline.min(Instant::now() + attempt);
            match tokio::time::timeout_at(until, client.hello(token)).await {
                Ok(Ok(info)) => return Ok((client, info)),
                Ok(Err(e @ (ClientError::Rejected(_) | ClientError::VersionMismatch { .. }))) => {
                    return Err(BootError::Agent(e));
                }
                Ok(Err(e)) => {
                    last = format!("last attempt: {e}");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(_elapsed) => {
                    last = "connected, but no answer to hello".to_owned();
                    attempt *= 2;
                }
            }
            // Dropping the client closes this connection before the next.
        }
    };
    tokio::select! {
        result = outcome => {
            if let Ok((_, info)) = &result {
                tracing::debug!(
                    took = ?started.elapsed(),
                    agent = %info.agent_version,
                    "agent answered hello"
                );
            }
            result
        }
        status = qemu.exit() => Err(BootError::QemuExited(status)),
    }
}

/// A fresh random token for one VM, hex-encoded: the agent answers only a
/// hello that carries it, so a host can never drive a VM it did not start
/// (a stale socket, a mixed-up state directory).
pub(crate) fn new_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_fresh_hex() -> std::io::Result<()> {
        let (a, b) = (new_token()?, new_token()?);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        Ok(())
    }
}
