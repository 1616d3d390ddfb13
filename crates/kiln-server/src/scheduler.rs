//! The run queue. Runs are submitted in order (by the dispatcher, or from
//! the store after a restart); each is parsed, its concurrency group
//! evaluated, its jobs reported as queued, and then it either starts (its
//! task waits for a session slot, never rejected for capacity) or waits in
//! its concurrency group (see [`crate::concurrency`]).
//!
//! Shutdown: [`Scheduler::stop_starting`] closes the slot gate, so runs
//! waiting for a slot end and stay queued in the store; runs in progress
//! go on until [`Scheduler::cancel_all`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use indexmap::IndexMap;
use kiln_store::{JobState, RunRecord, RunState};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::concurrency::{self, Concurrency, Groups};
use crate::context;
use crate::dispatch::RunSpec;
use crate::execute::{Ended, Prepared, cancel_unstarted, execute};
use crate::progress::{JobView, job_key};
use crate::report::{RunReporter, RunTarget, Update};
use crate::state::Shared;

#[derive(Default)]
struct Inner {
    groups: Groups,
    /// Runs whose task is spawned (waiting for a slot or running).
    active: HashMap<i64, CancellationToken>,
    /// Runs waiting in a concurrency group.
    waiting: HashMap<i64, (Prepared, Concurrency)>,
    stopping: bool,
}

pub struct Scheduler {
    shared: Arc<Shared>,
    /// One permit per session slot.
    gate: Arc<Semaphore>,
    tracker: TaskTracker,
    inner: Mutex<Inner>,
}

