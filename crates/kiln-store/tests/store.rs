//! The store's behaviour through its public API, on real SQLite files.

use kiln_store::{
    DeliveryState, Inserted, JobRecord, JobState, LogStream, NewDelivery, NewLogLine, NewRun,
    RunState, Store, StoreError, now_ms,
};

fn delivery(id: &str, received_at: i64) -> NewDelivery {
    NewDelivery {
        id: id.into(),
        event: "push".into(),
        repository: Some("o/r".into()),
        payload: "{}".into(),
        state: DeliveryState::Queued,
        note: None,
        received_at,
    }
}

fn run(delivery: &str) -> NewRun {
    NewRun {
        delivery_id: Some(delivery.into()),
        repository: "o/r".into(),
        workflow_path: ".github/workflows/ci.yml".into(),
        workflow_name: "CI".into(),
        event: "push".into(),
        git_ref: "refs/heads/main".into(),
        sha: "a".repeat(40),
        spec: "{}".into(),
        ..NewRun::default()
    }
}

#[test]
fn deliveries_are_deduplicated_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open_in(dir.path()).unwrap();
        assert_eq!(
            store.insert_delivery(&delivery("d1", 1)).unwrap(),
            Inserted::New
        );
        assert_eq!(
            store.insert_delivery(&delivery("d1", 2)).unwrap(),
            Inserted::Duplicate
        );
    }
    let store = Store::open_in(dir.path()).unwrap();
    let d = store.next_queued_delivery().unwrap().unwrap();
    assert_eq!((d.id.as_str(), d.received_at), ("d1", 1));
    assert_eq!(
        store.insert_delivery(&delivery("d1", 3)).unwrap(),
        Inserted::Duplicate
    );
    assert_eq!(store.queued_delivery_count().unwrap(), 1);
}

#[test]
fn finishing_a_delivery_creates_its_runs_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_in(dir.path()).unwrap();
    store.insert_delivery(&delivery("d1", 1)).unwrap();
    let mut failed = run("d1");
    failed.finished = Some(("failure".into(), "invalid workflow file".into()));
    let ids = store
        .finish_delivery(
            "d1",
            DeliveryState::Dispatched,
            Some("2 run(s)"),
            &[run("d1"), failed],
        )
        .unwrap();
    assert_eq!(ids.len(), 2);
    assert!(store.next_queued_delivery().unwrap().is_none());
    let first = store.run(ids[0]).unwrap().unwrap();
    assert_eq!(first.state, RunState::Queued);
    let second = store.run(ids[1]).unwrap().unwrap();
    assert_eq!(second.state, RunState::Completed);
    assert_eq!(second.conclusion.as_deref(), Some("failure"));
    assert_eq!(
        store.delivery("d1").unwrap().unwrap().state,
        DeliveryState::Dispatched
    );
}

#[test]
fn run_lifecycle_and_restart_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_in(dir.path()).unwrap();
    let a = store.insert_run(&run("d")).unwrap();
    let b = store.insert_run(&run("d")).unwrap();
    store.mark_run_started(a).unwrap();
    assert_eq!(store.run(a).unwrap().unwrap().state, RunState::InProgress);
    let interrupted = store.fail_interrupted_runs("runner restarted").unwrap();
    assert_eq!(interrupted.iter().map(|r| r.id).collect::<Vec<_>>(), [a]);
    let a_now = store.run(a).unwrap().unwrap();
    assert_eq!(
        (
            a_now.state,
            a_now.conclusion.as_deref(),
            a_now.reason.as_deref()
        ),
        (
            RunState::Completed,
            Some("failure"),
            Some("runner restarted")
        )
    );
    // A completed run keeps its first result.
    assert!(!store.finish_run(a, "success", None).unwrap());
    let queued = store.runs_in_state(RunState::Queued).unwrap();
    assert_eq!(queued.iter().map(|r| r.id).collect::<Vec<_>>(), [b]);
    assert!(
        store
            .finish_run(b, "cancelled", Some("superseded"))
            .unwrap()
    );
    assert_eq!(store.run_count(RunState::Queued).unwrap(), 0);
    let listed: Vec<_> = store.list_runs(10).unwrap().iter().map(|r| r.id).collect();
    assert_eq!(listed, [b, a], "newest first");
}

