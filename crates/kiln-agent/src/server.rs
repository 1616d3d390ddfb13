//! One host connection: handshake, then a read loop that dispatches requests
//! to tasks, and a writer task that owns the write half.
//!
//! Every reply goes through one bounded queue to the writer: when the host
//! reads slowly the queue fills, output pumps wait, pipes fill and commands
//! block in `write(2)`. Memory stays bounded whatever a command prints.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use kiln_protocol::{
    FrameCodec, Hello, KillGrace, MessageCodec, PROTOCOL_VERSION, ProtocolError, Reply, Request,
    RequestId, decode_message, peek_protocol_version,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::exec::{self, ExecControl};
use crate::files::{self, Upload};
use crate::identity;

/// Replies queued for the writer. With output chunks of 64 KiB and data
/// chunks of 1 MiB this bounds a connection's queue to a few tens of MiB.
const REPLY_QUEUE: usize = 32;

/// How long to wait for killed commands, and for the writer to flush the
/// last replies, when a connection ends.
const WIND_DOWN: Duration = Duration::from_secs(5);

/// How the agent answers. Clones share the token, so a token changed by
/// [`Request::Reidentify`] holds for every later connection too.
#[derive(Clone, Default)]
pub struct AgentConfig {
    /// When set, a hello must carry this token.
    token: Arc<RwLock<Option<String>>>,
    /// Whether `Reidentify` changes the machine (hostname, machine id,
    /// clock, random pool). Only in a guest: an agent tried out on a host
    /// just takes the new token.
    manage_system: bool,
    /// Commands start only once this is true: the native /init configures
    /// the network while the agent starts (see `boot`).
    commands_after: Option<watch::Receiver<bool>>,
}

impl AgentConfig {
    pub fn new(token: Option<String>) -> AgentConfig {
        AgentConfig {
            token: Arc::new(RwLock::new(token)),
            manage_system: false,
            commands_after: None,
        }
    }

    /// Holds every command back until `ready` is true (or its sender gone).
    pub fn commands_after(mut self, ready: watch::Receiver<bool>) -> AgentConfig {
        self.commands_after = Some(ready);
        self
    }

    /// Waits until commands may start.
    async fn commands_ready(&self) {
        if let Some(mut ready) = self.commands_after.clone() {
            // A sender dropped without saying true: start anyway.
            let _ = ready.wait_for(|ready| *ready).await;
        }
    }

    /// Lets `Reidentify` change the machine itself (see the field).
    pub fn managing_system(mut self, manage: bool) -> AgentConfig {
        self.manage_system = manage;
        self
    }

    fn token(&self) -> Option<String> {
        self.token
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_token(&self, token: String) {
        *self.token.write().unwrap_or_else(PoisonError::into_inner) = Some(token);
    }
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("token", &self.token().map(|_| "<redacted>"))
            .field("manage_system", &self.manage_system)
            .finish()
    }
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServeOutcome {
    /// The host went away, or broke the protocol: wait for the next one.
    Closed,
    /// The host asked for a shutdown, which has been answered: power off.
    Shutdown,
}

/// Serves one connection until it closes or the host asks for a shutdown.
/// Commands still running when the host goes away are killed: nobody could
/// receive their output any more.
pub async fn serve<S>(stream: S, config: &AgentConfig) -> ServeOutcome
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    exec::reset_inherited_signal_ignores();
    let (read, write) = tokio::io::split(stream);
    let mut frames = FramedRead::new(read, FrameCodec::new());
    let (replies, reply_rx) = mpsc::channel(REPLY_QUEUE);
    let writer = tokio::spawn(write_replies(write, reply_rx));

    let outcome = match handshake(&mut frames, &replies, config).await {
        Some(grace) => {
            Connection::new(replies, grace, config)
                .run(&mut frames)
                .await
        }
        None => {
            drop(replies);
            ServeOutcome::Closed
        }
    };
    // The writer ends once every sender (commands, transfers) is gone.
    let abort = writer.abort_handle();
    if tokio::time::timeout(WIND_DOWN, writer).await.is_err() {
        tracing::warn!("host stopped reading; dropping unsent replies");
        abort.abort();
    }
    outcome
}

