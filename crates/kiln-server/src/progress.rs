//! Follows a run's events: keeps its jobs and steps in the store, appends
//! its (already masked) log lines in batches, and sends job updates to the
//! run's reporter as they happen.
//!
//! When the run is over, [`Progress::finish`] reconciles with the run's
//! result (step log tails, step summaries) and completes whatever job is
//! still open, so no check run is left spinning.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use kiln_github::report::{JobReport, StepReport, render};
use kiln_runner::event::Stream;
use kiln_runner::{JobKey, RunEvent, RunResult};
use kiln_store::{JobRecord, JobState, LogStream, NewLogLine, now_ms};
use kiln_workflow::Workflow;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::report::{RunReporter, Update};
use crate::state::Shared;

/// Log lines of a step kept for a failure report.
const TAIL_LINES: usize = 50;
/// Log lines are written at least this often.
const FLUSH_EVERY: Duration = Duration::from_millis(250);
const FLUSH_LINES: usize = 500;

/// A step as stored in the job's `steps` JSON.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepView {
    pub name: String,
    /// `in_progress` or `completed`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conclusion: Option<String>,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_tail: Vec<String>,
}

/// One job instance being followed.
#[derive(Debug, Clone)]
pub struct JobView {
    pub record: JobRecord,
    pub steps: Vec<StepView>,
    pub reason: Option<String>,
    /// The current step's last lines.
    tail: VecDeque<String>,
    /// Whether a `Completed` update was sent.
    reported: bool,
}

impl JobView {
    pub fn new(run_id: i64, key: String, job_id: String, name: String) -> JobView {
        JobView {
            record: JobRecord {
                run_id,
                key,
                job_id,
                name,
                state: JobState::Queued,
                conclusion: None,
                check_run_id: None,
                steps: serde_json::Value::Array(Vec::new()),
                summary: String::new(),
                started_at: None,
                finished_at: None,
            },
            steps: Vec::new(),
            reason: None,
            tail: VecDeque::new(),
            reported: false,
        }
    }

    fn sync_steps(&mut self) {
        self.record.steps = serde_json::to_value(&self.steps).unwrap_or_default();
    }

    /// The check run page of this job.
    pub fn report(&self) -> kiln_github::CheckOutput {
        let failed_log_tail = self
            .steps
            .iter()
            .find(|s| s.conclusion.as_deref() == Some("failure"))
            .map(|s| s.log_tail.clone())
            .unwrap_or_default();
        render(&JobReport {
            job_name: self.record.name.clone(),
            conclusion: self.record.conclusion.clone().unwrap_or_default(),
            reason: self.reason.clone(),
            steps: self
                .steps
                .iter()
                .map(|s| StepReport {
                    name: s.name.clone(),
                    conclusion: s.conclusion.clone().unwrap_or_else(|| "cancelled".into()),
                    duration_ms: s.duration_ms,
                })
                .collect(),
            step_summary: self.record.summary.clone(),
            failed_log_tail,
        })
    }
}

/// The store key of a job instance: the job id, plus the instance name for
/// matrix jobs (whose instances are separate check runs).
pub fn job_key(workflow: &Workflow, id: &str, name: &str) -> String {
    let matrix = workflow
        .jobs
        .get(id)
        .and_then(|j| j.strategy.as_ref())
        .is_some_and(|s| s.matrix.is_some());
    if matrix {
        format!("{id}/{name}")
    } else {
        id.to_owned()
    }
}

pub struct Progress {
    run_id: i64,
    shared: Arc<Shared>,
    workflow: Arc<Workflow>,
    reporter: RunReporter,
    pub jobs: IndexMap<String, JobView>,
    logs: Vec<NewLogLine>,
    /// Set once the VM is allocated.
    pub started: bool,
}

impl Progress {
    pub fn new(
        run_id: i64,
        shared: Arc<Shared>,
        workflow: Arc<Workflow>,
        reporter: RunReporter,
        jobs: IndexMap<String, JobView>,
    ) -> Progress {
        Progress {
            run_id,
            shared,
            workflow,
            reporter,
            jobs,
            logs: Vec::new(),
            started: false,
        }
    }

