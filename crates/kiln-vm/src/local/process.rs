//! Running one host process: spawn in its own group, pump output, stop it
//! with the kill ladder on timeout or cancellation.

use std::collections::BTreeSet;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::group;
use crate::{ExecRequest, ExecResult, KillGrace, OutputChunk, OutputStream, VmError};

/// How often group liveness is checked while a ladder step waits.
const POLL: Duration = Duration::from_millis(20);
/// How long to wait after SIGKILL before giving up on a process (D state).
const KILL_WAIT: Duration = Duration::from_secs(5);
/// After the command exits, how long its output may take to reach EOF. A
/// background process that keeps the pipes open (`server &`) must not hold
/// the step forever; its later output is read and discarded.
const OUTPUT_DRAIN: Duration = Duration::from_millis(200);

/// Process groups a machine has started and that may still run; killed on
/// release.
pub(crate) type Groups = Arc<Mutex<BTreeSet<i32>>>;

/// Where output goes; `None` once the exec has returned, so no chunk can
/// arrive after the result.
type Sink = Arc<Mutex<Option<UnboundedSender<OutputChunk>>>>;

enum Interrupt {
    Timeout,
    Cancel,
}

pub(crate) async fn run(
    req: &ExecRequest,
    cwd: &str,
    grace: KillGrace,
    output: UnboundedSender<OutputChunk>,
    groups: &Groups,
) -> Result<ExecResult, VmError> {
    let start = Instant::now();
    if req.cancel.is_cancelled() {
        // Nothing to stop: do not start what was already cancelled.
        return Ok(ExecResult {
            exit_code: None,
            signal: None,
            timed_out: false,
            cancelled: true,
            duration: start.elapsed(),
        });
    }
    let program = req
        .argv
        .first()
        .ok_or_else(|| VmError::InvalidRequest("empty argv".to_owned()))?;
    let mut cmd = Command::new(program);
    cmd.args(&req.argv[1..])
        .env_clear()
        .envs(req.effective_env())
        .current_dir(cwd)
        .process_group(0)
        .stdin(if req.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| VmError::Spawn {
        program: program.clone(),
        source,
    })?;
    let pgid = child
        .id()
        .and_then(|pid| i32::try_from(pid).ok())
        .ok_or_else(|| exec_error("spawned process has no pid", None))?;
    lock(groups).insert(pgid);
    let mut guard = KillOnDrop(Some(pgid));

    if let (Some(data), Some(mut stdin)) = (req.stdin.clone(), child.stdin.take()) {
        // A command that never reads its stdin makes this fail: that is fine.
        tokio::spawn(async move {
            let _ = stdin.write_all(&data).await;
        });
    }
    let sink: Sink = Arc::new(Mutex::new(Some(output)));
    let mut pump = tokio::spawn(pump(child.stdout.take(), child.stderr.take(), sink.clone()));
    let mut waiter = tokio::spawn(async move { child.wait().await });

    let timeout = async {
        match req.timeout {
            Some(t) => tokio::time::sleep_until(start + t).await,
            None => std::future::pending().await,
        }
    };
    let interrupted = tokio::select! {
        status = &mut waiter => Ok(joined(status)?),
        () = timeout => Err(Interrupt::Timeout),
        () = req.cancel.cancelled() => Err(Interrupt::Cancel),
    };
    let (status, interrupt) = match interrupted {
        Ok(status) => (status, None),
        Err(why) => (ladder(pgid, grace, &mut waiter).await?, Some(why)),
    };
    guard.0 = None;

    if tokio::time::timeout(OUTPUT_DRAIN, &mut pump).await.is_err() {
        lock(&sink).take();
    }
    if !group::alive(pgid) {
        lock(groups).remove(&pgid);
    }
    Ok(ExecResult {
        exit_code: status.code(),
        signal: status.signal(),
        timed_out: matches!(interrupt, Some(Interrupt::Timeout)),
        cancelled: matches!(interrupt, Some(Interrupt::Cancel)),
        duration: start.elapsed(),
    })
}

/// GitHub's ladder over the whole group: SIGINT, wait, SIGTERM, wait, SIGKILL.
/// A step ends early once the leader is reaped *and* no group member runs,
/// so background children cannot outlive a cancelled command.
async fn ladder(
    pgid: i32,
    grace: KillGrace,
    waiter: &mut JoinHandle<io::Result<ExitStatus>>,
) -> Result<ExitStatus, VmError> {
    let mut status = None;
    let steps = [
        (Signal::SIGINT, grace.interrupt),
        (Signal::SIGTERM, grace.terminate),
        (Signal::SIGKILL, KILL_WAIT),
    ];
    for (signal, wait) in steps {
        tracing::debug!(pgid, ?signal, "stopping process group");
        group::signal(pgid, signal);
        let until = Instant::now() + wait;
        loop {
            if status.is_none() {
                tokio::select! {
                    s = &mut *waiter => status = Some(joined(s)?),
                    () = tokio::time::sleep(POLL) => {}
                }
            } else {
                tokio::time::sleep(POLL).await;
            }
            if let Some(status) = status.filter(|_| !group::alive(pgid)) {
                return Ok(status);
            }
            if Instant::now() >= until {
                break;
            }
        }
    }
    status.ok_or_else(|| exec_error("process survived SIGKILL", None))
}

/// Forwards both pipes until EOF. Once the sink is gone it keeps reading and
/// discards, so background writers do not die of SIGPIPE.
async fn pump(
    mut stdout: Option<impl AsyncRead + Unpin>,
    mut stderr: Option<impl AsyncRead + Unpin>,
    sink: Sink,
) {
    let mut out_buf = vec![0u8; 16 * 1024];
    let mut err_buf = vec![0u8; 16 * 1024];
    while stdout.is_some() || stderr.is_some() {
        let (stream, read) = tokio::select! {
            r = read_some(&mut stdout, &mut out_buf) => (OutputStream::Stdout, r),
            r = read_some(&mut stderr, &mut err_buf) => (OutputStream::Stderr, r),
        };
        let buf = match stream {
            OutputStream::Stdout => &out_buf,
            OutputStream::Stderr => &err_buf,
        };
        match read {
            Ok(n) if n > 0 => {
                if let Some(tx) = lock(&sink).as_ref() {
                    let _ = tx.send(OutputChunk {
                        stream,
                        data: buf[..n].to_vec(),
                    });
                }
            }
            _ => match stream {
                OutputStream::Stdout => stdout = None,
                OutputStream::Stderr => stderr = None,
            },
        }
    }
}

async fn read_some<R: AsyncRead + Unpin>(
    pipe: &mut Option<R>,
    buf: &mut [u8],
) -> io::Result<usize> {
    match pipe {
        Some(pipe) => pipe.read(buf).await,
        None => std::future::pending().await,
    }
}

/// Kills the group if the exec future is dropped before the command ended:
/// a caller that gives up must not leave it running (no grace: the caller
/// chose not to wait; use the cancel token for a graceful stop).
struct KillOnDrop(Option<i32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            group::signal(pgid, Signal::SIGKILL);
        }
    }
}

fn joined(
    res: Result<io::Result<ExitStatus>, tokio::task::JoinError>,
) -> Result<ExitStatus, VmError> {
    match res {
        Ok(Ok(status)) => Ok(status),
        Ok(Err(e)) => Err(exec_error("waiting for the process failed", Some(e))),
        Err(e) => Err(exec_error(&format!("process waiter failed: {e}"), None)),
    }
}

fn exec_error(reason: &str, source: Option<io::Error>) -> VmError {
    VmError::Exec {
        reason: reason.to_owned(),
        source,
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
