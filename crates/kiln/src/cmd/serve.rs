//! `kiln serve`: the webhook server. Every setting is a flag, a `KILN_*`
//! variable and a key of the `--config` TOML file (flags win); secret
//! values only come from files or the environment.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use indexmap::IndexMap;
use kiln_server::config::{Backend, FileConfig, Overrides, ReportMode, Secret, ServerConfig};
use kiln_server::{Deps, Server};

use crate::exit::Code;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A TOML configuration file.
    #[arg(long, value_name = "FILE", env = "KILN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR", env = "KILN_LISTEN")]
    pub listen: Option<String>,
    /// Where the store, the repository cache and VMs live
    /// [default: $KILN_HOME/server].
    #[arg(long, value_name = "DIR", env = "KILN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Where steps run: qemu (microVMs) or local (host processes, no isolation).
    #[arg(long, value_name = "BACKEND", env = "KILN_BACKEND")]
    pub backend: Option<Backend>,
    /// A file with the webhook secret (a second line: the previous secret,
    /// accepted during rotation). Or set KILN_WEBHOOK_SECRET (and
    /// KILN_WEBHOOK_SECRET_PREVIOUS).
    #[arg(long, value_name = "FILE", env = "KILN_WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// Accept unsigned deliveries. Never on a reachable address.
    #[arg(long, env = "KILN_INSECURE_NO_SIGNATURE")]
    pub insecure_no_signature: bool,
    /// A repository deliveries are accepted for (owner/name or owner/*);
    /// repeatable. Default: all.
    #[arg(
        long = "allowed-repository",
        value_name = "REPO",
        env = "KILN_ALLOWED_REPOSITORIES",
        value_delimiter = ','
    )]
    pub allowed_repositories: Vec<String>,
    /// How many VMs may run at once [default: 2].
    #[arg(long = "max-sessions", value_name = "N", env = "KILN_MAX_SESSIONS")]
    pub max_sessions: Option<usize>,
    /// Idle VMs kept booted for the next runs (qemu; 0 turns the pool off)
    /// [default: 2].
    #[arg(long, value_name = "N", env = "KILN_WARM_POOL")]
    pub warm_pool: Option<usize>,
    /// Start VMs by restoring a snapshot of a booted one (qemu)
    /// [default: true].
    #[arg(long, value_name = "BOOL", env = "KILN_SNAPSHOT_RESTORE")]
    pub snapshot_restore: Option<bool>,
    /// How long running runs may finish after SIGTERM [default: 10m].
    #[arg(long, value_name = "DURATION", env = "KILN_SHUTDOWN_GRACE")]
    pub shutdown_grace: Option<String>,
    /// How long deliveries are remembered for deduplication [default: 72h].
    #[arg(long, value_name = "DURATION", env = "KILN_DELIVERY_RETENTION")]
    pub delivery_retention: Option<String>,
    /// How results go to GitHub: checks, statuses or none [default: checks].
    #[arg(long, value_name = "MODE", env = "KILN_REPORT")]
    pub report: Option<ReportMode>,
    /// This server's external URL, for links from GitHub to runs.
    #[arg(long, value_name = "URL", env = "KILN_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// A dotenv file of secrets for workflows (KILN_SECRET_<NAME> adds more).
    #[arg(long, value_name = "FILE", env = "KILN_SECRETS_FILE")]
    pub secrets_file: Option<PathBuf>,
    /// GitHub's REST API root (GitHub Enterprise: https://HOST/api/v3).
    #[arg(long, value_name = "URL", env = "KILN_GITHUB_API_URL")]
    pub github_api_url: Option<String>,
    /// A file with a GitHub token (or set KILN_GITHUB_TOKEN).
    #[arg(long, value_name = "FILE", env = "KILN_GITHUB_TOKEN_FILE")]
    pub github_token_file: Option<PathBuf>,
    /// GitHub App id (with --github-app-key-file).
    #[arg(long, value_name = "ID", env = "KILN_GITHUB_APP_ID")]
    pub github_app_id: Option<u64>,
    /// The GitHub App's private key (PEM).
    #[arg(long, value_name = "FILE", env = "KILN_GITHUB_APP_KEY_FILE")]
    pub github_app_key_file: Option<PathBuf>,
    /// The app's installation id (default: looked up per repository).
    #[arg(long, value_name = "ID", env = "KILN_GITHUB_APP_INSTALLATION_ID")]
    pub github_app_installation_id: Option<u64>,
    /// vCPUs per VM [default: 2].
    #[arg(long, value_name = "N", env = "KILN_VM_VCPUS")]
    pub vm_vcpus: Option<u32>,
    /// Memory per VM in MiB [default: 2048].
    #[arg(long, value_name = "MIB", env = "KILN_VM_MEMORY_MIB")]
    pub vm_memory_mib: Option<u64>,
    /// Disk per VM in MiB [default: 8192].
    #[arg(long, value_name = "MIB", env = "KILN_VM_DISK_MIB")]
    pub vm_disk_mib: Option<u64>,
}

