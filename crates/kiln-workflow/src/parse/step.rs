//! Steps of a job or of a composite action. A step either runs a command
//! (`run`) or an action (`uses`); some keys only make sense for one of them.

use crate::model::Step;
use crate::span::Spanned;
use crate::yaml::Node;

use super::read::{invalid_identifier, is_identifier};
use super::{Ctx, Field, scope};

/// Where the steps are: composite actions allow fewer keys and need `shell`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum StepKind {
    Job,
    Composite,
}

const JOB_KEYS: &[&str] = &[
    "id",
    "name",
    "if",
    "uses",
    "run",
    "shell",
    "with",
    "env",
    "working-directory",
    "continue-on-error",
    "timeout-minutes",
    "background",
    "wait",
    "wait-all",
    "cancel",
    "parallel",
];

const COMPOSITE_KEYS: &[&str] = &[
    "id",
    "name",
    "if",
    "uses",
    "run",
    "shell",
    "with",
    "env",
    "working-directory",
    "continue-on-error",
];

/// Documented GitHub keys for background steps, which kiln cannot run yet.
const UNSUPPORTED: &[&str] = &["background", "wait", "wait-all", "cancel", "parallel"];

pub(super) fn parse_all(ctx: &mut Ctx, node: &Node, kind: StepKind) -> Vec<Step> {
    let Some(items) = node.as_seq() else {
        ctx.mismatch(node, "a sequence of steps");
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| parse(ctx, item, kind))
        .collect()
}

fn parse(ctx: &mut Ctx, node: &Node, kind: StepKind) -> Option<Step> {
    let (keys, owner) = match kind {
        StepKind::Job => (JOB_KEYS, "a step"),
        StepKind::Composite => (COMPOSITE_KEYS, "a composite action step"),
    };
    let fields = ctx.fields(node, keys, owner);
    node.as_map()?;
    let (body, condition) = match kind {
        StepKind::Job => (&scope::STEP, &scope::STEP_IF),
        StepKind::Composite => (&scope::COMPOSITE_STEP, &scope::COMPOSITE_STEP_IF),
    };
    ctx.scope(node, body);
    let mut step = Step {
        span: node.span,
        ..Step::default()
    };
    let mut unsupported = false;
    for f in &fields {
        match f.name {
            "id" => step.id = step_id(ctx, f.value),
            "name" => step.name = ctx.string(f.value),
            "if" => step.if_cond = ctx.condition(f.value, condition),
            "uses" => step.uses = action_ref(ctx, f.value),
            "run" => step.run = ctx.string(f.value),
            "shell" => step.shell = ctx.non_empty_string(f.value),
            "with" => step.with = ctx.string_map(f.value),
            "env" => step.env = ctx.string_map(f.value),
            "working-directory" => step.working_directory = ctx.non_empty_string(f.value),
            "continue-on-error" => step.continue_on_error = ctx.bool_or_expr(f.value),
            "timeout-minutes" => step.timeout_minutes = ctx.positive_number(f.value, true),
            name if UNSUPPORTED.contains(&name) => {
                unsupported = true;
                ctx.error(
                    f.key.span,
                    format!("\"{name}\" (background steps) is not supported by kiln yet"),
                );
            }
            _ => {}
        }
    }
    if !unsupported {
        check_kind(ctx, node, &fields, kind);
    }
    Some(step)
}

/// A step runs exactly one of `run` and `uses`, with the keys that fit it.
fn check_kind(ctx: &mut Ctx, node: &Node, fields: &[Field], kind: StepKind) {
    let find = |name: &str| fields.iter().find(|f| f.name == name);
    match (find("run"), find("uses")) {
        (Some(run), Some(uses)) => {
            let later = if run.key.span.start > uses.key.span.start {
                run
            } else {
                uses
            };
            ctx.error(
                later.key.span,
                "a step cannot have both \"run\" and \"uses\"",
            );
        }
        (None, None) => ctx.error(node.span, "a step needs \"run\" or \"uses\""),
        (Some(_), None) => {
            if let Some(with) = find("with") {
                ctx.error(with.key.span, "\"with\" is only valid on a \"uses\" step");
            }
            if kind == StepKind::Composite && find("shell").is_none() {
                ctx.error(
                    node.span,
                    "a \"run\" step in a composite action needs \"shell\"",
                );
            }
        }
        (None, Some(_)) => {
            for name in ["shell", "working-directory"] {
                if let Some(f) = find(name) {
                    ctx.error(
                        f.key.span,
                        format!("\"{name}\" is only valid on a \"run\" step"),
                    );
                }
            }
        }
    }
}

fn step_id(ctx: &mut Ctx, node: &Node) -> Option<Spanned<String>> {
    let id = ctx.non_empty_string(node)?;
    if !is_identifier(&id.value) {
        ctx.error(node.span, invalid_identifier("step id", &id.value));
    } else if id.value.starts_with("__") {
        ctx.error(
            node.span,
            format!(
                "invalid step id \"{}\": ids starting with \"__\" are reserved",
                id.value
            ),
        );
    }
    Some(id)
}

/// `uses:` of a step: `{owner}/{repo}[/{path}]@{ref}`, `./{path}` or
/// `docker://{image}`.
fn action_ref(ctx: &mut Ctx, node: &Node) -> Option<Spanned<String>> {
    let uses = ctx.non_empty_string(node)?;
    let s = uses.value.as_str();
    let valid = if let Some(image) = s.strip_prefix("docker://") {
        !image.is_empty()
    } else if s.starts_with("./") {
        true
    } else {
        match s.split_once('@') {
            Some((path, git_ref)) => {
                let mut parts = path.split('/');
                let owner = parts.next().unwrap_or_default();
                let repo = parts.next().unwrap_or_default();
                !git_ref.is_empty() && !owner.is_empty() && !repo.is_empty()
            }
            None => false,
        }
    };
    if !valid {
        ctx.error(
            node.span,
            format!(
                "invalid action \"{s}\": expected \"{{owner}}/{{repo}}[/{{path}}]@{{ref}}\", \"./{{path}}\" or \"docker://{{image}}\""
            ),
        );
    }
    Some(uses)
}
