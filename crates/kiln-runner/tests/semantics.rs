//! GitHub's workflow semantics, end to end on a real backend: real YAML,
//! real shells, real environment files.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Harness, Rendezvous, image_with_git_and_python, output_lines};
use kiln_runner::{
    Conclusion, GitInfo, JobResult, RunConfig, RunError, RunResult, StepResult, VmScope,
};

fn job<'r>(result: &'r RunResult, name: &str) -> &'r JobResult {
    result
        .jobs
        .iter()
        .find(|j| j.name == name || (j.id == name && j.matrix.is_none()))
        .unwrap_or_else(|| panic!("no job {name}: {result:#?}"))
}

fn step<'r>(job: &'r JobResult, name: &str) -> &'r StepResult {
    job.steps
        .iter()
        .find(|s| s.name == name || s.id.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no step {name} in {job:#?}"))
}

fn has_line(lines: &[String], line: &str) -> bool {
    lines.iter().any(|l| l == line)
}

#[track_caller]
fn assert_lines(lines: &[String], expected: &[&str]) {
    for e in expected {
        assert!(has_line(lines, e), "missing line {e:?} in {lines:#?}");
    }
}

async fn run(yaml: &str) -> (RunResult, Vec<String>) {
    let h = Harness::new(4);
    let (result, events) = h.run_ok(yaml).await;
    h.assert_no_leaks();
    (result, output_lines(&events))
}

async fn run_with(yaml: &str, cfg: &RunConfig) -> (Result<RunResult, RunError>, Vec<String>) {
    let h = Harness::new(4);
    let (result, events) = h.run(yaml, cfg).await;
    if h.stats().allocations() > 0 {
        h.assert_no_leaks();
    }
    (result, output_lines(&events))
}

#[tokio::test]
async fn env_layers_workflow_job_step_and_github_env() {
    let (result, lines) = run(r#"
on: push
env:
  A: wf
  B: wf
  C: wf
jobs:
  j:
    runs-on: x
    env:
      B: job
      C: job
    steps:
      - env:
          C: step
          FROM_WF: ${{ env.A }}-x
        run: echo "A=$A B=$B C=$C FROM_WF=$FROM_WF ctx=${{ env.C }}"
      - run: |
          echo "SET1=hello" >> "$GITHUB_ENV"
          {
            echo 'MULTI<<EOF'
            echo 'line one'
            echo 'line two'
            echo 'EOF'
          } >> "$GITHUB_ENV"
          echo "B=from-env-file" >> "$GITHUB_ENV"
          echo "GITHUB_SHA=forged" >> "$GITHUB_ENV"
          echo "same-step=${SET1:-unset}"
      - run: |
          echo "SET1=$SET1"
          echo "MULTI=[$MULTI]"
          echo "B=$B"
          echo "ctx-set1=${{ env.SET1 }} ctx-b=${{ env.B }}"
          echo "sha-forged=$([ "$GITHUB_SHA" = forged ] && echo yes || echo no)"
      - env:
          B: step-wins
        run: echo "B2=$B"
"#)
    .await;
    assert_eq!(result.conclusion, Conclusion::Success, "{result:#?}");
    assert_lines(
        &lines,
        &[
            "A=wf B=job C=step FROM_WF=wf-x ctx=step",
            "same-step=unset",
            "SET1=hello",
            "MULTI=[line one",
            "line two]",
            "B=from-env-file",
            "ctx-set1=hello ctx-b=from-env-file",
            "sha-forged=no",
            "B2=step-wins",
        ],
    );
}

#[tokio::test]
async fn step_outputs_and_job_outputs_reach_dependent_jobs() {
    let (result, lines) = run(r#"
on: push
jobs:
  produce:
    runs-on: x
    outputs:
      greeting: ${{ steps.s.outputs.greeting }}
      multi: ${{ steps.s.outputs.multi }}
    steps:
      - id: s
        run: |
          echo "greeting=hello world" >> "$GITHUB_OUTPUT"
          { echo 'multi<<END'; echo a; echo b; echo END; } >> "$GITHUB_OUTPUT"
      - run: echo "same-job=${{ steps.s.outputs.greeting }}"
  consume:
    needs: produce
    runs-on: x
    steps:
      - run: |
          echo "from-needs=${{ needs.produce.outputs.greeting }} result=${{ needs.produce.result }}"
          echo "multi=${{ needs.produce.outputs.multi }}"
"#)
    .await;
    assert_eq!(result.conclusion, Conclusion::Success, "{result:#?}");
    let produce = job(&result, "produce");
    assert_eq!(step(produce, "s").outputs["greeting"], "hello world");
    assert_eq!(step(produce, "s").outputs["multi"], "a\nb");
    assert_eq!(produce.outputs["greeting"], "hello world");
    assert_lines(
        &lines,
        &[
            "same-job=hello world",
            "from-needs=hello world result=success",
            "multi=a",
            "b",
        ],
    );
}

#[tokio::test]
async fn github_path_prepends_for_later_steps() {
    let (result, lines) = run(r#"
on: push
jobs:
  j:
    runs-on: x
    steps:
      - run: |
          mkdir -p "$RUNNER_TEMP/bin"
          printf '#!/bin/sh\necho kiln-tool-ran\n' > "$RUNNER_TEMP/bin/kiln-tool"
          chmod +x "$RUNNER_TEMP/bin/kiln-tool"
          echo "$RUNNER_TEMP/bin" >> "$GITHUB_PATH"
          command -v kiln-tool || echo not-yet
      - run: |
          kiln-tool
          echo "first=$(echo "$PATH" | cut -d: -f1 | xargs basename)"
"#)
    .await;
    assert_eq!(result.conclusion, Conclusion::Success, "{result:#?}");
    assert_lines(&lines, &["not-yet", "kiln-tool-ran", "first=bin"]);
}

#[tokio::test]
async fn step_summary_is_in_the_result() {
    let (result, _) = run(r#"
on: push
jobs:
  j:
    runs-on: x
    steps:
      - run: echo '## Build report' >> "$GITHUB_STEP_SUMMARY"
      - run: echo 'nothing for the summary'
      - run: printf -- '- item one\n- item two' >> "$GITHUB_STEP_SUMMARY"
"#)
    .await;
    let summary = &job(&result, "j").summary;
    assert_eq!(summary, "## Build report\n- item one\n- item two\n");
    let json = serde_json::to_string(&result).expect("json");
    assert!(json.contains("## Build report"), "{json}");
}

#[tokio::test]
async fn step_if_status_functions() {
    let (result, lines) = run(r#"
on: push
jobs:
  broken:
    runs-on: x
    steps:
      - name: ok
        run: echo ok
      - name: fails
        run: exit 1
      - name: implicit
        run: echo implicit-ran
      - name: explicit-success
        if: success()
        run: echo success-ran
      - name: expr-without-status
        if: github.event_name == 'push'
        run: echo expr-ran
      - name: on-failure
        if: failure()
        run: echo failure-ran
      - name: on-always
        if: always()
        run: echo always-ran
      - name: on-cancelled
        if: cancelled()
        run: echo cancelled-ran
      - name: failure-and-expr
        if: failure() && github.event_name == 'push'
        run: echo failure-expr-ran
  fine:
    runs-on: x
    steps:
      - name: on-failure
        if: failure()
        run: echo fine-failure-ran
      - name: on-success
        if: success()
        run: echo fine-success-ran
      - name: expr-false
        if: github.event_name == 'pull_request'
        run: echo fine-expr-ran
      - name: expr-wrapped
        if: ${{ github.event_name == 'push' }}
        run: echo fine-wrapped-ran
"#)
    .await;
    assert_eq!(result.conclusion, Conclusion::Failure);
    let broken = job(&result, "broken");
    assert_eq!(broken.conclusion, Conclusion::Failure);
    let expect = [
        ("ok", Conclusion::Success),
        ("fails", Conclusion::Failure),
        ("implicit", Conclusion::Skipped),
        ("explicit-success", Conclusion::Skipped),
        ("expr-without-status", Conclusion::Skipped),
        ("on-failure", Conclusion::Success),
        ("on-always", Conclusion::Success),
        ("on-cancelled", Conclusion::Skipped),
        ("failure-and-expr", Conclusion::Success),
    ];
    for (name, conclusion) in expect {
        assert_eq!(step(broken, name).conclusion, conclusion, "{name}");
    }
    let fine = job(&result, "fine");
    assert_eq!(fine.conclusion, Conclusion::Success);
    assert_eq!(step(fine, "on-failure").conclusion, Conclusion::Skipped);
    assert_eq!(step(fine, "on-success").conclusion, Conclusion::Success);
    assert_eq!(step(fine, "expr-false").conclusion, Conclusion::Skipped);
    assert_eq!(step(fine, "expr-wrapped").conclusion, Conclusion::Success);
    assert_lines(
        &lines,
        &[
            "failure-ran",
            "always-ran",
            "failure-expr-ran",
            "fine-success-ran",
            "fine-wrapped-ran",
        ],
    );
    for absent in [
        "implicit-ran",
        "success-ran",
        "expr-ran",
        "cancelled-ran",
        "fine-failure-ran",
        "fine-expr-ran",
    ] {
        assert!(!has_line(&lines, absent), "{absent} ran");
    }
}

#[tokio::test]
async fn continue_on_error_keeps_the_run_green() {
    let (result, lines) = run(r#"
on: push
jobs:
  j:
    runs-on: x
    steps:
      - id: flaky
        continue-on-error: true
        run: exit 4
      - name: next
        run: echo "outcome=${{ steps.flaky.outcome }} conclusion=${{ steps.flaky.conclusion }}"
      - name: on-failure
        if: failure()
        run: echo failure-ran
  tolerated:
    runs-on: x
    continue-on-error: true
    steps:
      - run: exit 1
  after:
    needs: tolerated
    runs-on: x
    steps:
      - run: echo "tolerated=${{ needs.tolerated.result }}"
"#)
    .await;
    let j = job(&result, "j");
    let flaky = step(j, "flaky");
    assert_eq!(
        (flaky.outcome, flaky.conclusion, flaky.exit_code),
        (Conclusion::Failure, Conclusion::Success, Some(4))
    );
    assert_eq!(step(j, "next").conclusion, Conclusion::Success);
    assert_eq!(step(j, "on-failure").conclusion, Conclusion::Skipped);
    assert_eq!(j.conclusion, Conclusion::Success);
    assert_lines(&lines, &["outcome=failure conclusion=success"]);
    // A job allowed to fail does not fail the run or stop its dependents.
    assert_eq!(job(&result, "tolerated").conclusion, Conclusion::Failure);
    assert_eq!(job(&result, "after").conclusion, Conclusion::Success);
    assert_eq!(result.conclusion, Conclusion::Success, "{result:#?}");
}

#[tokio::test]
async fn multi_line_run_scripts() {
    let (result, lines) = run(r#"
on: push
jobs:
  j:
    runs-on: x
    steps:
      - run: |
          greeting="multi"
          for i in 1 2 3; do
            echo "$greeting-$i"
          done
          cat <<'TXT'
          heredoc $greeting
          TXT
"#)
    .await;
    assert_eq!(result.conclusion, Conclusion::Success, "{result:#?}");
    assert_lines(
        &lines,
        &["multi-1", "multi-2", "multi-3", "heredoc $greeting"],
    );
}

#[tokio::test]
async fn default_shell_is_bash_e_without_pipefail() {
    let (result, lines) = run(r#"
on: push
jobs:
  j:
    runs-on: x
    steps:
      - name: is-bash
        run: |
          [[ -n "$BASH_VERSION" ]] && echo "bash=yes"
          echo "flags=$-"
      - name: no-pipefail
        run: |
          false | true
          echo pipe-ok
      - name: stops-mid-script
        run: |
          echo before
          false
          echo not-reached
      - name: explicit-bash-has-pipefail
        if: always()
        shell: bash
        run: |
          false | true
          echo not-reached-either
"#)
    .await;
    let j = job(&result, "j");
    assert_eq!(step(j, "is-bash").conclusion, Conclusion::Success);
    assert_eq!(step(j, "no-pipefail").conclusion, Conclusion::Success);
    let mid = step(j, "stops-mid-script");
    assert_eq!(
        (mid.conclusion, mid.exit_code),
        (Conclusion::Failure, Some(1))
    );
    let pipefail = step(j, "explicit-bash-has-pipefail");
    assert_eq!(pipefail.conclusion, Conclusion::Failure);
    assert_lines(&lines, &["bash=yes", "pipe-ok", "before"]);
    let flags = lines
        .iter()
        .find(|l| l.starts_with("flags="))
        .expect("flags");
    assert!(flags.contains('e'), "{flags}");
    assert!(!has_line(&lines, "not-reached"));
    assert!(!has_line(&lines, "not-reached-either"));
    assert_eq!(result.conclusion, Conclusion::Failure);
}

#[tokio::test]
async fn shell_sh() {
    let (result, lines) = run(r#"
on: push
jobs:
  j:
    runs-on: x
    steps:
      - shell: sh
        run: |
          echo "sh-ran bash=${BASH_VERSION:-none}"
      - name: sh-stops
        shell: sh
        run: |
          false
          echo sh-not-reached
"#)
    .await;
    let j = job(&result, "j");
    assert_eq!(j.steps[0].conclusion, Conclusion::Success);
    assert_eq!(step(j, "sh-stops").conclusion, Conclusion::Failure);
    assert!(!has_line(&lines, "sh-not-reached"));
    // `sh` may be bash in POSIX mode on some systems; it must still run.
    assert!(lines.iter().any(|l| l.starts_with("sh-ran")), "{lines:?}");
}

/// Looks `name` up on the machine's default `PATH`.
fn on_default_path(name: &str) -> Option<std::path::PathBuf> {
    kiln_vm::DEFAULT_PATH
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// `shell: python` runs `python {0}` as on GitHub, with `python` resolved
/// through `PATH`. Debian has only `python3`; then a first step provides a
/// `python` on `PATH` (through `GITHUB_PATH`) pointing at it. On `qemu` the
/// steps run in the `debian` image (the `minimal` one has no Python); on
/// `local`, without any Python on the host, the test is skipped, saying so.
#[tokio::test]
async fn shell_python() {
    if common::Backend::from_env() == common::Backend::Local
        && on_default_path("python").is_none()
        && on_default_path("python3").is_none()
    {
        eprintln!(
            "SKIPPED shell_python: neither python nor python3 on {}",
            kiln_vm::DEFAULT_PATH
        );
        return;
    }
    let yaml = r#"
on: push
jobs:
  j:
    runs-on: x
    steps:
      - run: |
          if ! command -v python >/dev/null; then
            mkdir -p "$RUNNER_TEMP/py"
            ln -s "$(command -v python3)" "$RUNNER_TEMP/py/python"
            echo "$RUNNER_TEMP/py" >> "$GITHUB_PATH"
          fi
      - shell: python
        run: |
          import os, sys
          print("py", sys.version_info[0] >= 3, os.environ["GITHUB_ACTIONS"])
      - name: py-fails
        shell: python
        run: |
          import sys
          sys.exit(7)
"#;
    let cfg = RunConfig {
        spec: kiln_vm::VmSpec {
            image: image_with_git_and_python(),
            ..kiln_vm::VmSpec::default()
        },
        ..RunConfig::default()
    };
    let (result, lines) = run_with(yaml, &cfg).await;
    let result = result.expect("run");
    let j = job(&result, "j");
    assert_lines(&lines, &["py True true"]);
    let fails = step(j, "py-fails");
    assert_eq!(
        (fails.conclusion, fails.exit_code),
        (Conclusion::Failure, Some(7))
    );
}

#[tokio::test]
async fn working_directory_and_defaults_run() {
    let (result, lines) = run(r#"
on: push
defaults:
  run:
    working-directory: sub
jobs:
  j:
    runs-on: x
    defaults:
      run:
        shell: bash
    steps:
      - working-directory: .
        run: mkdir -p sub/inner && echo "top=$(basename "$PWD")"
      - run: echo "default=$(basename "$PWD")"
      - working-directory: sub/inner
        run: echo "own=$(basename "$PWD")"
      - name: job-default-shell-is-bash-with-pipefail
        continue-on-error: true
        run: |
          false | true
"#)
    .await;
    let j = job(&result, "j");
    assert_lines(&lines, &["default=sub", "own=inner"]);
    let top = lines.iter().find(|l| l.starts_with("top=")).expect("top");
    assert_ne!(top, "top=sub");
    assert_eq!(
        step(j, "job-default-shell-is-bash-with-pipefail").outcome,
        Conclusion::Failure
    );
    assert_eq!(result.conclusion, Conclusion::Success);
}

#[tokio::test]
async fn matrix_include_exclude_names() {
    let (result, lines) = run(r#"
on: push
jobs:
  test:
    runs-on: x
    strategy:
      matrix:
        os: [a, b]
        v: [1, 2]
        exclude:
          - os: b
            v: 2
        include:
          - os: a
            v: 1
            extra: plus
          - os: c
            v: 3
    steps:
      - run: echo "m=${{ matrix.os }}-${{ matrix.v }}-${{ matrix.extra }} i=${{ strategy.job-index }}/${{ strategy.job-total }}"
"#)
    .await;
    assert_eq!(result.conclusion, Conclusion::Success);
    let names: Vec<&str> = result.jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(
        names,
        ["test (a, 1)", "test (a, 2)", "test (b, 1)", "test (c, 3)"]
    );
    assert_lines(
        &lines,
        &[
            "m=a-1-plus i=0/4",
            "m=a-2- i=1/4",
            "m=b-1- i=2/4",
            "m=c-3- i=3/4",
        ],
    );
}

#[tokio::test]
async fn matrix_fail_fast_cancels_later_instances() {
    let (result, lines) = run(r#"
on: push
jobs:
  ff:
    runs-on: x
    strategy:
      matrix:
        n: [1, 2, 3]
    steps:
      - run: |
          echo "ff-${{ matrix.n }}"
          [ "${{ matrix.n }}" != 1 ]
  keep:
    runs-on: x
    strategy:
      fail-fast: false
      matrix:
        n: [1, 2, 3]
    steps:
      - run: |
          echo "keep-${{ matrix.n }}"
          [ "${{ matrix.n }}" != 1 ]
"#)
    .await;
    assert_eq!(result.conclusion, Conclusion::Failure);
    assert_eq!(job(&result, "ff (1)").conclusion, Conclusion::Failure);
    assert_eq!(job(&result, "ff (2)").conclusion, Conclusion::Cancelled);
    assert_eq!(job(&result, "ff (3)").conclusion, Conclusion::Cancelled);
    assert!(
        !has_line(&lines, "ff-2") && !has_line(&lines, "ff-3"),
        "{lines:?}"
    );
    assert_eq!(job(&result, "keep (1)").conclusion, Conclusion::Failure);
    assert_eq!(job(&result, "keep (2)").conclusion, Conclusion::Success);
    assert_eq!(job(&result, "keep (3)").conclusion, Conclusion::Success);
    assert_lines(&lines, &["keep-2", "keep-3"]);
}

#[tokio::test]
async fn matrix_from_json_of_needs_outputs() {
    let (result, lines) = run(r#"
on: push
jobs:
  setup:
    runs-on: x
    outputs:
      list: ${{ steps.s.outputs.list }}
      full: ${{ steps.s.outputs.full }}
    steps:
      - id: s
        run: |
          echo 'list=["x","y"]' >> "$GITHUB_OUTPUT"
          echo 'full={"k":[1,2],"include":[{"k":3,"tag":"z"}]}' >> "$GITHUB_OUTPUT"
  dims:
    needs: setup
    runs-on: x
    strategy:
      matrix:
        item: ${{ fromJSON(needs.setup.outputs.list) }}
    steps:
      - run: echo "item=${{ matrix.item }}"
  whole:
    needs: setup
    runs-on: x
    strategy:
      matrix: ${{ fromJSON(needs.setup.outputs.full) }}
    steps:
      - run: echo "k=${{ matrix.k }}${{ matrix.tag }}"
"#)
    .await;
    assert_eq!(result.conclusion, Conclusion::Success, "{result:#?}");
    let names: Vec<&str> = result.jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "setup",
            "dims (x)",
            "dims (y)",
            "whole (1)",
            "whole (2)",
            "whole (3, z)"
        ]
    );
    assert_lines(&lines, &["item=x", "item=y", "k=1", "k=2", "k=3z"]);
}

#[tokio::test]
async fn job_if_needs_results_and_skipped_dependents() {
    let (result, lines) = run(r#"
on: push
jobs:
  off:
    if: github.event_name == 'pull_request'
    runs-on: x
    steps:
      - run: echo off-ran
  after-off:
    needs: off
    runs-on: x
    steps:
      - run: echo after-off-ran
  always-after-off:
    needs: off
    if: always()
    runs-on: x
    steps:
      - run: echo "off-result=${{ needs.off.result }}"
  bad:
    runs-on: x
    steps:
      - run: exit 1
  after-bad:
    needs: bad
    runs-on: x
    steps:
      - run: echo after-bad-ran
  transitive:
    needs: after-bad
    if: failure()
    runs-on: x
    steps:
      - run: echo "transitive after-bad=${{ needs.after-bad.result }}"
  on-failure:
    needs: [bad]
    if: failure()
    runs-on: x
    steps:
      - run: echo "bad-result=${{ needs.bad.result }}"
  good:
    runs-on: x
    steps:
      - run: echo good
  on-success:
    needs: good
    runs-on: x
    steps:
      - run: echo "good-result=${{ needs.good.result }}"
"#)
    .await;
    let conclusion = |name| job(&result, name).conclusion;
    assert_eq!(conclusion("off"), Conclusion::Skipped);
    assert_eq!(conclusion("after-off"), Conclusion::Skipped);
    assert_eq!(conclusion("always-after-off"), Conclusion::Success);
    assert_eq!(conclusion("bad"), Conclusion::Failure);
    assert_eq!(conclusion("after-bad"), Conclusion::Skipped);
    assert_eq!(conclusion("transitive"), Conclusion::Success);
    assert_eq!(conclusion("on-failure"), Conclusion::Success);
    assert_eq!(conclusion("on-success"), Conclusion::Success);
    assert_eq!(result.conclusion, Conclusion::Failure);
    assert_lines(
        &lines,
        &[
            "off-result=skipped",
            "bad-result=failure",
            "good-result=success",
            "transitive after-bad=skipped",
        ],
    );
    for absent in ["off-ran", "after-off-ran", "after-bad-ran"] {
        assert!(!has_line(&lines, absent), "{absent}");
    }
}

#[tokio::test]
async fn skipped_only_run_is_not_green_nor_red() {
    let (result, _) = run(r#"
on: push
jobs:
  off:
    if: false
    runs-on: x
    steps:
      - run: echo never
"#)
    .await;
    assert_eq!(result.conclusion, Conclusion::Skipped);
}

const SECRET: &str = "s3cr3t-Token-value";
const SECRET_LINE1: &str = "first-secret-line-1a2b";
const SECRET_LINE2: &str = "second-secret-line-3c4d";
const DYNAMIC: &str = "dyn-mask-987zz";
const LITERAL: &str = "literal-mask-55xy";

#[tokio::test]
async fn secrets_and_add_mask_never_reach_output_or_result() {
    let h = Harness::new(4);
    let mut cfg = RunConfig::default();
    cfg.secrets.insert("TOKEN".into(), SECRET.into());
    cfg.secrets
        .insert("ML".into(), format!("{SECRET_LINE1}\n{SECRET_LINE2}"));
    let yaml = r#"
on: push
jobs:
  j:
    runs-on: x
    outputs:
      leaked: ${{ steps.o.outputs.value }}
    env:
      FROM_SECRET: ${{ secrets.TOKEN }}
    steps:
      - run: |
          echo "direct ${{ secrets.TOKEN }}"
          echo "env $FROM_SECRET"
          echo "stderr $FROM_SECRET" >&2
          printf 'partial-no-newline %s' "$FROM_SECRET"
      - env:
          ML: ${{ secrets.ML }}
        run: |
          echo "$ML"
          echo "inline ${{ secrets.ML }}"
      - run: |
          value="dyn-mask-$((900 + 87))zz"
          echo "::add-mask::$value"
          echo "now $value"
      - run: echo "later dyn-mask-987zz"
      - run: |
          echo "::add-mask::literal-mask-55xy"
          echo "then literal-mask-55xy"
      - id: o
        run: |
          echo "value=$FROM_SECRET" >> "$GITHUB_OUTPUT"
          echo "::warning title=$FROM_SECRET::warn $FROM_SECRET"
          echo "summary $FROM_SECRET" >> "$GITHUB_STEP_SUMMARY"
      - name: fails ${{ secrets.TOKEN }}
        run: |
          echo "::group::group $FROM_SECRET"
          echo "::debug::debug $FROM_SECRET"
          exit 1
"#;
    let (result, events) = h.run(yaml, &cfg).await;
    let result = result.expect("run");
    h.assert_no_leaks();
    let lines = output_lines(&events);
    assert_lines(
        &lines,
        &[
            "direct ***",
            "env ***",
            "stderr ***",
            "partial-no-newline ***",
            "inline ***",
            "::add-mask::***",
            "now ***",
            "later ***",
        ],
    );
    // Both lines of the multiline secret are masked where printed alone.
    assert!(
        lines.iter().filter(|l| *l == "***").count() >= 2,
        "{lines:#?}"
    );
    let result_json = serde_json::to_string(&result).expect("json");
    let events_json = serde_json::to_string(&events).expect("json");
    for secret in [SECRET, SECRET_LINE1, SECRET_LINE2, DYNAMIC] {
        assert!(
            !result_json.contains(secret),
            "{secret} in result: {result_json}"
        );
        assert!(
            !events_json.contains(secret),
            "{secret} in events: {events_json}"
        );
    }
    // A value masked by a literal in the script shows in that step's start
    // event (its name is the script's first line, as on GitHub), but in no
    // output and nowhere in the result.
    assert!(has_line(&lines, "then ***"), "{lines:#?}");
    assert!(!lines.iter().any(|l| l.contains(LITERAL)), "{lines:#?}");
    assert!(!result_json.contains(LITERAL), "{result_json}");
    // The masked values are still there, as ***.
    let j = job(&result, "j");
    assert_eq!(step(j, "o").outputs["value"], "***");
    assert!(j.summary.contains("summary ***"), "{}", j.summary);
    assert!(j.annotations.iter().any(|a| a.message == "warn ***"));
}

#[tokio::test]
async fn annotations_and_deprecated_set_output() {
    let (result, lines) = run(r#"
on: push
jobs:
  j:
    runs-on: x
    steps:
      - id: s
        run: |
          echo "::error file=a,line=3::msg"
          echo "::warning title=T,file=src/b.rs,line=7,col=2::careful"
          echo "::notice::fyi"
          echo "::set-output name=old::legacy value"
          echo "printed"
      - run: echo "old=${{ steps.s.outputs.old }}"
"#)
    .await;
    let j = job(&result, "j");
    // `::error::` annotates; it does not fail the step.
    assert_eq!(step(j, "s").conclusion, Conclusion::Success);
    assert_eq!(result.conclusion, Conclusion::Success);
    let error = &j.annotations[0];
    assert_eq!(error.level.as_str(), "error");
    assert_eq!(
        (error.file.as_deref(), error.line, error.message.as_str()),
        (Some("a"), Some(3), "msg")
    );
    let warning = &j.annotations[1];
    assert_eq!(
        (
            warning.level.as_str(),
            warning.title.as_deref(),
            warning.col
        ),
        ("warning", Some("T"), Some(2))
    );
    assert!(
        j.annotations
            .iter()
            .any(|a| a.level.as_str() == "notice" && a.message == "fyi")
    );
    assert_eq!(step(j, "s").outputs["old"], "legacy value");
    assert_lines(&lines, &["printed", "old=legacy value"]);
    assert!(!lines.iter().any(|l| l.starts_with("::error")), "{lines:?}");
}

/// A repository with three commits and a composite action, as a checkout
/// source.
fn git_repo(dir: &Path) -> String {
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .output()
            .expect("git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    git(&["init", "-q", "-b", "main"]);
    let write = |path: &str, text: &str| {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    };
    write("README", "version 1\n");
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "one"]);
    write("README", "version 2\n");
    git(&["commit", "-q", "-am", "two"]);
    write("README", "version 3\n");
    write(
        ".github/actions/greet/action.yml",
        r#"name: greet
inputs:
  who:
    description: whom to greet
    default: world
  punct:
    default: "!"
outputs:
  message:
    value: ${{ steps.say.outputs.message }}
runs:
  using: composite
  steps:
    - id: say
      shell: bash
      run: |
        echo "Hello ${{ inputs.who }}${{ inputs.punct }}"
        echo "message=Hello ${{ inputs.who }}" >> "$GITHUB_OUTPUT"
    - if: inputs.who == 'kiln'
      shell: bash
      run: echo "composite-if-ran"
    - uses: ./.github/actions/inner
      with:
        x: nested-${{ inputs.who }}
"#,
    );
    write(
        ".github/actions/inner/action.yml",
        r#"name: inner
inputs:
  x:
    required: true
runs:
  using: composite
  steps:
    - shell: sh
      run: |
        echo "inner got ${{ inputs.x }}"
        echo "inner path $(basename "$GITHUB_ACTION_PATH")"
"#,
    );
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "three"]);
    git(&["rev-parse", "HEAD"])
}

fn checkout_config(repo: &Path, sha: String) -> RunConfig {
    RunConfig {
        git: GitInfo {
            repo_dir: Some(repo.to_path_buf()),
            sha,
            git_ref: "refs/heads/main".into(),
            repository: "owner/project".into(),
        },
        ..RunConfig::default()
    }
}

#[tokio::test]
async fn checkout_from_a_local_repository() {
    let repo = tempfile::tempdir().expect("tempdir");
    let sha = git_repo(repo.path());
    let mut cfg = checkout_config(repo.path(), sha.clone());
    // The steps run git in the machine.
    cfg.spec.image = image_with_git_and_python();
    let (result, lines) = run_with(
        r#"
on: push
jobs:
  j:
    runs-on: x
    steps:
      - uses: actions/checkout@v4
      - run: |
          echo "readme=$(cat README)"
          echo "depth=$(git rev-list --count HEAD)"
          echo "head=$(git rev-parse HEAD)"
          echo "ws=$(basename "$GITHUB_WORKSPACE") here=$(basename "$PWD")"
      - uses: actions/checkout@v4
        with:
          path: sub/dir
          fetch-depth: 0
      - run: |
          echo "sub-depth=$(git -C sub/dir rev-list --count HEAD)"
          echo "sub-readme=$(cat sub/dir/README)"
"#,
        &cfg,
    )
    .await;
    let result = result.expect("run");
    assert_eq!(result.conclusion, Conclusion::Success, "{result:#?}");
    assert_lines(
        &lines,
        &[
            "readme=version 3",
            "depth=1",
            &format!("head={sha}"),
            "ws=project here=project",
            "sub-depth=3",
            "sub-readme=version 3",
        ],
    );
}

#[tokio::test]
async fn local_composite_actions() {
    let repo = tempfile::tempdir().expect("tempdir");
    let sha = git_repo(repo.path());
    let cfg = checkout_config(repo.path(), sha);
    let (result, lines) = run_with(
        r#"
on: push
jobs:
  j:
    runs-on: x
    steps:
      - name: before-checkout
        continue-on-error: true
        uses: ./.github/actions/greet
      - uses: actions/checkout@v4
      - id: g
        uses: ./.github/actions/greet
      - id: k
        uses: ./.github/actions/greet
        with:
          who: kiln
          punct: "?"
      - run: echo "outputs=${{ steps.g.outputs.message }}/${{ steps.k.outputs.message }}"
"#,
        &cfg,
    )
    .await;
    let result = result.expect("run");
    let j = job(&result, "j");
    let before = step(j, "before-checkout");
    assert_eq!(before.outcome, Conclusion::Failure);
    assert!(
        before
            .error
            .as_deref()
            .is_some_and(|e| e.contains("action.yml")),
        "{before:#?}"
    );
    assert_eq!(result.conclusion, Conclusion::Success, "{result:#?}");
    assert_eq!(step(j, "g").outputs["message"], "Hello world");
    assert_lines(
        &lines,
        &[
            "Hello world!",
            "Hello kiln?",
            "inner got nested-world",
            "inner got nested-kiln",
            "inner path inner",
            "outputs=Hello world/Hello kiln",
        ],
    );
    assert_eq!(
        lines.iter().filter(|l| *l == "composite-if-ran").count(),
        1,
        "{lines:#?}"
    );
}

#[tokio::test]
async fn remote_actions_fail_the_step_clearly() {
    let (result, lines) = run(r#"
on: push
jobs:
  j:
    runs-on: x
    steps:
      - uses: actions/setup-node@v4
        with:
          node-version: 20
      - run: echo after
"#)
    .await;
    let j = job(&result, "j");
    let node = &j.steps[0];
    assert_eq!(node.conclusion, Conclusion::Failure);
    let error = node.error.as_deref().unwrap_or_default();
    assert!(
        error.contains("actions/setup-node@v4") && error.contains("not supported"),
        "{error}"
    );
    assert_eq!(j.steps[1].conclusion, Conclusion::Skipped);
    assert_eq!(result.conclusion, Conclusion::Failure);
    assert!(
        lines.iter().any(|l| l.contains("not supported")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn container_jobs_fail_as_not_supported() {
    let (result, lines) = run(r#"
on: push
jobs:
  boxed:
    runs-on: x
    container: node:20
    steps:
      - run: echo inside
  plain:
    runs-on: x
    steps:
      - run: echo plain
"#)
    .await;
    let boxed = job(&result, "boxed");
    assert_eq!(boxed.conclusion, Conclusion::Failure);
    assert!(
        boxed
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("not supported yet")),
        "{boxed:#?}"
    );
    assert!(boxed.steps.is_empty());
    assert!(!has_line(&lines, "inside"));
    assert_eq!(job(&result, "plain").conclusion, Conclusion::Success);
    assert_eq!(result.conclusion, Conclusion::Failure);
}

#[tokio::test]
async fn step_timeout_fails_the_step() {
    let (result, lines) = run(r#"
on: push
jobs:
  j:
    runs-on: x
    steps:
      - name: slow
        timeout-minutes: ${{ 0.01 }}
        run: |
          echo started
          sleep 20
          echo finished
      - name: after
        if: always()
        run: echo after-ran
"#)
    .await;
    let j = job(&result, "j");
    let slow = step(j, "slow");
    assert_eq!(slow.conclusion, Conclusion::Failure);
    assert!(
        slow.error
            .as_deref()
            .is_some_and(|e| e.contains("timed out")),
        "{slow:#?}"
    );
    assert_eq!(step(j, "after").conclusion, Conclusion::Success);
    assert_lines(&lines, &["started", "after-ran"]);
    assert!(!has_line(&lines, "finished"));
    assert_eq!(result.conclusion, Conclusion::Failure);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vm_scope_job_runs_independent_jobs_in_parallel_vms() {
    let h = Harness::new(4);
    let cfg = RunConfig {
        vm_scope: VmScope::Job,
        ..RunConfig::default()
    };
    // `one` and `two` each wait until both are running.
    let both = Rendezvous::new(2);
    let wait = both.wait_script(10);
    let (result, _) = h
        .run(
            &format!(
                r#"
on: push
jobs:
  one:
    runs-on: x
    steps:
      - run: |
{wait}
  two:
    runs-on: x
    steps:
      - run: |
{wait}
  last:
    needs: [one, two]
    runs-on: x
    steps:
      - run: echo last
"#
            ),
            &cfg,
        )
        .await;
    let result = result.expect("run");
    assert_eq!(result.conclusion, Conclusion::Success, "{result:#?}");
    let stats = h.stats();
    assert_eq!(stats.allocations(), 3);
    assert_eq!(stats.max_live, 2, "one and two did not run side by side");
    let distinct: std::collections::BTreeSet<&String> = result.vms.iter().collect();
    assert_eq!((result.vms.len(), distinct.len()), (3, 3));
    for vm in &result.vms {
        let execs = common::execs_of(&stats, vm);
        assert_eq!(execs.len(), 3, "{vm}: {execs:?}");
    }
    h.assert_no_leaks();
}

const DISPATCH: &str = r#"
on:
  workflow_dispatch:
    inputs:
      flag:
        type: boolean
        default: true
      level:
        type: choice
        options: [low, high]
        default: low
      count:
        type: number
        default: 3
      label:
        type: string
jobs:
  j:
    runs-on: x
    steps:
      - run: |
          echo "flag=${{ inputs.flag }} typed=${{ inputs.flag == true }} level=${{ inputs.level }}"
          echo "count=${{ inputs.count }} numeric=${{ inputs.count == 3 }} label=[${{ inputs.label }}]"
      - name: only-if-flag
        if: inputs.flag
        run: echo flag-step-ran
"#;

fn dispatch(inputs: &[(&str, &str)]) -> RunConfig {
    RunConfig {
        event_name: "workflow_dispatch".into(),
        inputs: inputs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..RunConfig::default()
    }
}

#[tokio::test]
async fn workflow_dispatch_inputs_are_typed_and_defaulted() {
    let (result, lines) = run_with(DISPATCH, &dispatch(&[])).await;
    assert_eq!(result.expect("run").conclusion, Conclusion::Success);
    assert_lines(
        &lines,
        &[
            "flag=true typed=true level=low",
            "count=3 numeric=true label=[]",
            "flag-step-ran",
        ],
    );

    let cfg = dispatch(&[
        ("flag", "false"),
        ("level", "high"),
        ("count", "5"),
        ("label", "x y"),
    ]);
    let (result, lines) = run_with(DISPATCH, &cfg).await;
    let result = result.expect("run");
    assert_lines(
        &lines,
        &[
            "flag=false typed=false level=high",
            "count=5 numeric=false label=[x y]",
        ],
    );
    assert_eq!(
        step(job(&result, "j"), "only-if-flag").conclusion,
        Conclusion::Skipped
    );
}

#[tokio::test]
async fn workflow_dispatch_rejects_bad_inputs_before_allocating() {
    for (inputs, expected) in [
        (&[("flag", "yes")][..], "boolean"),
        (&[("level", "medium")][..], "must be one of low, high"),
        (&[("count", "many")][..], "number"),
        (&[("nope", "1")][..], "unexpected input \"nope\""),
    ] {
        let h = Harness::new(4);
        let (result, events) = h.run(DISPATCH, &dispatch(inputs)).await;
        match result {
            Err(RunError::Invalid(msg)) => assert!(msg.contains(expected), "{msg}"),
            other => panic!("{inputs:?}: expected an invalid-input error, got {other:?}"),
        }
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(h.stats().allocations(), 0);
    }
}

#[tokio::test]
async fn workflow_dispatch_required_input() {
    let yaml = r#"
on:
  workflow_dispatch:
    inputs:
      target:
        required: true
jobs:
  j:
    runs-on: x
    steps:
      - run: echo "target=${{ inputs.target }} event=${{ github.event.inputs.target }}"
"#;
    let (result, _) = run_with(yaml, &dispatch(&[])).await;
    match result {
        Err(RunError::Invalid(msg)) => assert!(msg.contains("\"target\" is required"), "{msg}"),
        other => panic!("expected a missing-input error, got {other:?}"),
    }
    let (result, lines) = run_with(yaml, &dispatch(&[("target", "prod")])).await;
    assert_eq!(result.expect("run").conclusion, Conclusion::Success);
    assert!(
        lines.iter().any(|l| l.starts_with("target=prod")),
        "{lines:?}"
    );
}

/// With a VM per job, matrix instances run side by side; fail-fast then
/// cancels the ones still running, as GitHub does, instead of waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn matrix_fail_fast_cancels_running_instances_with_vm_per_job() {
    let h = Harness::new(4);
    let cfg = RunConfig {
        vm_scope: VmScope::Job,
        ..RunConfig::default()
    };
    // Instance 1 fails only once all three are running, so 2 and 3 are
    // cancelled mid-step (they would print `done-N` after their sleep).
    let all = Rendezvous::new(3);
    let wait = all.wait_script(10);
    let (result, events) = h
        .run(
            &format!(
                r#"
on: push
jobs:
  ff:
    runs-on: x
    strategy:
      matrix:
        n: [1, 2, 3]
    steps:
      - run: |
          if [ "${{{{ matrix.n }}}}" != 1 ]; then echo "slow-${{{{ matrix.n }}}}"; fi
{wait}
          if [ "${{{{ matrix.n }}}}" = 1 ]; then exit 1; fi
          sleep 30
          echo "done-${{{{ matrix.n }}}}"
      - name: cleanup
        if: always()
        run: echo "cleanup-${{{{ matrix.n }}}}"
"#
            ),
            &cfg,
        )
        .await;
    let result = result.expect("run");
    let lines = output_lines(&events);
    assert_eq!(result.conclusion, Conclusion::Failure);
    assert_eq!(job(&result, "ff (1)").conclusion, Conclusion::Failure);
    for n in [2, 3] {
        assert_eq!(
            job(&result, &format!("ff ({n})")).conclusion,
            Conclusion::Cancelled
        );
        assert!(has_line(&lines, &format!("slow-{n}")), "{lines:?}");
        assert!(!has_line(&lines, &format!("done-{n}")), "{lines:?}");
        assert!(has_line(&lines, &format!("cleanup-{n}")), "{lines:?}");
    }
    assert_eq!(h.stats().max_live, 3);
    h.assert_no_leaks();
}

#[tokio::test]
async fn hash_files_hashes_workspace_files_written_by_earlier_steps() {
    let (result, lines) = run(r#"
on: push
jobs:
  j:
    runs-on: x
    steps:
      - run: printf x > a.txt && mkdir -p sub && printf y > sub/b.txt
      - run: |
          echo "root=${{ hashFiles('*.txt') }}"
          echo "none=${{ hashFiles('*.nope') }}"
"#)
    .await;
    assert_eq!(result.conclusion, Conclusion::Success, "{result:#?}");
    // sha256 over sha256("x"), computed independently.
    let inner = Command::new("python3")
        .args([
            "-c",
            "import hashlib; print(hashlib.sha256(hashlib.sha256(b'x').digest()).hexdigest())",
        ])
        .output()
        .expect("python3");
    let expected = String::from_utf8_lossy(&inner.stdout).trim().to_string();
    assert_eq!(expected.len(), 64, "python3 failed: {inner:?}");
    assert_lines(&lines, &[&format!("root={expected}"), "none="]);
}