#[test]
fn jobs_keep_steps_and_check_run_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_in(dir.path()).unwrap();
    let id = store.insert_run(&run("d")).unwrap();
    let mut job = JobRecord {
        run_id: id,
        key: "build".into(),
        job_id: "build".into(),
        name: "Build".into(),
        state: JobState::Queued,
        conclusion: None,
        check_run_id: None,
        steps: serde_json::json!([]),
        summary: String::new(),
        started_at: None,
        finished_at: None,
    };
    store.save_job(&job).unwrap();
    store.set_job_check_run(id, "build", 77).unwrap();
    job.state = JobState::Completed;
    job.conclusion = Some("success".into());
    job.steps = serde_json::json!([{"name": "test", "conclusion": "success"}]);
    // Saving without a check run id keeps the recorded one.
    store.save_job(&job).unwrap();
    let jobs = store.jobs(id).unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].check_run_id, Some(77));
    assert_eq!(jobs[0].state, JobState::Completed);
    assert_eq!(jobs[0].steps[0]["name"], "test");
}

#[test]
fn logs_are_appended_in_order_and_filtered() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_in(dir.path()).unwrap();
    let id = store.insert_run(&run("d")).unwrap();
    let line = |job: &str, text: &str| NewLogLine {
        job: Some(job.into()),
        stream: LogStream::Stdout,
        line: text.into(),
        at: now_ms(),
    };
    store
        .append_logs(id, &[line("a", "one"), line("b", "two")])
        .unwrap();
    store.append_logs(id, &[line("a", "three")]).unwrap();
    let all: Vec<_> = store.logs(id, None, 0).unwrap();
    assert_eq!(
        all.iter().map(|l| l.line.as_str()).collect::<Vec<_>>(),
        ["one", "two", "three"]
    );
    let a: Vec<_> = store.logs(id, Some("a"), 0).unwrap();
    assert_eq!(a.len(), 2);
    let after: Vec<_> = store.logs(id, None, all[1].seq).unwrap();
    assert_eq!(after.len(), 1);
}

#[test]
fn pruning_keeps_recent_and_still_needed_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_in(dir.path()).unwrap();
    let now = now_ms();
    let old = now - 80 * 3600 * 1000;
    for (id, at) in [
        ("old-done", old),
        ("old-needed", old),
        ("old-queued", old),
        ("new", now),
    ] {
        store.insert_delivery(&delivery(id, at)).unwrap();
    }
    store
        .finish_delivery("old-done", DeliveryState::Ignored, None, &[])
        .unwrap();
    store
        .finish_delivery(
            "old-needed",
            DeliveryState::Dispatched,
            None,
            &[run("old-needed")],
        )
        .unwrap();
    store
        .finish_delivery("new", DeliveryState::Ignored, None, &[])
        .unwrap();
    let cutoff = now - 72 * 3600 * 1000;
    assert_eq!(store.prune_deliveries(cutoff).unwrap(), 1);
    assert!(store.delivery("old-done").unwrap().is_none());
    for kept in ["old-needed", "old-queued", "new"] {
        assert!(store.delivery(kept).unwrap().is_some(), "{kept}");
    }
}

#[test]
fn read_commands_do_not_create_a_store() {
    let dir = tempfile::tempdir().unwrap();
    match Store::open_existing_in(dir.path()) {
        Err(StoreError::Missing(path)) => assert!(path.ends_with(kiln_store::FILE_NAME)),
        other => panic!("expected Missing, got {other:?}"),
    }
    Store::open_in(dir.path()).unwrap();
    Store::open_existing_in(dir.path()).unwrap();
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(kiln_store::FILE_NAME);
    drop(Store::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    match Store::open(&path) {
        Err(StoreError::TooNew { found, .. }) => assert_eq!(found, 99),
        other => panic!("expected TooNew, got {other:?}"),
    }
}
