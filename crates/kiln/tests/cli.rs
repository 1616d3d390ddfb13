//! Black-box tests of the `kiln` command line: exit codes, messages and
//! (snapshotted) output of `validate`, `expr` and `run`.

mod support;

use std::process::Output;

use serde_json::Value;
use support::{Repo, RunOutput};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exit code")
}

const BAD_WORKFLOW: &str = "\
name: bad
on: push
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - run: echo hi
        uses: actions/checkout@v4
      - bogus: 1
";

#[test]
fn validate_accepts_a_good_file() {
    let repo = Repo::with_examples();
    let out = repo.kiln(&["validate", "examples/hello.yml"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");
    assert_eq!(text(&out.stderr), "checked 1 file: 0 errors, 0 warnings\n");
}

#[test]
fn validate_reports_errors_with_file_line_col() {
    let repo = Repo::with_examples();
    std::fs::write(repo.root().join("bad.yml"), BAD_WORKFLOW).expect("write");
    let out = repo.kiln(&["validate", "examples/hello.yml", "bad.yml"]);
    assert_eq!(code(&out), 1);
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("bad.yml:8:9: error: "),
        "diagnostics must start with file:line:col:\n{stdout}"
    );
    assert_eq!(text(&out.stderr), "checked 2 files: 3 errors, 0 warnings\n");
    insta::assert_snapshot!("validate_bad_file", stdout);
}

#[test]
fn validate_json_lists_diagnostics_per_file() {
    let repo = Repo::with_examples();
    std::fs::write(repo.root().join("bad.yml"), BAD_WORKFLOW).expect("write");
    let out = repo.kiln(&["validate", "--json", "bad.yml", "examples/outputs.yml"]);
    assert_eq!(code(&out), 1);
    let json: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json[0]["path"], "bad.yml");
    assert_eq!(json[0]["diagnostics"].as_array().expect("list").len(), 3);
    assert_eq!(json[1]["path"], "examples/outputs.yml");
    assert_eq!(json[1]["diagnostics"], serde_json::json!([]));
}

#[test]
fn validate_missing_file_is_bad_input() {
    let repo = Repo::with_examples();
    let out = repo.kiln(&["validate", "nowhere.yml"]);
    assert_eq!(code(&out), 2);
    assert_eq!(
        text(&out.stderr),
        "error: nowhere.yml: no such file or directory\n"
    );
}

