//! Running a whole workflow: one session (one VM) for the run, jobs in
//! `needs` order, matrix expansion, job-level `if`, `fail-fast`, and the
//! run's conclusion. With `vm-scope = job`, each job instance gets its own
//! session instead and independent jobs run in parallel.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use futures::FutureExt;
use futures::stream::{FuturesUnordered, StreamExt};
use indexmap::IndexMap;
use kiln_expr::{Contexts, Status, Value};
use kiln_vm::{ExecRequest, Vm};
use kiln_workflow::{Job, Matrix, MatrixValues, Workflow};
use serde_json::{Value as Json, json};
use tokio::sync::mpsc::UnboundedSender;

use crate::concurrency::{self, GroupPermit};
use crate::config::{RunConfig, VmScope};
use crate::contexts::{self, JobDirs};
use crate::eval::Scope;
use crate::event::{JobKey, RunEvent};
use crate::graph::JobGraph;
use crate::job::{JobContext, run_job};
use crate::mask::Masker;
use crate::matrix::{self, Combination};
use crate::output::SharedMasker;
use crate::result::{JobResult, RunResult};
use crate::session::{Session, SessionError, SessionManager};
use crate::status::{self, Conclusion};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("the VM failed: {0}")]
    Vm(#[from] kiln_vm::VmError),
    #[error("internal error: the executor panicked: {0}")]
    Panic(String),
}

/// Runs `workflow` and returns its result. Job and step failures are part
/// of the result; an `Err` means the run could not be carried out at all.
/// Whatever happens, every VM the run allocated is released before this
/// returns.
pub async fn run_workflow(
    manager: &SessionManager,
    workflow: &Workflow,
    cfg: &RunConfig,
    events: UnboundedSender<RunEvent>,
) -> Result<RunResult, RunError> {
    let started = Instant::now();
    let inputs = contexts::inputs(workflow, cfg).map_err(RunError::Invalid)?;
    let graph = job_graph(workflow, cfg)?;
    let mut masker = Masker::new();
    for value in cfg.secrets.values() {
        masker.add(value);
    }
    let name = workflow
        .name
        .as_ref()
        .map_or_else(|| cfg.workflow_path.clone(), |n| n.value.clone());
    let _ = events.send(RunEvent::RunStarted {
        workflow: name.clone(),
    });
    let run = Run {
        manager,
        workflow,
        cfg,
        events: events.clone(),
        masker: Arc::new(RwLock::new(masker)),
        inputs,
        graph,
        counter: std::sync::atomic::AtomicUsize::new(0),
    };
    let (jobs, vms) = match cfg.vm_scope {
        VmScope::Run => run.in_one_vm().await?,
        VmScope::Job => run.vm_per_job().await?,
    };
    let statuses: Vec<status::JobResult> = jobs.iter().map(|i| i.status).collect();
    let conclusion = status::run_conclusion(&statuses, cfg.cancel.is_cancelled());
    let _ = events.send(RunEvent::RunFinished {
        conclusion,
        duration: started.elapsed(),
    });
    Ok(RunResult {
        workflow: name,
        conclusion,
        duration_ms: started.elapsed().as_millis() as u64,
        vms,
        // Masked once more as a whole: a value registered with
        // `::add-mask::` late in the run also leaves earlier jobs' results.
        jobs: jobs
            .into_iter()
            .map(|i| i.result.masked(&run.masker))
            .collect(),
    })
}

fn job_graph(workflow: &Workflow, cfg: &RunConfig) -> Result<JobGraph, RunError> {
    let graph = JobGraph::new(workflow.jobs.iter().map(|(id, job)| {
        (
            id.as_str(),
            job.needs
                .iter()
                .map(|n| n.value.as_str())
                .collect::<Vec<_>>(),
        )
    }))
    .map_err(|e| RunError::Invalid(e.to_string()))?;
    match &cfg.job_filter {
        None => Ok(graph),
        Some(id) if !graph.contains(id) => Err(RunError::Invalid(format!(
            "no job \"{id}\" in the workflow (jobs: {})",
            graph.jobs().collect::<Vec<_>>().join(", ")
        ))),
        Some(id) => graph
            .select(&[id.as_str()])
            .map_err(|e| RunError::Invalid(e.to_string())),
    }
}

