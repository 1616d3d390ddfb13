//! Start-up recovery, before anything new is accepted:
//!
//! 1. Runs that were in progress when the previous process died are
//!    completed as failed ("runner restarted"), their open jobs too, and
//!    that is reported (their check runs would otherwise spin forever).
//! 2. VMs the dead process left behind are reaped
//!    (`VmProvider::reap_orphans`).
//! 3. Queued runs go back to the scheduler, oldest first. Queued deliveries
//!    are picked up by the dispatcher as usual.

use std::collections::HashMap;
use std::sync::Arc;

use indexmap::IndexMap;
use kiln_store::{JobState, RunState};

use crate::progress::{JobView, Progress};
use crate::report::{RunReporter, RunTarget};
use crate::scheduler::Scheduler;
use crate::state::Shared;

/// The reason recorded for runs cut short by a restart.
pub const RESTARTED: &str = "runner restarted";

#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error("cannot read the store")]
    Store(#[from] kiln_store::StoreError),
    #[error("cannot reap orphaned VMs")]
    Reap(#[from] kiln_vm::VmError),
}

pub async fn recover(shared: &Arc<Shared>, scheduler: &Arc<Scheduler>) -> Result<(), RecoverError> {
    let interrupted = shared
        .db
        .call(|s| s.fail_interrupted_runs(RESTARTED))
        .await?;
    for run in &interrupted {
        tracing::warn!(run = run.id, repository = %run.repository, workflow = %run.workflow_path,
            "run was in progress when the runner stopped; marked failed");
        shared.metrics.run_finished("failure", 0.0);
        complete_jobs(shared, run).await?;
    }
    let reaped = shared.manager.provider().reap_orphans().await?;
    if reaped > 0 {
        tracing::warn!(reaped, "orphaned VMs of a previous process destroyed");
    }
    let queued = shared
        .db
        .call(|s| s.runs_in_state(RunState::Queued))
        .await?;
    if !queued.is_empty() {
        tracing::info!(runs = queued.len(), "resuming queued runs");
    }
    for run in queued {
        scheduler.submit(run).await;
    }
    Ok(())
}

/// Completes and reports the open jobs of an interrupted run.
async fn complete_jobs(
    shared: &Arc<Shared>,
    run: &kiln_store::RunRecord,
) -> Result<(), RecoverError> {
    let id = run.id;
    let jobs = shared.db.call(move |s| s.jobs(id)).await?;
    let known: HashMap<String, u64> = jobs
        .iter()
        .filter_map(|j| j.check_run_id.map(|c| (j.key.clone(), c)))
        .collect();
    let target = RunTarget {
        run_id: id,
        repository: run.repository.clone(),
        sha: run.sha.clone(),
        workflow_name: run.workflow_name.clone(),
        event: run.event.clone(),
        details_url: shared.details_url(id),
    };
    let (reporter, task) = RunReporter::start(
        shared.config.report,
        shared.reporter.clone(),
        shared.db.clone(),
        target,
        known,
    );
    let mut views = IndexMap::new();
    for j in jobs.into_iter().filter(|j| j.state != JobState::Completed) {
        let mut view = JobView::new(id, j.key.clone(), j.job_id.clone(), j.name.clone());
        if let Ok(steps) = serde_json::from_value(j.steps.clone()) {
            view.steps = steps;
        }
        view.record = j;
        views.insert(view.record.key.clone(), view);
    }
    let workflow = Arc::new(kiln_workflow::Workflow::default());
    let mut progress = Progress::new(id, shared.clone(), workflow, reporter, views);
    progress.finish(None, "failure", Some(RESTARTED)).await;
    drop(progress);
    let _ = task.await;
    Ok(())
}
