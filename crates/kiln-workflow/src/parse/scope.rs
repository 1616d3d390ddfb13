//! Which contexts and functions an expression may use, by where it is.
//! GitHub rejects the workflow otherwise: `matrix` in a job's `if`,
//! `secrets` in a step's `if`, `success()` in a `run:` are all errors.
//!
//! Source: the "Context availability" table of GitHub's contexts reference
//! and GitHub's workflow and action schemas (actions/languageservices
//! `workflow-v1.0.json`, actions/runner `action_yaml.json`); where they
//! differ, the wider set is used so a valid file is never rejected. A scope set on a node applies
//! to everything below it unless a descendant sets its own.

/// What expressions at one place may refer to.
#[derive(Debug)]
pub(crate) struct Scope {
    pub contexts: &'static [&'static str],
    /// `success()`, `failure()`, `always()`, `cancelled()`.
    pub status: bool,
    pub hash_files: bool,
}

const fn scope(contexts: &'static [&'static str]) -> Scope {
    Scope {
        contexts,
        status: false,
        hash_files: false,
    }
}

const fn with_hash_files(contexts: &'static [&'static str]) -> Scope {
    Scope {
        contexts,
        status: false,
        hash_files: true,
    }
}

const fn condition(contexts: &'static [&'static str], hash_files: bool) -> Scope {
    Scope {
        contexts,
        status: true,
        hash_files,
    }
}

/// Anything a workflow or action can name: used where no narrower scope is
/// set, so only names that exist nowhere are rejected.
pub(crate) const ANY: Scope = condition(
    &[
        "github", "env", "vars", "job", "jobs", "steps", "runner", "secrets", "strategy", "matrix",
        "needs", "inputs",
    ],
    true,
);

// Workflow level.
pub(crate) const RUN_NAME: Scope = scope(&["github", "inputs", "vars"]);
pub(crate) const WORKFLOW_ENV: Scope = scope(&["github", "inputs", "vars", "secrets"]);
pub(crate) const WORKFLOW_CONCURRENCY: Scope = scope(&["github", "inputs", "vars"]);
pub(crate) const CALL_INPUT_DEFAULT: Scope = scope(&["github", "inputs", "vars"]);
pub(crate) const CALL_OUTPUT: Scope = scope(&["github", "inputs", "vars", "jobs"]);

// Job level.
const JOB_CONTEXTS: &[&str] = &["github", "inputs", "vars", "needs", "strategy", "matrix"];
pub(crate) const JOB_IF: Scope = condition(&["github", "inputs", "vars", "needs"], false);
pub(crate) const SNAPSHOT_IF: Scope = condition(JOB_CONTEXTS, false);
pub(crate) const STRATEGY: Scope = scope(&["github", "inputs", "vars", "needs"]);
/// `name`, `runs-on`, `timeout-minutes`, `container`, `services`, `with`, …
pub(crate) const JOB: Scope = scope(JOB_CONTEXTS);
pub(crate) const JOB_WITH_SECRETS: Scope = scope(&[
    "github", "inputs", "vars", "needs", "strategy", "matrix", "secrets",
]);
pub(crate) const CREDENTIALS: Scope = scope(&[
    "github", "inputs", "vars", "needs", "strategy", "matrix", "secrets", "env",
]);
pub(crate) const JOB_DEFAULTS_RUN: Scope = scope(&[
    "github", "inputs", "vars", "strategy", "matrix", "needs", "env",
]);
/// Job `outputs`, container and service `env`.
pub(crate) const RUNNER: Scope = scope(&[
    "github", "inputs", "vars", "needs", "strategy", "matrix", "secrets", "steps", "job", "runner",
    "env",
]);
pub(crate) const ENVIRONMENT_URL: Scope = scope(&[
    "github", "inputs", "vars", "needs", "strategy", "matrix", "steps", "job", "runner", "env",
]);

// Step level.
pub(crate) const STEP: Scope = with_hash_files(&[
    "github", "inputs", "vars", "needs", "strategy", "matrix", "secrets", "steps", "job", "runner",
    "env",
]);
pub(crate) const STEP_IF: Scope = condition(
    &[
        "github", "inputs", "vars", "needs", "strategy", "matrix", "steps", "job", "runner", "env",
    ],
    true,
);

// Actions.
const COMPOSITE_CONTEXTS: &[&str] = &[
    "github", "inputs", "strategy", "matrix", "steps", "job", "runner", "env",
];
pub(crate) const COMPOSITE_STEP: Scope = with_hash_files(COMPOSITE_CONTEXTS);
pub(crate) const COMPOSITE_STEP_IF: Scope = condition(COMPOSITE_CONTEXTS, true);
pub(crate) const ACTION_OUTPUT: Scope = scope(COMPOSITE_CONTEXTS);
pub(crate) const ACTION_INPUT_DEFAULT: Scope =
    with_hash_files(&["github", "strategy", "matrix", "job", "runner"]);
/// `args` and `env` of a docker action.
pub(crate) const DOCKER_RUNS: Scope = scope(&["inputs"]);
pub(crate) const RUNS_IF: Scope = condition(
    &[
        "runner", "github", "job", "strategy", "matrix", "env", "inputs",
    ],
    true,
);