type Finished = Vec<Instance>;

struct Run<'a> {
    manager: &'a SessionManager,
    workflow: &'a Workflow,
    cfg: &'a RunConfig,
    events: UnboundedSender<RunEvent>,
    masker: SharedMasker,
    inputs: Json,
    graph: JobGraph,
    /// Numbers job instances so each gets fresh directories.
    counter: std::sync::atomic::AtomicUsize,
}

/// What a job's dependents see of it.
#[derive(Clone)]
struct Done {
    result: Conclusion,
    outputs: IndexMap<String, String>,
}

impl<'a> Run<'a> {
    /// The default: one session and VM; jobs one after another in it.
    async fn in_one_vm(&self) -> Result<(Finished, Vec<String>), RunError> {
        let session = self.manager.create_session(&self.cfg.spec).await?;
        let vm_id = session.vm().id().to_string();
        let _ = self.events.send(RunEvent::VmAllocated {
            vm: vm_id.clone(),
            elapsed: session.allocation_time(),
        });
        let work = AssertUnwindSafe(async {
            setup(session.vm()).await?;
            let mut done: HashMap<String, Done> = HashMap::new();
            let mut finished = Vec::new();
            for id in self.graph.topological_order() {
                let results = self.run_job_all(id, &done, Some(session.vm())).await;
                done.insert(id.to_string(), summarize(&results));
                finished.extend(results);
            }
            cleanup(session.vm()).await;
            Ok::<_, RunError>(finished)
        })
        .catch_unwind()
        .await;
        finish_session(session, work)
            .await
            .map(|f| (f, vec![vm_id]))
    }

    /// `vm-scope = job`: each job instance in its own session; jobs whose
    /// needs are done start together.
    async fn vm_per_job(&self) -> Result<(Finished, Vec<String>), RunError> {
        let mut schedule = self.graph.schedule();
        let mut done: HashMap<String, Done> = HashMap::new();
        let mut finished = Vec::new();
        let mut vms = Vec::new();
        let mut running = FuturesUnordered::new();
        loop {
            for id in schedule.start_ready() {
                let snapshot = done.clone();
                running.push(async move {
                    let results = self.run_job_all(id, &snapshot, None).await;
                    (id, results)
                });
            }
            let Some((id, results)) = running.next().await else {
                break;
            };
            let _ = schedule.finish(id);
            done.insert(id.to_string(), summarize(&results));
            for r in &results {
                if let Some(vm) = r.vm.clone() {
                    vms.push(vm);
                }
            }
            finished.extend(results);
        }
        Ok((finished, vms))
    }

