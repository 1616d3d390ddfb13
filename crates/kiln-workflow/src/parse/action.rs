//! `action.yml` metadata. GitHub's runner reads the top level and inputs
//! loosely (unknown keys are ignored), so those are warnings here; `runs:`
//! is read strictly because it decides how the action executes.

use indexmap::IndexMap;

use crate::model::{Action, ActionInput, ActionOutput, Branding, Runs};
use crate::span::{Span, Spanned};
use crate::yaml::{Node, ScalarValue};

use super::step::{self, StepKind};
use super::{Ctx, Field, scope};

const KEYS: &[&str] = &[
    "name",
    "description",
    "author",
    "inputs",
    "outputs",
    "runs",
    "branding",
];
const USING: &[&str] = &[
    "composite",
    "docker",
    "node12",
    "node16",
    "node20",
    "node24",
];
const COMPOSITE_KEYS: &[&str] = &["using", "steps"];
const NODE_KEYS: &[&str] = &["using", "main", "pre", "pre-if", "post", "post-if"];
const DOCKER_KEYS: &[&str] = &[
    "using",
    "image",
    "entrypoint",
    "args",
    "env",
    "pre-entrypoint",
    "pre-if",
    "post-entrypoint",
    "post-if",
];
const COLORS: &[&str] = &[
    "white",
    "yellow",
    "blue",
    "green",
    "orange",
    "red",
    "purple",
    "gray-dark",
];

pub(super) fn parse(ctx: &mut Ctx, root: &Node) -> Option<Action> {
    let fields = ctx.fields_lenient(root, KEYS, "the action");
    root.as_map()?;
    let find = |name: &str| fields.iter().find(|f| f.name == name).copied();
    for required in ["name", "description"] {
        if find(required).is_none() {
            ctx.warning(
                Span::point(root.span.start),
                format!("action is missing \"{required}\""),
            );
        }
    }
    let runs = match find("runs") {
        Some(f) => runs(ctx, f.value),
        None => {
            ctx.error(
                Span::point(root.span.start),
                "missing required key \"runs\"",
            );
            None
        }
    };
    let composite = matches!(runs, Some(Runs::Composite { .. }));
    let (mut name, mut description, mut author) = (None, None, None);
    let (mut inputs_map, mut outputs_map, mut branding_value) =
        (IndexMap::new(), IndexMap::new(), None);
    for f in &fields {
        match f.name {
            "name" => name = ctx.string(f.value),
            "description" => description = ctx.string(f.value),
            "author" => author = ctx.string(f.value),
            "inputs" => inputs_map = inputs(ctx, f.value),
            "outputs" => outputs_map = outputs(ctx, f.value, composite),
            "branding" => branding_value = Some(branding(ctx, f.value)),
            _ => {}
        }
    }
    Some(Action {
        name,
        description,
        author,
        inputs: inputs_map,
        outputs: outputs_map,
        runs: runs?,
        branding: branding_value,
    })
}

fn inputs(ctx: &mut Ctx, node: &Node) -> IndexMap<String, ActionInput> {
    const INPUT_KEYS: &[&str] = &["description", "required", "default", "deprecationMessage"];
    let mut out = IndexMap::new();
    for field in ctx.entries(node) {
        let mut input = ActionInput {
            span: field.value.span,
            ..ActionInput::default()
        };
        if !field.value.is_null() {
            let owner = format!("input \"{}\"", field.name);
            for f in ctx.fields_lenient(field.value, INPUT_KEYS, &owner) {
                match f.name {
                    "description" => input.description = ctx.string(f.value).map(|s| s.value),
                    "required" => input.required = loose_bool(ctx, f.value),
                    "default" => {
                        ctx.scope(f.value, &scope::ACTION_INPUT_DEFAULT);
                        input.default = ctx.string(f.value);
                    }
                    _ => input.deprecation_message = ctx.string(f.value).map(|s| s.value),
                }
            }
        }
        out.insert(field.name.to_string(), input);
    }
    out
}

/// `required:` of an action input. The runner does not enforce it, and
/// many actions write it as a string, so only nonsense is reported.
fn loose_bool(ctx: &mut Ctx, node: &Node) -> bool {
    match node.scalar_value() {
        Some(ScalarValue::Bool(b)) => b,
        Some(ScalarValue::Str(s)) if s.eq_ignore_ascii_case("true") => true,
        Some(ScalarValue::Str(s)) if s.eq_ignore_ascii_case("false") => false,
        _ => {
            ctx.warning(
                node.span,
                format!("expected a boolean, found {}", node.describe()),
            );
            false
        }
    }
}

fn outputs(ctx: &mut Ctx, node: &Node, composite: bool) -> IndexMap<String, ActionOutput> {
    let mut out = IndexMap::new();
    for field in ctx.entries(node) {
        let mut output = ActionOutput::default();
        if !field.value.is_null() {
            let owner = format!("output \"{}\"", field.name);
            for f in ctx.fields_lenient(field.value, &["description", "value"], &owner) {
                match f.name {
                    "description" => output.description = ctx.string(f.value).map(|s| s.value),
                    _ => {
                        ctx.scope(f.value, &scope::ACTION_OUTPUT);
                        output.value = ctx.string(f.value);
                    }
                }
            }
        }
        if composite && output.value.is_none() {
            ctx.error(
                field.key.span,
                format!(
                    "output \"{}\" of a composite action needs \"value\"",
                    field.name
                ),
            );
        }
        out.insert(field.name.to_string(), output);
    }
    out
}

