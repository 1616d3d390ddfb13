//! A running microVM: its host processes and state directory ([`Machine`]),
//! and the [`Vm`] operations mapped onto its agent connection.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use kiln_protocol::{AgentClient, ClientError};
use tokio::sync::mpsc::{self, UnboundedSender};
use tokio::task::JoinHandle;

use super::console;
use super::process::Process;
use super::state::StateDir;
use crate::path::normalize;
use crate::{ExecRequest, ExecResult, GuestLayout, OutputChunk, OutputStream, Vm, VmError, VmId};

/// How long a SIGKILLed process may take to be reaped.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// How long the console pump may take to finish after QEMU's exit.
const CONSOLE_WAIT: Duration = Duration::from_secs(1);
/// Console lines quoted in errors.
pub(crate) const CONSOLE_LINES: usize = 15;

/// The host side of one VM. Dropping it kills QEMU, passt and the vsock
/// daemon and deletes the
/// state directory, synchronously: the safety net for every early return
/// between the first file and a handed-out VM, and for a VM never released.
pub(crate) struct Machine {
    pub id: VmId,
    pub dir: StateDir,
    pub qemu: Option<Process>,
    pub passt: Option<Process>,
    /// The vsock transport's `vhost-device-vsock`.
    pub vsock: Option<Process>,
    pub console: Option<JoinHandle<()>>,
    destroyed: bool,
}

impl Machine {
    pub fn new(id: VmId, dir: StateDir) -> Machine {
        Machine {
            id,
            dir,
            qemu: None,
            passt: None,
            vsock: None,
            console: None,
            destroyed: false,
        }
    }

    fn processes(&self) -> impl Iterator<Item = &Process> {
        // QEMU first: the daemon outlives its device for no one.
        self.qemu
            .iter()
            .chain(self.passt.iter())
            .chain(self.vsock.iter())
    }

    /// Kills what still runs, waits for it (bounded), deletes the directory.
    pub async fn destroy(&mut self) -> Result<(), VmError> {
        let mut survivors = Vec::new();
        for process in self.processes() {
            if process.kill_and_wait(KILL_WAIT).await.is_none() {
                survivors.push(format!("{} (pid {})", process.name, process.pid));
            }
        }
        self.finish_console().await;
        let removed = self.dir.remove();
        self.destroyed = true;
        if !survivors.is_empty() {
            return Err(VmError::Exec {
                reason: format!("vm {}: {} survived SIGKILL", self.id, survivors.join(", ")),
                source: None,
            });
        }
        removed
            .map_err(|e| VmError::io("delete vm directory", &self.dir.path().to_string_lossy(), e))
    }

    /// Waits (bounded) for the console pump to write out what QEMU printed.
    pub async fn finish_console(&mut self) {
        if let Some(task) = self.console.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(CONSOLE_WAIT, task).await.is_err() {
                abort.abort();
            }
        }
    }

    /// The last console lines, for error messages.
    pub fn console_tail(&self) -> String {
        console::tail(&self.dir.console_log(), CONSOLE_LINES)
    }

    /// QEMU's own last complaint (bad option, missing file), if any.
    pub fn qemu_log_tail(&self) -> String {
        console::tail(&self.dir.qemu_log(), 3)
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if self.destroyed {
            return;
        }
        for process in self.processes() {
            process.kill();
        }
        if let Some(task) = &self.console {
            task.abort();
        }
        if let Err(e) = self.dir.remove() {
            tracing::warn!(vm = %self.id, error = %e, "could not delete the state directory");
        }
    }
}

/// Settings every VM of a provider shares.
#[derive(Debug, Clone)]
pub(crate) struct VmSettings {
    pub shutdown_timeout: Duration,
}

/// One QEMU microVM with a connected guest agent.
pub struct QemuVm {
    pub(crate) machine: Machine,
    pub(crate) client: AgentClient,
    pub(crate) layout: GuestLayout,
    pub(crate) settings: Arc<VmSettings>,
}

impl QemuVm {
    /// The state directory on the host (console.log, sockets, overlay).
    pub fn state_dir(&self) -> &std::path::Path {
        self.machine.dir.path()
    }

