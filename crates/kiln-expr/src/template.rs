//! Text with embedded `${{ … }}` expressions.
//!
//! An expression ends at the first `}}` outside a string literal, GitHub's
//! rule: quotes toggle "inside a string" (so `''` escapes need no special
//! case) and `${{ '}}' }}` is one expression.

use std::ops::Range;

use crate::ast::Expr;
use crate::context::EvalContext;
use crate::error::{Error, ParseError, ParseErrorKind};
use crate::eval::evaluate;
use crate::parser::{ParseOptions, parse_with};
use crate::value::Value;

const OPEN: &str = "${{";

/// A piece of a template.
#[derive(Debug, Clone, PartialEq)]
pub enum TemplatePart {
    /// Text outside any expression.
    Literal {
        /// The text.
        text: String,
        /// Its byte range in the template.
        span: Range<usize>,
    },
    /// A `${{ … }}` expression.
    Expression {
        /// The parsed expression; its node spans are relative to its own
        /// source, which starts at `expr_offset` in the template.
        expr: Expr,
        /// Byte range of the whole `${{ … }}` in the template.
        span: Range<usize>,
        /// Byte offset of the expression text (trimmed) in the template.
        expr_offset: usize,
    },
}

/// Splits a template into literal text and parsed expressions, accepting any
/// context name. Error offsets are relative to `text`.
pub fn find_expressions(text: &str) -> Result<Vec<TemplatePart>, ParseError> {
    find_expressions_with(text, &ParseOptions::default())
}

/// Like [`find_expressions`], checking names against `options`.
pub fn find_expressions_with(
    text: &str,
    options: &ParseOptions,
) -> Result<Vec<TemplatePart>, ParseError> {
    let mut parts = Vec::new();
    let mut pos = 0;
    while pos < text.len() {
        let Some(start) = text[pos..].find(OPEN).map(|p| p + pos) else {
            parts.push(literal(text, pos..text.len()));
            break;
        };
        if start > pos {
            parts.push(literal(text, pos..start));
        }
        let inner_start = start + OPEN.len();
        let close = find_close(text.as_bytes(), inner_start).ok_or_else(|| {
            ParseError::new(ParseErrorKind::UnclosedExpression, start..text.len())
        })?;
        let inner = &text[inner_start..close - 1];
        let trimmed = inner.trim();
        if trimmed.is_empty() {
            return Err(ParseError::new(
                ParseErrorKind::EmptyExpression,
                start..close + 1,
            ));
        }
        let expr_offset = inner_start + (inner.len() - inner.trim_start().len());
        let expr = parse_with(trimmed, options).map_err(|e| e.shifted(expr_offset))?;
        parts.push(TemplatePart::Expression {
            expr,
            span: start..close + 1,
            expr_offset,
        });
        pos = close + 1;
    }
    Ok(parts)
}

/// Position of the second `}` of the closing `}}`, scanning from `from`.
fn find_close(bytes: &[u8], from: usize) -> Option<usize> {
    let mut in_string = false;
    for i in from..bytes.len() {
        match bytes[i] {
            b'\'' => in_string = !in_string,
            b'}' if !in_string && i > from && bytes[i - 1] == b'}' => return Some(i),
            _ => {}
        }
    }
    None
}

fn literal(text: &str, span: Range<usize>) -> TemplatePart {
    TemplatePart::Literal {
        text: text[span.clone()].to_owned(),
        span,
    }
}

/// Replaces every `${{ … }}` in `text` with its value's string form (see
/// [`Value::to_display_string`]).
pub fn interpolate(text: &str, ctx: &EvalContext<'_>) -> Result<String, Error> {
    let mut out = String::with_capacity(text.len());
    for part in find_expressions(text)? {
        match part {
            TemplatePart::Literal { text, .. } => out.push_str(&text),
            TemplatePart::Expression { expr, .. } => {
                out.push_str(&evaluate(&expr, ctx)?.to_display_string());
            }
        }
    }
    Ok(out)
}

