//! Running one job instance (one matrix combination) in a VM: contexts, the
//! step loop with GitHub's status semantics, and job outputs.

use std::time::{Duration, Instant};

use indexmap::IndexMap;
use kiln_expr::{Contexts, Status, Value};
use kiln_vm::Vm;
use kiln_workflow::{Job, Step, Workflow};
use serde_json::{Value as Json, json};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::config::RunConfig;
use crate::contexts::{self, JobDirs};
use crate::envfile::PathPrepends;
use crate::eval::Scope;
use crate::event::{Annotation, JobKey, RunEvent};
use crate::output::{OutputProcessor, SharedMasker, mask};
use crate::result::{JobResult, StepResult};
use crate::status::{self, Conclusion};
use crate::step::{Script, run_script};

/// GitHub's default job and step timeout.
const DEFAULT_TIMEOUT_MINUTES: f64 = 360.0;
/// Composite actions may nest, but not forever.
pub(crate) const MAX_ACTION_DEPTH: usize = 9;

/// Everything fixed about one job instance.
pub struct JobContext<'a> {
    pub vm: &'a dyn Vm,
    pub cfg: &'a RunConfig,
    pub workflow: &'a Workflow,
    pub job: &'a Job,
    pub key: JobKey,
    /// The `matrix` context (an empty object for non-matrix jobs).
    pub matrix: Json,
    pub strategy: Json,
    pub needs: Json,
    pub inputs: Json,
    pub dirs: JobDirs,
    pub events: UnboundedSender<RunEvent>,
    pub masker: SharedMasker,
    pub cancel: CancellationToken,
}

/// The scope of a list of steps: the job's, or a composite action's.
#[derive(Default)]
pub(crate) struct Frame {
    pub steps: serde_json::Map<String, Json>,
    pub inputs: Json,
    /// Env visible to this frame's steps before their own `env:`.
    pub env: IndexMap<String, String>,
    pub action_path: Option<String>,
    pub failed: bool,
}

/// The mutable state of a running job.
pub(crate) struct JobRunner<'a> {
    pub cx: JobContext<'a>,
    pub contexts: Contexts,
    pub defaults_env: IndexMap<String, String>,
    /// Workflow env, job env, then `GITHUB_ENV` assignments.
    pub job_env: IndexMap<String, String>,
    pub path: PathPrepends,
    pub deadline: Instant,
    pub timed_out: bool,
    pub counter: usize,
    pub annotations: Vec<Annotation>,
    pub summary: String,
    /// A host copy of the workspace for `hashFiles`, taken before a step
    /// that uses it.
    pub snapshot: Option<tempfile::TempDir>,
}

/// Runs a job instance to completion. Never fails: problems become a failed
/// job with a reason.
pub async fn run_job(cx: JobContext<'_>) -> JobResult {
    let started = Instant::now();
    let key = cx.key.clone();
    let _ = cx.events.send(RunEvent::JobStarted { job: key.clone() });
    let mut result = JobResult {
        id: key.id.clone(),
        name: key.name.clone(),
        matrix: match &cx.matrix {
            Json::Object(m) if m.is_empty() => None,
            other => Some(other.clone()),
        },
        conclusion: Conclusion::Success,
        reason: None,
        duration_ms: 0,
        outputs: IndexMap::new(),
        steps: Vec::new(),
        annotations: Vec::new(),
        summary: String::new(),
    };
    match JobRunner::prepare(cx).await {
        Err((cx, reason)) => {
            let reason = mask(&cx.masker, &reason);
            let _ = cx.events.send(RunEvent::Output {
                job: key.clone(),
                stream: crate::event::Stream::Stderr,
                line: format!("error: {reason}"),
            });
            result.conclusion = Conclusion::Failure;
            result.reason = Some(reason);
            result.duration_ms = started.elapsed().as_millis() as u64;
            let _ = cx.events.send(RunEvent::JobFinished {
                job: key,
                conclusion: result.conclusion,
                duration: started.elapsed(),
            });
            result
        }
        Ok(mut runner) => {
            let mut frame = Frame {
                env: runner.job_env.clone(),
                inputs: runner.cx.inputs.clone(),
                ..Frame::default()
            };
            let steps = &runner.cx.job.steps;
            result.steps = runner.run_steps(&mut frame, steps, 0).await;
            result.conclusion = status::job_conclusion(result.steps.iter().map(|s| s.conclusion));
            if runner.timed_out {
                result.conclusion = Conclusion::Failure;
                result.reason = Some("the job exceeded its timeout".into());
            } else if runner.cx.cancel.is_cancelled() {
                result.conclusion = Conclusion::Cancelled;
            }
            runner
                .contexts
                .insert("steps", Value::from(Json::Object(frame.steps)));
            result.outputs = runner.job_outputs();
            result.annotations = std::mem::take(&mut runner.annotations);
            result.summary = mask(&runner.cx.masker, &runner.summary);
            result.duration_ms = started.elapsed().as_millis() as u64;
            let _ = runner.cx.events.send(RunEvent::JobFinished {
                job: key,
                conclusion: result.conclusion,
                duration: started.elapsed(),
            });
            result
        }
    }
}

