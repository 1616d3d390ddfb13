//! Shared helpers for the black-box tests of the `kiln` binary: a temporary
//! git repository holding a copy of `examples/`, a private `KILN_HOME`, the
//! backend runs use (`KILN_TEST_BACKEND`), and accessors over the `--json`
//! run result.

#![allow(dead_code)] // Each test crate uses a different part of the helpers.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use tempfile::TempDir;

/// The `kiln` binary under test.
pub fn kiln_bin() -> &'static str {
    env!("CARGO_BIN_EXE_kiln")
}

/// The workspace's `examples/` directory.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// The backend `kiln run` uses in a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `--backend local`: host processes, no isolation.
    Local,
    /// `--backend qemu`: a microVM per run, from the images of the real
    /// Kiln data directory (`$KILN_HOME`, default `~/.local/share/kiln`).
    Qemu,
}

impl Backend {
    /// From `KILN_TEST_BACKEND`: unset, empty or `local`, or `qemu`.
    /// Anything else is a mistake in how the tests were started.
    pub fn from_env() -> Backend {
        match std::env::var("KILN_TEST_BACKEND").as_deref() {
            Err(_) | Ok("") | Ok("local") => Backend::Local,
            Ok("qemu") => Backend::Qemu,
            Ok(other) => panic!(
                "KILN_TEST_BACKEND={other:?} is not a known test backend (supported: local, qemu)"
            ),
        }
    }

    /// The `--backend` value.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Local => "local",
            Backend::Qemu => "qemu",
        }
    }

    /// The directory below `KILN_HOME` where the backend keeps one
    /// directory per live VM.
    pub fn vms_dir(self) -> &'static str {
        match self {
            Backend::Local => "local-vms",
            Backend::Qemu => "qemu-vms",
        }
    }
}

/// The Kiln data directory holding the real guest images (`kiln image
/// build`): `$KILN_HOME`, else `~/.local/share/kiln`.
pub fn real_data_dir() -> PathBuf {
    match std::env::var_os("KILN_HOME") {
        Some(home) => home.into(),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME is not set"))
            .join(".local/share/kiln"),
    }
}

/// Whether qemu tests can run here: the images of `flavours` are built and
/// QEMU and passt are installed. When they cannot, this prints why and
/// returns false — unless `KILN_REQUIRE_QEMU` is set (CI), where it panics:
/// VM tests must run there, never skip.
pub fn qemu_available(test: &str, flavours: &[&str]) -> bool {
    let images = real_data_dir().join("images");
    let mut missing = Vec::new();
    for flavour in flavours {
        if !images
            .join(flavour)
            .join("current")
            .join("manifest.json")
            .is_file()
        {
            missing.push(format!("no {flavour} image in {}", images.display()));
        }
    }
    for tool in ["qemu-system-x86_64", "qemu-img", "passt"] {
        let found = std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(tool).is_file()));
        if !found {
            missing.push(format!("{tool} not on PATH"));
        }
    }
    if missing.is_empty() {
        return true;
    }
    let why = missing.join("; ");
    if std::env::var_os("KILN_REQUIRE_QEMU").is_some() {
        panic!("{test}: KILN_REQUIRE_QEMU is set but the qemu backend cannot run: {why}");
    }
    eprintln!("SKIPPED {test} (run ./scripts/build-images.sh first): {why}");
    false
}

/// A scratch directory with a git repository (`repo/`, two commits, the
/// examples copied into `repo/examples`) and a `KILN_HOME` (`home/`).
///
/// `home/` is private to the test, so its VM directories (`local-vms/`,
/// `qemu-vms/`: where a backend keeps each live VM's state and disk
/// overlay) belong to this test alone. For the qemu backend `home/images`
/// and `home/qemu-snapshots` are symlinks to the real data directory's.
pub struct Repo {
    tmp: TempDir,
    backend: Backend,
}

