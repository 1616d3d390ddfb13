//! Matrix expansion: `strategy.matrix` dimensions, `include` and `exclude`
//! into the list of job configurations, and their default display names.
//!
//! The algorithm is GitHub's (its workflow parser's `MatrixBuilder`):
//! 1. the cross product of the dimensions, the first dimension varying
//!    slowest;
//! 2. a product entry is dropped if any `exclude` entry matches it;
//! 3. each `include` entry is split into *filter* keys (names of dimensions)
//!    and *extra* keys (anything else). Every remaining product entry that the
//!    filter matches gets the extras merged in, later entries overwriting
//!    earlier ones' extras; dimension values are never overwritten;
//! 4. include entries that matched no product entry are appended, in order,
//!    as configurations of their own (filter keys first, then extras). They
//!    get no other include's extras.
//!
//! "Matches" compares every leaf of the include/exclude value with the value
//! at the same path in the configuration, using the expression language's
//! loose `==` (case-insensitive strings, `'12' == 12`), so a nested object
//! matches partially. Keys are case-insensitive, as in the `matrix` context.
//!
//! Errors, as on GitHub: a dimension with no values, an empty or unknown
//! `exclude` key, an empty `include` entry, more than 256 configurations.
//! A matrix with neither dimensions nor `include` yields one empty
//! configuration (the job runs once); if `exclude` removes every
//! configuration the result is empty and the job has nothing to run.
//!
//! Expressions inside the matrix must already be evaluated: this module takes
//! plain JSON values.

use indexmap::IndexMap;
use serde_json::{Map, Value};
use thiserror::Error;

/// GitHub's limit of jobs one matrix may produce.
pub const MAX_CONFIGURATIONS: usize = 256;

/// GitHub truncates generated job names to this many characters.
const MAX_NAME_CHARS: usize = 100;

/// The cross product is not materialised beyond this, whatever `exclude`
/// might remove afterwards.
const MAX_PRODUCT: usize = MAX_CONFIGURATIONS * MAX_CONFIGURATIONS;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MatrixError {
    #[error("matrix vector `{0}` does not contain any values")]
    EmptyDimension(String),
    #[error("matrix exclude filter must not be empty")]
    EmptyExclude,
    #[error("matrix exclude key `{0}` does not match any key within the matrix")]
    UnknownExcludeKey(String),
    #[error("matrix include mapping does not contain any values")]
    EmptyInclude,
    /// The number of configurations, or of cross-product combinations when
    /// that alone is far over the limit.
    #[error("the matrix has {0} combinations, more than the limit of {MAX_CONFIGURATIONS} jobs")]
    TooManyConfigurations(usize),
}

/// One job configuration of a matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Combination {
    /// The job's `matrix` context.
    pub values: Map<String, Value>,
    /// The values that make up the default display name: the cross-product
    /// values (not `include` extras), or all values of an appended include.
    name_segments: Vec<String>,
}

impl Combination {
    /// The strings shown in parentheses after the job name, in order.
    pub fn name_segments(&self) -> &[String] {
        &self.name_segments
    }

    fn new(values: Map<String, Value>) -> Self {
        let mut name_segments = Vec::new();
        for value in values.values() {
            collect_segments(value, &mut name_segments);
        }
        Combination {
            values,
            name_segments,
        }
    }
}

/// The job name GitHub generates for a matrix configuration:
/// `base (v1, v2, …)`, truncated to 100 characters with `...`. `base` is the
/// job's `name:` when it is a literal, else the job id; a `name:` with
/// expressions is interpolated by the caller instead (GitHub then adds no
/// suffix).
pub fn default_display_name(base: &str, combination: &Combination) -> String {
    let name = if combination.name_segments.is_empty() {
        base.to_owned()
    } else {
        format!("{base} ({})", combination.name_segments.join(", "))
    };
    if name.chars().count() > MAX_NAME_CHARS {
        let mut truncated: String = name.chars().take(MAX_NAME_CHARS - 3).collect();
        truncated.push_str("...");
        truncated
    } else {
        name
    }
}

