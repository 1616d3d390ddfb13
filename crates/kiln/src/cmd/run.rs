//! `kiln run`: run workflows locally, each run in its own VM.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use indexmap::IndexMap;
use kiln_runner::{GitInfo, RunConfig, SessionManager, VmScope};
use kiln_vm::qemu::SnapshotStatus;
use kiln_vm::{LocalProvider, PoolConfig, QemuConfig, QemuProvider, VmProvider, WarmPool};
use kiln_workflow::Workflow;
use kiln_workflow::trigger::{self, Event};

use crate::cli::{Backend, RunArgs, VmScopeArg};
use crate::display::Display;
use crate::exit::Code;
use crate::gitinfo::{self, RepoFacts};
use crate::workflows;

pub fn run(args: &RunArgs) -> anyhow::Result<Code> {
    init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: &RunArgs) -> anyhow::Result<Code> {
    let start_dir = match &args.workflow {
        Some(p) if p.is_dir() => p.clone(),
        Some(p) => p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
        None => std::env::current_dir()?,
    };
    let repo = gitinfo::read(&start_dir, args.git_ref.as_deref())?;
    let selected = select_workflows(args, &repo)?;
    if selected.is_empty() {
        eprintln!("no workflow is triggered by the \"{}\" event", args.event);
        return Ok(Code::Success);
    }
    let backend = provider(args)?;
    // VMs left by a kiln that died (kill -9, power loss) are destroyed now.
    match backend.provider.reap_orphans().await {
        Ok(0) => {}
        Ok(n) => eprintln!("reaped {n} VM(s) left by a previous kiln process"),
        Err(e) => eprintln!("warning: reaping leftover VMs failed: {e}"),
    }
    let base = base_config(args, &repo)?;
    if let Some(qemu) = backend
        .qemu
        .as_ref()
        .filter(|q| q.config().snapshot_restore)
    {
        match qemu.snapshot_status(&base.spec) {
            SnapshotStatus::Ready(_) => {}
            // With a warm pool, made now: built in the background during
            // a refill, its template VM would run beyond the VM limit.
            SnapshotStatus::Missing(why) if args.warm_pool > 0 => {
                eprintln!("qemu: {why}: making it before the warm pool starts");
                if let Err(e) = qemu.prepare_snapshot(&base.spec).await {
                    eprintln!("qemu: cannot make the snapshot, VMs cold-boot: {e}");
                }
            }
            SnapshotStatus::Missing(why) => eprintln!(
                "qemu: {why}: VMs cold-boot until a snapshot is built (in the background)"
            ),
            SnapshotStatus::Unsupported(why) => eprintln!("qemu: {why}: VMs cold-boot"),
        }
    }
    let max_sessions = args.max_sessions.max(1);
    // The pool (if any) is started after reaping, so it never races it.
    let pool = (args.warm_pool > 0 && backend.qemu.is_some()).then(|| {
        Arc::new(WarmPool::new(
            backend.provider.clone(),
            PoolConfig {
                specs: vec![base.spec.clone()],
                ..PoolConfig::new(args.warm_pool, max_sessions + args.warm_pool)
            },
        ))
    });
    let provider: Arc<dyn VmProvider> = match &pool {
        Some(pool) => pool.clone(),
        None => backend.provider.clone(),
    };
    let manager = SessionManager::new(provider, max_sessions);

    let cancel = base.cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\ncancelling (always() steps still run)…");
            cancel.cancel();
        }
    });

    let mut results = Vec::new();
    let mut failed = false;
    for (path, workflow) in &selected {
        let mut cfg = base.clone();
        cfg.workflow_path = path
            .strip_prefix(&repo.root)
            .unwrap_or(path)
            .display()
            .to_string();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let display = tokio::spawn(Display::new(args.json).consume(rx));
        let outcome = kiln_runner::run_workflow(&manager, workflow, &cfg, tx).await;
        let _ = display.await;
        match outcome {
            Ok(result) => {
                failed |= result.conclusion == kiln_runner::Conclusion::Failure
                    || result.conclusion == kiln_runner::Conclusion::Cancelled;
                results.push(result);
            }
            Err(kiln_runner::RunError::Invalid(msg)) => {
                bail!("{}: {msg}", path.display())
            }
            Err(err) => return Err(err).with_context(|| format!("{}", path.display())),
        }
    }
    if let Some(pool) = &pool
        && let Err(e) = pool.shutdown().await
    {
        eprintln!("warning: releasing the warm pool failed: {e}");
    }
    if let Some(qemu) = &backend.qemu {
        // A snapshot started in the background is worth finishing: the
        // next run restores instead of booting.
        qemu.finish_snapshot_builds(std::time::Duration::from_secs(60))
            .await;
    }
    if args.json {
        let json = match results.as_slice() {
            [one] => serde_json::to_string_pretty(one)?,
            many => serde_json::to_string_pretty(many)?,
        };
        println!("{json}");
    }
    Ok(if failed { Code::Failure } else { Code::Success })
}

/// Log lines on stderr, beside the run's display: warnings, and what the
/// start-up reaping destroyed (which VM directory, whose, which pids), so a
/// VM killed on the user's behalf is never silent. `RUST_LOG` overrides.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,kiln_vm::qemu::reap=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .with_target(false)
        .try_init();
}

/// The backend, and the qemu provider itself when that is the backend.
struct Chosen {
    provider: Arc<dyn VmProvider>,
    qemu: Option<QemuProvider>,
}

