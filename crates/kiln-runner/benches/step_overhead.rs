//! Per-step overhead of the runner on the `local` backend.
//!
//! Runs a workflow of 20 trivial steps (`run: true`) in-process through
//! `kiln_runner::run_workflow` (a `SessionManager` over a `LocalProvider`, so
//! the CLI's process start is not counted), and right after each run the same
//! 20 commands directly as `bash -e script` processes. The overhead per step
//! is `(runner time - bash time) / 20`, per iteration; the table shows its
//! median. Separately, `kiln run` end to end (the release CLI binary, process
//! start and git inspection included) for the same workflow.
//!
//!   cargo bench -p kiln-runner --bench step_overhead
//!
//! `KILN_BENCH_ITERATIONS` (default 20, at least 10) sets the number of
//! measured iterations; `KILN_BIN` points at a `kiln` binary for the CLI row
//! (default: `target/release/kiln`, built first if missing).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_runner::{Conclusion, RunConfig, RunResult, SessionManager};
use kiln_vm::LocalProvider;
use kiln_workflow::Workflow;

const STEPS: usize = 20;
const WARMUP: usize = 2;

fn main() {
    let iterations = std::env::var("KILN_BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(20)
        .max(10);
    let tmp = tempfile::tempdir().expect("tempdir");
    let source = workflow_source();
    let workflow = parse(&source);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let provider = LocalProvider::new(tmp.path().join("vms"));
    let manager = SessionManager::new(Arc::new(provider), 1);
    let cfg = RunConfig {
        workflow_path: "step-overhead.yml".into(),
        ..RunConfig::default()
    };
    let script = tmp.path().join("step.sh");
    std::fs::write(&script, "true\n").expect("write script");

    let mut runner = Vec::with_capacity(iterations);
    let mut bash = Vec::with_capacity(iterations);
    let mut overhead = Vec::with_capacity(iterations);
    for i in 0..WARMUP + iterations {
        let started = Instant::now();
        let result = runtime.block_on(run_once(&manager, &workflow, &cfg));
        let runner_time = started.elapsed();
        check(&result);

        let started = Instant::now();
        for _ in 0..STEPS {
            let status = Command::new("bash")
                .arg("-e")
                .arg(&script)
                .status()
                .expect("run bash");
            assert!(status.success(), "bash -e {} failed", script.display());
        }
        let bash_time = started.elapsed();

        if i >= WARMUP {
            runner.push(ms(runner_time));
            bash.push(ms(bash_time));
            overhead.push((ms(runner_time) - ms(bash_time)) / STEPS as f64);
        }
    }

    let cli = cli_times(tmp.path(), &source, iterations);

    println!();
    println!("step overhead, local backend, {STEPS} steps of `run: true`, {iterations} iterations");
    println!("{:<28} {:>10} {:>10}", "", "median", "p90");
    row("runner_20_steps_ms", &mut runner);
    row("bash_20_scripts_ms", &mut bash);
    println!(
        "{:<28} {:>10.3}",
        "overhead_per_step_ms",
        percentile(&mut overhead, 0.5)
    );
    match cli {
        Ok(mut cli) => {
            row("cli_end_to_end_ms", &mut cli);
            println!(
                "{:<28} {:>10.3}",
                "cli_overhead_per_step_ms",
                (percentile(&mut cli, 0.5) - percentile(&mut bash, 0.5)) / STEPS as f64
            );
        }
        Err(why) => println!("{:<28} skipped: {why}", "cli_end_to_end_ms"),
    }
}

fn workflow_source() -> String {
    let mut text = String::from(
        "name: step overhead\non: push\njobs:\n  bench:\n    runs-on: ubuntu-latest\n    steps:\n",
    );
    for _ in 0..STEPS {
        text.push_str("      - run: true\n");
    }
    text
}

fn parse(source: &str) -> Workflow {
    let (workflow, diagnostics) = kiln_workflow::parse_workflow(source);
    let errors: Vec<_> = diagnostics.iter().filter(|d| d.is_error()).collect();
    assert!(
        errors.is_empty(),
        "benchmark workflow is invalid: {errors:?}"
    );
    workflow
}

async fn run_once(manager: &SessionManager, workflow: &Workflow, cfg: &RunConfig) -> RunResult {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // Consume events like the CLI's display does.
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let result = kiln_runner::run_workflow(manager, workflow, cfg, tx)
        .await
        .expect("run_workflow");
    drain.await.expect("drain events");
    result
}

fn check(result: &RunResult) {
    assert_eq!(result.conclusion, Conclusion::Success, "{result:#?}");
    let steps: usize = result.jobs.iter().map(|j| j.steps.len()).sum();
    assert_eq!(steps, STEPS, "every step must have run");
}

/// Wall times of `kiln run` on the workflow, in a scratch git repository.
fn cli_times(tmp: &Path, source: &str, iterations: usize) -> Result<Vec<f64>, String> {
    let kiln = kiln_binary()?;
    let repo = tmp.join("repo");
    std::fs::create_dir_all(&repo).map_err(|e| e.to_string())?;
    std::fs::write(repo.join("step-overhead.yml"), source).map_err(|e| e.to_string())?;
    for args in [
        &["init", "-q"][..],
        &["add", "step-overhead.yml"],
        &["commit", "-q", "-m", "bench"],
    ] {
        let ok = Command::new("git")
            .args(args)
            .current_dir(&repo)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "bench")
            .env("GIT_AUTHOR_EMAIL", "bench@kiln.invalid")
            .env("GIT_COMMITTER_NAME", "bench")
            .env("GIT_COMMITTER_EMAIL", "bench@kiln.invalid")
            .status()
            .map_err(|e| format!("git: {e}"))?
            .success();
        if !ok {
            return Err(format!("git {args:?} failed"));
        }
    }
    let mut times = Vec::with_capacity(iterations);
    for i in 0..WARMUP + iterations {
        let started = Instant::now();
        let status = Command::new(&kiln)
            .args(["run", "step-overhead.yml", "--backend", "local"])
            .current_dir(&repo)
            .env("KILN_HOME", tmp.join("kiln-home"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("{}: {e}", kiln.display()))?;
        let elapsed = started.elapsed();
        if !status.success() {
            return Err(format!("kiln run exited with {status}"));
        }
        if i >= WARMUP {
            times.push(ms(elapsed));
        }
    }
    Ok(times)
}

/// `KILN_BIN`, else the release `kiln` next to this benchmark's own
/// target directory, built if it is not there yet.
fn kiln_binary() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("KILN_BIN") {
        return Ok(bin.into());
    }
    // This executable is target/release/deps/step_overhead-<hash>.
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot locate the target directory")?;
    let bin = profile_dir.join("kiln");
    if !bin.exists() {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
        let target_dir = profile_dir.parent().ok_or("no target directory")?;
        let status = Command::new(env!("CARGO"))
            .args(["build", "--release", "-q", "-p", "kiln", "--manifest-path"])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(target_dir)
            .status()
            .map_err(|e| format!("cargo build: {e}"))?;
        if !status.success() || !bin.exists() {
            return Err("building the kiln binary failed; set KILN_BIN".into());
        }
    }
    Ok(bin)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn row(name: &str, values: &mut [f64]) {
    println!(
        "{name:<28} {:>10.2} {:>10.2}",
        percentile(values, 0.5),
        percentile(values, 0.9)
    );
}

/// Nearest-rank percentile.
fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let rank = ((p * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}
