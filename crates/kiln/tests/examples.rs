//! One test per workflow in `examples/`: each runs the real `kiln` binary
//! with `--json` in a fresh git repository holding a copy of the examples,
//! and checks the exit code, the JSON result and the output, and that the
//! run left no VM directory behind.
//!
//! The backend is `KILN_TEST_BACKEND` (`local` by default; `qemu`: each run
//! boots a microVM of the `minimal` image, as CI does). The same assertions
//! hold on both: where the minimal image lacks a tool (git, python), the
//! example probes for it and the test expects the documented fallback.

mod support;

use serde_json::json;
use support::{Backend, Repo, RunOutput};

/// A repository whose runs use the backend under test.
fn repo() -> Repo {
    let backend = Backend::from_env();
    if backend == Backend::Qemu && !support::qemu_available("examples", &["minimal"]) {
        panic!("KILN_TEST_BACKEND=qemu, but the qemu backend cannot run here (see above)");
    }
    Repo::with_examples_on(backend)
}

/// Whether the machines of the backend under test have `tool`: the host's
/// for `local`; for `qemu`, the `minimal` image has busybox and bash, but no
/// git, python or perl.
fn machine_has(tool: &str) -> bool {
    match Backend::from_env() {
        Backend::Local => std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success()),
        Backend::Qemu => !["git", "python", "python3", "perl"].contains(&tool),
    }
}

/// Every example workflow, each with a test below.
const EXAMPLES: &[&str] = &[
    "checkout.yml",
    "composite.yml",
    "conditions.yml",
    "dispatch-inputs.yml",
    "dynamic-matrix.yml",
    "env-layering.yml",
    "failing.yml",
    "guest-features.yml",
    "hello.yml",
    "matrix-fail-fast.yml",
    "matrix.yml",
    "outputs.yml",
    "path-and-summary.yml",
    "secrets.yml",
    "shells.yml",
    "timeout.yml",
    "workflow-commands.yml",
];

#[test]
fn every_example_is_listed_here_and_documented() {
    let mut found: Vec<String> = std::fs::read_dir(support::examples_dir())
        .expect("read examples")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yml") || n.ends_with(".yaml"))
        .collect();
    found.sort();
    assert_eq!(found, EXAMPLES, "examples/ and the tests here disagree");
    for name in EXAMPLES {
        let text = std::fs::read_to_string(support::examples_dir().join(name)).expect("read");
        let stem = name.trim_end_matches(".yml");
        assert!(
            text.starts_with(&format!("# {stem}: ")),
            "{name} must start with a `# {stem}: …` header comment"
        );
    }
}

#[test]
fn every_example_validates() {
    let repo = repo();
    let out = repo.kiln(&[
        "validate",
        "examples",
        "examples/actions/greet/action.yml",
        "examples/actions/greet-twice/action.yml",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.contains(&format!("checked {} files: 0 errors", EXAMPLES.len() + 2)),
        "{stderr}"
    );
}

fn assert_all_steps(run: &RunOutput, job: &str, expected: &[(&str, &str, &str)]) {
    let steps: Vec<(&str, &str, &str)> = run.job(job)["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().expect("name"),
                s["outcome"].as_str().expect("outcome"),
                s["conclusion"].as_str().expect("conclusion"),
            )
        })
        .collect();
    assert_eq!(steps, expected, "steps of {job}");
}

#[test]
fn hello() {
    let repo = repo();
    let run = repo.run_example("hello.yml", &[]);
    run.assert_code(0);
    assert_eq!(run.conclusion(), "success");
    assert_eq!(run.job_names(), ["build", "test (1)", "test (2)"]);
    assert_eq!(
        run.step("build", "Say hello")["outputs"],
        json!({"who": "kiln"})
    );
    assert_eq!(run.log("build", "Say hello"), ["hello from Linux"]);
    assert_eq!(
        run.log("build", "Run echo \"greeted ${{ steps.hi.outputs.who }}\""),
        ["greeted kiln"]
    );
    assert_eq!(run.job("test (2)")["matrix"], json!({"n": 2}));
    // One VM for the whole run, from the backend under test.
    let vms = run.json["vms"].as_array().expect("vms");
    assert_eq!(vms.len(), 1);
    let prefix = format!("{}-", repo.backend().name());
    assert!(
        vms[0].as_str().is_some_and(|v| v.starts_with(&prefix)),
        "{vms:?}"
    );
}

