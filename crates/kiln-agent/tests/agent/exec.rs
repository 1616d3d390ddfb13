//! Commands: environment, exit statuses, concurrency, timeouts, cancels.

use std::time::Duration;

use futures_util::future::join_all;
use kiln_protocol::{ClientError, ExecRequest, OutputStream};
use tokio::sync::mpsc;

use crate::common::{GRACE, PATH, run, sh, start, wait_gone};

#[tokio::test]
async fn runs_with_exactly_the_given_env_cwd_and_stdin() {
    let agent = start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cwd = dir.path().canonicalize().expect("canonical");
    let base = ExecRequest {
        argv: vec![
            "bash".into(),
            "-c".into(),
            r#"echo "$GREETING"; pwd; cat"#.into(),
        ],
        env: vec![
            ("GREETING".into(), "hello world".into()),
            ("PATH".into(), PATH.into()),
        ],
        cwd: Some(cwd.to_string_lossy().into_owned()),
        stdin: Some("from stdin".into()),
        timeout_ms: None,
    };
    let (result, out) = run(&agent.client, base.clone()).await;
    assert_eq!(result.expect("exec").exit_code, Some(0), "{out:?}");
    assert_eq!(
        out.stdout(),
        format!("hello world\n{}\nfrom stdin", cwd.display())
    );

    // `env` itself adds nothing: this is the whole environment.
    let env_only = ExecRequest {
        argv: vec!["env".into()],
        stdin: None,
        ..base
    };
    let (result, out) = run(&agent.client, env_only).await;
    assert_eq!(result.expect("exec").exit_code, Some(0));
    assert_eq!(out.stdout(), format!("GREETING=hello world\nPATH={PATH}\n"));
}

#[tokio::test]
async fn no_stdin_reads_as_empty() {
    let agent = start().await;
    let (result, out) = run(&agent.client, sh("wc -c")).await;
    assert_eq!(result.expect("exec").exit_code, Some(0));
    assert_eq!(out.stdout().trim(), "0");
}

#[tokio::test]
async fn reports_exit_codes_and_signals() {
    let agent = start().await;
    let cases = [
        ("true", Some(0), None),
        ("exit 3", Some(3), None),
        ("kill -TERM $$", None, Some(15)),
        ("kill -KILL $$", None, Some(9)),
    ];
    for (script, exit_code, signal) in cases {
        let (result, _) = run(&agent.client, sh(script)).await;
        let info = result.expect("exec");
        assert_eq!(
            (info.exit_code, info.signal),
            (exit_code, signal),
            "{script}"
        );
        assert!(!info.timed_out && !info.cancelled, "{script}");
    }
}

#[tokio::test]
async fn unstartable_commands_are_errors_not_exits() {
    let agent = start().await;
    let missing = ExecRequest {
        argv: vec!["/no/such/program".into()],
        ..ExecRequest::default()
    };
    let bad_cwd = ExecRequest {
        cwd: Some("/no/such/dir".into()),
        ..sh("true")
    };
    for (req, needle) in [
        (missing, "cannot start \"/no/such/program\""),
        (bad_cwd, "in \"/no/such/dir\""),
        (ExecRequest::default(), "empty argv"),
    ] {
        let (result, _) = run(&agent.client, req).await;
        match result {
            Err(ClientError::Remote {
                what: "exec",
                message,
            }) => {
                assert!(message.contains(needle), "{message}");
            }
            other => panic!("expected a remote error, got {other:?}"),
        }
    }
    // The connection is fine afterwards.
    agent.client.ping().await.expect("ping");
}

/// Ten commands that each wait until all ten have started: they can only
/// finish if they really run at the same time.
#[tokio::test]
async fn ten_commands_run_concurrently() {
    let agent = start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let barrier = dir.path().display().to_string();
    let runs = (0..10).map(|n| {
        let script = format!(
            "touch {barrier}/{n}; for i in $(seq 200); do \
               [ $(ls {barrier} | wc -l) -ge 10 ] && break; sleep 0.05; done; \
             echo {n} $(ls {barrier} | wc -l)"
        );
        let client = agent.client.clone();
        async move { run(&client, sh(&script)).await }
    });
    for (n, (result, out)) in join_all(runs).await.into_iter().enumerate() {
        assert_eq!(result.expect("exec").exit_code, Some(0));
        assert_eq!(out.stdout(), format!("{n} 10\n"), "command {n} saw all ten");
    }
}