impl<'a> JobRunner<'a> {
    /// Builds contexts and job env, and creates the job's directories.
    async fn prepare(cx: JobContext<'a>) -> Result<JobRunner<'a>, (JobContext<'a>, String)> {
        if let Some(uses) = &cx.job.uses {
            let msg = format!(
                "reusable workflow jobs (uses: {}) are not supported yet",
                uses.value
            );
            return Err((cx, msg));
        }
        if cx.job.container.is_some() {
            return Err((cx, "container jobs are not supported yet".into()));
        }
        if !cx.job.services.is_empty() {
            return Err((cx, "service containers are not supported yet".into()));
        }
        let github = contexts::github(cx.cfg, cx.workflow, &cx.key.id, &cx.dirs);
        let runner = contexts::runner(&cx.dirs);
        let defaults_env = contexts::default_env(&github, &runner, &cx.dirs);
        let mut ctx = Contexts::new();
        ctx.insert("github", Value::from(github));
        ctx.insert("runner", Value::from(runner));
        ctx.insert("vars", Value::from(json!(cx.cfg.vars)));
        ctx.insert("secrets", Value::from(secrets_context(cx.cfg)));
        ctx.insert("matrix", Value::from(cx.matrix.clone()));
        ctx.insert("strategy", Value::from(cx.strategy.clone()));
        ctx.insert("needs", Value::from(cx.needs.clone()));
        ctx.insert("inputs", Value::from(cx.inputs.clone()));
        ctx.insert(
            "job",
            Value::from(json!({"status": "success", "container": {}, "services": {}})),
        );
        ctx.insert("steps", Value::from(json!({})));

        // Workflow env, `--env`, then job env; each may use the ones before.
        let mut job_env = IndexMap::new();
        let layers = [&cx.workflow.env, &cx.job.env];
        for (i, layer) in layers.into_iter().enumerate() {
            for (name, value) in layer {
                ctx.insert("env", Value::from(json!(job_env)));
                let scope = Scope::new(&ctx, Status::Success);
                match scope.interpolate(value) {
                    Ok(v) => {
                        job_env.insert(name.clone(), v);
                    }
                    Err(e) => return Err((cx, format!("env.{name}: {e}"))),
                }
            }
            if i == 0 {
                for (name, value) in &cx.cfg.env {
                    job_env.insert(name.clone(), value.clone());
                }
            }
        }
        ctx.insert("env", Value::from(json!(job_env)));

        let timeout = match &cx.job.timeout_minutes {
            None => DEFAULT_TIMEOUT_MINUTES,
            Some(field) => match Scope::new(&ctx, Status::Success).number_or_expr(field) {
                Ok(n) => n,
                Err(e) => return Err((cx, format!("timeout-minutes: {e}"))),
            },
        };
        let event = serde_json::to_vec_pretty(&cx.cfg.event).unwrap_or_default();
        let prepared = async {
            cx.vm
                .put_file(&format!("{}/event.json", cx.dirs.temp), event, 0o644)
                .await?;
            cx.vm.put_archive(&cx.dirs.workspace, empty_tar()).await
        };
        if let Err(e) = prepared.await {
            return Err((cx, format!("preparing the job's directories failed: {e}")));
        }
        Ok(JobRunner {
            cx,
            contexts: ctx,
            defaults_env,
            job_env,
            path: PathPrepends::new(),
            deadline: Instant::now() + minutes(timeout),
            timed_out: false,
            counter: 0,
            annotations: Vec::new(),
            summary: String::new(),
            snapshot: None,
        })
    }

    /// An expression scope over the job's contexts.
    pub(crate) fn scope(&self, status: Status) -> Scope<'_> {
        let scope = Scope::new(&self.contexts, status);
        match &self.snapshot {
            Some(dir) => scope.with_files(dir.path(), &self.cx.dirs.workspace),
            None => scope,
        }
    }

