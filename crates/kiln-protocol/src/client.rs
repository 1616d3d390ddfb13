//! The host side: a multiplexing [`AgentClient`] over any byte stream.
//!
//! One reader task owns the read half and routes each reply to the request
//! that is waiting for it (by id); one writer task owns the write half and
//! writes frames that callers have already encoded (so an unencodable request
//! fails its caller, not the connection). Once the handshake is done a
//! keepalive task pings the agent, and the reader declares the connection dead
//! after [`ClientConfig::idle_timeout`] of silence: a long-running command is
//! then told apart from a hung guest without any per-command timeout.
//!
//! When the connection ends every waiting call fails with the same
//! [`LostReason`]; no call can hang on a dead agent.

mod error;
mod exec;
mod shared;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

pub use self::error::{ClientError, LostReason};
pub use self::exec::{ExecHandle, OutputChunk};
use self::shared::{HANDSHAKE_ID, Pending, Shared, Tasks};
use crate::{
    DATA_CHUNK_LEN, ExecRequest, ExitInfo, Hello, Identity, KillGrace, PROTOCOL_VERSION, Reply,
    Request, RequestId,
};

/// Timeouts of a connection. The defaults suit a real guest; tests shorten
/// them.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// How long a call may wait for its next reply (the handshake, a pong,
    /// the next chunk of a download, the end of an upload), and how long
    /// queueing one frame for the writer may take.
    pub request_timeout: Duration,
    /// The keepalive ping period once the handshake is done.
    pub keepalive_interval: Duration,
    /// Silence from the agent for this long (despite the keepalives) ends the
    /// connection with [`LostReason::Unresponsive`].
    pub idle_timeout: Duration,
    /// Sent in the hello: the cancel/timeout ladder for this connection.
    pub kill_grace: KillGrace,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            request_timeout: Duration::from_secs(30),
            keepalive_interval: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(20),
            kill_grace: KillGrace::default(),
        }
    }
}

/// What the agent said about itself in the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentInfo {
    pub agent_version: String,
    pub protocol_version: u32,
}

/// A connection to one agent. Cheap to clone; the connection closes when the
/// last clone (and the last [`ExecHandle`]) is dropped.
///
/// Must be created inside a tokio runtime.
#[derive(Clone)]
pub struct AgentClient {
    shared: Arc<Shared>,
    tasks: Arc<Tasks>,
}

impl std::fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClient")
            .field("lost", &self.shared.lost())
            .finish_non_exhaustive()
    }
}

