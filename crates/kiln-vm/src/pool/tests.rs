use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::{CountingProvider, ExecRequest, MockProvider, VmId};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const WAIT: Duration = Duration::from_secs(10);

fn config(size: usize, max_vms: usize) -> PoolConfig {
    PoolConfig {
        health_interval: Duration::from_secs(3600),
        handout_ping_after: Duration::from_secs(3600),
        refill_backoff: Duration::from_millis(5),
        ..PoolConfig::new(size, max_vms)
    }
}

/// A pool over a counting mock: the counter sees every machine the pool
/// holds, idle or handed out.
fn pool(
    size: usize,
    max_vms: usize,
) -> (WarmPool, MockProvider, Arc<CountingProvider<MockProvider>>) {
    pool_with(config(size, max_vms))
}

fn pool_with(config: PoolConfig) -> (WarmPool, MockProvider, Arc<CountingProvider<MockProvider>>) {
    let mock = MockProvider::default();
    let counting = Arc::new(CountingProvider::new(mock.clone()));
    (WarmPool::new(counting.clone(), config), mock, counting)
}

async fn run_true(vm: &dyn Vm) -> TestResult {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let result = vm.exec(ExecRequest::new(["true"]), tx).await?;
    assert!(result.success());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_sequential_allocations_never_share_a_machine() -> TestResult {
    let (pool, mock, counting) = pool(2, 4);
    assert!(pool.wait_full(WAIT).await);
    let mut seen = HashSet::new();
    for _ in 0..10_000 {
        let vm = pool.allocate(&VmSpec::default()).await?.vm;
        let id = vm.id().clone();
        assert!(seen.insert(id.clone()), "{id} handed out twice");
        assert!(mock.live().contains(&id));
        run_true(vm.as_ref()).await?;
        vm.release().await?;
        assert!(!mock.live().contains(&id), "{id} survived its release");
    }
    let stats = pool.stats();
    assert_eq!(stats.handed_out + stats.misses, 10_000);
    assert!(stats.handed_out > 0, "{stats:?}");
    assert!(stats.max_live <= 4, "{stats:?}");
    assert!(counting.stats().max_live <= 4);
    pool.shutdown().await?;
    assert!(mock.live().is_empty(), "{:?}", mock.live());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_allocations_stay_within_the_limit() -> TestResult {
    const MAX: usize = 8;
    let (pool, mock, counting) = pool(3, MAX);
    let pool = Arc::new(pool);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1_000u64 {
        let pool = pool.clone();
        let mock = mock.clone();
        tasks.spawn(async move {
            let vm = pool.allocate(&VmSpec::default()).await?.vm;
            let id = vm.id().clone();
            // The pool's own view and the backend's agree with the limit.
            assert!(mock.live().len() <= MAX);
            assert!(pool.stats().live <= MAX);
            run_true(vm.as_ref()).await?;
            if i % 3 == 0 {
                tokio::task::yield_now().await;
            }
            if i % 10 == 0 {
                drop(vm); // a dropped machine is destroyed too
            } else {
                vm.release().await?;
            }
            assert!(!mock.live().contains(&id));
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(id)
        });
    }
    let mut ids = HashSet::new();
    while let Some(done) = tasks.join_next().await {
        let id = done??;
        assert!(ids.insert(id), "a machine was handed out twice");
    }
    assert_eq!(ids.len(), 1_000);
    let stats = pool.stats();
    assert!(stats.max_live <= MAX, "{stats:?}");
    assert!(counting.stats().max_live <= MAX, "{:?}", counting.stats());
    assert_eq!(stats.returned, 1_000);
    pool.shutdown().await?;
    assert!(mock.live().is_empty());
    assert_eq!(counting.stats().live.len(), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_refills_in_the_background_up_to_its_size() -> TestResult {
    let (pool, mock, _) = pool(3, 10);
    assert!(pool.wait_full(WAIT).await);
    assert_eq!(mock.live().len(), 3);
    let vm = pool.allocate(&VmSpec::default()).await?.vm;
    assert!(pool.wait_full(WAIT).await);
    // Three idle plus the one handed out; never more.
    assert_eq!(mock.live().len(), 4);
    assert_eq!(pool.stats().idle, 3);
    vm.release().await?;
    assert_eq!(mock.live().len(), 3);
    pool.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_caps_the_pool_and_direct_allocations_wait() -> TestResult {
    let (pool, mock, _) = pool(2, 2);
    assert!(pool.wait_full(WAIT).await);
    let a = pool.allocate(&VmSpec::default()).await?.vm;
    let b = pool.allocate(&VmSpec::default()).await?.vm;
    // Both permits are handed out: nothing refills, a third waits.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(pool.stats().idle, 0);
    assert_eq!(mock.live().len(), 2);
    let third = tokio::time::timeout(
        Duration::from_millis(100),
        pool.allocate(&VmSpec::default()),
    )
    .await;
    assert!(third.is_err(), "a third machine exceeded the limit");
    let waiter = {
        let spec = VmSpec::default();
        async move { pool.allocate(&spec).await.map(|a| (a, pool)) }
    };
    let waiter = tokio::spawn(waiter);
    tokio::time::sleep(Duration::from_millis(20)).await;
    a.release().await?;
    let (c, pool) = tokio::time::timeout(WAIT, waiter).await???;
    assert!(mock.live().len() <= 2);
    c.vm.release().await?;
    b.release().await?;
    assert!(pool.stats().max_live <= 2);
    pool.shutdown().await?;
    assert!(mock.live().is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_shape_evicts_an_idle_machine_when_full() -> TestResult {
    let (pool, mock, counting) = pool(2, 2);
    assert!(pool.wait_full(WAIT).await);
    let big = VmSpec {
        memory_mib: 4096,
        ..VmSpec::default()
    };
    let vm = tokio::time::timeout(WAIT, pool.allocate(&big)).await??.vm;
    let stats = pool.stats();
    assert_eq!(stats.evictions, 1, "{stats:?}");
    assert!(mock.live().len() <= 2);
    vm.release().await?;
    pool.shutdown().await?;
    assert!(counting.stats().max_live <= 2);
    assert!(mock.live().is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_do_not_split_the_pool() -> TestResult {
    let (pool, _, _) = pool(1, 4);
    assert!(pool.wait_full(WAIT).await);
    let labelled = VmSpec {
        labels: vec!["ubuntu-latest".into()],
        ..VmSpec::default()
    };
    let vm = pool.allocate(&labelled).await?.vm;
    assert_eq!(pool.stats().handed_out, 1);
    vm.release().await?;
    pool.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sick_idle_machines_are_replaced_by_the_health_check() -> TestResult {
    let (pool, mock, _) = pool_with(PoolConfig {
        health_interval: Duration::from_millis(20),
        ..config(2, 4)
    });
    assert!(pool.wait_full(WAIT).await);
    let sick: Vec<VmId> = mock.live().into_iter().collect();
    for id in &sick {
        mock.make_sick(id);
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while pool.stats().health_failures < 2 {
        assert!(tokio::time::Instant::now() < deadline, "{:?}", pool.stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(pool.wait_full(WAIT).await);
    for id in &sick {
        assert!(!mock.live().contains(id), "sick {id} was kept");
    }
    let vm = pool.allocate(&VmSpec::default()).await?.vm;
    assert!(!sick.contains(vm.id()));
    vm.release().await?;
    pool.shutdown().await?;
    assert!(mock.live().is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_machine_is_never_handed_out() -> TestResult {
    let (pool, mock, _) = pool(2, 4);
    assert!(pool.wait_full(WAIT).await);
    for id in mock.live() {
        mock.make_sick(&id);
    }
    let sick = mock.live();
    let vm = pool.allocate(&VmSpec::default()).await?.vm;
    assert!(!sick.contains(vm.id()));
    assert!(vm.is_alive());
    assert_eq!(pool.stats().health_failures, 2);
    vm.release().await?;
    pool.shutdown().await?;
    assert!(mock.live().is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_machine_is_pinged_before_hand_out() -> TestResult {
    let (pool, _, _) = pool_with(PoolConfig {
        handout_ping_after: Duration::ZERO,
        ..config(1, 4)
    });
    assert!(pool.wait_full(WAIT).await);
    let vm = pool.allocate(&VmSpec::default()).await?.vm;
    assert_eq!(pool.stats().health_checks, 1);
    vm.release().await?;
    pool.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_refills_back_off_and_recover() -> TestResult {
    let (pool, mock, _) = {
        let mock = MockProvider::default();
        mock.fail_allocations(3);
        let pool = WarmPool::new(Arc::new(mock.clone()), config(2, 4));
        (pool, mock, ())
    };
    assert!(pool.wait_full(WAIT).await);
    assert_eq!(pool.stats().refill_failures, 3);
    assert_eq!(mock.live().len(), 2);
    pool.shutdown().await?;
    assert!(mock.live().is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_releases_idle_machines_and_stops_refilling() -> TestResult {
    let (pool, mock, _) = pool(3, 6);
    assert!(pool.wait_full(WAIT).await);
    let kept = pool.allocate(&VmSpec::default()).await?.vm;
    pool.shutdown().await?;
    // Only the handed-out machine is left; it is its user's to release.
    assert_eq!(
        mock.live().into_iter().collect::<Vec<_>>(),
        vec![kept.id().clone()]
    );
    let stats = pool.stats();
    assert_eq!((stats.idle, stats.booting, stats.live), (0, 0, 1));
    assert!(pool.allocate(&VmSpec::default()).await.is_err());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(mock.live().len(), 1, "refilled after shutdown");
    run_true(kept.as_ref()).await?;
    kept.release().await?;
    assert!(mock.live().is_empty());
    assert_eq!(pool.stats().live, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_a_boot_in_flight_and_releases_it() -> TestResult {
    let mock = MockProvider::default().with_allocation_delay(Duration::from_millis(200));
    let pool = WarmPool::new(Arc::new(mock.clone()), config(2, 4));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(pool.stats().booting, 1);
    pool.shutdown().await?;
    assert!(mock.live().is_empty());
    assert_eq!(pool.stats().live, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_pool_destroys_its_idle_machines() -> TestResult {
    let (pool, mock, _) = pool(3, 6);
    assert!(pool.wait_full(WAIT).await);
    assert_eq!(mock.live().len(), 3);
    drop(pool);
    assert!(mock.live().is_empty(), "{:?}", mock.live());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_zero_is_a_pass_through_with_the_limit() -> TestResult {
    let (pool, mock, _) = pool(0, 1);
    let a = pool.allocate(&VmSpec::default()).await?.vm;
    assert_eq!(pool.stats().misses, 1);
    assert_eq!(mock.live().len(), 1);
    let second =
        tokio::time::timeout(Duration::from_millis(50), pool.allocate(&VmSpec::default())).await;
    assert!(second.is_err(), "the limit of one was exceeded");
    a.release().await?;
    pool.shutdown().await?;
    assert!(mock.live().is_empty());
    Ok(())
}
