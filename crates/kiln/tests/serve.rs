//! `kiln serve`, `kiln runs` and `kiln logs` as a user runs them: the real
//! binary on 127.0.0.1 with the local backend, signed deliveries over HTTP,
//! SIGTERM and SIGKILL.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const SECRET: &str = "cli-test-secret";
const ZERO: &str = "0000000000000000000000000000000000000000";

fn kiln() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
    for var in [
        "KILN_DATA_DIR",
        "KILN_CONFIG",
        "KILN_WEBHOOK_SECRET",
        "KILN_BACKEND",
        "KILN_GITHUB_TOKEN",
        "KILN_GITHUB_API_URL",
        "KILN_GITHUB_APP_ID",
        "KILN_REPORT",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("NO_COLOR", "1");
    cmd
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=T", "-c", "user.email=t@example.com"])
        .args(args)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A bare origin with one commit holding `workflow` on main.
fn origin(dir: &Path, workflow: &str) -> (PathBuf, String) {
    let work = dir.join("work");
    let bare = dir.join("origin.git");
    git(dir, &["init", "-q", "-b", "main", "work"]);
    std::fs::create_dir_all(work.join(".github/workflows")).expect("mkdir");
    std::fs::write(work.join(".github/workflows/ci.yml"), workflow).expect("write");
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "ci"]);
    git(dir, &["clone", "-q", "--bare", "work", "origin.git"]);
    let sha = git(&work, &["rev-parse", "HEAD"]);
    (bare, sha)
}

fn push_payload(bare: &Path, sha: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "ref": "refs/heads/main", "before": ZERO, "after": sha,
        "commits": [{"id": sha, "added": [".github/workflows/ci.yml"], "modified": [], "removed": []}],
        "repository": {"full_name": "octo/app", "clone_url": format!("file://{}", bare.display())},
        "sender": {"login": "dev"},
    }))
    .expect("json")
}

/// A minimal HTTP/1.1 POST over loopback; returns the status code.
fn post(addr: &str, event: &str, delivery: &str, body: &[u8]) -> u16 {
    let sig = kiln_server::signature::sign(SECRET.as_bytes(), body);
    let mut stream = TcpStream::connect(addr).expect("connect");
    let head = format!(
        "POST /webhook HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         X-GitHub-Event: {event}\r\nX-GitHub-Delivery: {delivery}\r\n\
         X-Hub-Signature-256: {sig}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("write");
    stream.write_all(body).expect("write body");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// `kiln serve` in the background; returns it and its address.
fn serve(data: &Path) -> (Server, String) {
    serve_with(data, &["--backend", "local", "--report", "none"], &[])
}

/// `kiln serve` on 127.0.0.1 with `args` and `env` added.
fn serve_with(data: &Path, args: &[&str], env: &[(&str, &str)]) -> (Server, String) {
    let mut child = kiln()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env("KILN_WEBHOOK_SECRET", SECRET)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kiln serve");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("kiln serve exited before listening")
            .expect("read stderr");
        if let Some(url) = line.strip_prefix("kiln serve: listening on http://") {
            break url.trim().to_owned();
        }
    };
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (Server(child), addr)
}

/// A `kiln serve` process, killed if a failing test leaves it running (it
/// would keep its VMs alive long after the test).
struct Server(Child);

impl std::ops::Deref for Server {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Server {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            // SIGTERM: the server releases its VMs before it exits.
            signal(&self.0, nix::sys::signal::Signal::SIGTERM);
            let _ = self.0.wait();
        }
    }
}

