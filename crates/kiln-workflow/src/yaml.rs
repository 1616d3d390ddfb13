//! A YAML document as a tree of nodes that remember where they came from.
//!
//! serde-based YAML crates drop source positions and stop at the first type
//! error; diagnostics need both the position of every key and value and the
//! chance to report every problem in a file at once. So we build our own small
//! tree from `saphyr-parser`'s event stream (a YAML 1.2 parser, so `on:` is the
//! string "on", not the YAML 1.1 boolean `true`).

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span as YamlSpan};

use crate::span::{Pos, Span};

/// How a scalar was written; quoted scalars are always strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    Literal,
    Folded,
}

/// A YAML node with its source span.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub span: Span,
    pub kind: NodeKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Scalar(String, Style),
    Seq(Vec<Node>),
    /// Keys keep their own nodes (and spans); order is the file's order.
    Map(Vec<(Node, Node)>),
}

/// A plain scalar resolved with YAML 1.2's core schema.
#[derive(Debug, Clone, PartialEq)]
pub enum ScalarValue<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
}

/// A YAML syntax error (the parser stops at the first one).
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// A mapping key that appears twice; the document still loads (first wins).
#[derive(Debug, Clone, PartialEq)]
pub struct DuplicateKey {
    pub key: String,
    pub span: Span,
    pub first: Span,
}

/// The result of loading one YAML document.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// `None` for an empty document.
    pub root: Option<Node>,
    pub duplicate_keys: Vec<DuplicateKey>,
    /// Where a node carries a YAML tag (`!x`, `!!str`). Tags are otherwise
    /// ignored; callers report them, because `if: !cancelled()` is a tag
    /// on an empty value, not a negation.
    pub tags: Vec<Span>,
}

impl Node {
    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            NodeKind::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            NodeKind::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// The raw text of a scalar of any style.
    pub fn as_scalar(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar(s, _) => Some(s),
            _ => None,
        }
    }

    /// A scalar resolved with the YAML 1.2 core schema (quoted → string).
    pub fn scalar_value(&self) -> Option<ScalarValue<'_>> {
        match &self.kind {
            NodeKind::Scalar(s, Style::Plain) => Some(resolve_plain(s)),
            NodeKind::Scalar(s, _) => Some(ScalarValue::Str(s)),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.scalar_value(), Some(ScalarValue::Null))
    }

    /// Looks a key up in a mapping (exact, case-sensitive like GitHub's keys).
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_scalar() == Some(key))
            .map(|(_, v)| v)
    }

    /// What kind of node this is, for "expected X, found Y" messages.
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            NodeKind::Map(_) => "a mapping",
            NodeKind::Seq(_) => "a sequence",
            NodeKind::Scalar(..) => match self.scalar_value() {
                Some(ScalarValue::Null) => "null",
                Some(ScalarValue::Bool(_)) => "a boolean",
                Some(ScalarValue::Int(_) | ScalarValue::Float(_)) => "a number",
                _ => "a string",
            },
        }
    }

    /// The node as JSON (YAML 1.2 core schema), for matrix values and `with:`.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.kind {
            NodeKind::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            NodeKind::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.as_scalar().unwrap_or_default().to_string(), v.to_json()))
                    .collect(),
            ),
            NodeKind::Scalar(..) => match self.scalar_value() {
                Some(ScalarValue::Bool(b)) => J::Bool(b),
                Some(ScalarValue::Int(i)) => J::from(i),
                Some(ScalarValue::Float(f)) => serde_json::Number::from_f64(f)
                    .map(J::Number)
                    .unwrap_or(J::Null),
                Some(ScalarValue::Str(s)) => J::String(s.to_string()),
                Some(ScalarValue::Null) | None => J::Null,
            },
        }
    }
}

/// YAML 1.2 core schema resolution of a plain scalar.
fn resolve_plain(s: &str) -> ScalarValue<'_> {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return ScalarValue::Null,
        "true" | "True" | "TRUE" => return ScalarValue::Bool(true),
        "false" | "False" | "FALSE" => return ScalarValue::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return ScalarValue::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return ScalarValue::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return ScalarValue::Float(f64::NAN),
        _ => {}
    }
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    if !unsigned.is_empty()
        && unsigned.bytes().all(|b| b.is_ascii_digit())
        && let Ok(i) = s.parse::<i64>()
    {
        return ScalarValue::Int(i);
    }
    if let Some(hex) = s.strip_prefix("0x")
        && let Ok(i) = i64::from_str_radix(hex, 16)
    {
        return ScalarValue::Int(i);
    }
    if let Some(oct) = s.strip_prefix("0o")
        && let Ok(i) = i64::from_str_radix(oct, 8)
    {
        return ScalarValue::Int(i);
    }
    let looks_float = unsigned.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && unsigned
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
        && unsigned.bytes().any(|b| b.is_ascii_digit());
    if looks_float && let Ok(f) = s.parse::<f64>() {
        return ScalarValue::Float(f);
    }
    ScalarValue::Str(s)
}