/// Expands a matrix. See the module documentation for the rules.
pub fn expand(
    dimensions: &IndexMap<String, Vec<Value>>,
    include: &[Map<String, Value>],
    exclude: &[Map<String, Value>],
) -> Result<Vec<Combination>, MatrixError> {
    if dimensions.is_empty() && include.is_empty() {
        return Ok(vec![Combination::new(Map::new())]);
    }
    let is_dimension = |key: &str| dimensions.keys().any(|d| d.eq_ignore_ascii_case(key));

    for (name, values) in dimensions {
        if values.is_empty() {
            return Err(MatrixError::EmptyDimension(name.clone()));
        }
    }
    let mut exclude_filters = Vec::with_capacity(exclude.len());
    for entry in exclude {
        if entry.is_empty() {
            return Err(MatrixError::EmptyExclude);
        }
        if let Some(key) = entry.keys().find(|k| !is_dimension(k)) {
            return Err(MatrixError::UnknownExcludeKey(key.clone()));
        }
        exclude_filters.push(Filter::new(entry.iter()));
    }
    let mut includes = Vec::with_capacity(include.len());
    for entry in include {
        if entry.is_empty() {
            return Err(MatrixError::EmptyInclude);
        }
        let (filter, extra): (Vec<_>, Vec<_>) = entry.iter().partition(|(k, _)| is_dimension(k));
        includes.push(IncludeEntry {
            filter: Filter::new(filter.iter().copied()),
            filter_values: filter,
            extra,
            matched: false,
        });
    }

    let product_size = if dimensions.is_empty() {
        0
    } else {
        let size = dimensions
            .values()
            .fold(1usize, |acc, v| acc.saturating_mul(v.len()));
        if size > MAX_PRODUCT {
            return Err(MatrixError::TooManyConfigurations(size));
        }
        size
    };

    let mut result = Vec::new();
    for index in 0..product_size {
        let vector = product_entry(dimensions, index, product_size);
        if exclude_filters.iter().any(|f| f.matches(&vector)) {
            continue;
        }
        let mut extras: Map<String, Value> = Map::new();
        for entry in &mut includes {
            if entry.filter.matches(&vector) {
                entry.matched = true;
                for (key, value) in &entry.extra {
                    insert_case_insensitive(&mut extras, key, value);
                }
            }
        }
        let mut combination = Combination::new(vector);
        combination.values.extend(extras);
        result.push(combination);
    }
    for entry in includes.iter().filter(|e| !e.matched) {
        let values = entry
            .filter_values
            .iter()
            .chain(&entry.extra)
            .map(|(k, v)| ((*k).clone(), (*v).clone()))
            .collect();
        result.push(Combination::new(values));
    }

    if result.len() > MAX_CONFIGURATIONS {
        return Err(MatrixError::TooManyConfigurations(result.len()));
    }
    Ok(result)
}

struct IncludeEntry<'a> {
    filter: Filter<'a>,
    filter_values: Vec<(&'a String, &'a Value)>,
    extra: Vec<(&'a String, &'a Value)>,
    matched: bool,
}

/// The `index`-th entry of the cross product, first dimension slowest.
fn product_entry(
    dimensions: &IndexMap<String, Vec<Value>>,
    index: usize,
    product_size: usize,
) -> Map<String, Value> {
    let mut block = product_size;
    let mut entry = Map::new();
    for (name, values) in dimensions {
        block /= values.len();
        let value = &values[(index / block) % values.len()];
        entry.insert(name.clone(), value.clone());
    }
    entry
}

fn insert_case_insensitive(map: &mut Map<String, Value>, key: &str, value: &Value) {
    let existing = map.keys().find(|k| k.eq_ignore_ascii_case(key)).cloned();
    map.insert(existing.unwrap_or_else(|| key.to_owned()), value.clone());
}

