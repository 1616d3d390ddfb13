//! `kiln serve` end to end on the qemu backend (TCG here): signed push and
//! pull_request deliveries for a local bare repository, each run in its own
//! microVM, check runs observed at the fake GitHub. The restart test (the
//! real binary, `kill -9` mid-run) is in `crates/kiln/tests/serve.rs`.
//!
//! Needs QEMU and the `minimal` image under `$KILN_HOME` (default
//! `~/.local/share/kiln`); without them the test prints why and passes,
//! unless `KILN_REQUIRE_QEMU` is set (CI), where it fails.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kiln_server::config::Backend;
use kiln_store::LogStream;
use kiln_vm::qemu::SetupError;
use kiln_vm::{CountingProvider, KillGrace, QemuConfig, QemuProvider};
use support::*;

const ZERO: &str = "0000000000000000000000000000000000000000";

fn skip<T>(why: &str) -> Option<T> {
    if std::env::var_os("KILN_REQUIRE_QEMU").is_some() {
        panic!("KILN_REQUIRE_QEMU is set but the qemu backend cannot run: {why}");
    }
    eprintln!("skipping: {why}");
    None
}

/// The qemu backend with the images of `$KILN_HOME` and VM state under
/// `data`, counted; `None` (printed) when QEMU or the image is missing.
fn qemu(data: &Path) -> Option<Arc<CountingProvider<QemuProvider>>> {
    let Some(home) = QemuConfig::default_data_dir() else {
        return skip("neither KILN_HOME nor HOME is set");
    };
    let mut config = match QemuConfig::from_data_dir(&home) {
        Ok(c) => c,
        Err(e) => return skip(&chain(&e)),
    };
    config.state_dir = data.join("qemu-vms");
    config.kill_grace = KillGrace {
        interrupt: Duration::from_millis(500),
        terminate: Duration::from_millis(500),
    };
    config.boot_timeout = Duration::from_secs(90);
    match QemuProvider::new(config) {
        Ok(p) => Some(Arc::new(CountingProvider::new(p))),
        Err(
            e @ (SetupError::MissingTool { .. }
            | SetupError::MissingImage { .. }
            | SetupError::NoImage { .. }),
        ) => skip(&chain(&e)),
        Err(e) => panic!("qemu provider setup failed: {}", chain(&e)),
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    kiln_server::execute::error_chain(e)
}

/// Pids of QEMU processes whose command line mentions `dir` (other tests on
/// this machine run VMs of their own: never count them all).
fn qemu_processes_under(dir: &Path) -> Vec<u32> {
    let needle = dir.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|raw| {
                let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
                cmdline.contains("qemu-system") && cmdline.contains(&needle)
            })
        })
        .collect()
}

