//! The guest end of the channel: finding the virtio-serial port and using
//! its character device as a non-blocking stream; or the vsock port the
//! agent listens on instead (`kiln.transport=vsock`).

use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::unix::pipe;
use tokio::time::Sleep;

use crate::AgentError;

/// The name the host gives the agent's `virtserialport`.
pub const DEFAULT_PORT_NAME: &str = "org.kiln.agent";

/// The vsock port the agent listens on with the vsock transport (the host
/// connects to it through the VM's vhost-user daemon).
pub const DEFAULT_VSOCK_PORT: u32 = 1024;

/// The vsock core's device: it exists once the kernel's vsock support is
/// up (built in, or its module loaded).
pub const VSOCK_DEVICE: &str = "/dev/vsock";

/// Where the kernel lists virtio-serial ports with their names.
pub const VIRTIO_PORTS_DIR: &str = "/sys/class/virtio-ports";

/// The device of the port called `name`: `/dev/<vportNpM>` for the entry of
/// `ports_dir` whose `name` file holds `name`.
pub fn find_virtio_port(ports_dir: &Path, name: &str) -> io::Result<Option<PathBuf>> {
    let entries = match std::fs::read_dir(ports_dir) {
        Ok(entries) => entries,
        // No virtio-serial driver (yet): same as no port.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        // Ports without a name have no `name` content; skip unreadable ones.
        let Ok(port_name) = std::fs::read_to_string(entry.path().join("name")) else {
            continue;
        };
        if port_name.trim_end() == name {
            return Ok(Some(Path::new("/dev").join(entry.file_name())));
        }
    }
    Ok(None)
}