/// A path step into a configuration value.
#[derive(Debug, Clone, Copy)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// The leaves of an include/exclude value, each compared with the value at
/// the same path. Empty objects and arrays contribute no leaf.
struct Filter<'a> {
    leaves: Vec<(Vec<Step<'a>>, &'a Value)>,
}

impl<'a> Filter<'a> {
    fn new(entries: impl Iterator<Item = (&'a String, &'a Value)>) -> Self {
        let mut leaves = Vec::new();
        for (key, value) in entries {
            collect_leaves(vec![Step::Key(key)], value, &mut leaves);
        }
        Filter { leaves }
    }

    fn matches(&self, configuration: &Map<String, Value>) -> bool {
        self.leaves.iter().all(|(path, expected)| {
            let actual = lookup(configuration, path);
            loose_equals(actual.unwrap_or(&Value::Null), expected)
        })
    }
}

fn collect_leaves<'a>(
    path: Vec<Step<'a>>,
    value: &'a Value,
    out: &mut Vec<(Vec<Step<'a>>, &'a Value)>,
) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let mut child_path = path.clone();
                child_path.push(Step::Key(key));
                collect_leaves(child_path, child, out);
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                let mut child_path = path.clone();
                child_path.push(Step::Index(index));
                collect_leaves(child_path, child, out);
            }
        }
        leaf => out.push((path, leaf)),
    }
}

fn get_case_insensitive<'v>(map: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    map.get(key).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn lookup<'v>(configuration: &'v Map<String, Value>, path: &[Step<'_>]) -> Option<&'v Value> {
    let (first, rest) = path.split_first()?;
    let Step::Key(key) = first else {
        return None;
    };
    let mut current = get_case_insensitive(configuration, key)?;
    for step in rest {
        current = match (step, current) {
            (Step::Key(key), Value::Object(map)) => get_case_insensitive(map, key)?,
            (Step::Index(i), Value::Array(items)) => items.get(*i)?,
            _ => return None,
        };
    }
    Some(current)
}

/// The expression language's `==` for a scalar `expected`: same kinds compare
/// directly (strings case-insensitively), different scalar kinds compare as
/// numbers, containers never equal a scalar.
fn loose_equals(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(a), Value::Bool(b)) => a == b,
        (Value::String(a), Value::String(b)) => a.to_lowercase() == b.to_lowercase(),
        (Value::Object(_) | Value::Array(_), _) | (_, Value::Object(_) | Value::Array(_)) => false,
        (a, b) => to_number(a) == to_number(b),
    }
}

/// Scalar to number, as the expression language coerces (NaN on failure).
fn to_number(value: &Value) -> f64 {
    match value {
        Value::Null => 0.0,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        Value::String(s) => parse_number(s),
        Value::Array(_) | Value::Object(_) => f64::NAN,
    }
}

fn parse_number(text: &str) -> f64 {
    let t = text.trim();
    if t.is_empty() {
        return 0.0;
    }
    let radix = |prefix: &str, radix: u32| {
        t.strip_prefix(prefix)
            .and_then(|digits| i64::from_str_radix(digits, radix).ok())
            .map(|n| n as f64)
    };
    if let Some(n) = radix("0x", 16).or_else(|| radix("0o", 8)) {
        return n;
    }
    match t.trim_start_matches(['+', '-']) {
        "Infinity" => {
            if t.starts_with('-') {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            }
        }
        // Rust also accepts "inf" and "nan"; the expression language doesn't.
        rest if rest
            .chars()
            .all(|c| c.is_ascii_digit() || ".eE+-".contains(c)) =>
        {
            t.parse().unwrap_or(f64::NAN)
        }
        _ => f64::NAN,
    }
}

/// Display-name segments of a value, depth first: strings, numbers and
/// booleans; nulls and empty strings are skipped.
fn collect_segments(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Null => {}
        Value::Bool(b) => out.push(b.to_string()),
        Value::Number(n) => out.push(format_number(n.as_f64().unwrap_or(f64::NAN))),
        Value::String(s) if s.is_empty() => {}
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| collect_segments(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect_segments(v, out)),
    }
}

