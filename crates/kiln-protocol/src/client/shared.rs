//! The state shared by an [`AgentClient`](super::AgentClient)'s clones and
//! its tasks: who waits for which id, and why the connection ended.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::codec::FramedRead;

use super::error::render_chain;
use super::{ClientConfig, ClientError, LostReason};
use crate::{
    FrameCodec, PROTOCOL_VERSION, ProtocolError, Reply, Request, RequestId, decode_message,
    encode_message, peek_protocol_version,
};

/// Where `HelloOk` / `HelloRejected` (which carry no id) are routed.
pub(crate) const HANDSHAKE_ID: RequestId = 0;

/// Replies buffered per request before the reader waits for its consumer:
/// that wait is what slows the agent down when output is not consumed.
const PENDING_QUEUE: usize = 32;

pub(crate) struct Shared {
    pub(crate) config: ClientConfig,
    /// Set once the handshake succeeded: from then on silence is fatal.
    pub(crate) keepalive: AtomicBool,
    next_id: AtomicU64,
    frames: mpsc::Sender<Bytes>,
    state: Mutex<State>,
}

struct State {
    pending: HashMap<RequestId, mpsc::Sender<Reply>>,
    lost: Option<LostReason>,
}

impl Shared {
    pub(crate) fn new(config: ClientConfig, frames: mpsc::Sender<Bytes>) -> Shared {
        Shared {
            config,
            keepalive: AtomicBool::new(false),
            next_id: AtomicU64::new(HANDSHAKE_ID + 1),
            frames,
            state: Mutex::new(State {
                pending: HashMap::new(),
                lost: None,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn next_id(&self) -> RequestId {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn lost(&self) -> Option<LostReason> {
        self.state().lost.clone()
    }

    /// Claims the replies to `id`. Checking `lost` under the same lock as
    /// the insert means no one registers after the pending map was emptied.
    pub(crate) fn register(self: &Arc<Self>, id: RequestId) -> Result<Pending, ClientError> {
        let (tx, rx) = mpsc::channel(PENDING_QUEUE);
        let mut state = self.state();
        if let Some(reason) = &state.lost {
            return Err(ClientError::lost(reason.clone()));
        }
        if state.pending.contains_key(&id) {
            return Err(ClientError::HandshakeInProgress);
        }
        state.pending.insert(id, tx);
        Ok(Pending {
            id,
            rx,
            shared: self.clone(),
        })
    }

    pub(crate) fn register_new(self: &Arc<Self>) -> Result<(RequestId, Pending), ClientError> {
        let id = self.next_id();
        Ok((id, self.register(id)?))
    }

    /// Ends the connection for everyone: the first reason wins, and dropping
    /// the senders wakes every waiting call.
    fn fail(&self, reason: LostReason) {
        let mut state = self.state();
        state.lost.get_or_insert(reason);
        state.pending.clear();
    }

    fn route(&self, id: RequestId) -> Option<mpsc::Sender<Reply>> {
        self.state().pending.get(&id).cloned()
    }

    fn encode(req: &Request) -> Result<Bytes, ClientError> {
        let mut buf = BytesMut::new();
        encode_message(req, &mut buf).map_err(ClientError::Encode)?;
        Ok(buf.freeze())
    }

    /// Queues `req` for the writer. Encoding happens here so that a request
    /// too large for a frame fails its caller only.
    pub(crate) async fn send(&self, req: &Request) -> Result<(), ClientError> {
        if let Some(reason) = self.lost() {
            return Err(ClientError::lost(reason));
        }
        let frame = Self::encode(req)?;
        let limit = self.config.request_timeout;
        match tokio::time::timeout(limit, self.frames.send(frame)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_closed)) => Err(ClientError::lost(self.lost().unwrap_or(LostReason::Closed))),
            Err(_elapsed) => Err(ClientError::SendTimeout(limit)),
        }
    }

    /// Best effort, for `Drop` impls that cannot wait.
    pub(crate) fn try_send(&self, req: &Request) {
        if let Ok(frame) = Self::encode(req) {
            let _ = self.frames.try_send(frame);
        }
    }
}

/// The receiving end of one request's replies; unregisters on drop, so a
/// caller that gives up (timeout, dropped future) leaves nothing behind.
pub(crate) struct Pending {
    id: RequestId,
    rx: mpsc::Receiver<Reply>,
    shared: Arc<Shared>,
}

impl Pending {
    pub(crate) fn id(&self) -> RequestId {
        self.id
    }

    pub(crate) async fn next(
        &mut self,
        limit: Duration,
        what: &'static str,
    ) -> Result<Reply, ClientError> {
        self.next_before(Some((Instant::now() + limit, limit)), what)
            .await
    }

    /// The next reply, failing at `deadline` (the instant and the allowance
    /// it stands for, for the message) if given.
    pub(crate) async fn next_before(
        &mut self,
        deadline: Option<(Instant, Duration)>,
        what: &'static str,
    ) -> Result<Reply, ClientError> {
        let reply = match deadline {
            Some((at, after)) => tokio::time::timeout_at(at.into(), self.rx.recv())
                .await
                .map_err(|_| ClientError::Timeout { what, after })?,
            None => self.rx.recv().await,
        };
        reply.ok_or_else(|| ClientError::lost(self.shared.lost().unwrap_or(LostReason::Closed)))
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.shared.state().pending.remove(&self.id);
    }
}

/// The connection's tasks, aborted when the last client clone goes away
/// (which closes the stream).
#[derive(Default)]
pub(crate) struct Tasks(Mutex<Vec<JoinHandle<()>>>);

impl Tasks {
    pub(crate) fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let handle = tokio::spawn(task);
        let mut handles = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // One task per command: forget the finished ones.
        handles.retain(|h| !h.is_finished());
        handles.push(handle);
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        let handles = self.0.get_mut().unwrap_or_else(PoisonError::into_inner);
        for handle in handles.drain(..) {
            handle.abort();
        }
    }
}

/// Reads replies and routes them by id until the connection ends, then
/// fails every waiting call with the reason.
pub(crate) async fn read_loop<R>(read: R, shared: Arc<Shared>)
where
    R: AsyncRead + Unpin,
{
    let idle = shared.config.idle_timeout;
    let mut frames = FramedRead::new(read, FrameCodec::new());
    let mut last_frame = Instant::now();
    let reason = loop {
        // Always wake up at least every `idle`: the keepalive flag may be
        // turned on while this read is already waiting.
        let next = match tokio::time::timeout(idle, frames.next()).await {
            Ok(next) => next,
            Err(_elapsed) => {
                if shared.keepalive.load(Ordering::SeqCst) && last_frame.elapsed() >= idle {
                    break LostReason::Unresponsive(idle);
                }
                continue;
            }
        };
        last_frame = Instant::now();
        let payload = match next {
            None => break LostReason::Closed,
            Some(Err(ProtocolError::Io(e))) => break io_reason(&e),
            Some(Err(e)) => break LostReason::Malformed(render_chain(&e)),
            Some(Ok(payload)) => payload,
        };
        let reply = match decode_message::<Reply>(&payload) {
            Ok(reply) => reply,
            Err(e) => {
                break match peek_protocol_version(&payload, 2) {
                    Some(agent) if agent != PROTOCOL_VERSION => LostReason::VersionMismatch {
                        host: PROTOCOL_VERSION,
                        agent,
                    },
                    _ => LostReason::Malformed(render_chain(&e)),
                };
            }
        };
        let id = match (&reply, reply.id()) {
            (_, Some(id)) => id,
            (Reply::ProtocolError { message }, None) => {
                break LostReason::AgentProtocolError(message.clone());
            }
            (_, None) => HANDSHAKE_ID,
        };
        match shared.route(id) {
            // A closed receiver means its caller gave up; nothing to do.
            Some(tx) => drop(tx.send(reply).await),
            None => tracing::trace!(id, ?reply, "reply to a request nobody waits for"),
        }
    };
    tracing::debug!(%reason, "agent connection ended");
    shared.fail(reason);
}

/// Writes queued frames, flushing once per burst.
pub(crate) async fn write_loop<W>(mut write: W, mut rx: mpsc::Receiver<Bytes>, shared: Arc<Shared>)
where
    W: AsyncWrite + Unpin,
{
    while let Some(frame) = rx.recv().await {
        let mut result = write.write_all(&frame).await;
        while result.is_ok() {
            match rx.try_recv() {
                Ok(frame) => result = write.write_all(&frame).await,
                Err(_) => break,
            }
        }
        if result.is_ok() {
            result = write.flush().await;
        }
        if let Err(e) = result {
            shared.fail(io_reason(&e));
            return;
        }
    }
}

/// A reset or broken connection is the agent hanging up (with requests
/// still unread), not a fault of the channel.
fn io_reason(e: &std::io::Error) -> LostReason {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::UnexpectedEof => {
            LostReason::Closed
        }
        _ => LostReason::Io(render_chain(e)),
    }
}
