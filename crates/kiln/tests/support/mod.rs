//! Shared helpers for the black-box tests of the `kiln` binary: a temporary
//! git repository holding a copy of `examples/`, a private `KILN_HOME`, and
//! accessors over the `--json` run result.

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

/// A scratch directory with a git repository (`repo/`, two commits, the
/// examples copied into `repo/examples`) and a `KILN_HOME` (`home/`).
pub struct Repo {
    tmp: TempDir,
}

impl Repo {
    /// A repository whose second commit contains the examples; the first
    /// commit only has a README, so full history has exactly two commits.
    pub fn with_examples() -> Repo {
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
        Repo { tmp }
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

    /// `kiln run examples/NAME --backend local --json EXTRA…`, parsed.
    pub fn run_example(&self, name: &str, extra: &[&str]) -> RunOutput {
        let workflow = self.root().join("examples").join(name);
        let workflow = workflow.to_str().expect("utf-8 path");
        let mut args = vec!["run", workflow, "--backend", "local", "--json"];
        args.extend_from_slice(extra);
        RunOutput::new(self.kiln(&args))
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
