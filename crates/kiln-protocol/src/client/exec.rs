//! A running command, seen from the host.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::shared::Pending;
use super::{AgentClient, ClientError, LostReason};
use crate::{ExitInfo, OutputStream, Reply, Request, RequestId};

/// A piece of a command's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputChunk {
    pub stream: OutputStream,
    pub data: Bytes,
}

/// A command started by [`AgentClient::start_exec`]. Its output is forwarded
/// by a task of the connection whether or not anyone waits yet. Dropping the
/// handle before [`wait`](Self::wait) returned cancels the command: nobody
/// could see its result any more.
pub struct ExecHandle {
    id: RequestId,
    client: AgentClient,
    exit: oneshot::Receiver<Result<ExitInfo, ClientError>>,
    finished: bool,
}

impl std::fmt::Debug for ExecHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecHandle")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl ExecHandle {
    /// `deadline`: when the command must have ended at the latest (its own
    /// timeout plus the kill ladder plus slack).
    pub(crate) fn start(
        client: AgentClient,
        pending: Pending,
        output: mpsc::Sender<OutputChunk>,
        deadline: Option<Instant>,
    ) -> ExecHandle {
        let id = pending.id();
        let deadline = deadline.map(|at| (at, at.saturating_duration_since(Instant::now())));
        let (exit_tx, exit) = oneshot::channel();
        client.tasks.spawn(async move {
            let result = forward(pending, output, deadline).await;
            let _ = exit_tx.send(result);
        });
        ExecHandle {
            id,
            client,
            exit,
            finished: false,
        }
    }

    /// The request id, for [`AgentClient::cancel`].
    pub fn id(&self) -> RequestId {
        self.id
    }

    /// Starts the kill ladder; [`wait`](Self::wait) then reports `cancelled`.
    pub async fn cancel(&self) -> Result<(), ClientError> {
        self.client.cancel(self.id).await
    }

    /// Waits for the exit. A command without a timeout may run for ever; a
    /// dead agent still ends this through the connection's idle timeout.
    pub async fn wait(mut self) -> Result<ExitInfo, ClientError> {
        let result = (&mut self.exit).await;
        self.finished = true;
        result.unwrap_or_else(|_| {
            Err(ClientError::lost(
                self.client.lost().unwrap_or(LostReason::Closed),
            ))
        })
    }
}

/// Moves output to the caller until the exit (or an error) arrives.
async fn forward(
    mut pending: Pending,
    output: mpsc::Sender<OutputChunk>,
    deadline: Option<(Instant, Duration)>,
) -> Result<ExitInfo, ClientError> {
    const WHAT: &str = "exec";
    loop {
        match pending.next_before(deadline, WHAT).await? {
            Reply::Output { stream, data, .. } => {
                // A caller that dropped its receiver does not want the
                // output; the command still runs to its end.
                let _ = output.send(OutputChunk { stream, data }).await;
            }
            Reply::Exited { info, .. } => return Ok(info),
            Reply::Error { message, .. } => {
                return Err(ClientError::Remote {
                    what: WHAT,
                    message,
                });
            }
            other => return Err(ClientError::unexpected(WHAT, &other)),
        }
    }
}

impl Drop for ExecHandle {
    fn drop(&mut self) {
        if !self.finished {
            self.client
                .shared
                .try_send(&Request::Cancel { id: self.id });
        }
    }
}
