//! One job: either a normal job with `runs-on` and `steps`, or a call of a
//! reusable workflow with `uses`, which GitHub allows only a few keys.

use crate::model::{Environment, Job, JobSecrets, RunsOn};
use crate::span::Spanned;
use crate::yaml::{Node, NodeKind};

use super::read::{has_near_key, invalid_identifier, is_identifier};
use super::step::{self, StepKind};
use super::{Ctx, Field, container, scope, strategy, workflow};

/// Keys of a job that runs steps.
const NORMAL: &[&str] = &[
    "name",
    "needs",
    "if",
    "strategy",
    "runs-on",
    "timeout-minutes",
    "cancel-timeout-minutes",
    "continue-on-error",
    "container",
    "services",
    "env",
    "environment",
    "permissions",
    "concurrency",
    "outputs",
    "defaults",
    "steps",
    "snapshot",
];

/// Keys of a job that calls a reusable workflow.
const CALL: &[&str] = &[
    "name",
    "uses",
    "with",
    "secrets",
    "needs",
    "if",
    "permissions",
    "concurrency",
    "strategy",
];

pub(super) fn parse(ctx: &mut Ctx, key: &Node, node: &Node) -> Job {
    let id = key.as_scalar().unwrap_or_default();
    let mut job = Job {
        id: Spanned::new(id.to_string(), key.span),
        span: node.span,
        ..Job::default()
    };
    if !is_identifier(id) {
        ctx.error(key.span, invalid_identifier("job id", id));
    }
    ctx.scope(node, &scope::JOB);
    let is_call = node.get("uses").is_some();
    let all: Vec<&str> = NORMAL.iter().chain(CALL).copied().collect();
    let owner = format!("job \"{id}\"");
    let fields = ctx.fields(node, &all, &owner);
    for f in &fields {
        if is_call && !CALL.contains(&f.name) {
            ctx.error(
                f.key.span,
                format!(
                    "\"{}\" cannot be used in a job that calls a reusable workflow",
                    f.name
                ),
            );
            continue;
        }
        if !is_call && !NORMAL.contains(&f.name) {
            ctx.error(
                f.key.span,
                format!(
                    "\"{}\" is only valid in a job that calls a reusable workflow (\"uses\")",
                    f.name
                ),
            );
            continue;
        }
        field(ctx, &mut job, f);
    }
    if node.as_map().is_none() {
        return job;
    }
    if !is_call {
        if !fields.iter().any(|f| f.name == "runs-on") && !has_near_key(node, "runs-on") {
            ctx.error(key.span, format!("job \"{id}\" is missing \"runs-on\""));
        }
        match fields.iter().find(|f| f.name == "steps") {
            None if !has_near_key(node, "steps") => {
                ctx.error(key.span, format!("job \"{id}\" is missing \"steps\""));
            }
            Some(f) if job.steps.is_empty() && f.value.as_seq().is_some() => {
                ctx.error(f.value.span, format!("job \"{id}\" has no steps"));
            }
            _ => {}
        }
    }
    job
}

fn field(ctx: &mut Ctx, job: &mut Job, f: &Field) {
    let value = f.value;
    match f.name {
        "name" => job.name = ctx.string(value),
        "needs" => job.needs = ctx.strings(value).unwrap_or_default(),
        "if" => job.if_cond = ctx.condition(value, &scope::JOB_IF),
        "strategy" => {
            ctx.scope(value, &scope::STRATEGY);
            job.strategy = strategy::parse(ctx, value);
        }
        "runs-on" => job.runs_on = runs_on(ctx, value),
        "timeout-minutes" => job.timeout_minutes = ctx.positive_number(value, false),
        "cancel-timeout-minutes" => job.cancel_timeout_minutes = ctx.positive_number(value, false),
        "continue-on-error" => job.continue_on_error = ctx.bool_or_expr(value),
        "container" => job.container = container::parse(ctx, f.key, value, false),
        "services" => job.services = container::services(ctx, value),
        "env" => {
            ctx.scope(value, &scope::JOB_WITH_SECRETS);
            job.env = ctx.string_map(value);
        }
        "environment" => job.environment = environment(ctx, value),
        "permissions" => job.permissions = workflow::permissions(ctx, value),
        "concurrency" => job.concurrency = workflow::concurrency(ctx, value),
        "outputs" => {
            ctx.scope(value, &scope::RUNNER);
            job.outputs = ctx.string_map(value);
        }
        "defaults" => {
            ctx.scope(value, &scope::JOB_DEFAULTS_RUN);
            job.defaults = workflow::defaults(ctx, value);
        }
        "steps" => job.steps = step::parse_all(ctx, value, StepKind::Job),
        "snapshot" => snapshot(ctx, value),
        "uses" => job.uses = reusable_workflow(ctx, value),
        "with" => job.with = ctx.string_map(value),
        "secrets" => {
            ctx.scope(value, &scope::JOB_WITH_SECRETS);
            job.secrets = secrets(ctx, value);
        }
        _ => {}
    }
}