/// Polls for the port: its device can appear seconds after boot when the
/// host is loaded.
pub async fn wait_for_virtio_port(
    ports_dir: &Path,
    name: &str,
    limit: Duration,
) -> Result<PathBuf, AgentError> {
    let started = Instant::now();
    loop {
        let found = find_virtio_port(ports_dir, name).map_err(|source| AgentError::PortScan {
            path: ports_dir.to_owned(),
            source,
        })?;
        if let Some(device) = found.filter(|device| device.exists()) {
            return Ok(device);
        }
        if started.elapsed() >= limit {
            return Err(AgentError::PortNotFound {
                name: name.to_owned(),
                waited: limit,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A character device (or any pollable fd) as a tokio stream.
///
/// A virtio port can be opened only once, and tokio's `File` would queue a
/// pending read in front of every write; so the one open file is duplicated
/// and driven by tokio's non-blocking pipe ends, which work on any pollable
/// descriptor (and need no unsafe code, unlike `AsyncFd` registration).
///
/// Their `AsyncRead`/`AsyncWrite` impls are not used, though: after a short
/// read they assume the descriptor is drained and wait for the next readiness
/// edge. A virtio port returns at most one buffer per `read` with more queued,
/// and no new edge comes while the host waits for an answer: the agent
/// stalled mid-frame. Here readiness is only cleared by an actual
/// `WouldBlock` (`try_read`/`try_write`).
///
/// A port also reports HUP while the guest believes no host is attached,
/// which tokio records as a final "closed" state: readiness then stays set
/// although reads and writes would block, and a plain retry loop spins
/// forever (seen when the guest missed the host's connect at boot, and on
/// every host reconnect). Unlike a socket, a port comes back from HUP, so
/// such I/O is retried every [`HUP_RETRY`] instead.
#[derive(Debug)]
pub struct DeviceStream {
    reader: pipe::Receiver,
    writer: pipe::Sender,
    read_retry: Option<Pin<Box<Sleep>>>,
    write_retry: Option<Pin<Box<Sleep>>>,
}

/// The retry period of I/O on a port whose readiness is stuck (see
/// [`DeviceStream`]).
const HUP_RETRY: Duration = Duration::from_millis(20);

/// Opens `path` read-write, non-blocking. Must run inside a tokio runtime.
pub fn open_device(path: &Path) -> io::Result<DeviceStream> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags((OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).bits())
        .open(path)?;
    device_stream(file)
}

/// Wraps an open read-write file, switching it to non-blocking mode.
pub fn device_stream(file: File) -> io::Result<DeviceStream> {
    let flags = fcntl(&file, FcntlArg::F_GETFL).map_err(io::Error::from)?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(&file, FcntlArg::F_SETFL(flags)).map_err(io::Error::from)?;
    let writer = file.try_clone()?;
    Ok(DeviceStream {
        reader: pipe::Receiver::from_file_unchecked(file)?,
        writer: pipe::Sender::from_file_unchecked(writer)?,
        read_retry: None,
        write_retry: None,
    })
}

impl AsyncRead for DeviceStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            match self.reader.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    self.read_retry = None;
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let this = &mut *self;
                    if let Some(sleep) = this.read_retry.as_mut() {
                        ready!(sleep.as_mut().poll(cx));
                        this.read_retry = None;
                        continue;
                    }
                    ready!(this.reader.poll_read_ready(cx))?;
                    // Ready although the read would block: stuck (see the
                    // type's docs).
                    this.read_retry = Some(Box::pin(tokio::time::sleep(HUP_RETRY)));
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for DeviceStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            match self.writer.try_write(data) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let this = &mut *self;
                    if let Some(sleep) = this.write_retry.as_mut() {
                        ready!(sleep.as_mut().poll(cx));
                        this.write_retry = None;
                        continue;
                    }
                    ready!(this.writer.poll_write_ready(cx))?;
                    this.write_retry = Some(Box::pin(tokio::time::sleep(HUP_RETRY)));
                }
                result => return Poll::Ready(result),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_port_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (entry, name) in [
            ("vport0p0", ""),
            ("vport0p1", "org.other\n"),
            ("vport1p1", "org.kiln.agent\n"),
        ] {
            std::fs::create_dir(dir.path().join(entry)).expect("mkdir");
            std::fs::write(dir.path().join(entry).join("name"), name).expect("write");
        }
        std::fs::create_dir(dir.path().join("vport2p1")).expect("mkdir");
        assert_eq!(
            find_virtio_port(dir.path(), DEFAULT_PORT_NAME).expect("scan"),
            Some(PathBuf::from("/dev/vport1p1"))
        );
        assert_eq!(
            find_virtio_port(dir.path(), "org.missing").expect("scan"),
            None
        );
        assert_eq!(
            find_virtio_port(&dir.path().join("absent"), DEFAULT_PORT_NAME).expect("scan"),
            None
        );
    }

    #[tokio::test]
    async fn waiting_for_a_missing_port_gives_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = wait_for_virtio_port(dir.path(), DEFAULT_PORT_NAME, Duration::from_millis(120))
            .await
            .expect_err("no port");
        assert!(matches!(err, AgentError::PortNotFound { .. }), "{err}");
    }

    /// The device path works on any pollable descriptor; a socket stands in
    /// for the virtio port.
    #[tokio::test]
    async fn device_stream_reads_and_writes_one_descriptor() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("pair");
        let mut device = device_stream(File::from(std::os::fd::OwnedFd::from(ours))).expect("wrap");
        let mut peer = tokio::net::UnixStream::from_std({
            theirs.set_nonblocking(true).expect("nonblocking");
            theirs
        })
        .expect("peer");
        device.write_all(b"ping").await.expect("write");
        let mut buf = [0u8; 4];
        peer.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"ping");
        peer.write_all(b"pong").await.expect("write");
        device.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"pong");
        drop(peer);
        assert_eq!(device.read(&mut buf).await.expect("eof"), 0);
    }

    /// Like a virtio port, a datagram socket returns one buffer per read
    /// while more are queued: every queued byte must be read without a new
    /// readiness event (the peer sends nothing more and waits).
    #[tokio::test]
    async fn short_reads_do_not_stall() {
        use tokio::io::AsyncReadExt;
        let (ours, theirs) = std::os::unix::net::UnixDatagram::pair().expect("pair");
        let mut device = device_stream(File::from(std::os::fd::OwnedFd::from(ours))).expect("wrap");
        for part in [&b"first-"[..], b"second-", b"third"] {
            theirs.send(part).expect("send");
        }
        let mut buf = [0u8; 18];
        tokio::time::timeout(Duration::from_secs(5), device.read_exact(&mut buf))
            .await
            .expect("no stall after a short read")
            .expect("read");
        assert_eq!(&buf, b"first-second-third");
    }
}
