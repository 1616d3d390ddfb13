//! A running command, seen from the host.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::shared::Pending;
use super::{AgentClient, ClientError};
use crate::{ExitInfo, OutputStream, Reply, Request, RequestId};

/// A piece of a command's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputChunk {
    pub stream: OutputStream,
    pub data: Bytes,
}

/// A command started by [`AgentClient::start_exec`]. Dropping it before
/// [`wait`](Self::wait) finished cancels the command: nobody could see its
/// result any more.
pub struct ExecHandle {
    client: AgentClient,
    pending: Pending,
    output: mpsc::Sender<OutputChunk>,
    deadline: Option<(Instant, Duration)>,
    finished: bool,
}

impl std::fmt::Debug for ExecHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecHandle")
            .field("id", &self.pending.id())
            .finish_non_exhaustive()
    }
}

impl ExecHandle {
    pub(crate) fn new(
        client: AgentClient,
        pending: Pending,
        output: mpsc::Sender<OutputChunk>,
        deadline: Option<Instant>,
    ) -> ExecHandle {
        let deadline = deadline.map(|at| (at, at.saturating_duration_since(Instant::now())));
        ExecHandle {
            client,
            pending,
            output,
            deadline,
            finished: false,
        }
    }

    /// The request id, for [`AgentClient::cancel`].
    pub fn id(&self) -> RequestId {
        self.pending.id()
    }

    /// Starts the kill ladder; [`wait`](Self::wait) then reports `cancelled`.
    pub async fn cancel(&self) -> Result<(), ClientError> {
        self.client.cancel(self.id()).await
    }

    /// Forwards output until the command exits. A command without a timeout
    /// may run for ever; a dead agent still ends this through the
    /// connection's idle timeout.
    pub async fn wait(mut self) -> Result<ExitInfo, ClientError> {
        const WHAT: &str = "exec";
        loop {
            match self.pending.next_before(self.deadline, WHAT).await? {
                Reply::Output { stream, data, .. } => {
                    // A caller that dropped its receiver does not want the
                    // output; the command still runs to its end.
                    let _ = self.output.send(OutputChunk { stream, data }).await;
                }
                Reply::Exited { info, .. } => {
                    self.finished = true;
                    return Ok(info);
                }
                Reply::Error { message, .. } => {
                    self.finished = true;
                    return Err(ClientError::Remote {
                        what: WHAT,
                        message,
                    });
                }
                other => return Err(ClientError::unexpected(WHAT, &other)),
            }
        }
    }
}

impl Drop for ExecHandle {
    fn drop(&mut self) {
        if !self.finished {
            self.client
                .shared
                .try_send(&Request::Cancel { id: self.id() });
        }
    }
}