fn runs_json(data: &Path) -> Vec<Value> {
    let out = kiln()
        .args(["runs", "--json", "--data-dir"])
        .arg(data)
        .output()
        .expect("kiln runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("runs json")
}

fn wait_for(what: &str, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !pred() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn signal(child: &Child, sig: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, sig).expect("signal");
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn serve_refuses_to_start_without_a_webhook_secret() {
    let data = tempfile::tempdir().expect("tempdir");
    let out = kiln()
        .args([
            "serve",
            "--backend",
            "local",
            "--report",
            "none",
            "--data-dir",
        ])
        .arg(data.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("no webhook secret"), "{}", text(&out));
}

#[test]
fn serve_rejects_unknown_configuration_keys() {
    let data = tempfile::tempdir().expect("tempdir");
    let config = data.path().join("kiln.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:0\"\nmax_sesions = 3\n").expect("write");
    let out = kiln()
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("unknown field `max_sesions`"),
        "{}",
        text(&out)
    );
}

#[test]
fn serve_runs_a_push_then_runs_and_logs_read_the_store() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wf = "name: CI\non: push\njobs:\n  build:\n    runs-on: x\n    steps:\n      - run: echo hello-from-kiln-serve\n";
    let (bare, sha) = origin(tmp.path(), wf);
    let data = tmp.path().join("data");
    let (mut child, addr) = serve(&data);
    assert_eq!(post(&addr, "push", "d-1", &push_payload(&bare, &sha)), 202);
    assert_eq!(
        post(&addr, "push", "d-1", &push_payload(&bare, &sha)),
        200,
        "duplicate"
    );
    wait_for("the run to complete", || {
        runs_json(&data)
            .first()
            .is_some_and(|r| r["state"] == "completed")
    });
    let runs = runs_json(&data);
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["conclusion"], "success");
    let id = runs[0]["id"].as_i64().expect("id");

    let table = kiln()
        .args(["runs", "--data-dir"])
        .arg(&data)
        .output()
        .expect("runs");
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    let mut lines = table.lines();
    assert!(
        lines.next().is_some_and(|h| h.starts_with("ID  STATUS")),
        "{table}"
    );
    let row = lines.next().expect("a row");
    for cell in [
        &id.to_string(),
        "success",
        "octo/app",
        "CI",
        "push",
        "main",
        &sha[..7],
    ] {
        assert!(row.contains(cell), "{cell} missing in {row:?}");
    }

    let logs = kiln()
        .args(["logs", &id.to_string(), "--data-dir"])
        .arg(&data)
        .output()
        .expect("logs");
    assert!(logs.status.success(), "{}", text(&logs));
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("hello-from-kiln-serve"),
        "{}",
        text(&logs)
    );
    let missing = kiln()
        .args(["logs", "999", "--data-dir"])
        .arg(&data)
        .output()
        .expect("logs");
    assert_eq!(missing.status.code(), Some(2));

    signal(&child, nix::sys::signal::Signal::SIGTERM);
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_killed_server_restarts_fails_the_interrupted_run_and_reaps_its_vm() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pid_file = tmp.path().join("step.pid");
    let wf = format!(
        "name: CI\non: push\njobs:\n  build:\n    runs-on: x\n    steps:\n      - run: echo $$ > {}; sleep 30\n",
        pid_file.display()
    );
    let (bare, sha) = origin(tmp.path(), &wf);
    let data = tmp.path().join("data");
    let (mut child, addr) = serve(&data);
    assert_eq!(post(&addr, "push", "slow", &push_payload(&bare, &sha)), 202);
    wait_for("the step to start", || {
        pid_file.is_file()
            && runs_json(&data)
                .first()
                .is_some_and(|r| r["state"] == "in_progress")
    });
    signal(&child, nix::sys::signal::Signal::SIGKILL);
    child.wait().expect("wait");
    let vms = data.join("vms");
    let left = || std::fs::read_dir(&vms).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left(), 1, "the killed server left its VM directory");

    let (mut child, _addr) = serve(&data);
    let runs = runs_json(&data);
    assert_eq!(runs[0]["conclusion"], "failure", "{runs:?}");
    assert_eq!(runs[0]["reason"], "runner restarted");
    assert_eq!(left(), 0, "the orphaned VM was reaped at start");

    signal(&child, nix::sys::signal::Signal::SIGTERM);
    assert_eq!(child.wait().expect("wait").code(), Some(0));
    // The step's process outlived its killed server; end it.
    if let Some(pid) = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
    {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Whether the qemu backend can run here (QEMU and the `minimal` image
/// under `$KILN_HOME`); prints why not, and fails instead under
/// `KILN_REQUIRE_QEMU`.
fn qemu_available() -> bool {
    use kiln_vm::qemu::SetupError;
    let why = match kiln_vm::QemuConfig::default_data_dir() {
        None => "neither KILN_HOME nor HOME is set".to_owned(),
        Some(home) => {
            match kiln_vm::QemuConfig::from_data_dir(&home).and_then(kiln_vm::QemuProvider::new) {
                Ok(_) => return true,
                Err(
                    e @ (SetupError::MissingTool { .. }
                    | SetupError::MissingImage { .. }
                    | SetupError::NoImage { .. }),
                ) => e.to_string(),
                Err(e) => panic!("qemu backend setup failed: {e}"),
            }
        }
    };
    if std::env::var_os("KILN_REQUIRE_QEMU").is_some() {
        panic!("KILN_REQUIRE_QEMU is set but the qemu backend cannot run: {why}");
    }
    eprintln!("skipping: {why}");
    false
}

/// Pids of QEMU and passt processes whose command line mentions `dir`
/// (other tests run VMs on this machine too: never count them all).
fn vm_processes_under(dir: &Path) -> Vec<(u32, String)> {
    let needle = dir.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
            ((cmdline.contains("qemu-system") || cmdline.contains("passt"))
                && cmdline.contains(&needle))
            .then_some((pid, cmdline))
        })
        .collect()
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The real binary on the qemu backend, reporting to a fake GitHub:
/// `kill -9` while a run's step sleeps in its VM, then a new `kiln serve`
/// on the same data directory reaps the VM (no QEMU process, no state
/// directory) and fails the run with "runner restarted", at GitHub too.
#[test]
fn a_killed_qemu_server_leaves_no_vm_and_reports_the_run_failed() {
    if !qemu_available() {
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("kss")
        .tempdir()
        .expect("tempdir");
    let wf = "name: CI\non: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo step-started-in-vm; sleep 30\n";
    let (bare, sha) = origin(tmp.path(), wf);
    let data = tmp.path().join("data");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let github = rt.block_on(kiln_github::fake::FakeGitHub::start());
    let api = github.url();
    let args = [
        "--backend",
        "qemu",
        "--report",
        "checks",
        "--github-api-url",
        &api,
        "--max-sessions",
        "1",
        "--vm-vcpus",
        "1",
        "--vm-memory-mib",
        "512",
        // Only the run's VM: no idle pooled VMs, no snapshot template.
        "--warm-pool",
        "0",
        "--snapshot-restore",
        "false",
    ];
    let env = [("KILN_GITHUB_TOKEN", kiln_github::fake::TEST_TOKEN)];
    let (mut child, addr) = serve_with(&data, &args, &env);
    assert_eq!(post(&addr, "push", "slow", &push_payload(&bare, &sha)), 202);
    let id = {
        let mut id = None;
        wait_for("the step to run in its VM", || {
            let Some(run) = runs_json(&data).into_iter().next() else {
                return false;
            };
            id = run["id"].as_i64();
            let logs = kiln()
                .args(["logs", &id.unwrap_or_default().to_string(), "--data-dir"])
                .arg(&data)
                .output()
                .expect("kiln logs");
            run["state"] == "in_progress"
                && String::from_utf8_lossy(&logs.stdout).contains("step-started-in-vm")
        });
        id.expect("a run id")
    };
    wait_for("the check run to be in progress", || {
        github
            .check_runs()
            .iter()
            .any(|c| c.status == "in_progress")
    });
    let qemu_dir = data.join("qemu-vms");
    assert_eq!(entries(&qemu_dir).len(), 1, "one VM for the run");
    assert!(
        vm_processes_under(&data)
            .iter()
            .any(|(_, c)| c.contains("qemu-system")),
        "the run's QEMU is running"
    );

    signal(&child, nix::sys::signal::Signal::SIGKILL);
    child.wait().expect("wait");
    assert!(
        vm_processes_under(&data)
            .iter()
            .any(|(_, c)| c.contains("qemu-system")),
        "the killed server left its QEMU behind (what the restart must clean up)"
    );
    assert_eq!(entries(&qemu_dir).len(), 1, "and its VM state directory");

    let (mut child, _addr) = serve_with(&data, &args, &env);
    // Recovery is done before the server listens.
    let left = vm_processes_under(&data);
    assert!(
        left.is_empty(),
        "VM processes left after the restart: {left:?}"
    );
    assert_eq!(entries(&qemu_dir), Vec::<String>::new(), "no VM state left");
    let runs = runs_json(&data);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["id"].as_i64(), Some(id));
    assert_eq!(runs[0]["conclusion"], "failure", "{runs:?}");
    assert_eq!(runs[0]["reason"], "runner restarted");
    wait_for("the failure to be reported to GitHub", || {
        github.check_runs().iter().any(|c| c.status == "completed")
    });
    let checks = github.check_runs();
    assert_eq!(checks.len(), 1, "{checks:?}");
    assert_eq!(checks[0].head_sha, sha);
    assert_eq!(
        checks[0].conclusion.as_deref(),
        Some("failure"),
        "{checks:?}"
    );
    assert!(
        format!("{:?}", checks[0].output).contains("runner restarted"),
        "{:?}",
        checks[0].output
    );

    signal(&child, nix::sys::signal::Signal::SIGTERM);
    assert_eq!(child.wait().expect("wait").code(), Some(0));
    assert!(vm_processes_under(&data).is_empty());
    drop(github);
}

/// With a warm pool and snapshot restore (the defaults) and no snapshot
/// yet, `kiln serve` makes the snapshot before its pool starts: the pool
/// then fills by restoring, and no template VM ever runs beside the pooled
/// ones (which would exceed the VM limit).
#[test]
fn serve_makes_the_snapshot_before_its_warm_pool_starts() {
    if !qemu_available() {
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("ksp")
        .tempdir()
        .expect("tempdir");
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let images = kiln_vm::QemuConfig::default_data_dir()
        .expect("a data dir")
        .join("images");
    std::os::unix::fs::symlink(&images, home.join("images")).expect("link the images");
    let data = tmp.path().join("data");

    // Count this server's QEMUs from before it starts until its pool is full.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (done, dir) = (done.clone(), tmp.path().to_owned());
        std::thread::spawn(move || {
            let mut most = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let qemus = vm_processes_under(&dir)
                    .iter()
                    .filter(|(_, c)| c.contains("qemu-system"))
                    .count();
                most = most.max(qemus);
                std::thread::sleep(Duration::from_millis(20));
            }
            most
        })
    };
    let home_env = home.to_string_lossy().into_owned();
    let args = [
        "--backend",
        "qemu",
        "--report",
        "none",
        "--max-sessions",
        "1",
        "--vm-vcpus",
        "1",
        "--vm-memory-mib",
        "512",
    ];
    let (mut child, _addr) = serve_with(&data, &args, &[("KILN_HOME", &home_env)]);
    // Listening means the provider is set up: the snapshot exists already.
    let snapshots = entries(&home.join("qemu-snapshots"));
    assert!(
        snapshots.iter().any(|s| s.starts_with("minimal-")),
        "no snapshot when serve started listening: {snapshots:?}"
    );
    wait_for("the warm pool to fill (2 VMs)", || {
        entries(&data.join("qemu-vms")).len() == 2
    });
    std::thread::sleep(Duration::from_millis(300));
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let most = sampler.join().expect("sampler");
    assert!(
        most <= 2,
        "{most} QEMUs ran at once for a pool of 2 and no runs"
    );
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    assert_eq!(child.wait().expect("wait").code(), Some(0));
    assert!(
        vm_processes_under(tmp.path()).is_empty(),
        "VM processes left after shutdown"
    );
    assert!(entries(&data.join("qemu-vms")).is_empty());
}
