//! The built-in functions that only look at their arguments. Functions that
//! evaluate arguments lazily (`format`, `case`) or ask the host live in
//! [`crate::eval`]; this module provides their pure parts.

use std::ops::Range;

use crate::coerce;
use crate::error::EvalError;
use crate::memory::StrBuilder;
use crate::val::{Scalar, Val, loose_eq};
use crate::value::Value;

/// `contains(search, item)`: a case-insensitive substring test for scalars,
/// or loose-equality membership for arrays.
pub(crate) fn contains(search: &Val<'_>, item: &Val<'_>) -> bool {
    if search.is_primitive() {
        return item.is_primitive() && fold(&search.display()).contains(&fold(&item.display()));
    }
    search.array_items().is_some_and(|items| {
        let needle = item.scalar();
        items
            .into_iter()
            .any(|v| loose_eq(needle, Scalar::of(v, true)))
    })
}

/// `startsWith(search, prefix)`, ignoring case; false for arrays and objects.
pub(crate) fn starts_with(search: &Val<'_>, prefix: &Val<'_>) -> bool {
    search.is_primitive()
        && prefix.is_primitive()
        && fold(&search.display()).starts_with(&fold(&prefix.display()))
}

/// `endsWith(search, suffix)`, ignoring case; false for arrays and objects.
pub(crate) fn ends_with(search: &Val<'_>, suffix: &Val<'_>) -> bool {
    search.is_primitive()
        && suffix.is_primitive()
        && fold(&search.display()).ends_with(&fold(&suffix.display()))
}

fn fold(s: &str) -> String {
    coerce::fold(s)
}

/// `join(array, separator = ',')`. A scalar is returned as its string form;
/// an object joins to the empty string. A non-scalar separator is ignored.
pub(crate) fn join(array: &Val<'_>, separator: Option<&Val<'_>>) -> Result<String, EvalError> {
    if array.is_primitive() {
        return Ok(array.display().into_owned());
    }
    let Some(items) = array.array_items() else {
        return Ok(String::new());
    };
    let separator = match separator {
        Some(s) if s.is_primitive() => s.display().into_owned(),
        _ => ",".to_owned(),
    };
    let mut out = StrBuilder::new();
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push_str(&separator)?;
        }
        match item {
            Value::String(s) => out.push_str(s)?,
            other => out.push_str(&other.to_display_string())?,
        }
    }
    Ok(out.finish())
}

/// `fromJSON(text)`.
pub(crate) fn from_json(text: &Val<'_>) -> Result<Value, EvalError> {
    let text = text.display();
    if text.trim_matches(coerce::is_js_whitespace).is_empty() {
        return Err(EvalError::FromJsonEmpty);
    }
    serde_json::from_str::<serde_json::Value>(&text)
        .map(Value::from)
        .map_err(EvalError::FromJson)
}

/// A piece of a parsed `format` string.
#[derive(Debug, PartialEq)]
pub(crate) enum Segment {
    /// Text copied from the format string (a byte range into it).
    Text(Range<usize>),
    /// `{index}` or `{index:specifiers}`.
    Arg { index: usize, specifiers: String },
}

/// Parses a `format` string into segments, checking every placeholder against
/// the number of supplied arguments before any argument is evaluated (as
/// GitHub does). `{{` and `}}` are literal braces.
pub(crate) fn parse_format(fmt: &str, arg_count: usize) -> Result<Vec<Segment>, EvalError> {
    let invalid = || EvalError::InvalidFormat(fmt.to_owned());
    let bytes = fmt.as_bytes();
    let mut segments = Vec::new();
    let mut i = 0;
    while i < fmt.len() {
        let lbrace = fmt[i..].find('{').map(|p| p + i);
        let rbrace = fmt[i..].find('}').map(|p| p + i);
        match (lbrace, rbrace) {
            (Some(l), r) if r.is_none_or(|r| r > l) => {
                if bytes.get(l + 1) == Some(&b'{') {
                    segments.push(Segment::Text(i..l + 1));
                    i = l + 2;
                    continue;
                }
                // `{` digits [`:` specifiers] `}`
                if r.is_none_or(|r| r <= l + 1) {
                    return Err(invalid());
                }
                let digits_end = fmt[l + 1..]
                    .find(|c: char| !c.is_ascii_digit())
                    .map_or(fmt.len(), |p| p + l + 1);
                let index: u8 = fmt[l + 1..digits_end].parse().map_err(|_| invalid())?;
                let (specifiers, close) = read_specifiers(fmt, digits_end).ok_or_else(invalid)?;
                if usize::from(index) >= arg_count {
                    return Err(EvalError::FormatArgumentCount(fmt.to_owned()));
                }
                if l > i {
                    segments.push(Segment::Text(i..l));
                }
                segments.push(Segment::Arg {
                    index: usize::from(index),
                    specifiers,
                });
                i = close + 1;
            }
            (_, Some(r)) => {
                if bytes.get(r + 1) != Some(&b'}') {
                    return Err(invalid());
                }
                segments.push(Segment::Text(i..r + 1));
                i = r + 2;
            }
            (_, None) => {
                segments.push(Segment::Text(i..fmt.len()));
                break;
            }
        }
    }
    Ok(segments)
}

