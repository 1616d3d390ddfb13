//! GitHub's expression test vectors (actions/languageservices, 1,020 cases).
//!
//! The data lives outside the repository, in `../shared/conformance/expressions`
//! next to the checkout; `KILN_CONFORMANCE_DIR` overrides the location. A
//! missing or incomplete folder fails the test: the case count is asserted.

use std::path::PathBuf;

use kiln_expr::{Contexts, Error, EvalContext, ParseOptions, Phase, Value, evaluate, parse_with};
use serde_json::Value as Json;

const EXPECTED_CASES: usize = 1020;

fn data_dir() -> PathBuf {
    match std::env::var_os("KILN_CONFORMANCE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/conformance/expressions"),
    }
}

struct Case {
    file: String,
    group: String,
    expr: String,
    contexts: serde_json::Map<String, Json>,
    expected: Expected,
}

enum Expected {
    Value { kind: String, value: Json },
    Error { kind: String, message: String },
}

fn load_cases() -> Vec<Case> {
    let dir = data_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read conformance data at {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).expect("readable test file");
        let groups: serde_json::Map<String, Json> =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for (group, list) in groups {
            for case in list.as_array().expect("a group is a list of cases") {
                cases.push(parse_case(&file, &group, case));
            }
        }
    }
    cases
}

fn parse_case(file: &str, group: &str, case: &Json) -> Case {
    let field = |name: &str| case.get(name).cloned().unwrap_or(Json::Null);
    let expected = if let Some(err) = case.get("err") {
        Expected::Error {
            kind: err["kind"].as_str().expect("error kind").to_owned(),
            message: err["value"].as_str().unwrap_or_default().to_owned(),
        }
    } else {
        let result = field("result");
        Expected::Value {
            kind: result["kind"].as_str().expect("result kind").to_owned(),
            value: result["value"].clone(),
        }
    };
    Case {
        file: file.to_owned(),
        group: group.to_owned(),
        expr: field("expr").as_str().expect("expr").to_owned(),
        contexts: field("contexts").as_object().cloned().unwrap_or_default(),
        expected,
    }
}

/// Runs one case; `Err` describes a mismatch.
fn run(case: &Case) -> Result<(), String> {
    let contexts: Contexts = case
        .contexts
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.clone())))
        .collect();
    let options = ParseOptions::with_contexts(case.contexts.keys().cloned());
    let outcome = parse_with(&case.expr, &options)
        .map_err(Error::from)
        .and_then(|expr| Ok(evaluate(&expr, &EvalContext::new(&contexts))?));
    match (&case.expected, outcome) {
        (Expected::Value { kind, value }, Ok(got)) => {
            if got.kind_name() == kind && matches(&got, value) {
                Ok(())
            } else {
                Err(format!(
                    "expected {kind} {value}, got {} {}",
                    got.kind_name(),
                    got.to_json()
                ))
            }
        }
        (Expected::Value { kind, value }, Err(err)) => {
            Err(format!("expected {kind} {value}, got error: {err}"))
        }
        (Expected::Error { kind, message }, Ok(got)) => Err(format!(
            "expected {kind} error ({message}), got {} {}",
            got.kind_name(),
            got.to_json()
        )),
        (Expected::Error { kind, message }, Err(err)) => {
            let got = match &err {
                Error::Parse(e) if e.phase() == Phase::Lexing => "lexing",
                Error::Parse(_) => "parsing",
                Error::Eval(_) => "evaluation",
            };
            if got == kind {
                Ok(())
            } else {
                Err(format!(
                    "expected {kind} error ({message}), got {got} error: {err}"
                ))
            }
        }
    }
}

/// Structural comparison; numbers compare as doubles (so `-0` matches `0`).
fn matches(got: &Value, want: &Json) -> bool {
    match (got, want) {
        (Value::Null, Json::Null) => true,
        (Value::Bool(a), Json::Bool(b)) => a == b,
        (Value::Number(a), Json::Number(b)) => b.as_f64() == Some(*a),
        (Value::String(a), Json::String(b)) => a == b,
        (Value::Array(a), Json::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| matches(x, y))
        }
        (Value::Object(a), Json::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|((ka, va), (kb, vb))| ka == kb && matches(va, vb))
        }
        _ => false,
    }
}

#[test]
fn github_expression_conformance() {
    let cases = load_cases();
    assert_eq!(
        cases.len(),
        EXPECTED_CASES,
        "expected {EXPECTED_CASES} conformance cases in {}",
        data_dir().display()
    );
    let mut failures = Vec::new();
    for case in &cases {
        if let Err(why) = run(case) {
            failures.push(format!(
                "{}/{}: {:?}: {why}",
                case.file, case.group, case.expr
            ));
        }
    }
    let passed = cases.len() - failures.len();
    println!("expression conformance: {passed}/{EXPECTED_CASES} passed");
    for failure in &failures {
        println!("  FAIL {failure}");
    }
    assert!(
        failures.is_empty(),
        "{} of {EXPECTED_CASES} conformance cases failed (listed above)",
        failures.len()
    );
}
