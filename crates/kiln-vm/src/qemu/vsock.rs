//! The vsock transport's host side: one `vhost-device-vsock` daemon per
//! VM, and connections into the guest through it.
//!
//! Why a vhost-user daemon: the kernel's vsock backend needs
//! `/dev/vhost-vsock`, which these hosts do not have. `vhost-device-vsock`
//! (rust-vmm) implements the device in user space: QEMU connects to its
//! vhost-user socket ([`StateDir::vhost_socket`]) and shares the guest's
//! RAM with it (hence the `memfd` memory backend with `share=on`), and the
//! host reaches guest ports through a unix socket
//! ([`StateDir::vsock_socket`]) with Firecracker's hybrid-vsock handshake:
//! write `CONNECT <port>\n`, read a line starting `OK `, then the stream is
//! the guest's socket. When nothing listens on that port in the guest, the
//! daemon closes the connection instead.
//!
//! The daemon must run before QEMU starts (QEMU exits when it cannot
//! connect), dies with nothing else (so the VM kills it, and the reaper
//! finds it by the VM directory on its command line), and its death kills
//! vsock for the rest of the VM's life.
//!
//! [`StateDir::vhost_socket`]: super::state::StateDir::vhost_socket
//! [`StateDir::vsock_socket`]: super::state::StateDir::vsock_socket

use std::ffi::OsString;
use std::io;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::process::Command;

use super::process::{self, Process};

/// The guest port the agent listens on (kiln-agent's default).
pub(crate) const AGENT_PORT: u32 = 1024;
/// The guest's context id. Every VM has its own daemon, so all use 3 (the
/// first id that is not reserved).
const GUEST_CID: u32 = 3;
/// How long the daemon may take to create its vhost-user socket.
const SOCKET_WAIT: Duration = Duration::from_secs(5);
/// The longest reply line accepted (`OK <port>\n` is about 10 bytes).
const MAX_REPLY: usize = 64;

pub(crate) fn daemon_args(vhost_socket: &Path, uds: &Path) -> Vec<OsString> {
    let arg = |flag: &str, path: &Path| {
        let mut a = OsString::from(flag);
        a.push(path);
        a
    };
    vec![
        format!("--guest-cid={GUEST_CID}").into(),
        arg("--socket=", vhost_socket),
        arg("--uds-path=", uds),
    ]
}

/// Starts the daemon of one VM and waits until its vhost-user socket exists
/// (QEMU connects to it at start-up and exits if it cannot). Output goes to
/// `log`; only errors are logged (its warnings are per-connection noise).
pub(crate) async fn start_daemon(
    binary: &Path,
    vhost_socket: &Path,
    uds: &Path,
    log: &Path,
) -> Result<Process, String> {
    let mut cmd = Command::new(binary);
    cmd.args(daemon_args(vhost_socket, uds))
        .env("RUST_LOG", "error");
    process::start_socket_daemon("vhost-device-vsock", cmd, vhost_socket, log, SOCKET_WAIT).await
}

/// Why a connection into the guest did not come about.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// The daemon's socket is not there or refuses: the daemon is gone.
    #[error("cannot connect to the vsock daemon at {path}: {source}")]
    Daemon { path: String, source: io::Error },
    /// The daemon closed the connection without `OK`: nothing listens on
    /// the port in the guest (yet).
    #[error("nothing listens on vsock port {port} in the guest (yet)")]
    NotListening { port: u32 },
    /// The daemon answered something else than `OK ...`.
    #[error("the vsock daemon refused CONNECT {port}: {reply:?}")]
    Refused { port: u32, reply: String },
    /// Reading or writing the handshake failed.
    #[error("vsock handshake for port {port} failed: {source}")]
    Io { port: u32, source: io::Error },
}

/// Connects to guest `port` through the daemon's socket `uds`.
pub(crate) async fn connect(uds: &Path, port: u32) -> Result<UnixStream, ConnectError> {
    let mut stream = UnixStream::connect(uds)
        .await
        .map_err(|source| ConnectError::Daemon {
            path: uds.display().to_string(),
            source,
        })?;
    handshake(&mut stream, port).await?;
    Ok(stream)
}

