//! The typed workflow model. Every field a user can get wrong keeps its span.
//!
//! Scalars that GitHub converts to strings (env values, `with:` inputs, job
//! outputs) are stored as strings. Fields that accept either a literal or an
//! expression (`continue-on-error: ${{ matrix.experimental }}`) use
//! [`BoolOrExpr`] / [`NumberOrExpr`]; the runner evaluates them.

use indexmap::IndexMap;
use serde::Serialize;

use crate::span::{Span, Spanned};

/// A mapping of names to (string) values: `env`, `with`, `outputs`.
pub type StringMap = IndexMap<String, Spanned<String>>;

/// A parsed workflow file.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Workflow {
    pub name: Option<Spanned<String>>,
    /// `description:` (documentation for reusable workflows).
    pub description: Option<Spanned<String>>,
    pub run_name: Option<Spanned<String>>,
    pub on: Triggers,
    pub env: StringMap,
    pub defaults: Defaults,
    pub permissions: Option<Permissions>,
    pub concurrency: Option<Concurrency>,
    /// Jobs in the file's order.
    pub jobs: IndexMap<String, Job>,
}

/// The events a workflow runs on, in the file's order.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Triggers {
    pub events: IndexMap<String, EventConfig>,
    #[serde(skip)]
    pub span: Span,
}

/// The configuration of one event under `on:`. One struct serves every event;
/// the parser only accepts the keys that event documents (e.g. `tags` only
/// for `push`, `inputs` only for `workflow_dispatch`/`workflow_call`).
/// A `None` filter means "not given"; GitHub treats that differently from an
/// empty list.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct EventConfig {
    pub types: Option<Vec<Spanned<String>>>,
    pub branches: Option<Vec<Spanned<String>>>,
    pub branches_ignore: Option<Vec<Spanned<String>>>,
    pub tags: Option<Vec<Spanned<String>>>,
    pub tags_ignore: Option<Vec<Spanned<String>>>,
    pub paths: Option<Vec<Spanned<String>>>,
    pub paths_ignore: Option<Vec<Spanned<String>>>,
    /// `workflow_run.workflows`.
    pub workflows: Option<Vec<Spanned<String>>>,
    /// `schedule: - cron: '...'`.
    pub schedule: Vec<Spanned<String>>,
    /// The `timezone:` of each `schedule` entry (same length and order as
    /// `schedule`); `None` means UTC.
    pub schedule_timezones: Vec<Option<Spanned<String>>>,
    /// `image_version.names`.
    pub names: Option<Vec<Spanned<String>>>,
    /// `image_version.versions`.
    pub versions: Option<Vec<Spanned<String>>>,
    /// `workflow_dispatch.inputs` / `workflow_call.inputs`.
    pub inputs: IndexMap<String, Input>,
    /// `workflow_call.outputs`.
    pub outputs: IndexMap<String, CallOutput>,
    /// `workflow_call.secrets`.
    pub secrets: IndexMap<String, CallSecret>,
    #[serde(skip)]
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    #[default]
    String,
    Boolean,
    Number,
    Choice,
    Environment,
}

/// A `workflow_dispatch` or `workflow_call` input.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Input {
    pub description: Option<String>,
    pub required: bool,
    /// The default as JSON (a string, bool or number as written).
    pub default: Option<serde_json::Value>,
    pub input_type: InputType,
    /// `choice` options.
    pub options: Vec<String>,
    #[serde(skip)]
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct CallOutput {
    pub description: Option<String>,
    pub value: Spanned<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct CallSecret {
    pub description: Option<String>,
    pub required: bool,
}

/// `defaults:` (workflow or job level).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Defaults {
    pub run: RunDefaults,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct RunDefaults {
    pub shell: Option<Spanned<String>>,
    pub working_directory: Option<Spanned<String>>,
}

/// `permissions:` either a shorthand (`read-all`, `write-all`, `{}`) or a map.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Permissions {
    ReadAll,
    WriteAll,
    /// Scope → `read` | `write` | `none`; empty means no permissions.
    Scopes(IndexMap<String, String>),
}

/// `concurrency:` as a bare group name or a map.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Concurrency {
    pub group: Spanned<String>,
    pub cancel_in_progress: Option<BoolOrExpr>,
    /// `queue: single | max`; `None` means GitHub's default (`single`).
    pub queue: Option<Spanned<String>>,
}

/// A boolean field that may also be an expression.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum BoolOrExpr {
    Bool(bool),
    /// The full text, including `${{ }}`.
    Expr(Spanned<String>),
}

/// A numeric field that may also be an expression.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum NumberOrExpr {
    Number(f64),
    Expr(Spanned<String>),
}

