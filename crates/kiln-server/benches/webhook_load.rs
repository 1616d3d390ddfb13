//! Bounded load test on loopback: 1,000 signed deliveries that match no
//! workflow and 50 that match, posted concurrently to a running server
//! (local backend, counted). Prints acknowledgement latency (p50/p99/max),
//! the time until every delivery is dispatched and every run completed, and
//! checks that exactly 50 runs ran and the VM count never exceeded the
//! session limit.
//!
//!     cargo bench -p kiln-server --bench webhook_load
//!
//! Env: `KILN_LOAD_NON_MATCHING` (1000), `KILN_LOAD_MATCHING` (50),
//! `KILN_LOAD_CLIENTS` (16), `KILN_LOAD_SESSIONS` (2).

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_server::config::ReportMode;
use kiln_store::{DeliveryState, RunState};
use support::*;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let non_matching = env("KILN_LOAD_NON_MATCHING", 1000);
    let matching = env("KILN_LOAD_MATCHING", 50);
    let clients = env("KILN_LOAD_CLIENTS", 16).max(1);
    let sessions = env("KILN_LOAD_SESSIONS", 2).max(1);

    let repo = TestRepo::new();
    let wf = "name: CI\non:\n  push:\n    branches: [main]\njobs:\n  build:\n    runs-on: x\n    steps:\n      - run: echo built; sleep 0.3\n";
    let sha = repo.commit(&[(".github/workflows/ci.yml", wf)], "ci");
    repo.push("refs/heads/main");
    let h = Harness::start_with(|c| {
        c.report = ReportMode::None;
        c.max_concurrent_sessions = sessions;
    })
    .await;

    // Every 21st delivery matches (a push to main); the others push to
    // branches the workflow filters out.
    let total = non_matching + matching;
    let mut bodies = Vec::with_capacity(total);
    let (mut m, mut n) = (0, 0);
    for i in 0..total {
        let is_match = m < matching && (n >= non_matching || i % 21 == 0);
        let git_ref = if is_match {
            m += 1;
            "refs/heads/main".to_owned()
        } else {
            n += 1;
            format!("refs/heads/feature-{i}")
        };
        let payload = push_payload(&repo, &git_ref, "0".repeat(40).as_str(), &sha, &["src/x"]);
        let body = serde_json::to_vec(&payload).expect("json");
        let sig = sign(SECRET, &body);
        bodies.push((format!("load-{i}"), body, sig));
    }

    let url = h.url("/webhook");
    let http = h.http.clone();
    let queue = Arc::new(std::sync::Mutex::new(bodies));
    let provider = h.provider.clone();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (queue, http, url) = (queue.clone(), http.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut bad = 0usize;
            loop {
                let next = queue.lock().expect("queue").pop();
                let Some((id, body, sig)) = next else { break };
                let t = Instant::now();
                let resp = http
                    .post(&url)
                    .header("x-github-event", "push")
                    .header("x-github-delivery", id)
                    .header("x-hub-signature-256", sig)
                    .body(body)
                    .send()
                    .await;
                latencies.push(t.elapsed());
                if !matches!(resp.map(|r| r.status().as_u16()), Ok(202)) {
                    bad += 1;
                }
            }
            (latencies, bad)
        }));
    }
    let mut latencies = Vec::new();
    let mut bad = 0;
    for t in tasks {
        let (l, b) = t.await.expect("client task");
        latencies.extend(l);
        bad += b;
    }
    let acked = started.elapsed();
    latencies.sort();

    // Wait (bounded) for every delivery to be dispatched and every run to end.
    let store = h.store();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let pending = store.queued_delivery_count().expect("count");
        let runs = store.list_runs(10_000).expect("runs");
        let done = runs.iter().all(|r| r.state == RunState::Completed);
        if pending == 0 && done && runs.len() >= matching {
            break;
        }
        if Instant::now() > deadline {
            eprintln!(
                "gave up waiting: {pending} deliveries pending, {} runs",
                runs.len()
            );
            std::process::exit(1);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let finished = started.elapsed();
    let runs = store.list_runs(10_000).expect("runs");
    let successes = runs
        .iter()
        .filter(|r| r.conclusion.as_deref() == Some("success"))
        .count();
    let dispatched = (0..total)
        .filter(|i| {
            store
                .delivery(&format!("load-{i}"))
                .ok()
                .flatten()
                .is_some_and(|d| d.state == DeliveryState::Dispatched)
        })
        .count();
    let stats = provider.stats();

    println!(
        "webhook load: {total} signed deliveries ({non_matching} non-matching, {matching} matching), {clients} clients, {sessions} session slots"
    );
    println!(
        "  acknowledged (202): {} of {total}, non-202: {bad}",
        latencies.len() - bad
    );
    println!(
        "  ack latency: p50 {:.2?}  p99 {:.2?}  max {:.2?}",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default()
    );
    println!(
        "  all acknowledged after {acked:.2?} ({:.0} deliveries/s)",
        total as f64 / acked.as_secs_f64()
    );
    println!("  all dispatched and runs completed after {finished:.2?}");
    println!("  deliveries dispatched: {dispatched}");
    println!("  runs: {} ({successes} success)", runs.len());
    println!(
        "  VMs: {} allocated, max live {} (limit {sessions}), {} live now",
        stats.allocated.len(),
        stats.max_live,
        stats.live.len()
    );
    let ok = bad == 0
        && runs.len() == matching
        && successes == matching
        && stats.allocated.len() == matching
        && stats.max_live <= sessions
        && stats.live.is_empty()
        && dispatched == total;
    if let Some(server) = h.server {
        server.shutdown().await;
    }
    if !ok {
        eprintln!(
            "FAILED: expected {matching} successful runs, one VM each, at most {sessions} live"
        );
        std::process::exit(1);
    }
    println!("  ok");
}