impl Repo {
    /// A repository whose second commit contains the examples; the first
    /// commit only has a README, so full history has exactly two commits.
    /// Runs use the local backend.
    pub fn with_examples() -> Repo {
        Repo::with_examples_on(Backend::Local)
    }

    /// Like [`Repo::with_examples`], with runs on `backend`.
    pub fn with_examples_on(backend: Backend) -> Repo {
        let tmp = tempfile::tempdir().expect("tempdir");
        let repo = tmp.path().join("repo");
        std::fs::create_dir_all(&repo).expect("create repo dir");
        std::fs::create_dir_all(tmp.path().join("home")).expect("create home dir");
        git(&repo, &["init", "-q", "-b", "main"]);
        std::fs::write(
            repo.join("README.md"),
            "scratch repository for kiln tests\n",
        )
        .expect("write README");
        git(&repo, &["add", "README.md"]);
        git(&repo, &["commit", "-q", "-m", "first"]);
        copy_dir(&examples_dir(), &repo.join("examples"));
        git(&repo, &["add", "examples"]);
        git(&repo, &["commit", "-q", "-m", "examples"]);
        if backend == Backend::Qemu {
            let images = real_data_dir().join("images");
            assert!(
                images.is_dir(),
                "the qemu backend needs guest images in {} (./scripts/build-images.sh)",
                images.display()
            );
            let images = std::fs::canonicalize(&images).expect("resolve the images directory");
            std::os::unix::fs::symlink(&images, tmp.path().join("home/images"))
                .expect("link the images into the private KILN_HOME");
            // Snapshots are shared too: built once by the first run that
            // needs one, restored by the others (as for a user).
            let snapshots = real_data_dir().join("qemu-snapshots");
            std::fs::create_dir_all(&snapshots).expect("create the snapshot directory");
            std::os::unix::fs::symlink(&snapshots, tmp.path().join("home/qemu-snapshots"))
                .expect("link the snapshots into the private KILN_HOME");
        }
        Repo { tmp, backend }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The VM directories the backend left in this test's `KILN_HOME`.
    pub fn vm_dirs_left(&self) -> Vec<PathBuf> {
        let dir = self.home().join(self.backend.vms_dir());
        match std::fs::read_dir(&dir) {
            Ok(entries) => entries.map(|e| e.expect("dir entry").path()).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => panic!("cannot list {}: {e}", dir.display()),
        }
    }

    pub fn root(&self) -> PathBuf {
        self.tmp.path().join("repo")
    }

    pub fn home(&self) -> PathBuf {
        self.tmp.path().join("home")
    }

    /// A path outside the repository, for files a test writes (secret files).
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    pub fn head_sha(&self) -> String {
        git(&self.root(), &["rev-parse", "HEAD"])
    }

    /// `kiln ARGS` with this repository as working directory and
    /// `KILN_HOME` set to the private home.
    pub fn kiln(&self, args: &[&str]) -> Output {
        Command::new(kiln_bin())
            .args(args)
            .current_dir(self.root())
            .env("KILN_HOME", self.home())
            .env("NO_COLOR", "1")
            .env_remove("KILN_BACKEND")
            .env_remove("RUST_LOG")
            .output()
            .expect("run kiln")
    }

    /// `kiln run examples/NAME --backend <backend> --json EXTRA…`, parsed.
    /// Every VM the run allocated must be gone when `kiln` exits: its
    /// directory (state, disk overlay) is checked here.
    pub fn run_example(&self, name: &str, extra: &[&str]) -> RunOutput {
        let workflow = self.root().join("examples").join(name);
        self.run_workflow(workflow.to_str().expect("utf-8 path"), extra)
    }

    /// `kiln run WORKFLOW --backend <backend> --json EXTRA…` (a path
    /// relative to the repository, or absolute), parsed; checks that no VM
    /// directory is left.
    pub fn run_workflow(&self, workflow: &str, extra: &[&str]) -> RunOutput {
        let mut args = vec!["run", workflow, "--backend", self.backend.name(), "--json"];
        args.extend_from_slice(extra);
        let run = RunOutput::new(self.kiln(&args));
        let left = self.vm_dirs_left();
        assert!(
            left.is_empty(),
            "VM directories left after `kiln run`: {left:?}\n--- stderr\n{}",
            run.stderr
        );
        run
    }
}

/// Runs git with a fixed identity and without the user's configuration.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Kiln Test")
        .env("GIT_AUTHOR_EMAIL", "test@kiln.invalid")
        .env("GIT_COMMITTER_NAME", "Kiln Test")
        .env("GIT_COMMITTER_EMAIL", "test@kiln.invalid")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

/// What `kiln run --json` produced.
pub struct RunOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// The parsed result (`Value::Null` when stdout is not JSON).
    pub json: Value,
}