fn provider(args: &RunArgs) -> anyhow::Result<Chosen> {
    match args.backend {
        Backend::Local => {
            eprintln!("warning: {}", LocalProvider::ISOLATION_WARNING);
            let dir = crate::data_dir()?.join("local-vms");
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let provider = LocalProvider::new(dir);
            Ok(Chosen {
                provider: Arc::new(provider),
                qemu: None,
            })
        }
        Backend::Qemu => {
            let mut config = QemuConfig::from_data_dir(&crate::data_dir()?)?;
            // Restore is the default: it is ~8x faster than a boot and
            // falls back to one by itself.
            config.snapshot_restore = !args.no_snapshot;
            config.transport = args.transport.into();
            let provider = QemuProvider::new(config)?;
            eprintln!("qemu: accelerator {}", provider.accel());
            Ok(Chosen {
                provider: Arc::new(provider.clone()),
                qemu: Some(provider),
            })
        }
    }
}

/// The workflows to run: the given file, or those in the directory that the
/// event triggers.
fn select_workflows(args: &RunArgs, repo: &RepoFacts) -> anyhow::Result<Vec<(PathBuf, Workflow)>> {
    let explicit_file = args.workflow.as_ref().filter(|p| p.is_file());
    let files = match (&args.workflow, explicit_file) {
        (_, Some(file)) => vec![file.clone()],
        (Some(dir), None) if dir.is_dir() => {
            let nested = dir.join(".github").join("workflows");
            workflows::list_workflow_files(if nested.is_dir() { &nested } else { dir })?
        }
        (Some(missing), None) => bail!("{}: no such file or directory", missing.display()),
        (None, None) => workflows::list_workflow_files(&workflows::find_workflow_dir(&repo.root)?)?,
    };
    let event = Event {
        git_ref: Some(repo.git_ref.clone()),
        ..Event::new(args.event.clone())
    };
    let mut selected = Vec::new();
    for path in files {
        let source = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let (workflow, diagnostics) = kiln_workflow::parse_workflow(&source);
        if diagnostics.iter().any(|d| d.is_error()) {
            let shown = path.display().to_string();
            eprint!(
                "{}",
                kiln_workflow::diagnostic::render_all(&shown, &source, &diagnostics)
            );
            bail!("{shown} has errors; fix them or check with `kiln validate`");
        }
        // An explicitly named file runs even if its triggers don't match,
        // as long as it declares the event.
        let decision = trigger::evaluate(&workflow.on, &event);
        if decision.runs
            || (explicit_file.is_some() && workflow.on.events.contains_key(&args.event))
        {
            selected.push((path, workflow));
        } else if explicit_file.is_some() {
            bail!(
                "{}: not triggered by \"{}\": {decision}",
                path.display(),
                args.event
            );
        }
    }
    Ok(selected)
}

fn base_config(args: &RunArgs, repo: &RepoFacts) -> anyhow::Result<RunConfig> {
    let mut secrets = IndexMap::new();
    for file in &args.secret_file {
        let iter = dotenvy::from_path_iter(file)
            .with_context(|| format!("cannot read secret file {}", file.display()))?;
        for item in iter {
            let (k, v) = item.with_context(|| format!("{}: invalid line", file.display()))?;
            secrets.insert(k, v);
        }
    }
    secrets.extend(pairs(&args.secrets, "--secret")?);
    let inputs = pairs(&args.inputs, "--input")?;
    let event = match &args.event_path {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("{}: invalid JSON", path.display()))?
        }
        None => synthesize_event(&args.event, repo, &inputs),
    };
    Ok(RunConfig {
        event_name: args.event.clone(),
        event,
        git: GitInfo {
            repo_dir: Some(repo.root.clone()),
            sha: repo.sha.clone(),
            git_ref: repo.git_ref.clone(),
            repository: repo.repository.clone(),
        },
        actor: std::env::var("USER").unwrap_or_else(|_| "kiln".into()),
        inputs,
        secrets,
        vars: pairs(&args.vars, "--var")?,
        env: pairs(&args.env, "--env")?,
        job_filter: args.job.clone(),
        spec: kiln_vm::VmSpec {
            image: args.image.clone(),
            ..kiln_vm::VmSpec::default()
        },
        vm_scope: match args.vm_scope {
            VmScopeArg::Run => VmScope::Run,
            VmScopeArg::Job => VmScope::Job,
        },
        ..RunConfig::default()
    })
}

/// `NAME=VALUE` arguments, in order.
fn pairs(items: &[String], flag: &str) -> anyhow::Result<IndexMap<String, String>> {
    let mut out = IndexMap::new();
    for item in items {
        let Some((k, v)) = item.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            bail!("{flag} {item}: expected NAME=VALUE");
        };
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// A plausible webhook payload for a local run.
fn synthesize_event(
    name: &str,
    repo: &RepoFacts,
    inputs: &IndexMap<String, String>,
) -> serde_json::Value {
    let (owner, short) = repo
        .repository
        .split_once('/')
        .unwrap_or(("local", &repo.repository));
    let repository = serde_json::json!({
        "full_name": repo.repository,
        "name": short,
        "owner": { "login": owner },
    });
    match name {
        "workflow_dispatch" => serde_json::json!({
            "ref": repo.git_ref, "inputs": inputs, "repository": repository,
        }),
        _ => serde_json::json!({
            "ref": repo.git_ref,
            "after": repo.sha,
            "head_commit": { "id": repo.sha },
            "repository": repository,
        }),
    }
}
