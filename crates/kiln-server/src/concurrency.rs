//! Workflow-level `concurrency:` groups, with GitHub's rules:
//!
//! - At most one run of a group is in progress at a time.
//! - A new run waits (pending) while another run of its group is in
//!   progress. Only one run may be pending: a newer one cancels the older
//!   pending run (unless `queue: max`, which keeps them all in order).
//! - With `cancel-in-progress: true`, a new run cancels the run in progress
//!   (and any pending ones); it starts once the cancelled run has finished,
//!   so two runs of a group never overlap.
//!
//! [`Groups`] is the bookkeeping (pure, shared with job-level groups in
//! `kiln_runner::concurrency`); [`evaluate`] computes a run's group from the
//! workflow with the `github` and `inputs` contexts. Job-level groups
//! (`jobs.<id>.concurrency`) are the runner's: the server gives every run
//! the same `JobGroups` (`Shared::job_groups`), so they span runs.

use kiln_expr::{Contexts, EvalContext, Value};
use kiln_workflow::Workflow;

pub use kiln_runner::concurrency::{Admission, Concurrency, Groups};

/// Evaluates `workflow`'s `concurrency:` for a run. `None` if it has none
/// (or the group evaluates to an empty string, which GitHub treats as none).
pub fn evaluate(
    workflow: &Workflow,
    github: &serde_json::Value,
    inputs: &serde_json::Value,
) -> Result<Option<Concurrency>, String> {
    let Some(c) = &workflow.concurrency else {
        return Ok(None);
    };
    let mut contexts = Contexts::new();
    contexts.insert("github", Value::from(github.clone()));
    contexts.insert("inputs", Value::from(inputs.clone()));
    let ctx = EvalContext::new(&contexts);
    kiln_runner::concurrency::evaluate(c, &ctx, "concurrency")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn group_is_evaluated_with_github_and_inputs() {
        let src = "on: push\nconcurrency:\n  group: ${{ github.workflow }}-${{ github.ref }}-${{ inputs.env }}\n  cancel-in-progress: ${{ github.ref != 'refs/heads/main' }}\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: true\n";
        let (wf, diags) = kiln_workflow::parse_workflow(src);
        assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
        let github = json!({"workflow": "CI", "ref": "refs/heads/dev"});
        let c = evaluate(&wf, &github, &json!({"env": "prod"}))
            .unwrap()
            .unwrap();
        assert_eq!(c.group, "CI-refs/heads/dev-prod");
        assert!(c.cancel_in_progress);
        let main = json!({"workflow": "CI", "ref": "refs/heads/main"});
        let c = evaluate(&wf, &main, &json!({})).unwrap().unwrap();
        assert!(!c.cancel_in_progress);
    }
}
