//! The server's configuration: a TOML file ([`FileConfig`], unknown keys
//! rejected) overlaid with command-line flags and `KILN_*` variables
//! ([`Overrides`]), then checked as a whole by [`ServerConfig::resolve`],
//! so a bad setting stops `kiln serve` at start with a message that names it.
//!
//! Secrets (the webhook secret, the GitHub token, workflow secrets) come
//! from files or the environment, never from the command line, and are
//! held in [`Secret`], whose `Debug` prints nothing.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use kiln_vm::VmSpec;
use serde::Deserialize;

/// The largest webhook body accepted (GitHub caps payloads at 25 MiB).
pub const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;
/// Deliveries are remembered at least this long to recognise redeliveries.
pub const MIN_DELIVERY_RETENTION: Duration = Duration::from_secs(72 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{setting}: {message}")]
    Invalid {
        setting: &'static str,
        message: String,
    },
}

fn invalid(setting: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting,
        message: message.into(),
    }
}

/// A secret value; `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where workflow steps run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// QEMU microVMs.
    #[default]
    Qemu,
    /// Host processes, no isolation (trusted workflows, tests).
    Local,
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "qemu" => Ok(Backend::Qemu),
            "local" => Ok(Backend::Local),
            other => Err(format!(
                "unknown backend {other:?} (expected local or qemu)"
            )),
        }
    }
}

/// How results go back to GitHub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ReportMode {
    /// One check run per job (needs a GitHub App, or a token allowed to
    /// write checks).
    #[default]
    Checks,
    /// One commit status per job.
    Statuses,
    /// Nothing is reported.
    None,
}

impl std::str::FromStr for ReportMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "checks" => Ok(ReportMode::Checks),
            "statuses" => Ok(ReportMode::Statuses),
            "none" => Ok(ReportMode::None),
            other => Err(format!(
                "unknown report mode {other:?} (expected checks, statuses or none)"
            )),
        }
    }
}

