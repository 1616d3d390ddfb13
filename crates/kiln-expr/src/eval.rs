//! The tree-walking evaluator. Recursion follows the tree, whose depth the
//! parser bounds; `&&`/`||` short-circuit and return the deciding operand.

use std::borrow::Cow;

use crate::ast::{Accessor, Expr, Function, LogicalOp, Node, NodeKind};
use crate::context::{Contexts, EvalContext, Host, Status};
use crate::error::EvalError;
use crate::functions::{self, Segment};
use crate::json;
use crate::memory::{Memory, StrBuilder};
use crate::val::{self, NULL, Selector, Val};
use crate::value::Value;

/// Evaluates a parsed expression. An empty expression yields `null`.
pub fn evaluate(expr: &Expr, ctx: &EvalContext<'_>) -> Result<Value, EvalError> {
    let Some(root) = expr.root() else {
        return Ok(Value::Null);
    };
    let mut evaluator = Evaluator {
        contexts: ctx.contexts,
        host: ctx.host,
        status: ctx.status(),
        memory: Memory::default(),
    };
    Ok(evaluator.eval(root, 0)?.into_value())
}

struct Evaluator<'x> {
    contexts: &'x Contexts,
    host: Option<&'x dyn Host>,
    status: Status,
    memory: Memory,
}

type EResult<T> = Result<T, EvalError>;

