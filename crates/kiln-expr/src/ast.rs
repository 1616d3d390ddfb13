//! The syntax tree. Spans are byte ranges into [`Expr::source`]; chains of the
//! same precedence level are kept flat (n-ary) so evaluating and dropping a
//! long `a == b == c …` or `a && b && …` chain never recurses deeply.

use std::ops::Range;

use crate::value::Value;

/// A parsed expression; evaluate it any number of times with [`crate::evaluate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub(crate) source: String,
    pub(crate) root: Option<Node>,
}

impl Expr {
    /// The text the expression was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The root node; `None` for an empty expression (which evaluates to `null`).
    pub fn root(&self) -> Option<&Node> {
        self.root.as_ref()
    }

    /// Whether the expression calls `success()`, `always()`, `cancelled()` or
    /// `failure()`. An `if:` without one is implicitly `success() && (…)`.
    pub fn uses_status_function(&self) -> bool {
        let mut found = false;
        if let Some(root) = &self.root {
            root.walk(&mut |node| {
                if let NodeKind::Call { function, .. } = &node.kind {
                    found |= function.is_status();
                }
            });
        }
        found
    }
}

/// A node of the syntax tree.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// What the node is.
    pub kind: NodeKind,
    /// Byte range in the source.
    pub span: Range<usize>,
}

impl Node {
    /// Calls `f` on this node and every node below it, parents first.
    pub fn walk(&self, f: &mut dyn FnMut(&Node)) {
        f(self);
        match &self.kind {
            NodeKind::Literal(_) | NodeKind::Context(_) => {}
            NodeKind::Access { target, accessor } => {
                target.walk(f);
                if let Accessor::Index(index) = accessor {
                    index.walk(f);
                }
            }
            NodeKind::Not(inner) => inner.walk(f),
            NodeKind::Compare { first, rest } => {
                first.walk(f);
                for (_, node) in rest {
                    node.walk(f);
                }
            }
            NodeKind::Logical { operands, .. } => operands.iter().for_each(|n| n.walk(f)),
            NodeKind::Call { args, .. } => args.iter().for_each(|n| n.walk(f)),
        }
    }

    pub(crate) fn shift(&mut self, by: usize) {
        self.span = self.span.start + by..self.span.end + by;
        match &mut self.kind {
            NodeKind::Literal(_) | NodeKind::Context(_) => {}
            NodeKind::Access { target, accessor } => {
                target.shift(by);
                if let Accessor::Index(index) = accessor {
                    index.shift(by);
                }
            }
            NodeKind::Not(inner) => inner.shift(by),
            NodeKind::Compare { first, rest } => {
                first.shift(by);
                rest.iter_mut().for_each(|(_, n)| n.shift(by));
            }
            NodeKind::Logical { operands, .. } => operands.iter_mut().for_each(|n| n.shift(by)),
            NodeKind::Call { args, .. } => args.iter_mut().for_each(|n| n.shift(by)),
        }
    }
}

/// The kinds of node.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    /// `null`, `true`, `1.5`, `'text'`.
    Literal(Value),
    /// A named value (context) such as `github`, as written.
    Context(String),
    /// `target.name`, `target[index]`, `target.*` or `target[*]`.
    Access {
        /// What is being accessed.
        target: Box<Node>,
        /// How.
        accessor: Accessor,
    },
    /// `!operand`.
    Not(Box<Node>),
    /// A left-associative chain of comparisons of one precedence level:
    /// `first op1 a op2 b` is `((first op1 a) op2 b)`.
    Compare {
        /// Leftmost operand.
        first: Box<Node>,
        /// Operators and right operands, in order.
        rest: Vec<(CompareOp, Node)>,
    },
    /// `a && b && …` or `a || b || …`, yielding the deciding operand's value.
    Logical {
        /// `&&` or `||`.
        op: LogicalOp,
        /// Two or more operands.
        operands: Vec<Node>,
    },
    /// A function call.
    Call {
        /// Which function.
        function: Function,
        /// Arguments, in order.
        args: Vec<Node>,
    },
}

/// How an [`NodeKind::Access`] selects from its target.
#[derive(Debug, Clone, PartialEq)]
pub enum Accessor {
    /// `.name`
    Property(String),
    /// `[expr]`
    Index(Box<Node>),
    /// `.*` or `[*]`: an object filter producing an array.
    Star,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// Logical operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogicalOp {
    /// `&&`
    And,
    /// `||`
    Or,
}

/// The functions GitHub provides. Names are case-insensitive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Function {
    /// `contains(search, item)`
    Contains,
    /// `startsWith(search, prefix)`
    StartsWith,
    /// `endsWith(search, suffix)`
    EndsWith,
    /// `format(fmt, args…)`
    Format,
    /// `join(array, separator?)`
    Join,
    /// `toJSON(value)`
    ToJson,
    /// `fromJSON(text)`
    FromJson,
    /// `case(pred1, val1, …, default)`
    Case,
    /// `hashFiles(patterns…)`, answered by the [`Host`](crate::Host).
    HashFiles,
    /// `success()`
    Success,
    /// `always()`
    Always,
    /// `cancelled()`
    Cancelled,
    /// `failure()`
    Failure,
}

impl Function {
    const ALL: [Function; 13] = [
        Function::Contains,
        Function::StartsWith,
        Function::EndsWith,
        Function::Format,
        Function::Join,
        Function::ToJson,
        Function::FromJson,
        Function::Case,
        Function::HashFiles,
        Function::Success,
        Function::Always,
        Function::Cancelled,
        Function::Failure,
    ];

    /// Looks a function up by name, ignoring case.
    pub fn from_name(name: &str) -> Option<Function> {
        Self::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(name))
    }

    /// The canonical spelling.
    pub fn name(self) -> &'static str {
        match self {
            Function::Contains => "contains",
            Function::StartsWith => "startsWith",
            Function::EndsWith => "endsWith",
            Function::Format => "format",
            Function::Join => "join",
            Function::ToJson => "toJSON",
            Function::FromJson => "fromJSON",
            Function::Case => "case",
            Function::HashFiles => "hashFiles",
            Function::Success => "success",
            Function::Always => "always",
            Function::Cancelled => "cancelled",
            Function::Failure => "failure",
        }
    }

    /// Whether this is one of the job-status functions.
    pub fn is_status(self) -> bool {
        matches!(
            self,
            Function::Success | Function::Always | Function::Cancelled | Function::Failure
        )
    }

    /// Minimum and maximum argument counts, checked at parse time.
    pub(crate) fn arity(self) -> (usize, usize) {
        match self {
            Function::Contains | Function::StartsWith | Function::EndsWith => (2, 2),
            Function::Format | Function::HashFiles => (1, 255),
            Function::Join => (1, 2),
            Function::ToJson | Function::FromJson => (1, 1),
            Function::Case => (3, usize::MAX),
            Function::Success | Function::Always | Function::Cancelled | Function::Failure => {
                (0, 0)
            }
        }
    }
}