    /// Copies the workspace out of the VM for `hashFiles`. Only steps that
    /// mention it pay for the copy.
    async fn refresh_snapshot(&mut self, step: &Step) {
        let mentions = |text: &str| text.to_ascii_lowercase().contains("hashfiles(");
        let uses_hash = [&step.if_cond, &step.run, &step.name]
            .into_iter()
            .flatten()
            .any(|t| mentions(t))
            || step
                .with
                .values()
                .chain(step.env.values())
                .any(|t| mentions(t));
        if !uses_hash {
            return;
        }
        self.snapshot = None;
        let archive = self.cx.vm.get_archive(&self.cx.dirs.workspace).await;
        let unpacked = archive.map_err(|e| e.to_string()).and_then(|tar| {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            kiln_vm::archive::unpack_into(&tar, dir.path()).map_err(|e| e.to_string())?;
            Ok(dir)
        });
        match unpacked {
            Ok(dir) => self.snapshot = Some(dir),
            Err(e) => tracing::warn!(error = %e, "copying the workspace for hashFiles failed"),
        }
    }

    /// The status the status functions see in `frame`.
    pub(crate) fn status(&self, frame: &Frame) -> Status {
        if self.cx.cancel.is_cancelled() || self.timed_out {
            Status::Cancelled
        } else if frame.failed {
            Status::Failure
        } else {
            Status::Success
        }
    }

    /// Points the `steps`, `inputs` and `env` contexts at `frame`.
    pub(crate) fn enter(&mut self, frame: &Frame, env: &IndexMap<String, String>) {
        self.contexts
            .insert("steps", Value::from(Json::Object(frame.steps.clone())));
        self.contexts
            .insert("inputs", Value::from(frame.inputs.clone()));
        self.contexts.insert("env", Value::from(json!(env)));
        let status = match self.status(frame) {
            Status::Success => "success",
            Status::Failure => "failure",
            Status::Cancelled => "cancelled",
        };
        self.contexts.insert(
            "job",
            Value::from(json!({"status": status, "container": {}, "services": {}})),
        );
    }

    /// Runs `steps` in `frame`, returning one result per step.
    pub(crate) async fn run_steps(
        &mut self,
        frame: &mut Frame,
        steps: &[Step],
        depth: usize,
    ) -> Vec<StepResult> {
        let mut results = Vec::with_capacity(steps.len());
        for (index, step) in steps.iter().enumerate() {
            let result = self.run_step(frame, step, index, depth).await;
            if depth == 0 {
                // `GITHUB_ENV` written by the step (or by any step of a
                // composite action it ran) applies to the job's later steps.
                frame.env = self.job_env.clone();
            }
            if result.conclusion == Conclusion::Failure {
                frame.failed = true;
            }
            if let Some(id) = &result.id {
                frame.steps.insert(
                    id.clone(),
                    json!({
                        "outputs": result.outputs,
                        "outcome": result.outcome,
                        "conclusion": result.conclusion,
                    }),
                );
            }
            results.push(result);
        }
        results
    }

