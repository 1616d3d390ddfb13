//! The agent's lifetime around [`serve`]: which channel, and reconnecting
//! until a host asks for a shutdown.

use std::path::PathBuf;
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio_vsock::{VMADDR_CID_ANY, VsockAddr, VsockListener};

use crate::transport::{VIRTIO_PORTS_DIR, open_device, wait_for_virtio_port};
use crate::{AgentConfig, AgentError, ServeOutcome, serve};

/// Pause before reopening a channel whose host went away. A virtio port
/// reads EOF while no host is attached, so this is also the poll period
/// while waiting for one.
const RECONNECT_DELAY: Duration = Duration::from_millis(100);

/// Where the host is.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// The virtio-serial port with this name, waited for up to `wait`;
    /// `device` short-cuts the search when `/init` already found it.
    Virtio {
        name: String,
        device: Option<PathBuf>,
        wait: Duration,
    },
    /// Listen on this vsock port (any CID: the guest's own); hosts are
    /// served one at a time.
    Vsock { port: u32 },
    /// Connect to a unix socket (retried until a host listens).
    Connect(PathBuf),
    /// Listen on a unix socket; hosts are served one at a time.
    Listen(PathBuf),
    /// stdin/stdout, for one connection.
    Stdio,
}

/// Serves hosts on `endpoint` until one asks for a shutdown (returns
/// [`ServeOutcome::Shutdown`]) or, for stdio, the single connection ends.
pub async fn run(endpoint: &Endpoint, config: &AgentConfig) -> Result<ServeOutcome, AgentError> {
    match endpoint {
        Endpoint::Virtio { name, device, wait } => loop {
            let device = match device {
                Some(device) => device.clone(),
                None => {
                    wait_for_virtio_port(std::path::Path::new(VIRTIO_PORTS_DIR), name, *wait)
                        .await?
                }
            };
            match open_device(&device) {
                Ok(stream) => {
                    if serve(stream, config).await == ServeOutcome::Shutdown {
                        return Ok(ServeOutcome::Shutdown);
                    }
                }
                // EBUSY while a previous fd is still being released.
                Err(e) => {
                    tracing::debug!(device = %device.display(), error = %e, "cannot open port")
                }
            }
            tokio::time::sleep(RECONNECT_DELAY).await;
        },
        Endpoint::Vsock { port } => {
            let address = VsockAddr::new(VMADDR_CID_ANY, *port);
            let listener =
                VsockListener::bind(address).map_err(|source| AgentError::VsockListen {
                    port: *port,
                    source,
                })?;
            loop {
                let (stream, peer) = listener.accept().await.map_err(AgentError::Accept)?;
                tracing::debug!(%peer, "host connected over vsock");
                if serve(stream, config).await == ServeOutcome::Shutdown {
                    return Ok(ServeOutcome::Shutdown);
                }
            }
        }
        Endpoint::Connect(path) => loop {
            match UnixStream::connect(path).await {
                Ok(stream) => {
                    if serve(stream, config).await == ServeOutcome::Shutdown {
                        return Ok(ServeOutcome::Shutdown);
                    }
                }
                Err(e) => tracing::debug!(path = %path.display(), error = %e, "cannot connect"),
            }
            tokio::time::sleep(RECONNECT_DELAY).await;
        },
        Endpoint::Listen(path) => {
            // A socket file left by an earlier run would make bind fail.
            let _ = std::fs::remove_file(path);
            let listener = UnixListener::bind(path).map_err(|source| AgentError::Listen {
                path: path.clone(),
                source,
            })?;
            loop {
                let (stream, _) = listener.accept().await.map_err(AgentError::Accept)?;
                if serve(stream, config).await == ServeOutcome::Shutdown {
                    return Ok(ServeOutcome::Shutdown);
                }
            }
        }
        Endpoint::Stdio => {
            let stream = tokio::io::join(tokio::io::stdin(), tokio::io::stdout());
            Ok(serve(stream, config).await)
        }
    }
}

/// Powers the machine off (`poweroff -f`; the `reboot(2)` call directly if
/// that fails). Returns only if both failed.
pub fn power_off() -> std::io::Error {
    nix::unistd::sync();
    match std::process::Command::new("poweroff").arg("-f").status() {
        Ok(status) if status.success() => {
            // The kernel is going down; wait for it rather than exit, which
            // would make an init-less guest panic first.
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        Ok(status) => tracing::warn!(%status, "poweroff -f failed"),
        Err(e) => tracing::warn!(error = %e, "cannot run poweroff -f"),
    }
    match nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF) {
        Err(e) => std::io::Error::from(e),
    }
}
