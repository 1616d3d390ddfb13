//! Building the `github`, `runner`, `inputs` … contexts and the default
//! environment variables every step sees.

use indexmap::IndexMap;
use kiln_vm::GuestLayout;
use kiln_workflow::{InputType, Workflow};
use serde_json::{Value as Json, json};

use crate::config::RunConfig;

/// Paths of one job instance inside the VM.
#[derive(Debug, Clone)]
pub struct JobDirs {
    /// `GITHUB_WORKSPACE`.
    pub workspace: String,
    /// `RUNNER_TEMP`.
    pub temp: String,
    /// Where the per-step environment files live.
    pub files: String,
    pub tool_cache: String,
    pub home: String,
}

impl JobDirs {
    /// Fresh directories for the `n`th job instance of the run, so jobs that
    /// share a VM never see each other's workspace.
    pub fn new(layout: &GuestLayout, n: usize, repo_name: &str) -> Self {
        let temp = format!("{}/job-{n}", layout.temp);
        JobDirs {
            workspace: format!("{}/job-{n}/{repo_name}", layout.workspace_root),
            files: format!("{temp}/_runner_file_commands"),
            temp,
            tool_cache: layout.tool_cache.clone(),
            home: layout.home.clone(),
        }
    }
}

/// The repository's short name (`kiln` of `owner/kiln`).
pub fn repo_name(repository: &str) -> &str {
    repository.rsplit('/').next().unwrap_or(repository)
}

fn ref_name_and_type(git_ref: &str) -> (&str, &str) {
    if let Some(tag) = git_ref.strip_prefix("refs/tags/") {
        (tag, "tag")
    } else if let Some(branch) = git_ref.strip_prefix("refs/heads/") {
        (branch, "branch")
    } else {
        (git_ref, "branch")
    }
}

/// The `github` context of one job.
pub fn github(cfg: &RunConfig, workflow: &Workflow, job_id: &str, dirs: &JobDirs) -> Json {
    let (ref_name, ref_type) = ref_name_and_type(&cfg.git.git_ref);
    let repository = &cfg.git.repository;
    let owner = repository.split('/').next().unwrap_or_default();
    let event = &cfg.event;
    let pr = event.get("pull_request");
    let head_ref = pr
        .and_then(|p| p.pointer("/head/ref"))
        .cloned()
        .unwrap_or(json!(""));
    let base_ref = pr
        .and_then(|p| p.pointer("/base/ref"))
        .cloned()
        .unwrap_or(json!(""));
    let name = workflow
        .name
        .as_ref()
        .map(|n| n.value.clone())
        .unwrap_or_else(|| cfg.workflow_path.clone());
    json!({
        "action": "",
        "action_path": "",
        "actor": cfg.actor,
        "triggering_actor": cfg.actor,
        "api_url": "https://api.github.com",
        "base_ref": base_ref,
        "env": format!("{}/set_env", dirs.files),
        "event": event,
        "event_name": cfg.event_name,
        "event_path": format!("{}/event.json", dirs.temp),
        "graphql_url": "https://api.github.com/graphql",
        "head_ref": head_ref,
        "job": job_id,
        "path": format!("{}/add_path", dirs.files),
        "ref": cfg.git.git_ref,
        "ref_name": ref_name,
        "ref_protected": false,
        "ref_type": ref_type,
        "repository": repository,
        "repository_owner": owner,
        "retention_days": "90",
        "run_attempt": "1",
        "run_id": cfg.run_id.to_string(),
        "run_number": cfg.run_number.to_string(),
        "server_url": "https://github.com",
        "sha": cfg.git.sha,
        "token": "",
        "workflow": name,
        "workflow_ref": format!("{repository}/{}@{}", cfg.workflow_path, cfg.git.git_ref),
        "workflow_sha": cfg.git.sha,
        "workspace": dirs.workspace,
    })
}

/// The `runner` context.
pub fn runner(dirs: &JobDirs) -> Json {
    json!({
        "name": "kiln",
        "os": "Linux",
        "arch": "X64",
        "temp": dirs.temp,
        "tool_cache": dirs.tool_cache,
        "environment": "self-hosted",
        "debug": "",
    })
}

