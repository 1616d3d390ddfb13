//! No leaks, whatever way a run ends: every VM allocated is released (not
//! just dropped), the session slot is freed, the machine's directory is gone
//! and nothing it started still runs.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::{Harness, TestResult, output_lines, process_gone};
use kiln_runner::{Conclusion, RunConfig, RunError, RunEvent, RunResult, VmScope};
use kiln_vm::{
    Allocated, ExecRequest, ExecResult, GuestLayout, OutputChunk, Vm, VmError, VmId, VmProvider,
    VmSpec,
};
use tokio::sync::mpsc::UnboundedSender;

/// A directory outside every machine where steps leave the pids of what
/// they started, so the test can check those processes are gone.
struct PidDir(tempfile::TempDir);

impl PidDir {
    fn new() -> PidDir {
        PidDir(tempfile::tempdir().expect("tempdir"))
    }

    fn path(&self) -> String {
        self.0.path().display().to_string()
    }

    /// Every pid written so far.
    fn pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        for entry in std::fs::read_dir(self.0.path()).expect("read pid dir") {
            let text = std::fs::read_to_string(entry.expect("entry").path()).expect("pid file");
            pids.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
        pids
    }

    async fn assert_all_gone(&self, at_least: usize) {
        let pids = self.pids();
        assert!(
            pids.len() >= at_least,
            "expected {at_least} pid(s), got {pids:?}"
        );
        for pid in pids {
            assert!(process_gone(pid).await, "process {pid} outlived its run");
        }
    }
}

/// A long-running step that records the pid of its `sleep`.
fn long_step(pids: &PidDir, name: &str) -> String {
    format!(
        "      - name: {name}\n        run: |\n          sleep 30 &\n          \
         echo $! > {dir}/{name}\n          echo sleeping\n          wait $!\n",
        dir = pids.path()
    )
}

fn step_named<'r>(result: &'r RunResult, name: &str) -> &'r kiln_runner::StepResult {
    result
        .jobs
        .iter()
        .flat_map(|j| &j.steps)
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no step {name}: {result:#?}"))
}

