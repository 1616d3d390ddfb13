//! Typed readers over YAML nodes. Each reports a wrong type at the value's
//! span and returns `None`, so callers simply skip what they cannot use.
//!
//! Where GitHub expects a string it also accepts any scalar and converts it
//! (`true` → "true", `3.10` → "3.1", null → ""); the readers do the same and
//! warn when the conversion changes what the user wrote.

use crate::model::{BoolOrExpr, NumberOrExpr, StringMap};
use crate::span::Spanned;
use crate::suggest::{closest, did_you_mean};
use crate::yaml::{Node, NodeKind, ScalarValue};

use super::Ctx;

/// One `key: value` entry of a mapping.
#[derive(Clone, Copy)]
pub(crate) struct Field<'n> {
    pub name: &'n str,
    pub key: &'n Node,
    pub value: &'n Node,
}

/// True when a string contains an expression, so its value is only known
/// at run time.
pub(crate) fn has_expression(s: &str) -> bool {
    s.contains("${{")
}

/// Whether a key of mapping `node` looks like a typo of `name`. Such a key
/// was already reported as unknown with "did you mean", so a "missing
/// `name`" error would only repeat it.
pub(crate) fn has_near_key(node: &Node, name: &str) -> bool {
    node.as_map().is_some_and(|entries| {
        entries.iter().any(|(k, _)| {
            k.as_scalar()
                .is_some_and(|k| k != name && closest(k, [name]).is_some())
        })
    })
}

/// GitHub's rule for job, step, input and output ids:
/// `^[A-Za-z_][A-Za-z0-9_-]*$`.
pub(crate) fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The message for an id that breaks [`is_identifier`].
pub(crate) fn invalid_identifier(what: &str, id: &str) -> String {
    format!(
        "invalid {what} \"{id}\": it must start with a letter or \"_\" and contain only letters, digits, \"-\" and \"_\""
    )
}

