//! `on:` in its three forms: one event, a list of events, or a mapping of
//! events to their filters. Per-event keys come from [`super::events`].

use indexmap::IndexMap;

use crate::filter::Pattern;
use crate::model::{EventConfig, Triggers};
use crate::span::Spanned;
use crate::suggest::did_you_mean;
use crate::yaml::{Node, NodeKind};

use super::events::{self, EventSpec};
use super::{Ctx, Field, cron, inputs};

/// Filters GitHub rejects together for one event.
const EXCLUSIVE: &[(&str, &str)] = &[
    ("branches", "branches-ignore"),
    ("tags", "tags-ignore"),
    ("paths", "paths-ignore"),
];

pub(super) fn parse(ctx: &mut Ctx, node: &Node) -> Triggers {
    let mut events: IndexMap<String, EventConfig> = IndexMap::new();
    let empty = match &node.kind {
        NodeKind::Seq(items) => items.is_empty(),
        NodeKind::Map(entries) => entries.is_empty(),
        NodeKind::Scalar(..) => node.is_null(),
    };
    if empty {
        ctx.error(node.span, "\"on\" must name at least one event");
        return Triggers {
            events,
            span: node.span,
        };
    }
    match &node.kind {
        NodeKind::Scalar(..) => {
            if let Some(name) = event_name(ctx, node) {
                let config = bare_event(ctx, name, node);
                events.insert(name.to_string(), config);
            }
        }
        NodeKind::Seq(items) => {
            for item in items {
                let Some(name) = event_name(ctx, item) else {
                    continue;
                };
                if events.contains_key(name) {
                    ctx.error(item.span, format!("duplicate event \"{name}\""));
                    continue;
                }
                let config = bare_event(ctx, name, item);
                events.insert(name.to_string(), config);
            }
        }
        NodeKind::Map(_) => {
            for field in ctx.entries(node) {
                let Some(spec) = known_event(ctx, field.name, field.key) else {
                    continue;
                };
                let config = event_config(ctx, spec, field);
                events.insert(field.name.to_string(), config);
            }
        }
    }
    Triggers {
        events,
        span: node.span,
    }
}

/// An event given by name only (`on: push`, `on: [push, pull_request]`).
fn bare_event(ctx: &mut Ctx, name: &str, node: &Node) -> EventConfig {
    if name == "schedule" {
        ctx.error(
            node.span,
            "the \"schedule\" event needs a list of \"cron\" entries: `schedule: [{cron: '0 0 * * *'}]`",
        );
    }
    EventConfig {
        span: node.span,
        ..EventConfig::default()
    }
}

fn event_name<'n>(ctx: &mut Ctx, node: &'n Node) -> Option<&'n str> {
    if node.as_scalar().is_none() {
        ctx.mismatch(node, "an event name");
        return None;
    }
    let name = node.as_scalar()?;
    known_event(ctx, name, node).map(|_| name)
}

fn known_event(ctx: &mut Ctx, name: &str, node: &Node) -> Option<&'static EventSpec> {
    let spec = events::lookup(name);
    if spec.is_none() {
        let hint = did_you_mean(name, events::names());
        ctx.error(node.span, format!("unknown event \"{name}\"{hint}"));
    }
    spec
}

fn event_config(ctx: &mut Ctx, spec: &EventSpec, field: Field) -> EventConfig {
    let value = field.value;
    let mut config = EventConfig {
        span: field.key.span,
        ..EventConfig::default()
    };
    if value.is_null() {
        if spec.name == "schedule" {
            bare_event(ctx, spec.name, value);
        }
        return config;
    }
    if spec.name == "schedule" {
        schedule(ctx, value, &mut config);
        return config;
    }
    let owner = format!("the \"{}\" event", spec.name);
    let fields = ctx.fields(value, spec.keys, &owner);
    for f in &fields {
        let filter = |ctx: &mut Ctx| patterns(ctx, f.value);
        match f.name {
            "types" => config.types = activity_types(ctx, spec, f.value),
            "branches" => config.branches = filter(ctx),
            "branches-ignore" => config.branches_ignore = filter(ctx),
            "tags" => config.tags = filter(ctx),
            "tags-ignore" => config.tags_ignore = filter(ctx),
            "paths" => config.paths = filter(ctx),
            "paths-ignore" => config.paths_ignore = filter(ctx),
            "workflows" => config.workflows = ctx.strings(f.value),
            "names" => config.names = ctx.strings(f.value),
            "versions" => config.versions = ctx.strings(f.value),
            "inputs" => {
                config.inputs = inputs::inputs(ctx, f.value, spec.name == "workflow_call");
            }
            "outputs" => config.outputs = inputs::call_outputs(ctx, f.value),
            "secrets" => config.secrets = inputs::call_secrets(ctx, f.value),
            _ => {}
        }
    }
    for (include, ignore) in EXCLUSIVE {
        let find = |name: &str| fields.iter().find(|f| f.name == name);
        if let (Some(a), Some(b)) = (find(include), find(ignore)) {
            let later = if a.key.span.start > b.key.span.start {
                a
            } else {
                b
            };
            ctx.error(
                later.key.span,
                format!(
                    "\"{include}\" and \"{ignore}\" cannot both be used for the \"{}\" event",
                    spec.name
                ),
            );
        }
    }
    config
}