async fn handshake<R>(
    frames: &mut FramedRead<R, FrameCodec>,
    replies: &mpsc::Sender<Reply>,
    config: &AgentConfig,
) -> Option<KillGrace>
where
    R: AsyncRead + Unpin,
{
    let payload = match frames.next().await? {
        Ok(payload) => payload,
        Err(e) => {
            protocol_error(replies, &e).await;
            return None;
        }
    };
    let reply = match decode_message::<Request>(&payload) {
        Ok(Request::Hello(hello)) => match check_hello(&hello, config) {
            Ok(ok) => {
                send(replies, ok).await;
                return Some(hello.kill_grace);
            }
            Err(rejected) => rejected,
        },
        Ok(other) => Reply::ProtocolError {
            message: format!("expected hello first, got {other:?}"),
        },
        Err(e) => match peek_protocol_version(&payload, 1) {
            Some(version) => reject(format!(
                "host speaks protocol version {version}, agent speaks {PROTOCOL_VERSION}"
            )),
            None => Reply::ProtocolError {
                message: format!("expected hello first: {}", render_chain(&e)),
            },
        },
    };
    tracing::warn!(?reply, "handshake failed");
    send(replies, reply).await;
    None
}

impl AgentConfig {
    /// Whether `Reidentify` may change the machine.
    pub(crate) fn manages_system(&self) -> bool {
        self.manage_system
    }

    /// Replaces the token for every later hello.
    pub(crate) fn replace_token(&self, token: String) {
        self.set_token(token);
    }
}

fn reject(message: String) -> Reply {
    Reply::HelloRejected {
        protocol_version: PROTOCOL_VERSION,
        message,
    }
}

/// `HelloOk`, or the rejection to send before hanging up.
fn check_hello(hello: &Hello, config: &AgentConfig) -> Result<Reply, Reply> {
    if hello.protocol_version != PROTOCOL_VERSION {
        return Err(reject(format!(
            "host speaks protocol version {}, agent speaks {PROTOCOL_VERSION}",
            hello.protocol_version
        )));
    }
    match &config.token() {
        Some(token) if !same_secret(token, &hello.token) => Err(reject("invalid token".into())),
        _ => Ok(Reply::HelloOk {
            protocol_version: PROTOCOL_VERSION,
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        }),
    }
}

