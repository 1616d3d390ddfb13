//! A host process of a VM (QEMU, passt): started in its own process group,
//! watched by a task, killed by pid.
//!
//! The waiter task owns the `Child` and publishes its exit; everyone else
//! holds the pid and a watch on that exit. Killing goes through the pid only
//! while no exit was seen, so a reaped (and possibly reused) pid is never
//! signalled.

use std::io;
use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::os::unix::process::ExitStatusExt;

use tokio::process::{ChildStdout, Command};
use tokio::sync::watch;

pub(crate) struct Process {
    pub name: &'static str,
    pub pid: u32,
    exit: watch::Receiver<Option<ExitStatus>>,
}

impl Process {
    /// Starts `cmd` in a new process group, so a terminal's Ctrl-C reaches
    /// kiln (which then releases its VMs) but not the VMs themselves.
    /// Returns the child's stdout if it was piped.
    pub fn spawn(
        name: &'static str,
        mut cmd: Command,
    ) -> io::Result<(Process, Option<ChildStdout>)> {
        cmd.process_group(0).kill_on_drop(false);
        let mut child = cmd.spawn()?;
        let stdout = child.stdout.take();
        let pid = child
            .id()
            .ok_or_else(|| io::Error::other(format!("{name} exited before its pid was read")))?;
        let (tx, exit) = watch::channel(None);
        tokio::spawn(async move {
            let status = child.wait().await;
            // A wait error leaves nothing to wait for: report a failure.
            let status = status.unwrap_or_else(|_| ExitStatus::from_raw(-1));
            let _ = tx.send(Some(status));
        });
        Ok((Process { name, pid, exit }, stdout))
    }

    /// The exit status, once the process has ended and been reaped.
    pub fn exited(&self) -> Option<ExitStatus> {
        *self.exit.borrow()
    }

    /// Waits up to `limit` for the exit.
    pub async fn wait(&self, limit: Duration) -> Option<ExitStatus> {
        let mut exit = self.exit.clone();
        let waited = tokio::time::timeout(limit, exit.wait_for(Option::is_some)).await;
        match waited {
            Ok(Ok(status)) => *status,
            // The waiter is gone only with the runtime; nothing more to see.
            Ok(Err(_)) | Err(_) => self.exited(),
        }
    }

    /// Resolves when the process has exited (never, if the waiter is gone).
    pub async fn exit(&self) -> ExitStatus {
        let mut exit = self.exit.clone();
        match exit.wait_for(Option::is_some).await.map(|s| *s) {
            Ok(Some(status)) => status,
            _ => std::future::pending().await,
        }
    }

    /// SIGKILL, unless it already exited.
    pub fn kill(&self) {
        if self.exited().is_some() {
            return;
        }
        if let Ok(pid) = i32::try_from(self.pid) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }

    /// SIGKILL, then wait (bounded) for the exit.
    pub async fn kill_and_wait(&self, limit: Duration) -> Option<ExitStatus> {
        self.kill();
        self.wait(limit).await
    }
}

/// Starts a helper daemon of a VM (passt, vhost-device-vsock) with its
/// output in `log`, and waits up to `wait` until it has created `socket`,
/// which QEMU connects to at start-up. Errors name `name` and carry the
/// daemon's log when it exited; a daemon still without its socket is killed.
pub(crate) async fn start_socket_daemon(
    name: &'static str,
    mut cmd: Command,
    socket: &std::path::Path,
    log: &std::path::Path,
    wait: Duration,
) -> Result<Process, String> {
    let out =
        std::fs::File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("cannot duplicate a file handle: {e}"))?;
    cmd.stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err);
    let binary = cmd.as_std().get_program().to_owned();
    let (daemon, _) = Process::spawn(name, cmd)
        .map_err(|e| format!("cannot start {}: {e}", binary.to_string_lossy()))?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if socket.exists() {
            return Ok(daemon);
        }
        if let Some(status) = daemon.exited() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!("{name} exited ({status}): {}", log.trim()));
        }
        if tokio::time::Instant::now() >= deadline {
            daemon.kill();
            return Err(format!("{name} did not create its socket within {wait:?}"));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
