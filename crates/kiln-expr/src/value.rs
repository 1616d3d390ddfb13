//! The data model of expressions: JSON-like values whose object keys are
//! case-insensitive, as GitHub's contexts are.

use indexmap::IndexMap;

use crate::coerce;

/// A value an expression reads from a context or produces.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// `null`.
    #[default]
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// Every number is a double, as in GitHub's evaluator.
    Number(f64),
    /// A string.
    String(String),
    /// An ordered list.
    Array(Vec<Value>),
    /// A mapping with case-insensitive keys.
    Object(Object),
}

impl Value {
    /// GitHub's name for the kind: `Null`, `Boolean`, `Number`, `String`, `Array` or `Object`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Null => "Null",
            Value::Bool(_) => "Boolean",
            Value::Number(_) => "Number",
            Value::String(_) => "String",
            Value::Array(_) => "Array",
            Value::Object(_) => "Object",
        }
    }

    /// GitHub's string coercion, used when a value is interpolated into text:
    /// `null` is empty, numbers use up to 15 significant digits (`1.0` → `1`),
    /// arrays and objects become the words `Array` and `Object`.
    pub fn to_display_string(&self) -> String {
        match self {
            Value::Null => String::new(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => coerce::number_to_string(*n),
            Value::String(s) => s.clone(),
            Value::Array(_) => "Array".to_owned(),
            Value::Object(_) => "Object".to_owned(),
        }
    }

    /// GitHub's truthiness: `null`, `false`, `0`, `NaN` and `''` are false;
    /// everything else (including empty arrays and objects) is true.
    pub fn is_truthy(&self) -> bool {
        match self {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Number(n) => *n != 0.0 && !n.is_nan(),
            Value::String(s) => !s.is_empty(),
            Value::Array(_) | Value::Object(_) => true,
        }
    }

    /// Whether this is a scalar (not an array or object).
    pub fn is_primitive(&self) -> bool {
        !matches!(self, Value::Array(_) | Value::Object(_))
    }

    /// Converts to JSON. Whole numbers become JSON integers; `NaN` and the
    /// infinities, which JSON cannot represent, become `null`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Number(n) => number_to_json(*n),
            Value::String(s) => serde_json::Value::String(s.clone()),
            Value::Array(items) => items.iter().map(Value::to_json).collect(),
            Value::Object(obj) => serde_json::Value::Object(
                obj.iter()
                    .map(|(k, v)| (k.to_owned(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The object, if this is one.
    pub fn as_object(&self) -> Option<&Object> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }
}

fn number_to_json(n: f64) -> serde_json::Value {
    // 2^53: beyond it integers are not exact, so keep the float form.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if n.fract() == 0.0 && n.abs() < EXACT {
        serde_json::Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n).map_or(serde_json::Value::Null, serde_json::Value::Number)
    }
}

impl From<serde_json::Value> for Value {
    fn from(json: serde_json::Value) -> Self {
        match json {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
            serde_json::Value::String(s) => Value::String(s),
            serde_json::Value::Array(items) => {
                Value::Array(items.into_iter().map(Value::from).collect())
            }
            serde_json::Value::Object(map) => {
                Value::Object(map.into_iter().map(|(k, v)| (k, Value::from(v))).collect())
            }
        }
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<f64> for Value {
    fn from(n: f64) -> Self {
        Value::Number(n)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

impl From<Vec<Value>> for Value {
    fn from(items: Vec<Value>) -> Self {
        Value::Array(items)
    }
}

impl From<Object> for Value {
    fn from(obj: Object) -> Self {
        Value::Object(obj)
    }
}

/// An insertion-ordered map whose keys compare case-insensitively (GitHub's
/// `OrdinalIgnoreCase`). Keys keep the spelling they were first inserted with.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Object {
    /// Folded key → (original key, value).
    entries: IndexMap<String, (String, Value)>,
}

impl Object {
    /// An empty object.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts a value. If a key equal ignoring case exists, its value is
    /// replaced (keeping its position and spelling) and the old value returned.
    pub fn insert(&mut self, key: impl Into<String>, value: Value) -> Option<Value> {
        let key = key.into();
        match self.entries.entry(coerce::fold(&key)) {
            indexmap::map::Entry::Occupied(mut e) => {
                Some(std::mem::replace(&mut e.get_mut().1, value))
            }
            indexmap::map::Entry::Vacant(e) => {
                e.insert((key, value));
                None
            }
        }
    }

    /// Looks a key up, ignoring case.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries.get(&coerce::fold(key)).map(|(_, v)| v)
    }

    /// Looks a key up mutably, ignoring case.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.entries.get_mut(&coerce::fold(key)).map(|(_, v)| v)
    }

    /// Whether a key is present, ignoring case.
    pub fn contains_key(&self, key: &str) -> bool {
        self.entries.contains_key(&coerce::fold(key))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in insertion order, with their original key spelling.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.values().map(|(k, v)| (k.as_str(), v))
    }

    /// Keys in insertion order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.values().map(|(k, _)| k.as_str())
    }

    /// Values in insertion order.
    pub fn values(&self) -> impl Iterator<Item = &Value> {
        self.entries.values().map(|(_, v)| v)
    }

    /// Removes and returns the value of a key (ignoring case), keeping order.
    pub(crate) fn take(&mut self, key: &str) -> Option<Value> {
        self.get_mut(key).map(std::mem::take)
    }
}

impl IntoIterator for Object {
    type Item = (String, Value);
    type IntoIter = indexmap::map::IntoValues<String, (String, Value)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_values()
    }
}

impl<K: Into<String>> FromIterator<(K, Value)> for Object {
    fn from_iter<I: IntoIterator<Item = (K, Value)>>(iter: I) -> Self {
        let mut obj = Object::new();
        for (k, v) in iter {
            obj.insert(k, v);
        }
        obj
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn object_is_case_insensitive_and_ordered() {
        let mut obj = Object::new();
        obj.insert("Zeta", Value::from(1.0));
        obj.insert("alpha", Value::from(2.0));
        assert_eq!(obj.insert("ZETA", Value::from(3.0)), Some(Value::from(1.0)));
        assert_eq!(obj.get("zeta"), Some(&Value::from(3.0)));
        assert_eq!(obj.keys().collect::<Vec<_>>(), ["Zeta", "alpha"]);
        assert!(obj.contains_key("ALPHA"));
        assert!(obj.get("beta").is_none());
    }

    #[test]
    fn json_round_trip() {
        let j = json!({"a": [1, 2.5, null, true, "x"], "b": {}});
        let v = Value::from(j.clone());
        assert_eq!(v.kind_name(), "Object");
        assert_eq!(v.to_json(), j);
    }

    #[test]
    fn display_and_truthiness() {
        assert_eq!(Value::Null.to_display_string(), "");
        assert_eq!(Value::from(1.0).to_display_string(), "1");
        assert_eq!(Value::Array(vec![]).to_display_string(), "Array");
        assert_eq!(Value::Object(Object::new()).to_display_string(), "Object");
        assert!(!Value::from(f64::NAN).is_truthy());
        assert!(!Value::from("").is_truthy());
        assert!(Value::from("false").is_truthy());
        assert!(Value::Array(vec![]).is_truthy());
    }
}
