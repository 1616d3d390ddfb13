//! Job-level `concurrency:` (`jobs.<id>.concurrency`) on the local backend:
//! across runs of `kiln serve` (a job waits while another run's job holds
//! the group; a newer pending job replaces the older pending one;
//! `cancel-in-progress` cancels the holder) and within one run (parallel
//! matrix instances of one group run one at a time).

mod support;

use std::path::Path;
use std::time::Duration;

use kiln_runner::{RunConfig, SessionManager, VmScope};
use kiln_store::{JobRecord, RunRecord};
use support::*;

/// Build, then a deploy job in one group for the whole repository; the
/// branch decides how the deploy behaves: `main` waits for `<dir>/GO`,
/// `hold` sleeps, `urgent` cancels the deploy in progress.
fn deploy_workflow(dir: &Path) -> String {
    let log = dir.join("LOG");
    let go = dir.join("GO");
    format!(
        "name: Deploy
on: push
jobs:
  build:
    runs-on: x
    steps:
      - run: echo build-${{{{ github.ref_name }}}} >> {log}
  deploy:
    runs-on: x
    needs: build
    concurrency:
      group: deploy-${{{{ github.repository }}}}
      cancel-in-progress: ${{{{ github.ref_name == 'urgent' }}}}
    steps:
      - run: |
          echo start-${{{{ github.ref_name }}}} >> {log}
          if [ ${{{{ github.ref_name }}}} = main ]; then
            for i in $(seq 600); do [ -f {go} ] && break; sleep 0.1; done
          fi
          if [ ${{{{ github.ref_name }}}} = hold ]; then
            trap 'echo stopped-hold >> {log}; exit 130' INT TERM
            sleep 60
          fi
          echo end-${{{{ github.ref_name }}}} >> {log}
",
        log = log.display(),
        go = go.display(),
    )
}

/// The deploy lines of the log (`start-*`, `end-*`, `stopped-*`), in order.
fn deploy_log(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("LOG"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with("build-"))
        .map(str::to_owned)
        .collect()
}

fn log_has(dir: &Path, line: &str) -> bool {
    std::fs::read_to_string(dir.join("LOG"))
        .unwrap_or_default()
        .lines()
        .any(|l| l == line)
}

fn run_on<'r>(runs: &'r [RunRecord], git_ref: &str) -> &'r RunRecord {
    runs.iter()
        .find(|r| r.git_ref == git_ref)
        .unwrap_or_else(|| panic!("no run on {git_ref}: {runs:?}"))
}

fn deploy_job(h: &Harness, run: i64) -> JobRecord {
    h.store()
        .jobs(run)
        .expect("jobs")
        .into_iter()
        .find(|j| j.job_id == "deploy")
        .expect("a deploy job")
}