/// `runs-on:` as a label, a list of labels, or `{group, labels}`.
fn runs_on(ctx: &mut Ctx, node: &Node) -> Option<RunsOn> {
    let mut runs_on = RunsOn {
        span: node.span,
        ..RunsOn::default()
    };
    let declared = match &node.kind {
        NodeKind::Scalar(..) | NodeKind::Seq(_) => {
            runs_on.labels = ctx.strings(node)?;
            node.as_seq().is_none_or(|items| !items.is_empty())
        }
        NodeKind::Map(_) => {
            let fields = ctx.fields(node, &["group", "labels"], "\"runs-on\"");
            for f in &fields {
                match f.name {
                    "group" => runs_on.group = ctx.non_empty_string(f.value),
                    _ => runs_on.labels = ctx.strings(f.value).unwrap_or_default(),
                }
            }
            !fields.is_empty()
        }
    };
    if !declared {
        ctx.error(node.span, "\"runs-on\" needs at least one label or a group");
    }
    (!runs_on.labels.is_empty() || runs_on.group.is_some()).then_some(runs_on)
}

/// `environment:` as a name or `{name, url, deployment}`.
fn environment(ctx: &mut Ctx, node: &Node) -> Option<Environment> {
    if let NodeKind::Scalar(..) = node.kind {
        return Some(Environment {
            name: ctx.string(node)?,
            url: None,
            deployment: None,
        });
    }
    let fields = ctx.fields(node, &["name", "url", "deployment"], "\"environment\"");
    let (mut name, mut url, mut deployment) = (None, None, None);
    for f in &fields {
        match f.name {
            "name" => name = ctx.string(f.value),
            "url" => {
                ctx.scope(f.value, &scope::ENVIRONMENT_URL);
                url = ctx.string(f.value);
            }
            _ => deployment = ctx.bool(f.value),
        }
    }
    if node.as_map().is_some() && !fields.iter().any(|f| f.name == "name") {
        ctx.error(node.span, "\"environment\" is missing \"name\"");
    }
    Some(Environment {
        name: name?,
        url,
        deployment,
    })
}

/// `snapshot:` builds a custom runner image on GitHub-hosted larger runners;
/// kiln checks its shape and ignores it.
fn snapshot(ctx: &mut Ctx, node: &Node) {
    match &node.kind {
        NodeKind::Scalar(..) => {
            ctx.non_empty_string(node);
        }
        _ => {
            let fields = ctx.fields(node, &["image-name", "if", "version"], "\"snapshot\"");
            for f in &fields {
                match f.name {
                    "if" => {
                        ctx.condition(f.value, &scope::SNAPSHOT_IF);
                    }
                    _ => {
                        ctx.non_empty_string(f.value);
                    }
                }
            }
            if node.as_map().is_some() && !fields.iter().any(|f| f.name == "image-name") {
                ctx.error(node.span, "\"snapshot\" is missing \"image-name\"");
            }
        }
    }
    ctx.warning(
        node.span,
        "kiln ignores \"snapshot\" (custom images of GitHub-hosted runners)",
    );
}

