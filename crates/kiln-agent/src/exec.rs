//! Running one command: a process group with exactly the requested env, cwd
//! and stdin; output streamed as it is read; the kill ladder on timeout or
//! cancel.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use kiln_protocol::{ExecRequest, ExitInfo, KillGrace, OutputStream, Reply, RequestId};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Bytes read from a pipe per output message.
const OUTPUT_CHUNK: usize = 64 * 1024;

/// After the command exits, its pipes may still be held open by background
/// processes it started. Output is collected until the pipes close, or until
/// they stay silent this long...
const DRAIN_IDLE: Duration = Duration::from_millis(200);
/// ...or at most this long in all, so a chatty daemon cannot hold a step.
const DRAIN_MAX: Duration = Duration::from_secs(5);

enum Stop {
    /// The ladder: SIGINT, SIGTERM, SIGKILL with the connection's graces.
    Cancel,
    /// SIGKILL now (the connection is ending).
    Kill,
}

/// The connection's handle on a running command.
pub(crate) struct ExecControl {
    stop: mpsc::Sender<Stop>,
    task: JoinHandle<()>,
}

impl ExecControl {
    pub(crate) fn cancel(&self) {
        // A full queue already holds a stop request; one is enough.
        let _ = self.stop.try_send(Stop::Cancel);
    }

    pub(crate) fn kill(&self) {
        let _ = self.stop.try_send(Stop::Kill);
    }

    /// Resolves once the command's last reply has been queued.
    pub(crate) async fn finished(self) {
        let _ = self.task.await;
    }
}

/// Commands must start with default signal dispositions whatever the agent
/// inherited: an agent started in the background by a shell (or by `nohup`)
/// has SIGINT and SIGQUIT (SIGHUP) ignored, an ignored signal stays ignored
/// across `exec`, and then the ladder's SIGINT does nothing and bash cannot
/// even trap it. Installing a handler is the safe-code way to undo that:
/// `exec` resets handled signals to their default. The agent itself then
/// swallows these signals, which suits a daemon.
pub(crate) fn reset_inherited_signal_ignores() {
    use tokio::signal::unix::{SignalKind, signal};
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for kind in [
            SignalKind::interrupt(),
            SignalKind::quit(),
            SignalKind::hangup(),
        ] {
            // The handler stays installed after the stream is dropped.
            if let Err(e) = signal(kind) {
                tracing::warn!(error = %e, "cannot reset an inherited signal disposition");
            }
        }
    });
}

/// Starts command `id`; its replies (output, then `Exited` or `Error`) go to
/// `replies`, and its id to `finished` once it is over.
pub(crate) fn spawn(
    id: RequestId,
    req: ExecRequest,
    grace: KillGrace,
    replies: mpsc::Sender<Reply>,
    finished: mpsc::UnboundedSender<RequestId>,
) -> ExecControl {
    let (stop_tx, stop_rx) = mpsc::channel(2);
    let task = tokio::spawn(async move {
        let reply = match run(id, req, grace, &replies, stop_rx).await {
            Ok(info) => Reply::Exited { id, info },
            Err(message) => Reply::Error { id, message },
        };
        let _ = replies.send(reply).await;
        let _ = finished.send(id);
    });
    ExecControl {
        stop: stop_tx,
        task,
    }
}

/// Why a command ended, as far as the agent is concerned.
enum Ending {
    Exited(io::Result<ExitStatus>),
    TimedOut,
    Stop(Option<Stop>),
}