impl Scheduler {
    pub fn new(shared: Arc<Shared>) -> Arc<Scheduler> {
        let slots = shared.manager.limit();
        Arc::new(Scheduler {
            shared,
            gate: Arc::new(Semaphore::new(slots)),
            tracker: TaskTracker::new(),
            inner: Mutex::default(),
        })
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a queued run from the store into the schedule.
    pub async fn submit(self: &Arc<Self>, record: RunRecord) {
        if record.state != RunState::Queued {
            return;
        }
        let id = record.id;
        let (prepared, conc) = match self.prepare(record).await {
            Ok(p) => p,
            Err(reason) => {
                tracing::warn!(run = id, %reason, "run failed before it started");
                let _ = self
                    .shared
                    .db
                    .call(move |s| s.finish_run(id, "failure", Some(&reason)))
                    .await;
                self.shared.metrics.run_finished("failure", 0.0);
                return;
            }
        };
        let Some(conc) = conc else {
            self.launch(prepared, None);
            return;
        };
        let (start, cancelled) = {
            let mut inner = self.inner();
            let admission = inner.groups.admit(id, &conc);
            if let Some(running) = admission.cancel_running
                && let Some(token) = inner.active.get(&running)
            {
                tracing::info!(run = running, by = id, group = %conc.group,
                    "cancel-in-progress: cancelling the run in progress");
                token.cancel();
            }
            let cancelled: Vec<_> = admission
                .cancel_pending
                .iter()
                .filter_map(|p| inner.waiting.remove(p))
                .collect();
            if admission.start {
                (Some((prepared, conc)), cancelled)
            } else {
                inner.waiting.insert(id, (prepared, conc));
                (None, cancelled)
            }
        };
        for (p, c) in cancelled {
            self.cancel_waiting(p, &c, id).await;
        }
        if let Some((prepared, conc)) = start {
            self.launch(prepared, Some(conc));
        }
    }

    /// Parses the run, evaluates its concurrency group and reports its jobs
    /// as queued.
    async fn prepare(&self, record: RunRecord) -> Result<(Prepared, Option<Concurrency>), String> {
        let spec: RunSpec = serde_json::from_str(&record.spec)
            .map_err(|e| format!("the stored run cannot be read: {e}"))?;
        let (workflow, _) = kiln_workflow::parse_workflow(&spec.workflow_source);
        let workflow = Arc::new(workflow);
        let payload = match &record.delivery_id {
            Some(d) => {
                let d = d.clone();
                self.shared
                    .db
                    .call(move |s| s.delivery(&d))
                    .await
                    .ok()
                    .flatten()
                    .and_then(|d| serde_json::from_str(&d.payload).ok())
                    .unwrap_or_default()
            }
            None => serde_json::Value::Null,
        };
        let github = context::github(&record, &spec, &payload);
        let inputs = context::inputs(&workflow, &record, &spec);
        let conc = concurrency::evaluate(&workflow, &github, &inputs)?;
        let id = record.id;
        let stored = self
            .shared
            .db
            .call(move |s| s.jobs(id))
            .await
            .map_err(|e| format!("cannot read the run's jobs: {e}"))?;
        let known: HashMap<String, u64> = stored
            .iter()
            .filter_map(|j| j.check_run_id.map(|c| (j.key.clone(), c)))
            .collect();
        let target = RunTarget {
            run_id: id,
            repository: record.repository.clone(),
            sha: record.sha.clone(),
            workflow_name: record.workflow_name.clone(),
            event: record.event.clone(),
            details_url: self.shared.details_url(id),
        };
        let (reporter, report_task) = RunReporter::start(
            self.shared.config.report,
            self.shared.reporter.clone(),
            self.shared.db.clone(),
            target,
            known,
        );
        let mut jobs = IndexMap::new();
        for j in stored {
            let mut view = JobView::new(id, j.key.clone(), j.job_id.clone(), j.name.clone());
            view.record = j;
            jobs.insert(view.record.key.clone(), view);
        }
        // Jobs whose check run name is known before they start are shown
        // as queued at once; matrix instances and computed names appear
        // when they start.
        for (job_id, job) in &workflow.jobs {
            let name = job
                .name
                .as_ref()
                .map_or_else(|| job_id.clone(), |n| n.value.clone());
            let has_matrix = job.strategy.as_ref().is_some_and(|s| s.matrix.is_some());
            if has_matrix || name.contains("${{") {
                continue;
            }
            let key = job_key(&workflow, job_id, &name);
            if !jobs.contains_key(&key) {
                let view = JobView::new(id, key.clone(), job_id.clone(), name.clone());
                let record = view.record.clone();
                let _ = self.shared.db.call(move |s| s.save_job(&record)).await;
                jobs.insert(key.clone(), view);
            }
            if jobs
                .get(&key)
                .is_some_and(|v| v.record.state == JobState::Queued)
            {
                reporter.send(Update::Queued { key, name });
            }
        }
        if let Some(c) = &conc {
            let (g, cancel) = (c.group.clone(), c.cancel_in_progress);
            let _ = self
                .shared
                .db
                .call(move |s| s.set_run_concurrency(id, &g, cancel))
                .await;
        }
        Ok((
            Prepared {
                record,
                spec,
                workflow,
                reporter,
                report_task,
                jobs,
            },
            conc,
        ))
    }

    fn launch(self: &Arc<Self>, prepared: Prepared, conc: Option<Concurrency>) {
        let id = prepared.record.id;
        let token = CancellationToken::new();
        self.inner().active.insert(id, token.clone());
        let this = self.clone();
        let shared = self.shared.clone();
        let gate = self.gate.clone();
        self.tracker.spawn(async move {
            let ended = execute(shared, prepared, token, gate).await;
            this.finished(id, conc, ended);
        });
    }

    fn finished(self: &Arc<Self>, id: i64, conc: Option<Concurrency>, ended: Ended) {
        let next = {
            let mut inner = self.inner();
            inner.active.remove(&id);
            match &conc {
                Some(c) if ended == Ended::Completed && !inner.stopping => inner
                    .groups
                    .finished(&c.group, id)
                    .and_then(|next| inner.waiting.remove(&next)),
                _ => None,
            }
        };
        if let Some((prepared, conc)) = next {
            self.launch(prepared, Some(conc));
        }
    }

    /// A pending run made obsolete by a newer run of its group.
    async fn cancel_waiting(&self, prepared: Prepared, conc: &Concurrency, by: i64) {
        let id = prepared.record.id;
        tracing::info!(run = id, by, group = %conc.group,
            "cancelled: a newer run of its concurrency group is pending");
        let reason = format!(
            "cancelled: a newer run ({by}) of concurrency group {:?} is waiting",
            conc.group
        );
        cancel_unstarted(self.shared.clone(), prepared, &reason).await;
    }

    /// No run starts from now on; runs waiting for a slot stay queued.
    pub fn stop_starting(&self) {
        self.inner().stopping = true;
        self.gate.close();
    }

    /// Cancels every run in progress (their cancellation ladder runs).
    pub fn cancel_all(&self) {
        for token in self.inner().active.values() {
            token.cancel();
        }
    }

    /// Waits until every run task has ended.
    pub async fn wait(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }

    pub fn running_tasks(&self) -> usize {
        self.tracker.len()
    }
}
