//! Drives a real guest's agent through QEMU's chardev socket and prints what
//! it measured: handshake time, `true` round trips, output throughput, a file
//! round trip, shutdown.
//!
//! ```text
//! cargo run -p kiln-agent --example vm_smoke -- /path/to/agent.sock [TOKEN]
//! ```

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kiln_protocol::{AgentClient, ClientConfig, ExecRequest, OutputChunk};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

const PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

fn cmd(argv: &[&str]) -> ExecRequest {
    ExecRequest {
        argv: argv.iter().map(|s| (*s).to_owned()).collect(),
        env: vec![("PATH".into(), PATH.into())],
        ..ExecRequest::default()
    }
}

/// Runs a command and returns (exit code, stdout bytes, first stdout line).
async fn run(client: &AgentClient, req: ExecRequest) -> anyhow::Result<(Option<i32>, u64, String)> {
    let (tx, mut rx) = mpsc::channel::<OutputChunk>(64);
    let collect = tokio::spawn(async move {
        let (mut bytes, mut head) = (0u64, Vec::new());
        while let Some(chunk) = rx.recv().await {
            bytes += chunk.data.len() as u64;
            if head.len() < 200 {
                head.extend_from_slice(&chunk.data);
            }
        }
        let head = String::from_utf8_lossy(&head);
        (bytes, head.lines().next().unwrap_or_default().to_owned())
    });
    let info = client.exec(req, tx).await?;
    let (bytes, head) = collect.await?;
    Ok((info.exit_code, bytes, head))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(socket) = args.next() else {
        bail!("usage: vm_smoke SOCKET [TOKEN]");
    };
    let token = args.next().unwrap_or_default();
    let started = Instant::now();
    let stream = loop {
        match UnixStream::connect(&socket).await {
            Ok(stream) => break stream,
            Err(_) if started.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e).context("cannot connect"),
        }
    };
    let config = ClientConfig {
        request_timeout: Duration::from_secs(60),
        ..ClientConfig::default()
    };
    let client = AgentClient::new(stream, config);
    let info = client.hello(&token).await.context("hello")?;
    println!(
        "hello: agent {} (protocol {}) after {:.2?}",
        info.agent_version,
        info.protocol_version,
        started.elapsed()
    );

    let (code, _, uname) = run(&client, cmd(&["uname", "-a"])).await?;
    println!("uname -a: {uname} (exit {code:?})");

    let mut trips = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        run(&client, cmd(&["true"])).await?;
        trips.push(t.elapsed());
    }
    trips.sort();
    println!(
        "`true` round trip: median {:.2?}, min {:.2?}, max {:.2?}",
        trips[trips.len() / 2],
        trips[0],
        trips[trips.len() - 1]
    );
    let pings: Vec<Duration> = {
        let mut v = Vec::new();
        for _ in 0..20 {
            v.push(client.ping().await?);
        }
        v.sort();
        v
    };
    println!("ping: median {:.2?}", pings[pings.len() / 2]);

    let total: u64 = std::env::var("SMOKE_OUTPUT_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100 * 1024 * 1024);
    let t = Instant::now();
    let (code, bytes, _) = run(
        &client,
        cmd(&["head", "-c", &total.to_string(), "/dev/zero"]),
    )
    .await?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "output: {bytes} bytes (exit {code:?}) in {secs:.2} s: {:.0} MB/s",
        bytes as f64 / 1e6 / secs
    );

    for size in [1_000u32, 100_000, 1_000_000, 3_000_000] {
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let t = Instant::now();
        client.put_file("/tmp/smoke/step.bin", 0o644, data).await?;
        println!("put {size} bytes: {:.2?}", t.elapsed());
    }
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let t = Instant::now();
    client
        .put_file("/tmp/smoke/data.bin", 0o644, data.clone())
        .await?;
    let back = client.get_file("/tmp/smoke/data.bin").await?;
    println!(
        "3 MB file put+get: {} in {:.2?}",
        if back == data {
            "identical"
        } else {
            "DIFFERENT"
        },
        t.elapsed()
    );
    let tar = client.get_archive("/etc").await?;
    println!("tar of /etc: {} bytes", tar.len());

    let t = Instant::now();
    client.shutdown().await?;
    println!("shutdown acknowledged in {:.2?}", t.elapsed());
    Ok(())
}
