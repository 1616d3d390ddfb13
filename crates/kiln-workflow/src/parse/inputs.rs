//! Typed inputs of `workflow_dispatch` and `workflow_call`, and the outputs
//! and secrets a reusable workflow declares.

use indexmap::IndexMap;

use crate::model::{CallOutput, CallSecret, Input, InputType};
use crate::yaml::{Node, ScalarValue};

use super::read::{has_expression, invalid_identifier, is_identifier};
use super::{Ctx, scope};

const DISPATCH_KEYS: &[&str] = &["description", "type", "required", "default", "options"];
const CALL_KEYS: &[&str] = &["description", "type", "required", "default"];
const DISPATCH_TYPES: &[&str] = &["string", "boolean", "number", "choice", "environment"];
const CALL_TYPES: &[&str] = &["string", "boolean", "number"];

/// `inputs:` of `workflow_dispatch` (`call == false`) or `workflow_call`.
pub(super) fn inputs(ctx: &mut Ctx, node: &Node, call: bool) -> IndexMap<String, Input> {
    let mut out = IndexMap::new();
    for field in ctx.entries(node) {
        if !is_identifier(field.name) {
            ctx.error(field.key.span, invalid_identifier("input id", field.name));
        }
        let input = input(ctx, field.key, field.value, call);
        out.insert(field.name.to_string(), input);
    }
    out
}

fn input(ctx: &mut Ctx, key: &Node, node: &Node, call: bool) -> Input {
    let name = key.as_scalar().unwrap_or_default();
    let (keys, types, event) = if call {
        (CALL_KEYS, CALL_TYPES, "workflow_call")
    } else {
        (DISPATCH_KEYS, DISPATCH_TYPES, "workflow_dispatch")
    };
    let mut input = Input {
        span: node.span,
        ..Input::default()
    };
    let owner = format!("{event} input \"{name}\"");
    let fields = ctx.fields(node, keys, &owner);
    let mut default = None;
    let mut options = None;
    let mut has_type = false;
    for f in &fields {
        match f.name {
            "description" => input.description = ctx.string(f.value).map(|s| s.value),
            "required" => input.required = ctx.bool(f.value).unwrap_or_default(),
            "type" => {
                has_type = true;
                if let Some(t) = ctx.one_of(f.value, types, "input type") {
                    input.input_type = input_type(&t.value);
                }
            }
            "default" => default = Some(f.value),
            "options" => options = Some(*f),
            _ => {}
        }
    }
    if call && !has_type && node.as_map().is_some() {
        ctx.error(key.span, format!("{owner} is missing \"type\""));
    }
    if let Some(options) = options {
        if input.input_type == InputType::Choice {
            input.options = ctx
                .string_seq(options.value)
                .unwrap_or_default()
                .into_iter()
                .map(|s| s.value)
                .collect();
        } else {
            ctx.error(
                options.key.span,
                "\"options\" is only valid for a \"choice\" input",
            );
        }
    }
    if input.input_type == InputType::Choice && input.options.is_empty() && node.as_map().is_some()
    {
        ctx.error(
            key.span,
            format!("choice input \"{name}\" needs a non-empty \"options\" list"),
        );
    }
    if let Some(default) = default {
        if call {
            ctx.scope(default, &scope::CALL_INPUT_DEFAULT);
        }
        input.default = default_value(ctx, &input, default, call);
    }
    input
}

fn input_type(name: &str) -> InputType {
    match name {
        "boolean" => InputType::Boolean,
        "number" => InputType::Number,
        "choice" => InputType::Choice,
        "environment" => InputType::Environment,
        _ => InputType::String,
    }
}

/// The default as JSON, checked against the input's type. `workflow_call`
/// defaults may also be expressions.
fn default_value(
    ctx: &mut Ctx,
    input: &Input,
    node: &Node,
    call: bool,
) -> Option<serde_json::Value> {
    use serde_json::Value as J;
    let value = node.scalar_value();
    if let Some(ScalarValue::Str(s)) = value
        && call
        && has_expression(s)
    {
        return Some(J::String(s.to_string()));
    }
    match input.input_type {
        InputType::Boolean => match value {
            Some(ScalarValue::Bool(b)) => Some(J::Bool(b)),
            _ => {
                ctx.mismatch(node, "a boolean default for a boolean input");
                None
            }
        },
        InputType::Number => match value {
            Some(ScalarValue::Int(_) | ScalarValue::Float(_)) => Some(node.to_json()),
            _ => {
                ctx.mismatch(node, "a number default for a number input");
                None
            }
        },
        InputType::Choice => {
            let s = ctx.string(node)?;
            if !input.options.is_empty() && !input.options.contains(&s.value) {
                ctx.error(
                    node.span,
                    format!("default \"{}\" is not one of the choice options", s.value),
                );
            }
            Some(J::String(s.value))
        }
        InputType::String | InputType::Environment => Some(J::String(ctx.string(node)?.value)),
    }
}

/// `workflow_call.outputs`: each needs a `value`.
pub(super) fn call_outputs(ctx: &mut Ctx, node: &Node) -> IndexMap<String, CallOutput> {
    let mut out = IndexMap::new();
    for field in ctx.entries(node) {
        if !is_identifier(field.name) {
            ctx.error(field.key.span, invalid_identifier("output id", field.name));
        }
        let owner = format!("workflow_call output \"{}\"", field.name);
        let fields = ctx.fields(field.value, &["description", "value"], &owner);
        let mut output = CallOutput::default();
        let mut has_value = false;
        for f in &fields {
            match f.name {
                "description" => output.description = ctx.string(f.value).map(|s| s.value),
                "value" => {
                    has_value = true;
                    ctx.scope(f.value, &scope::CALL_OUTPUT);
                    if let Some(v) = ctx.string(f.value) {
                        output.value = v;
                    }
                }
                _ => {}
            }
        }
        if !has_value && field.value.as_map().is_some() {
            ctx.error(field.key.span, format!("{owner} is missing \"value\""));
        }
        out.insert(field.name.to_string(), output);
    }
    out
}

/// `workflow_call.secrets`: each is null or `{description, required}`.
pub(super) fn call_secrets(ctx: &mut Ctx, node: &Node) -> IndexMap<String, CallSecret> {
    let mut out = IndexMap::new();
    for field in ctx.entries(node) {
        let mut secret = CallSecret::default();
        if !field.value.is_null() {
            let owner = format!("workflow_call secret \"{}\"", field.name);
            for f in ctx.fields(field.value, &["description", "required"], &owner) {
                match f.name {
                    "description" => secret.description = ctx.string(f.value).map(|s| s.value),
                    "required" => secret.required = ctx.bool(f.value).unwrap_or_default(),
                    _ => {}
                }
            }
        }
        out.insert(field.name.to_string(), secret);
    }
    out
}
