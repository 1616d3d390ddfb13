//! YAML node tree → typed model, collecting every problem as a [`Diagnostic`].
//!
//! Each submodule converts one part of the file and never stops at the first
//! problem: a bad value is reported and left out of the model, and parsing
//! goes on. Expressions are checked in a separate walk over the whole tree
//! ([`expressions`]) so that no string scalar is missed, whatever key it is
//! under.

mod action;
mod container;
mod cron;
mod events;
mod expressions;
mod inputs;
mod job;
mod read;
mod scope;
mod step;
mod strategy;
mod triggers;
mod workflow;

use std::collections::{HashMap, HashSet};

use crate::check;
use crate::diagnostic::Diagnostic;
use crate::locate::SourceMap;
use crate::model::{Action, Workflow};
use crate::span::{Pos, Span, Spanned};
use crate::yaml::{self, Node};

pub(crate) use read::Field;

/// Parses a workflow file. Always returns a model (partial when the file has
/// errors) together with every problem found.
pub fn parse_workflow(source: &str) -> (Workflow, Vec<Diagnostic>) {
    let mut ctx = Ctx::new(source);
    let Some(root) = ctx.load("workflow") else {
        return (Workflow::default(), ctx.finish());
    };
    let workflow = workflow::parse(&mut ctx, &root);
    check::workflow(&mut ctx, &workflow);
    expressions::check_tree(&mut ctx, &root);
    (workflow, ctx.finish())
}

/// Parses an action metadata file (`action.yml`). The action is `None` when
/// the file is too broken to say how the action runs.
pub fn parse_action(source: &str) -> (Option<Action>, Vec<Diagnostic>) {
    let mut ctx = Ctx::new(source);
    let Some(root) = ctx.load("action") else {
        return (None, ctx.finish());
    };
    let action = action::parse(&mut ctx, &root);
    if let Some(action) = &action {
        check::action(&mut ctx, action);
    }
    expressions::check_tree(&mut ctx, &root);
    (action, ctx.finish())
}

/// The state of one parse: the source and the diagnostics found so far.
pub(crate) struct Ctx<'a> {
    pub(crate) sources: SourceMap<'a>,
    source: &'a str,
    diagnostics: Vec<Diagnostic>,
    /// Start positions of values that are bare conditions (`if:`), parsed
    /// as a whole expression by the expression walk.
    conditions: HashSet<Pos>,
    /// Start positions of nodes that set what expressions below them may
    /// use; see [`scope`].
    scopes: HashMap<Pos, &'static scope::Scope>,
}

impl<'a> Ctx<'a> {
    fn new(source: &'a str) -> Self {
        Ctx {
            sources: SourceMap::new(source),
            source,
            diagnostics: Vec::new(),
            conditions: HashSet::new(),
            scopes: HashMap::new(),
        }
    }

    pub(crate) fn error(&mut self, span: Span, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic::error(span, message));
    }

    pub(crate) fn warning(&mut self, span: Span, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic::warning(span, message));
    }

    /// Loads the YAML document, reporting syntax errors, duplicate keys and
    /// an empty file.
    fn load(&mut self, what: &str) -> Option<Node> {
        let doc = match yaml::load(self.source) {
            Ok(doc) => doc,
            Err(e) => {
                let pos = self.clamp(e.pos);
                self.error(Span::point(pos), format!("invalid yaml: {}", e.message));
                return None;
            }
        };
        for dup in &doc.duplicate_keys {
            self.error(
                dup.span,
                format!(
                    "duplicate key \"{}\" (first defined on line {})",
                    dup.key, dup.first.start.line
                ),
            );
        }
        for tag in &doc.tags {
            self.error(
                *tag,
                "yaml tags are not supported; a value starting with \"!\" is a tag: \
                 quote it, or wrap the expression in \"${{ }}\"",
            );
        }
        if doc.root.is_none() {
            self.error(
                Span::point(Pos { line: 1, col: 1 }),
                format!("the {what} file is empty"),
            );
        }
        doc.root
    }

    /// Moves a position past the end of the file (where the YAML parser
    /// reports an unclosed bracket) to the end of the last line, so the
    /// diagnostic can show a line.
    fn clamp(&self, pos: Pos) -> Pos {
        let lines = self.source.lines().count();
        match self.source.lines().last() {
            Some(last) if pos.line > lines => Pos {
                line: lines,
                col: last.chars().count() + 1,
            },
            _ => pos,
        }
    }

    /// Marks `node` as a condition with the given scope and returns its
    /// text (GitHub converts a literal `if: true` to the string "true").
    pub(crate) fn condition(
        &mut self,
        node: &Node,
        scope: &'static scope::Scope,
    ) -> Option<Spanned<String>> {
        let text = self.string(node)?;
        self.conditions.insert(node.span.start);
        self.scope(node, scope);
        Some(text)
    }

    /// Sets what expressions in `node` and below may use.
    pub(crate) fn scope(&mut self, node: &Node, scope: &'static scope::Scope) {
        self.scopes.insert(node.span.start, scope);
    }

    fn scope_of(&self, node: &Node) -> Option<&'static scope::Scope> {
        self.scopes.get(&node.span.start).copied()
    }

    pub(crate) fn is_condition(&self, node: &Node) -> bool {
        self.conditions.contains(&node.span.start)
    }

    /// The diagnostics in file order (errors before warnings at one spot).
    fn finish(self) -> Vec<Diagnostic> {
        let mut diagnostics = self.diagnostics;
        diagnostics.sort_by_key(|d| (d.span.start, d.severity));
        diagnostics
    }
}