fn pos(m: &saphyr_parser::Marker) -> Pos {
    Pos {
        line: m.line(),
        col: m.col() + 1,
    }
}

fn span(s: &YamlSpan) -> Span {
    Span {
        start: pos(&s.start),
        end: pos(&s.end),
    }
}

enum Frame {
    Seq(Span, usize, Vec<Node>),
    /// Entries, the key waiting for its value, and where each scalar key
    /// was first defined (for O(1) duplicate detection).
    Map(
        Span,
        usize,
        Vec<(Node, Node)>,
        Option<Node>,
        HashMap<String, Span>,
    ),
}

/// How many nodes aliases may add in total. Far beyond any real workflow;
/// it stops "billion laughs" documents (aliases of aliases) from expanding
/// exponentially.
const MAX_ALIAS_NODES: usize = 100_000;

/// The number of nodes in a tree.
fn node_count(node: &Node) -> usize {
    let mut count = 0;
    let mut stack = vec![node];
    while let Some(n) = stack.pop() {
        count += 1;
        match &n.kind {
            NodeKind::Scalar(..) => {}
            NodeKind::Seq(items) => stack.extend(items),
            NodeKind::Map(entries) => {
                for (k, v) in entries {
                    stack.push(k);
                    stack.push(v);
                }
            }
        }
    }
    count
}