/// The TOML file, as written. Every key is optional; unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub backend: Option<Backend>,
    /// A file holding the webhook secret; a second line is the previous
    /// secret, accepted too while GitHub's side is rotated.
    pub webhook_secret_file: Option<PathBuf>,
    pub insecure_no_signature: Option<bool>,
    /// `owner/name` or `owner/*`; deliveries for others are refused (403).
    pub allowed_repositories: Option<Vec<String>>,
    pub max_concurrent_sessions: Option<usize>,
    /// VMs kept booted ahead (qemu backend); default 2.
    pub warm_pool: Option<usize>,
    /// Start VMs by snapshot restore (qemu backend); default true.
    pub snapshot_restore: Option<bool>,
    /// How long running runs may finish after SIGTERM, e.g. `"10m"`.
    pub shutdown_grace: Option<String>,
    /// How long deliveries are remembered for deduplication (at least 72h).
    pub delivery_retention: Option<String>,
    pub report: Option<ReportMode>,
    /// The server's external URL, for links from GitHub to runs.
    pub public_url: Option<String>,
    /// A dotenv file of secrets for every repository's workflows.
    pub secrets_file: Option<PathBuf>,
    pub github: Option<GitHubSection>,
    pub vm: Option<VmSection>,
    /// Per-repository settings, keyed by `owner/name`.
    #[serde(default)]
    pub repositories: IndexMap<String, RepoSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitHubSection {
    pub api_url: Option<String>,
    /// A file holding a token (also used to fetch private repositories).
    pub token_file: Option<PathBuf>,
    pub app_id: Option<u64>,
    pub private_key_file: Option<PathBuf>,
    pub installation_id: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmSection {
    pub vcpus: Option<u32>,
    pub memory_mib: Option<u64>,
    pub disk_mib: Option<u64>,
    pub image: Option<String>,
    /// Where guest images are (the qemu backend): a kiln home holding
    /// `images/` (default: `$KILN_HOME`, else `~/.local/share/kiln`).
    pub images_dir: Option<PathBuf>,
    /// The agent channel of the qemu backend: `virtio` (default) or
    /// `vsock` (cold boots only, `minimal` image only).
    pub transport: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoSection {
    /// Give secrets to pull requests from forks (off: forks get none).
    #[serde(default)]
    pub fork_secrets: bool,
    /// Let `pull_request_target` runs check out the pull request's head
    /// (off: only the base commit is reachable from the run).
    #[serde(default)]
    pub pull_request_target_checkout_head: bool,
    /// A dotenv file of secrets for this repository (added to the global ones).
    pub secrets_file: Option<PathBuf>,
}

impl FileConfig {
    /// Reads and parses a TOML file; unknown keys are errors.
    pub fn read(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = read(path)?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }
}

/// Values from flags and `KILN_*` variables; `Some` wins over the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub backend: Option<Backend>,
    pub webhook_secret: Option<Secret>,
    pub webhook_secret_previous: Option<Secret>,
    pub webhook_secret_file: Option<PathBuf>,
    pub insecure_no_signature: bool,
    pub allowed_repositories: Vec<String>,
    pub max_concurrent_sessions: Option<usize>,
    pub warm_pool: Option<usize>,
    pub snapshot_restore: Option<bool>,
    pub shutdown_grace: Option<String>,
    pub delivery_retention: Option<String>,
    pub report: Option<ReportMode>,
    pub public_url: Option<String>,
    pub secrets_file: Option<PathBuf>,
    pub github_api_url: Option<String>,
    pub github_token: Option<Secret>,
    pub github_token_file: Option<PathBuf>,
    pub github_app_id: Option<u64>,
    pub github_app_key_file: Option<PathBuf>,
    pub github_installation_id: Option<u64>,
    pub vm_vcpus: Option<u32>,
    pub vm_memory_mib: Option<u64>,
    pub vm_disk_mib: Option<u64>,
    /// Workflow secrets from the environment (`KILN_SECRET_<NAME>`), added
    /// to (and winning over) those of `secrets_file`.
    pub env_secrets: IndexMap<String, Secret>,
}

/// GitHub credentials.
#[derive(Debug, Clone)]
pub enum GitHubAuth {
    Token(Secret),
    App {
        app_id: u64,
        private_key_pem: Secret,
        installation_id: Option<u64>,
    },
}

#[derive(Debug, Clone)]
pub struct GitHubSettings {
    pub api_url: String,
    pub auth: GitHubAuth,
}

/// A repository pattern of `allowed_repositories`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoPattern {
    Exact(String),
    Owner(String),
}