    /// Runs every instance of job `id` (one, or one per matrix combination).
    /// `vm` is the run's VM, or `None` for a session per instance.
    async fn run_job_all(
        &self,
        id: &str,
        done: &HashMap<String, Done>,
        vm: Option<&dyn Vm>,
    ) -> Vec<Instance> {
        let Some(job) = self.workflow.jobs.get(id) else {
            return Vec::new();
        };
        let base_name = job.name.as_ref().map_or(id, |n| n.value.as_str());
        let needs = self.needs_context(job, done);
        let mut ctx = Contexts::new();
        ctx.insert("github", Value::from(self.github_light(id)));
        ctx.insert("needs", Value::from(needs.clone()));
        ctx.insert("inputs", Value::from(self.inputs.clone()));
        ctx.insert("vars", Value::from(json!(self.cfg.vars)));
        let status = self.needs_status(id, done);
        let condition = job.if_cond.as_ref().map_or("", |c| c.value.as_str());
        let skip = |reason: String| {
            let key = JobKey {
                id: id.to_string(),
                name: base_name.to_string(),
            };
            let _ = self.events.send(RunEvent::JobSkipped {
                job: key,
                reason: reason.clone(),
            });
            vec![Instance::new(skipped(id, base_name, reason), false, None)]
        };
        match Scope::new(&ctx, status).condition(condition) {
            Ok(true) => {}
            Ok(false) => {
                let reason = if condition.is_empty() {
                    "a job it needs did not succeed".to_string()
                } else {
                    format!("if: {condition} was false")
                };
                return skip(reason);
            }
            Err(e) => {
                let mut r = skipped(id, base_name, format!("if: {e}"));
                r.conclusion = Conclusion::Failure;
                return vec![Instance::new(r, false, None)];
            }
        }
        let combos = match self.matrix(job, &ctx) {
            Ok(c) => c,
            Err(e) => {
                let mut r = skipped(id, base_name, format!("strategy.matrix: {e}"));
                r.conclusion = Conclusion::Failure;
                return vec![Instance::new(r, false, None)];
            }
        };
        let strategy = job.strategy.as_ref();
        let scope = Scope::new(&ctx, status);
        let fail_fast = strategy
            .and_then(|s| s.fail_fast.as_ref())
            .map_or(Ok(true), |f| scope.bool_or_expr(f))
            .unwrap_or(true);
        let max_parallel = strategy
            .and_then(|s| s.max_parallel.as_ref())
            .and_then(|m| scope.number_or_expr(m).ok())
            .map(|m| m.max(1.0) as usize);
        let total = combos.as_ref().map_or(1, Vec::len);
        if total == 0 {
            return skip("the matrix has no combinations".into());
        }
        let instances: Vec<(Json, String)> = match &combos {
            None => vec![(json!({}), base_name.to_string())],
            Some(combos) => combos
                .iter()
                .map(|c| {
                    (
                        Json::Object(c.values.clone()),
                        self.display_name(job, id, c, &ctx),
                    )
                })
                .collect(),
        };
        // Fail-fast cancels the instances still running, not only those
        // yet to start; a cancelled run cancels them all.
        let stop = self.cfg.cancel.child_token();
        let run_one = |index: usize, matrix: Json, name: String| {
            let strategy_ctx = json!({
                "fail-fast": fail_fast,
                "job-index": index,
                "job-total": total,
                "max-parallel": max_parallel.unwrap_or(total),
            });
            let needs = needs.clone();
            let stop = stop.clone();
            async move {
                if stop.is_cancelled() {
                    let reason = if self.cfg.cancel.is_cancelled() {
                        "the run was cancelled"
                    } else {
                        "cancelled by fail-fast"
                    };
                    let mut r = skipped(id, &name, reason.into());
                    r.conclusion = Conclusion::Cancelled;
                    r.matrix = Some(matrix);
                    let job = JobKey {
                        id: id.to_string(),
                        name: name.clone(),
                    };
                    let _ = self.events.send(RunEvent::JobFinished {
                        job,
                        conclusion: Conclusion::Cancelled,
                        duration: std::time::Duration::ZERO,
                    });
                    return Instance::new(r, false, None);
                }
                let inst = self
                    .run_instance(id, job, name, matrix, strategy_ctx, needs, vm, stop.clone())
                    .await;
                if fail_fast && inst.status.needs_result() == Conclusion::Failure {
                    stop.cancel();
                }
                inst
            }
        };
        match vm {
            // Sharing the run's VM: one instance at a time.
            Some(_) => {
                let mut out = Vec::new();
                for (i, (matrix, name)) in instances.into_iter().enumerate() {
                    out.push(run_one(i, matrix, name).await);
                }
                out
            }
            None => {
                let limit = max_parallel.unwrap_or(usize::MAX);
                futures::stream::iter(
                    instances
                        .into_iter()
                        .enumerate()
                        .map(|(i, (m, n))| run_one(i, m, n)),
                )
                .buffered(limit)
                .collect()
                .await
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_instance(
        &self,
        id: &str,
        job: &Job,
        name: String,
        matrix: Json,
        strategy: Json,
        needs: Json,
        vm: Option<&dyn Vm>,
        cancel: tokio_util::sync::CancellationToken,
    ) -> Instance {
        let key = JobKey {
            id: id.to_string(),
            name,
        };
        let continue_on_error = {
            let mut ctx = Contexts::new();
            ctx.insert("matrix", Value::from(matrix.clone()));
            ctx.insert("needs", Value::from(needs.clone()));
            ctx.insert("inputs", Value::from(self.inputs.clone()));
            job.continue_on_error
                .as_ref()
                .map(|c| Scope::new(&ctx, Status::Success).bool_or_expr(c))
                .unwrap_or(Ok(false))
                .unwrap_or(false)
        };
        // Its own token, so `cancel-in-progress` of a newer job in its
        // concurrency group cancels this instance only.
        let cancel = cancel.child_token();
        let _group = match self
            .enter_group(id, job, &key, &matrix, &strategy, &needs, &cancel)
            .await
        {
            Ok(permit) => permit,
            Err(r) => return Instance::new(r, continue_on_error, None),
        };
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        let instance = InstanceSpec {
            job,
            key: key.clone(),
            matrix,
            strategy,
            needs,
            n,
            cancel,
        };
        match vm {
            Some(vm) => {
                let r = run_job(self.job_context(vm, &instance)).await;
                Instance::new(r, continue_on_error, None)
            }
            None => {
                let session = match self.manager.create_session(&self.cfg.spec).await {
                    Ok(s) => s,
                    Err(e) => {
                        let mut r = skipped(id, &key.name, e.to_string());
                        r.conclusion = Conclusion::Failure;
                        return Instance::new(r, continue_on_error, None);
                    }
                };
                let vm_id = session.vm().id().to_string();
                let _ = self.events.send(RunEvent::VmAllocated {
                    vm: vm_id.clone(),
                    elapsed: session.allocation_time(),
                });
                let work = AssertUnwindSafe(async {
                    setup(session.vm()).await?;
                    let r = run_job(self.job_context(session.vm(), &instance)).await;
                    cleanup(session.vm()).await;
                    Ok::<_, RunError>(r)
                })
                .catch_unwind()
                .await;
                match finish_session(session, work).await {
                    Ok(r) => Instance::new(r, continue_on_error, Some(vm_id)),
                    Err(e) => {
                        let mut r = skipped(id, &key.name, e.to_string());
                        r.conclusion = Conclusion::Failure;
                        Instance::new(r, continue_on_error, Some(vm_id))
                    }
                }
            }
        }
    }

    /// Waits for the job's `concurrency:` group, if it has one (before its
    /// session is created, so a waiting job holds no VM of its own). `Err`
    /// is the job's result when it does not run: cancelled (a newer job of
    /// the group replaced it, or the run was cancelled) or failed (the group
    /// cannot be evaluated).
    #[allow(clippy::too_many_arguments)]
    async fn enter_group(
        &self,
        id: &str,
        job: &Job,
        key: &JobKey,
        matrix: &Json,
        strategy: &Json,
        needs: &Json,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> Result<Option<GroupPermit>, JobResult> {
        let Some(block) = &job.concurrency else {
            return Ok(None);
        };
        let mut ctx = Contexts::new();
        ctx.insert("github", Value::from(self.github_light(id)));
        ctx.insert("needs", Value::from(needs.clone()));
        ctx.insert("strategy", Value::from(strategy.clone()));
        ctx.insert("matrix", Value::from(matrix.clone()));
        ctx.insert("inputs", Value::from(self.inputs.clone()));
        ctx.insert("vars", Value::from(json!(self.cfg.vars)));
        let field = format!("jobs.{id}.concurrency");
        let evaluated = concurrency::evaluate(block, &kiln_expr::EvalContext::new(&ctx), &field);
        let (conclusion, reason) = match evaluated {
            Ok(None) => return Ok(None),
            Ok(Some(c)) => {
                tracing::debug!(job = %key.name, group = %c.group, "waiting for the job's concurrency group");
                match self.cfg.job_groups.acquire(&c, cancel).await {
                    Ok(permit) => return Ok(Some(permit)),
                    Err(refused) => (Conclusion::Cancelled, refused.to_string()),
                }
            }
            Err(e) => (Conclusion::Failure, e),
        };
        let mut r = skipped(id, &key.name, reason);
        r.conclusion = conclusion;
        r.matrix = (matrix.as_object().is_some_and(|m| !m.is_empty())).then(|| matrix.clone());
        let _ = self.events.send(RunEvent::JobFinished {
            job: key.clone(),
            conclusion,
            duration: std::time::Duration::ZERO,
        });
        Err(r)
    }

    fn job_context<'v>(&'v self, vm: &'v dyn Vm, spec: &InstanceSpec<'v>) -> JobContext<'v> {
        let dirs = JobDirs::new(
            vm.layout(),
            spec.n,
            contexts::repo_name(&self.cfg.git.repository),
        );
        JobContext {
            vm,
            cfg: self.cfg,
            workflow: self.workflow,
            job: spec.job,
            key: spec.key.clone(),
            matrix: spec.matrix.clone(),
            strategy: spec.strategy.clone(),
            needs: spec.needs.clone(),
            inputs: self.inputs.clone(),
            dirs,
            events: self.events.clone(),
            masker: self.masker.clone(),
            cancel: spec.cancel.clone(),
        }
    }

    fn display_name(&self, job: &Job, id: &str, combo: &Combination, ctx: &Contexts) -> String {
        match &job.name {
            Some(name) if name.value.contains("${{") => {
                let mut ctx = ctx.clone();
                ctx.insert("matrix", Value::from(Json::Object(combo.values.clone())));
                Scope::new(&ctx, Status::Success)
                    .interpolate(name)
                    .unwrap_or_else(|_| name.value.clone())
            }
            Some(name) => matrix::default_display_name(name, combo),
            None => matrix::default_display_name(id, combo),
        }
    }

    /// The matrix combinations, or `None` for a job without a matrix.
    fn matrix(&self, job: &Job, ctx: &Contexts) -> Result<Option<Vec<Combination>>, String> {
        let Some(matrix) = job.strategy.as_ref().and_then(|s| s.matrix.as_ref()) else {
            return Ok(None);
        };
        let scope = Scope::new(ctx, Status::Success);
        let list = |values: &MatrixValues| -> Result<Vec<Json>, String> {
            match values {
                MatrixValues::List(items) => items
                    .iter()
                    .map(|item| match item {
                        Json::String(s) if s.contains("${{") => scope.value(s).map(|v| v.to_json()),
                        other => Ok(other.clone()),
                    })
                    .collect(),
                MatrixValues::Expr(text) => match scope.value(text)?.to_json() {
                    Json::Array(items) => Ok(items),
                    other => Err(format!("expected an array, got {other}")),
                },
            }
        };
        let (dimensions, include, exclude) = match matrix {
            Matrix::Expr(text) => {
                let value = scope.value(text)?.to_json();
                let Json::Object(map) = value else {
                    return Err(format!("expected an object, got {value}"));
                };
                let mut dims = IndexMap::new();
                let (mut include, mut exclude) = (Vec::new(), Vec::new());
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("include", Json::Array(items)) => include = items,
                        ("exclude", Json::Array(items)) => exclude = items,
                        (_, Json::Array(items)) => {
                            dims.insert(k, items);
                        }
                        (_, other) => {
                            return Err(format!("matrix.{k}: expected an array, got {other}"));
                        }
                    }
                }
                (dims, include, exclude)
            }
            Matrix::Dimensions {
                dimensions,
                include,
                exclude,
                ..
            } => {
                let mut dims = IndexMap::new();
                for (name, values) in dimensions {
                    dims.insert(name.clone(), list(values)?);
                }
                let include = include.as_ref().map(&list).transpose()?.unwrap_or_default();
                let exclude = exclude.as_ref().map(&list).transpose()?.unwrap_or_default();
                (dims, include, exclude)
            }
        };
        let objects =
            |items: Vec<Json>, what: &str| -> Result<Vec<serde_json::Map<String, Json>>, String> {
                items
                    .into_iter()
                    .map(|i| match i {
                        Json::Object(m) => Ok(m),
                        other => Err(format!("{what} entries must be objects, got {other}")),
                    })
                    .collect()
            };
        let include = objects(include, "include")?;
        let exclude = objects(exclude, "exclude")?;
        matrix::expand(&dimensions, &include, &exclude)
            .map(Some)
            .map_err(|e| e.to_string())
    }