/// Formats a number like .NET's `G15`, which GitHub uses: at most 15
/// significant digits, scientific notation below 1e-4 and from 1e15.
fn format_number(n: f64) -> String {
    if n.is_nan() {
        return "NaN".into();
    }
    if n.is_infinite() {
        return if n > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if n == 0.0 {
        return "0".into();
    }
    // `{:.14e}` rounds to 15 significant digits: "d.dddddddddddddde<exp>".
    let sci = format!("{:.14e}", n.abs());
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_end_matches('0');
    let sign = if n < 0.0 { "-" } else { "" };
    if !(-4..15).contains(&exponent) {
        let (first, rest) = digits.split_at(1);
        let fraction = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        return format!("{sign}{first}{fraction}E{exp_sign}{:02}", exponent.abs());
    }
    let body = if exponent < 0 {
        let zeros = "0".repeat(usize::try_from(-exponent - 1).unwrap_or(0));
        format!("0.{zeros}{digits}")
    } else {
        let int_len = usize::try_from(exponent + 1).unwrap_or(1);
        if digits.len() <= int_len {
            format!("{digits}{}", "0".repeat(int_len - digits.len()))
        } else {
            format!("{}.{}", &digits[..int_len], &digits[int_len..])
        }
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dims(value: Value) -> IndexMap<String, Vec<Value>> {
        let Value::Object(map) = value else {
            panic!("dimensions must be an object");
        };
        map.into_iter()
            .map(|(k, v)| match v {
                Value::Array(items) => (k, items),
                other => panic!("dimension {k} is not a list: {other}"),
            })
            .collect()
    }

    fn maps(value: Value) -> Vec<Map<String, Value>> {
        let Value::Array(items) = value else {
            panic!("expected a list");
        };
        items
            .into_iter()
            .map(|item| match item {
                Value::Object(map) => map,
                other => panic!("expected an object: {other}"),
            })
            .collect()
    }

    fn values(combinations: &[Combination]) -> Vec<Value> {
        combinations
            .iter()
            .map(|c| Value::Object(c.values.clone()))
            .collect()
    }

    fn expand_json(d: Value, include: Value, exclude: Value) -> Vec<Combination> {
        expand(&dims(d), &maps(include), &maps(exclude)).expect("valid matrix")
    }

    #[test]
    fn cross_product_order_first_dimension_slowest() {
        // GitHub docs, "Adding a matrix strategy to your workflow job".
        let c = expand_json(
            json!({"version": [10, 12, 14], "os": ["ubuntu-latest", "windows-latest"]}),
            json!([]),
            json!([]),
        );
        assert_eq!(
            values(&c),
            [
                json!({"version": 10, "os": "ubuntu-latest"}),
                json!({"version": 10, "os": "windows-latest"}),
                json!({"version": 12, "os": "ubuntu-latest"}),
                json!({"version": 12, "os": "windows-latest"}),
                json!({"version": 14, "os": "ubuntu-latest"}),
                json!({"version": 14, "os": "windows-latest"}),
            ]
        );
        // Key order of each configuration is dimension order.
        let keys: Vec<_> = c[0].values.keys().cloned().collect();
        assert_eq!(keys, ["version", "os"]);
    }

    #[test]
    fn docs_include_example() {
        // GitHub docs, "Expanding or adding matrix configurations".
        let c = expand_json(
            json!({"fruit": ["apple", "pear"], "animal": ["cat", "dog"]}),
            json!([
                {"color": "green"},
                {"color": "pink", "animal": "cat"},
                {"fruit": "apple", "shape": "circle"},
                {"fruit": "banana"},
                {"fruit": "banana", "animal": "cat"},
            ]),
            json!([]),
        );
        assert_eq!(
            values(&c),
            [
                json!({"fruit": "apple", "animal": "cat", "color": "pink", "shape": "circle"}),
                json!({"fruit": "apple", "animal": "dog", "color": "green", "shape": "circle"}),
                json!({"fruit": "pear", "animal": "cat", "color": "pink"}),
                json!({"fruit": "pear", "animal": "dog", "color": "green"}),
                json!({"fruit": "banana"}),
                json!({"fruit": "banana", "animal": "cat"}),
            ]
        );
    }

    #[test]
    fn docs_exclude_example() {
        // GitHub docs, "Excluding matrix configurations": 12 - 1 - 2 = 9 jobs.
        let c = expand_json(
            json!({
                "os": ["macos-latest", "windows-latest"],
                "version": [12, 14, 16],
                "environment": ["staging", "production"],
            }),
            json!([]),
            json!([
                {"os": "macos-latest", "version": 12, "environment": "production"},
                {"os": "windows-latest", "version": 16},
            ]),
        );
        assert_eq!(c.len(), 9);
        let v = values(&c);
        assert!(
            !v.contains(&json!({"os": "macos-latest", "version": 12, "environment": "production"}))
        );
        assert!(
            v.contains(&json!({"os": "macos-latest", "version": 12, "environment": "staging"}))
        );
        assert!(
            !v.iter()
                .any(|c| c["os"] == "windows-latest" && c["version"] == 16)
        );
    }

    #[test]
    fn docs_expanding_configurations_example() {
        // Workflow syntax docs, "Example: Expanding configurations".
        let c = expand_json(
            json!({"os": ["windows-latest", "ubuntu-latest"], "node": [14, 16]}),
            json!([{"os": "windows-latest", "node": 16, "npm": 6}]),
            json!([]),
        );
        assert_eq!(
            values(&c),
            [
                json!({"os": "windows-latest", "node": 14}),
                json!({"os": "windows-latest", "node": 16, "npm": 6}),
                json!({"os": "ubuntu-latest", "node": 14}),
                json!({"os": "ubuntu-latest", "node": 16}),
            ]
        );
    }

    #[test]
    fn docs_adding_configurations_example() {
        // Workflow syntax docs, "Example: Adding configurations".
        let c = expand_json(
            json!({"os": ["windows-latest", "ubuntu-latest"], "version": [12, 14, 16]}),
            json!([{"os": "windows-latest", "version": 17}]),
            json!([]),
        );
        assert_eq!(c.len(), 7);
        assert_eq!(
            values(&c)[6],
            json!({"os": "windows-latest", "version": 17})
        );
    }

    #[test]
    fn docs_include_only_matrix() {
        // Workflow syntax docs: without dimensions every include is a job.
        let c = expand_json(
            json!({}),
            json!([
                {"site": "production", "datacenter": "site-a"},
                {"site": "staging", "datacenter": "site-b"},
            ]),
            json!([]),
        );
        assert_eq!(
            values(&c),
            [
                json!({"site": "production", "datacenter": "site-a"}),
                json!({"site": "staging", "datacenter": "site-b"}),
            ]
        );
    }

    #[test]
    fn docs_failure_handling_example() {
        // "Handling failures": 3 product jobs plus the experimental include.
        let c = expand_json(
            json!({"version": [6, 7, 8], "experimental": [false]}),
            json!([{"version": 9, "experimental": true}]),
            json!([]),
        );
        assert_eq!(
            values(&c),
            [
                json!({"version": 6, "experimental": false}),
                json!({"version": 7, "experimental": false}),
                json!({"version": 8, "experimental": false}),
                json!({"version": 9, "experimental": true}),
            ]
        );
    }

    #[test]
    fn include_adds_back_an_excluded_combination() {
        let c = expand_json(
            json!({"os": ["a", "b"]}),
            json!([{"os": "b", "extra": 1}]),
            json!([{"os": "b"}]),
        );
        assert_eq!(
            values(&c),
            [json!({"os": "a"}), json!({"os": "b", "extra": 1})]
        );
    }

    #[test]
    fn unmatched_include_puts_filter_keys_first() {
        let c = expand_json(
            json!({"os": ["a"]}),
            json!([{"note": "x", "os": "z"}]),
            json!([]),
        );
        let keys: Vec<_> = c[1].values.keys().cloned().collect();
        assert_eq!(keys, ["os", "note"]);
    }

    #[test]
    fn exclude_matches_nested_objects_partially() {
        let c = expand_json(
            json!({"cfg": [
                {"os": "linux", "arch": "x64", "tags": ["a", "b"]},
                {"os": "linux", "arch": "arm"},
                {"os": "mac", "arch": "arm"},
            ]}),
            json!([]),
            json!([{"cfg": {"os": "linux", "arch": "arm"}}]),
        );
        assert_eq!(c.len(), 2);
        let c2 = expand_json(
            json!({"cfg": [{"os": "linux", "tags": ["a", "b"]}, {"os": "linux", "tags": ["c"]}]}),
            json!([]),
            json!([{"cfg": {"tags": ["a"]}}]),
        );
        assert_eq!(
            values(&c2),
            [json!({"cfg": {"os": "linux", "tags": ["c"]}})]
        );
    }

    #[test]
    fn include_matches_nested_objects_partially_without_overwriting() {
        let c = expand_json(
            json!({"cfg": [{"os": "linux", "v": 1}, {"os": "mac", "v": 1}]}),
            json!([{"cfg": {"os": "linux"}, "extra": true}]),
            json!([]),
        );
        assert_eq!(
            values(&c),
            [
                json!({"cfg": {"os": "linux", "v": 1}, "extra": true}),
                json!({"cfg": {"os": "mac", "v": 1}}),
            ]
        );
    }

    #[test]
    fn matching_uses_loose_equality_and_case_insensitive_keys() {
        // '12' == 12, 'Ubuntu' == 'ubuntu', key OS finds os.
        let c = expand_json(
            json!({"os": ["ubuntu", "mac"], "node": [12, 14]}),
            json!([{"OS": "Ubuntu", "node": "12", "flag": 1}]),
            json!([{"node": "0xE"}]),
        );
        assert_eq!(
            values(&c),
            [
                json!({"os": "ubuntu", "node": 12, "flag": 1}),
                json!({"os": "mac", "node": 12}),
            ]
        );
        // A number value never equals an object, a missing path equals null.
        assert!(!loose_equals(&json!({"a": 1}), &json!(1)));
        assert!(loose_equals(&Value::Null, &json!(false)));
        assert!(!loose_equals(&json!("abc"), &json!(0)));
        assert!(loose_equals(&json!(" 1.5e1 "), &json!(15)));
        assert!(loose_equals(&json!(" 0o10"), &json!(8)));
        assert_eq!(parse_number("-Infinity"), f64::NEG_INFINITY);
        assert!(parse_number("inf").is_nan());
    }

    #[test]
    fn later_include_overwrites_earlier_extras() {
        let c = expand_json(
            json!({"os": ["a", "b"]}),
            json!([{"color": "green"}, {"os": "a", "COLOR": "pink"}]),
            json!([]),
        );
        // The earlier key's spelling is kept, as in GitHub's dictionary.
        assert_eq!(
            values(&c),
            [
                json!({"os": "a", "color": "pink"}),
                json!({"os": "b", "color": "green"})
            ]
        );
    }

    #[test]
    fn empty_matrix_runs_once_and_full_exclusion_runs_nothing() {
        let c = expand_json(json!({}), json!([]), json!([]));
        assert_eq!(values(&c), [json!({})]);
        assert_eq!(default_display_name("build", &c[0]), "build");
        let c = expand_json(json!({"os": ["a"]}), json!([]), json!([{"os": "a"}]));
        assert!(c.is_empty());
    }

    #[test]
    fn errors() {
        let err = |d: Value, i: Value, e: Value| {
            expand(&dims(d), &maps(i), &maps(e)).expect_err("invalid matrix")
        };
        assert_eq!(
            err(json!({"os": []}), json!([]), json!([])),
            MatrixError::EmptyDimension("os".into())
        );
        assert_eq!(
            err(json!({"os": ["a"]}), json!([]), json!([{"arch": "x"}])),
            MatrixError::UnknownExcludeKey("arch".into())
        );
        assert_eq!(
            err(json!({"os": ["a"]}), json!([]), json!([{}])),
            MatrixError::EmptyExclude
        );
        assert_eq!(
            err(json!({"os": ["a"]}), json!([{}]), json!([])),
            MatrixError::EmptyInclude
        );
        assert_eq!(
            MatrixError::UnknownExcludeKey("arch".into()).to_string(),
            "matrix exclude key `arch` does not match any key within the matrix"
        );
    }

    #[test]
    fn job_limit() {
        let sixteen: Vec<Value> = (0..16).map(|i| json!(i)).collect();
        let mut d = IndexMap::new();
        d.insert("a".to_owned(), sixteen.clone());
        d.insert("b".to_owned(), sixteen.clone());
        assert_eq!(expand(&d, &[], &[]).map(|c| c.len()), Ok(256));

        let extra = maps(json!([{"a": 99}]));
        assert_eq!(
            expand(&d, &extra, &[]),
            Err(MatrixError::TooManyConfigurations(257))
        );
        // Exclusions count: 257 products minus one is within the limit.
        let mut d2 = IndexMap::new();
        d2.insert(
            "a".to_owned(),
            (0..257).map(|i| json!(i)).collect::<Vec<_>>(),
        );
        assert_eq!(
            expand(&d2, &[], &maps(json!([{"a": 0}]))).map(|c| c.len()),
            Ok(256)
        );
        // A huge product is rejected without being materialised.
        let mut d3 = IndexMap::new();
        for name in ["a", "b", "c", "d", "e"] {
            d3.insert(name.to_owned(), sixteen.clone());
        }
        assert_eq!(
            expand(&d3, &[], &[]),
            Err(MatrixError::TooManyConfigurations(1 << 20))
        );
    }

    #[test]
    fn display_names() {
        let c = expand_json(
            json!({"os": ["ubuntu-latest"], "node": [18], "cfg": [{"arch": "x64", "debug": true, "n": null, "s": ""}]}),
            json!([{"npm": 6}]),
            json!([]),
        );
        // Include extras are not part of the generated name.
        assert_eq!(
            default_display_name("test", &c[0]),
            "test (ubuntu-latest, 18, x64, true)"
        );
        let c = expand_json(json!({}), json!([{"site": "prod", "dc": 3.5}]), json!([]));
        assert_eq!(default_display_name("deploy", &c[0]), "deploy (prod, 3.5)");
    }

    #[test]
    fn display_name_truncated_to_100_chars() {
        let long = "x".repeat(200);
        let c = expand_json(json!({"v": [long]}), json!([]), json!([]));
        let name = default_display_name("job", &c[0]);
        assert_eq!(name.chars().count(), 100);
        assert!(name.starts_with("job (xxx"));
        assert!(name.ends_with("x..."));
    }

    #[test]
    fn number_formatting_like_g15() {
        for (n, s) in [
            (18.0, "18"),
            (3.10, "3.1"),
            (-2.0, "-2"),
            (0.5, "0.5"),
            (1234.56, "1234.56"),
            (0.0001, "0.0001"),
            (0.00001, "1E-05"),
            (1e15, "1E+15"),
            (123456789012345.0, "123456789012345"),
            (1.5e20, "1.5E+20"),
            (0.845_512_408_225_570_1, "0.84551240822557"),
            (-0.0, "0"),
        ] {
            assert_eq!(format_number(n), s, "{n}");
        }
        assert_eq!(format_number(f64::INFINITY), "Infinity");
    }
}