    /// Consumes events until the run drops its sender.
    pub async fn follow(mut self, mut rx: UnboundedReceiver<RunEvent>) -> Progress {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        loop {
            tokio::select! {
                event = rx.recv() => match event {
                    Some(event) => {
                        self.on_event(event).await;
                        if self.logs.len() >= FLUSH_LINES {
                            self.flush().await;
                        }
                    }
                    None => break,
                },
                _ = tick.tick() => self.flush().await,
            }
        }
        self.flush().await;
        self
    }

    async fn on_event(&mut self, event: RunEvent) {
        match event {
            RunEvent::VmAllocated { vm, elapsed } => {
                self.started = true;
                self.shared
                    .metrics
                    .allocation_seconds
                    .observe(elapsed.as_secs_f64());
                let id = self.run_id;
                if let Err(e) = self.shared.db.call(move |s| s.mark_run_started(id)).await {
                    tracing::error!(run = id, error = %e, "cannot record the run as started");
                }
                tracing::info!(run = id, %vm, elapsed_ms = elapsed.as_millis() as u64, "run started");
                self.meta(None, format!("VM {vm} allocated in {elapsed:.2?}"));
            }
            RunEvent::JobStarted { job } => {
                let key = self.view(&job);
                self.meta(Some(&key), format!("job {} started", job.name));
                if let Some(v) = self.jobs.get_mut(&key) {
                    v.record.state = JobState::InProgress;
                    v.record.started_at = Some(now_ms());
                    self.reporter.send(Update::InProgress {
                        key: key.clone(),
                        name: v.record.name.clone(),
                    });
                }
                self.save(&key).await;
            }
            RunEvent::JobSkipped { job, reason } => {
                let key = self.view(&job);
                self.meta(Some(&key), format!("job {} skipped: {reason}", job.name));
                self.complete(&key, "skipped", Some(reason)).await;
            }
            RunEvent::StepStarted { job, name, .. } => {
                let key = self.view(&job);
                self.meta(Some(&key), format!("▶ {name}"));
                if let Some(v) = self.jobs.get_mut(&key) {
                    v.tail.clear();
                    v.steps.push(StepView {
                        name,
                        status: "in_progress".into(),
                        conclusion: None,
                        duration_ms: 0,
                        log_tail: Vec::new(),
                    });
                }
            }
            RunEvent::Output { job, stream, line } => {
                let key = self.view(&job);
                if let Some(v) = self.jobs.get_mut(&key) {
                    if v.tail.len() == TAIL_LINES {
                        v.tail.pop_front();
                    }
                    v.tail.push_back(line.clone());
                }
                let stream = match stream {
                    Stream::Stdout => LogStream::Stdout,
                    Stream::Stderr => LogStream::Stderr,
                };
                self.line(Some(&key), stream, line);
            }
            RunEvent::GroupStarted { job, title } => {
                let key = self.view(&job);
                self.meta(Some(&key), format!("▸ {title}"));
            }
            RunEvent::Annotation { job, annotation } => {
                let key = self.view(&job);
                self.meta(
                    Some(&key),
                    format!("{:?}: {}", annotation.level, annotation.message),
                );
            }
            RunEvent::StepFinished {
                job,
                name,
                conclusion,
                duration,
                ..
            } => {
                let key = self.view(&job);
                let ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
                self.meta(Some(&key), format!("{conclusion}: {name} ({duration:.2?})"));
                if let Some(v) = self.jobs.get_mut(&key) {
                    let tail: Vec<String> = v.tail.drain(..).collect();
                    if let Some(step) = v.steps.iter_mut().rev().find(|s| s.status == "in_progress")
                    {
                        step.status = "completed".into();
                        step.conclusion = Some(conclusion.to_string());
                        step.duration_ms = ms;
                        if conclusion != kiln_runner::Conclusion::Success {
                            step.log_tail = tail;
                        }
                    }
                    v.sync_steps();
                }
                self.save(&key).await;
            }
            RunEvent::JobFinished {
                job, conclusion, ..
            } => {
                let key = self.view(&job);
                self.meta(
                    Some(&key),
                    format!("job {} finished: {conclusion}", job.name),
                );
                self.complete(&key, conclusion.as_str(), None).await;
            }
            RunEvent::RunStarted { .. }
            | RunEvent::GroupEnded { .. }
            | RunEvent::Debug { .. }
            | RunEvent::RunFinished { .. } => {}
        }
    }

