//! Running one workflow run: wait for a slot, prepare its repository and
//! `RunConfig`, call `kiln_runner::run_workflow` (one session, one VM),
//! follow its events, record and report its result.
//!
//! A run that has not got its VM when the server shuts down stays queued in
//! the store and starts again after the restart; a run cancelled while it
//! waits never allocates a VM.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use indexmap::IndexMap;
use kiln_runner::{GitInfo, RunConfig, RunError, SessionError};
use kiln_store::RunRecord;
use kiln_workflow::Workflow;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::dispatch::RunSpec;
use crate::progress::{JobView, Progress};
use crate::report::RunReporter;
use crate::state::Shared;

/// A run ready to be started: parsed, with its reporter running.
pub struct Prepared {
    pub record: RunRecord,
    pub spec: RunSpec,
    pub workflow: Arc<Workflow>,
    pub reporter: RunReporter,
    pub report_task: tokio::task::JoinHandle<()>,
    /// Jobs known before the run starts (queued check runs).
    pub jobs: IndexMap<String, JobView>,
}

/// How a run's task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The run is completed in the store.
    Completed,
    /// The server is shutting down and the run never started: it stays
    /// queued in the store.
    LeftQueued,
}

/// Runs `run` to its end. `gate` mirrors the session limit, so a run waits
/// for its slot here, where waiting can be cancelled, rather than inside the
/// runner.
pub async fn execute(
    shared: Arc<Shared>,
    run: Prepared,
    cancel: CancellationToken,
    gate: Arc<Semaphore>,
) -> Ended {
    let id = run.record.id;
    let permit = tokio::select! {
        // A closed gate (shutdown) wins over a cancellation.
        biased;
        permit = gate.acquire_owned() => match permit {
            Ok(permit) => permit,
            Err(_) => {
                tracing::info!(run = id, "shutting down: the run stays queued");
                return Ended::LeftQueued;
            }
        },
        _ = cancel.cancelled() => {
            cancel_unstarted(shared, run, "cancelled before it started").await;
            return Ended::Completed;
        }
    };
    let started = Instant::now();
    let isolated = isolated_dir(&shared, id);
    let cfg = match config(&shared, &run, &cancel, &isolated).await {
        Ok(cfg) => cfg,
        Err(reason) => {
            let mut progress = progress(&shared, &run);
            finish(
                &shared,
                &run,
                &mut progress,
                None,
                "failure",
                Some(&reason),
                started,
            )
            .await;
            drop(progress);
            drain(run).await;
            return Ended::Completed;
        }
    };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let follower = tokio::spawn(progress(&shared, &run).follow(rx));
    let outcome = kiln_runner::run_workflow(&shared.manager, &run.workflow, &cfg, tx).await;
    drop(permit);
    let mut progress = match follower.await {
        Ok(progress) => progress,
        Err(e) => {
            tracing::error!(run = id, error = %e, "the progress task failed");
            self::progress(&shared, &run)
        }
    };
    let _ = tokio::fs::remove_dir_all(&isolated).await;
    let ended = match outcome {
        Ok(result) => {
            let conclusion = result.conclusion.as_str();
            let reason = cancel
                .is_cancelled()
                .then_some("cancelled (a newer run of its concurrency group, or shutdown)");
            finish(
                &shared,
                &run,
                &mut progress,
                Some(&result),
                conclusion,
                reason,
                started,
            )
            .await;
            Ended::Completed
        }
        // Shut down while waiting for a VM: nothing ran, try again later.
        Err(RunError::Session(SessionError::Closed)) if !progress.started => Ended::LeftQueued,
        Err(e) => {
            let reason = error_chain(&e);
            finish(
                &shared,
                &run,
                &mut progress,
                None,
                "failure",
                Some(&reason),
                started,
            )
            .await;
            Ended::Completed
        }
    };
    drop(progress);
    drain(run).await;
    ended
}

/// Completes a run that never started as cancelled, with its jobs.
pub async fn cancel_unstarted(shared: Arc<Shared>, run: Prepared, reason: &str) {
    let mut progress = progress(&shared, &run);
    let now = Instant::now();
    finish(
        &shared,
        &run,
        &mut progress,
        None,
        "cancelled",
        Some(reason),
        now,
    )
    .await;
    drop(progress);
    drain(run).await;
}