#[test]
fn expr_prints_kind_and_value() {
    let repo = Repo::with_examples();
    for (expr, expected) in [
        ("format('{0}', 1)", r#"{"kind":"String","value":"1"}"#),
        ("fromJSON('[1,2]')", r#"{"kind":"Array","value":[1,2]}"#),
        ("${{ 1 == 1.0 }}", r#"{"kind":"Boolean","value":true}"#),
        ("'abc' == 'ABC'", r#"{"kind":"Boolean","value":true}"#),
        ("fromJSON('3')", r#"{"kind":"Number","value":3}"#),
        ("null", r#"{"kind":"Null","value":null}"#),
    ] {
        let out = repo.kiln(&["expr", expr]);
        assert_eq!(code(&out), 0, "{expr}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), format!("{expected}\n"), "{expr}");
    }
}

#[test]
fn expr_reads_contexts_from_a_file() {
    let repo = Repo::with_examples();
    let contexts = repo.scratch("contexts.json");
    std::fs::write(
        &contexts,
        r#"{"github": {"event_name": "push"}, "matrix": {"os": ["a", "b"]}}"#,
    )
    .expect("write");
    let out = repo.kiln(&[
        "expr",
        "github.event_name == 'push' && join(matrix.os, '+')",
        "--contexts",
        contexts.to_str().expect("utf-8"),
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "{\"kind\":\"String\",\"value\":\"a+b\"}\n"
    );
}

#[test]
fn expr_parse_error_exits_2() {
    let repo = Repo::with_examples();
    let out = repo.kiln(&["expr", "1 +"]);
    assert_eq!(code(&out), 2);
    assert_eq!(text(&out.stdout), "");
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("error: "), "{stderr}");
    insta::assert_snapshot!("expr_parse_error", stderr);
}

#[test]
fn run_rejects_an_undeclared_input() {
    let repo = Repo::with_examples();
    let run = repo.run_example(
        "hello.yml",
        &["--event", "workflow_dispatch", "--input", "color=red"],
    );
    run.assert_code(2);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert!(
        run.stderr
            .contains("hello.yml: unexpected input \"color\": the workflow declares no inputs"),
        "{}",
        run.stderr
    );
    // Rejected before any VM was allocated.
    assert!(!run.stderr.contains("vm "), "{}", run.stderr);
}

#[test]
fn run_rejects_a_malformed_pair() {
    let repo = Repo::with_examples();
    let run = repo.run_example("hello.yml", &["--secret", "NOVALUE"]);
    run.assert_code(2);
    assert!(
        run.stderr
            .contains("error: --secret NOVALUE: expected NAME=VALUE"),
        "{}",
        run.stderr
    );
}

#[test]
/// With no guest image in KILN_HOME, the qemu backend fails before running
/// anything and says how to build one.
fn run_with_qemu_backend_and_no_image_names_the_fix() {
    let repo = Repo::with_examples();
    let workflow = repo.root().join("examples/hello.yml");
    let out = repo.kiln(&[
        "run",
        workflow.to_str().expect("utf-8"),
        "--backend",
        "qemu",
    ]);
    assert_eq!(code(&out), 2);
    assert_eq!(text(&out.stdout), "");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("no usable guest image") && stderr.contains("kiln image build"),
        "{stderr}"
    );
}

#[test]
fn run_unknown_job_is_bad_input() {
    let repo = Repo::with_examples();
    let run = repo.run_example("outputs.yml", &["--job", "nope"]);
    run.assert_code(2);
    assert!(
        run.stderr
            .contains("no job \"nope\" in the workflow (jobs: produce, middle, consume, indirect)"),
        "{}",
        run.stderr
    );
}

#[test]
fn run_job_filter_runs_the_job_and_its_needs() {
    let repo = Repo::with_examples();
    let run = repo.run_example("outputs.yml", &["--job", "middle"]);
    run.assert_code(0);
    assert_eq!(run.job_names(), ["produce", "middle"]);
    assert_eq!(run.job("middle")["outputs"]["doubled"], "1.2.3/1.2.3");
}

#[test]
fn run_refuses_a_workflow_the_event_does_not_trigger() {
    let repo = Repo::with_examples();
    let run = repo.run_example("dispatch-inputs.yml", &[]);
    run.assert_code(2);
    assert!(
        run.stderr.contains("not triggered by \"push\""),
        "{}",
        run.stderr
    );
}

#[test]
fn run_reports_parse_errors_with_location() {
    let repo = Repo::with_examples();
    std::fs::write(repo.root().join("bad.yml"), BAD_WORKFLOW).expect("write");
    let out = repo.kiln(&["run", "bad.yml", "--backend", "local"]);
    assert_eq!(code(&out), 2);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("bad.yml:9:9: error: unknown key \"bogus\""),
        "{stderr}"
    );
    assert!(stderr.contains("error: bad.yml has errors"), "{stderr}");
}

/// Replaces what changes between runs in the live display: durations and
/// VM ids; collapses the table's alignment padding.
fn normalize_display(text: &str) -> String {
    text.lines()
        .map(|line| {
            if let Some(indent) = line.find("vm local-") {
                return format!("{}vm [VM] ready in [T]", &line[..indent]);
            }
            let line = replace_durations(line);
            let indent = line.len() - line.trim_start().len();
            let words: Vec<&str> = line.split_whitespace().collect();
            format!("{}{}", &line[..indent], words.join(" "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `12ms`, `1.5s`, `2m03s` as whole words become `[T]`.
fn replace_durations(line: &str) -> String {
    let is_duration = |w: &str| {
        let w = w.trim_start_matches('(').trim_end_matches(')');
        let number = w
            .strip_suffix("ms")
            .or_else(|| w.strip_suffix('s'))
            .unwrap_or("");
        !number.is_empty()
            && number
                .chars()
                .all(|c| c.is_ascii_digit() || c == '.' || c == 'm')
    };
    line.split(' ')
        .map(|w| {
            if is_duration(w) {
                let open = if w.starts_with('(') { "(" } else { "" };
                let close = if w.ends_with(')') { ")" } else { "" };
                format!("{open}[T]{close}")
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Zeroes durations and replaces VM ids in a `--json` result.
fn normalize_json(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match key.as_str() {
                    "duration_ms" => *v = Value::from(0),
                    "vms" => *v = serde_json::json!(["[VM]"]),
                    _ => normalize_json(v),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize_json),
        _ => {}
    }
}

#[test]
fn run_display_snapshot() {
    let repo = Repo::with_examples();
    let run = repo.run_example("conditions.yml", &[]);
    run.assert_code(0);
    insta::assert_snapshot!("run_conditions_display", normalize_display(&run.stderr));
}

#[test]
fn run_json_snapshot() {
    let repo = Repo::with_examples();
    let run: RunOutput = repo.run_example("outputs.yml", &[]);
    run.assert_code(0);
    let mut json = run.json.clone();
    normalize_json(&mut json);
    let pretty = serde_json::to_string_pretty(&json).expect("json");
    insta::assert_snapshot!("run_outputs_json", pretty);
}

#[test]
fn run_without_json_prints_progress_on_stdout() {
    let repo = Repo::with_examples();
    let workflow = repo.root().join("examples/outputs.yml");
    let out = repo.kiln(&[
        "run",
        workflow.to_str().expect("utf-8"),
        "--backend",
        "local",
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.lines().any(|l| l == "  │ version=1.2.3"), "{stdout}");
    assert!(stdout.contains("✓ run success in "), "{stdout}");
    assert!(
        serde_json::from_str::<Value>(&stdout).is_err(),
        "no JSON without --json"
    );
    // The isolation warning goes to stderr, never into the progress.
    assert!(text(&out.stderr).contains("warning: the local backend"));
}

/// Ctrl-C while a step runs: the step is interrupted, `always()` steps still
/// run, the run ends cancelled (exit 1) and the VM's directory is gone.
#[test]
fn ctrl_c_cancels_the_run_and_releases_the_vm() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let repo = Repo::with_examples();
    std::fs::write(
        repo.root().join("slow.yml"),
        "on: push\njobs:\n  j:\n    runs-on: x\n    steps:\n      - run: echo started && sleep 60\n      - if: always()\n        run: echo cleanup-ran\n",
    )
    .expect("write");
    let mut child = Command::new(support::kiln_bin())
        .args(["run", "slow.yml", "--backend", "local"])
        .current_dir(repo.root())
        .env("KILN_HOME", repo.home())
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn kiln");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("line");
        seen.push(line.clone());
        if line.contains("started") {
            break;
        }
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    seen.extend(lines.map_while(Result::ok));
    let status = child.wait().expect("wait");
    let all = seen.join("\n");
    assert_eq!(status.code(), Some(1), "{all}");
    assert!(
        all.contains("cleanup-ran"),
        "always() step must run:\n{all}"
    );
    assert!(all.contains("run cancelled"), "{all}");
    let vms = repo.home().join("local-vms");
    let left: Vec<_> = std::fs::read_dir(&vms)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "VM directories left behind: {left:?}");
}
