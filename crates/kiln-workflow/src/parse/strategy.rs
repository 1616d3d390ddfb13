//! `strategy:` and its matrix. Any part of a matrix may be an expression
//! (`matrix: ${{ fromJSON(needs.plan.outputs.matrix) }}`, one dimension, or
//! `include`); those are kept as text for the runner to evaluate.

use indexmap::IndexMap;

use crate::model::{Matrix, MatrixValues, Strategy};
use crate::span::Spanned;
use crate::yaml::{Node, NodeKind, ScalarValue};

use super::Ctx;
use super::read::{format_number, has_expression};

pub(super) fn parse(ctx: &mut Ctx, node: &Node) -> Option<Strategy> {
    if node.as_scalar().is_some_and(has_expression) {
        ctx.error(
            node.span,
            "expected a mapping; kiln does not support an expression in place of the whole strategy (use it for \"matrix\")",
        );
        return None;
    }
    let mut strategy = Strategy {
        span: node.span,
        ..Strategy::default()
    };
    for f in ctx.fields(
        node,
        &["matrix", "fail-fast", "max-parallel"],
        "\"strategy\"",
    ) {
        match f.name {
            "matrix" => strategy.matrix = matrix(ctx, f.value),
            "fail-fast" => strategy.fail_fast = ctx.bool_or_expr(f.value),
            _ => strategy.max_parallel = ctx.positive_number(f.value, true),
        }
    }
    node.as_map().map(|_| strategy)
}

fn matrix(ctx: &mut Ctx, node: &Node) -> Option<Matrix> {
    if let Some(s) = node.as_scalar().filter(|s| has_expression(s)) {
        return Some(Matrix::Expr(Spanned::new(s.to_string(), node.span)));
    }
    if node.as_map().is_none() {
        ctx.mismatch(node, "a mapping or an expression");
        return None;
    }
    let mut dimensions = IndexMap::new();
    let (mut include, mut exclude) = (None, None);
    let mut exclude_node = None;
    for f in ctx.entries(node) {
        match f.name {
            "include" => include = values(ctx, f.value, true),
            "exclude" => {
                exclude = values(ctx, f.value, true);
                exclude_node = Some(f.value);
            }
            name => {
                if let Some(v) = values(ctx, f.value, false) {
                    if matches!(&v, MatrixValues::List(items) if items.is_empty()) {
                        ctx.error(
                            f.value.span,
                            format!("matrix dimension \"{name}\" has no values"),
                        );
                    }
                    dimensions.insert(name.to_string(), v);
                }
            }
        }
    }
    let defines_jobs = node
        .as_map()
        .unwrap_or_default()
        .iter()
        .any(|(k, _)| k.as_scalar() != Some("exclude"));
    if !defines_jobs {
        ctx.error(
            node.span,
            "matrix must define at least one dimension or \"include\"",
        );
    }
    if let Some(exclude_node) = exclude_node {
        check_exclude_keys(ctx, &dimensions, exclude_node);
    }
    Some(Matrix::Dimensions {
        dimensions,
        include,
        exclude,
        span: node.span,
    })
}

/// A dimension's values (a sequence) or `include`/`exclude` (a sequence of
/// mappings), or an expression producing either.
fn values(ctx: &mut Ctx, node: &Node, filter: bool) -> Option<MatrixValues> {
    if let Some(s) = node.as_scalar().filter(|s| has_expression(s)) {
        return Some(MatrixValues::Expr(Spanned::new(s.to_string(), node.span)));
    }
    let Some(items) = node.as_seq() else {
        let expected = if filter {
            "a sequence of mappings or an expression"
        } else {
            "a sequence or an expression"
        };
        ctx.mismatch(node, expected);
        return None;
    };
    let mut list = Vec::with_capacity(items.len());
    for item in items {
        if filter && item.as_map().is_none() {
            ctx.mismatch(item, "a mapping");
            continue;
        }
        warn_numbers(ctx, item);
        list.push(item.to_json());
    }
    Some(MatrixValues::List(list))
}

/// Warns about plain scalars whose string form in `${{ matrix.x }}` differs
/// from the text, such as `3.10` (→ "3.1").
fn warn_numbers(ctx: &mut Ctx, node: &Node) {
    match &node.kind {
        NodeKind::Seq(items) => items.iter().for_each(|i| warn_numbers(ctx, i)),
        NodeKind::Map(entries) => entries.iter().for_each(|(_, v)| warn_numbers(ctx, v)),
        NodeKind::Scalar(raw, _) => {
            let text = match node.scalar_value() {
                Some(ScalarValue::Int(i)) => i.to_string(),
                Some(ScalarValue::Float(f)) => format_number(f),
                Some(ScalarValue::Bool(b)) => b.to_string(),
                _ => return,
            };
            ctx.warn_converted(node, raw, &text);
        }
    }
}

/// GitHub rejects an `exclude` entry naming a key that is not a dimension.
fn check_exclude_keys(ctx: &mut Ctx, dimensions: &IndexMap<String, MatrixValues>, node: &Node) {
    if dimensions
        .values()
        .any(|v| matches!(v, MatrixValues::Expr(_)))
    {
        return;
    }
    for item in node.as_seq().unwrap_or_default() {
        for (key, _) in item.as_map().unwrap_or_default() {
            let Some(name) = key.as_scalar() else {
                continue;
            };
            if !dimensions.contains_key(name) {
                ctx.error(
                    key.span,
                    format!("matrix exclude key \"{name}\" does not match any matrix dimension"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{Matrix, MatrixValues, Workflow};
    use crate::{Diagnostic, parse_workflow};

    fn parse(strategy: &str) -> (Workflow, Vec<Diagnostic>) {
        parse_workflow(&format!(
            "on: push\njobs:\n  a:\n    runs-on: x\n    strategy:\n{strategy}    steps:\n      - run: echo\n"
        ))
    }

    fn matrix(wf: &Workflow) -> &Matrix {
        wf.jobs["a"]
            .strategy
            .as_ref()
            .unwrap()
            .matrix
            .as_ref()
            .unwrap()
    }

    #[test]
    fn whole_matrix_expression() {
        let (wf, d) = parse("      matrix: ${{ fromJSON(needs.plan.outputs.matrix) }}\n");
        assert!(d.is_empty(), "{d:?}");
        assert!(matches!(matrix(&wf), Matrix::Expr(e) if e.value.contains("fromJSON")));
    }

    #[test]
    fn dimensions_include_and_exclude() {
        let (wf, d) = parse(
            "      fail-fast: false\n      matrix:\n        os: [linux, mac]\n        node: ${{ fromJSON('[20, 22]') }}\n        include: ${{ fromJSON(needs.plan.outputs.extra) }}\n        exclude:\n          - os: mac\n",
        );
        assert!(d.is_empty(), "{d:?}");
        let Matrix::Dimensions {
            dimensions,
            include,
            exclude,
            ..
        } = matrix(&wf)
        else {
            panic!("expected dimensions");
        };
        assert_eq!(
            dimensions["os"],
            MatrixValues::List(vec![serde_json::json!("linux"), serde_json::json!("mac")])
        );
        assert!(matches!(&dimensions["node"], MatrixValues::Expr(_)));
        assert!(matches!(include, Some(MatrixValues::Expr(_))));
        assert_eq!(
            exclude,
            &Some(MatrixValues::List(vec![serde_json::json!({"os": "mac"})]))
        );
    }

    #[test]
    fn float_versions_warn() {
        let (_, d) = parse("      matrix:\n        python: [3.9, 3.10]\n");
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(!d[0].is_error());
        assert!(d[0].message.contains("\"3.1\""));
    }
}
