//! Test support: local git repositories, signed deliveries, and a server
//! on 127.0.0.1 with the `local` backend (counted) and a fake GitHub.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_github::fake::FakeGitHub;
use kiln_server::config::{ReportMode, Secret, ServerConfig};
use kiln_server::{Deps, Server};
use kiln_store::{RunRecord, RunState, Store};
use kiln_vm::{CountingProvider, KillGrace, LocalProvider};
use serde_json::{Value, json};

pub const SECRET: &str = "test-webhook-secret";
pub const REPO: &str = "octo/app";

/// A bare "origin" repository and a working clone that pushes to it.
pub struct TestRepo {
    pub dir: tempfile::TempDir,
}

impl TestRepo {
    pub fn new() -> TestRepo {
        let dir = tempfile::tempdir().expect("tempdir");
        git(
            dir.path(),
            &["init", "-q", "--bare", "-b", "main", "origin.git"],
        );
        git(dir.path(), &["init", "-q", "-b", "main", "work"]);
        git(
            &dir.path().join("work"),
            &["remote", "add", "origin", "../origin.git"],
        );
        TestRepo { dir }
    }

    pub fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    pub fn origin(&self) -> PathBuf {
        self.dir.path().join("origin.git")
    }

    pub fn clone_url(&self) -> String {
        format!("file://{}", self.origin().display())
    }

    /// Writes `files` and commits them; returns the new commit's SHA.
    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        for (path, text) in files {
            let full = self.work().join(path);
            std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
            std::fs::write(full, text).expect("write");
        }
        git(&self.work(), &["add", "-A"]);
        git(
            &self.work(),
            &["commit", "-q", "--allow-empty", "-m", message],
        );
        self.head()
    }

    pub fn head(&self) -> String {
        git(&self.work(), &["rev-parse", "HEAD"])
    }

    pub fn checkout_new(&self, branch: &str) {
        git(&self.work(), &["checkout", "-q", "-b", branch]);
    }

    pub fn checkout(&self, branch: &str) {
        git(&self.work(), &["checkout", "-q", branch]);
    }

    /// Pushes HEAD to `dest_ref` of origin (`refs/heads/main`, `refs/pull/1/head`).
    pub fn push(&self, dest_ref: &str) {
        git(
            &self.work(),
            &["push", "-q", "-f", "origin", &format!("HEAD:{dest_ref}")],
        );
    }
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.com"])
        .args(args)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub fn repository(repo: &TestRepo) -> Value {
    json!({
        "full_name": REPO,
        "name": "app",
        "owner": {"login": "octo"},
        "clone_url": repo.clone_url(),
    })
}

pub fn push_payload(
    repo: &TestRepo,
    git_ref: &str,
    before: &str,
    after: &str,
    files: &[&str],
) -> Value {
    json!({
        "ref": git_ref,
        "before": before,
        "after": after,
        "created": false,
        "deleted": false,
        "commits": [{"id": after, "added": [], "modified": files, "removed": []}],
        "head_commit": {"id": after},
        "repository": repository(repo),
        "pusher": {"name": "dev"},
        "sender": {"login": "dev"},
    })
}

pub fn pr_payload(
    repo: &TestRepo,
    action: &str,
    number: u64,
    head: (&str, &str, &str),
    base: (&str, &str),
) -> Value {
    let (head_ref, head_sha, head_repo) = head;
    let (base_ref, base_sha) = base;
    json!({
        "action": action,
        "number": number,
        "pull_request": {
            "number": number,
            "head": {"ref": head_ref, "sha": head_sha, "repo": {"full_name": head_repo}},
            "base": {"ref": base_ref, "sha": base_sha, "repo": {"full_name": REPO}},
        },
        "repository": repository(repo),
        "sender": {"login": "contributor"},
    })
}

pub fn sign(secret: &str, body: &[u8]) -> String {
    kiln_server::signature::sign(secret.as_bytes(), body)
}

/// A server with the local backend, wrapped in a counting provider.
pub struct Harness {
    pub data: tempfile::TempDir,
    pub github: FakeGitHub,
    pub provider: Arc<CountingProvider<LocalProvider>>,
    pub server: Option<Server>,
    pub http: reqwest::Client,
}

