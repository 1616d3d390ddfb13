//! Shared helpers: an agent served over a socket pair, and a client with
//! short timeouts and graces.

use std::time::Duration;

use bytes::Bytes;
use kiln_agent::{AgentConfig, ServeOutcome, serve};
use kiln_protocol::{
    AgentClient, ClientConfig, ClientError, ExecRequest, ExitInfo, KillGrace, OutputChunk,
    OutputStream,
};
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub const TOKEN: &str = "test-token";
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Short enough for tests, long enough for bash to run a trap.
/// Long enough for a shell's trap to run on a loaded CI machine (400 ms
/// was not: SIGKILL came while bash still waited for its `sleep`).
pub const GRACE: KillGrace = KillGrace {
    interrupt_ms: 1500,
    terminate_ms: 1500,
};

pub struct Agent {
    pub client: AgentClient,
    pub served: JoinHandle<ServeOutcome>,
}

pub fn client_config() -> ClientConfig {
    ClientConfig {
        request_timeout: Duration::from_secs(10),
        keepalive_interval: Duration::from_millis(500),
        idle_timeout: Duration::from_secs(10),
        kill_grace: GRACE,
    }
}

/// An agent task on one end of a socket pair, without a handshake yet.
pub fn spawn_agent() -> (UnixStream, JoinHandle<ServeOutcome>) {
    let (host, guest) = UnixStream::pair().expect("socket pair");
    let config = AgentConfig::new(Some(TOKEN.into()));
    let served = tokio::spawn(async move { serve(guest, &config).await });
    (host, served)
}

/// An agent and a client that said hello.
pub async fn start() -> Agent {
    let (host, served) = spawn_agent();
    let client = AgentClient::new(host, client_config());
    client.hello(TOKEN).await.expect("hello");
    Agent { client, served }
}

pub fn sh(script: &str) -> ExecRequest {
    ExecRequest {
        argv: vec!["bash".into(), "-c".into(), script.into()],
        env: vec![("PATH".into(), PATH.into())],
        ..ExecRequest::default()
    }
}

/// What a command printed, chunk by chunk.
#[derive(Debug, Default)]
pub struct Output {
    pub chunks: Vec<(OutputStream, Bytes)>,
}

impl Output {
    pub fn of(&self, stream: OutputStream) -> String {
        let bytes: Vec<u8> = self
            .chunks
            .iter()
            .filter(|(s, _)| *s == stream)
            .flat_map(|(_, d)| d.iter().copied())
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    pub fn stdout(&self) -> String {
        self.of(OutputStream::Stdout)
    }

    pub fn stderr(&self) -> String {
        self.of(OutputStream::Stderr)
    }
}

/// Runs `req` to its end, collecting the output.
pub async fn run(
    client: &AgentClient,
    req: ExecRequest,
) -> (Result<ExitInfo, ClientError>, Output) {
    let (tx, mut rx) = mpsc::channel::<OutputChunk>(16);
    let collect = tokio::spawn(async move {
        let mut out = Output::default();
        while let Some(chunk) = rx.recv().await {
            out.chunks.push((chunk.stream, chunk.data));
        }
        out
    });
    let result = client.exec(req, tx).await;
    (result, collect.await.expect("collector"))
}

/// A process has exited (a zombie waiting for its reaper counts: it runs no
/// more code).
pub fn is_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

pub async fn wait_gone(pid: i32) -> bool {
    for _ in 0..100 {
        if is_gone(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
