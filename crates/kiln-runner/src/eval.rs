//! Evaluating workflow expressions against a set of contexts and a status.

use kiln_expr::{Contexts, EvalContext, Host, Status, Value};
use kiln_workflow::{BoolOrExpr, NumberOrExpr};

/// The status functions' view of the run at one point.
struct StatusHost(Status);

impl Host for StatusHost {
    fn status(&self) -> Status {
        self.0
    }
}

/// Contexts plus the current status: everything an expression can see.
pub struct Scope<'a> {
    pub contexts: &'a Contexts,
    pub status: Status,
}

impl<'a> Scope<'a> {
    pub fn new(contexts: &'a Contexts, status: Status) -> Self {
        Scope { contexts, status }
    }

    fn with<T>(&self, f: impl FnOnce(&EvalContext<'_>) -> T) -> T {
        let host = StatusHost(self.status);
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
