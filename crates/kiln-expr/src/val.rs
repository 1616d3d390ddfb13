//! Intermediate results of an evaluation, and the operators on them.
//!
//! Results borrow from the contexts where they can, which avoids copying and
//! gives arrays and objects an identity: GitHub compares them by reference,
//! so `github.event == github.event` is true while `fromJSON('{}') ==
//! fromJSON('{}')` is false.

use std::borrow::Cow;
use std::cmp::Ordering;

use crate::ast::CompareOp;
use crate::coerce;
use crate::memory;
use crate::value::Value;

#[derive(Debug, Clone)]
pub(crate) enum Val<'a> {
    /// A value, borrowed from a context or literal, or produced here.
    One(Cow<'a, Value>),
    /// The array an object filter (`.*`) produces; further property and index
    /// steps apply to each element rather than to the array.
    Filtered(Vec<Cow<'a, Value>>),
}

/// Stands in for a missing argument of a hand-built call node.
pub(crate) static NULL: Val<'static> = Val::One(Cow::Owned(Value::Null));

impl<'a> Val<'a> {
    pub(crate) fn owned(value: Value) -> Self {
        Val::One(Cow::Owned(value))
    }

    pub(crate) fn bool(b: bool) -> Self {
        Self::owned(Value::Bool(b))
    }

    pub(crate) fn string(s: String) -> Self {
        Self::owned(Value::String(s))
    }

    pub(crate) fn into_value(self) -> Value {
        match self {
            Val::One(v) => v.into_owned(),
            Val::Filtered(items) => Value::Array(items.into_iter().map(Cow::into_owned).collect()),
        }
    }

    pub(crate) fn kind_name(&self) -> &'static str {
        match self {
            Val::One(v) => v.kind_name(),
            Val::Filtered(_) => "Array",
        }
    }

    pub(crate) fn is_primitive(&self) -> bool {
        matches!(self, Val::One(v) if v.is_primitive())
    }

    pub(crate) fn is_truthy(&self) -> bool {
        match self {
            Val::One(v) => v.is_truthy(),
            Val::Filtered(_) => true,
        }
    }

    /// GitHub's string coercion.
    pub(crate) fn display(&self) -> Cow<'_, str> {
        match self {
            Val::One(v) => match v.as_ref() {
                Value::String(s) => Cow::Borrowed(s),
                other => Cow::Owned(other.to_display_string()),
            },
            Val::Filtered(_) => Cow::Borrowed("Array"),
        }
    }

    /// The elements, if this is an array.
    pub(crate) fn array_items(&self) -> Option<Vec<&Value>> {
        match self {
            Val::One(v) => match v.as_ref() {
                Value::Array(items) => Some(items.iter().collect()),
                _ => None,
            },
            Val::Filtered(items) => Some(items.iter().map(AsRef::as_ref).collect()),
        }
    }

    /// Memory charged for holding this result.
    pub(crate) fn cost(&self) -> usize {
        match self {
            Val::One(v) => match v.as_ref() {
                Value::String(s) => memory::string_cost(s),
                _ => memory::object_cost(),
            },
            Val::Filtered(_) => memory::object_cost(),
        }
    }

    pub(crate) fn scalar(&self) -> Scalar<'_> {
        match self {
            Val::One(Cow::Borrowed(v)) => Scalar::of(v, true),
            Val::One(Cow::Owned(v)) => Scalar::of(v, false),
            Val::Filtered(_) => Scalar::Composite(None),
        }
    }
}

/// A value as the comparison operators see it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scalar<'v> {
    Null,
    Bool(bool),
    Num(f64),
    Str(&'v str),
    /// An array or object, with its identity when it has a stable one.
    Composite(Option<&'v Value>),
}

impl<'v> Scalar<'v> {
    pub(crate) fn of(v: &'v Value, has_identity: bool) -> Self {
        match v {
            Value::Null => Scalar::Null,
            Value::Bool(b) => Scalar::Bool(*b),
            Value::Number(n) => Scalar::Num(*n),
            Value::String(s) => Scalar::Str(s),
            Value::Array(_) | Value::Object(_) => Scalar::Composite(has_identity.then_some(v)),
        }
    }

    fn kind(self) -> u8 {
        match self {
            Scalar::Null => 0,
            Scalar::Bool(_) => 1,
            Scalar::Num(_) => 2,
            Scalar::Str(_) => 3,
            Scalar::Composite(_) => 4,
        }
    }

    /// JavaScript's `Number(x)` for scalars; `NaN` for arrays and objects.
    pub(crate) fn to_number(self) -> f64 {
        match self {
            Scalar::Null => 0.0,
            Scalar::Bool(b) => f64::from(u8::from(b)),
            Scalar::Num(n) => n,
            Scalar::Str(s) => coerce::parse_number(s),
            Scalar::Composite(_) => f64::NAN,
        }
    }
}

/// Brings two operands to a common kind, like JavaScript's abstract equality
/// except that arrays and objects are never converted: number/string pairs
/// compare as numbers, and null or booleans become numbers.
fn coerce_pair<'v>(a: Scalar<'v>, b: Scalar<'v>) -> (Scalar<'v>, Scalar<'v>) {
    if a.kind() == b.kind() {
        return (a, b);
    }
    match (a, b) {
        (Scalar::Num(_), Scalar::Str(_)) => (a, Scalar::Num(b.to_number())),
        (Scalar::Str(_), Scalar::Num(_)) => (Scalar::Num(a.to_number()), b),
        (Scalar::Null | Scalar::Bool(_), _) => coerce_pair(Scalar::Num(a.to_number()), b),
        (_, Scalar::Null | Scalar::Bool(_)) => coerce_pair(a, Scalar::Num(b.to_number())),
        _ => (a, b),
    }
}