/// Evaluates a template the way GitHub evaluates a workflow value: a value
/// that is exactly one `${{ … }}` keeps the expression's type (an object
/// for `${{ fromJSON(…) }}`); anything else becomes an interpolated string.
pub fn evaluate_template(text: &str, ctx: &EvalContext<'_>) -> Result<Value, Error> {
    let mut parts = find_expressions(text)?;
    if let [TemplatePart::Expression { expr, .. }] = parts.as_slice() {
        return Ok(evaluate(expr, ctx)?);
    }
    if parts
        .iter()
        .all(|p| matches!(p, TemplatePart::Literal { .. }))
    {
        return Ok(Value::String(text.to_owned()));
    }
    let mut out = String::with_capacity(text.len());
    for part in parts.drain(..) {
        match part {
            TemplatePart::Literal { text, .. } => out.push_str(&text),
            TemplatePart::Expression { expr, .. } => {
                out.push_str(&evaluate(&expr, ctx)?.to_display_string());
            }
        }
    }
    Ok(Value::String(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Contexts;
    use serde_json::json;

    fn contexts() -> Contexts {
        let mut c = Contexts::new();
        c.insert(
            "github",
            Value::from(json!({"ref": "refs/heads/main", "run": 7})),
        );
        c.insert("matrix", Value::from(json!({"os": ["linux", "mac"]})));
        c
    }

    fn exprs(text: &str) -> Vec<String> {
        find_expressions(text)
            .expect("parses")
            .into_iter()
            .filter_map(|p| match p {
                TemplatePart::Expression { expr, .. } => Some(expr.source().to_owned()),
                TemplatePart::Literal { .. } => None,
            })
            .collect()
    }

    #[test]
    fn closing_braces_inside_strings_do_not_end_the_expression() {
        assert_eq!(exprs("a ${{ '}}' }} b"), ["'}}'"]);
        assert_eq!(exprs("${{ 'it''s }}' }}"), ["'it''s }}'"]);
        assert_eq!(exprs("${{ format('{0}}}', 1) }}"), ["format('{0}}}', 1)"]);
        assert_eq!(exprs("${{ 1 }}${{2}}"), ["1", "2"]);
        assert_eq!(exprs("no expressions {{ }}"), Vec::<String>::new());
    }

    #[test]
    fn spans_point_into_the_template() {
        let parts = find_expressions("ab ${{  github.ref }} c").expect("parses");
        assert_eq!(parts.len(), 3);
        let TemplatePart::Expression {
            span, expr_offset, ..
        } = &parts[1]
        else {
            panic!("expected an expression");
        };
        assert_eq!(span, &(3..21));
        assert_eq!(*expr_offset, 8);
        let err = find_expressions("x ${{ 1 == }}").expect_err("incomplete");
        assert_eq!(err.offset(), 8);
        let err = find_expressions("x ${{ a.b@ }}").expect_err("bad token");
        assert_eq!(err.offset(), 8);
    }

    #[test]
    fn malformed_templates() {
        let err = find_expressions("x ${{ 'a }}").expect_err("unclosed");
        assert_eq!(err.kind(), &ParseErrorKind::UnclosedExpression);
        assert_eq!(err.offset(), 2);
        let err = find_expressions("${{ }}").expect_err("empty");
        assert_eq!(err.kind(), &ParseErrorKind::EmptyExpression);
    }

    #[test]
    fn interpolation_coerces_to_strings() {
        let c = contexts();
        let ctx = EvalContext::new(&c);
        assert_eq!(
            interpolate(
                "ref=${{ github.ref }} run=${{ github.run }} m=${{ matrix.os }}!",
                &ctx
            )
            .expect("evaluates"),
            "ref=refs/heads/main run=7 m=Array!"
        );
        assert_eq!(interpolate("", &ctx).expect("empty"), "");
        assert!(matches!(
            interpolate("${{ fromJSON('x') }}", &ctx),
            Err(Error::Eval(_))
        ));
    }

    #[test]
    fn a_lone_expression_keeps_its_type() {
        let c = contexts();
        let ctx = EvalContext::new(&c);
        assert_eq!(
            evaluate_template("${{ matrix.os }}", &ctx).expect("value"),
            Value::from(json!(["linux", "mac"]))
        );
        assert_eq!(
            evaluate_template(" ${{ github.run }}", &ctx).expect("value"),
            Value::from(" 7")
        );
        assert_eq!(
            evaluate_template("plain", &ctx).expect("value"),
            Value::from("plain")
        );
    }
}
