//! Syntax of every `${{ }}` in the file, checked by walking the whole YAML
//! tree rather than the typed fields, so a string under any key (known or
//! not) is covered. Conditions (`if:`) without `${{` are parsed as one bare
//! expression, as GitHub evaluates them.
//!
//! Errors point at the offending token inside the scalar; the position is
//! recovered from the scalar's span and style by [`crate::locate`].

use kiln_expr::{ParseError, ParseErrorKind, ParseOptions, TemplatePart};

use crate::span::Span;
use crate::yaml::{Node, NodeKind};

use super::Ctx;
use super::read::has_expression;

/// Every context a workflow or action can name. Which of them a given key
/// may use is narrower, but a name outside this set is always an error.
const CONTEXTS: &[&str] = &[
    "github", "env", "vars", "job", "jobs", "steps", "runner", "secrets", "strategy", "matrix",
    "needs", "inputs",
];

pub(super) fn check_tree(ctx: &mut Ctx, root: &Node) {
    let options = ParseOptions::with_contexts(CONTEXTS.iter().copied());
    let mut stack = vec![root];
    while let Some(node) = stack.pop() {
        match &node.kind {
            NodeKind::Seq(items) => stack.extend(items),
            NodeKind::Map(entries) => {
                for (key, value) in entries {
                    stack.push(key);
                    stack.push(value);
                }
            }
            NodeKind::Scalar(text, _) => check_scalar(ctx, &options, node, text),
        }
    }
}

fn check_scalar(ctx: &mut Ctx, options: &ParseOptions, node: &Node, text: &str) {
    if ctx.is_condition(node) {
        check_condition(ctx, options, node, text);
    } else if has_expression(text) {
        if let Err(e) = kiln_expr::find_expressions_with(text, options) {
            report(ctx, node, &e);
        }
    }
}

/// An `if:` value: a bare expression, or text with `${{ }}`. Text around a
/// `${{ }}` makes the condition a non-empty string, so always true.
fn check_condition(ctx: &mut Ctx, options: &ParseOptions, node: &Node, text: &str) {
    if let Err(e) = kiln_expr::parse_condition(text, options) {
        report(ctx, node, &e);
        return;
    }
    let Ok(parts) = kiln_expr::find_expressions_with(text.trim(), options) else {
        return;
    };
    let expressions = parts
        .iter()
        .filter(|p| matches!(p, TemplatePart::Expression { .. }))
        .count();
    let has_text = parts.iter().any(|p| match p {
        TemplatePart::Literal { text, .. } => !text.trim().is_empty(),
        TemplatePart::Expression { .. } => false,
    });
    if expressions > 0 && (has_text || expressions > 1) {
        ctx.warning(
            node.span,
            "this condition is always true: text outside \"${{ }}\" makes it a non-empty string; \
             put the whole condition inside one \"${{ }}\" or leave \"${{ }}\" out",
        );
    }
}

fn report(ctx: &mut Ctx, node: &Node, e: &ParseError) {
    let range = e.span();
    let start = ctx.sources.value_pos(node, range.start);
    let mut end = ctx.sources.value_pos(node, range.end);
    if end <= start {
        end = start;
        end.col += 1;
    }
    let message = match e.kind() {
        ParseErrorKind::UnclosedExpression => {
            "unterminated expression: \"${{\" has no matching \"}}\"".to_string()
        }
        _ => format!("invalid expression: {e}"),
    };
    ctx.error(Span { start, end }, message);
}

#[cfg(test)]
mod tests {
    use crate::span::Pos;
    use crate::{Diagnostic, parse_workflow};

    fn errors(steps: &str) -> Vec<Diagnostic> {
        let source = format!("on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n{steps}");
        parse_workflow(&source).1
    }

    #[test]
    fn error_in_a_run_block_points_into_the_block() {
        // Line 6 is `run: |`; the bad expression is on the third line of
        // the block (file line 9); `==` starts at column 31.
        let diagnostics = errors(
            "      - run: |\n          echo one\n          echo two\n          echo ${{ github.ref == }}\n",
        );
        assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
        assert_eq!(diagnostics[0].span.start, Pos { line: 9, col: 31 });
        assert!(
            diagnostics[0].message.contains("after '=='"),
            "{}",
            diagnostics[0].message
        );
    }

    #[test]
    fn unterminated_expression() {
        let diagnostics = errors("      - run: echo ${{ github.sha\n");
        assert_eq!(diagnostics.len(), 1);
        assert_eq!(diagnostics[0].span.start, Pos { line: 6, col: 19 });
        assert!(
            diagnostics[0]
                .message
                .starts_with("unterminated expression")
        );
    }

    #[test]
    fn bare_if_is_an_expression() {
        let diagnostics = errors("      - run: echo\n        if: github.ref == 'x' ||\n");
        assert_eq!(diagnostics.len(), 1);
        assert_eq!(diagnostics[0].span.start, Pos { line: 7, col: 31 });
    }

    #[test]
    fn only_if_values_are_bare_expressions() {
        // `name` is plain text: `a || b` without `${{ }}` is not parsed.
        assert!(errors("      - run: echo\n        name: a || \n").is_empty());
    }

    #[test]
    fn unknown_context_names_are_errors() {
        let diagnostics = errors("      - run: echo ${{ secret.TOKEN }}\n");
        assert_eq!(diagnostics.len(), 1);
        assert!(diagnostics[0].message.contains("'secret'"));
    }

    #[test]
    fn text_around_an_if_expression_is_a_warning() {
        let diagnostics = errors("      - run: echo\n        if: ${{ false }} && true\n");
        assert_eq!(diagnostics.len(), 1);
        assert!(!diagnostics[0].is_error());
        let ok = errors("      - run: echo\n        if: ${{ false && true }}\n");
        assert!(ok.is_empty(), "{ok:?}");
    }
}
