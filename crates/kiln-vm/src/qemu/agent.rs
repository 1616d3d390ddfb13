//! Getting the one agent connection of a VM.
//!
//! QEMU listens on the agent socket (`server=on,wait=off`) from its start,
//! long before the guest's agent runs. The host connects at once and sends
//! `hello`; QEMU holds the bytes until the guest opens the port, so normally
//! the hello is answered as soon as the agent is up, however slow the boot.
//!
//! Not always: now and then (about 1 boot in 10 with 5 TCG guests on 2
//! cores, also with `wait=on`) the guest misses QEMU's "host connected"
//! notice. The agent then reads the hello but cannot answer, until the host
//! reconnects, which makes QEMU tell the guest again. So a hello without an
//! answer is re-sent on a *fresh* connection. When to give up on an attempt
//! comes from the console: /init's last line ([`INIT_PREFIX`]) comes just
//! before the agent starts, so an attempt waits [`AFTER_INIT`] past it
//! (doubling with each retry). A reconnect while the guest still boots
//! would only cost time. Without any /init line (another image) an attempt
//! lasts [`WITHOUT_INIT`].
//!
//! A retry may reach an agent that did get the earlier hello: it starts its
//! session over (kiln-agent treats a second hello so), and the handshake
//! counts only once a ping sent after `HelloOk` came back, so a late answer
//! to an earlier attempt is never taken for this one. Everything is bounded
//! by the boot deadline, and QEMU exiting ends the wait at once.
//!
//! With the vsock transport ([`Channel::Vsock`]) a connection is made
//! through the VM's vhost-user daemon (see the `vsock` module), only once
//! /init has printed its first line (earlier ones could wedge the daemon):
//! it fails while the agent does not listen yet, and is retried every
//! [`RETRY_PAUSE`]; once `OK` came, the agent has accepted it, and the
//! same hello-and-ping handshake follows. The daemon exiting ends the wait
//! at once, as QEMU's does.
//!
//! [`INIT_PREFIX`]: super::console::INIT_PREFIX

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use kiln_protocol::{AgentClient, AgentInfo, ClientConfig, ClientError};
use tokio::net::UnixStream;
use tokio::time::Instant;

use super::console::InitProgress;
use super::process::Process;
use super::vsock;

/// How the host reaches a VM's agent.
#[derive(Debug, Clone)]
pub(crate) enum Channel {
    /// QEMU's chardev socket of the agent's virtio-serial port.
    VirtioSerial(PathBuf),
    /// vsock: QEMU's vhost-user device talks to the daemon at `vhost`;
    /// the host connects to the agent's port through the daemon's `uds`.
    Vsock { vhost: PathBuf, uds: PathBuf },
}

impl Channel {
    /// The virtio-serial chardev socket for the launch plan.
    pub fn virtio_socket(&self) -> Option<&Path> {
        match self {
            Channel::VirtioSerial(socket) => Some(socket),
            Channel::Vsock { .. } => None,
        }
    }

    /// The vhost-user socket for the launch plan.
    pub fn vhost_socket(&self) -> Option<&Path> {
        match self {
            Channel::VirtioSerial(_) => None,
            Channel::Vsock { vhost, .. } => Some(vhost),
        }
    }

    /// One new connection to the agent (not yet said hello to).
    async fn open(&self) -> Result<UnixStream, String> {
        match self {
            Channel::VirtioSerial(socket) => UnixStream::connect(socket)
                .await
                .map_err(|e| format!("cannot connect to {}: {e}", socket.display())),
            Channel::Vsock { uds, .. } => {
                let attempt = vsock::connect(uds, vsock::AGENT_PORT);
                match tokio::time::timeout(VSOCK_CONNECT_LIMIT, attempt).await {
                    Ok(Ok(stream)) => Ok(stream),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!(
                        "no answer to CONNECT {} within {VSOCK_CONNECT_LIMIT:?}",
                        vsock::AGENT_PORT
                    )),
                }
            }
        }
    }
}