/// A job: either a normal job with steps or a call of a reusable workflow
/// (`uses:`). The parser enforces which fields go with which form.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Job {
    pub id: Spanned<String>,
    pub name: Option<Spanned<String>>,
    pub needs: Vec<Spanned<String>>,
    pub if_cond: Option<Spanned<String>>,
    pub runs_on: Option<RunsOn>,
    pub environment: Option<Environment>,
    pub outputs: StringMap,
    pub env: StringMap,
    pub defaults: Defaults,
    pub permissions: Option<Permissions>,
    pub concurrency: Option<Concurrency>,
    pub timeout_minutes: Option<NumberOrExpr>,
    /// How long cancellation may take before the job is killed.
    pub cancel_timeout_minutes: Option<NumberOrExpr>,
    pub continue_on_error: Option<BoolOrExpr>,
    pub strategy: Option<Strategy>,
    pub container: Option<Container>,
    pub services: IndexMap<String, Container>,
    /// A reusable workflow: `owner/repo/.github/workflows/x.yml@ref` or `./…`.
    pub uses: Option<Spanned<String>>,
    pub with: StringMap,
    pub secrets: Option<JobSecrets>,
    pub steps: Vec<Step>,
    #[serde(skip)]
    pub span: Span,
}

/// `runs-on:` labels (a string, a list, or `{group, labels}`).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct RunsOn {
    pub labels: Vec<Spanned<String>>,
    pub group: Option<Spanned<String>>,
    #[serde(skip)]
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Environment {
    pub name: Spanned<String>,
    pub url: Option<Spanned<String>>,
    /// `deployment: false` uses the environment without creating a deployment.
    pub deployment: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum JobSecrets {
    Inherit,
    Map(StringMap),
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Strategy {
    pub matrix: Option<Matrix>,
    pub fail_fast: Option<BoolOrExpr>,
    pub max_parallel: Option<NumberOrExpr>,
    #[serde(skip)]
    pub span: Span,
}

/// `strategy.matrix`: either one expression producing the whole matrix, or
/// dimensions plus `include`/`exclude`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Matrix {
    Expr(Spanned<String>),
    Dimensions {
        /// Dimension name → values, in the file's order.
        dimensions: IndexMap<String, MatrixValues>,
        include: Option<MatrixValues>,
        exclude: Option<MatrixValues>,
        #[serde(skip)]
        span: Span,
    },
}

/// A list of matrix values, or an expression that yields one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum MatrixValues {
    List(Vec<serde_json::Value>),
    Expr(Spanned<String>),
}

/// `container:` or one `services:` entry.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Container {
    pub image: Spanned<String>,
    pub credentials: StringMap,
    pub env: StringMap,
    pub ports: Vec<Spanned<String>>,
    pub volumes: Vec<Spanned<String>>,
    pub options: Option<Spanned<String>>,
    /// Service containers only: overrides the image's `ENTRYPOINT`.
    pub entrypoint: Option<Spanned<String>>,
    /// Service containers only: overrides the image's `CMD`.
    pub command: Option<Spanned<String>>,
    #[serde(skip)]
    pub span: Span,
}

/// A step of a job or of a composite action.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Step {
    pub id: Option<Spanned<String>>,
    pub name: Option<Spanned<String>>,
    pub if_cond: Option<Spanned<String>>,
    pub uses: Option<Spanned<String>>,
    pub run: Option<Spanned<String>>,
    pub shell: Option<Spanned<String>>,
    pub with: StringMap,
    pub env: StringMap,
    pub working_directory: Option<Spanned<String>>,
    pub continue_on_error: Option<BoolOrExpr>,
    pub timeout_minutes: Option<NumberOrExpr>,
    #[serde(skip)]
    pub span: Span,
}

/// `action.yml` / `action.yaml` metadata.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Action {
    pub name: Option<Spanned<String>>,
    pub description: Option<Spanned<String>>,
    pub author: Option<Spanned<String>>,
    pub inputs: IndexMap<String, ActionInput>,
    pub outputs: IndexMap<String, ActionOutput>,
    pub runs: Runs,
    pub branding: Option<Branding>,
}

/// Marketplace badge of an action (no effect on how it runs).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Branding {
    pub icon: Option<Spanned<String>>,
    pub color: Option<Spanned<String>>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ActionInput {
    pub description: Option<String>,
    pub required: bool,
    pub default: Option<Spanned<String>>,
    pub deprecation_message: Option<String>,
    #[serde(skip)]
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ActionOutput {
    pub description: Option<String>,
    /// Required for composite actions, absent for node/docker ones.
    pub value: Option<Spanned<String>>,
}

/// `runs:` of an action.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Runs {
    Composite {
        steps: Vec<Step>,
    },
    Node {
        /// `node16`, `node20`, …
        using: Spanned<String>,
        main: Spanned<String>,
        pre: Option<Spanned<String>>,
        pre_if: Option<Spanned<String>>,
        post: Option<Spanned<String>>,
        post_if: Option<Spanned<String>>,
    },
    Docker {
        image: Spanned<String>,
        entrypoint: Option<Spanned<String>>,
        pre_entrypoint: Option<Spanned<String>>,
        pre_if: Option<Spanned<String>>,
        post_entrypoint: Option<Spanned<String>>,
        post_if: Option<Spanned<String>>,
        args: Vec<Spanned<String>>,
        env: StringMap,
    },
}
