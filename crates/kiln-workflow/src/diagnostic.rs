//! Problems found in a file, printed the way rustc and actionlint print them:
//! `path:line:col: error: message`, then the offending line with a caret.
//!
//! Hand-written rather than miette: the first line must be the
//! `file:line:col:` form editors and CI log scanners recognise, and the
//! renderer is a dozen lines.

use std::fmt::Write as _;

use serde::Serialize;

use crate::span::Span;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub span: Span,
    pub message: String,
}

impl Diagnostic {
    pub fn error(span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            span,
            message: message.into(),
        }
    }

    pub fn warning(span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            span,
            message: message.into(),
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Renders one diagnostic against the file it came from.
    pub fn render(&self, path: &str, source: &str) -> String {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let start = self.span.start;
        let mut out = format!(
            "{path}:{}:{}: {severity}: {}\n",
            start.line, start.col, self.message
        );
        let Some(line) = source.lines().nth(start.line.saturating_sub(1)) else {
            return out;
        };
        let number = start.line.to_string();
        let gutter = " ".repeat(number.len());
        // Underline to the span's end on the same line, at least one caret.
        let line_chars = line.chars().count();
        let first = start.col.saturating_sub(1).min(line_chars);
        let last = if self.span.end.line == start.line {
            self.span.end.col.saturating_sub(1).min(line_chars)
        } else {
            line_chars
        };
        let width = last.saturating_sub(first).max(1);
        let _ = writeln!(out, "{gutter} |");
        let _ = writeln!(out, "{number} | {line}");
        let _ = writeln!(out, "{gutter} | {}{}", " ".repeat(first), "^".repeat(width));
        out
    }
}

/// Renders all diagnostics of one file, sorted by position.
pub fn render_all(path: &str, source: &str, diagnostics: &[Diagnostic]) -> String {
    let mut sorted: Vec<&Diagnostic> = diagnostics.iter().collect();
    sorted.sort_by_key(|d| (d.span.start, d.severity));
    sorted.iter().map(|d| d.render(path, source)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::Pos;

    #[test]
    fn renders_path_line_col_and_caret() {
        let source = "jobs:\n  build:\n    runs_on: x\n";
        let d = Diagnostic::error(
            Span {
                start: Pos { line: 3, col: 5 },
                end: Pos { line: 3, col: 12 },
            },
            "unknown key \"runs_on\"",
        );
        assert_eq!(
            d.render("ci.yml", source),
            "ci.yml:3:5: error: unknown key \"runs_on\"\n  |\n3 |     runs_on: x\n  |     ^^^^^^^\n"
        );
    }
}
