//! Syntax of every `${{ }}` in the file, checked by walking the whole YAML
//! tree rather than the typed fields, so a string under any key (known or
//! not) is covered. Conditions (`if:`) without `${{` are parsed as one bare
//! expression, as GitHub evaluates them.
//!
//! Each expression is checked against the contexts and functions available
//! where it is ([`super::scope`]), inherited from the nearest node the
//! typed parsers marked. Errors point at the offending token inside the
//! scalar; the position is recovered from the scalar's span and style by
//! [`crate::locate`].

use std::collections::HashMap;

use kiln_expr::{ParseError, ParseErrorKind, ParseOptions, TemplatePart};

use crate::span::Span;
use crate::suggest::did_you_mean;
use crate::yaml::{Node, NodeKind};

use super::Ctx;
use super::read::has_expression;
use super::scope::{self, Scope};

/// Parse options per scope, built once per walk.
struct Options(HashMap<usize, ParseOptions>);

impl Options {
    fn get(&mut self, scope: &'static Scope) -> &ParseOptions {
        self.0
            .entry(std::ptr::from_ref(scope) as usize)
            .or_insert_with(|| ParseOptions {
                contexts: Some(scope.contexts.iter().map(|c| c.to_string()).collect()),
                status_functions: scope.status,
                hash_files: scope.hash_files,
            })
    }
}

pub(super) fn check_tree(ctx: &mut Ctx, root: &Node) {
    let mut options = Options(HashMap::new());
    let mut stack: Vec<(&Node, &'static Scope)> = vec![(root, &scope::ANY)];
    while let Some((node, inherited)) = stack.pop() {
        let scope = ctx.scope_of(node).unwrap_or(inherited);
        match &node.kind {
            NodeKind::Seq(items) => stack.extend(items.iter().map(|i| (i, scope))),
            NodeKind::Map(entries) => {
                for (key, value) in entries {
                    stack.push((key, scope));
                    stack.push((value, scope));
                }
            }
            NodeKind::Scalar(text, _) => check_scalar(ctx, &mut options, scope, node, text),
        }
    }
}

fn check_scalar(
    ctx: &mut Ctx,
    options: &mut Options,
    scope: &'static Scope,
    node: &Node,
    text: &str,
) {
    if ctx.is_condition(node) {
        check_condition(ctx, options.get(scope), scope, node, text);
    } else if has_expression(text)
        && let Err(e) = kiln_expr::find_expressions_with(text, options.get(scope))
    {
        report(ctx, scope, node, &e);
    }
}

/// An `if:` value: a bare expression, or text with `${{ }}`. Text around a
/// `${{ }}` makes the condition a non-empty string, so always true.
fn check_condition(
    ctx: &mut Ctx,
    options: &ParseOptions,
    scope: &'static Scope,
    node: &Node,
    text: &str,
) {
    if let Err(e) = kiln_expr::parse_condition(text, options) {
        report(ctx, scope, node, &e);
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

fn report(ctx: &mut Ctx, scope: &Scope, node: &Node, e: &ParseError) {
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
        ParseErrorKind::UnrecognizedNamedValue(name) => unknown_context(scope, name),
        ParseErrorKind::UnrecognizedFunction(name) => unknown_function(scope, name, e),
        _ => format!("invalid expression: {e}"),
    };
    ctx.error(Span { start, end }, message);
}

/// A context that does not exist, or is not available at this place.
fn unknown_context(scope: &Scope, name: &str) -> String {
    let available = scope.contexts.join(", ");
    if scope::ANY
        .contexts
        .iter()
        .any(|c| c.eq_ignore_ascii_case(name))
    {
        format!("context \"{name}\" is not available here; available: {available}")
    } else {
        let hint = did_you_mean(name, scope.contexts.iter().copied());
        format!("unknown context \"{name}\"{hint}")
    }
}

/// A function that does not exist, or is not available at this place.
fn unknown_function(scope: &Scope, name: &str, e: &ParseError) -> String {
    let status = ["success", "failure", "always", "cancelled"];
    if status.iter().any(|s| s.eq_ignore_ascii_case(name)) && !scope.status {
        format!("function \"{name}\" is only available in \"if\" conditions")
    } else if name.eq_ignore_ascii_case("hashFiles") && !scope.hash_files {
        "function \"hashFiles\" is only available in steps".to_string()
    } else {
        format!("invalid expression: {e}")
    }
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
        assert_eq!(
            diagnostics[0].message,
            "unknown context \"secret\"; did you mean \"secrets\"?"
        );
    }

    fn workflow(source: &str) -> Vec<String> {
        parse_workflow(source)
            .1
            .into_iter()
            .map(|d| d.message)
            .collect()
    }

    #[test]
    fn contexts_depend_on_the_place() {
        let messages = workflow(
            "on: push\njobs:\n  a:\n    if: matrix.os == 'linux'\n    runs-on: ${{ matrix.os }}\n    steps:\n      - run: echo\n        if: secrets.TOKEN != ''\n        env:\n          T: ${{ secrets.TOKEN }}\n",
        );
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(messages[0].starts_with("context \"matrix\" is not available here"));
        assert!(messages[1].starts_with("context \"secrets\" is not available here"));
    }

    #[test]
    fn functions_depend_on_the_place() {
        let messages = workflow(
            "on: push\njobs:\n  a:\n    runs-on: ${{ hashFiles('x') }}\n    steps:\n      - run: echo ${{ success() }}\n        if: success() && hashFiles('y') != ''\n",
        );
        assert_eq!(
            messages,
            [
                "function \"hashFiles\" is only available in steps",
                "function \"success\" is only available in \"if\" conditions",
            ]
        );
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