    async fn run_step(
        &mut self,
        frame: &mut Frame,
        step: &Step,
        index: usize,
        depth: usize,
    ) -> StepResult {
        let started = Instant::now();
        self.counter += 1;
        let n = self.counter;
        self.enter(frame, &frame.env.clone());
        self.refresh_snapshot(step).await;
        // A name may interpolate secrets; it is shown and stored.
        let name = mask(&self.cx.masker, &self.step_name(step));
        let mut result = StepResult {
            id: step.id.as_ref().map(|id| id.value.clone()),
            name: name.clone(),
            outcome: Conclusion::Skipped,
            conclusion: Conclusion::Skipped,
            exit_code: None,
            duration_ms: 0,
            outputs: IndexMap::new(),
            error: None,
            log_tail: Vec::new(),
        };
        let job = self.cx.key.clone();
        if depth == 0 {
            let _ = self.cx.events.send(RunEvent::StepStarted {
                job: job.clone(),
                index,
                name: name.clone(),
            });
        }
        let status = self.status(frame);
        let condition = step.if_cond.as_ref().map_or("", |c| c.value.as_str());
        let should_run = self.scope(status).condition(condition);
        let mut output =
            OutputProcessor::new(job.clone(), self.cx.events.clone(), self.cx.masker.clone());
        match should_run {
            Ok(false) => {}
            Ok(true) => {
                let cancel = if status == Status::Cancelled {
                    // Steps that run after cancellation (always()) must not
                    // be cancelled again at once.
                    CancellationToken::new()
                } else {
                    self.cx.cancel.child_token()
                };
                let ran = self
                    .execute(frame, step, n, depth, cancel, &mut output)
                    .await;
                let continue_on_error = match &step.continue_on_error {
                    None => Ok(false),
                    Some(field) => self.scope(status).bool_or_expr(field),
                };
                match (ran, continue_on_error) {
                    (Ok(ran), Ok(coe)) => {
                        let s = status::StepResult::new(ran.outcome, coe);
                        result.outcome = s.outcome;
                        result.conclusion = s.conclusion;
                        result.exit_code = ran.exit_code;
                        result.outputs = ran.outputs;
                        result.error = ran.error;
                    }
                    // A step that could not run (bad expression, missing
                    // action) failed like any other: continue-on-error
                    // forgives it too.
                    (Err(e), Ok(coe)) => {
                        let s = status::StepResult::new(Conclusion::Failure, coe);
                        result.outcome = s.outcome;
                        result.conclusion = s.conclusion;
                        result.error = Some(e);
                    }
                    (_, Err(e)) => {
                        result.outcome = Conclusion::Failure;
                        result.conclusion = Conclusion::Failure;
                        result.error = Some(e);
                    }
                }
            }
            Err(e) => {
                result.outcome = Conclusion::Failure;
                result.conclusion = Conclusion::Failure;
                result.error = Some(format!("if: {e}"));
            }
        }
        if let Some(error) = &result.error {
            let error = mask(&self.cx.masker, error);
            output.runner_line(&format!("error: {error}"));
            result.error = Some(error);
        }
        result.log_tail = output.finish();
        for value in result.outputs.values_mut() {
            *value = mask(&self.cx.masker, value);
        }
        result.duration_ms = started.elapsed().as_millis() as u64;
        // Masked again: the step may have registered new masks.
        let name = mask(&self.cx.masker, &name);
        result.name = name.clone();
        if depth == 0 {
            let _ = self.cx.events.send(RunEvent::StepFinished {
                job,
                index,
                name,
                conclusion: result.conclusion,
                duration: started.elapsed(),
            });
        }
        result
    }

    fn step_name(&self, step: &Step) -> String {
        let scope = self.scope(Status::Success);
        if let Some(name) = &step.name {
            return scope
                .interpolate(name)
                .unwrap_or_else(|_| name.value.clone());
        }
        if let Some(uses) = &step.uses {
            return format!("Run {}", uses.value);
        }
        let run = step.run.as_ref().map_or("", |r| r.value.as_str());
        let first = run.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        format!("Run {}", first.trim())
    }