/// `CONNECT <port>\n`, then the reply line. The line is read byte by byte:
/// whatever follows it already belongs to the guest's stream.
pub(crate) async fn handshake<S>(stream: &mut S, port: u32) -> Result<(), ConnectError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let io = |source| ConnectError::Io { port, source };
    stream
        .write_all(format!("CONNECT {port}\n").as_bytes())
        .await
        .map_err(io)?;
    let mut line = Vec::new();
    // Whether the line ended in `\n` within [`MAX_REPLY`] bytes.
    let complete = loop {
        let byte = match stream.read_u8().await {
            Ok(byte) => byte,
            // Closed (or reset) before any reply: what an absent listener
            // looks like.
            Err(e)
                if line.is_empty()
                    && matches!(
                        e.kind(),
                        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
                    ) =>
            {
                return Err(ConnectError::NotListening { port });
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break false,
            Err(e) => return Err(io(e)),
        };
        if byte == b'\n' {
            break true;
        }
        line.push(byte);
        if line.len() > MAX_REPLY {
            break false;
        }
    };
    let reply = String::from_utf8_lossy(&line).into_owned();
    // The number after `OK` is the host-side port; its meaning differs
    // between implementations, so only the prefix counts.
    if complete && reply.starts_with("OK ") {
        Ok(())
    } else {
        Err(ConnectError::Refused { port, reply })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncBufReadExt;
    use tokio::net::UnixListener;

    /// A fake daemon: reads the CONNECT line, sends it back through
    /// `seen`, answers `reply` (and then `after` as guest data), closes.
    async fn fake_daemon(
        dir: &Path,
        reply: &'static [u8],
        after: &'static [u8],
    ) -> (std::path::PathBuf, tokio::task::JoinHandle<String>) {
        let path = dir.join("vsock.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        let task = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            let mut stream = tokio::io::BufReader::new(stream);
            let mut request = String::new();
            stream.read_line(&mut request).await.expect("read");
            stream.get_mut().write_all(reply).await.expect("reply");
            stream.get_mut().write_all(after).await.expect("data");
            request
        });
        (path, task)
    }

    #[tokio::test]
    async fn ok_hands_over_the_stream_at_the_first_guest_byte() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (path, daemon) = fake_daemon(tmp.path(), b"OK 1073741824\n", b"guest").await;
        let mut stream = connect(&path, 1024).await.expect("connected");
        assert_eq!(daemon.await.expect("daemon"), "CONNECT 1024\n");
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.expect("read");
        assert_eq!(rest, b"guest");
    }

    #[tokio::test]
    async fn a_closed_connection_means_nothing_listens() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (path, daemon) = fake_daemon(tmp.path(), b"", b"").await;
        let err = connect(&path, 1024).await.expect_err("closed");
        assert!(
            matches!(err, ConnectError::NotListening { port: 1024 }),
            "{err}"
        );
        assert_eq!(daemon.await.expect("daemon"), "CONNECT 1024\n");
    }

    #[tokio::test]
    async fn other_replies_are_refusals() {
        for (reply, shown) in [
            (&b"ERR no such port\n"[..], "ERR no such port"),
            (b"OK", "OK"),
            (b"OK 5", "OK 5"),
            (b"OKAY 5\n", "OKAY 5"),
        ] {
            let tmp = tempfile::tempdir().expect("tempdir");
            let leaked: &'static [u8] = Box::leak(reply.to_vec().into_boxed_slice());
            let (path, _daemon) = fake_daemon(tmp.path(), leaked, b"").await;
            let err = connect(&path, 7).await.expect_err("refused");
            match err {
                ConnectError::Refused { port: 7, reply } => assert_eq!(reply, shown),
                other => panic!("{shown}: {other}"),
            }
        }
    }

    #[tokio::test]
    async fn an_endless_reply_line_is_refused_without_reading_on() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let long: &'static [u8] = Box::leak(vec![b'O'; 10_000].into_boxed_slice());
        let (path, _daemon) = fake_daemon(tmp.path(), long, b"").await;
        let err = connect(&path, 1024).await.expect_err("refused");
        assert!(matches!(err, ConnectError::Refused { .. }), "{err}");
    }

    #[tokio::test]
    async fn no_daemon_is_a_daemon_error() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let err = connect(&tmp.path().join("absent.sock"), 1024)
            .await
            .expect_err("no daemon");
        assert!(matches!(err, ConnectError::Daemon { .. }), "{err}");
        assert!(err.to_string().contains("absent.sock"), "{err}");
    }

    #[test]
    fn daemon_arguments() {
        let args = daemon_args(Path::new("/s/v/vhost.sock"), Path::new("/s/v/vsock.sock"));
        assert_eq!(
            args,
            [
                "--guest-cid=3",
                "--socket=/s/v/vhost.sock",
                "--uds-path=/s/v/vsock.sock"
            ]
            .map(OsString::from)
        );
    }
}