/// Pause before reconnecting after a refused connect or a hang-up.
const RETRY_PAUSE: Duration = Duration::from_millis(20);
/// How long past /init's last line the first hello may go unanswered; each
/// retry waits twice as long. The agent answers ~100 ms after that line
/// under TCG; a missed notice costs this much, an early retry only a
/// reconnect (the agent starts its session over).
const AFTER_INIT: Duration = Duration::from_millis(300);
/// An attempt's length while no /init line was seen.
const WITHOUT_INIT: Duration = Duration::from_secs(10);
/// How long one vsock `CONNECT` may go unanswered (a guest whose vsock
/// driver is not up yet may hold it) before it is tried again.
const VSOCK_CONNECT_LIMIT: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub(crate) enum BootError {
    /// QEMU ended before the agent answered.
    QemuExited(ExitStatus),
    /// The vsock daemon ended before the agent answered.
    DaemonExited(ExitStatus),
    /// No answer by the deadline; `last` says what the last attempt saw.
    Timeout { after: Duration, last: String },
    /// The agent refused us (token, protocol version) or broke the protocol.
    Agent(ClientError),
}

impl std::fmt::Display for BootError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BootError::QemuExited(status) => write!(f, "qemu exited during boot ({status})"),
            BootError::DaemonExited(status) => {
                write!(f, "the vsock daemon exited during boot ({status})")
            }
            BootError::Timeout { after, last } => {
                write!(
                    f,
                    "the guest agent did not answer within {after:?} ({last})"
                )
            }
            BootError::Agent(e) => write!(f, "the guest agent failed the handshake: {e}"),
        }
    }
}

/// The processes whose exit ends a boot: QEMU, and the vsock daemon if any.
pub(crate) struct Watched<'a> {
    pub qemu: &'a Process,
    pub daemon: Option<&'a Process>,
}

/// Connects to the agent behind `channel` and completes the handshake.
pub(crate) async fn connect(
    channel: &Channel,
    token: &str,
    config: &ClientConfig,
    boot_timeout: Duration,
    watched: Watched<'_>,
    mut init: InitProgress,
) -> Result<(AgentClient, AgentInfo), BootError> {
    let started = Instant::now();
    let deadline = started + boot_timeout;
    let mut last = String::from("not connected yet");
    let mut patience = AFTER_INIT;
    let mut console_open = true;
    let outcome = async {
        loop {
            if Instant::now() >= deadline {
                return Err(BootError::Timeout {
                    after: boot_timeout,
                    last: last.clone(),
                });
            }
            if matches!(channel, Channel::Vsock { .. }) && console_open && init.borrow().is_none() {
                // No CONNECT before the guest's /init speaks: connections
                // that reach the daemon before the guest set its vrings up
                // wedged it now and then (about 1 boot in 10), and QEMU,
                // which waits on the daemon, with it.
                last = "waiting for the guest's /init".to_owned();
                match tokio::time::timeout_at(deadline, init.changed()).await {
                    Ok(Ok(())) | Err(_) => {}
                    Ok(Err(_closed)) => console_open = false,
                }
                continue;
            }
            let stream = match channel.open().await {
                Ok(stream) => stream,
                Err(why) => {
                    last = why;
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
            };
            let client = AgentClient::new(stream, config.clone());
            let attempt_started = Instant::now();
            let outcome = {
                let handshake = async {
                    let info = client.hello(token).await?;
                    client.ping().await?;
                    Ok::<_, ClientError>(info)
                };
                tokio::pin!(handshake);
                loop {
                    let until = match *init.borrow_and_update() {
                        Some(seen) => seen.max(attempt_started) + patience,
                        None => attempt_started + WITHOUT_INIT,
                    };
                    tokio::select! {
                        done = &mut handshake => break Ok(done),
                        () = tokio::time::sleep_until(until.min(deadline)) => break Err(()),
                        // A new /init line moves the limit. The console ends
                        // only with QEMU, which the caller watches.
                        changed = init.changed(), if console_open => {
                            console_open = changed.is_ok();
                        }
                    }
                }
            };
            // Bounded, so that quick failures cannot grow it without end.
            patience = patience.saturating_mul(2).min(boot_timeout);
            match outcome {
                Ok(Ok(info)) => return Ok((client, info)),
                Ok(Err(e @ (ClientError::Rejected(_) | ClientError::VersionMismatch { .. }))) => {
                    return Err(BootError::Agent(e));
                }
                Ok(Err(e)) => {
                    last = format!("last attempt: {e}");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(_elapsed) => last = "connected, but no answer to hello".to_owned(),
            }
            tracing::debug!(after = ?started.elapsed(), %last, "retrying the agent handshake");
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
        status = watched.qemu.exit() => Err(BootError::QemuExited(status)),
        status = exit_of(watched.daemon) => Err(BootError::DaemonExited(status)),
    }
}

/// The exit of `process`; never without one.
async fn exit_of(process: Option<&Process>) -> ExitStatus {
    match process {
        Some(process) => process.exit().await,
        None => std::future::pending().await,
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