/// GitHub's string form of a number: integers without a fraction, others
/// in their shortest round-trip form.
pub(crate) fn format_number(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

impl Ctx<'_> {
    /// Reports `expected <expected>, found <what the node is>`.
    pub(crate) fn mismatch(&mut self, node: &Node, expected: &str) {
        self.error(
            node.span,
            format!("expected {expected}, found {}", node.describe()),
        );
    }

    /// The entries of a mapping with string keys; anything else is reported.
    pub(crate) fn entries<'n>(&mut self, node: &'n Node) -> Vec<Field<'n>> {
        let Some(map) = node.as_map() else {
            self.mismatch(node, "a mapping");
            return Vec::new();
        };
        let mut out = Vec::with_capacity(map.len());
        for (key, value) in map {
            match key.as_scalar() {
                Some("") => self.error(key.span, "expected a non-empty key"),
                Some(name) => out.push(Field { name, key, value }),
                None => self.error(
                    key.span,
                    format!("expected a string key, found {}", key.describe()),
                ),
            }
        }
        out
    }

    /// The entries whose key is in `known`; other keys are errors with a
    /// suggestion. `owner` names the mapping, e.g. `job "build"`.
    pub(crate) fn fields<'n>(
        &mut self,
        node: &'n Node,
        known: &[&str],
        owner: &str,
    ) -> Vec<Field<'n>> {
        self.known_fields(node, known, owner, true)
    }

    /// Like [`Ctx::fields`], but unknown keys are only warnings (for files
    /// GitHub reads loosely, such as `action.yml`).
    pub(crate) fn fields_lenient<'n>(
        &mut self,
        node: &'n Node,
        known: &[&str],
        owner: &str,
    ) -> Vec<Field<'n>> {
        self.known_fields(node, known, owner, false)
    }

    fn known_fields<'n>(
        &mut self,
        node: &'n Node,
        known: &[&str],
        owner: &str,
        strict: bool,
    ) -> Vec<Field<'n>> {
        let mut fields = self.entries(node);
        fields.retain(|f| {
            if known.contains(&f.name) {
                return true;
            }
            let hint = did_you_mean(f.name, known.iter().copied());
            let message = format!("unknown key \"{}\" in {owner}{hint}", f.name);
            if strict {
                self.error(f.key.span, message);
            } else {
                self.warning(f.key.span, message);
            }
            false
        });
        fields
    }

    /// A scalar as GitHub's string: any scalar is accepted and converted.
    pub(crate) fn string(&mut self, node: &Node) -> Option<Spanned<String>> {
        let Some(value) = node.scalar_value() else {
            self.mismatch(node, "a string");
            return None;
        };
        let raw = node.as_scalar().unwrap_or_default();
        let text = match value {
            ScalarValue::Str(s) => return Some(Spanned::new(s.to_string(), node.span)),
            ScalarValue::Null => return Some(Spanned::new(String::new(), node.span)),
            ScalarValue::Bool(b) => b.to_string(),
            ScalarValue::Int(i) => i.to_string(),
            ScalarValue::Float(f) => format_number(f),
        };
        self.warn_converted(node, raw, &text);
        Some(Spanned::new(text, node.span))
    }

    /// Warns when YAML reads a plain scalar as a number or boolean whose
    /// string form differs from what was written (`3.10` → "3.1").
    pub(crate) fn warn_converted(&mut self, node: &Node, raw: &str, text: &str) {
        if raw != text {
            let kind = match node.scalar_value() {
                Some(ScalarValue::Bool(_)) => "boolean",
                _ => "number",
            };
            self.warning(
                node.span,
                format!(
                    "the {kind} {raw} becomes the string \"{text}\"; quote it to keep \"{raw}\""
                ),
            );
        }
    }

    /// A string that must not be empty.
    pub(crate) fn non_empty_string(&mut self, node: &Node) -> Option<Spanned<String>> {
        let s = self.string(node)?;
        if s.value.is_empty() {
            self.error(node.span, "expected a non-empty string");
            return None;
        }
        Some(s)
    }

    /// A string or a sequence of strings (`branches: main` or `[main, dev]`).
    pub(crate) fn strings(&mut self, node: &Node) -> Option<Vec<Spanned<String>>> {
        match &node.kind {
            NodeKind::Seq(_) => self.string_seq(node),
            NodeKind::Scalar(..) => Some(vec![self.non_empty_string(node)?]),
            NodeKind::Map(_) => {
                self.mismatch(node, "a string or a sequence of strings");
                None
            }
        }
    }

    /// A sequence of non-empty strings.
    pub(crate) fn string_seq(&mut self, node: &Node) -> Option<Vec<Spanned<String>>> {
        let Some(items) = node.as_seq() else {
            self.mismatch(node, "a sequence of strings");
            return None;
        };
        Some(
            items
                .iter()
                .filter_map(|item| self.non_empty_string(item))
                .collect(),
        )
    }

    /// A literal boolean.
    pub(crate) fn bool(&mut self, node: &Node) -> Option<bool> {
        match node.scalar_value() {
            Some(ScalarValue::Bool(b)) => Some(b),
            _ => {
                self.not_a_bool(node);
                None
            }
        }
    }

    /// `expected a boolean`, with a hint for YAML 1.1 spellings (`yes`).
    fn not_a_bool(&mut self, node: &Node) {
        let mut message = format!("expected a boolean, found {}", node.describe());
        if let Some(ScalarValue::Str(s)) = node.scalar_value()
            && ["yes", "no", "on", "off", "y", "n"].contains(&s.to_ascii_lowercase().as_str())
        {
            message.push_str(&format!(
                "; \"{s}\" is a string in YAML 1.2, write true or false"
            ));
        }
        self.error(node.span, message);
    }

    /// A boolean, or a string with an expression evaluated at run time.
    pub(crate) fn bool_or_expr(&mut self, node: &Node) -> Option<BoolOrExpr> {
        match node.scalar_value() {
            Some(ScalarValue::Bool(b)) => Some(BoolOrExpr::Bool(b)),
            Some(ScalarValue::Str(s)) if has_expression(s) => {
                Some(BoolOrExpr::Expr(Spanned::new(s.to_string(), node.span)))
            }
            _ => {
                self.not_a_bool(node);
                None
            }
        }
    }

    /// A number, or a string with an expression evaluated at run time.
    pub(crate) fn number_or_expr(&mut self, node: &Node) -> Option<NumberOrExpr> {
        match node.scalar_value() {
            Some(ScalarValue::Int(i)) => Some(NumberOrExpr::Number(i as f64)),
            Some(ScalarValue::Float(f)) if f.is_finite() => Some(NumberOrExpr::Number(f)),
            Some(ScalarValue::Str(s)) if has_expression(s) => {
                Some(NumberOrExpr::Expr(Spanned::new(s.to_string(), node.span)))
            }
            _ => {
                self.mismatch(node, "a number");
                None
            }
        }
    }

    /// A positive number (or expression), such as `timeout-minutes`.
    pub(crate) fn positive_number(&mut self, node: &Node, integer: bool) -> Option<NumberOrExpr> {
        let n = self.number_or_expr(node)?;
        if let NumberOrExpr::Number(f) = n {
            if f <= 0.0 {
                self.error(node.span, "expected a positive number");
                return None;
            }
            if integer && f.fract() != 0.0 {
                self.error(node.span, "expected a whole number");
                return None;
            }
        }
        Some(n)
    }

    /// `env:`, `with:`, `outputs:`: names to strings.
    pub(crate) fn string_map(&mut self, node: &Node) -> StringMap {
        if node.as_scalar().is_some_and(has_expression) {
            self.error(
                node.span,
                "expected a mapping; kiln does not support an expression in place of a whole mapping",
            );
            return StringMap::new();
        }
        let mut map = StringMap::new();
        for field in self.entries(node) {
            if let Some(value) = self.string(field.value) {
                map.insert(field.name.to_string(), value);
            }
        }
        map
    }

    /// A string that must be one of `allowed` (e.g. a permission level).
    pub(crate) fn one_of(
        &mut self,
        node: &Node,
        allowed: &[&str],
        what: &str,
    ) -> Option<Spanned<String>> {
        let s = self.string(node)?;
        if allowed.contains(&s.value.as_str()) {
            return Some(s);
        }
        let list = allowed
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ");
        self.error(
            node.span,
            format!(
                "\"{}\" is not a valid {what}; expected one of {list}",
                s.value
            ),
        );
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_format_like_github() {
        assert_eq!(format_number(3.1), "3.1");
        assert_eq!(format_number(20.0), "20");
        assert_eq!(format_number(-7.0), "-7");
        assert_eq!(format_number(0.5), "0.5");
    }
}