    /// QEMU's pid.
    pub fn qemu_pid(&self) -> Option<u32> {
        self.machine.qemu.as_ref().map(|p| p.pid)
    }

    /// The vsock daemon's pid (vsock transport).
    pub fn vsock_daemon_pid(&self) -> Option<u32> {
        self.machine.vsock.as_ref().map(|p| p.pid)
    }

    /// A round trip through the agent.
    pub async fn ping(&self) -> Result<Duration, VmError> {
        self.client
            .ping()
            .await
            .map_err(|e| self.lost_or(e, |e| exec_error("ping", e)))
    }

    /// Maps a client error: a lost connection means a dead VM, and says
    /// why with the console's last lines; anything else goes to `other`.
    fn lost_or(&self, err: ClientError, other: impl FnOnce(ClientError) -> VmError) -> VmError {
        match err {
            ClientError::ConnectionLost(_)
            | ClientError::Timeout { .. }
            | ClientError::SendTimeout(_) => {
                let qemu = match self.machine.qemu.as_ref().and_then(Process::exited) {
                    Some(status) => format!("qemu exited ({status})"),
                    None => "qemu still runs".to_owned(),
                };
                VmError::Exec {
                    reason: format!(
                        "vm {} failed: {qemu}; console (last lines):\n{}",
                        self.machine.id,
                        self.machine.console_tail()
                    ),
                    source: Some(io::Error::other(err)),
                }
            }
            err => other(err),
        }
    }
}

fn exec_error(what: &str, err: ClientError) -> VmError {
    VmError::Exec {
        reason: format!("agent {what} failed"),
        source: Some(io::Error::other(err)),
    }
}

/// The agent reports file errors as text ending in Rust's `(os error N)`;
/// recovering the kind lets callers tell "not found" from a broken VM.
fn remote_io(message: String) -> io::Error {
    let code = message
        .rsplit_once("(os error ")
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .and_then(|n| n.parse::<i32>().ok());
    match code {
        Some(code) => io::Error::new(io::Error::from_raw_os_error(code).kind(), message),
        None => io::Error::other(message),
    }
}

fn to_protocol(req: &ExecRequest, cwd: String) -> kiln_protocol::ExecRequest {
    kiln_protocol::ExecRequest {
        argv: req.argv.clone(),
        env: req.effective_env(),
        cwd: Some(cwd),
        stdin: req.stdin.clone().map(Bytes::from),
        timeout_ms: req
            .timeout
            .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
    }
}

#[async_trait]
impl Vm for QemuVm {
    fn id(&self) -> &VmId {
        &self.machine.id
    }

    fn layout(&self) -> &GuestLayout {
        &self.layout
    }

    async fn exec(
        &self,
        req: ExecRequest,
        output: UnboundedSender<OutputChunk>,
    ) -> Result<ExecResult, VmError> {
        let started = Instant::now();
        let program = req
            .argv
            .first()
            .cloned()
            .ok_or_else(|| VmError::InvalidRequest("empty argv".to_owned()))?;
        let cwd = normalize(req.cwd.as_deref().unwrap_or(&self.layout.workspace_root))?;
        if req.cancel.is_cancelled() {
            // Do not start what was already cancelled.
            return Ok(ExecResult {
                exit_code: None,
                signal: None,
                timed_out: false,
                cancelled: true,
                duration: started.elapsed(),
            });
        }
        let (tx, mut rx) = mpsc::channel(64);
        let spawn_failed = |e: ClientError| match e {
            ClientError::Remote { message, .. } => VmError::Spawn {
                program: program.clone(),
                source: remote_io(message),
            },
            e => self.lost_or(e, |e| exec_error("exec", e)),
        };
        let run = async {
            let handle = self
                .client
                .start_exec(to_protocol(&req, cwd), tx)
                .await
                .map_err(&spawn_failed)?;
            let id = handle.id();
            let wait = handle.wait();
            tokio::pin!(wait);
            let info = tokio::select! {
                info = &mut wait => info,
                () = req.cancel.cancelled() => {
                    // The agent runs the ladder; the exit says `cancelled`.
                    if let Err(e) = self.client.cancel(id).await {
                        tracing::debug!(error = %e, "cannot send cancel");
                    }
                    wait.await
                }
            };
            info.map_err(&spawn_failed)
        };
        // Forward output while the command runs; this ends when the handle
        // (the last sender) is gone, so nothing arrives after the result.
        let forward = async {
            while let Some(chunk) = rx.recv().await {
                let stream = match chunk.stream {
                    kiln_protocol::OutputStream::Stdout => OutputStream::Stdout,
                    kiln_protocol::OutputStream::Stderr => OutputStream::Stderr,
                };
                let _ = output.send(OutputChunk {
                    stream,
                    data: chunk.data.to_vec(),
                });
            }
        };
        let (info, ()) = tokio::join!(run, forward);
        let info = info?;
        Ok(ExecResult {
            exit_code: info.exit_code,
            signal: info.signal,
            timed_out: info.timed_out,
            cancelled: info.cancelled,
            duration: Duration::from_millis(info.duration_ms),
        })
    }