fn progress(shared: &Arc<Shared>, run: &Prepared) -> Progress {
    Progress::new(
        run.record.id,
        shared.clone(),
        run.workflow.clone(),
        run.reporter.clone(),
        run.jobs.clone(),
    )
}

/// Records the run's end and completes its open jobs.
async fn finish(
    shared: &Arc<Shared>,
    run: &Prepared,
    progress: &mut Progress,
    result: Option<&kiln_runner::RunResult>,
    conclusion: &str,
    reason: Option<&str>,
    started: Instant,
) {
    let id = run.record.id;
    let job_fallback = if conclusion == "success" {
        "skipped"
    } else {
        conclusion
    };
    progress.finish(result, job_fallback, reason).await;
    let (c, r) = (conclusion.to_owned(), reason.map(str::to_owned));
    match shared
        .db
        .call(move |s| s.finish_run(id, &c, r.as_deref()))
        .await
    {
        Ok(_) => {}
        Err(e) => tracing::error!(run = id, error = %e, "cannot record the run's result"),
    }
    let seconds = started.elapsed().as_secs_f64();
    shared.metrics.run_finished(conclusion, seconds);
    tracing::info!(
        run = id,
        repository = %run.record.repository,
        workflow = %run.record.workflow_path,
        conclusion,
        reason = reason.unwrap_or(""),
        seconds,
        "run finished"
    );
}

/// Ends the run's reporter and waits until it has sent everything.
async fn drain(run: Prepared) {
    let Prepared {
        reporter,
        report_task,
        ..
    } = run;
    drop(reporter);
    let _ = report_task.await;
}

fn isolated_dir(shared: &Shared, id: i64) -> PathBuf {
    shared
        .config
        .data_dir
        .join("work")
        .join(format!("run-{id}.git"))
}

/// The runner's configuration for `run`. Secrets come from the server's
/// configuration, never from the payload.
async fn config(
    shared: &Arc<Shared>,
    run: &Prepared,
    cancel: &CancellationToken,
    isolated: &std::path::Path,
) -> Result<RunConfig, String> {
    let r = &run.record;
    let event = match &r.delivery_id {
        Some(delivery) => {
            let delivery = delivery.clone();
            let stored = shared
                .db
                .call(move |s| s.delivery(&delivery))
                .await
                .map_err(|e| format!("cannot read the run's delivery: {e}"))?;
            match stored {
                Some(d) => serde_json::from_str(&d.payload).unwrap_or_default(),
                None => serde_json::Value::Object(Default::default()),
            }
        }
        None => serde_json::Value::Object(Default::default()),
    };
    let cache_dir = shared
        .cache
        .ensure_commits(&r.repository, &run.spec.clone_url, &[&r.sha])
        .await
        .map_err(|e| {
            format!(
                "cannot fetch {}@{}: {}",
                r.repository,
                r.sha,
                error_chain(&e)
            )
        })?;
    let repo_dir = if run.spec.isolate {
        shared
            .cache
            .isolated_copy(&cache_dir, &r.sha, isolated)
            .await
            .map_err(|e| format!("cannot prepare the run's repository: {}", error_chain(&e)))?;
        isolated.to_owned()
    } else {
        cache_dir
    };
    let mut secrets = IndexMap::new();
    if run.spec.secrets {
        let policy = shared.config.policy(&r.repository);
        for (k, v) in shared.config.secrets.iter().chain(policy.secrets.iter()) {
            secrets.insert(k.clone(), v.expose().to_owned());
        }
    }
    let run_id = u64::try_from(r.id).unwrap_or_default();
    Ok(RunConfig {
        workflow_path: r.workflow_path.clone(),
        event_name: r.event.clone(),
        event,
        git: GitInfo {
            repo_dir: Some(repo_dir),
            sha: r.sha.clone(),
            git_ref: r.git_ref.clone(),
            repository: r.repository.clone(),
        },
        actor: if run.spec.actor.is_empty() {
            "kiln".to_owned()
        } else {
            run.spec.actor.clone()
        },
        run_id,
        run_number: run_id,
        inputs: run.spec.inputs.clone(),
        secrets,
        spec: shared.config.vm.clone(),
        cancel: cancel.clone(),
        job_groups: shared.job_groups.clone(),
        ..RunConfig::default()
    })
}

/// `error: cause: cause` on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