    fn needs_context(&self, job: &Job, done: &HashMap<String, Done>) -> Json {
        let mut needs = serde_json::Map::new();
        for need in &job.needs {
            if let Some(d) = done.get(need.value.as_str()) {
                needs.insert(
                    need.value.clone(),
                    json!({"result": d.result, "outputs": d.outputs}),
                );
            }
        }
        Json::Object(needs)
    }

    /// The status a job's `if:` sees: cancelled, failure if any ancestor
    /// failed, else success only when every direct need succeeded.
    fn needs_status(&self, id: &str, done: &HashMap<String, Done>) -> Status {
        if self.cfg.cancel.is_cancelled() {
            return Status::Cancelled;
        }
        let ancestors = self.graph.needs_closure(&[id]).unwrap_or_default();
        let failed = ancestors.iter().filter(|a| **a != id).any(|a| {
            done.get(*a)
                .is_some_and(|d| d.result == Conclusion::Failure)
        });
        if failed {
            return Status::Failure;
        }
        let direct_ok = self.graph.needs(id).unwrap_or_default().iter().all(|n| {
            done.get(*n)
                .is_some_and(|d| d.result == Conclusion::Success)
        });
        if direct_ok {
            Status::Success
        } else {
            // A skipped or cancelled need: success() is false, failure() too.
            Status::Cancelled
        }
    }