impl RepoPattern {
    fn parse(text: &str) -> Result<RepoPattern, String> {
        let (owner, name) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not owner/name or owner/*"))?;
        let ok = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        if !ok(owner) {
            return Err(format!("{text:?}: bad owner"));
        }
        match name {
            "*" => Ok(RepoPattern::Owner(owner.to_ascii_lowercase())),
            n if ok(n) => Ok(RepoPattern::Exact(text.to_ascii_lowercase())),
            _ => Err(format!("{text:?}: bad repository name")),
        }
    }

    /// GitHub names are case-insensitive.
    pub fn matches(&self, repo: &str) -> bool {
        let repo = repo.to_ascii_lowercase();
        match self {
            RepoPattern::Exact(r) => *r == repo,
            RepoPattern::Owner(o) => repo
                .split_once('/')
                .is_some_and(|(owner, _)| owner == o.as_str()),
        }
    }
}

/// Per-repository policy, resolved.
#[derive(Debug, Clone, Default)]
pub struct RepoPolicy {
    pub fork_secrets: bool,
    pub pull_request_target_checkout_head: bool,
    pub secrets: IndexMap<String, Secret>,
}

/// The checked configuration the server runs with. Tests build it with
/// [`ServerConfig::new`] and set fields directly.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub backend: Backend,
    /// Current secret first; empty only with `insecure_no_signature`.
    pub webhook_secrets: Vec<Secret>,
    pub insecure_no_signature: bool,
    /// Empty: every repository is accepted.
    pub allowed_repositories: Vec<RepoPattern>,
    pub max_concurrent_sessions: usize,
    /// Idle VMs kept ready (qemu backend); they come on top of
    /// `max_concurrent_sessions` in the VM limit.
    pub warm_pool: usize,
    /// VMs start by snapshot restore (qemu backend).
    pub snapshot_restore: bool,
    pub shutdown_grace: Duration,
    pub delivery_retention: Duration,
    pub report: ReportMode,
    pub github: Option<GitHubSettings>,
    pub public_url: Option<String>,
    pub vm: VmSpec,
    /// The kiln home whose `images/` the qemu backend boots (`None`:
    /// `$KILN_HOME`, else `~/.local/share/kiln`). VM state always lives
    /// under `data_dir`.
    pub images_dir: Option<PathBuf>,
    /// The qemu backend's agent channel (`[vm] transport`).
    pub transport: kiln_vm::qemu::AgentTransport,
    /// Secrets every repository's workflows get.
    pub secrets: IndexMap<String, Secret>,
    /// Keyed by lowercase `owner/name`.
    pub repositories: HashMap<String, RepoPolicy>,
}

impl ServerConfig {
    /// Defaults for `data_dir`: loopback on an ephemeral port, the local
    /// backend, no reporting, no webhook secret (set one, or
    /// `insecure_no_signature`).
    pub fn new(data_dir: impl Into<PathBuf>) -> ServerConfig {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.into(),
            backend: Backend::Local,
            webhook_secrets: Vec::new(),
            insecure_no_signature: false,
            allowed_repositories: Vec::new(),
            max_concurrent_sessions: 2,
            warm_pool: 2,
            snapshot_restore: true,
            shutdown_grace: Duration::from_secs(600),
            delivery_retention: MIN_DELIVERY_RETENTION,
            report: ReportMode::None,
            github: None,
            public_url: None,
            vm: VmSpec::default(),
            images_dir: None,
            transport: kiln_vm::qemu::AgentTransport::default(),
            secrets: IndexMap::new(),
            repositories: HashMap::new(),
        }
    }

    /// Whether deliveries for `repo` are accepted.
    pub fn repository_allowed(&self, repo: &str) -> bool {
        self.allowed_repositories.is_empty()
            || self.allowed_repositories.iter().any(|p| p.matches(repo))
    }

    pub fn policy(&self, repo: &str) -> RepoPolicy {
        self.repositories
            .get(&repo.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default()
    }

    /// Reads `file` (if any), applies `overrides`, and checks everything.
    pub fn load(file: Option<&Path>, overrides: Overrides) -> Result<ServerConfig, ConfigError> {
        let parsed = match file {
            Some(path) => FileConfig::read(path)?,
            None => FileConfig::default(),
        };
        ServerConfig::resolve(parsed, overrides)
    }

    /// Merges and validates. Does not touch the network; checks that the
    /// data directory is writable.
    pub fn resolve(mut file: FileConfig, o: Overrides) -> Result<ServerConfig, ConfigError> {
        let vm_section = file.vm.take().unwrap_or_default();
        let images_dir = vm_section.images_dir.clone();
        let transport = match vm_section.transport.as_deref() {
            None => kiln_vm::qemu::AgentTransport::default(),
            Some(name) => name
                .parse()
                .map_err(|why: String| invalid("vm.transport", why))?,
        };
        let vm = vm_spec(vm_section, &o)?;
        let github = github_settings(&file.github.take().unwrap_or_default(), &o)?;
        let listen_text = o
            .listen
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:8080".to_owned());
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            invalid(
                "listen",
                format!("{listen_text:?} is not an address like 127.0.0.1:8080"),
            )
        })?;
        let data_dir = o.data_dir.or(file.data_dir).ok_or_else(|| {
            invalid(
                "data_dir",
                "not set (--data-dir, KILN_DATA_DIR or data_dir in the config file)",
            )
        })?;
        check_writable(&data_dir)?;
        let mut config = ServerConfig::new(data_dir);
        config.listen = listen;
        config.backend = o.backend.or(file.backend).unwrap_or_default();
        config.insecure_no_signature =
            o.insecure_no_signature || file.insecure_no_signature.unwrap_or(false);
        config.webhook_secrets = webhook_secrets(
            o.webhook_secret,
            o.webhook_secret_previous,
            o.webhook_secret_file.or(file.webhook_secret_file),
        )?;
        if config.webhook_secrets.is_empty() && !config.insecure_no_signature {
            return Err(invalid(
                "webhook_secret",
                "no webhook secret: set KILN_WEBHOOK_SECRET or webhook_secret_file \
                 (or, for local experiments only, --insecure-no-signature)",
            ));
        }
        let mut repos = o.allowed_repositories;
        if repos.is_empty() {
            repos = file.allowed_repositories.unwrap_or_default();
        }
        config.allowed_repositories = repos
            .iter()
            .flat_map(|r| r.split(','))
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(RepoPattern::parse)
            .collect::<Result<_, _>>()
            .map_err(|m| invalid("allowed_repositories", m))?;
        config.max_concurrent_sessions = o
            .max_concurrent_sessions
            .or(file.max_concurrent_sessions)
            .unwrap_or(2);
        if !(1..=1024).contains(&config.max_concurrent_sessions) {
            return Err(invalid(
                "max_concurrent_sessions",
                format!("{} is not in 1..=1024", config.max_concurrent_sessions),
            ));
        }
        config.warm_pool = o.warm_pool.or(file.warm_pool).unwrap_or(2);
        if config.warm_pool > 64 {
            return Err(invalid(
                "warm_pool",
                format!("{} is not in 0..=64", config.warm_pool),
            ));
        }
        config.snapshot_restore = o.snapshot_restore.or(file.snapshot_restore).unwrap_or(true);
        if let Some(text) = o.shutdown_grace.or(file.shutdown_grace) {
            config.shutdown_grace = duration("shutdown_grace", &text)?;
        }
        if let Some(text) = o.delivery_retention.or(file.delivery_retention) {
            config.delivery_retention = duration("delivery_retention", &text)?;
            if config.delivery_retention < MIN_DELIVERY_RETENTION {
                return Err(invalid(
                    "delivery_retention",
                    "must be at least 72h (GitHub redelivers for up to 3 days)",
                ));
            }
        }
        config.public_url = o.public_url.or(file.public_url);
        if let Some(url) = &config.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid(
                "public_url",
                format!("{url:?} is not an http(s) URL"),
            ));
        }
        config.vm = vm;
        config.images_dir = images_dir;
        config.transport = transport;
        if let Some(path) = o.secrets_file.or(file.secrets_file) {
            config.secrets = dotenv_secrets(&path)?;
        }
        config.secrets.extend(o.env_secrets);
        for (name, section) in file.repositories {
            RepoPattern::parse(&name)
                .ok()
                .filter(|p| matches!(p, RepoPattern::Exact(_)))
                .ok_or_else(|| invalid("repositories", format!("{name:?} is not owner/name")))?;
            let secrets = match &section.secrets_file {
                Some(path) => dotenv_secrets(path)?,
                None => IndexMap::new(),
            };
            config.repositories.insert(
                name.to_ascii_lowercase(),
                RepoPolicy {
                    fork_secrets: section.fork_secrets,
                    pull_request_target_checkout_head: section.pull_request_target_checkout_head,
                    secrets,
                },
            );
        }
        config.github = github;
        config.report = o.report.or(file.report).unwrap_or_default();
        if config.report != ReportMode::None && config.github.is_none() {
            return Err(invalid(
                "report",
                format!(
                    "reporting {} needs GitHub credentials: a token (KILN_GITHUB_TOKEN or \
                     github.token_file) or a GitHub App (github.app_id and \
                     github.private_key_file); or set report = \"none\"",
                    match config.report {
                        ReportMode::Statuses => "commit statuses",
                        _ => "check runs",
                    }
                ),
            ));
        }
        Ok(config)
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

fn duration(setting: &'static str, text: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(text)
        .map_err(|e| invalid(setting, format!("{text:?} is not a duration like 10m: {e}")))
}

fn check_writable(dir: &Path) -> Result<(), ConfigError> {
    let fail = |e: std::io::Error| {
        invalid(
            "data_dir",
            format!("{} is not a writable directory: {e}", dir.display()),
        )
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    let probe = dir.join(".kiln-write-test");
    std::fs::write(&probe, b"ok").map_err(fail)?;
    std::fs::remove_file(&probe).map_err(fail)
}

fn webhook_secrets(
    current: Option<Secret>,
    previous: Option<Secret>,
    file: Option<PathBuf>,
) -> Result<Vec<Secret>, ConfigError> {
    let mut secrets: Vec<Secret> = current.into_iter().chain(previous).collect();
    if let Some(path) = file {
        let text = read(&path)?;
        secrets.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(Secret::new),
        );
    }
    secrets.retain(|s| !s.expose().is_empty());
    if secrets.len() > 2 {
        return Err(invalid(
            "webhook_secret",
            "at most two secrets (the current one and the previous one during rotation)",
        ));
    }
    Ok(secrets)
}

fn vm_spec(file: VmSection, o: &Overrides) -> Result<VmSpec, ConfigError> {
    let defaults = VmSpec::default();
    let spec = VmSpec {
        vcpus: o.vm_vcpus.or(file.vcpus).unwrap_or(defaults.vcpus),
        memory_mib: o
            .vm_memory_mib
            .or(file.memory_mib)
            .unwrap_or(defaults.memory_mib),
        disk_mib: o.vm_disk_mib.or(file.disk_mib).unwrap_or(defaults.disk_mib),
        image: file.image.unwrap_or(defaults.image),
        ..defaults
    };
    if !(1..=64).contains(&spec.vcpus) {
        return Err(invalid(
            "vm.vcpus",
            format!("{} is not in 1..=64", spec.vcpus),
        ));
    }
    if !(128..=1024 * 1024).contains(&spec.memory_mib) {
        return Err(invalid(
            "vm.memory_mib",
            format!("{} is not in 128..=1048576", spec.memory_mib),
        ));
    }
    if !(256..=16 * 1024 * 1024).contains(&spec.disk_mib) {
        return Err(invalid(
            "vm.disk_mib",
            format!("{} is not in 256..=16777216", spec.disk_mib),
        ));
    }
    Ok(spec)
}

fn dotenv_secrets(path: &Path) -> Result<IndexMap<String, Secret>, ConfigError> {
    let iter = dotenvy::from_path_iter(path)
        .map_err(|e| invalid("secrets_file", format!("{}: {e}", path.display())))?;
    let mut out = IndexMap::new();
    for item in iter {
        let (k, v) =
            item.map_err(|e| invalid("secrets_file", format!("{}: {e}", path.display())))?;
        out.insert(k, Secret::new(v));
    }
    Ok(out)
}

fn github_settings(
    file: &GitHubSection,
    o: &Overrides,
) -> Result<Option<GitHubSettings>, ConfigError> {
    let api_url = o
        .github_api_url
        .clone()
        .or_else(|| file.api_url.clone())
        .unwrap_or_else(|| kiln_github::GitHubConfig::DEFAULT_API_URL.to_owned());
    if !(api_url.starts_with("http://") || api_url.starts_with("https://")) {
        return Err(invalid(
            "github.api_url",
            format!("{api_url:?} is not an http(s) URL"),
        ));
    }
    let token = match (
        &o.github_token,
        o.github_token_file.as_ref().or(file.token_file.as_ref()),
    ) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(path)) => Some(Secret::new(read(path)?.trim().to_owned())),
        (None, None) => None,
    };
    let app_id = o.github_app_id.or(file.app_id);
    let key_file = o
        .github_app_key_file
        .as_ref()
        .or(file.private_key_file.as_ref());
    let auth = match (token, app_id, key_file) {
        (Some(_), Some(_), _) => {
            return Err(invalid(
                "github",
                "both a token and a GitHub App are configured; choose one",
            ));
        }
        (Some(t), None, _) if t.expose().is_empty() => {
            return Err(invalid("github.token_file", "the token is empty"));
        }
        (Some(t), None, _) => GitHubAuth::Token(t),
        (None, Some(app_id), Some(path)) => {
            let pem = read(path)?;
            if !pem.contains("-----BEGIN") || !pem.contains("PRIVATE KEY-----") {
                return Err(invalid(
                    "github.private_key_file",
                    format!("{} does not hold a PEM private key", path.display()),
                ));
            }
            GitHubAuth::App {
                app_id,
                private_key_pem: Secret::new(pem),
                installation_id: o.github_installation_id.or(file.installation_id),
            }
        }
        (None, Some(_), None) => {
            return Err(invalid(
                "github.private_key_file",
                "github.app_id is set but the app's private key file is not",
            ));
        }
        (None, None, Some(_)) => {
            return Err(invalid(
                "github.app_id",
                "a private key file is set but github.app_id is not",
            ));
        }
        (None, None, None) => return Ok(None),
    };
    Ok(Some(GitHubSettings { api_url, auth }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(dir: &Path) -> Overrides {
        Overrides {
            data_dir: Some(dir.to_owned()),
            webhook_secret: Some(Secret::new("s3cret")),
            report: Some(ReportMode::None),
            ..Overrides::default()
        }
    }

    fn err(file: FileConfig, o: Overrides) -> String {
        match ServerConfig::resolve(file, o) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_example_file_is_valid() {
        let text = include_str!("../kiln.example.toml");
        let file: FileConfig = toml::from_str(text).unwrap();
        assert_eq!(file.vm.as_ref().and_then(|v| v.vcpus), Some(2));
        assert!(file.repositories.contains_key("someone/project"));
    }

    #[test]
    fn warm_pool_and_snapshot_restore() {
        let dir = tempfile::tempdir().unwrap();
        let c = ServerConfig::resolve(FileConfig::default(), base(dir.path())).unwrap();
        assert_eq!((c.warm_pool, c.snapshot_restore), (2, true));
        let file: FileConfig = toml::from_str("warm_pool = 0\nsnapshot_restore = false\n").unwrap();
        let c = ServerConfig::resolve(file, base(dir.path())).unwrap();
        assert_eq!((c.warm_pool, c.snapshot_restore), (0, false));
        let file: FileConfig = toml::from_str("warm_pool = 65\n").unwrap();
        assert!(err(file, base(dir.path())).contains("warm_pool"));
        // Flags and KILN_* variables win over the file.
        let file: FileConfig = toml::from_str("warm_pool = 3\nsnapshot_restore = true\n").unwrap();
        let overrides = Overrides {
            warm_pool: Some(0),
            snapshot_restore: Some(false),
            ..base(dir.path())
        };
        let c = ServerConfig::resolve(file, overrides).unwrap();
        assert_eq!((c.warm_pool, c.snapshot_restore), (0, false));
    }

    #[test]
    fn transport_is_read_from_the_vm_section() {
        use kiln_vm::qemu::AgentTransport;
        let dir = tempfile::tempdir().unwrap();
        let file: FileConfig = toml::from_str("[vm]\ntransport = \"vsock\"\n").unwrap();
        let c = ServerConfig::resolve(file, base(dir.path())).unwrap();
        assert_eq!(c.transport, AgentTransport::Vsock);
        let c = ServerConfig::resolve(FileConfig::default(), base(dir.path())).unwrap();
        assert_eq!(c.transport, AgentTransport::VirtioSerial, "default");
        let file: FileConfig = toml::from_str("[vm]\ntransport = \"tcp\"\n").unwrap();
        let err = ServerConfig::resolve(file, base(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("vm.transport") && err.contains("vsock"),
            "{err}"
        );
    }

    #[test]
    fn images_dir_is_read_from_the_vm_section() {
        let dir = tempfile::tempdir().unwrap();
        let file: FileConfig = toml::from_str("[vm]\nimages_dir = \"/srv/kiln-home\"\n").unwrap();
        let c = ServerConfig::resolve(file, base(dir.path())).unwrap();
        assert_eq!(c.images_dir.as_deref(), Some(Path::new("/srv/kiln-home")));
        let c = ServerConfig::resolve(FileConfig::default(), base(dir.path())).unwrap();
        assert_eq!(c.images_dir, None, "default: $KILN_HOME");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let e = toml::from_str::<FileConfig>("listen = \"x\"\nlisen = 1\n").unwrap_err();
        assert!(e.to_string().contains("unknown field `lisen`"), "{e}");
        let e = toml::from_str::<FileConfig>("[vm]\ncpus = 1\n").unwrap_err();
        assert!(e.to_string().contains("unknown field `cpus`"), "{e}");
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file: FileConfig = toml::from_str(
            "listen = \"127.0.0.1:1\"\nmax_concurrent_sessions = 3\n[vm]\nvcpus = 4\n",
        )
        .unwrap();
        let o = Overrides {
            listen: Some("127.0.0.1:2".into()),
            ..base(dir.path())
        };
        let c = ServerConfig::resolve(file, o).unwrap();
        assert_eq!(c.listen.port(), 2);
        assert_eq!(c.max_concurrent_sessions, 3);
        assert_eq!(c.vm.vcpus, 4);
        assert_eq!(c.backend, Backend::Qemu);
    }

    #[test]
    fn refuses_to_start_without_a_secret() {
        let dir = tempfile::tempdir().unwrap();
        let o = Overrides {
            webhook_secret: None,
            ..base(dir.path())
        };
        assert!(err(FileConfig::default(), o.clone()).contains("no webhook secret"));
        let o = Overrides {
            insecure_no_signature: true,
            ..o
        };
        assert!(ServerConfig::resolve(FileConfig::default(), o).is_ok());
    }

    #[test]
    fn secret_file_holds_current_and_previous() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "new\nold\n").unwrap();
        let o = Overrides {
            webhook_secret: None,
            webhook_secret_file: Some(path),
            ..base(dir.path())
        };
        let c = ServerConfig::resolve(FileConfig::default(), o).unwrap();
        let got: Vec<_> = c.webhook_secrets.iter().map(Secret::expose).collect();
        assert_eq!(got, ["new", "old"]);
        assert_eq!(
            format!("{:?}", c.webhook_secrets),
            "[<redacted>, <redacted>]"
        );
    }

    #[test]
    fn bad_values_name_their_setting() {
        let dir = tempfile::tempdir().unwrap();
        let cases: Vec<(&str, Overrides)> = vec![
            (
                "listen",
                Overrides {
                    listen: Some("nope".into()),
                    ..base(dir.path())
                },
            ),
            (
                "max_concurrent_sessions",
                Overrides {
                    max_concurrent_sessions: Some(0),
                    ..base(dir.path())
                },
            ),
            (
                "vm.memory_mib",
                Overrides {
                    vm_memory_mib: Some(1),
                    ..base(dir.path())
                },
            ),
            (
                "allowed_repositories",
                Overrides {
                    allowed_repositories: vec!["no-slash".into()],
                    ..base(dir.path())
                },
            ),
            (
                "delivery_retention",
                Overrides {
                    delivery_retention: Some("1h".into()),
                    ..base(dir.path())
                },
            ),
            (
                "report",
                Overrides {
                    report: Some(ReportMode::Checks),
                    ..base(dir.path())
                },
            ),
            (
                "github.private_key_file",
                Overrides {
                    github_app_id: Some(1),
                    ..base(dir.path())
                },
            ),
        ];
        for (setting, o) in cases {
            let e = err(FileConfig::default(), o);
            assert!(e.starts_with(setting), "{setting}: {e}");
        }
    }

    #[test]
    fn data_dir_must_be_writable() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let o = Overrides {
            data_dir: Some(file.join("sub")),
            ..base(dir.path())
        };
        assert!(err(FileConfig::default(), o).starts_with("data_dir"));
    }

    #[test]
    fn repository_patterns() {
        let exact = RepoPattern::parse("Octo/Repo").unwrap();
        assert!(exact.matches("octo/repo"));
        assert!(!exact.matches("octo/other"));
        let owner = RepoPattern::parse("octo/*").unwrap();
        assert!(owner.matches("OCTO/anything"));
        assert!(!owner.matches("other/anything"));
        assert!(RepoPattern::parse("a/b/c").is_err());
    }
}