#[test]
fn env_layering() {
    let repo = repo();
    let run = repo.run_example("env-layering.yml", &["--env", "FROM_CLI=cli"]);
    run.assert_code(0);
    assert_eq!(
        run.log("layers", "Inherited values"),
        [
            "level=job",
            "workflow_only=from-workflow",
            "derived=from-workflow+job",
            "event_tag=push-job",
            "from_cli=cli"
        ]
    );
    assert_eq!(run.log("layers", "Step env wins"), ["level=step"]);
    assert_eq!(run.log("layers", "Write GITHUB_ENV"), ["same_step=unset"]);
    assert_eq!(
        run.log("layers", "Later step sees it"),
        [
            "simple=one=two",
            "multi_lines=2",
            "multi=first line",
            "level=from-github-env",
            "expr_level=from-github-env"
        ]
    );
    assert_eq!(
        run.step("layers", "Later step sees it")["outputs"],
        json!({"simple": "one=two"})
    );
    assert_eq!(
        run.log("layers", "Step env still beats GITHUB_ENV"),
        ["level=step-again"]
    );
    assert_eq!(
        run.log("other-job", "GITHUB_ENV does not cross jobs"),
        ["simple=unset", "level=workflow"]
    );
}

#[test]
fn outputs() {
    let repo = repo();
    let run = repo.run_example("outputs.yml", &[]);
    run.assert_code(0);
    assert_eq!(
        run.job("produce")["outputs"],
        json!({"version": "1.2.3", "notes": "line one\nline two", "combined": "1.2.3-stable"})
    );
    assert_eq!(
        run.step("produce", "Second output")["outputs"],
        json!({"flavour": "stable"})
    );
    assert_eq!(
        run.job("middle")["outputs"],
        json!({"doubled": "1.2.3/1.2.3"})
    );
    assert_eq!(
        run.log("consume", "Read needs"),
        [
            "version=1.2.3",
            "combined=1.2.3-stable",
            "doubled=1.2.3/1.2.3",
            "result=success"
        ]
    );
    assert_eq!(
        run.log("consume", "Multiline job output"),
        ["notes has 2 lines"]
    );
    assert_eq!(
        run.log("indirect", "Only direct needs are visible"),
        ["produce_version=[]", "middle_doubled=[1.2.3/1.2.3]"]
    );
}

#[test]
fn matrix() {
    let repo = repo();
    let run = repo.run_example("matrix.yml", &[]);
    run.assert_code(0);
    assert_eq!(
        run.job_names(),
        [
            "build (linux, 1)",
            "build (linux, 2)",
            "build (mac, 1)",
            "build (mac, 2)",
            "build (mac, 3)",
            "build (bsd, 9)",
            "test on alpha",
            "test on beta",
        ]
    );
    assert_eq!(
        run.job("build (linux, 2)")["matrix"],
        json!({"os": "linux", "version": 2, "experimental": true})
    );
    assert_eq!(
        run.job("build (bsd, 9)")["matrix"],
        json!({"os": "bsd", "version": 9})
    );
    assert_eq!(
        run.log("build (mac, 2)", "Show combination"),
        ["os=mac version=2 experimental=true", "index 3 of 6"]
    );
    assert_eq!(
        run.log("build (mac, 3)", "Show combination"),
        ["os=mac version=3 experimental=false", "index 4 of 6"]
    );
    assert_eq!(
        run.log(
            "test on beta",
            "Run echo \"testing ${{ matrix.target.name }} at level ${{ matrix.target.level }}\""
        ),
        ["testing beta at level 2"]
    );
}