impl RunOutput {
    pub fn new(out: Output) -> RunOutput {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
        RunOutput {
            code: out.status.code().unwrap_or(-1),
            stdout,
            stderr,
            json,
        }
    }

    /// Asserts the exit code, showing the output when it is wrong.
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "unexpected exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn conclusion(&self) -> &str {
        self.json["conclusion"]
            .as_str()
            .unwrap_or_else(|| panic!("no conclusion in the result:\n{}", self.stdout))
    }

    /// Job instance names in result order.
    pub fn job_names(&self) -> Vec<&str> {
        self.jobs()
            .iter()
            .map(|j| j["name"].as_str().expect("job name"))
            .collect()
    }

    pub fn jobs(&self) -> &Vec<Value> {
        self.json["jobs"]
            .as_array()
            .unwrap_or_else(|| panic!("no jobs in the result:\n{}", self.stdout))
    }

    /// The job instance called `name`.
    pub fn job(&self, name: &str) -> &Value {
        self.jobs()
            .iter()
            .find(|j| j["name"] == name)
            .unwrap_or_else(|| panic!("no job {name:?}; jobs: {:?}", self.job_names()))
    }

    /// The step called `step` of job instance `job`.
    pub fn step(&self, job: &str, step: &str) -> &Value {
        let steps = self.job(job)["steps"].as_array().expect("steps");
        steps.iter().find(|s| s["name"] == step).unwrap_or_else(|| {
            panic!(
                "no step {step:?} in job {job:?}; steps: {:?}",
                steps.iter().map(|s| &s["name"]).collect::<Vec<_>>()
            )
        })
    }

    /// `(outcome, conclusion)` of a step.
    pub fn step_status(&self, job: &str, step: &str) -> (&str, &str) {
        let s = self.step(job, step);
        (
            s["outcome"].as_str().expect("outcome"),
            s["conclusion"].as_str().expect("conclusion"),
        )
    }

    /// The step's last output lines (masked).
    pub fn log(&self, job: &str, step: &str) -> Vec<&str> {
        match self.step(job, step).get("log_tail") {
            None => Vec::new(),
            Some(lines) => lines
                .as_array()
                .expect("log_tail")
                .iter()
                .map(|l| l.as_str().expect("line"))
                .collect(),
        }
    }

    /// A string field of a job (`conclusion`, `reason`, `summary`).
    pub fn job_field(&self, job: &str, field: &str) -> &str {
        self.job(job)[field]
            .as_str()
            .unwrap_or_else(|| panic!("job {job:?} has no string {field:?}"))
    }

    /// Whether the live display (stderr with `--json`) printed `text` as a
    /// step output line.
    pub fn printed(&self, text: &str) -> bool {
        let wanted = format!("  │ {text}");
        self.stderr.lines().any(|l| l == wanted)
    }

    pub fn assert_printed(&self, text: &str) {
        assert!(
            self.printed(text),
            "expected output line {text:?}\n--- stderr\n{}",
            self.stderr
        );
    }

    /// Asserts `text` appears nowhere: not in stdout, stderr or the JSON.
    pub fn assert_absent(&self, text: &str) {
        assert!(
            !self.stdout.contains(text),
            "{text:?} leaked into stdout:\n{}",
            self.stdout
        );
        assert!(
            !self.stderr.contains(text),
            "{text:?} leaked into stderr:\n{}",
            self.stderr
        );
    }
}