pub fn config(data: &Path, github: &FakeGitHub) -> ServerConfig {
    let mut c = ServerConfig::new(data);
    c.webhook_secrets = vec![Secret::new(SECRET)];
    c.report = ReportMode::Checks;
    c.max_concurrent_sessions = 2;
    c.shutdown_grace = Duration::from_secs(30);
    c.secrets
        .insert("MY_SECRET".into(), Secret::new("s3cr3t-value"));
    let _ = github;
    c
}

pub fn local_provider(data: &Path) -> Arc<CountingProvider<LocalProvider>> {
    let grace = KillGrace {
        interrupt: Duration::from_millis(500),
        terminate: Duration::from_millis(500),
    };
    Arc::new(CountingProvider::new(
        LocalProvider::new(data.join("vms")).with_kill_grace(grace),
    ))
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut ServerConfig)) -> Harness {
        let data = tempfile::tempdir().expect("tempdir");
        let github = FakeGitHub::start().await;
        let mut c = config(data.path(), &github);
        tweak(&mut c);
        let provider = local_provider(data.path());
        let server = start_server(c, provider.clone(), &github).await;
        Harness {
            data,
            github,
            provider,
            server: Some(server),
            http: reqwest::Client::new(),
        }
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("server running")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server().addr())
    }

    pub fn store(&self) -> &Store {
        self.server().state().db.store()
    }

    /// Posts a signed delivery; returns the status and body.
    pub async fn deliver(&self, event: &str, delivery: &str, payload: &Value) -> (u16, String) {
        let body = serde_json::to_vec(payload).expect("json");
        let resp = self
            .http
            .post(self.url("/webhook"))
            .header("x-github-event", event)
            .header("x-github-delivery", delivery)
            .header("x-hub-signature-256", sign(SECRET, &body))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("post");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }

    /// Waits until `n` runs exist and all are completed.
    pub async fn completed_runs(&self, n: usize) -> Vec<RunRecord> {
        wait_completed(self.store(), n).await
    }
}

pub async fn start_server(
    c: ServerConfig,
    provider: Arc<CountingProvider<LocalProvider>>,
    github: &FakeGitHub,
) -> Server {
    start_server_on(c, provider, github).await
}

/// A server on any backend, reporting to `github` with its test token.
pub async fn start_server_on(
    c: ServerConfig,
    provider: Arc<dyn kiln_vm::VmProvider>,
    github: &FakeGitHub,
) -> Server {
    let client = kiln_github::GitHubClient::new(github.token_config()).expect("client");
    let deps = Deps {
        provider,
        reporter: Some(Arc::new(client)),
    };
    Server::start(c, deps).await.expect("server starts")
}

/// Polls `store` until `n` runs exist and all are completed (30 s at most).
pub async fn wait_completed(store: &Store, n: usize) -> Vec<RunRecord> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let runs = store.list_runs(1000).expect("list runs");
        if runs.len() >= n && runs.iter().all(|r| r.state == RunState::Completed) {
            let mut runs = runs;
            runs.reverse();
            return runs;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {n} completed runs; have {:?}",
            runs.iter()
                .map(|r| (r.id, r.state, r.conclusion.clone()))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls until `pred` holds (30 s at most).
pub async fn wait_for(what: &str, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !pred() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The check runs of the fake, by name, once all are completed.
pub async fn completed_checks(
    github: &FakeGitHub,
    n: usize,
) -> Vec<kiln_github::fake::CheckRunState> {
    wait_for(&format!("{n} completed check runs"), || {
        let checks = github.check_runs();
        checks.len() >= n && checks.iter().all(|c| c.status == "completed")
    })
    .await;
    github.check_runs()
}

/// A workflow with one job `build` running `script` on push and pull_request.
pub fn workflow(name: &str, on: &str, script: &str) -> String {
    let script = script
        .lines()
        .map(|l| format!("          {l}\n"))
        .collect::<String>();
    format!(
        "name: {name}\non: {on}\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n      - name: main step\n        run: |\n{script}"
    )
}

/// Directories of live local VMs under the data dir.
pub fn vm_dirs(data: &Path) -> Vec<String> {
    match std::fs::read_dir(data.join("vms")) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}
