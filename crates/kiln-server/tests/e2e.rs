//! End to end on 127.0.0.1: a local bare repository with workflows, signed
//! deliveries posted to a running server (local backend, counted), runs
//! executed, results observed in the store and at a fake GitHub.

mod support;

use std::time::Duration;

use kiln_store::{LogStream, RunState};
use support::*;

const ZERO: &str = "0000000000000000000000000000000000000000";

fn logs_text(h: &Harness, run: i64) -> String {
    h.store()
        .logs(run, None, 0)
        .expect("logs")
        .into_iter()
        .filter(|l| l.stream != LogStream::Meta)
        .map(|l| l.line + "\n")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_and_pull_request_run_and_report_check_runs() {
    let repo = TestRepo::new();
    let ci = workflow(
        "CI",
        "[push, pull_request]",
        "echo \"hello from $GITHUB_EVENT_NAME at $GITHUB_SHA\"\necho '### all good' >> \"$GITHUB_STEP_SUMMARY\"",
    );
    let base = repo.commit(&[(".github/workflows/ci.yml", &ci)], "ci");
    repo.push("refs/heads/main");
    let h = Harness::start().await;

    let (status, text) = h
        .deliver(
            "push",
            "push-1",
            &push_payload(&repo, "refs/heads/main", ZERO, &base, &["x"]),
        )
        .await;
    assert_eq!(status, 202, "{text}");
    let runs = h.completed_runs(1).await;
    assert_eq!(
        runs[0].conclusion.as_deref(),
        Some("success"),
        "{:?}",
        runs[0]
    );
    assert_eq!(
        (runs[0].event.as_str(), runs[0].sha.as_str()),
        ("push", base.as_str())
    );
    assert!(logs_text(&h, runs[0].id).contains(&format!("hello from push at {base}")));

    repo.checkout_new("feature");
    let head = repo.commit(&[("src/lib.rs", "fn f() {}\n")], "feature");
    repo.push("refs/pull/7/head");
    let pr = pr_payload(
        &repo,
        "opened",
        7,
        ("feature", &head, REPO),
        ("main", &base),
    );
    assert_eq!(h.deliver("pull_request", "pr-1", &pr).await.0, 202);
    let runs = h.completed_runs(2).await;
    let pr_run = &runs[1];
    assert_eq!(pr_run.event, "pull_request");
    assert_eq!(pr_run.sha, head, "pull_request runs the head commit");
    assert_eq!(pr_run.conclusion.as_deref(), Some("success"));

    let checks = completed_checks(&h.github, 2).await;
    assert_eq!(checks.len(), 2, "{checks:#?}");
    for (check, sha) in checks.iter().zip([&base, &head]) {
        assert_eq!(check.name, "build");
        assert_eq!(&check.head_sha, sha);
        assert_eq!(check.conclusion.as_deref(), Some("success"));
        let statuses: Vec<_> = check.history.iter().map(|t| t.status.as_str()).collect();
        assert_eq!(
            statuses,
            ["queued", "in_progress", "completed"],
            "{check:#?}"
        );
        let summary = check.output.as_ref().unwrap()["summary"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(summary.contains("main step"), "{summary}");
        assert!(
            summary.contains("### all good"),
            "step summary missing: {summary}"
        );
    }
    // The API shows jobs and steps.
    let run: serde_json::Value = h
        .http
        .get(h.url(&format!("/api/runs/{}", pr_run.id)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(run["jobs"][0]["conclusion"], "success");
    assert_eq!(run["jobs"][0]["steps"][0]["name"], "main step");
    let stats = h.provider.stats();
    assert_eq!(
        (stats.allocated.len(), stats.live.len()),
        (2, 0),
        "one VM per run, none left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_workflow_reports_failure_with_the_log_tail() {
    let repo = TestRepo::new();
    let ci = workflow(
        "CI",
        "push",
        "echo about to fail\necho \"token=$TOKEN\"\nexit 3",
    );
    let ci = ci.replace(
        "      - name: main step\n",
        "      - name: main step\n        env:\n          TOKEN: ${{ secrets.MY_SECRET }}\n",
    );
    let sha = repo.commit(&[(".github/workflows/ci.yml", &ci)], "ci");
    repo.push("refs/heads/main");
    let h = Harness::start().await;
    h.deliver(
        "push",
        "d",
        &push_payload(&repo, "refs/heads/main", ZERO, &sha, &["a"]),
    )
    .await;
    let runs = h.completed_runs(1).await;
    assert_eq!(runs[0].conclusion.as_deref(), Some("failure"));
    let checks = completed_checks(&h.github, 1).await;
    assert_eq!(checks[0].conclusion.as_deref(), Some("failure"));
    let output = checks[0].output.as_ref().unwrap();
    let title = output["title"].as_str().unwrap();
    assert!(title.contains("main step"), "{title}");
    let text = output["text"].as_str().unwrap_or_default();
    assert!(text.contains("about to fail"), "log tail missing: {text}");
    assert!(text.contains("token=***"), "secret not masked: {text}");
    assert!(
        !format!("{output}").contains("s3cr3t-value"),
        "secret leaked: {output}"
    );
    assert!(!logs_text(&h, runs[0].id).contains("s3cr3t-value"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_deliveries_run_once() {
    let repo = TestRepo::new();
    let sha = repo.commit(
        &[(".github/workflows/ci.yml", &workflow("CI", "push", "true"))],
        "ci",
    );
    repo.push("refs/heads/main");
    let h = Harness::start().await;
    let payload = push_payload(&repo, "refs/heads/main", ZERO, &sha, &["a"]);
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(h.deliver("push", "same-delivery", &payload).await.0);
    }
    assert_eq!(statuses, [202, 200, 200]);
    h.completed_runs(1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(h.store().list_runs(10).unwrap().len(), 1);
    assert_eq!(h.provider.stats().allocated.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_choose_workflows_at_the_pushed_commit() {
    let repo = TestRepo::new();
    let docs = "name: Docs\non:\n  push:\n    paths: ['docs/**']\njobs:\n  d:\n    runs-on: x\n    steps:\n      - run: true\n";
    let release = "name: Release\non:\n  push:\n    tags: ['v*']\njobs:\n  r:\n    runs-on: x\n    steps:\n      - run: true\n";
    let main_only = "name: Main\non:\n  push:\n    branches: [main]\njobs:\n  m:\n    runs-on: x\n    steps:\n      - run: true\n";
    let sha = repo.commit(
        &[
            (".github/workflows/docs.yml", docs),
            (".github/workflows/release.yaml", release),
            (".github/workflows/main.yml", main_only),
            (".github/workflows/notes.txt", "not a workflow"),
        ],
        "workflows",
    );
    repo.push("refs/heads/main");
    repo.push("refs/tags/v1.0");
    let h = Harness::start().await;
    // A push to main touching src/: only "Main".
    h.deliver(
        "push",
        "a",
        &push_payload(&repo, "refs/heads/main", ZERO, &sha, &["src/x.rs"]),
    )
    .await;
    let runs = h.completed_runs(1).await;
    assert_eq!(
        runs.iter()
            .map(|r| r.workflow_name.as_str())
            .collect::<Vec<_>>(),
        ["Main"]
    );
    // A tag: "Release", and "Docs" too (GitHub does not evaluate path
    // filters for tag pushes), not "Main" (branch filters only).
    h.deliver(
        "push",
        "b",
        &push_payload(&repo, "refs/tags/v1.0", ZERO, &sha, &[]),
    )
    .await;
    let runs = h.completed_runs(3).await;
    let mut names: Vec<_> = runs[1..].iter().map(|r| r.workflow_name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["Docs", "Release"]);
    // A push to another branch touching docs: only "Docs".
    repo.push("refs/heads/dev");
    h.deliver(
        "push",
        "c",
        &push_payload(&repo, "refs/heads/dev", ZERO, &sha, &["docs/a.md"]),
    )
    .await;
    let runs = h.completed_runs(4).await;
    assert_eq!(runs[3].workflow_name, "Docs");
    // A deleted branch: nothing.
    let mut deleted = push_payload(&repo, "refs/heads/dev", &sha, ZERO, &[]);
    deleted["deleted"] = true.into();
    assert_eq!(h.deliver("push", "e", &deleted).await.0, 202);
    wait_for("the delete to be dispatched", || {
        h.store().delivery("e").unwrap().unwrap().state != kiln_store::DeliveryState::Queued
    })
    .await;
    assert_eq!(h.store().list_runs(10).unwrap().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_pull_requests_get_no_secrets() {
    let repo = TestRepo::new();
    let ci = workflow(
        "CI",
        "pull_request",
        "echo \"has-secret=${{ secrets.MY_SECRET != '' }}\"",
    );
    let base = repo.commit(&[(".github/workflows/ci.yml", &ci)], "ci");
    repo.push("refs/heads/main");
    repo.checkout_new("feature");
    let head = repo.commit(&[("a.txt", "a")], "change");
    repo.push("refs/pull/1/head");
    let h = Harness::start().await;
    let same_repo = pr_payload(
        &repo,
        "opened",
        1,
        ("feature", &head, REPO),
        ("main", &base),
    );
    let fork = pr_payload(
        &repo,
        "synchronize",
        1,
        ("feature", &head, "stranger/app"),
        ("main", &base),
    );
    h.deliver("pull_request", "same", &same_repo).await;
    let runs = h.completed_runs(1).await;
    assert!(logs_text(&h, runs[0].id).contains("has-secret=true"));
    h.deliver("pull_request", "fork", &fork).await;
    let runs = h.completed_runs(2).await;
    let log = logs_text(&h, runs[1].id);
    assert!(log.contains("has-secret=false"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_request_target_runs_the_base_and_cannot_check_out_the_head() {
    let repo = TestRepo::new();
    let target = "name: Target\non: pull_request_target\njobs:\n  t:\n    runs-on: x\n    steps:\n      - uses: actions/checkout@v4\n      - run: cat marker.txt\n      - uses: actions/checkout@v4\n        with:\n          ref: ${{ github.event.pull_request.head.sha }}\n";
    let base = repo.commit(
        &[
            (".github/workflows/target.yml", target),
            ("marker.txt", "base-commit\n"),
        ],
        "base",
    );
    repo.push("refs/heads/main");
    repo.checkout_new("evil");
    let head = repo.commit(&[("marker.txt", "head-commit\n")], "evil");
    repo.push("refs/pull/2/head");
    let h = Harness::start().await;
    let pr = pr_payload(
        &repo,
        "opened",
        2,
        ("evil", &head, "stranger/app"),
        ("main", &base),
    );
    h.deliver("pull_request", "prt", &pr).await;
    let runs = h.completed_runs(1).await;
    assert_eq!(runs[0].event, "pull_request_target");
    assert_eq!(runs[0].sha, base);
    let log = logs_text(&h, runs[0].id);
    assert!(log.contains("base-commit"), "{log}");
    assert!(!log.contains("head-commit"), "{log}");
    assert_eq!(
        runs[0].conclusion.as_deref(),
        Some("failure"),
        "checking out the head must fail"
    );
    let jobs = h.store().jobs(runs[0].id).unwrap();
    let steps = jobs[0].steps.as_array().unwrap();
    assert_eq!(steps[2]["conclusion"], "failure", "{steps:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflow_dispatch_runs_the_named_workflow_with_inputs() {
    let repo = TestRepo::new();
    let deploy = "name: Deploy\non:\n  workflow_dispatch:\n    inputs:\n      target:\n        default: staging\njobs:\n  d:\n    runs-on: x\n    steps:\n      - run: echo \"deploying to ${{ inputs.target }}\"\n";
    let other = workflow("Other", "workflow_dispatch", "true");
    repo.commit(
        &[
            (".github/workflows/deploy.yml", deploy),
            (".github/workflows/other.yml", &other),
        ],
        "wf",
    );
    repo.push("refs/heads/main");
    let h = Harness::start().await;
    let payload = serde_json::json!({
        "ref": "refs/heads/main",
        "workflow": ".github/workflows/deploy.yml",
        "inputs": {"target": "production"},
        "repository": repository(&repo),
        "sender": {"login": "dev"},
    });
    assert_eq!(h.deliver("workflow_dispatch", "wd", &payload).await.0, 202);
    let runs = h.completed_runs(1).await;
    assert_eq!(runs[0].workflow_name, "Deploy");
    assert_eq!(runs[0].sha, repo.head());
    assert!(logs_text(&h, runs[0].id).contains("deploying to production"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        h.store().list_runs(10).unwrap().len(),
        1,
        "only the named workflow runs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_in_progress_cancels_the_older_run() {
    let repo = TestRepo::new();
    let ci = "name: CI\non: push\nconcurrency:\n  group: ci-${{ github.ref }}\n  cancel-in-progress: true\njobs:\n  slow:\n    runs-on: x\n    steps:\n      - run: echo started; sleep 30\n";
    let first = repo.commit(&[(".github/workflows/ci.yml", ci)], "one");
    repo.push("refs/heads/main");
    let h = Harness::start().await;
    h.deliver(
        "push",
        "one",
        &push_payload(&repo, "refs/heads/main", ZERO, &first, &["a"]),
    )
    .await;
    wait_for("the first run to start", || {
        h.store()
            .list_runs(10)
            .unwrap()
            .iter()
            .any(|r| r.state == RunState::InProgress)
    })
    .await;
    let second = repo.commit(
        &[(".github/workflows/ci.yml", &ci.replace("sleep 30", "true"))],
        "two",
    );
    repo.push("refs/heads/main");
    h.deliver(
        "push",
        "two",
        &push_payload(&repo, "refs/heads/main", &first, &second, &["a"]),
    )
    .await;
    let runs = h.completed_runs(2).await;
    assert_eq!(
        runs[0].conclusion.as_deref(),
        Some("cancelled"),
        "{:?}",
        runs[0]
    );
    assert_eq!(
        runs[1].conclusion.as_deref(),
        Some("success"),
        "{:?}",
        runs[1]
    );
    assert_eq!(
        runs[0].concurrency_group.as_deref(),
        Some("ci-refs/heads/main")
    );
    let (a, b) = (&runs[0], &runs[1]);
    assert!(
        a.finished_at.unwrap() <= b.started_at.unwrap(),
        "the group never overlaps"
    );
    let checks = completed_checks(&h.github, 2).await;
    let mut conclusions: Vec<_> = checks
        .iter()
        .map(|c| c.conclusion.clone().unwrap())
        .collect();
    conclusions.sort();
    assert_eq!(conclusions, ["cancelled", "success"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_pending_run_replaces_the_older_pending_one() {
    let repo = TestRepo::new();
    let ci = "name: CI\non: push\nconcurrency: deploy\njobs:\n  slow:\n    runs-on: x\n    steps:\n      - run: sleep 2\n";
    let sha = repo.commit(&[(".github/workflows/ci.yml", ci)], "one");
    repo.push("refs/heads/main");
    let h = Harness::start().await;
    for d in ["a", "b", "c"] {
        h.deliver(
            "push",
            d,
            &push_payload(&repo, "refs/heads/main", ZERO, &sha, &["x"]),
        )
        .await;
    }
    let runs = h.completed_runs(3).await;
    let conclusions: Vec<_> = runs.iter().map(|r| r.conclusion.clone().unwrap()).collect();
    assert_eq!(
        conclusions,
        ["success", "cancelled", "success"],
        "{runs:#?}"
    );
    assert!(
        runs[1].started_at.is_none(),
        "the cancelled pending run never started"
    );
    assert_eq!(h.provider.stats().allocated.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_mode_posts_commit_statuses() {
    let repo = TestRepo::new();
    let sha = repo.commit(
        &[(
            ".github/workflows/ci.yml",
            &workflow("CI", "push", "exit 1"),
        )],
        "ci",
    );
    repo.push("refs/heads/main");
    let h = Harness::start_with(|c| c.report = kiln_server::config::ReportMode::Statuses).await;
    h.deliver(
        "push",
        "d",
        &push_payload(&repo, "refs/heads/main", ZERO, &sha, &["a"]),
    )
    .await;
    h.completed_runs(1).await;
    wait_for("a final status", || {
        h.github.statuses().iter().any(|s| s.state == "failure")
    })
    .await;
    let statuses = h.github.statuses();
    let states: Vec<_> = statuses.iter().map(|s| s.state.as_str()).collect();
    assert_eq!(states, ["pending", "pending", "failure"], "{statuses:#?}");
    assert!(
        statuses
            .iter()
            .all(|s| s.context == "CI / build (push)" && s.sha == sha)
    );
    assert!(h.github.check_runs().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reporting_failures_never_fail_a_run() {
    let repo = TestRepo::new();
    let sha = repo.commit(
        &[(".github/workflows/ci.yml", &workflow("CI", "push", "true"))],
        "ci",
    );
    repo.push("refs/heads/main");
    let h = Harness::start().await;
    // Every request fails for a while (more than the client's retries).
    h.github.fail_next(100, 500, &[]);
    h.deliver(
        "push",
        "d",
        &push_payload(&repo, "refs/heads/main", ZERO, &sha, &["a"]),
    )
    .await;
    let runs = h.completed_runs(1).await;
    assert_eq!(runs[0].conclusion.as_deref(), Some("success"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_cancels_runs_after_the_grace_period() {
    let repo = TestRepo::new();
    let sha = repo.commit(
        &[(
            ".github/workflows/ci.yml",
            &workflow("CI", "push", "echo started; sleep 60"),
        )],
        "ci",
    );
    repo.push("refs/heads/main");
    let mut h = Harness::start().await;
    h.deliver(
        "push",
        "d",
        &push_payload(&repo, "refs/heads/main", ZERO, &sha, &["a"]),
    )
    .await;
    wait_for("the run to start", || {
        h.store()
            .list_runs(1)
            .unwrap()
            .first()
            .is_some_and(|r| r.state == RunState::InProgress)
    })
    .await;
    let server = h.server.take().unwrap();
    let store = server.state().db.clone();
    let report = server.shutdown_with(Duration::from_millis(300)).await;
    assert_eq!(report.cancelled, 1);
    assert_eq!(report.leaked_sessions, 0);
    let run = &store.store().list_runs(1).unwrap()[0];
    assert_eq!(run.conclusion.as_deref(), Some("cancelled"), "{run:?}");
    assert!(
        vm_dirs(h.data.path()).is_empty(),
        "{:?}",
        vm_dirs(h.data.path())
    );
    assert_eq!(h.provider.stats().live.len(), 0);
}

/// Kills a server mid-run (its runtime dropped, as a crash would), then
/// starts a new one on the same data directory.
#[test]
fn a_restart_mid_run_fails_the_run_and_resumes_queued_ones() {
    let repo = TestRepo::new();
    let sha = repo.commit(
        &[(
            ".github/workflows/ci.yml",
            &workflow("CI", "push", "echo started; sleep 60"),
        )],
        "ci",
    );
    repo.push("refs/heads/main");
    let quick = repo.commit(
        &[(".github/workflows/ci.yml", &workflow("CI", "push", "true"))],
        "quick",
    );
    repo.push("refs/heads/quick");
    let data = tempfile::tempdir().unwrap();
    // The fake GitHub outlives both servers, on a runtime of its own.
    let github_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let github = github_rt.block_on(kiln_github::fake::FakeGitHub::start());

    let first = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    first.block_on(async {
        let mut c = config(data.path(), &github);
        c.max_concurrent_sessions = 1;
        let server = start_server(c, local_provider(data.path()), &github).await;
        let h = reqwest::Client::new();
        for (id, payload) in [
            (
                "slow",
                push_payload(&repo, "refs/heads/main", ZERO, &sha, &["a"]),
            ),
            (
                "queued",
                push_payload(&repo, "refs/heads/quick", ZERO, &quick, &["a"]),
            ),
        ] {
            let body = serde_json::to_vec(&payload).unwrap();
            let status = h
                .post(format!("http://{}/webhook", server.addr()))
                .header("x-github-event", "push")
                .header("x-github-delivery", id)
                .header("x-hub-signature-256", sign(SECRET, &body))
                .body(body)
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, 202);
        }
        let store = server.state().db.clone();
        wait_for("the slow run to start and the other to queue", || {
            let runs = store.store().list_runs(10).unwrap();
            runs.len() == 2
                && runs.iter().any(|r| r.state == RunState::InProgress)
                && runs.iter().any(|r| r.state == RunState::Queued)
        })
        .await;
        wait_for("the check run to be in progress", || {
            github
                .check_runs()
                .iter()
                .any(|c| c.status == "in_progress")
        })
        .await;
        // Crash while the step sleeps, not while files are still being put
        // into its VM directory (the "crash" is in-process, so the VM is
        // cleaned up by its Drop, not by the next start's reaping).
        wait_for("the step to run", || {
            store.store().list_runs(10).unwrap().iter().any(|r| {
                store
                    .store()
                    .logs(r.id, None, 0)
                    .unwrap()
                    .iter()
                    .any(|l| l.line == "started")
            })
        })
        .await;
        std::mem::forget(server); // no graceful shutdown: a crash
    });
    drop(first);

    let second = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    second.block_on(async {
        let c = config(data.path(), &github);
        let provider = local_provider(data.path());
        let server = start_server(c, provider.clone(), &github).await;
        let runs = wait_completed(server.state().db.store(), 2).await;
        let (slow, queued) = (&runs[0], &runs[1]);
        assert_eq!(slow.conclusion.as_deref(), Some("failure"), "{slow:?}");
        assert_eq!(slow.reason.as_deref(), Some("runner restarted"));
        assert_eq!(queued.conclusion.as_deref(), Some("success"), "{queued:?}");
        let checks = completed_checks(&github, 2).await;
        let slow_check = checks.iter().find(|c| c.head_sha == sha).unwrap();
        assert_eq!(slow_check.conclusion.as_deref(), Some("failure"));
        assert!(
            format!("{:?}", slow_check.output).contains("runner restarted"),
            "{slow_check:?}"
        );
        assert!(
            vm_dirs(data.path()).is_empty(),
            "{:?}",
            vm_dirs(data.path())
        );
        assert_eq!(
            provider.stats().allocated.len(),
            1,
            "only the queued run ran"
        );
        server.shutdown().await;
    });
    drop(github);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_filters_use_git_when_the_payload_lists_no_commits() {
    let repo = TestRepo::new();
    let docs = "name: Docs\non:\n  push:\n    paths: ['docs/**']\njobs:\n  d:\n    runs-on: x\n    steps:\n      - run: true\n";
    let a = repo.commit(&[(".github/workflows/docs.yml", docs)], "a");
    let b = repo.commit(&[("docs/guide.md", "hi\n")], "b");
    let c = repo.commit(&[("src/main.rs", "fn main() {}\n")], "c");
    repo.push("refs/heads/main");
    let h = Harness::start().await;
    // GitHub lists at most 20 commits; an empty list means "ask git".
    let mut touches_docs = push_payload(&repo, "refs/heads/main", &a, &b, &[]);
    touches_docs["commits"] = serde_json::json!([]);
    let mut touches_src = push_payload(&repo, "refs/heads/main", &b, &c, &[]);
    touches_src["commits"] = serde_json::json!([]);
    h.deliver("push", "src", &touches_src).await;
    h.deliver("push", "docs", &touches_docs).await;
    let runs = h.completed_runs(1).await;
    wait_for("both deliveries to be dispatched", || {
        ["src", "docs"].iter().all(|d| {
            h.store().delivery(d).unwrap().unwrap().state == kiln_store::DeliveryState::Dispatched
        })
    })
    .await;
    assert_eq!(h.store().list_runs(10).unwrap().len(), 1);
    assert_eq!(runs[0].sha, b, "only the push touching docs/ runs");
}
