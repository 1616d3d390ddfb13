//! `if:` conditions, with GitHub's rules:
//! - the `${{ }}` wrapper is optional, and an empty condition means `success()`;
//! - a condition without a status function is implicitly `success() && (…)`,
//!   so steps after a failure are skipped unless they ask otherwise;
//! - text mixing literals and `${{ }}` (e.g. `${{ a }} && b`) is a string
//!   interpolation, as in GitHub: it is truthy whenever it is non-empty.

use crate::ast::{Expr, Function, LogicalOp, Node, NodeKind};
use crate::context::EvalContext;
use crate::error::{Error, ParseError};
use crate::eval::evaluate;
use crate::parser::{ParseOptions, parse_with};
use crate::template::{TemplatePart, find_expressions_with};
use crate::value::Value;

/// Parses an `if:` value into the expression GitHub evaluates, including the
/// implicit `success() &&`. Spans and error offsets are relative to `text`.
pub fn parse_condition(text: &str, options: &ParseOptions) -> Result<Expr, ParseError> {
    let trimmed = text.trim();
    let offset = text.len() - text.trim_start().len();
    let whole = offset..offset + trimmed.len();
    let body = if trimmed.is_empty() {
        None
    } else if !trimmed.contains("${{") {
        let expr = parse_with(trimmed, options).map_err(|e| e.shifted(offset))?;
        expr.root.map(|mut root| {
            root.shift(offset);
            root
        })
    } else {
        let parts = find_expressions_with(trimmed, options).map_err(|e| e.shifted(offset))?;
        Some(template_node(parts, offset, whole.clone()))
    };
    let root = match body {
        Some(body) if uses_status_function(&body) => body,
        Some(body) => Node {
            span: whole.clone(),
            kind: NodeKind::Logical {
                op: LogicalOp::And,
                operands: vec![success_call(whole), body],
            },
        },
        None => success_call(whole),
    };
    Ok(Expr {
        source: text.to_owned(),
        root: Some(root),
    })
}

/// Evaluates an `if:` value (see [`parse_condition`]), accepting any context name.
pub fn evaluate_condition(text: &str, ctx: &EvalContext<'_>) -> Result<bool, Error> {
    let expr = parse_condition(text, &ParseOptions::default())?;
    Ok(evaluate(&expr, ctx)?.is_truthy())
}

fn uses_status_function(node: &Node) -> bool {
    let mut found = false;
    node.walk(&mut |n| {
        if let NodeKind::Call { function, .. } = &n.kind {
            found |= function.is_status();
        }
    });
    found
}

fn success_call(span: std::ops::Range<usize>) -> Node {
    Node {
        span,
        kind: NodeKind::Call {
            function: Function::Success,
            args: Vec::new(),
        },
    }
}

/// A lone `${{ x }}` is `x`; anything else is `format('lit{0}lit…', x, …)`.
fn template_node(parts: Vec<TemplatePart>, offset: usize, whole: std::ops::Range<usize>) -> Node {
    let mut format = String::new();
    let mut args = Vec::new();
    let single = parts.len() == 1;
    for part in parts {
        match part {
            TemplatePart::Literal { text, .. } => {
                format.push_str(&text.replace('{', "{{").replace('}', "}}"));
            }
            TemplatePart::Expression {
                expr, expr_offset, ..
            } => {
                // Empty expressions are rejected while splitting the template.
                let mut node = expr.root.unwrap_or_else(|| Node {
                    span: 0..0,
                    kind: NodeKind::Literal(Value::Null),
                });
                node.shift(offset + expr_offset);
                if single {
                    return node;
                }
                format.push_str(&format!("{{{}}}", args.len()));
                args.push(node);
            }
        }
    }
    let format = Node {
        span: whole.clone(),
        kind: NodeKind::Literal(Value::String(format)),
    };
    args.insert(0, format);
    Node {
        span: whole,
        kind: NodeKind::Call {
            function: Function::Format,
            args,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{Contexts, Host, Status};
    use serde_json::json;

    struct Job(Status);

    impl Host for Job {
        fn status(&self) -> Status {
            self.0
        }
    }

    fn check(text: &str, status: Status) -> bool {
        let mut c = Contexts::new();
        c.insert(
            "github",
            Value::from(json!({"ref": "refs/heads/main", "event_name": "push"})),
        );
        let job = Job(status);
        let ctx = EvalContext::new(&c).with_host(&job);
        evaluate_condition(text, &ctx).expect("evaluates")
    }

    #[test]
    fn empty_means_success() {
        assert!(check("", Status::Success));
        assert!(check("  ", Status::Success));
        assert!(!check("", Status::Failure));
    }

    #[test]
    fn implicit_success_is_added_without_status_functions() {
        assert!(check("github.ref == 'refs/heads/main'", Status::Success));
        assert!(!check("github.ref == 'refs/heads/main'", Status::Failure));
        assert!(!check(
            "${{ github.event_name == 'push' }}",
            Status::Cancelled
        ));
        assert!(check("${{ github.event_name == 'push' }}", Status::Success));
    }

    #[test]
    fn explicit_status_functions_replace_the_default() {
        assert!(check("always()", Status::Failure));
        assert!(check(
            "${{ always() && github.ref != '' }}",
            Status::Cancelled
        ));
        assert!(check("failure()", Status::Failure));
        assert!(!check("failure()", Status::Success));
        assert!(check("cancelled()", Status::Cancelled));
        assert!(check("!cancelled()", Status::Failure));
        assert!(!check("!cancelled()", Status::Cancelled));
        assert!(check("success() || failure()", Status::Failure));
    }

    #[test]
    fn mixed_text_is_an_always_truthy_string() {
        // GitHub's well-known pitfall: this is format('{0} && false', …).
        assert!(check("${{ false }} && false", Status::Success));
        assert!(!check("${{ false }} && false", Status::Failure));
    }

    #[test]
    fn status_function_detection() {
        let opts = ParseOptions::default();
        let wrapped = parse_condition("github.ref", &opts).expect("parses");
        assert!(wrapped.uses_status_function());
        assert!(
            !crate::parse("github.ref")
                .expect("parses")
                .uses_status_function()
        );
        assert!(
            crate::parse("contains(format('{0}', failure()), 'x')")
                .expect("parses")
                .uses_status_function()
        );
    }

    #[test]
    fn spans_and_errors_are_relative_to_the_text() {
        let opts = ParseOptions::default();
        let err = parse_condition("  github.ref ==", &opts).expect_err("incomplete");
        assert_eq!(err.offset(), 13);
        let err = parse_condition("x ${{ 1 = 2 }}", &opts).expect_err("bad token");
        assert_eq!(err.offset(), 8);
        let expr = parse_condition("  github.ref", &opts).expect("parses");
        let mut spans = Vec::new();
        if let Some(root) = expr.root() {
            root.walk(&mut |n| spans.push(n.span.clone()));
        }
        assert!(spans.contains(&(2..12)), "{spans:?}");
    }
}