    /// Runs a step whose condition passed.
    async fn execute(
        &mut self,
        frame: &mut Frame,
        step: &Step,
        n: usize,
        depth: usize,
        cancel: CancellationToken,
        output: &mut OutputProcessor,
    ) -> Result<Ran, String> {
        let status = self.status(frame);
        // Step env, evaluated with the frame's env in scope.
        let mut env = frame.env.clone();
        for (name, value) in &step.env {
            let v = self
                .scope(status)
                .interpolate(value)
                .map_err(|e| format!("env.{name}: {e}"))?;
            env.insert(name.clone(), v);
            self.contexts.insert("env", Value::from(json!(env)));
        }
        self.contexts.insert("env", Value::from(json!(env)));
        let timeout = self.step_timeout(step, status)?;
        if let Some(uses) = &step.uses {
            return self
                .uses(frame, step, &uses.value, env, depth, cancel, output)
                .await;
        }
        let Some(run) = &step.run else {
            return Err("step has neither run nor uses".into());
        };
        let scope = self.scope(status);
        let script = scope.interpolate(run).map_err(|e| format!("run: {e}"))?;
        let shell = self.shell(step, frame, &scope)?;
        let working_directory = self.working_directory(step, frame, &scope)?;
        let mut exec_env = self.defaults_env.clone();
        exec_env.insert(
            "GITHUB_ACTION".into(),
            step.id
                .as_ref()
                .map_or_else(|| format!("__run_{n}"), |id| id.value.clone()),
        );
        if let Some(path) = &frame.action_path {
            exec_env.insert("GITHUB_ACTION_PATH".into(), path.clone());
        }
        for (k, v) in env {
            if !contexts::is_protected(&k) || !exec_env.contains_key(&k) {
                exec_env.insert(k, v);
            }
        }
        let outcome = run_script(
            self.cx.vm,
            Script {
                run: &script,
                shell: shell.as_deref(),
                working_directory: &working_directory,
                temp_dir: &self.cx.dirs.temp,
                env: exec_env,
                path: &self.path,
                timeout: Some(timeout),
                cancel,
                n,
                files_dir: &self.cx.dirs.files,
            },
            output,
        )
        .await
        .map_err(|e| e.to_string())?;
        self.apply_env_files(&outcome);
        for (name, value) in &outcome.env {
            if !contexts::is_protected(name) {
                frame.env.insert(name.clone(), value.clone());
            }
        }
        self.annotations
            .extend(outcome.effects.annotations.iter().cloned());
        let exec = &outcome.exec;
        let mut error = None;
        let outcome_kind = if exec.cancelled {
            Conclusion::Cancelled
        } else if exec.timed_out {
            if Instant::now() >= self.deadline {
                self.timed_out = true;
            }
            error = Some(format!(
                "the step timed out after {}",
                human_duration(timeout)
            ));
            Conclusion::Failure
        } else if !exec.success() || outcome.effects.fails_step || !outcome.errors.is_empty() {
            if let Some(signal) = exec.signal {
                error = Some(format!("the process was killed by signal {signal}"));
            } else if !outcome.errors.is_empty() {
                error = Some(outcome.errors.join("; "));
            } else if let Some(code) = exec.exit_code.filter(|c| *c != 0) {
                error = Some(format!("process completed with exit code {code}"));
            } else if outcome.effects.fails_step {
                error = Some("the step used a workflow command that is disabled".into());
            }
            Conclusion::Failure
        } else {
            Conclusion::Success
        };
        let mut outputs = IndexMap::new();
        for (k, v) in outcome.effects.outputs.iter().chain(outcome.outputs.iter()) {
            outputs.insert(k.clone(), v.clone());
        }
        Ok(Ran {
            outcome: outcome_kind,
            exit_code: exec.exit_code,
            outputs,
            error,
        })
    }

    fn apply_env_files(&mut self, outcome: &crate::step::ScriptOutcome) {
        for (name, value) in &outcome.env {
            if contexts::is_protected(name) {
                continue;
            }
            self.job_env.insert(name.clone(), value.clone());
        }
        self.path.add_file(&outcome.path_file);
        if !outcome.summary.is_empty() {
            self.summary.push_str(&outcome.summary);
            if !self.summary.ends_with('\n') {
                self.summary.push('\n');
            }
        }
    }