async fn push(h: &Harness, repo: &TestRepo, sha: &str, branch: &str) {
    let (status, body) = h
        .deliver(
            "push",
            &format!("push-{branch}"),
            &push_payload(
                repo,
                &format!("refs/heads/{branch}"),
                "0000000000000000000000000000000000000000",
                sha,
                &["x"],
            ),
        )
        .await;
    assert_eq!(status, 202, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_waits_for_its_group_across_runs_and_a_newer_pending_job_replaces_the_older() {
    let marks = tempfile::tempdir().expect("tempdir");
    let repo = TestRepo::new();
    let sha = repo.commit(
        &[(
            ".github/workflows/deploy.yml",
            &deploy_workflow(marks.path()),
        )],
        "deploy",
    );
    repo.push("refs/heads/main");
    // Each waiting run keeps its VM (one VM per run): room for all three.
    let h = Harness::start_with(|c| c.max_concurrent_sessions = 3).await;
    let groups = h.server().state().job_groups.clone();

    push(&h, &repo, &sha, "main").await;
    wait_for("main's deploy to hold the group", || {
        log_has(marks.path(), "start-main")
    })
    .await;
    push(&h, &repo, &sha, "b").await;
    wait_for("b's deploy to wait for the group", || {
        log_has(marks.path(), "build-b") && groups.pending_count() == 1
    })
    .await;
    push(&h, &repo, &sha, "c").await;
    wait_for("c's deploy to replace b's", || {
        h.store()
            .list_runs(10)
            .expect("runs")
            .iter()
            .any(|r| r.git_ref == "refs/heads/b" && r.conclusion.is_some())
    })
    .await;
    assert_eq!(groups.pending_count(), 1, "c waits, b is gone");
    assert!(
        !log_has(marks.path(), "start-c"),
        "c's deploy must wait for main's"
    );
    std::fs::write(marks.path().join("GO"), "").expect("write GO");

    let runs = h.completed_runs(3).await;
    let (main, b, c) = (
        run_on(&runs, "refs/heads/main"),
        run_on(&runs, "refs/heads/b"),
        run_on(&runs, "refs/heads/c"),
    );
    assert_eq!(main.conclusion.as_deref(), Some("success"), "{main:?}");
    assert_eq!(b.conclusion.as_deref(), Some("cancelled"), "{b:?}");
    assert_eq!(c.conclusion.as_deref(), Some("success"), "{c:?}");
    assert_eq!(
        deploy_log(marks.path()),
        ["start-main", "end-main", "start-c", "end-c"],
        "one deploy at a time; b's never ran"
    );
    let b_deploy = deploy_job(&h, b.id);
    assert_eq!(b_deploy.conclusion.as_deref(), Some("cancelled"));
    assert!(
        b_deploy.steps.as_array().is_none_or(Vec::is_empty),
        "b's deploy ran no step: {b_deploy:?}"
    );
    // At the fake GitHub: b's deploy check run is cancelled, the others pass.
    let checks = completed_checks(&h.github, 6).await;
    let deploys: Vec<_> = checks
        .iter()
        .filter(|c| c.name.contains("deploy"))
        .map(|c| c.conclusion.clone().unwrap_or_default())
        .collect();
    let mut sorted = deploys.clone();
    sorted.sort();
    assert_eq!(sorted, ["cancelled", "success", "success"], "{checks:#?}");
    assert_eq!(groups.pending_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_in_progress_cancels_the_job_holding_the_group_in_another_run() {
    let marks = tempfile::tempdir().expect("tempdir");
    let repo = TestRepo::new();
    let sha = repo.commit(
        &[(
            ".github/workflows/deploy.yml",
            &deploy_workflow(marks.path()),
        )],
        "deploy",
    );
    repo.push("refs/heads/main");
    let h = Harness::start_with(|c| c.max_concurrent_sessions = 2).await;

    push(&h, &repo, &sha, "hold").await;
    wait_for("hold's deploy to hold the group", || {
        log_has(marks.path(), "start-hold")
    })
    .await;
    push(&h, &repo, &sha, "urgent").await;
    let runs = h.completed_runs(2).await;
    let (hold, urgent) = (
        run_on(&runs, "refs/heads/hold"),
        run_on(&runs, "refs/heads/urgent"),
    );
    assert_eq!(hold.conclusion.as_deref(), Some("cancelled"), "{hold:?}");
    assert_eq!(urgent.conclusion.as_deref(), Some("success"), "{urgent:?}");
    assert_eq!(
        deploy_log(marks.path()),
        ["start-hold", "stopped-hold", "start-urgent", "end-urgent"],
        "hold's deploy was stopped mid-step before urgent's started"
    );
    let held = deploy_job(&h, hold.id);
    assert_eq!(held.conclusion.as_deref(), Some("cancelled"), "{held:?}");
    let build = h
        .store()
        .jobs(hold.id)
        .expect("jobs")
        .into_iter()
        .find(|j| j.job_id == "build")
        .expect("build");
    assert_eq!(
        build.conclusion.as_deref(),
        Some("success"),
        "only the job in the group is cancelled"
    );
}

/// Within one run: with a VM per job, matrix instances run in parallel,
/// but not those of one group. Three arrive at once: the first runs, the
/// third replaces the pending second (GitHub's rule), then runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_matrix_instances_of_one_group_run_one_at_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("LOG");
    let src = format!(
        "name: M
on: push
jobs:
  test:
    runs-on: x
    strategy:
      matrix:
        n: [1, 2, 3]
    concurrency: serial-${{{{ github.workflow }}}}
    steps:
      - run: |
          echo start-${{{{ matrix.n }}}} >> {log}
          sleep 1
          echo end-${{{{ matrix.n }}}} >> {log}
",
        log = log.display()
    );
    let (workflow, diags) = kiln_workflow::parse_workflow(&src);
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
    let provider = local_provider(dir.path());
    let manager = SessionManager::new(provider.clone(), 3);
    let cfg = RunConfig {
        vm_scope: VmScope::Job,
        ..RunConfig::default()
    };
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let result = tokio::time::timeout(
        Duration::from_secs(60),
        kiln_runner::run_workflow(&manager, &workflow, &cfg, tx),
    )
    .await
    .expect("the run ends")
    .expect("the run runs");
    let conclusions: Vec<_> = result
        .jobs
        .iter()
        .map(|j| (j.name.clone(), j.conclusion.as_str().to_owned()))
        .collect();
    let cancelled: Vec<_> = result
        .jobs
        .iter()
        .filter(|j| j.conclusion.as_str() == "cancelled")
        .collect();
    assert_eq!(cancelled.len(), 1, "{conclusions:?}");
    assert!(
        cancelled[0]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("higher priority waiting request for 'serial-M'")),
        "{:?}",
        cancelled[0].reason
    );
    let text = std::fs::read_to_string(&log).expect("log");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    for pair in lines.chunks(2) {
        let n = pair[0].strip_prefix("start-").expect("a start line");
        assert_eq!(
            pair[1],
            format!("end-{n}"),
            "instances overlapped: {lines:?}"
        );
    }
    assert_eq!(
        provider.stats().allocations(),
        2,
        "the cancelled instance never got a VM"
    );
}