impl AgentClient {
    /// Starts the reader and writer tasks on `stream`. Call
    /// [`hello`](Self::hello) next: the agent accepts nothing else first.
    pub fn new<S>(stream: S, config: ClientConfig) -> AgentClient
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read_half, write_half) = tokio::io::split(stream);
        let (frames_tx, frames_rx) = mpsc::channel::<Bytes>(64);
        let shared = Arc::new(Shared::new(config, frames_tx));
        let tasks = Tasks::default();
        tasks.spawn(shared::read_loop(read_half, shared.clone()));
        tasks.spawn(shared::write_loop(write_half, frames_rx, shared.clone()));
        AgentClient {
            shared,
            tasks: Arc::new(tasks),
        }
    }

    /// The handshake: checks the protocol version (a mismatch is
    /// [`ClientError::VersionMismatch`]) and the token, and sends the kill
    /// grace. Starts the keepalive on success.
    pub async fn hello(&self, token: &str) -> Result<AgentInfo, ClientError> {
        const WHAT: &str = "hello";
        let mut pending = self.shared.register(HANDSHAKE_ID)?;
        let hello = Request::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            token: token.to_owned(),
            kill_grace: self.shared.config.kill_grace,
        });
        self.shared.send(&hello).await?;
        let reply = pending
            .next(self.shared.config.request_timeout, WHAT)
            .await?;
        match reply {
            Reply::HelloOk {
                protocol_version,
                agent_version,
            } if protocol_version == PROTOCOL_VERSION => {
                self.start_keepalive();
                Ok(AgentInfo {
                    agent_version,
                    protocol_version,
                })
            }
            Reply::HelloOk {
                protocol_version: agent,
                ..
            } => Err(ClientError::VersionMismatch {
                host: PROTOCOL_VERSION,
                agent,
            }),
            Reply::HelloRejected {
                protocol_version: agent,
                ..
            } if agent != PROTOCOL_VERSION => Err(ClientError::VersionMismatch {
                host: PROTOCOL_VERSION,
                agent,
            }),
            Reply::HelloRejected { message, .. } => Err(ClientError::Rejected(message)),
            other => Err(ClientError::unexpected(WHAT, &other)),
        }
    }

    fn start_keepalive(&self) {
        if self.shared.keepalive.swap(true, Ordering::SeqCst) {
            return;
        }
        let shared = self.shared.clone();
        self.tasks.spawn(async move {
            let mut tick = tokio::time::interval(shared.config.keepalive_interval);
            tick.tick().await;
            loop {
                tick.tick().await;
                // The pong goes unclaimed; any frame resets the reader's idle
                // timer, which is all a keepalive is for.
                let id = shared.next_id();
                if shared.send(&Request::Ping { id }).await.is_err() {
                    break;
                }
            }
        });
    }

    /// A round trip through the agent's read loop; returns its duration.
    pub async fn ping(&self) -> Result<Duration, ClientError> {
        const WHAT: &str = "ping";
        let started = Instant::now();
        let (id, mut pending) = self.shared.register_new()?;
        self.shared.send(&Request::Ping { id }).await?;
        match pending
            .next(self.shared.config.request_timeout, WHAT)
            .await?
        {
            Reply::Pong { .. } => Ok(started.elapsed()),
            other => Err(ClientError::unexpected(WHAT, &other)),
        }
    }

    /// Starts a command. Its output goes to `output` as it arrives (the
    /// agent is slowed down, not buffered, when `output` is full; drop the
    /// receiver to discard output); the handle yields the exit. Fails with [`ClientError::Encode`] if the request
    /// (env plus stdin) exceeds one frame.
    pub async fn start_exec(
        &self,
        req: ExecRequest,
        output: mpsc::Sender<OutputChunk>,
    ) -> Result<ExecHandle, ClientError> {
        let (id, pending) = self.shared.register_new()?;
        let grace = self.shared.config.kill_grace;
        // A command with a timeout must be over by its timeout plus the
        // ladder; the slack covers transport and scheduling.
        let deadline = req.timeout_ms.map(|ms| {
            Instant::now()
                + Duration::from_millis(ms)
                + Duration::from_millis(grace.interrupt_ms + grace.terminate_ms)
                + self.shared.config.request_timeout
        });
        self.shared.send(&Request::Exec { id, req }).await?;
        Ok(ExecHandle::start(self.clone(), pending, output, deadline))
    }

    /// [`start_exec`](Self::start_exec) and wait for the exit.
    pub async fn exec(
        &self,
        req: ExecRequest,
        output: mpsc::Sender<OutputChunk>,
    ) -> Result<ExitInfo, ClientError> {
        self.start_exec(req, output).await?.wait().await
    }

    /// Starts the kill ladder on command `id` (see [`ExecHandle::id`]). The
    /// command's exit reports `cancelled`.
    pub async fn cancel(&self, id: RequestId) -> Result<(), ClientError> {
        self.shared.send(&Request::Cancel { id }).await
    }

    /// Writes `data` to `path` with permission bits `mode`, creating parent
    /// directories.
    pub async fn put_file(
        &self,
        path: &str,
        mode: u32,
        data: impl Into<Bytes>,
    ) -> Result<(), ClientError> {
        let data = data.into();
        self.upload("put_file", data, |id, first, more| Request::PutFile {
            id,
            path: path.to_owned(),
            mode,
            data: first,
            more,
        })
        .await
    }

    /// Unpacks the tar stream `tar` below `dir`, creating it.
    pub async fn put_archive(&self, dir: &str, tar: impl Into<Bytes>) -> Result<(), ClientError> {
        let tar = tar.into();
        self.upload("put_archive", tar, |id, first, more| Request::PutArchive {
            id,
            dir: dir.to_owned(),
            tar: first,
            more,
        })
        .await
    }

    /// Sends `data` as a header message with the first chunk, then further
    /// chunks, then waits for the verdict. An early error from the agent is
    /// read only at the end: it discards the rest cheaply, and stopping
    /// half-way would leave it waiting for a last chunk.
    async fn upload(
        &self,
        what: &'static str,
        data: Bytes,
        header: impl FnOnce(RequestId, Bytes, bool) -> Request,
    ) -> Result<(), ClientError> {
        let (id, mut pending) = self.shared.register_new()?;
        let mut chunks = chunks(data);
        let first = chunks.next().unwrap_or_default();
        let mut more = chunks.peek().is_some();
        self.shared.send(&header(id, first, more)).await?;
        while let Some(data) = chunks.next() {
            more = chunks.peek().is_some();
            self.shared
                .send(&Request::PutData { id, data, more })
                .await?;
        }
        match pending
            .next(self.shared.config.request_timeout, what)
            .await?
        {
            Reply::Ok { .. } => Ok(()),
            Reply::Error { message, .. } => Err(ClientError::Remote { what, message }),
            other => Err(ClientError::unexpected(what, &other)),
        }
    }

    /// The contents of file `path`.
    pub async fn get_file(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        let (id, pending) = self.shared.register_new()?;
        let req = Request::GetFile {
            id,
            path: path.to_owned(),
        };
        self.download("get_file", req, pending).await
    }

    /// A tar of everything below `dir`, paths relative to it.
    pub async fn get_archive(&self, dir: &str) -> Result<Vec<u8>, ClientError> {
        let (id, pending) = self.shared.register_new()?;
        let req = Request::GetArchive {
            id,
            dir: dir.to_owned(),
        };
        self.download("get_archive", req, pending).await
    }

    async fn download(
        &self,
        what: &'static str,
        req: Request,
        mut pending: Pending,
    ) -> Result<Vec<u8>, ClientError> {
        self.shared.send(&req).await?;
        let mut out = BytesMut::new();
        loop {
            match pending
                .next(self.shared.config.request_timeout, what)
                .await?
            {
                Reply::Data { data, .. } => out.extend_from_slice(&data),
                Reply::Ok { .. } => return Ok(out.to_vec()),
                Reply::Error { message, .. } => {
                    return Err(ClientError::Remote { what, message });
                }
                other => return Err(ClientError::unexpected(what, &other)),
            }
        }
    }

    /// Stops every command, syncs, and (unless the agent was started
    /// without) powers the guest off. Returns once the agent confirmed.
    pub async fn shutdown(&self) -> Result<(), ClientError> {
        const WHAT: &str = "shutdown";
        let (id, mut pending) = self.shared.register_new()?;
        self.shared.send(&Request::Shutdown { id }).await?;
        match pending
            .next(self.shared.config.request_timeout, WHAT)
            .await?
        {
            Reply::Ok { .. } => Ok(()),
            Reply::Error { message, .. } => Err(ClientError::Remote {
                what: WHAT,
                message,
            }),
            other => Err(ClientError::unexpected(WHAT, &other)),
        }
    }

    /// Gives a restored machine its own identity (see
    /// [`Request::Reidentify`]); returns once the agent applied it.
    pub async fn reidentify(&self, identity: Identity) -> Result<(), ClientError> {
        const WHAT: &str = "reidentify";
        let (id, mut pending) = self.shared.register_new()?;
        self.shared
            .send(&Request::Reidentify { id, identity })
            .await?;
        match pending
            .next(self.shared.config.request_timeout, WHAT)
            .await?
        {
            Reply::Ok { .. } => Ok(()),
            Reply::Error { message, .. } => Err(ClientError::Remote {
                what: WHAT,
                message,
            }),
            other => Err(ClientError::unexpected(WHAT, &other)),
        }
    }

    /// Why the connection ended, if it has.
    pub fn lost(&self) -> Option<LostReason> {
        self.shared.lost()
    }
}

/// `data` cut into frame-sized pieces without copying; empty data is one
/// empty chunk so that an empty file is still written.
fn chunks(data: Bytes) -> std::iter::Peekable<impl Iterator<Item = Bytes>> {
    let len = data.len();
    let starts = (0..len.max(1)).step_by(DATA_CHUNK_LEN);
    starts
        .map(move |start| data.slice(start..len.min(start + DATA_CHUNK_LEN)))
        .peekable()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunking_covers_the_data_exactly() {
        let empty: Vec<Bytes> = chunks(Bytes::new()).collect();
        assert_eq!(empty, vec![Bytes::new()]);
        let data = Bytes::from(vec![7u8; 2 * DATA_CHUNK_LEN + 3]);
        let parts: Vec<Bytes> = chunks(data.clone()).collect();
        assert_eq!(
            parts.iter().map(Bytes::len).collect::<Vec<_>>(),
            vec![DATA_CHUNK_LEN, DATA_CHUNK_LEN, 3]
        );
        assert_eq!(parts.concat(), data.to_vec());
    }
}