#[tokio::test]
async fn timeout_kills_the_whole_process_group() {
    let agent = start().await;
    let req = ExecRequest {
        timeout_ms: Some(300),
        ..sh("sleep 1000 & echo $!; wait")
    };
    let (result, out) = run(&agent.client, req).await;
    let info = result.expect("exec");
    assert!(info.timed_out && !info.cancelled, "{info:?}");
    assert_ne!(info.exit_code, Some(0));
    let background: i32 = out
        .stdout()
        .trim()
        .parse()
        .expect("pid of the background sleep");
    assert!(
        wait_gone(background).await,
        "background child {background} survived"
    );
}

/// Starts `script`, waits for it to print "ready", cancels it.
async fn cancel_when_ready(script: &str) -> (kiln_protocol::ExitInfo, String) {
    let agent = start().await;
    let (tx, mut rx) = mpsc::channel(16);
    let handle = agent
        .client
        .start_exec(sh(script), tx)
        .await
        .expect("start");
    let mut stdout = String::new();
    while !stdout.contains("ready") {
        let chunk = rx.recv().await.expect("output before ready");
        assert_eq!(chunk.stream, OutputStream::Stdout);
        stdout.push_str(&String::from_utf8_lossy(&chunk.data));
    }
    handle.cancel().await.expect("cancel");
    let collect = tokio::spawn(async move {
        while let Some(chunk) = rx.recv().await {
            stdout.push_str(&String::from_utf8_lossy(&chunk.data));
        }
        stdout
    });
    let info = handle.wait().await.expect("exit");
    (info, collect.await.expect("collector"))
}

#[tokio::test]
async fn cancel_sends_sigint_first() {
    let (info, stdout) = cancel_when_ready(
        "trap 'echo got SIGINT; exit 7' INT; echo ready; while :; do sleep 0.05; done",
    )
    .await;
    assert!(info.cancelled && !info.timed_out, "{info:?}");
    assert_eq!(info.exit_code, Some(7), "{info:?}");
    assert!(stdout.contains("got SIGINT"), "{stdout}");
}

#[tokio::test]
async fn cancel_escalates_to_sigkill() {
    let (info, _) =
        cancel_when_ready("trap '' INT TERM; echo ready; while :; do sleep 0.05; done").await;
    assert!(info.cancelled, "{info:?}");
    assert_eq!(info.signal, Some(9), "{info:?}");
    // Both graces were waited out before the SIGKILL.
    assert!(
        info.duration_ms >= GRACE.interrupt_ms + GRACE.terminate_ms,
        "{info:?}"
    );
}

#[tokio::test]
async fn sigterm_comes_after_the_sigint_grace() {
    let (info, stdout) = cancel_when_ready(
        "trap 'echo got SIGINT' INT; trap 'echo got SIGTERM; exit 5' TERM; \
         echo ready; while :; do sleep 0.05; done",
    )
    .await;
    assert_eq!(info.exit_code, Some(5), "{info:?}");
    assert!(
        stdout.contains("got SIGINT") && stdout.contains("got SIGTERM"),
        "{stdout}"
    );
}

#[tokio::test]
async fn cancel_of_an_unknown_id_is_harmless() {
    let agent = start().await;
    agent.client.cancel(424_242).await.expect("cancel");
    agent.client.ping().await.expect("still alive");
}

#[tokio::test]
async fn hanging_up_kills_running_commands() {
    let agent = start().await;
    let (tx, mut rx) = mpsc::channel(16);
    let handle = agent
        .client
        .start_exec(sh("sleep 1000 & echo $!; wait"), tx)
        .await
        .expect("start");
    let chunk = rx.recv().await.expect("pid");
    let pid: i32 = String::from_utf8_lossy(&chunk.data)
        .trim()
        .parse()
        .expect("pid");
    drop(handle);
    drop(agent.client);
    let outcome = tokio::time::timeout(Duration::from_secs(10), agent.served)
        .await
        .expect("agent notices")
        .expect("no panic");
    assert_eq!(outcome, kiln_agent::ServeOutcome::Closed);
    // The dropped handle cancelled the command; the hang-up killed the rest.
    assert!(wait_gone(pid).await, "{pid} survived");
}