fn runs(ctx: &mut Ctx, node: &Node) -> Option<Runs> {
    let Some(using_node) = node.get("using") else {
        if node.as_map().is_some() {
            ctx.error(node.span, "\"runs\" is missing \"using\"");
        } else {
            ctx.mismatch(node, "a mapping");
        }
        return None;
    };
    // GitHub's runner compares the runtime case-insensitively.
    let mut using = ctx.string(using_node)?;
    using.value.make_ascii_lowercase();
    if !USING.contains(&using.value.as_str()) {
        ctx.one_of(using_node, USING, "action runtime");
        return None;
    }
    let (keys, kind) = match using.value.as_str() {
        "composite" => (COMPOSITE_KEYS, "composite"),
        "docker" => (DOCKER_KEYS, "docker"),
        _ => (NODE_KEYS, "node"),
    };
    let all: Vec<&str> = [COMPOSITE_KEYS, NODE_KEYS, DOCKER_KEYS].concat();
    let mut fields = ctx.fields(node, &all, "\"runs\"");
    fields.retain(|f| {
        let fits = keys.contains(&f.name);
        if !fits {
            ctx.error(
                f.key.span,
                format!("\"{}\" is not valid for a {kind} action", f.name),
            );
        }
        fits
    });
    let get = |name: &str| fields.iter().find(|f| f.name == name).copied();
    let required = |ctx: &mut Ctx, name: &str| -> Option<Field> {
        let field = get(name);
        if field.is_none() {
            ctx.error(node.span, format!("a {kind} action needs \"runs.{name}\""));
        }
        field
    };
    let optional =
        |ctx: &mut Ctx, name: &str| get(name).and_then(|f| ctx.non_empty_string(f.value));
    let condition =
        |ctx: &mut Ctx, name: &str| get(name).and_then(|f| ctx.condition(f.value, &scope::RUNS_IF));
    match kind {
        "composite" => {
            let node = required(ctx, "steps")?.value;
            let steps = step::parse_all(ctx, node, StepKind::Composite);
            Some(Runs::Composite { steps })
        }
        "docker" => {
            let image = required(ctx, "image");
            for name in ["args", "env"] {
                if let Some(f) = get(name) {
                    ctx.scope(f.value, &scope::DOCKER_RUNS);
                }
            }
            let args = get("args").and_then(|f| ctx.string_seq(f.value));
            let env = get("env").map(|f| ctx.string_map(f.value));
            let (entrypoint, pre_entrypoint, post_entrypoint) = (
                optional(ctx, "entrypoint"),
                optional(ctx, "pre-entrypoint"),
                optional(ctx, "post-entrypoint"),
            );
            let (pre_if, post_if) = (condition(ctx, "pre-if"), condition(ctx, "post-if"));
            Some(Runs::Docker {
                image: ctx.non_empty_string(image?.value)?,
                entrypoint,
                pre_entrypoint,
                pre_if,
                post_entrypoint,
                post_if,
                args: args.unwrap_or_default(),
                env: env.unwrap_or_default(),
            })
        }
        _ => {
            let main = required(ctx, "main");
            let (pre, post) = (optional(ctx, "pre"), optional(ctx, "post"));
            let (pre_if, post_if) = (condition(ctx, "pre-if"), condition(ctx, "post-if"));
            let main: Spanned<String> = ctx.non_empty_string(main?.value)?;
            Some(Runs::Node {
                using,
                main,
                pre,
                pre_if,
                post,
                post_if,
            })
        }
    }
}

/// `branding:` only affects the Marketplace badge: problems are warnings.
fn branding(ctx: &mut Ctx, node: &Node) -> Branding {
    let mut branding = Branding::default();
    for f in ctx.fields_lenient(node, &["icon", "color"], "\"branding\"") {
        let Some(value) = ctx.string(f.value) else {
            continue;
        };
        if f.name == "color" && !COLORS.contains(&value.value.as_str()) {
            let list = COLORS.join(", ");
            ctx.warning(
                f.value.span,
                format!(
                    "unknown branding color \"{}\"; expected one of {list}",
                    value.value
                ),
            );
        }
        match f.name {
            "icon" => branding.icon = Some(value),
            _ => branding.color = Some(value),
        }
    }
    branding
}

#[cfg(test)]
mod tests {
    use crate::model::Runs;
    use crate::parse_action;

    #[test]
    fn node_action() {
        let (action, d) = parse_action(
            "name: n\ndescription: d\ninputs:\n  who:\n    default: me\nruns:\n  using: node20\n  main: index.js\n  post: post.js\n  post-if: failure()\n",
        );
        assert!(d.is_empty(), "{d:?}");
        let action = action.unwrap();
        assert_eq!(action.inputs["who"].default.as_ref().unwrap().value, "me");
        let Runs::Node {
            using,
            main,
            post_if,
            ..
        } = &action.runs
        else {
            panic!("expected a node action");
        };
        assert_eq!(
            (using.value.as_str(), main.value.as_str()),
            ("node20", "index.js")
        );
        assert_eq!(post_if.as_ref().unwrap().value, "failure()");
    }

    #[test]
    fn composite_action_steps() {
        let (action, d) = parse_action(
            "name: c\ndescription: d\noutputs:\n  x:\n    value: ${{ steps.s.outputs.x }}\nruns:\n  using: composite\n  steps:\n    - id: s\n      run: echo\n      shell: bash\n",
        );
        assert!(d.is_empty(), "{d:?}");
        let Runs::Composite { steps } = action.unwrap().runs else {
            panic!("expected a composite action");
        };
        assert_eq!(steps[0].shell.as_ref().unwrap().value, "bash");
    }

    #[test]
    fn unknown_top_level_keys_are_warnings() {
        let (action, d) = parse_action(
            "name: n\ndescription: d\nicon: x\nruns:\n  using: docker\n  image: Dockerfile\n",
        );
        assert!(action.is_some());
        assert_eq!(d.len(), 1);
        assert!(!d[0].is_error());
    }
}