/// GitHub's `==`.
pub(crate) fn loose_eq(a: Scalar<'_>, b: Scalar<'_>) -> bool {
    match coerce_pair(a, b) {
        (Scalar::Null, Scalar::Null) => true,
        (Scalar::Bool(x), Scalar::Bool(y)) => x == y,
        (Scalar::Num(x), Scalar::Num(y)) => x == y,
        (Scalar::Str(x), Scalar::Str(y)) => coerce::eq_ignore_case(x, y),
        (Scalar::Composite(Some(x)), Scalar::Composite(Some(y))) => std::ptr::eq(x, y),
        _ => false,
    }
}

/// The ordering of `<`/`>`; `None` when the operands are not comparable
/// (different kinds after coercion, `NaN`, arrays, objects, null).
fn order(a: Scalar<'_>, b: Scalar<'_>) -> Option<Ordering> {
    match coerce_pair(a, b) {
        (Scalar::Num(x), Scalar::Num(y)) => x.partial_cmp(&y),
        (Scalar::Str(x), Scalar::Str(y)) => Some(coerce::cmp_ignore_case(x, y)),
        (Scalar::Bool(x), Scalar::Bool(y)) => Some(x.cmp(&y)),
        _ => None,
    }
}

pub(crate) fn compare(op: CompareOp, a: &Val<'_>, b: &Val<'_>) -> bool {
    let (a, b) = (a.scalar(), b.scalar());
    match op {
        CompareOp::Eq => loose_eq(a, b),
        CompareOp::Ne => !loose_eq(a, b),
        CompareOp::Lt => order(a, b) == Some(Ordering::Less),
        CompareOp::Gt => order(a, b) == Some(Ordering::Greater),
        CompareOp::Le => loose_eq(a, b) || order(a, b) == Some(Ordering::Less),
        CompareOp::Ge => loose_eq(a, b) || order(a, b) == Some(Ordering::Greater),
    }
}

/// What a property or index step selects.
#[derive(Debug)]
pub(crate) enum Selector<'s> {
    /// `.*` / `[*]`
    Star,
    /// A key for objects and/or a position for arrays.
    Key {
        name: Option<Cow<'s, str>>,
        position: Option<usize>,
    },
}

impl<'s> Selector<'s> {
    pub(crate) fn property(name: &'s str) -> Self {
        Selector::Key {
            name: Some(Cow::Borrowed(name)),
            position: None,
        }
    }

    /// An `[index]` value: scalars select object keys by their string form and
    /// array positions by their (floored, non-negative) number.
    pub(crate) fn index(index: &Val<'_>) -> Selector<'static> {
        if !index.is_primitive() {
            return Selector::Key {
                name: None,
                position: None,
            };
        }
        let n = index.scalar().to_number();
        Selector::Key {
            name: Some(Cow::Owned(index.display().into_owned())),
            // `as` saturates, so huge numbers simply fall out of range.
            position: (n.is_finite() && n >= 0.0).then(|| n.floor() as usize),
        }
    }
}

/// Applies one property/index step.
pub(crate) fn access<'a>(target: Val<'a>, sel: &Selector<'_>) -> Val<'a> {
    match (target, sel) {
        (Val::One(v), Selector::Star) => {
            let mut out = Vec::new();
            push_children(v, &mut out);
            Val::Filtered(out)
        }
        (Val::One(v), key) => Val::One(child(v, key).unwrap_or(Cow::Owned(Value::Null))),
        (Val::Filtered(items), Selector::Star) => {
            let mut out = Vec::new();
            for item in items {
                push_children(item, &mut out);
            }
            Val::Filtered(out)
        }
        (Val::Filtered(items), key) => {
            Val::Filtered(items.into_iter().filter_map(|i| child(i, key)).collect())
        }
    }
}

fn child<'a>(v: Cow<'a, Value>, sel: &Selector<'_>) -> Option<Cow<'a, Value>> {
    let Selector::Key { name, position } = sel else {
        return None;
    };
    match v {
        Cow::Borrowed(Value::Array(items)) => {
            position.and_then(|i| items.get(i)).map(Cow::Borrowed)
        }
        Cow::Borrowed(Value::Object(obj)) => {
            name.as_ref().and_then(|k| obj.get(k)).map(Cow::Borrowed)
        }
        // An owned parent is consumed, so its child can be moved out.
        Cow::Owned(Value::Array(mut items)) => position
            .filter(|&i| i < items.len())
            .map(|i| Cow::Owned(items.swap_remove(i))),
        Cow::Owned(Value::Object(mut obj)) => {
            name.as_ref().and_then(|k| obj.take(k)).map(Cow::Owned)
        }
        _ => None,
    }
}

fn push_children<'a>(v: Cow<'a, Value>, out: &mut Vec<Cow<'a, Value>>) {
    match v {
        Cow::Borrowed(Value::Array(items)) => out.extend(items.iter().map(Cow::Borrowed)),
        Cow::Borrowed(Value::Object(obj)) => out.extend(obj.values().map(Cow::Borrowed)),
        Cow::Owned(Value::Array(items)) => out.extend(items.into_iter().map(Cow::Owned)),
        Cow::Owned(Value::Object(obj)) => out.extend(obj.into_iter().map(|(_, v)| Cow::Owned(v))),
        _ => {}
    }
}
