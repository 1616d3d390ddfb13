//! The `github` and `inputs` contexts a run's `concurrency:` is evaluated
//! with, before the run starts (the runner builds the full contexts for
//! steps itself).

use kiln_store::RunRecord;
use kiln_workflow::Workflow;
use serde_json::{Value, json};

use crate::dispatch::RunSpec;

/// The `github` context fields known before a run starts.
pub fn github(run: &RunRecord, spec: &RunSpec, event: &Value) -> Value {
    let (ref_name, ref_type) = match run.git_ref.strip_prefix("refs/tags/") {
        Some(tag) => (tag, "tag"),
        None => (
            run.git_ref
                .strip_prefix("refs/heads/")
                .unwrap_or(&run.git_ref),
            "branch",
        ),
    };
    let pr = event.get("pull_request");
    let pr_ref = |which: &str| {
        pr.and_then(|p| p.pointer(&format!("/{which}/ref")))
            .cloned()
            .unwrap_or(json!(""))
    };
    let owner = run.repository.split('/').next().unwrap_or_default();
    json!({
        "repository": run.repository,
        "repository_owner": owner,
        "event_name": run.event,
        "event": event,
        "ref": run.git_ref,
        "ref_name": ref_name,
        "ref_type": ref_type,
        "sha": run.sha,
        "head_ref": pr_ref("head"),
        "base_ref": pr_ref("base"),
        "workflow": run.workflow_name,
        "workflow_ref": format!("{}/{}@{}", run.repository, run.workflow_path, run.git_ref),
        "run_id": run.id.to_string(),
        "run_number": run.id.to_string(),
        "run_attempt": "1",
        "actor": spec.actor,
        "triggering_actor": spec.actor,
        "server_url": "https://github.com",
        "api_url": "https://api.github.com",
    })
}

/// The `inputs` context: the given inputs over the declared defaults.
pub fn inputs(workflow: &Workflow, run: &RunRecord, spec: &RunSpec) -> Value {
    let mut out = serde_json::Map::new();
    if let Some(on) = workflow.on.events.get(&run.event) {
        for (name, input) in &on.inputs {
            if let Some(default) = &input.default {
                out.insert(name.clone(), default.clone());
            }
        }
    }
    for (k, v) in &spec.inputs {
        out.insert(k.clone(), Value::String(v.clone()));
    }
    Value::Object(out)
}