/// `uses:` of a job: `{owner}/{repo}/.github/workflows/{file}@{ref}` or
/// `./.github/workflows/{file}`.
fn reusable_workflow(ctx: &mut Ctx, node: &Node) -> Option<Spanned<String>> {
    let uses = ctx.non_empty_string(node)?;
    let s = uses.value.as_str();
    let is_yaml = |path: &str| path.ends_with(".yml") || path.ends_with(".yaml");
    let valid = match s.strip_prefix("./") {
        Some(path) => path.starts_with(".github/workflows/") && is_yaml(path),
        None => match s.split_once('@') {
            Some((path, git_ref)) => {
                let parts: Vec<&str> = path.splitn(3, '/').collect();
                !git_ref.is_empty()
                    && parts.len() == 3
                    && parts.iter().all(|p| !p.is_empty())
                    && parts[2].starts_with(".github/workflows/")
                    && is_yaml(path)
            }
            None => false,
        },
    };
    if !valid {
        ctx.error(
            node.span,
            format!(
                "invalid reusable workflow \"{s}\": expected \"{{owner}}/{{repo}}/.github/workflows/{{file}}@{{ref}}\" or \"./.github/workflows/{{file}}\""
            ),
        );
    }
    Some(uses)
}

/// `secrets:` of a reusable workflow call: `inherit` or a mapping.
fn secrets(ctx: &mut Ctx, node: &Node) -> Option<JobSecrets> {
    if let NodeKind::Scalar(..) = node.kind {
        let s = ctx.string(node)?;
        if s.value == "inherit" {
            return Some(JobSecrets::Inherit);
        }
        ctx.error(node.span, "expected \"inherit\" or a mapping of secrets");
        return None;
    }
    Some(JobSecrets::Map(ctx.string_map(node)))
}

#[cfg(test)]
mod tests {
    use crate::model::{BoolOrExpr, JobSecrets, NumberOrExpr};
    use crate::parse_workflow;

    #[test]
    fn normal_job_fields() {
        let (wf, d) = parse_workflow(
            "on: push\njobs:\n  build:\n    runs-on: ${{ matrix.os }}\n    timeout-minutes: ${{ inputs.t }}\n    continue-on-error: true\n    environment: prod\n    outputs:\n      n: 1\n    steps:\n      - run: echo\n",
        );
        assert!(d.is_empty(), "{d:?}");
        let job = &wf.jobs["build"];
        assert_eq!(job.id.value, "build");
        assert_eq!(
            job.runs_on.as_ref().unwrap().labels[0].value,
            "${{ matrix.os }}"
        );
        assert!(matches!(job.timeout_minutes, Some(NumberOrExpr::Expr(_))));
        assert_eq!(job.continue_on_error, Some(BoolOrExpr::Bool(true)));
        assert_eq!(job.environment.as_ref().unwrap().name.value, "prod");
        assert_eq!(job.outputs["n"].value, "1");
        assert_eq!(job.steps.len(), 1);
    }

    #[test]
    fn reusable_workflow_call() {
        let (wf, d) = parse_workflow(
            "on: push\njobs:\n  call:\n    uses: o/r/.github/workflows/w.yml@v1\n    with:\n      flag: true\n    secrets: inherit\n",
        );
        assert!(d.is_empty(), "{d:?}");
        let job = &wf.jobs["call"];
        assert_eq!(
            job.uses.as_ref().unwrap().value,
            "o/r/.github/workflows/w.yml@v1"
        );
        assert_eq!(job.with["flag"].value, "true");
        assert_eq!(job.secrets, Some(JobSecrets::Inherit));
        assert!(job.runs_on.is_none() && job.steps.is_empty());
    }

    #[test]
    fn runs_on_group_and_labels() {
        let (wf, d) = parse_workflow(
            "on: push\njobs:\n  a:\n    runs-on:\n      group: big\n      labels: gpu\n    steps:\n      - run: echo\n",
        );
        assert!(d.is_empty(), "{d:?}");
        let runs_on = wf.jobs["a"].runs_on.as_ref().unwrap();
        assert_eq!(runs_on.group.as_ref().unwrap().value, "big");
        assert_eq!(runs_on.labels[0].value, "gpu");
    }

    #[test]
    fn a_typo_of_a_required_key_is_reported_once() {
        let (_, d) = parse_workflow(
            "on: push\njobs:\n  a:\n    runs_on: x\n    steps:\n      - run: echo\n",
        );
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].message.contains("did you mean \"runs-on\""));
    }
}
