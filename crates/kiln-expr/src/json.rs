//! `toJSON`: pretty-printed JSON with two-space indentation, in the exact
//! layout GitHub produces (`[]`/`{}` for empty collections, `"key": value`).

use std::borrow::Cow;

use crate::coerce;
use crate::error::EvalError;
use crate::memory::StrBuilder;
use crate::val::Val;
use crate::value::Value;

/// Serializes an evaluation result, failing if the text exceeds the memory budget.
pub(crate) fn to_json(val: &Val<'_>) -> Result<String, EvalError> {
    let mut out = StrBuilder::new();
    match val {
        Val::One(v) => write_value(v, 0, &mut out)?,
        Val::Filtered(items) => write_array(items.iter().map(Cow::as_ref), 0, &mut out)?,
    }
    Ok(out.finish())
}

fn write_value(v: &Value, indent: usize, out: &mut StrBuilder) -> Result<(), EvalError> {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&coerce::number_to_json(*n)),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => write_array(items.iter(), indent, out),
        Value::Object(obj) => {
            if obj.is_empty() {
                return out.push_str("{}");
            }
            out.push('{')?;
            for (i, (key, value)) in obj.iter().enumerate() {
                if i > 0 {
                    out.push(',')?;
                }
                newline(indent + 1, out)?;
                write_string(key, out)?;
                out.push_str(": ")?;
                write_value(value, indent + 1, out)?;
            }
            newline(indent, out)?;
            out.push('}')
        }
    }
}

fn write_array<'v>(
    items: impl ExactSizeIterator<Item = &'v Value>,
    indent: usize,
    out: &mut StrBuilder,
) -> Result<(), EvalError> {
    if items.len() == 0 {
        return out.push_str("[]");
    }
    out.push('[')?;
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(',')?;
        }
        newline(indent + 1, out)?;
        write_value(item, indent + 1, out)?;
    }
    newline(indent, out)?;
    out.push(']')
}

fn newline(indent: usize, out: &mut StrBuilder) -> Result<(), EvalError> {
    out.push('\n')?;
    for _ in 0..indent {
        out.push_str("  ")?;
    }
    Ok(())
}

/// Escapes like `JSON.stringify`: quotes, backslashes and control characters.
fn write_string(s: &str, out: &mut StrBuilder) -> Result<(), EvalError> {
    let mut escaped = String::with_capacity(s.len() + 2);
    escaped.push('"');
    for c in s.chars() {
        match c {
            '"' => escaped.push_str("\\\""),
            '\\' => escaped.push_str("\\\\"),
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            '\t' => escaped.push_str("\\t"),
            '\u{8}' => escaped.push_str("\\b"),
            '\u{c}' => escaped.push_str("\\f"),
            c if u32::from(c) < 0x20 => escaped.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => escaped.push(c),
        }
    }
    escaped.push('"');
    out.push_str(&escaped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pretty(j: serde_json::Value) -> String {
        to_json(&Val::owned(Value::from(j))).expect("serializes")
    }

    #[test]
    fn layout_matches_github() {
        assert_eq!(pretty(json!([])), "[]");
        assert_eq!(pretty(json!({})), "{}");
        assert_eq!(pretty(json!("a\"b\\c\n\u{1}")), r#""a\"b\\c\n\u0001""#);
        assert_eq!(
            pretty(json!({"a": [1, {"b": null}], "c": {}})),
            "{\n  \"a\": [\n    1,\n    {\n      \"b\": null\n    }\n  ],\n  \"c\": {}\n}"
        );
    }
}