    /// The parts of the `github` context a job-level `if:` may use.
    fn github_light(&self, job_id: &str) -> Json {
        let layout = kiln_vm::GuestLayout::standard();
        let dirs = JobDirs::new(&layout, 0, contexts::repo_name(&self.cfg.git.repository));
        contexts::github(self.cfg, self.workflow, job_id, &dirs)
    }
}

/// One job instance to run.
struct InstanceSpec<'j> {
    job: &'j Job,
    key: JobKey,
    matrix: Json,
    strategy: Json,
    needs: Json,
    /// Numbers the instance's directories.
    n: usize,
    /// Cancelled with the run, or by fail-fast of its matrix.
    cancel: tokio_util::sync::CancellationToken,
}

/// One finished job instance.
struct Instance {
    result: JobResult,
    status: status::JobResult,
    vm: Option<String>,
}

impl Instance {
    fn new(result: JobResult, continue_on_error: bool, vm: Option<String>) -> Self {
        let status = status::JobResult::new(result.conclusion, continue_on_error);
        Instance { result, status, vm }
    }
}

fn summarize(instances: &[Instance]) -> Done {
    let mut outputs = IndexMap::new();
    for i in instances {
        outputs.extend(i.result.outputs.clone());
    }
    Done {
        result: status::matrix_needs_result(instances.iter().map(|i| &i.status)),
        outputs,
    }
}