/// The environment variables GitHub sets for every step, from the `github`
/// and `runner` contexts. Steps cannot override these through `GITHUB_ENV`.
pub fn default_env(github: &Json, runner: &Json, dirs: &JobDirs) -> IndexMap<String, String> {
    let s = |v: &Json, key: &str| match v.get(key) {
        Some(Json::String(s)) => s.clone(),
        Some(Json::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let mut env = IndexMap::new();
    env.insert("CI".into(), "true".into());
    env.insert("HOME".into(), dirs.home.clone());
    env.insert("GITHUB_ACTIONS".into(), "true".into());
    for key in [
        "actor",
        "api_url",
        "base_ref",
        "event_name",
        "event_path",
        "graphql_url",
        "head_ref",
        "job",
        "ref",
        "ref_name",
        "ref_protected",
        "ref_type",
        "repository",
        "repository_owner",
        "retention_days",
        "run_attempt",
        "run_id",
        "run_number",
        "server_url",
        "sha",
        "triggering_actor",
        "workflow",
        "workflow_ref",
        "workflow_sha",
        "workspace",
    ] {
        env.insert(format!("GITHUB_{}", key.to_uppercase()), s(github, key));
    }
    for key in ["name", "os", "arch", "temp", "tool_cache", "environment"] {
        env.insert(format!("RUNNER_{}", key.to_uppercase()), s(runner, key));
    }
    env
}

/// Whether a variable is one of the defaults that `GITHUB_ENV` cannot change.
pub fn is_protected(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    (upper.starts_with("GITHUB_") || upper.starts_with("RUNNER_")) && upper != "GITHUB_TOKEN"
}

/// The `inputs` context for `workflow_dispatch`: the given values, typed by
/// the workflow's declarations, with defaults filled in. Errors name the
/// input and the reason.
pub fn inputs(workflow: &Workflow, cfg: &RunConfig) -> Result<Json, String> {
    let declared = workflow
        .on
        .events
        .get(cfg.event_name.as_str())
        .map(|e| &e.inputs);
    let mut out = serde_json::Map::new();
    if let Some(declared) = declared {
        for (name, input) in declared {
            let given = cfg.inputs.get(name);
            let value = match (given, &input.default) {
                (Some(text), _) => typed_input(name, text, input.input_type, &input.options)?,
                (None, Some(default)) => default.clone(),
                (None, None) if input.required => {
                    return Err(format!("input \"{name}\" is required"));
                }
                (None, None) => match input.input_type {
                    InputType::Boolean => Json::Bool(false),
                    _ => Json::String(String::new()),
                },
            };
            out.insert(name.clone(), value);
        }
        for name in cfg.inputs.keys() {
            if !declared.contains_key(name) {
                return Err(format!(
                    "unexpected input \"{name}\": the workflow declares {}",
                    if declared.is_empty() {
                        "no inputs".to_string()
                    } else {
                        declared.keys().cloned().collect::<Vec<_>>().join(", ")
                    }
                ));
            }
        }
    } else {
        for (name, value) in &cfg.inputs {
            out.insert(name.clone(), Json::String(value.clone()));
        }
    }
    Ok(Json::Object(out))
}

fn typed_input(name: &str, text: &str, ty: InputType, options: &[String]) -> Result<Json, String> {
    match ty {
        InputType::Boolean => match text {
            "true" => Ok(Json::Bool(true)),
            "false" => Ok(Json::Bool(false)),
            _ => Err(format!(
                "input \"{name}\" is a boolean: expected true or false, got \"{text}\""
            )),
        },
        InputType::Number => text
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Json::Number)
            .ok_or_else(|| format!("input \"{name}\" is a number, got \"{text}\"")),
        InputType::Choice if !options.iter().any(|o| o == text) => Err(format!(
            "input \"{name}\" must be one of {}, got \"{text}\"",
            options.join(", ")
        )),
        _ => Ok(Json::String(text.to_string())),
    }
}