/// SHA-256 (hex) of `mib` MiB made of `line` repeated, each MiB cut at
/// 1,048,576 bytes: what `yes LINE | head -c 1048576` repeated `mib` times
/// gives. Computed by the host's `sha256sum`, independently of the guest.
pub fn sha256_of_repeated_mib(line: &str, mib: usize) -> String {
    use std::io::Write;
    let unit = format!("{line}\n");
    let block: Vec<u8> = unit.bytes().cycle().take(1 << 20).collect();
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run sha256sum");
    {
        let mut stdin = child.stdin.take().expect("stdin");
        for _ in 0..mib {
            stdin.write_all(&block).expect("feed sha256sum");
        }
    }
    let out = child.wait_with_output().expect("sha256sum");
    assert!(out.status.success(), "sha256sum failed");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_string()
}

/// Checks a run of `examples/guest-features.yml` (either guest image): every
/// step's lines, computed values included.
pub fn assert_guest_features(run: &RunOutput, sha: &str) {
    run.assert_code(0);
    let job = "features";
    assert_eq!(
        run.log(job, "Namespaces"),
        [
            "pid inside: 1",
            "uid inside: 0, uid_map: 0 0 1",
            "links inside: 1",
            "own mount namespace"
        ]
    );
    assert_eq!(
        run.log(job, "Mounts"),
        [
            "tmpfs: tmpfs",
            "bind mount sees: bound",
            "overlay: merged=added file upper=added lower=file",
            "mounts below /mnt/kiln-features: 3",
            "outside: 0 mounts"
        ]
    );
    assert_eq!(
        run.log(job, "/proc/self"),
        [
            "exe is readlink",
            "fd 7 is this script",
            "mountinfo root entries: 1"
        ]
    );
    assert_eq!(
        run.log(job, "IPv6"),
        [
            "lo has ::1",
            "received: hello over ::1",
            "eth0 has a link-local address",
            // passt advertises the host's IPv6 prefix, if it has one, and
            // the guest takes an address by SLAAC (qemu/net.rs).
            if host_has_ipv6_route() {
                "eth0 global IPv6 addresses: 1"
            } else {
                "eth0 global IPv6 addresses: 0"
            }
        ]
    );
    let past_4g = 4u64 * 1024 * 1024 * 1024;
    assert_eq!(
        run.log(job, "Sparse file past 4 GiB"),
        [
            format!("size: {}", 5 * 1024 * 1024 * 1024u64).as_str(),
            "allocated: under 1 MiB",
            "read back: past-4GiB-marker",
            &format!("after shrink: {past_4g}, bytes at the marker: 0"),
            &format!(
                "after grow: {}, non-zero bytes at the marker: 0",
                6 * 1024 * 1024 * 1024u64
            ),
        ]
    );
    let digest = sha256_of_repeated_mib(&format!("kiln {sha}"), 256);
    assert_eq!(
        run.log(job, "256 MiB checksummed"),
        [
            format!("bytes: {}", 256u64 << 20).as_str(),
            &format!("sha256: {digest}")
        ]
    );
}

/// Whether the host routes IPv6 beyond itself (then passt offers the guest
/// an IPv6 prefix).
fn host_has_ipv6_route() -> bool {
    std::net::UdpSocket::bind("[::]:0")
        .and_then(|socket| {
            // Connecting a UDP socket only picks a route; nothing is sent.
            socket.connect("[2001:db8::1]:9")?;
            socket.local_addr()
        })
        .is_ok_and(|addr| !addr.ip().is_loopback())
}
