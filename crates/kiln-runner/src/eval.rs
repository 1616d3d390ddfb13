//! Evaluating workflow expressions against a set of contexts and a status.

use std::path::Path;

use kiln_expr::{Contexts, EvalContext, Host, HostError, Status, Value};
use kiln_workflow::{BoolOrExpr, NumberOrExpr};

/// The status functions' view of the run at one point, and the workspace
/// snapshot `hashFiles` reads.
struct RunHost<'a> {
    status: Status,
    files: Option<(&'a Path, &'a str)>,
}

impl Host for RunHost<'_> {
    fn status(&self) -> Status {
        self.status
    }

    fn hash_files(&self, patterns: &[String]) -> Result<String, HostError> {
        match self.files {
            Some((root, workspace)) => {
                crate::hashfiles::hash_files(root, workspace, patterns).map_err(HostError::from)
            }
            None => Err("hashFiles is only available in steps and job outputs".into()),
        }
    }
}

/// Contexts plus the current status: everything an expression can see.
pub struct Scope<'a> {
    pub contexts: &'a Contexts,
    pub status: Status,
    /// A host copy of the workspace and the workspace's guest path.
    files: Option<(&'a Path, &'a str)>,
}

impl<'a> Scope<'a> {
    pub fn new(contexts: &'a Contexts, status: Status) -> Self {
        Scope {
            contexts,
            status,
            files: None,
        }
    }

    /// Lets `hashFiles` read `snapshot`, a copy of the guest `workspace`.
    pub fn with_files(mut self, snapshot: &'a Path, workspace: &'a str) -> Self {
        self.files = Some((snapshot, workspace));
        self
    }

    fn with<T>(&self, f: impl FnOnce(&EvalContext<'_>) -> T) -> T {
        let host = RunHost {
            status: self.status,
            files: self.files,
        };
        let ctx = EvalContext::new(self.contexts).with_host(&host);
        f(&ctx)
    }

    /// Replaces every `${{ }}` in `text` with its value as a string.
    pub fn interpolate(&self, text: &str) -> Result<String, String> {
        self.with(|ctx| kiln_expr::interpolate(text, ctx))
            .map_err(|e| e.to_string())
    }

    /// A field that is one `${{ }}` keeps the expression's type; other text
    /// is interpolated into a string.
    pub fn value(&self, text: &str) -> Result<Value, String> {
        self.with(|ctx| kiln_expr::evaluate_template(text, ctx))
            .map_err(|e| e.to_string())
    }

    /// An `if:` condition, with GitHub's implicit `success() &&`.
    pub fn condition(&self, text: &str) -> Result<bool, String> {
        self.with(|ctx| kiln_expr::evaluate_condition(text, ctx))
            .map_err(|e| e.to_string())
    }

    pub fn bool_or_expr(&self, field: &BoolOrExpr) -> Result<bool, String> {
        match field {
            BoolOrExpr::Bool(b) => Ok(*b),
            BoolOrExpr::Expr(text) => Ok(self.value(text)?.is_truthy()),
        }
    }

    pub fn number_or_expr(&self, field: &NumberOrExpr) -> Result<f64, String> {
        let n = match field {
            NumberOrExpr::Number(n) => *n,
            NumberOrExpr::Expr(text) => match self.value(text)? {
                Value::Number(n) => n,
                Value::String(s) => s
                    .trim()
                    .parse::<f64>()
                    .map_err(|_| format!("expected a number, got \"{s}\""))?,
                other => return Err(format!("expected a number, got {}", other.kind_name())),
            },
        };
        if n.is_finite() && n >= 0.0 {
            Ok(n)
        } else {
            Err(format!("expected a non-negative number, got {n}"))
        }
    }
}