impl<'x> Evaluator<'x> {
    fn eval(&mut self, node: &'x Node, level: usize) -> EResult<Val<'x>> {
        let inner = level + 1;
        let val = match &node.kind {
            NodeKind::Literal(v) => Val::One(Cow::Borrowed(v)),
            NodeKind::Context(name) => Val::One(
                self.contexts
                    .get(name)
                    .map_or(Cow::Owned(Value::Null), Cow::Borrowed),
            ),
            NodeKind::Access { target, accessor } => {
                let target = self.eval(target, inner)?;
                match accessor {
                    Accessor::Property(name) => val::access(target, &Selector::property(name)),
                    Accessor::Star => val::access(target, &Selector::Star),
                    Accessor::Index(index) => {
                        let index = self.eval(index, inner)?;
                        val::access(target, &Selector::index(&index))
                    }
                }
            }
            NodeKind::Not(operand) => Val::bool(!self.eval(operand, inner)?.is_truthy()),
            NodeKind::Compare { first, rest } => {
                let mut acc = self.eval(first, inner)?;
                for (op, operand) in rest {
                    let right = self.eval(operand, inner)?;
                    acc = Val::bool(val::compare(*op, &acc, &right));
                    // Both operands are consumed: a flat chain holds no more
                    // than GitHub's nested binary nodes do.
                    self.memory.release_deeper(level);
                }
                acc
            }
            NodeKind::Logical { op, operands } => {
                let mut result = Val::owned(Value::Null);
                for operand in operands {
                    // The previous operand's value is discarded.
                    self.memory.release_deeper(level);
                    result = self.eval(operand, inner)?;
                    let decided = match op {
                        LogicalOp::And => !result.is_truthy(),
                        LogicalOp::Or => result.is_truthy(),
                    };
                    if decided {
                        break;
                    }
                }
                result
            }
            NodeKind::Call { function, args } => self.call(*function, args, inner)?,
        };
        self.memory.charge(level, val.cost(), val.is_primitive())?;
        Ok(val)
    }

    fn call(&mut self, function: Function, args: &'x [Node], level: usize) -> EResult<Val<'x>> {
        match function {
            Function::Format => return self.format(args, level),
            Function::Case => return self.case(args, level),
            Function::Success => return Ok(Val::bool(self.status == Status::Success)),
            Function::Failure => return Ok(Val::bool(self.status == Status::Failure)),
            Function::Cancelled => return Ok(Val::bool(self.status == Status::Cancelled)),
            Function::Always => return Ok(Val::bool(true)),
            _ => {}
        }
        let values = args
            .iter()
            .map(|arg| self.eval(arg, level))
            .collect::<EResult<Vec<_>>>()?;
        let arg = |i: usize| values.get(i).unwrap_or(&NULL);
        Ok(match function {
            Function::Contains => Val::bool(functions::contains(arg(0), arg(1))),
            Function::StartsWith => Val::bool(functions::starts_with(arg(0), arg(1))),
            Function::EndsWith => Val::bool(functions::ends_with(arg(0), arg(1))),
            Function::Join => Val::string(functions::join(arg(0), values.get(1))?),
            Function::ToJson => Val::string(json::to_json(arg(0))?),
            Function::FromJson => Val::owned(functions::from_json(arg(0))?),
            Function::HashFiles => {
                let patterns: Vec<String> =
                    values.iter().map(|v| v.display().into_owned()).collect();
                let host = self.host.ok_or(EvalError::HashFilesUnavailable)?;
                Val::string(host.hash_files(&patterns).map_err(EvalError::HashFiles)?)
            }
            Function::Format
            | Function::Case
            | Function::Success
            | Function::Failure
            | Function::Cancelled
            | Function::Always => Val::owned(Value::Null),
        })
    }

    /// `format(fmt, args…)`: arguments are evaluated only when referenced, once.
    fn format(&mut self, args: &'x [Node], level: usize) -> EResult<Val<'x>> {
        let Some((fmt_node, arg_nodes)) = args.split_first() else {
            return Ok(Val::string(String::new()));
        };
        let fmt = self.eval(fmt_node, level)?;
        let fmt = fmt.display();
        let segments = functions::parse_format(&fmt, arg_nodes.len())?;
        let mut cache: Vec<Option<Val<'x>>> = vec![None; arg_nodes.len()];
        let mut out = StrBuilder::new();
        for segment in segments {
            match segment {
                Segment::Text(range) => out.push_str(fmt.get(range).unwrap_or_default())?,
                Segment::Arg { index, specifiers } => {
                    let (Some(slot), Some(node)) = (cache.get_mut(index), arg_nodes.get(index))
                    else {
                        return Err(EvalError::FormatArgumentCount(fmt.into_owned()));
                    };
                    if slot.is_none() {
                        *slot = Some(self.eval(node, level)?);
                    }
                    let value = slot.as_ref().unwrap_or(&NULL);
                    if !specifiers.is_empty() {
                        return Err(EvalError::FormatSpecifiers {
                            specifiers,
                            kind: value.kind_name(),
                        });
                    }
                    out.push_str(&value.display())?;
                }
            }
        }
        Ok(Val::string(out.finish()))
    }

    /// `case(pred1, val1, …, default)`: predicates must be booleans; only the
    /// chosen value is evaluated.
    fn case(&mut self, args: &'x [Node], level: usize) -> EResult<Val<'x>> {
        let Some((default, pairs)) = args.split_last() else {
            return Ok(Val::owned(Value::Null));
        };
        for pair in pairs.chunks(2) {
            let [predicate, value] = pair else {
                break;
            };
            match self.eval(predicate, level)? {
                Val::One(p) => match p.as_ref() {
                    Value::Bool(true) => return self.eval(value, level),
                    Value::Bool(false) => {}
                    _ => return Err(EvalError::CasePredicate),
                },
                Val::Filtered(_) => return Err(EvalError::CasePredicate),
            }
        }
        self.eval(default, level)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::HostError;
    use crate::parser::parse;
    use serde_json::json;

    fn contexts() -> Contexts {
        let mut c = Contexts::new();
        c.insert(
            "github",
            Value::from(json!({
                "event": {"labels": [{"name": "bug"}, {"name": "docs"}], "empty": {}},
                "Ref": "refs/heads/main"
            })),
        );
        c
    }

    fn eval_with(src: &str, ctx: &EvalContext<'_>) -> Result<Value, EvalError> {
        evaluate(&parse(src).expect("parses"), ctx)
    }

    fn eval(src: &str) -> Value {
        let c = contexts();
        eval_with(src, &EvalContext::new(&c)).expect("evaluates")
    }

    fn eval_err(src: &str) -> EvalError {
        let c = contexts();
        eval_with(src, &EvalContext::new(&c)).expect_err("should fail")
    }

    #[test]
    fn logical_operators_return_operands_and_short_circuit() {
        assert_eq!(eval("0 || '' || 'x'"), Value::from("x"));
        assert_eq!(eval("'a' && 0 && 'b'"), Value::from(0.0));
        assert_eq!(eval("false && fromJSON('')"), Value::from(false));
        assert_eq!(eval("true || fromJSON('')"), Value::from(true));
        assert!(matches!(
            eval_err("true && fromJSON('')"),
            EvalError::FromJsonEmpty
        ));
    }

    #[test]
    fn arrays_and_objects_compare_by_identity() {
        assert_eq!(eval("github.event == github.EVENT"), Value::from(true));
        assert_eq!(
            eval("github.event.empty == fromJSON('{}')"),
            Value::from(false)
        );
        assert_eq!(eval("fromJSON('[]') == fromJSON('[]')"), Value::from(false));
        assert_eq!(
            eval("(github.event || 1) == github.event"),
            Value::from(true)
        );
        assert_eq!(
            eval("contains(github.event.labels, github.event.labels[1])"),
            Value::from(true)
        );
        assert_eq!(
            eval("github.event.labels.* == github.event.labels.*"),
            Value::from(false)
        );
    }

    #[test]
    fn property_access_and_filters() {
        assert_eq!(eval("github.ref"), Value::from("refs/heads/main"));
        assert_eq!(eval("github['REF']"), Value::from("refs/heads/main"));
        assert_eq!(eval("github.nope.deeper"), Value::Null);
        assert_eq!(eval("nosuchcontext"), Value::Null);
        assert_eq!(
            eval("github.event.labels.*.name"),
            Value::from(json!(["bug", "docs"]))
        );
        assert_eq!(
            eval("join(github.event.labels.*.name, ', ')"),
            Value::from("bug, docs")
        );
        assert_eq!(
            eval("fromJSON('{\"a\":{\"b\":[1,2]}}').a.b[1]"),
            Value::from(2.0)
        );
        assert_eq!(
            eval("fromJSON('[{\"a\":1},{\"b\":2},{\"a\":3}]').*.a"),
            Value::from(json!([1, 3]))
        );
        assert_eq!(eval("github.event.labels[1.9].name"), Value::from("docs"));
    }

    #[test]
    fn format_is_lazy_and_strict() {
        assert_eq!(eval("format('{0}', 'a', fromJSON(''))"), Value::from("a"));
        assert_eq!(
            eval("format('{0}{0}{{{1}}}', 1.0, null)"),
            Value::from("11{}")
        );
        assert_eq!(eval("format('{0}', 1e20)"), Value::from("1E+20"));
        assert!(matches!(
            eval_err("format('{1}', 'a')"),
            EvalError::FormatArgumentCount(_)
        ));
        assert!(matches!(
            eval_err("format('{0', fromJSON(''))"),
            EvalError::InvalidFormat(_)
        ));
        assert!(matches!(
            eval_err("format('{0:yyyy}', 1)"),
            EvalError::FormatSpecifiers { .. }
        ));
    }

    #[test]
    fn case_is_lazy() {
        assert_eq!(
            eval("case(false, fromJSON(''), true, 'b', fromJSON(''))"),
            Value::from("b")
        );
        assert!(matches!(
            eval_err("case(1, 'a', 'b')"),
            EvalError::CasePredicate
        ));
    }

    #[test]
    fn tojson_and_fromjson() {
        assert_eq!(
            eval("toJSON(github.event.labels[0])"),
            Value::from("{\n  \"name\": \"bug\"\n}")
        );
        assert_eq!(
            eval("toJSON(github.event.labels.*.name)"),
            Value::from("[\n  \"bug\",\n  \"docs\"\n]")
        );
        assert_eq!(
            eval("fromJSON(toJSON(github.event)) == github.event"),
            Value::from(false)
        );
        assert!(matches!(eval_err("fromJSON('{')"), EvalError::FromJson(_)));
    }

    struct FakeHost {
        status: Status,
        fail: bool,
    }

    impl Host for FakeHost {
        fn status(&self) -> Status {
            self.status
        }

        fn hash_files(&self, patterns: &[String]) -> Result<String, HostError> {
            if self.fail {
                return Err("disk on fire".into());
            }
            Ok(format!("hash of {}", patterns.join("+")))
        }
    }

    #[test]
    fn host_functions() {
        let c = contexts();
        let plain = EvalContext::new(&c);
        assert_eq!(
            eval_with(
                "success() && always() && !cancelled() && !failure()",
                &plain
            )
            .expect("ok"),
            Value::from(true)
        );
        assert!(matches!(
            eval_with("hashFiles('a')", &plain),
            Err(EvalError::HashFilesUnavailable)
        ));

        let host = FakeHost {
            status: Status::Failure,
            fail: false,
        };
        let ctx = EvalContext::new(&c).with_host(&host);
        assert_eq!(
            eval_with("failure() && !success()", &ctx).expect("ok"),
            Value::from(true)
        );
        assert_eq!(
            eval_with("hashFiles('**/*.lock', 1)", &ctx).expect("ok"),
            Value::from("hash of **/*.lock+1")
        );

        let broken = FakeHost {
            status: Status::Cancelled,
            fail: true,
        };
        let ctx = EvalContext::new(&c).with_host(&broken);
        assert_eq!(
            eval_with("cancelled()", &ctx).expect("ok"),
            Value::from(true)
        );
        let err = eval_with("hashFiles('x')", &ctx).expect_err("host error");
        assert!(matches!(err, EvalError::HashFiles(_)));
        assert_eq!(
            std::error::Error::source(&err).map(|e| e.to_string()),
            Some("disk on fire".into())
        );
    }

    #[test]
    fn memory_budget_stops_runaway_growth() {
        let tens = "{0}".repeat(10);
        let mut src = "'abcdefghij'".to_owned();
        for _ in 0..6 {
            src = format!("format('{tens}', {src})");
        }
        assert!(matches!(eval_err(&src), EvalError::MemoryExceeded));
        // Large but bounded results are fine.
        assert!(
            eval_with(
                &format!("format('{tens}', format('{tens}', 'x'))"),
                &EvalContext::new(&contexts())
            )
            .is_ok()
        );
    }

    #[test]
    fn chains_release_consumed_operands() {
        let mut c = Contexts::new();
        c.insert("big", Value::from("x".repeat(200_000)));
        let ctx = EvalContext::new(&c);
        let chain = ["big"; 5].join(" == ");
        assert_eq!(eval_with(&chain, &ctx).expect("fits"), Value::from(false));
        let chain = ["!big"; 5].join(" || ");
        assert_eq!(eval_with(&chain, &ctx).expect("fits"), Value::from(false));
        // Holding more than 1 MiB at once is over budget, as in GitHub.
        assert!(matches!(
            eval_with("format('{0}{1}{0}', big, big)", &ctx),
            Err(EvalError::MemoryExceeded)
        ));
    }

    #[test]
    fn long_chains_evaluate_without_deep_recursion() {
        let chain = vec!["1"; 4000].join(" == ");
        assert_eq!(eval(&chain), Value::from(true));
        let chain = vec!["github"; 2000].join(" && ");
        assert_eq!(eval(&chain).kind_name(), "Object");
    }
}
