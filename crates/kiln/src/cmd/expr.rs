//! `kiln expr`: evaluate one expression, print `{"kind": …, "value": …}`.

use anyhow::{Context, bail};
use kiln_expr::{Contexts, EvalContext, Value};

use crate::cli::ExprArgs;
use crate::exit::Code;

pub fn run(args: &ExprArgs) -> anyhow::Result<Code> {
    let contexts = match &args.contexts {
        None => Contexts::new(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let json: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{}: invalid JSON", path.display()))?;
            let serde_json::Value::Object(map) = json else {
                bail!(
                    "{}: expected a JSON object mapping context names to values",
                    path.display()
                );
            };
            map.into_iter()
                .map(|(name, value)| (name, Value::from(value)))
                .collect()
        }
    };
    let ctx = EvalContext::new(&contexts);
    let text = args.expression.trim();
    let result = if text.contains("${{") {
        kiln_expr::evaluate_template(text, &ctx).map_err(|e| e.to_string())
    } else {
        kiln_expr::parse(text)
            .map_err(|e| e.to_string())
            .and_then(|expr| kiln_expr::evaluate(&expr, &ctx).map_err(|e| e.to_string()))
    };
    match result {
        Ok(value) => {
            let out = serde_json::json!({ "kind": value.kind_name(), "value": value.to_json() });
            println!("{out}");
            Ok(Code::Success)
        }
        Err(err) => {
            eprintln!("error: {err}");
            Ok(Code::BadInput)
        }
    }
}