    fn step_timeout(&self, step: &Step, status: Status) -> Result<Duration, String> {
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let own = match &step.timeout_minutes {
            None => None,
            Some(field) => Some(minutes(
                self.scope(status)
                    .number_or_expr(field)
                    .map_err(|e| format!("timeout-minutes: {e}"))?,
            )),
        };
        // Steps that run after the job timed out (always()) get their own
        // timeout only.
        Ok(match (own, self.timed_out) {
            (Some(own), true) => own,
            (None, true) => minutes(DEFAULT_TIMEOUT_MINUTES),
            (Some(own), false) => own.min(remaining),
            (None, false) => remaining,
        })
    }

    fn shell(
        &self,
        step: &Step,
        frame: &Frame,
        scope: &Scope<'_>,
    ) -> Result<Option<String>, String> {
        let spec = step.shell.as_ref().or_else(|| {
            if frame.action_path.is_some() {
                return None;
            }
            self.cx
                .job
                .defaults
                .run
                .shell
                .as_ref()
                .or(self.cx.workflow.defaults.run.shell.as_ref())
        });
        match spec {
            None if frame.action_path.is_some() => {
                Err("a run step in a composite action must set shell".into())
            }
            None => Ok(None),
            Some(s) => scope
                .interpolate(s)
                .map(Some)
                .map_err(|e| format!("shell: {e}")),
        }
    }

    fn working_directory(
        &self,
        step: &Step,
        frame: &Frame,
        scope: &Scope<'_>,
    ) -> Result<String, String> {
        let dir = step.working_directory.as_ref().or_else(|| {
            if frame.action_path.is_some() {
                return None;
            }
            self.cx.job.defaults.run.working_directory.as_ref().or(self
                .cx
                .workflow
                .defaults
                .run
                .working_directory
                .as_ref())
        });
        let workspace = &self.cx.dirs.workspace;
        Ok(match dir {
            None => workspace.clone(),
            Some(d) => {
                let d = scope
                    .interpolate(d)
                    .map_err(|e| format!("working-directory: {e}"))?;
                if d.starts_with('/') {
                    d
                } else {
                    format!("{workspace}/{d}")
                }
            }
        })
    }

    fn job_outputs(&self) -> IndexMap<String, String> {
        let scope = self.scope(Status::Success);
        let mut outputs = IndexMap::new();
        for (name, value) in &self.cx.job.outputs {
            // GitHub drops outputs that fail to evaluate; it never fails the
            // job for them.
            if let Ok(v) = scope.interpolate(value) {
                outputs.insert(name.clone(), mask(&self.cx.masker, &v));
            }
        }
        outputs
    }
}

/// What executing a step produced, before `continue-on-error`.
pub(crate) struct Ran {
    pub outcome: Conclusion,
    pub exit_code: Option<i32>,
    pub outputs: IndexMap<String, String>,
    pub error: Option<String>,
}

/// `90s`, `12m`, `1.5m`: timeouts as users wrote them (in minutes), readable
/// also when they are fractions of a minute.
fn human_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 120.0 {
        format!("{secs:.1}s")
    } else {
        format!("{:.1}m", secs / 60.0)
    }
}

fn minutes(m: f64) -> Duration {
    Duration::from_secs_f64((m * 60.0).clamp(0.0, 1e9))
}

fn secrets_context(cfg: &RunConfig) -> Json {
    let mut secrets = serde_json::Map::new();
    secrets.insert("GITHUB_TOKEN".into(), Json::String(String::new()));
    for (k, v) in &cfg.secrets {
        secrets.insert(k.clone(), Json::String(v.clone()));
    }
    Json::Object(secrets)
}

fn empty_tar() -> Vec<u8> {
    // Two zero blocks: the end-of-archive marker of an empty tar.
    vec![0u8; 1024]
}
