//! Running one command inside a machine: request, streamed output, result.

use std::fmt;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// `PATH` given to a command whose environment has none, so `sh`, `env`, ...
/// resolve the same way on every backend.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One command to run.
///
/// The environment is *complete*: the command sees exactly `env`, plus
/// `PATH=`[`DEFAULT_PATH`] when `env` has no `PATH`. Nothing leaks in from the
/// host or the agent, so a run behaves the same on every backend; the runner
/// sets `HOME`, `RUNNER_TEMP`, ... itself from the [`GuestLayout`](crate::GuestLayout).
///
/// `cwd` defaults to the layout's `workspace_root`. On `timeout` or `cancel`
/// the command's whole process group goes through the [`KillGrace`] ladder.
#[derive(Clone, Default)]
pub struct ExecRequest {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    pub stdin: Option<Vec<u8>>,
    pub timeout: Option<Duration>,
    pub cancel: CancellationToken,
}

impl ExecRequest {
    pub fn new<I, S>(argv: I) -> ExecRequest
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ExecRequest {
            argv: argv.into_iter().map(Into::into).collect(),
            ..ExecRequest::default()
        }
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn cwd(mut self, cwd: impl Into<String>) -> Self {
        self.cwd = Some(cwd.into());
        self
    }

    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(data.into());
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    pub fn cancel(mut self, token: CancellationToken) -> Self {
        self.cancel = token;
        self
    }

    /// The environment the command actually gets (see the type's docs).
    pub fn effective_env(&self) -> Vec<(String, String)> {
        let mut env = self.env.clone();
        if !env.iter().any(|(k, _)| k == "PATH") {
            env.push(("PATH".to_owned(), DEFAULT_PATH.to_owned()));
        }
        env
    }
}

/// Env values and stdin may hold secrets: Debug shows only keys and sizes so a
/// request can be logged safely.
impl fmt::Debug for ExecRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("ExecRequest")
            .field("argv", &self.argv)
            .field("env_keys", &keys)
            .field("cwd", &self.cwd)
            .field("stdin_len", &self.stdin.as_ref().map(Vec::len))
            .field("timeout", &self.timeout)
            .field("cancelled", &self.cancel.is_cancelled())
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// A piece of output, sent as soon as it is read. Chunks of one stream keep
/// their order; across the two streams order is as observed by the reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputChunk {
    pub stream: OutputStream,
    pub data: Vec<u8>,
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecResult {
    /// Set when the process exited normally.
    pub exit_code: Option<i32>,
    /// Set when the process was ended by a signal.
    pub signal: Option<i32>,
    /// The request's timeout elapsed and the kill ladder ran.
    pub timed_out: bool,
    /// The request's cancellation token fired and the kill ladder ran.
    pub cancelled: bool,
    pub duration: Duration,
}

impl ExecResult {
    /// Exit code 0 and not interrupted: a command that trapped the
    /// cancellation signal and exited 0 still did not succeed.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out && !self.cancelled
    }
}

/// The grace periods of GitHub's runner for stopping a command: SIGINT, wait
/// `interrupt`, SIGTERM, wait `terminate`, SIGKILL. Configurable so tests
/// need not wait ten seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KillGrace {
    pub interrupt: Duration,
    pub terminate: Duration,
}

impl Default for KillGrace {
    fn default() -> Self {
        KillGrace {
            interrupt: Duration::from_millis(7500),
            terminate: Duration::from_millis(2500),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_env_values_and_stdin() {
        let req = ExecRequest::new(["sh"])
            .env("TOKEN", "s3cr3t-value")
            .stdin("also-secret");
        let shown = format!("{req:?}");
        assert!(shown.contains("TOKEN"), "{shown}");
        assert!(!shown.contains("s3cr3t-value"), "{shown}");
        assert!(!shown.contains("also-secret"), "{shown}");
    }

    #[test]
    fn default_path_is_added_only_when_missing() {
        let req = ExecRequest::new(["env"]).env("A", "1");
        assert_eq!(
            req.effective_env(),
            vec![
                ("A".to_owned(), "1".to_owned()),
                ("PATH".to_owned(), DEFAULT_PATH.to_owned())
            ]
        );
        let req = ExecRequest::new(["env"]).env("PATH", "/x");
        assert_eq!(req.effective_env(), vec![("PATH".into(), "/x".into())]);
    }

    #[test]
    fn success_requires_zero_and_no_interruption() {
        let mut r = ExecResult {
            exit_code: Some(0),
            signal: None,
            timed_out: false,
            cancelled: false,
            duration: Duration::ZERO,
        };
        assert!(r.success());
        r.cancelled = true;
        assert!(!r.success());
        r.cancelled = false;
        r.exit_code = Some(1);
        assert!(!r.success());
    }
}
