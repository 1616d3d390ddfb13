//! The top level of a workflow file, and the sections shared by workflows
//! and jobs: `defaults`, `permissions`, `concurrency`.

use indexmap::IndexMap;

use crate::model::{Concurrency, Defaults, Job, Permissions, Workflow};
use crate::span::Span;
use crate::yaml::{Node, NodeKind};

use super::read::has_near_key;
use super::{Ctx, job, scope, triggers};

const KEYS: &[&str] = &[
    "name",
    "description",
    "run-name",
    "on",
    "env",
    "defaults",
    "permissions",
    "concurrency",
    "jobs",
];

pub(super) fn parse(ctx: &mut Ctx, root: &Node) -> Workflow {
    let mut wf = Workflow::default();
    let fields = ctx.fields(root, KEYS, "the workflow");
    for f in &fields {
        match f.name {
            "name" => wf.name = ctx.string(f.value),
            "description" => wf.description = ctx.string(f.value),
            "run-name" => {
                ctx.scope(f.value, &scope::RUN_NAME);
                wf.run_name = ctx.string(f.value);
            }
            "on" => wf.on = triggers::parse(ctx, f.value),
            "env" => {
                ctx.scope(f.value, &scope::WORKFLOW_ENV);
                wf.env = ctx.string_map(f.value);
            }
            "defaults" => wf.defaults = defaults(ctx, f.value),
            "permissions" => wf.permissions = permissions(ctx, f.value),
            "concurrency" => {
                ctx.scope(f.value, &scope::WORKFLOW_CONCURRENCY);
                wf.concurrency = concurrency(ctx, f.value);
            }
            "jobs" => wf.jobs = jobs(ctx, f.value),
            _ => {}
        }
    }
    if root.as_map().is_some() {
        for required in ["on", "jobs"] {
            if !fields.iter().any(|f| f.name == required) && !has_near_key(root, required) {
                ctx.error(
                    Span::point(root.span.start),
                    format!("missing required key \"{required}\""),
                );
            }
        }
    }
    wf
}

fn jobs(ctx: &mut Ctx, node: &Node) -> IndexMap<String, Job> {
    let mut jobs = IndexMap::new();
    let entries = ctx.entries(node);
    if entries.is_empty() && node.as_map().is_some() {
        ctx.error(node.span, "\"jobs\" must contain at least one job");
    }
    for field in entries {
        let job = job::parse(ctx, field.key, field.value);
        jobs.insert(field.name.to_string(), job);
    }
    jobs
}

/// `defaults: {run: {shell, working-directory}}`.
pub(super) fn defaults(ctx: &mut Ctx, node: &Node) -> Defaults {
    let mut defaults = Defaults::default();
    for f in ctx.fields(node, &["run"], "\"defaults\"") {
        for r in ctx.fields(f.value, &["shell", "working-directory"], "\"defaults.run\"") {
            let value = ctx.non_empty_string(r.value);
            match r.name {
                "shell" => defaults.run.shell = value,
                _ => defaults.run.working_directory = value,
            }
        }
    }
    defaults
}

const SCOPES_ANY: &[&str] = &[
    "actions",
    "artifact-metadata",
    "attestations",
    "checks",
    "contents",
    "deployments",
    "discussions",
    "issues",
    "packages",
    "pages",
    "pull-requests",
    "repository-projects",
    "security-events",
    "statuses",
];
const SCOPES_WRITE_OR_NONE: &[&str] = &["copilot-requests", "id-token"];
const SCOPES_READ_OR_NONE: &[&str] = &["models", "vulnerability-alerts"];

/// `permissions:` as `read-all`, `write-all` or a map of scopes to levels.
pub(super) fn permissions(ctx: &mut Ctx, node: &Node) -> Option<Permissions> {
    if let NodeKind::Scalar(..) = node.kind {
        let s = ctx.string(node)?;
        return match s.value.as_str() {
            "read-all" => Some(Permissions::ReadAll),
            "write-all" => Some(Permissions::WriteAll),
            other => {
                ctx.error(
                    node.span,
                    format!("invalid permissions \"{other}\"; expected \"read-all\", \"write-all\" or a mapping of scopes"),
                );
                None
            }
        };
    }
    let known: Vec<&str> = [SCOPES_ANY, SCOPES_WRITE_OR_NONE, SCOPES_READ_OR_NONE].concat();
    let mut scopes = IndexMap::new();
    for f in ctx.fields(node, &known, "\"permissions\"") {
        let levels: &[&str] = if SCOPES_WRITE_OR_NONE.contains(&f.name) {
            &["write", "none"]
        } else if SCOPES_READ_OR_NONE.contains(&f.name) {
            &["read", "none"]
        } else {
            &["read", "write", "none"]
        };
        let what = format!("level for \"{}\"", f.name);
        if let Some(level) = ctx.one_of(f.value, levels, &what) {
            scopes.insert(f.name.to_string(), level.value);
        }
    }
    Some(Permissions::Scopes(scopes))
}

/// `concurrency:` as a group name or `{group, cancel-in-progress, queue}`.
pub(super) fn concurrency(ctx: &mut Ctx, node: &Node) -> Option<Concurrency> {
    if let NodeKind::Scalar(..) = node.kind {
        let group = ctx.non_empty_string(node)?;
        return Some(Concurrency {
            group,
            cancel_in_progress: None,
            queue: None,
        });
    }
    let fields = ctx.fields(
        node,
        &["group", "cancel-in-progress", "queue"],
        "\"concurrency\"",
    );
    let mut group = None;
    let mut cancel_in_progress = None;
    let mut queue = None;
    for f in &fields {
        match f.name {
            "group" => group = ctx.non_empty_string(f.value),
            "cancel-in-progress" => cancel_in_progress = ctx.bool_or_expr(f.value),
            "queue" => queue = ctx.one_of(f.value, &["single", "max"], "concurrency queue"),
            _ => {}
        }
    }
    if node.as_map().is_some() && !fields.iter().any(|f| f.name == "group") {
        ctx.error(node.span, "\"concurrency\" is missing \"group\"");
    }
    Some(Concurrency {
        group: group?,
        cancel_in_progress,
        queue,
    })
}