/// Reads `}` or `:specifiers}` (with `}}` escapes) at `start`; returns the
/// specifiers and the position of the closing brace.
fn read_specifiers(fmt: &str, start: usize) -> Option<(String, usize)> {
    let bytes = fmt.as_bytes();
    match bytes.get(start) {
        Some(b'}') => return Some((String::new(), start)),
        Some(b':') => {}
        _ => return None,
    }
    let mut specifiers = String::new();
    let mut chars = fmt[start + 1..].char_indices().peekable();
    while let Some((offset, c)) = chars.next() {
        if c != '}' {
            specifiers.push(c);
        } else if chars.peek().is_some_and(|&(_, next)| next == '}') {
            chars.next();
            specifiers.push('}');
        } else {
            return Some((specifiers, start + 1 + offset));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn val(j: serde_json::Value) -> Val<'static> {
        Val::One(Cow::Owned(Value::from(j)))
    }

    #[test]
    fn format_segments() {
        use Segment::*;
        assert_eq!(
            parse_format("a{0}b{{c}}{1:x}}y}", 2).expect("valid"),
            vec![
                Text(0..1),
                Arg {
                    index: 0,
                    specifiers: String::new()
                },
                Text(4..6),
                Text(7..9),
                Arg {
                    index: 1,
                    specifiers: "x}y".into()
                },
            ]
        );
    }

    #[test]
    fn format_errors() {
        for bad in [
            "{0", "{0}}", "0}", "{{0}", "}0{", "}{0}", "{0}{", "{}", "{a}", "{256}",
        ] {
            assert!(
                matches!(parse_format(bad, 9), Err(EvalError::InvalidFormat(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_format("{0}{1}", 1),
            Err(EvalError::FormatArgumentCount(_))
        ));
    }

    #[test]
    fn contains_and_affixes() {
        use serde_json::json;
        assert!(contains(&val(json!("abCdEf")), &val(json!("cDe"))));
        assert!(contains(&val(json!("1234")), &val(json!(23))));
        assert!(contains(&val(json!(["a", 2])), &val(json!("2"))));
        assert!(!contains(&val(json!({"a": 1})), &val(json!("a"))));
        assert!(starts_with(&val(json!("ς_x")), &val(json!("Σ"))));
        assert!(ends_with(&val(json!("x_Ü")), &val(json!("ü"))));
        assert!(!ends_with(&val(json!("x_i")), &val(json!("İ"))));
    }

    #[test]
    fn join_rules() {
        use serde_json::json;
        let arr = val(json!([null, true, 1.5, "a", [], {}]));
        assert_eq!(join(&arr, None).expect("join"), ",true,1.5,a,Array,Object");
        assert_eq!(
            join(&arr, Some(&val(json!([])))).expect("join"),
            ",true,1.5,a,Array,Object"
        );
        assert_eq!(
            join(&val(json!(["a", "b"])), Some(&val(json!(1)))).expect("join"),
            "a1b"
        );
        assert_eq!(join(&val(json!({"a": 1})), None).expect("join"), "");
        assert_eq!(join(&val(json!(2)), None).expect("join"), "2");
    }

    #[test]
    fn from_json_errors() {
        use serde_json::json;
        assert!(matches!(
            from_json(&val(json!("  "))),
            Err(EvalError::FromJsonEmpty)
        ));
        assert!(matches!(
            from_json(&val(json!("{"))),
            Err(EvalError::FromJson(_))
        ));
        assert_eq!(
            from_json(&val(json!("[1]"))).expect("json"),
            Value::from(json!([1]))
        );
    }
}