pub fn run(args: &ServeArgs) -> anyhow::Result<Code> {
    init_tracing();
    let config = load(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let deps = Deps::from_config(&config).await?;
        let server = Server::start(config, deps).await?;
        eprintln!("kiln serve: listening on http://{}", server.addr());
        let report = server.serve_until(kiln_server::shutdown::signal()).await;
        if report.leaked_sessions > 0 {
            anyhow::bail!(
                "{} VM(s) could not be released at shutdown",
                report.leaked_sessions
            );
        }
        Ok(Code::Success)
    })
}

/// The checked configuration from the file, flags and environment.
pub fn load(args: &ServeArgs) -> anyhow::Result<ServerConfig> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let file = match &args.config {
        Some(path) => FileConfig::read(path)?,
        None => FileConfig::default(),
    };
    let data_dir = match (&args.data_dir, &file.data_dir) {
        (Some(dir), _) => Some(dir.clone()),
        (None, Some(_)) => None,
        (None, None) => Some(default_data_dir()?),
    };
    let env_secrets: IndexMap<String, Secret> = std::env::vars()
        .filter_map(|(k, v)| {
            let name = k.strip_prefix("KILN_SECRET_")?;
            (!name.is_empty()).then(|| (name.to_owned(), Secret::new(v)))
        })
        .collect();
    let overrides = Overrides {
        listen: args.listen.clone(),
        data_dir,
        backend: args.backend,
        webhook_secret: env("KILN_WEBHOOK_SECRET").map(Secret::new),
        webhook_secret_previous: env("KILN_WEBHOOK_SECRET_PREVIOUS").map(Secret::new),
        webhook_secret_file: args.webhook_secret_file.clone(),
        insecure_no_signature: args.insecure_no_signature,
        allowed_repositories: args.allowed_repositories.clone(),
        max_concurrent_sessions: args.max_sessions,
        warm_pool: args.warm_pool,
        snapshot_restore: args.snapshot_restore,
        shutdown_grace: args.shutdown_grace.clone(),
        delivery_retention: args.delivery_retention.clone(),
        report: args.report,
        public_url: args.public_url.clone(),
        secrets_file: args.secrets_file.clone(),
        github_api_url: args.github_api_url.clone(),
        github_token: env("KILN_GITHUB_TOKEN").map(Secret::new),
        github_token_file: args.github_token_file.clone(),
        github_app_id: args.github_app_id,
        github_app_key_file: args.github_app_key_file.clone(),
        github_installation_id: args.github_app_installation_id,
        vm_vcpus: args.vm_vcpus,
        vm_memory_mib: args.vm_memory_mib,
        vm_disk_mib: args.vm_disk_mib,
        env_secrets,
    };
    let mut config = ServerConfig::resolve(file, overrides).context("invalid configuration")?;
    if config.insecure_no_signature {
        eprintln!(
            "warning: --insecure-no-signature: deliveries are not authenticated; \
             anyone who can reach {} can run workflows",
            config.listen
        );
    }
    if config.allowed_repositories.is_empty() {
        tracing::warn!("no allowed_repositories: deliveries for any repository are accepted");
    }
    config.data_dir = config.data_dir.canonicalize().unwrap_or(config.data_dir);
    Ok(config)
}

/// `$KILN_HOME/server` (or `~/.local/share/kiln/server`).
pub fn default_data_dir() -> anyhow::Result<PathBuf> {
    Ok(crate::data_dir()?.join("server"))
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
