//! What a workflow run needs to know besides the workflow itself.

use std::path::PathBuf;

use indexmap::IndexMap;
use kiln_vm::VmSpec;
use tokio_util::sync::CancellationToken;

/// How many VMs a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VmScope {
    /// One VM for the whole run; jobs share it one after another.
    #[default]
    Run,
    /// One VM per job; independent jobs run in parallel.
    Job,
}

/// The git facts of the commit a run is for.
#[derive(Debug, Clone, Default)]
pub struct GitInfo {
    /// The local repository checkouts are made from.
    pub repo_dir: Option<PathBuf>,
    /// Full commit SHA.
    pub sha: String,
    /// Full ref, e.g. `refs/heads/main`.
    pub git_ref: String,
    /// `owner/name`.
    pub repository: String,
}

/// Everything about one workflow run except the workflow.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The workflow file, relative to the repository (for `github.workflow_ref`).
    pub workflow_path: String,
    pub event_name: String,
    /// The webhook payload (`github.event`).
    pub event: serde_json::Value,
    pub git: GitInfo,
    pub actor: String,
    pub run_id: u64,
    pub run_number: u64,
    /// `workflow_dispatch` / `workflow_call` inputs as given (strings); typed
    /// and defaulted by the runner from the workflow's declarations.
    pub inputs: IndexMap<String, String>,
    pub secrets: IndexMap<String, String>,
    pub vars: IndexMap<String, String>,
    /// Extra environment variables for every step (`--env`).
    pub env: IndexMap<String, String>,
    /// Run only this job (and the jobs it needs).
    pub job_filter: Option<String>,
    pub vm_scope: VmScope,
    pub spec: VmSpec,
    /// Cancels the run (Ctrl-C, `cancel-in-progress`).
    pub cancel: CancellationToken,
    /// Job-level `concurrency:` groups. Each run has its own by default;
    /// `kiln serve` shares one across runs, so groups span them.
    pub job_groups: std::sync::Arc<crate::concurrency::JobGroups>,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            workflow_path: String::new(),
            event_name: "push".into(),
            event: serde_json::Value::Object(Default::default()),
            git: GitInfo::default(),
            actor: "kiln".into(),
            run_id: 1,
            run_number: 1,
            inputs: IndexMap::new(),
            secrets: IndexMap::new(),
            vars: IndexMap::new(),
            env: IndexMap::new(),
            job_filter: None,
            vm_scope: VmScope::Run,
            spec: VmSpec::default(),
            cancel: CancellationToken::new(),
            job_groups: crate::concurrency::JobGroups::new(),
        }
    }
}