/// Compares without stopping at the first difference, so response timing
/// does not reveal how much of a guessed token was right.
fn same_secret(expected: &str, given: &str) -> bool {
    expected.len() == given.len()
        && expected
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The state of an established connection.
struct Connection {
    replies: mpsc::Sender<Reply>,
    grace: KillGrace,
    /// For hellos after the first (see `handle`).
    config: AgentConfig,
    execs: HashMap<RequestId, ExecControl>,
    uploads: HashMap<RequestId, Upload>,
    finished_tx: mpsc::UnboundedSender<RequestId>,
    finished_rx: mpsc::UnboundedReceiver<RequestId>,
}

impl Connection {
    fn new(replies: mpsc::Sender<Reply>, grace: KillGrace, config: &AgentConfig) -> Connection {
        let (finished_tx, finished_rx) = mpsc::unbounded_channel();
        Connection {
            replies,
            grace,
            config: config.clone(),
            execs: HashMap::new(),
            uploads: HashMap::new(),
            finished_tx,
            finished_rx,
        }
    }

    async fn run<R>(mut self, frames: &mut FramedRead<R, FrameCodec>) -> ServeOutcome
    where
        R: AsyncRead + Unpin,
    {
        let outcome = loop {
            tokio::select! {
                frame = frames.next() => match frame {
                    None => break ServeOutcome::Closed,
                    Some(Err(e)) => {
                        // The framing is lost (or the channel failed): say
                        // why, if still possible, and hang up.
                        protocol_error(&self.replies, &e).await;
                        break ServeOutcome::Closed;
                    }
                    Some(Ok(payload)) => match decode_message::<Request>(&payload) {
                        // The next frame is still well delimited: carry on.
                        Err(e) => protocol_error(&self.replies, &e).await,
                        Ok(req) => {
                            if let Some(outcome) = self.handle(req).await {
                                break outcome;
                            }
                        }
                    },
                },
                Some(id) = self.finished_rx.recv() => {
                    self.execs.remove(&id);
                }
            }
        };
        self.stop_all().await;
        outcome
    }

    fn in_flight(&self, id: RequestId) -> bool {
        self.execs.contains_key(&id) || self.uploads.contains_key(&id)
    }

    /// Returns an outcome when the connection must end.
    async fn handle(&mut self, req: Request) -> Option<ServeOutcome> {
        tracing::debug!(?req, "request");
        let continues = matches!(req, Request::Cancel { .. } | Request::PutData { .. });
        if let Some(id) = req.id().filter(|&id| !continues && self.in_flight(id)) {
            let message = format!("request id {id} is already in flight");
            send(&self.replies, Reply::Error { id, message }).await;
            return None;
        }
        match req {
            // A virtio port does not reliably show a host that reconnected
            // as EOF (the guest may never see the gap), so a hello here is a
            // new host: what the old one started can no longer be answered.
            // Start over as after a first hello.
            Request::Hello(hello) => match check_hello(&hello, &self.config) {
                Ok(ok) => {
                    self.stop_all().await;
                    self.grace = hello.kill_grace;
                    send(&self.replies, ok).await;
                }
                Err(rejected) => {
                    send(&self.replies, rejected).await;
                    return Some(ServeOutcome::Closed);
                }
            },
            Request::Exec { id, req } => {
                self.config.commands_ready().await;
                let control = exec::spawn(
                    id,
                    req,
                    self.grace,
                    self.replies.clone(),
                    self.finished_tx.clone(),
                );
                self.execs.insert(id, control);
            }
            Request::Cancel { id } => {
                if let Some(control) = self.execs.get(&id) {
                    control.cancel();
                }
            }
            Request::PutFile {
                id,
                path,
                mode,
                data,
                more,
            } => {
                let upload = Upload::file(id, path, mode, self.replies.clone());
                self.feed(id, upload, data, more).await;
            }
            Request::PutArchive { id, dir, tar, more } => {
                let upload = Upload::archive(id, dir, self.replies.clone());
                self.feed(id, upload, tar, more).await;
            }
            Request::PutData { id, data, more } => match self.uploads.remove(&id) {
                Some(upload) => self.feed(id, upload, data, more).await,
                None => {
                    let message = format!("no upload {id} in progress");
                    send(&self.replies, Reply::Error { id, message }).await;
                }
            },
            Request::GetFile { id, path } => files::spawn_get_file(id, path, self.replies.clone()),
            Request::GetArchive { id, dir } => {
                files::spawn_get_archive(id, dir, self.replies.clone());
            }
            Request::Ping { id } => send(&self.replies, Reply::Pong { id }).await,
            Request::Shutdown { id } => return Some(self.shutdown(id).await),
            Request::Reidentify { id, identity } => {
                let reply = match identity::apply(identity, &self.config).await {
                    Ok(()) => Reply::Ok { id },
                    Err(message) => Reply::Error { id, message },
                };
                send(&self.replies, reply).await;
            }
        }
        None
    }

    /// Hands a chunk to its upload task. Waiting here when the disk is slower
    /// than the channel is deliberate: it pushes back on the host.
    async fn feed(&mut self, id: RequestId, upload: Upload, data: bytes::Bytes, more: bool) {
        upload.feed(data, !more).await;
        if more {
            self.uploads.insert(id, upload);
        }
    }

    /// Kills every command and waits (bounded) until each reported its exit.
    async fn stop_all(&mut self) {
        for control in self.execs.values() {
            control.kill();
        }
        let deadline = tokio::time::Instant::now() + WIND_DOWN;
        for (id, control) in self.execs.drain() {
            if tokio::time::timeout_at(deadline, control.finished())
                .await
                .is_err()
            {
                tracing::warn!(id, "command did not finish after SIGKILL");
            }
        }
        self.uploads.clear();
    }

    async fn shutdown(&mut self, id: RequestId) -> ServeOutcome {
        self.stop_all().await;
        let reply = match tokio::task::spawn_blocking(nix::unistd::sync).await {
            Ok(()) => Reply::Ok { id },
            Err(e) => Reply::Error {
                id,
                message: format!("sync failed: {e}"),
            },
        };
        send(&self.replies, reply).await;
        ServeOutcome::Shutdown
    }
}

/// Queues a reply. A closed queue means the writer is gone with the
/// connection; the read loop will notice on its side.
async fn send(replies: &mpsc::Sender<Reply>, reply: Reply) {
    let _ = replies.send(reply).await;
}

async fn protocol_error(replies: &mpsc::Sender<Reply>, err: &ProtocolError) {
    tracing::warn!(error = %render_chain(err), "protocol error");
    let message = render_chain(err);
    send(replies, Reply::ProtocolError { message }).await;
}

/// An error and its sources on one line, for messages sent to the host.
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

/// Writes queued replies, one flush per burst. After a write error it keeps
/// draining the queue so that no task blocks on a dead connection.
async fn write_replies<W>(write: W, mut rx: mpsc::Receiver<Reply>)
where
    W: AsyncWrite + Unpin,
{
    let mut sink = FramedWrite::new(write, MessageCodec::<Reply, Request>::new());
    while let Some(reply) = rx.recv().await {
        let mut result = sink.feed(reply).await;
        while result.is_ok() {
            match rx.try_recv() {
                Ok(reply) => result = sink.feed(reply).await,
                Err(_) => break,
            }
        }
        if result.is_ok() {
            result = sink.flush().await;
        }
        if let Err(e) = result {
            tracing::debug!(error = %render_chain(&e), "cannot write to host");
            while rx.recv().await.is_some() {}
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_by_content_and_length() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
        assert!(!same_secret("", "a"));
    }
}