fn vm_state_dirs(data: &Path) -> Vec<String> {
    std::fs::read_dir(data.join("qemu-vms"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn logs(store: &kiln_store::Store, run: i64) -> String {
    store
        .logs(run, None, 0)
        .expect("logs")
        .into_iter()
        .filter(|l| l.stream != LogStream::Meta)
        .map(|l| l.line + "\n")
        .collect()
}

const CI: &str = "name: CI
on: [push, pull_request]
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - name: inside the vm
        run: |
          echo \"event=$GITHUB_EVENT_NAME sha=$GITHUB_SHA\"
          echo \"readme: $(cat README.md)\"
          echo \"kernel cmdline has kiln.token: $(grep -c kiln.token= /proc/cmdline)\"
";

const FAIL: &str = "name: Fails
on: push
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - run: echo about to fail
      - name: the failing step
        run: |
          echo 'boom: the tests failed' >&2
          exit 3
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_and_pull_request_run_in_qemu_vms_and_report_check_runs() {
    let data = tempfile::Builder::new()
        .prefix("ksq")
        .tempdir()
        .expect("tempdir");
    let Some(provider) = qemu(data.path()) else {
        return;
    };
    let repo = TestRepo::new();
    let base = repo.commit(
        &[
            (".github/workflows/ci.yml", CI),
            (".github/workflows/fail.yml", FAIL),
            ("README.md", "base readme"),
        ],
        "ci",
    );
    repo.push("refs/heads/main");
    repo.checkout_new("feature");
    let head = repo.commit(&[("README.md", "feature readme")], "feature");
    repo.push("refs/pull/7/head");

    let github = kiln_github::fake::FakeGitHub::start().await;
    let mut c = config(data.path(), &github);
    c.backend = Backend::Qemu;
    c.max_concurrent_sessions = 2;
    c.vm.memory_mib = 512;
    c.vm.vcpus = 1;
    let server = start_server_on(c, provider.clone(), &github).await;
    let http = reqwest::Client::new();
    let deliver = |event: &'static str, id: &'static str, payload: serde_json::Value| {
        let http = http.clone();
        let url = format!("http://{}/webhook", server.addr());
        async move {
            let body = serde_json::to_vec(&payload).expect("json");
            http.post(url)
                .header("x-github-event", event)
                .header("x-github-delivery", id)
                .header("x-hub-signature-256", sign(SECRET, &body))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("post")
                .status()
                .as_u16()
        }
    };

    let push = push_payload(&repo, "refs/heads/main", ZERO, &base, &["README.md"]);
    assert_eq!(deliver("push", "q-push", push.clone()).await, 202);
    assert_eq!(
        deliver("push", "q-push", push).await,
        200,
        "a redelivery is acknowledged, not queued again"
    );
    let pr = pr_payload(
        &repo,
        "opened",
        7,
        ("feature", &head, REPO),
        ("main", &base),
    );
    assert_eq!(deliver("pull_request", "q-pr", pr).await, 202);

    let store = server.state().db.store();
    let runs = wait_completed(store, 3).await;
    assert_eq!(
        runs.len(),
        3,
        "push: CI and Fails; pull_request: CI: {runs:?}"
    );
    let find = |event: &str, workflow: &str| {
        runs.iter()
            .find(|r| r.event == event && r.workflow_name == workflow)
            .unwrap_or_else(|| panic!("no {event} run of {workflow}: {runs:?}"))
    };
    let push_ci = find("push", "CI");
    let push_fail = find("push", "Fails");
    let pr_ci = find("pull_request", "CI");
    assert_eq!(
        push_ci.conclusion.as_deref(),
        Some("success"),
        "{push_ci:?}"
    );
    assert_eq!(pr_ci.conclusion.as_deref(), Some("success"), "{pr_ci:?}");
    assert_eq!(
        push_fail.conclusion.as_deref(),
        Some("failure"),
        "{push_fail:?}"
    );
    assert_eq!(pr_ci.sha, head, "a pull request runs its head commit");

    let push_log = logs(store, push_ci.id);
    assert!(
        push_log.contains(&format!("event=push sha={base}")),
        "{push_log}"
    );
    assert!(push_log.contains("readme: base readme"), "{push_log}");
    assert!(
        push_log.contains("kernel cmdline has kiln.token: 1"),
        "the step ran in a kiln guest: {push_log}"
    );
    let pr_log = logs(store, pr_ci.id);
    assert!(pr_log.contains("readme: feature readme"), "{pr_log}");

    let checks = completed_checks(&github, 3).await;
    assert_eq!(checks.len(), 3, "{checks:?}");
    let check = |sha: &str, name: &str| {
        checks
            .iter()
            .find(|c| c.head_sha == sha && c.name.contains(name))
            .unwrap_or_else(|| panic!("no check run {name} for {sha}: {checks:?}"))
    };
    assert_eq!(check(&base, "build").conclusion.as_deref(), Some("success"));
    assert_eq!(check(&head, "build").conclusion.as_deref(), Some("success"));
    let failed = check(&base, "test");
    assert_eq!(failed.conclusion.as_deref(), Some("failure"));
    let output = format!("{:?}", failed.output);
    assert!(
        output.contains("boom: the tests failed"),
        "the failed step's log tail is reported: {output}"
    );
    for c in &checks {
        let statuses: Vec<&str> = c.history.iter().map(|t| t.status.as_str()).collect();
        assert!(
            statuses.contains(&"in_progress") && statuses.last() == Some(&"completed"),
            "{}: {statuses:?}",
            c.name
        );
    }

    let stats = provider.stats();
    assert_eq!(stats.allocations(), 3, "one VM per run: {stats:?}");
    assert!(stats.max_live <= 2, "the session limit holds: {stats:?}");
    server.shutdown().await;
    let stats = provider.stats();
    assert!(stats.live.is_empty(), "{stats:?}");
    assert_eq!(stats.releases, 3, "{stats:?}");
    assert!(
        vm_state_dirs(data.path()).is_empty(),
        "{:?}",
        vm_state_dirs(data.path())
    );
    assert_eq!(qemu_processes_under(data.path()), Vec::<u32>::new());
}