    async fn put_file(
        &self,
        guest_path: &str,
        contents: Vec<u8>,
        mode: u32,
    ) -> Result<(), VmError> {
        let path = normalize(guest_path)?;
        self.client
            .put_file(&path, mode, contents)
            .await
            .map_err(|e| self.file_error("write", &path, e))
    }

    async fn get_file(&self, guest_path: &str) -> Result<Vec<u8>, VmError> {
        let path = normalize(guest_path)?;
        self.client
            .get_file(&path)
            .await
            .map_err(|e| self.file_error("read", &path, e))
    }

    async fn put_archive(&self, guest_dir: &str, tar: Vec<u8>) -> Result<(), VmError> {
        let dir = normalize(guest_dir)?;
        self.client
            .put_archive(&dir, tar)
            .await
            .map_err(|e| self.file_error("unpack archive into", &dir, e))
    }

    async fn get_archive(&self, guest_dir: &str) -> Result<Vec<u8>, VmError> {
        let dir = normalize(guest_dir)?;
        self.client
            .get_archive(&dir)
            .await
            .map_err(|e| self.file_error("archive", &dir, e))
    }

    /// Asks the agent to stop everything, sync and power off; waits
    /// (bounded) for QEMU to exit; kills whatever is left; deletes the
    /// state directory.
    async fn release(mut self: Box<Self>) -> Result<(), VmError> {
        let limit = self.settings.shutdown_timeout;
        let graceful = match tokio::time::timeout(limit, self.client.shutdown()).await {
            Ok(Ok(())) => match &self.machine.qemu {
                Some(qemu) => qemu.wait(limit).await.is_some(),
                None => true,
            },
            Ok(Err(e)) => {
                tracing::debug!(vm = %self.machine.id, error = %e, "agent shutdown failed");
                false
            }
            Err(_) => false,
        };
        if !graceful {
            tracing::warn!(
                vm = %self.machine.id,
                "the guest did not power off within {limit:?}; killing qemu"
            );
        }
        let destroyed = self.machine.destroy().await;
        tracing::debug!(vm = %self.machine.id, graceful, "released qemu vm");
        destroyed
    }

    /// QEMU (and the vsock daemon, if any: vsock dies with it) still run
    /// and the agent connection is up.
    fn is_alive(&self) -> bool {
        let qemu_runs = self
            .machine
            .qemu
            .as_ref()
            .is_some_and(|q| q.exited().is_none());
        let daemon_runs = self
            .machine
            .vsock
            .as_ref()
            .is_none_or(|d| d.exited().is_none());
        qemu_runs && daemon_runs && self.client.lost().is_none()
    }

    /// An agent ping.
    async fn health_check(&self) -> Result<(), VmError> {
        self.ping().await.map(drop)
    }
}

impl QemuVm {
    fn file_error(&self, op: &'static str, path: &str, err: ClientError) -> VmError {
        self.lost_or(err, |err| match err {
            ClientError::Remote { message, .. } => VmError::io(op, path, remote_io(message)),
            err => VmError::Io {
                op,
                path: path.to_owned(),
                source: io::Error::other(err),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_errors_keep_their_kind() {
        let e = remote_io("cannot read /x: No such file or directory (os error 2)".into());
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("/x"));
        let e = remote_io("cannot archive /f: not a directory".into());
        assert_eq!(e.kind(), io::ErrorKind::Other);
    }
}