const AFTER: &str = "      - name: after\n        run: echo after-ran\n      \
                     - name: always\n        if: always()\n        run: echo always-ran\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_step_releases_everything() -> TestResult {
    let h = Harness::new(2);
    let pids = PidDir::new();
    let yaml = format!(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      \
         - name: background\n        run: |\n          sleep 30 &\n          echo $! > {}/bg\n      \
         - name: fails\n        run: exit 3\n{AFTER}",
        pids.path()
    );
    let (result, events) = h.run_ok(&yaml).await;
    assert_eq!(result.conclusion, Conclusion::Failure);
    let fails = step_named(&result, "fails");
    assert_eq!(
        (fails.conclusion, fails.exit_code),
        (Conclusion::Failure, Some(3))
    );
    assert_eq!(step_named(&result, "after").conclusion, Conclusion::Skipped);
    assert_eq!(
        step_named(&result, "always").conclusion,
        Conclusion::Success
    );
    let lines = output_lines(&events);
    assert!(lines.contains(&"always-ran".to_string()), "{lines:?}");
    assert!(!lines.contains(&"after-ran".to_string()), "{lines:?}");
    h.assert_no_leaks();
    // The background process a successful step left is killed on release.
    pids.assert_all_gone(1).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn step_timeout_releases_everything() -> TestResult {
    let h = Harness::new(2);
    let pids = PidDir::new();
    // A literal `0.02` is rejected by the parser, as GitHub documents step
    // timeouts as whole minutes; an expression is evaluated by the runner.
    let yaml = format!(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n{}        timeout-minutes: ${{{{ 0.02 }}}}\n{AFTER}",
        long_step(&pids, "long")
    );
    let started = Instant::now();
    let (result, _) = h.run_ok(&yaml).await;
    // Not a performance assertion: the step was stopped, not waited for.
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(result.conclusion, Conclusion::Failure);
    let long = step_named(&result, "long");
    assert_eq!(long.conclusion, Conclusion::Failure);
    assert!(
        long.error
            .as_deref()
            .is_some_and(|e| e.contains("timed out")),
        "{long:#?}"
    );
    assert_eq!(step_named(&result, "after").conclusion, Conclusion::Skipped);
    assert_eq!(
        step_named(&result, "always").conclusion,
        Conclusion::Success
    );
    h.assert_no_leaks();
    pids.assert_all_gone(1).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn job_timeout_releases_everything() -> TestResult {
    let h = Harness::new(2);
    let pids = PidDir::new();
    let yaml = format!(
        "on: push\njobs:\n  a:\n    runs-on: x\n    timeout-minutes: 0.02\n    steps:\n{}{AFTER}",
        long_step(&pids, "long")
    );
    let started = Instant::now();
    let (result, _) = h.run_ok(&yaml).await;
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(result.conclusion, Conclusion::Failure);
    let job = &result.jobs[0];
    assert_eq!(job.conclusion, Conclusion::Failure);
    assert!(
        job.reason.as_deref().is_some_and(|r| r.contains("timeout")),
        "{job:#?}"
    );
    assert_eq!(step_named(&result, "long").conclusion, Conclusion::Failure);
    assert_eq!(step_named(&result, "after").conclusion, Conclusion::Skipped);
    h.assert_no_leaks();
    pids.assert_all_gone(1).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancellation_releases_everything() -> TestResult {
    let h = Harness::new(2);
    let pids = PidDir::new();
    let yaml = format!(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n{}{AFTER}",
        long_step(&pids, "long")
    );
    let cfg = RunConfig::default();
    let cancel = cfg.cancel.clone();
    let started = Instant::now();
    let (result, events) = h
        .run_watching(&yaml, &cfg, |e| {
            if matches!(e, RunEvent::Output { line, .. } if line == "sleeping") {
                cancel.cancel();
            }
        })
        .await;
    let result = result?;
    assert!(cfg.cancel.is_cancelled(), "the step never started");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(result.conclusion, Conclusion::Cancelled, "{result:#?}");
    assert_eq!(result.jobs[0].conclusion, Conclusion::Cancelled);
    assert_eq!(
        step_named(&result, "long").conclusion,
        Conclusion::Cancelled
    );
    assert_eq!(step_named(&result, "after").conclusion, Conclusion::Skipped);
    assert_eq!(
        step_named(&result, "always").conclusion,
        Conclusion::Success
    );
    let lines = output_lines(&events);
    assert!(lines.contains(&"always-ran".to_string()), "{lines:?}");
    h.assert_no_leaks();
    pids.assert_all_gone(1).await;
    Ok(())
}

/// Cancelling before the run starts: it allocates, runs nothing, releases.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelled_before_start_releases_everything() -> TestResult {
    let h = Harness::new(2);
    let cfg = RunConfig::default();
    cfg.cancel.cancel();
    let (result, events) = h
        .run(
            "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: echo ran\n",
            &cfg,
        )
        .await;
    let result = result?;
    assert_eq!(result.conclusion, Conclusion::Cancelled, "{result:#?}");
    assert!(!output_lines(&events).contains(&"ran".to_string()));
    h.assert_no_leaks();
    Ok(())
}

const PANIC_MARKER: &str = "kiln-test-panic-marker";

/// Wraps a backend; its machines' `exec` panics when the argv holds
/// [`PANIC_MARKER`], as a bug in a backend or the executor would.
struct PanickingProvider(Arc<dyn VmProvider>);

struct PanickingVm(Box<dyn Vm>);

#[async_trait]
impl VmProvider for PanickingProvider {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    async fn allocate(&self, spec: &VmSpec) -> Result<Allocated, VmError> {
        let a = self.0.allocate(spec).await?;
        Ok(Allocated {
            vm: Box::new(PanickingVm(a.vm)),
            elapsed: a.elapsed,
        })
    }
}

#[async_trait]
impl Vm for PanickingVm {
    fn id(&self) -> &VmId {
        self.0.id()
    }

    fn layout(&self) -> &GuestLayout {
        self.0.layout()
    }

    async fn exec(
        &self,
        req: ExecRequest,
        output: UnboundedSender<OutputChunk>,
    ) -> Result<ExecResult, VmError> {
        if req.argv.iter().any(|a| a == PANIC_MARKER) {
            panic!("injected panic ({PANIC_MARKER})");
        }
        self.0.exec(req, output).await
    }

    async fn put_file(&self, path: &str, contents: Vec<u8>, mode: u32) -> Result<(), VmError> {
        self.0.put_file(path, contents, mode).await
    }

    async fn get_file(&self, path: &str) -> Result<Vec<u8>, VmError> {
        self.0.get_file(path).await
    }

    async fn put_archive(&self, dir: &str, tar: Vec<u8>) -> Result<(), VmError> {
        self.0.put_archive(dir, tar).await
    }

    async fn get_archive(&self, dir: &str) -> Result<Vec<u8>, VmError> {
        self.0.get_archive(dir).await
    }

    async fn release(self: Box<Self>) -> Result<(), VmError> {
        self.0.release().await
    }
}

fn panicking_harness() -> Harness {
    Harness::wrapping(2, |inner| Arc::new(PanickingProvider(inner)))
}

/// The step's custom shell template puts the marker into the exec's argv.
fn panic_workflow(pids: &PidDir) -> String {
    format!(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      \
         - run: |\n          sleep 30 &\n          echo $! > {}/bg\n      \
         - shell: bash -e {{0}} {PANIC_MARKER}\n        run: echo never\n",
        pids.path()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn panic_in_executor_releases_everything() -> TestResult {
    let h = panicking_harness();
    let pids = PidDir::new();
    let (result, events) = h.run(&panic_workflow(&pids), &RunConfig::default()).await;
    match result {
        Err(RunError::Panic(msg)) => assert!(msg.contains(PANIC_MARKER), "{msg}"),
        other => panic!("expected a panic error, got {other:?}"),
    }
    assert!(!output_lines(&events).contains(&"never".to_string()));
    h.assert_no_leaks();
    pids.assert_all_gone(1).await;
    // The slot is free again: a new run gets a VM.
    let (ok, _) = h
        .run_ok("on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: 'true'\n")
        .await;
    assert_eq!(ok.conclusion, Conclusion::Success);
    h.assert_no_leaks();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn panic_with_vm_per_job_releases_everything() -> TestResult {
    let h = panicking_harness();
    let pids = PidDir::new();
    let cfg = RunConfig {
        vm_scope: VmScope::Job,
        ..RunConfig::default()
    };
    let yaml = format!(
        "{}  other:\n    runs-on: x\n    steps:\n      - run: echo other-ran\n",
        panic_workflow(&pids)
    );
    let (result, events) = h.run(&yaml, &cfg).await;
    // The panicking job fails; its VM is released and the run goes on.
    let result = result?;
    assert_eq!(result.conclusion, Conclusion::Failure);
    let a = result.jobs.iter().find(|j| j.id == "a").expect("job a");
    assert_eq!(a.conclusion, Conclusion::Failure);
    assert!(
        a.reason
            .as_deref()
            .is_some_and(|r| r.contains(PANIC_MARKER)),
        "{a:#?}"
    );
    assert!(output_lines(&events).contains(&"other-ran".to_string()));
    assert_eq!(h.stats().allocations(), 2);
    h.assert_no_leaks();
    pids.assert_all_gone(1).await;
    Ok(())
}

/// Waits (bounded) until `check` holds; for cleanup that happens in the
/// background after a future was dropped.
async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..250 {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// The caller gives up on a run (drops its future) in the middle of a step,
/// as a server shutting down would: the session's drop releases the VM.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropped_run_future_releases_everything() -> TestResult {
    let h = Harness::new(1);
    let pids = PidDir::new();
    let yaml = format!(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n{}",
        long_step(&pids, "long")
    );
    let workflow = common::parse(&yaml);
    let cfg = RunConfig::default();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let run = kiln_runner::run_workflow(&h.manager, &workflow, &cfg, tx);
    let started = async {
        while let Some(e) = rx.recv().await {
            if matches!(&e, RunEvent::Output { line, .. } if line == "sleeping") {
                return;
            }
        }
    };
    tokio::select! {
        r = run => panic!("the run ended on its own: {r:?}"),
        () = started => {}
    }
    assert!(
        eventually(|| h.stats().releases == 1).await,
        "{:#?}",
        h.stats()
    );
    h.assert_no_leaks();
    pids.assert_all_gone(1).await;
    Ok(())
}

/// A backend whose release takes far too long.
struct SlowRelease(Arc<dyn VmProvider>);

struct SlowReleaseVm(Box<dyn Vm>);

#[async_trait]
impl VmProvider for SlowRelease {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    async fn allocate(&self, spec: &VmSpec) -> Result<Allocated, VmError> {
        let a = self.0.allocate(spec).await?;
        Ok(Allocated {
            vm: Box::new(SlowReleaseVm(a.vm)),
            elapsed: a.elapsed,
        })
    }
}

#[async_trait]
impl Vm for SlowReleaseVm {
    fn id(&self) -> &VmId {
        self.0.id()
    }
    fn layout(&self) -> &GuestLayout {
        self.0.layout()
    }
    async fn exec(
        &self,
        req: ExecRequest,
        output: UnboundedSender<OutputChunk>,
    ) -> Result<ExecResult, VmError> {
        self.0.exec(req, output).await
    }
    async fn put_file(&self, path: &str, contents: Vec<u8>, mode: u32) -> Result<(), VmError> {
        self.0.put_file(path, contents, mode).await
    }
    async fn get_file(&self, path: &str) -> Result<Vec<u8>, VmError> {
        self.0.get_file(path).await
    }
    async fn put_archive(&self, dir: &str, tar: Vec<u8>) -> Result<(), VmError> {
        self.0.put_archive(dir, tar).await
    }
    async fn get_archive(&self, dir: &str) -> Result<Vec<u8>, VmError> {
        self.0.get_archive(dir).await
    }
    async fn release(self: Box<Self>) -> Result<(), VmError> {
        tokio::time::sleep(Duration::from_secs(60)).await;
        self.0.release().await
    }
}

/// A `Session::release` cut short (its future dropped) still frees the
/// slot and the session counters; the VM's own drop destroys the machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn release_cut_short_frees_the_slot() -> TestResult {
    let h = Harness::wrapping(1, |inner| Arc::new(SlowRelease(inner)));
    let session = h.manager.try_create_session(&VmSpec::default()).await?;
    assert_eq!(h.vm_dirs_on_disk().len(), 1);
    let cut = tokio::time::timeout(Duration::from_millis(100), session.release()).await;
    assert!(cut.is_err(), "the slow release finished");
    let sessions = h.manager.stats();
    assert_eq!((sessions.active, sessions.released), (0, 1), "{sessions:?}");
    assert!(h.vm_dirs_on_disk().is_empty());
    // The slot is usable again.
    let again = h.manager.try_create_session(&VmSpec::default()).await?;
    drop(again);
    Ok(())
}
