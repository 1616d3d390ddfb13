//! "One VM per workflow run", proved on a real backend: every allocation and
//! every exec is recorded by a `CountingProvider` around the backend chosen
//! by `KILN_TEST_BACKEND` (default `local`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{
    Backend, Harness, TestResult, execs_of, is_cleanup, is_setup, output_lines, steps_workflow,
};
use kiln_runner::{Conclusion, RunConfig, RunResult, SessionError};
use kiln_vm::VmSpec;

/// Checks one run's exec sequence on its VM: setup, `steps` step commands,
/// cleanup, nothing else.
fn assert_run_execs(h: &Harness, vm: &str, steps: usize) {
    let stats = h.stats();
    let execs = execs_of(&stats, vm);
    assert_eq!(execs.len(), steps + 2, "execs on {vm}: {execs:#?}");
    assert!(
        is_setup(execs[0]),
        "first exec is not setup: {:?}",
        execs[0]
    );
    assert!(
        is_cleanup(execs[steps + 1]),
        "last exec is not cleanup: {:?}",
        execs[steps + 1]
    );
    for argv in &execs[1..=steps] {
        assert!(
            argv.iter().any(|a| a.contains("_kiln_step_")),
            "not a step script: {argv:?}"
        );
    }
}

fn green(result: &RunResult) {
    assert_eq!(result.conclusion, Conclusion::Success, "{result:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_single_workflow_multiple_steps_one_vm() -> TestResult {
    let h = Harness::new(4);
    let (result, events) = h.run_ok(&steps_workflow("single", 5)).await;
    green(&result);
    let stats = h.stats();
    assert_eq!(stats.allocations(), 1, "{stats:#?}");
    let vm = stats.allocated[0].to_string();
    assert_eq!(result.vms, vec![vm.clone()]);
    // Every operation of the run, not only execs, went to that one VM.
    assert_eq!(
        stats
            .vms_used()
            .into_iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>(),
        vec![vm.clone()]
    );
    assert_eq!(stats.execs().count(), 7);
    assert_run_execs(&h, &vm, 5);
    let lines = output_lines(&events);
    for i in 1..=5 {
        assert!(lines.contains(&format!("single-{i}")), "{lines:?}");
    }
    h.assert_no_leaks();
    Ok(())
}

/// Makes concurrent runs wait for each other inside their first step, so
/// they are provably live at the same time. Only where machines share the
/// host's file system (`local`); elsewhere the step does nothing.
fn barrier_step(dir: Option<&std::path::Path>, tag: &str, parties: usize) -> String {
    match dir {
        Some(dir) => format!(
            "      - run: |\n          touch {d}/{tag}\n          for i in $(seq 200); do\n            \
             [ \"$(ls {d} | wc -l)\" -ge {parties} ] && exit 0\n            sleep 0.05\n          \
             done\n          echo 'the other runs never started' >&2; exit 1\n",
            d = dir.display()
        ),
        None => "      - run: 'true'\n".to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_multiple_workflows_multiple_vms() -> TestResult {
    let h = Harness::new(8);
    let barrier = tempfile::tempdir()?;
    let dir = (h.backend == Backend::Local).then(|| barrier.path());
    let workflow = |tag: &str, steps: usize| {
        // The barrier is the first of the `steps` steps.
        let mut yaml = steps_workflow(tag, steps - 1);
        yaml.push_str(&barrier_step(dir, tag, 3));
        yaml
    };
    let (a, b, c) = (workflow("wfa", 5), workflow("wfb", 3), workflow("wfc", 7));
    let cfg = RunConfig::default();
    let (ra, rb, rc) = tokio::join!(h.run(&a, &cfg), h.run(&b, &cfg), h.run(&c, &cfg));
    let stats = h.stats();
    assert_eq!(stats.allocations(), 3, "{stats:#?}");
    if dir.is_some() {
        assert_eq!(stats.max_live, 3, "the runs did not overlap: {stats:#?}");
    }
    let mut seen = std::collections::BTreeSet::new();
    for ((result, events), tag, steps) in [(ra, "wfa", 5), (rb, "wfb", 3), (rc, "wfc", 7)] {
        let result = result?;
        green(&result);
        assert_eq!(result.vms.len(), 1, "{result:#?}");
        let vm = result.vms[0].clone();
        assert!(seen.insert(vm.clone()), "VM {vm} used by two runs");
        assert!(stats.allocated.iter().any(|a| a.as_str() == vm));
        // Exactly this workflow's commands ran on its VM: its step count,
        // and its own output came back from it.
        assert_run_execs(&h, &vm, steps);
        let lines = output_lines(&events);
        let mine: Vec<&String> = lines.iter().filter(|l| l.starts_with("wf")).collect();
        let expected: Vec<String> = (1..steps).map(|i| format!("{tag}-{i}")).collect();
        assert_eq!(mine, expected.iter().collect::<Vec<_>>(), "{tag}");
    }
    assert_eq!(seen.len(), 3);
    // Every op went to one of the three VMs; each VM's ops are one run's.
    assert_eq!(stats.vms_used().len(), 3);
    h.assert_no_leaks();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_vm_reuse_after_completion() -> TestResult {
    let h = Harness::new(1);
    let (first, _) = h.run_ok(&steps_workflow("first", 3)).await;
    green(&first);
    // The first VM is gone as soon as its run returns: before the second
    // run can allocate anything.
    let after_first = h.stats();
    assert_eq!(after_first.allocations(), 1);
    assert_eq!(after_first.releases, 1, "{after_first:#?}");
    assert!(after_first.live.is_empty(), "{after_first:#?}");
    assert!(h.vm_dirs_on_disk().is_empty());
    let first_vm = after_first.allocated[0].clone();

    let (second, _) = h.run_ok(&steps_workflow("second", 3)).await;
    green(&second);
    let stats = h.stats();
    assert_eq!(stats.allocations(), 2);
    let second_vm = stats.allocated[1].clone();
    assert_ne!(first_vm, second_vm);
    assert_eq!(first.vms, vec![first_vm.to_string()]);
    assert_eq!(second.vms, vec![second_vm.to_string()]);
    assert_eq!(stats.max_live, 1, "the two VMs overlapped: {stats:#?}");
    // The first VM never shows up again after its run.
    let later = &stats.ops[after_first.ops.len()..];
    assert!(!later.is_empty());
    assert!(later.iter().all(|op| op.vm == second_vm), "{later:#?}");
    assert_run_execs(&h, second_vm.as_str(), 3);
    h.assert_no_leaks();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_concurrent_workflow_limit() -> TestResult {
    let h = Arc::new(Harness::new(2));
    let barrier = Arc::new(tokio::sync::Barrier::new(3));
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let (h, barrier) = (h.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            h.manager.try_create_session(&VmSpec::default()).await
        }));
    }
    let mut sessions = Vec::new();
    let mut full = 0;
    for task in tasks {
        match task.await? {
            Ok(s) => sessions.push(s),
            Err(SessionError::Full { limit: 2 }) => full += 1,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!((sessions.len(), full), (2, 1));
    let stats = h.stats();
    assert_eq!(stats.allocations(), 2, "{stats:#?}");
    assert_eq!(stats.max_live, 2);
    assert_eq!(h.manager.stats().active, 2);

    // A workflow run meanwhile waits for a slot instead of allocating.
    let waiting = {
        let h = h.clone();
        tokio::spawn(async move { h.run_ok(&steps_workflow("queued", 2)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.stats().allocations(), 2, "allocated beyond the limit");
    assert!(!waiting.is_finished());
    let mut sessions = sessions.into_iter();
    if let Some(s) = sessions.next() {
        s.release().await?;
    }
    let (result, _) = waiting.await?;
    green(&result);
    for s in sessions {
        s.release().await?;
    }
    let stats = h.stats();
    assert_eq!(stats.allocations(), 3);
    assert_eq!(stats.max_live, 2, "{stats:#?}");
    h.assert_no_leaks();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_step_execution_vm_consistency() -> TestResult {
    let h = Harness::new(4);
    // The first step leaves a token in the machine; every later step must
    // find it, which only holds if they run on that same machine.
    let mut yaml = String::from(
        "on: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n      \
         - run: echo \"$RANDOM-$$-$(date +%s%N)\" > \"$HOME/kiln-token\"\n",
    );
    for i in 2..=10 {
        yaml.push_str(&format!(
            "      - run: test -s \"$HOME/kiln-token\" && echo \"step{i} $(cat \"$HOME/kiln-token\")\"\n"
        ));
    }
    let (result, events) = h.run_ok(&yaml).await;
    green(&result);
    assert_eq!(result.jobs[0].steps.len(), 10);
    let lines = output_lines(&events);
    let tokens: std::collections::BTreeSet<&str> = lines
        .iter()
        .filter(|l| l.starts_with("step"))
        .filter_map(|l| l.split_once(' ').map(|(_, t)| t))
        .collect();
    assert_eq!(tokens.len(), 1, "{lines:?}");
    assert_eq!(lines.iter().filter(|l| l.starts_with("step")).count(), 9);

    let stats = h.stats();
    assert_eq!(stats.allocations(), 1);
    let vm = stats.allocated[0].to_string();
    assert_eq!(stats.execs().count(), 12);
    assert!(stats.execs().all(|(id, _)| id.as_str() == vm));
    assert_run_execs(&h, &vm, 10);
    h.assert_no_leaks();
    Ok(())
}