/// A branch, tag or path filter: each pattern must compile.
fn patterns(ctx: &mut Ctx, node: &Node) -> Option<Vec<Spanned<String>>> {
    let patterns = ctx.strings(node)?;
    for p in &patterns {
        if let Err(e) = Pattern::new(&p.value) {
            ctx.error(
                p.span,
                format!("invalid filter pattern \"{}\": {}", p.value, e.kind),
            );
        }
    }
    Some(patterns)
}

/// `types:` checked against the event's documented activity types. An
/// unknown type is a warning: GitHub accepts the file, the type just never
/// matches.
fn activity_types(ctx: &mut Ctx, spec: &EventSpec, node: &Node) -> Option<Vec<Spanned<String>>> {
    let types = ctx.strings(node)?;
    if let Some(known) = spec.types {
        for t in &types {
            if !known.contains(&t.value.as_str()) {
                let hint = did_you_mean(&t.value, known.iter().copied());
                ctx.warning(
                    t.span,
                    format!(
                        "unknown activity type \"{}\" for the \"{}\" event{hint}",
                        t.value, spec.name
                    ),
                );
            }
        }
    }
    Some(types)
}

/// `schedule: [{cron: '…', timezone: '…'}, …]`.
fn schedule(ctx: &mut Ctx, node: &Node, config: &mut EventConfig) {
    let Some(items) = node.as_seq() else {
        ctx.mismatch(node, "a sequence of cron entries");
        return;
    };
    if items.is_empty() {
        ctx.error(node.span, "\"schedule\" needs at least one cron entry");
    }
    for item in items {
        let fields = ctx.fields(item, &["cron", "timezone"], "a schedule entry");
        let mut cron_expr = None;
        let mut timezone = None;
        for f in &fields {
            match f.name {
                "cron" => cron_expr = ctx.non_empty_string(f.value),
                "timezone" => timezone = ctx.non_empty_string(f.value),
                _ => {}
            }
        }
        if item.as_map().is_some() && !fields.iter().any(|f| f.name == "cron") {
            ctx.error(item.span, "schedule entry is missing \"cron\"");
        }
        if let Some(expr) = cron_expr {
            if let Err(message) = cron::validate(&expr.value) {
                ctx.error(
                    expr.span,
                    format!("invalid cron expression \"{}\": {message}", expr.value),
                );
            }
            config.schedule.push(expr);
            config.schedule_timezones.push(timezone);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::parse_workflow;

    const JOBS: &str = "jobs:\n  a:\n    runs-on: x\n    steps:\n      - run: echo\n";

    fn events(on: &str) -> Vec<String> {
        let (wf, diagnostics) = parse_workflow(&format!("on: {on}\n{JOBS}"));
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        wf.on.events.keys().cloned().collect()
    }

    #[test]
    fn string_form() {
        assert_eq!(events("push"), ["push"]);
    }

    #[test]
    fn list_form() {
        assert_eq!(events("[push, pull_request]"), ["push", "pull_request"]);
    }

    #[test]
    fn map_with_null_values() {
        let (wf, diagnostics) = parse_workflow(&format!(
            "on:\n  push:\n  workflow_dispatch:\n  pull_request:\n    branches: main\n{JOBS}"
        ));
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        let names: Vec<_> = wf.on.events.keys().map(String::as_str).collect();
        assert_eq!(names, ["push", "workflow_dispatch", "pull_request"]);
        assert_eq!(wf.on.events["push"].branches, None);
        let branches = wf.on.events["pull_request"].branches.as_ref().unwrap();
        assert_eq!(branches[0].value, "main");
    }

    #[test]
    fn schedule_keeps_crons_and_timezones_in_order() {
        let (wf, diagnostics) = parse_workflow(&format!(
            "on:\n  schedule:\n    - cron: '0 1 * * *'\n    - cron: '0 2 * * *'\n      timezone: Asia/Tokyo\n{JOBS}"
        ));
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        let schedule = &wf.on.events["schedule"];
        let crons: Vec<_> = schedule.schedule.iter().map(|c| c.value.as_str()).collect();
        assert_eq!(crons, ["0 1 * * *", "0 2 * * *"]);
        assert_eq!(schedule.schedule_timezones[0], None);
        assert_eq!(
            schedule.schedule_timezones[1].as_ref().unwrap().value,
            "Asia/Tokyo"
        );
    }

    #[test]
    fn dispatch_inputs_are_typed() {
        use crate::model::InputType;
        let (wf, diagnostics) = parse_workflow(&format!(
            "on:\n  workflow_dispatch:\n    inputs:\n      n:\n        type: number\n        default: 3\n      c:\n        type: choice\n        options: [a, b]\n        default: b\n{JOBS}"
        ));
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        let inputs = &wf.on.events["workflow_dispatch"].inputs;
        assert_eq!(inputs["n"].input_type, InputType::Number);
        assert_eq!(inputs["n"].default, Some(serde_json::json!(3)));
        assert_eq!(inputs["c"].options, ["a", "b"]);
        assert_eq!(inputs["c"].default, Some(serde_json::json!("b")));
    }

    #[test]
    fn unknown_activity_types_are_warnings() {
        let (_, diagnostics) =
            parse_workflow(&format!("on:\n  issues:\n    types: [opend]\n{JOBS}"));
        assert_eq!(diagnostics.len(), 1);
        assert!(!diagnostics[0].is_error());
        assert!(diagnostics[0].message.contains("did you mean \"opened\""));
    }
}