    /// The key of `job`, creating its view on first sight.
    fn view(&mut self, job: &JobKey) -> String {
        let key = job_key(&self.workflow, &job.id, &job.name);
        if !self.jobs.contains_key(&key) {
            let view = JobView::new(self.run_id, key.clone(), job.id.clone(), job.name.clone());
            self.jobs.insert(key.clone(), view);
        }
        key
    }

    /// Marks a job completed (once) and reports it.
    pub async fn complete(&mut self, key: &str, conclusion: &str, reason: Option<String>) {
        let Some(v) = self.jobs.get_mut(key) else {
            return;
        };
        if v.record.state != JobState::Completed {
            v.record.state = JobState::Completed;
            v.record.conclusion = Some(conclusion.to_owned());
            v.record.finished_at = Some(now_ms());
            if reason.is_some() {
                v.reason = reason;
            }
            for step in &mut v.steps {
                if step.status == "in_progress" {
                    step.status = "completed".into();
                    step.conclusion = Some("cancelled".into());
                }
            }
            v.sync_steps();
        }
        if !v.reported {
            v.reported = true;
            self.reporter.send(Update::Completed {
                key: key.to_owned(),
                name: v.record.name.clone(),
                conclusion: v.record.conclusion.clone().unwrap_or_default(),
                output: v.report(),
            });
        }
        self.save(key).await;
    }

    /// Takes the run's result into account and completes every open job:
    /// with the result's conclusion, or with `fallback` when the run could
    /// not tell (it failed or was cut short).
    pub async fn finish(
        &mut self,
        result: Option<&RunResult>,
        fallback: &str,
        reason: Option<&str>,
    ) {
        for job in result.map(|r| r.jobs.as_slice()).unwrap_or_default() {
            let key = job_key(&self.workflow, &job.id, &job.name);
            let view = self.jobs.entry(key.clone()).or_insert_with(|| {
                JobView::new(self.run_id, key.clone(), job.id.clone(), job.name.clone())
            });
            // The result's steps carry the log tails the runner kept.
            if !job.steps.is_empty() {
                view.steps = job
                    .steps
                    .iter()
                    .map(|s| StepView {
                        name: s.name.clone(),
                        status: "completed".into(),
                        conclusion: Some(s.conclusion.to_string()),
                        duration_ms: s.duration_ms,
                        log_tail: if s.outcome == kiln_runner::Conclusion::Success {
                            Vec::new()
                        } else {
                            s.log_tail.clone()
                        },
                    })
                    .collect();
                view.sync_steps();
            }
            if view.reason.is_none() {
                view.reason = job.reason.clone();
            }
            let new_summary = !job.summary.is_empty() && view.record.summary != job.summary;
            view.record.summary = job.summary.clone();
            let reported = view.reported;
            if reported && new_summary {
                let output = view.report();
                self.reporter.send(Update::Output {
                    key: key.clone(),
                    output,
                });
            }
            self.complete(&key, job.conclusion.as_str(), None).await;
        }
        let open: Vec<String> = self
            .jobs
            .iter()
            .filter(|(_, v)| v.record.state != JobState::Completed || !v.reported)
            .map(|(k, _)| k.clone())
            .collect();
        for key in open {
            self.complete(&key, fallback, reason.map(str::to_owned))
                .await;
        }
        self.flush().await;
    }

    async fn save(&self, key: &str) {
        let Some(v) = self.jobs.get(key) else {
            return;
        };
        let record = v.record.clone();
        if let Err(e) = self.shared.db.call(move |s| s.save_job(&record)).await {
            tracing::error!(run = self.run_id, job = key, error = %e, "cannot save the job");
        }
    }

    fn meta(&mut self, key: Option<&str>, line: String) {
        self.line(key, LogStream::Meta, line);
    }

    fn line(&mut self, key: Option<&str>, stream: LogStream, line: String) {
        self.logs.push(NewLogLine {
            job: key.map(str::to_owned),
            stream,
            line,
            at: now_ms(),
        });
    }

    async fn flush(&mut self) {
        if self.logs.is_empty() {
            return;
        }
        let lines = std::mem::take(&mut self.logs);
        let id = self.run_id;
        if let Err(e) = self
            .shared
            .db
            .call(move |s| s.append_logs(id, &lines))
            .await
        {
            tracing::error!(run = id, error = %e, "cannot store log lines");
        }
    }
}