/// Loads the first document of `source`. Later documents are ignored, as
/// GitHub does.
pub fn load(source: &str) -> Result<Document, SyntaxError> {
    let mut stack: Vec<Frame> = Vec::new();
    // Anchored nodes with their node counts.
    let mut anchors: HashMap<usize, (Node, usize)> = HashMap::new();
    let mut alias_nodes = 0usize;
    let mut tags = Vec::new();
    let mut duplicate_keys = Vec::new();
    let mut root = None;
    for event in Parser::new_from_str(source) {
        let (event, ev_span) = event.map_err(|e| SyntaxError {
            pos: pos(e.marker()),
            message: e.info().to_string(),
        })?;
        let node = match event {
            Event::DocumentEnd => break,
            Event::Scalar(value, style, anchor, tag) => {
                if tag.is_some() {
                    tags.push(span(&ev_span));
                }
                let style = match style {
                    ScalarStyle::Plain => Style::Plain,
                    ScalarStyle::SingleQuoted => Style::SingleQuoted,
                    ScalarStyle::DoubleQuoted => Style::DoubleQuoted,
                    ScalarStyle::Literal => Style::Literal,
                    ScalarStyle::Folded => Style::Folded,
                };
                let node = Node {
                    span: span(&ev_span),
                    kind: NodeKind::Scalar(value.into_owned(), style),
                };
                if anchor > 0 {
                    anchors.insert(anchor, (node.clone(), 1));
                }
                node
            }
            Event::Alias(id) => match anchors.get(&id) {
                Some((n, count)) => {
                    alias_nodes += count;
                    if alias_nodes > MAX_ALIAS_NODES {
                        return Err(SyntaxError {
                            pos: pos(&ev_span.start),
                            message: format!("aliases expand to more than {MAX_ALIAS_NODES} nodes"),
                        });
                    }
                    Node {
                        span: span(&ev_span),
                        kind: n.kind.clone(),
                    }
                }
                None => {
                    return Err(SyntaxError {
                        pos: pos(&ev_span.start),
                        message: "alias refers to an unknown anchor".into(),
                    });
                }
            },
            Event::SequenceStart(anchor, tag) => {
                if tag.is_some() {
                    tags.push(span(&ev_span));
                }
                stack.push(Frame::Seq(span(&ev_span), anchor, Vec::new()));
                continue;
            }
            Event::MappingStart(anchor, tag) => {
                if tag.is_some() {
                    tags.push(span(&ev_span));
                }
                stack.push(Frame::Map(
                    span(&ev_span),
                    anchor,
                    Vec::new(),
                    None,
                    HashMap::new(),
                ));
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (start, anchor, kind) = match stack.pop() {
                    Some(Frame::Seq(s, a, items)) => (s, a, NodeKind::Seq(items)),
                    Some(Frame::Map(s, a, entries, ..)) => (s, a, NodeKind::Map(entries)),
                    None => continue,
                };
                let node = Node {
                    span: Span {
                        start: start.start,
                        end: pos(&ev_span.end),
                    },
                    kind,
                };
                if anchor > 0 {
                    anchors.insert(anchor, (node.clone(), node_count(&node)));
                }
                node
            }
            _ => continue,
        };
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq(_, _, items)) => items.push(node),
            Some(Frame::Map(_, _, entries, pending, seen)) => match pending.take() {
                None => *pending = Some(node),
                Some(key) => {
                    // Scalar keys compare by text (`"a"` and `a` are one
                    // key); complex keys, which GitHub never uses, by value.
                    let first = match key.as_scalar() {
                        Some(text) => match seen.get(text) {
                            Some(first) => Some(*first),
                            None => {
                                seen.insert(text.to_string(), key.span);
                                None
                            }
                        },
                        None => entries
                            .iter()
                            .find(|(k, _)| k.kind == key.kind)
                            .map(|(k, _)| k.span),
                    };
                    match first {
                        Some(first) => duplicate_keys.push(DuplicateKey {
                            key: key.as_scalar().unwrap_or("<complex key>").to_string(),
                            span: key.span,
                            first,
                        }),
                        None => entries.push((key, node)),
                    }
                }
            },
        }
    }
    Ok(Document {
        tags,
        root,
        duplicate_keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_block_scalar_keeps_lines() {
        let doc = load("run: |\n  echo a\n  echo b\nx: 1\n").unwrap();
        let root = doc.root.unwrap();
        assert_eq!(
            root.get("run").unwrap().as_scalar(),
            Some("echo a\necho b\n")
        );
        assert_eq!(
            root.get("x").unwrap().scalar_value(),
            Some(ScalarValue::Int(1))
        );
    }

    #[test]
    fn on_is_a_string_key_and_positions_are_one_based() {
        let doc = load("name: x\non: push\n").unwrap();
        let root = doc.root.unwrap();
        let (key, value) = &root.as_map().unwrap()[1];
        assert_eq!(key.as_scalar(), Some("on"));
        assert_eq!(key.span.start, Pos { line: 2, col: 1 });
        assert_eq!(value.span.start, Pos { line: 2, col: 5 });
    }

    #[test]
    fn duplicate_keys_are_reported() {
        let doc = load("a: 1\nb: 2\na: 3\n").unwrap();
        assert_eq!(doc.duplicate_keys.len(), 1);
        assert_eq!(doc.duplicate_keys[0].key, "a");
        assert_eq!(doc.duplicate_keys[0].span.start.line, 3);
        assert_eq!(doc.duplicate_keys[0].first.start.line, 1);
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = load("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.pos.line >= 1, "{err:?}");
        assert!(!err.message.is_empty());
    }

    #[test]
    fn quoted_and_plain_keys_are_the_same_key() {
        let doc = load("on: push\n'on': pull_request\n").unwrap();
        assert_eq!(doc.duplicate_keys.len(), 1);
        assert_eq!(doc.duplicate_keys[0].key, "on");
    }

    #[test]
    fn alias_bombs_are_rejected() {
        let mut source = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            source.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let err = load(&source).unwrap_err();
        assert!(err.message.contains("aliases expand"), "{err:?}");
    }

    #[test]
    fn tags_are_recorded() {
        let doc = load("if: !cancelled()\nx: 1\n").unwrap();
        assert_eq!(doc.tags.len(), 1);
        assert_eq!(doc.tags[0].start, Pos { line: 1, col: 5 });
        assert!(doc.root.unwrap().get("if").unwrap().is_null());
    }

    #[test]
    fn aliases_expand() {
        let doc = load("a: &x {k: v}\nb: *x\n").unwrap();
        let root = doc.root.unwrap();
        assert_eq!(
            root.get("b").unwrap().get("k").unwrap().as_scalar(),
            Some("v")
        );
    }

    #[test]
    fn core_schema_resolution() {
        assert_eq!(resolve_plain("~"), ScalarValue::Null);
        assert_eq!(resolve_plain("yes"), ScalarValue::Str("yes"));
        assert_eq!(resolve_plain("3.10"), ScalarValue::Float(3.1));
        assert_eq!(resolve_plain("-7"), ScalarValue::Int(-7));
        assert_eq!(resolve_plain("1.2.3"), ScalarValue::Str("1.2.3"));
        assert_eq!(resolve_plain("0x1f"), ScalarValue::Int(31));
    }
}