#[test]
fn matrix_fail_fast() {
    let repo = repo();
    let run = repo.run_example("matrix-fail-fast.yml", &[]);
    run.assert_code(1);
    assert_eq!(run.conclusion(), "failure");
    let summary: Vec<(&str, &str)> = run
        .jobs()
        .iter()
        .map(|j| {
            (
                j["name"].as_str().unwrap(),
                j["conclusion"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("fast (1)", "failure"),
            ("fast (2)", "cancelled"),
            ("fast (3)", "cancelled"),
            ("slow (1)", "success"),
            ("slow (2)", "failure"),
            ("slow (3)", "success"),
        ]
    );
    for cancelled in ["fast (2)", "fast (3)"] {
        assert_eq!(run.job_field(cancelled, "reason"), "cancelled by fail-fast");
        assert_eq!(run.job(cancelled)["steps"], json!([]));
    }
    assert_eq!(
        run.log("slow (3)", "Run echo \"instance ${{ matrix.n }}\""),
        ["instance 3"]
    );
    let failed = run.step("slow (2)", "Run echo \"instance ${{ matrix.n }}\"");
    assert_eq!(failed["exit_code"], 1);
    assert_eq!(failed["error"], "process completed with exit code 1");
}

#[test]
fn dynamic_matrix() {
    let repo = repo();
    let run = repo.run_example("dynamic-matrix.yml", &[]);
    run.assert_code(0);
    assert_eq!(
        run.job_names(),
        [
            "plan", "run core", "run cli", "each (1)", "each (2)", "each (3)"
        ]
    );
    assert_eq!(
        run.job("run cli")["matrix"],
        json!({"pkg": "cli", "extra": "yes"})
    );
    run.assert_printed("package core extra=no");
    run.assert_printed("package cli extra=yes");
    run.assert_printed("shard 2 of 3");
    assert_eq!(
        run.job("plan")["outputs"]["shards"],
        json!("[1,2,3]"),
        "job outputs are strings"
    );
}

#[test]
fn conditions() {
    let repo = repo();
    let run = repo.run_example("conditions.yml", &[]);
    run.assert_code(0);
    assert_eq!(run.conclusion(), "success");
    assert_all_steps(
        &run,
        "steps",
        &[
            ("Flaky step", "failure", "success"),
            ("Runs because flaky failed", "success", "success"),
            ("Skipped, the job has not failed", "skipped", "skipped"),
            ("Skipped by a literal false", "skipped", "skipped"),
            ("Runs on push", "success", "success"),
            ("Always runs", "success", "success"),
        ],
    );
    assert_eq!(run.step("steps", "Flaky step")["exit_code"], 7);
    assert_eq!(
        run.log("steps", "Runs because flaky failed"),
        ["flaky outcome=failure conclusion=success"]
    );
    assert_eq!(run.log("steps", "Always runs"), ["job status=success"]);
    assert_eq!(run.job_field("steps", "conclusion"), "success");
    assert_eq!(run.job_field("never", "conclusion"), "skipped");
    assert_eq!(run.job_field("after-never", "conclusion"), "skipped");
    assert_eq!(run.job_field("rescue", "conclusion"), "success");
    run.assert_printed("never was skipped");
    run.assert_printed("gated ran after a failure outcome");
    run.assert_absent("must not print");
}

#[test]
fn failing() {
    let repo = repo();
    let run = repo.run_example("failing.yml", &[]);
    run.assert_code(1);
    assert_eq!(run.conclusion(), "failure");
    assert_all_steps(
        &run,
        "build",
        &[
            ("Prepare", "success", "success"),
            ("Compile", "failure", "failure"),
            ("Test", "skipped", "skipped"),
            ("Only on success", "skipped", "skipped"),
            ("On failure", "success", "success"),
            ("Always", "success", "success"),
        ],
    );
    let compile = run.step("build", "Compile");
    assert_eq!(compile["exit_code"], 3);
    assert_eq!(compile["error"], "process completed with exit code 3");
    assert_eq!(
        run.log("build", "Compile").first(),
        Some(&"compiling main.c")
    );
    assert_eq!(
        run.log("build", "On failure"),
        ["compile outcome=failure job=failure"]
    );
    assert_eq!(
        run.job("build")["annotations"],
        json!([{
            "level": "error", "message": "expected ';'", "title": "Compile error",
            "file": "main.c", "line": 42, "end_line": null, "col": null, "end_column": null
        }])
    );
    assert_eq!(run.job_field("build", "conclusion"), "failure");
    assert_eq!(run.job_field("deploy", "conclusion"), "skipped");
    assert_eq!(run.job_field("report", "conclusion"), "success");
    assert_eq!(run.job_field("cleanup", "conclusion"), "success");
    run.assert_printed("build result=failure");
    run.assert_printed("cleanup after build=failure deploy=skipped");
    run.assert_absent("must not print");
    assert!(
        run.stderr.contains("✗ run failure in "),
        "run summary line missing:\n{}",
        run.stderr
    );
}

#[test]
fn secrets_never_appear_in_any_output() {
    let repo = repo();
    let token = "s3cr3t-token-value";
    let key_lines = [
        "-----BEGIN TEST KEY-----",
        "c2VjcmV0IGtleSBtYXRlcmlhbA",
        "-----END TEST KEY-----",
    ];
    let secret_file = repo.scratch("secrets.env");
    std::fs::write(
        &secret_file,
        format!("SSH_KEY=\"{}\"\n", key_lines.join("\n")),
    )
    .expect("write secret file");
    let run = repo.run_example(
        "secrets.yml",
        &[
            "--secret",
            &format!("API_TOKEN={token}"),
            "--secret-file",
            secret_file.to_str().expect("utf-8"),
        ],
    );
    run.assert_code(0);
    for secret in [token, "dyn-42-masked-value"].iter().chain(&key_lines) {
        run.assert_absent(secret);
    }
    // The values did reach the steps: only the printing was masked.
    assert_eq!(
        run.log("use-secrets", "Print the secret"),
        ["token is ***", "inline *** too", "length 18"]
    );
    assert_eq!(
        run.log("use-secrets", "Multiline secret"),
        ["***", "***", "***", "second line alone: ***"]
    );
    assert_eq!(
        run.log("use-secrets", "Mask a generated value"),
        ["::add-mask::***", "generated is ***"]
    );
    assert_eq!(
        run.log("use-secrets", "Masked in later steps too"),
        ["still hidden ***"]
    );
    assert_eq!(
        run.step("use-secrets", "Secrets in outputs and annotations")["outputs"],
        json!({"token": "***"})
    );
    assert_eq!(run.job("use-secrets")["outputs"], json!({"leaked": "***"}));
    assert_eq!(
        run.job("use-secrets")["annotations"][0]["message"],
        "warning with ***"
    );
    assert_eq!(run.job_field("use-secrets", "summary"), "summary has ***\n");
    assert_eq!(
        run.log("use-secrets", "An unset secret is empty"),
        ["missing=[]"]
    );
}

#[test]
fn workflow_commands() {
    let repo = repo();
    let run = repo.run_example("workflow-commands.yml", &[]);
    run.assert_code(0);
    let annotations = &run.job("commands")["annotations"];
    let brief: Vec<(&str, &str)> = annotations
        .as_array()
        .expect("annotations")
        .iter()
        .map(|a| (a["level"].as_str().unwrap(), a["message"].as_str().unwrap()))
        .collect();
    assert_eq!(
        brief,
        [
            ("error", "mismatched types\nexpected u32"),
            ("warning", "trailing whitespace"),
            ("notice", "deploys are frozen"),
            ("notice", "commands resumed"),
            (
                "error",
                "the `set-env` command is disabled; write to the `GITHUB_ENV` file instead"
            ),
        ]
    );
    assert_eq!(
        annotations[0],
        json!({
            "level": "error", "message": "mismatched types\nexpected u32", "title": "Type error",
            "file": "src/lib.rs", "line": 10, "end_line": null, "col": 5, "end_column": null
        })
    );
    assert_eq!(annotations[1]["file"], "README.md");
    assert_eq!(annotations[1]["line"], 3);
    assert_eq!(annotations[2]["title"], "Note");
    // Groups: the title is shown, the command itself is not.
    run.assert_printed("▾ Installing dependencies");
    assert_eq!(
        run.log("commands", "Groups"),
        ["dep one", "dep two", "after the group"]
    );
    // While stopped, command lines are plain output.
    assert_eq!(
        run.log("commands", "Stop commands"),
        [
            "::error::not an annotation while stopped",
            "::set-output name=ignored::yes",
            "notice: commands resumed"
        ]
    );
    assert_eq!(
        run.step("commands", "Deprecated set-output")["outputs"],
        json!({"answer": "42"})
    );
    assert_eq!(
        run.log("commands", "Read the output"),
        ["answer=42 ignored=[]"]
    );
    assert!(!run.stderr.contains("a debug line"), "{}", run.stderr);
    assert!(!run.stderr.contains("::group::"), "{}", run.stderr);
    assert_eq!(
        run.step_status("commands", "Disabled set-env"),
        ("failure", "success")
    );
    // Annotations show with their place and title in the live output.
    run.assert_printed("error src/lib.rs:10:5: Type error: mismatched types");
}

#[test]
fn shells() {
    let repo = repo();
    // On the host, `python` may live outside the machine's default PATH.
    let path = format!("PATH={}", std::env::var("PATH").expect("PATH"));
    let extra: &[&str] = match repo.backend() {
        Backend::Local => &["--env", &path],
        Backend::Qemu => &[],
    };
    let run = repo.run_example("shells.yml", extra);
    run.assert_code(0);
    assert_eq!(
        run.log("default-shell", "Default shell without pipefail"),
        ["pipeline passed in bash"]
    );
    let pipefail = run.step("shells", "bash has pipefail");
    assert_eq!(pipefail["outcome"], "failure");
    assert_eq!(pipefail["conclusion"], "success");
    assert_eq!(pipefail["exit_code"], 1);
    run.assert_absent("this must not print");
    assert_eq!(run.log("shells", "sh"), ["sh says hi from _kiln_step_2.sh"]);
    if machine_has("python") {
        assert_eq!(run.step_status("shells", "python"), ("success", "success"));
        assert_eq!(
            run.log("shells", "python"),
            ["python sum 6 workflow shells"]
        );
    } else {
        assert_eq!(run.step_status("shells", "python"), ("skipped", "skipped"));
    }
    assert_eq!(run.log("shells", "awk"), ["awk computed 42 in shells"]);
    // The trace goes to stderr, the echo to stdout: their order may vary.
    let mut traced = run.log("shells", "bash -x traces");
    traced.sort_unstable();
    assert_eq!(traced, ["+ echo traced", "traced"]);
    assert_eq!(
        run.log("directories", "Job default working directory"),
        ["in sub/dir", "script=_kiln_step_2.sh"]
    );
    assert_eq!(
        run.log("directories", "Step working directory wins"),
        ["in other"]
    );
}

#[test]
fn checkout() {
    let repo = repo();
    let run = repo.run_example("checkout.yml", &[]);
    run.assert_code(0);
    assert_eq!(
        run.log("checkout", "Workspace starts empty"),
        ["files before checkout=0"]
    );
    let sha = repo.head_sha();
    let checked_out = run.log("checkout", "Run actions/checkout@v4");
    assert!(
        checked_out
            .first()
            .is_some_and(|l| l.starts_with(&format!("checked out {sha} into "))),
        "{checked_out:?}"
    );
    if machine_has("git") {
        assert_eq!(
            run.log("checkout", "Default checkout is shallow"),
            ["workflow file present", "commits=1", "HEAD is github.sha"]
        );
        assert_eq!(
            run.log("checkout", "Full history in a subdirectory"),
            ["full commits=2", "nested workflow file present"]
        );
    } else {
        assert_eq!(
            run.log("checkout", "Default checkout is shallow"),
            [
                "workflow file present",
                &format!("no git: shallow boundary {sha}"),
                "HEAD is github.sha"
            ]
        );
        assert_eq!(
            run.log("checkout", "Full history in a subdirectory"),
            ["no git: not shallow", "nested workflow file present"]
        );
    }
}

#[test]
fn composite_actions() {
    let repo = repo();
    let run = repo.run_example("composite.yml", &[]);
    run.assert_code(0);
    assert_eq!(
        run.step("composite", "Greet with defaults")["outputs"],
        json!({"message": "Hello, Kiln!", "length": "12"})
    );
    assert_eq!(
        run.log("composite", "Use the action's outputs"),
        ["got 'Hello, Kiln!' of length 12", "last greeted Kiln"]
    );
    assert_eq!(
        run.step("composite", "Nested composite")["outputs"],
        json!({"both": "Hello, Ada! / Goodbye, world!"})
    );
    assert_eq!(
        run.log("composite", "Use the nested outputs"),
        ["both='Hello, Ada! / Goodbye, world!'", "last greeted world"]
    );
    assert_eq!(
        run.job("composite")["outputs"],
        json!({"message": "Hello, Kiln!"})
    );
    // Output of the actions' own steps is shown under the calling step.
    run.assert_printed("Goodbye, world!");
    run.assert_printed("action dir is greet");
    run.assert_printed("nested lengths 11 and 15");
}

#[test]
fn dispatch_inputs_defaults() {
    let repo = repo();
    let run = repo.run_example("dispatch-inputs.yml", &["--event", "workflow_dispatch"]);
    run.assert_code(0);
    assert_eq!(
        run.log("show", "Inputs"),
        [
            "environment=staging",
            "dry-run=true",
            "replicas=2 next=two",
            "note=[]",
            "types true 2"
        ]
    );
    assert_eq!(
        run.log("show", "Dry run"),
        ["would deploy 2 replicas to staging"]
    );
    assert_eq!(run.job_field("deploy", "conclusion"), "skipped");
}

#[test]
fn dispatch_inputs_given() {
    let repo = repo();
    let run = repo.run_example(
        "dispatch-inputs.yml",
        &[
            "--event",
            "workflow_dispatch",
            "--input",
            "environment=prod",
            "--input",
            "dry-run=false",
            "--input",
            "replicas=5",
            "--input",
            "note=hi there",
        ],
    );
    run.assert_code(0);
    assert_eq!(
        run.log("show", "Inputs"),
        [
            "environment=prod",
            "dry-run=false",
            "replicas=5 next=not two",
            "note=[hi there]",
            "types false 5"
        ]
    );
    assert_eq!(run.step_status("show", "Dry run"), ("skipped", "skipped"));
    assert_eq!(run.job_field("deploy", "conclusion"), "success");
    run.assert_printed("deploying to prod, event input prod");
}

#[test]
fn dispatch_inputs_rejects_bad_values_before_running() {
    let repo = repo();
    for (input, message) in [
        (
            "nope=1",
            "unexpected input \"nope\": the workflow declares environment, dry-run, replicas, note",
        ),
        (
            "dry-run=maybe",
            "input \"dry-run\" is a boolean: expected true or false, got \"maybe\"",
        ),
        (
            "environment=dev",
            "input \"environment\" must be one of staging, prod, got \"dev\"",
        ),
        (
            "replicas=many",
            "input \"replicas\" is a number, got \"many\"",
        ),
    ] {
        let run = repo.run_example(
            "dispatch-inputs.yml",
            &["--event", "workflow_dispatch", "--input", input],
        );
        run.assert_code(2);
        assert!(run.stderr.contains(message), "{input}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{input}: {}", run.stdout);
        assert!(!run.stderr.contains("●"), "{input}: a job started");
    }
}

#[test]
fn step_timeout() {
    let repo = repo();
    let run = repo.run_example("timeout.yml", &[]);
    run.assert_code(0);
    let slow = run.step("timeout", "Slow");
    assert_eq!(slow["outcome"], "failure");
    assert_eq!(slow["conclusion"], "success");
    let error = slow["error"].as_str().expect("error");
    assert!(error.starts_with("the step timed out"), "{error}");
    // The step was stopped long before its 60 s sleep ended.
    assert!(slow["duration_ms"].as_u64().expect("duration") < 30_000);
    assert_eq!(
        run.log("timeout", "After the timeout"),
        [
            "slow outcome=failure conclusion=success",
            "slow never finished"
        ]
    );
    assert_eq!(run.log("timeout", "Fast enough"), ["quick step done"]);
}

#[test]
fn path_and_summary() {
    let repo = repo();
    let run = repo.run_example("path-and-summary.yml", &[]);
    run.assert_code(0);
    assert_eq!(
        run.log("tools", "Install a tool"),
        ["not on PATH in the same step"]
    );
    assert_eq!(
        run.log("tools", "Use the tool"),
        ["kiln-tool says hello", "tool dir is first on PATH"]
    );
    assert_eq!(
        run.job_field("tools", "summary"),
        "## Build report\n\n- tests 12 passed\n- lint clean\n"
    );
}

/// Namespaces, mounts, /proc/self, IPv6 and large files inside the guest.
/// The example mounts file systems and creates namespaces as root, so it
/// runs only in a VM: here on `qemu` (the `minimal` image); `tests/qemu.rs`
/// runs it on the `debian` image.
#[test]
fn guest_features() {
    if Backend::from_env() == Backend::Local {
        eprintln!("SKIPPED guest_features: it runs only in a VM (KILN_TEST_BACKEND=qemu)");
        return;
    }
    let repo = repo();
    let run = repo.run_example("guest-features.yml", &[]);
    support::assert_guest_features(&run, &repo.head_sha());
}
