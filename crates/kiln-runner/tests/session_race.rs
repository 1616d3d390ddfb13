//! The session limit is atomic: many truly concurrent requests against a
//! small limit never produce more VMs than the limit, on a real backend.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Harness, TestResult};
use kiln_runner::SessionError;
use kiln_vm::VmSpec;
use tokio::sync::Barrier;

const REQUESTS: usize = 50;
const LIMIT: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn waiting_requests_never_exceed_the_limit_and_all_get_a_vm() -> TestResult {
    let h = Arc::new(Harness::new(LIMIT));
    let barrier = Arc::new(Barrier::new(REQUESTS));
    let mut tasks = Vec::new();
    for _ in 0..REQUESTS {
        let (h, barrier) = (h.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let session = h.manager.create_session(&VmSpec::default()).await?;
            let vm = session.vm().id().clone();
            // While held, the manager never reports more than the limit.
            let active = h.manager.stats().active;
            tokio::time::sleep(Duration::from_millis(5)).await;
            session.release().await?;
            Ok::<_, SessionError>((vm, active))
        }));
    }
    let mut vms = std::collections::BTreeSet::new();
    for task in tasks {
        let (vm, active) = task.await??;
        assert!(active <= LIMIT, "{active} active sessions");
        assert!(vms.insert(vm), "a VM was handed out twice");
    }
    let stats = h.stats();
    assert_eq!(vms.len(), REQUESTS);
    assert_eq!(stats.allocations(), REQUESTS);
    assert_eq!(stats.max_live, LIMIT, "{stats:#?}");
    let sessions = h.manager.stats();
    assert_eq!((sessions.created, sessions.released), (50, 50));
    h.assert_no_leaks();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn concurrent_try_requests_give_exactly_the_limit() -> TestResult {
    let h = Arc::new(Harness::new(LIMIT));
    let start = Arc::new(Barrier::new(REQUESTS));
    // Successful sessions are held until every attempt has finished, so a
    // quick release cannot make room for a late attempt.
    let finished = Arc::new(Barrier::new(REQUESTS));
    let mut tasks = Vec::new();
    for _ in 0..REQUESTS {
        let (h, start, finished) = (h.clone(), start.clone(), finished.clone());
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let attempt = h.manager.try_create_session(&VmSpec::default()).await;
            finished.wait().await;
            match attempt {
                Ok(session) => {
                    session.release().await?;
                    Ok(true)
                }
                Err(SessionError::Full { limit }) => {
                    assert_eq!(limit, LIMIT);
                    Ok(false)
                }
                Err(e) => Err(e),
            }
        }));
    }
    let mut created = 0;
    let mut full = 0;
    for task in tasks {
        if task.await?? {
            created += 1;
        } else {
            full += 1;
        }
    }
    assert_eq!((created, full), (LIMIT, REQUESTS - LIMIT));
    let stats = h.stats();
    assert_eq!(stats.allocations(), LIMIT);
    assert_eq!(stats.max_live, LIMIT);
    h.assert_no_leaks();
    Ok(())
}