async fn run(
    id: RequestId,
    req: ExecRequest,
    grace: KillGrace,
    replies: &mpsc::Sender<Reply>,
    mut stop: mpsc::Receiver<Stop>,
) -> Result<ExitInfo, String> {
    let started = Instant::now();
    let mut child = command(&req)?.spawn().map_err(|e| spawn_error(&req, &e))?;
    let pgid = child
        .id()
        .and_then(|pid| i32::try_from(pid).ok())
        .map(Pid::from_raw)
        .ok_or_else(|| "the command exited before its pid was known".to_owned())?;

    if let (Some(data), Some(mut stdin)) = (req.stdin, child.stdin.take()) {
        // A command that does not read its stdin must not block the agent:
        // the write runs on its own and a broken pipe is not an error.
        tokio::spawn(async move {
            let _ = stdin.write_all(&data).await;
        });
    }
    let (exited_tx, exited_rx) = watch::channel(false);
    let mut pumps = Vec::with_capacity(2);
    if let Some(out) = child.stdout.take() {
        let (replies, exited) = (replies.clone(), exited_rx.clone());
        pumps.push(tokio::spawn(pump(
            id,
            OutputStream::Stdout,
            out,
            replies,
            exited,
        )));
    }
    if let Some(err) = child.stderr.take() {
        let (replies, exited) = (replies.clone(), exited_rx);
        pumps.push(tokio::spawn(pump(
            id,
            OutputStream::Stderr,
            err,
            replies,
            exited,
        )));
    }

    let timeout = async {
        match req.timeout_ms {
            Some(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            None => std::future::pending().await,
        }
    };
    let ending = tokio::select! {
        status = child.wait() => Ending::Exited(status),
        () = timeout => Ending::TimedOut,
        stop = stop.recv() => Ending::Stop(stop),
    };
    let (mut timed_out, mut cancelled) = (false, false);
    let status = match ending {
        Ending::Exited(status) => status,
        Ending::TimedOut => {
            timed_out = true;
            ladder(&mut child, pgid, grace, &mut stop).await
        }
        Ending::Stop(Some(Stop::Cancel)) => {
            cancelled = true;
            ladder(&mut child, pgid, grace, &mut stop).await
        }
        Ending::Stop(Some(Stop::Kill) | None) => {
            signal_group(pgid, Signal::SIGKILL);
            child.wait().await
        }
    };
    if timed_out || cancelled {
        // The leader may have honoured SIGINT while its children ignored it;
        // a stopped step leaves nothing behind.
        signal_group(pgid, Signal::SIGKILL);
    }
    let status = status.map_err(|e| format!("cannot wait for the command: {e}"))?;
    let _ = exited_tx.send(true);
    for pump in pumps {
        let _ = pump.await;
    }
    Ok(ExitInfo {
        exit_code: status.code(),
        signal: status.signal(),
        timed_out,
        cancelled,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

fn command(req: &ExecRequest) -> Result<Command, String> {
    let (program, args) = req
        .argv
        .split_first()
        .ok_or_else(|| "cannot run an empty argv".to_owned())?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(req.env.iter().map(|(k, v)| (k, v)))
        .stdin(if req.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that signals reach everything the
        // command started (setsid would need unsafe pre_exec code; the agent
        // has no controlling terminal to detach from anyway).
        .process_group(0)
        .kill_on_drop(true);
    if let Some(cwd) = &req.cwd {
        cmd.current_dir(cwd);
    }
    Ok(cmd)
}

fn spawn_error(req: &ExecRequest, err: &io::Error) -> String {
    let program = req.argv.first().map_or("", String::as_str);
    match &req.cwd {
        Some(cwd) => format!("cannot start {program:?} in {cwd:?}: {err}"),
        None => format!("cannot start {program:?}: {err}"),
    }
}

/// GitHub's ladder on the process group; returns the leader's status. A
/// `Kill` during the ladder skips to SIGKILL.
async fn ladder(
    child: &mut Child,
    pgid: Pid,
    grace: KillGrace,
    stop: &mut mpsc::Receiver<Stop>,
) -> io::Result<ExitStatus> {
    let steps = [
        (Signal::SIGINT, grace.interrupt_ms),
        (Signal::SIGTERM, grace.terminate_ms),
    ];
    for (signal, wait_ms) in steps {
        signal_group(pgid, signal);
        tokio::select! {
            status = child.wait() => return status,
            () = tokio::time::sleep(Duration::from_millis(wait_ms)) => {}
            Some(Stop::Kill) = stop.recv() => break,
        }
    }
    signal_group(pgid, Signal::SIGKILL);
    child.wait().await
}

fn signal_group(pgid: Pid, signal: Signal) {
    match killpg(pgid, signal) {
        // The whole group is already gone.
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => tracing::warn!(%pgid, %signal, error = %e, "cannot signal process group"),
    }
}

/// Forwards one pipe as output messages until it closes (or, once the command
/// has exited, until it goes quiet; see [`DRAIN_IDLE`]). Waiting on a full
/// reply queue is the backpressure that keeps memory bounded.
async fn pump(
    id: RequestId,
    stream: OutputStream,
    mut pipe: impl AsyncRead + Unpin,
    replies: mpsc::Sender<Reply>,
    mut exited: watch::Receiver<bool>,
) {
    let mut exited_at: Option<Instant> = None;
    loop {
        let mut buf = BytesMut::with_capacity(OUTPUT_CHUNK);
        let read = match exited_at {
            None => tokio::select! {
                read = pipe.read_buf(&mut buf) => read,
                // `read_buf` is cancel-safe: nothing was read if it lost.
                _ = exited.changed() => {
                    exited_at = Some(Instant::now());
                    continue;
                }
            },
            Some(at) => {
                if at.elapsed() >= DRAIN_MAX {
                    break;
                }
                match tokio::time::timeout(DRAIN_IDLE, pipe.read_buf(&mut buf)).await {
                    Ok(read) => read,
                    Err(_quiet) => break,
                }
            }
        };
        match read {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let data = buf.freeze();
                if replies
                    .send(Reply::Output { id, stream, data })
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
    }
}
