//! The `kiln-agent` binary on each host-side channel: the argument parsing
//! and reconnect loops around the library.

use std::process::Stdio;
use std::time::Duration;

use kiln_protocol::{AgentClient, ClientConfig, ExecRequest};
use tokio::net::{UnixListener, UnixStream};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

const AGENT: &str = env!("CARGO_BIN_EXE_kiln-agent");

fn agent(args: &[&str]) -> Command {
    let mut cmd = Command::new(AGENT);
    cmd.args(args)
        .env("KILN_AGENT_TOKEN", "bin-token")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    cmd
}

/// Hello, one command, shutdown; then the binary must exit 0 by itself.
async fn exercise<S>(stream: S, mut child: Child)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let client = AgentClient::new(stream, ClientConfig::default());
    client.hello("bin-token").await.expect("hello");
    let (tx, mut rx) = mpsc::channel(8);
    let req = ExecRequest {
        argv: vec!["echo".into(), "from the binary".into()],
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        ..ExecRequest::default()
    };
    let info = client.exec(req, tx).await.expect("exec");
    assert_eq!(info.exit_code, Some(0));
    assert_eq!(
        &rx.recv().await.expect("output").data[..],
        b"from the binary\n"
    );
    client.shutdown().await.expect("shutdown");
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("the agent exits after a shutdown")
        .expect("wait");
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn listens_on_a_unix_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("agent.sock");
    let child = agent(&["--listen", &format!("unix:{}", socket.display())])
        .spawn()
        .expect("spawn");
    let mut stream = None;
    for _ in 0..200 {
        if let Ok(s) = UnixStream::connect(&socket).await {
            stream = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    exercise(stream.expect("the agent listens"), child).await;
}

#[tokio::test]
async fn connects_to_a_unix_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("host.sock");
    let listener = UnixListener::bind(&socket).expect("bind");
    let child = agent(&["--connect", &format!("unix:{}", socket.display())])
        .spawn()
        .expect("spawn");
    let (stream, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
        .await
        .expect("the agent connects")
        .expect("accept");
    exercise(stream, child).await;
}

#[tokio::test]
async fn serves_stdio() {
    let mut child = agent(&["--stdio"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    exercise(tokio::io::join(stdout, stdin), child).await;
}

#[tokio::test]
async fn rejects_unknown_addresses() {
    let out = agent(&["--listen", "tcp:127.0.0.1:1"])
        .output()
        .await
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("expected unix:/path"), "{stderr}");
}