fn skipped(id: &str, name: &str, reason: String) -> JobResult {
    JobResult {
        id: id.to_string(),
        name: name.to_string(),
        matrix: None,
        conclusion: Conclusion::Skipped,
        reason: Some(reason),
        duration_ms: 0,
        outputs: IndexMap::new(),
        steps: Vec::new(),
        annotations: Vec::new(),
        summary: String::new(),
    }
}

/// Prepares a fresh VM for a run: its directories. One exec.
async fn setup(vm: &dyn Vm) -> Result<(), RunError> {
    let layout = vm.layout();
    let mut argv = vec!["mkdir".to_string(), "-p".to_string()];
    argv.extend(layout.dirs().iter().map(|d| d.to_string()));
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let result = vm.exec(ExecRequest::new(argv), tx).await?;
    if !result.success() {
        return Err(RunError::Invalid(format!(
            "preparing the VM failed (mkdir exited with {:?})",
            result.exit_code
        )));
    }
    Ok(())
}

/// Removes the run's files before the VM is destroyed. One exec; failures
/// only logged, since release destroys everything anyway.
async fn cleanup(vm: &dyn Vm) {
    let layout = vm.layout();
    let argv = vec![
        "rm".to_string(),
        "-rf".to_string(),
        "--".to_string(),
        layout.workspace_root.clone(),
        layout.temp.clone(),
    ];
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    if let Err(e) = vm.exec(ExecRequest::new(argv), tx).await {
        tracing::warn!(error = %e, "cleanup of the VM failed");
    }
}

/// Releases the session whatever the work's outcome, then reports it. The
/// release is awaited, so when a run returns its VMs are already destroyed.
async fn finish_session<T>(
    session: Session,
    work: Result<Result<T, RunError>, Box<dyn std::any::Any + Send>>,
) -> Result<T, RunError> {
    if let Err(e) = session.release().await {
        tracing::error!(error = %e, "releasing the session failed");
    }
    match work {
        Ok(result) => result,
        Err(panic) => Err(RunError::Panic(panic_message(&panic))),
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}
