//! Output streaming: order, completeness, throughput, backpressure.

use std::time::{Duration, Instant};

use kiln_protocol::OutputStream::{Stderr, Stdout};
use tokio::sync::mpsc;

use crate::common::{run, sh, start};

#[tokio::test]
async fn output_arrives_in_the_order_it_was_written() {
    let agent = start().await;
    let (result, out) = run(
        &agent.client,
        sh("echo a; sleep 0.1; echo b >&2; sleep 0.1; echo c; sleep 0.1; echo d >&2"),
    )
    .await;
    assert_eq!(result.expect("exec").exit_code, Some(0));
    let seen: Vec<_> = out
        .chunks
        .iter()
        .map(|(stream, data)| (*stream, String::from_utf8_lossy(data).into_owned()))
        .collect();
    let expected: Vec<_> = [
        (Stdout, "a\n"),
        (Stderr, "b\n"),
        (Stdout, "c\n"),
        (Stderr, "d\n"),
    ]
    .into_iter()
    .map(|(s, d)| (s, d.to_owned()))
    .collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn each_stream_keeps_its_order_under_load() {
    let agent = start().await;
    let (result, out) = run(&agent.client, sh("seq 1 200000; seq 1 50000 >&2")).await;
    assert_eq!(result.expect("exec").exit_code, Some(0));
    let expected = |n: u32| (1..=n).map(|i| format!("{i}\n")).collect::<String>();
    assert_eq!(out.stdout(), expected(200_000));
    assert_eq!(out.stderr(), expected(50_000));
}

/// Output is sent while the command runs, not after it exits: the command
/// waits for a file that the test creates only after seeing the output.
#[tokio::test]
async fn output_streams_before_exit() {
    let agent = start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let go = dir.path().join("go");
    let script = format!(
        "echo early; while [ ! -e {go} ]; do sleep 0.02; done; echo late",
        go = go.display()
    );
    let (tx, mut rx) = mpsc::channel(16);
    let handle = agent
        .client
        .start_exec(sh(&script), tx)
        .await
        .expect("start");
    let first = rx.recv().await.expect("output while still running");
    assert_eq!(&first.data[..], b"early\n");
    std::fs::write(&go, b"").expect("release the command");
    let info = handle.wait().await.expect("exit");
    assert_eq!(info.exit_code, Some(0));
    assert_eq!(&rx.recv().await.expect("late").data[..], b"late\n");
}

#[tokio::test]
async fn hundred_mib_of_output_arrives_complete() {
    const TOTAL: u64 = 100 * 1024 * 1024;
    let agent = start().await;
    let (tx, mut rx) = mpsc::channel::<kiln_protocol::OutputChunk>(64);
    let count = tokio::spawn(async move {
        let (mut bytes, mut chunks) = (0u64, 0u64);
        while let Some(chunk) = rx.recv().await {
            bytes += chunk.data.len() as u64;
            chunks += 1;
        }
        (bytes, chunks)
    });
    let started = Instant::now();
    let info = agent
        .client
        .exec(sh(&format!("head -c {TOTAL} /dev/zero")), tx)
        .await
        .expect("exec");
    let elapsed = started.elapsed();
    let (bytes, chunks) = count.await.expect("counter");
    assert_eq!(info.exit_code, Some(0));
    assert_eq!(bytes, TOTAL);
    eprintln!(
        "100 MiB of output in {chunks} chunks, {:.2} s: {:.0} MB/s",
        elapsed.as_secs_f64(),
        TOTAL as f64 / 1e6 / elapsed.as_secs_f64()
    );
}

/// A consumer that stops reading stalls the command instead of making the
/// agent buffer: 100 MiB cannot fit in the pipes and queues in between, so
/// the command cannot finish until the consumer reads again.
#[tokio::test]
async fn slow_consumer_stalls_the_command_instead_of_buffering() {
    let agent = start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("finished");
    let script = format!("head -c 104857600 /dev/zero; touch {}", marker.display());
    let (tx, mut rx) = mpsc::channel(1);
    let handle = agent
        .client
        .start_exec(sh(&script), tx)
        .await
        .expect("start");
    let waiter = tokio::spawn(handle.wait());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!marker.exists(), "the command ran ahead of its consumer");
    let mut bytes = 0usize;
    while let Some(chunk) = rx.recv().await {
        bytes += chunk.data.len();
    }
    let info = waiter.await.expect("join").expect("exit");
    assert_eq!(info.exit_code, Some(0));
    assert_eq!(bytes, 100 * 1024 * 1024);
    assert!(marker.exists());
}

/// A background process that keeps the pipes open does not hold the
/// command's exit for ever.
#[tokio::test]
async fn background_process_holding_the_pipe_does_not_block_exit() {
    let agent = start().await;
    let (result, out) = run(&agent.client, sh("sleep 30 & echo $!; echo done")).await;
    let info = result.expect("exec");
    assert_eq!(info.exit_code, Some(0));
    assert!(info.duration_ms < 30_000, "{info:?}");
    let mut lines = out.stdout().lines().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(lines.pop().as_deref(), Some("done"));
    if let Some(pid) = lines.pop().and_then(|p| p.parse::<i32>().ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}
