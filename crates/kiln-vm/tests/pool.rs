//! The warm pool over real microVMs (TCG where KVM does not work).
//!
//! Like tests/qemu.rs: needs QEMU and the `minimal` image of `$KILN_HOME`;
//! without them each test says why and passes, unless `KILN_REQUIRE_QEMU`
//! is set. The pool refills by snapshot restore (as `kiln serve` does), so
//! 50 allocations take seconds, not a minute.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kiln_vm::{ExecRequest, Network, PoolConfig, QemuProvider, Vm, VmProvider, VmSpec, WarmPool};
use support::processes_mentioning;
use tempfile::TempDir;

mod support;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const FILL: Duration = Duration::from_secs(120);

struct Fixture {
    provider: QemuProvider,
    state: TempDir,
}

/// A provider that restores snapshots (kept in its own state directory).
fn fixture() -> Option<Fixture> {
    let (provider, state) = support::provider("kp", |config| {
        config.snapshot_dir = config.state_dir.join("snapshots");
        config.snapshot_restore = true;
    })?;
    Some(Fixture { provider, state })
}

fn spec() -> VmSpec {
    support::spec(Network::None)
}

impl Fixture {
    /// A pool of `size` (at most `max` VMs) over a provider whose snapshot
    /// is ready.
    async fn pool(&self, size: usize, max: usize) -> Result<WarmPool, kiln_vm::VmError> {
        self.provider.prepare_snapshot(&spec()).await?;
        let inner: Arc<dyn VmProvider> = Arc::new(self.provider.clone());
        Ok(WarmPool::new(
            inner,
            PoolConfig {
                specs: vec![spec()],
                health_interval: Duration::from_millis(500),
                ..PoolConfig::new(size, max)
            },
        ))
    }

    /// VM state directories (not snapshots) in the state directory.
    fn vm_dirs(&self) -> Vec<PathBuf> {
        support::vm_dirs(self.state.path())
    }
}

async fn sh(vm: &dyn Vm, script: &str) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let result = vm.exec(ExecRequest::new(["sh", "-c", script]), tx).await?;
    let mut out = Vec::new();
    while let Ok(chunk) = rx.try_recv() {
        out.extend(chunk.data);
    }
    let out = String::from_utf8_lossy(&out).into_owned();
    if !result.success() {
        return Err(format!("`{script}` failed ({result:?}): {out}").into());
    }
    Ok(out)
}

/// The QEMU processes mentioning `dir` that this test process started. Not
/// counted: a restore's `sh -c cat <state file>` (it mentions the directory
/// too), and QEMU's own forks for it, which carry QEMU's command line
/// until they exec.
fn qemus_mentioning(dir: &Path) -> Vec<u32> {
    let me = std::process::id().to_string();
    processes_mentioning(dir)
        .into_iter()
        .filter(|(pid, program)| {
            let parent = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                    .is_some_and(|ppid| ppid == me)
            });
            parent && program.contains("qemu-system")
        })
        .map(|(pid, _)| pid)
        .collect()
}

/// Waits (bounded) until no live process mentions `dir`.
async fn no_process_mentions(dir: &Path) -> bool {
    for _ in 0..250 {
        if processes_mentioning(dir).is_empty() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// One session: the VM is fresh (nothing an earlier session wrote), it
/// works, it leaves a mark, it is released, its QEMU is gone.
async fn session(
    pool: &WarmPool,
    state: &Path,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let vm = pool.allocate(&spec()).await?.vm;
    let id = vm.id().to_string();
    let dir = state.join(&id);
    assert!(!processes_mentioning(&dir).is_empty(), "no qemu for {id}");
    let out = sh(
        vm.as_ref(),
        "ls /tmp/session-mark-* 2>/dev/null | wc -l; echo $$ > /tmp/session-mark-$(hostname)",
    )
    .await?;
    assert_eq!(out.trim(), "0", "{id} saw an earlier session's file");
    vm.release().await?;
    assert!(
        no_process_mentions(&dir).await,
        "qemu of {id} survived its release"
    );
    assert!(!dir.exists(), "state of {id} survived its release");
    Ok(id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_sequential_pooled_allocations_are_all_fresh() -> TestResult {
    let Some(f) = fixture() else { return Ok(()) };
    let pool = f.pool(2, 3).await?;
    assert!(pool.wait_full(FILL).await);
    let mut ids = HashSet::new();
    for _ in 0..50 {
        let id = session(&pool, f.state.path()).await?;
        assert!(ids.insert(id.clone()), "{id} handed out twice");
    }
    let stats = pool.stats();
    assert!(stats.max_live <= 3, "{stats:?}");
    assert!(stats.handed_out >= 1, "{stats:?}");
    pool.shutdown().await?;
    assert!(f.vm_dirs().is_empty(), "{:?}", f.vm_dirs());
    assert!(no_process_mentions(f.state.path()).await);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_concurrent_pooled_allocations_stay_within_the_limit() -> TestResult {
    const MAX: usize = 4;
    let Some(f) = fixture() else { return Ok(()) };
    let pool = Arc::new(f.pool(2, MAX).await?);
    assert!(pool.wait_full(FILL).await);
    let state = f.state.path().to_owned();
    let stop = tokio_util::sync::CancellationToken::new();
    let watcher = {
        let needle = state.to_owned();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut most = 0;
            while !stop.is_cancelled() {
                most = most.max(qemus_mentioning(&needle).len());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            most
        })
    };
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let (pool, state) = (pool.clone(), state.clone());
        tasks.spawn(async move { session(&pool, &state).await });
    }
    let mut ids = HashSet::new();
    while let Some(done) = tasks.join_next().await {
        let id = done??;
        assert!(ids.insert(id.clone()), "{id} handed out twice");
    }
    assert_eq!(ids.len(), 10);
    let stats = pool.stats();
    assert!(stats.max_live <= MAX, "{stats:?}");
    pool.shutdown().await?;
    stop.cancel();
    let most = watcher.await?;
    assert!(
        most <= MAX,
        "{most} qemu processes at once, limit {MAX}; {:?}; {:?}",
        pool.stats(),
        f.provider.stats()
    );
    assert!(f.vm_dirs().is_empty(), "{:?}", f.vm_dirs());
    assert!(no_process_mentions(&state).await);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_process_count_never_exceeds_the_limit() -> TestResult {
    const MAX: usize = 3;
    let Some(f) = fixture() else { return Ok(()) };
    let pool = Arc::new(f.pool(2, MAX).await?);
    let needle = f.state.path().to_owned();
    let stop = tokio_util::sync::CancellationToken::new();
    let watcher = {
        let (needle, stop) = (needle.clone(), stop.clone());
        tokio::spawn(async move {
            let mut most = 0;
            while !stop.is_cancelled() {
                most = most.max(qemus_mentioning(&needle).len());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            most
        })
    };
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let (pool, state) = (pool.clone(), f.state.path().to_owned());
        tasks.spawn(async move { session(&pool, &state).await });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    pool.shutdown().await?;
    stop.cancel();
    let most = watcher.await?;
    // One QEMU per VM (no NIC, so no passt).
    assert!(
        most <= MAX,
        "{most} qemu processes at once, limit {MAX}; {:?}; {:?}",
        pool.stats(),
        f.provider.stats()
    );
    assert!(most >= 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_leaves_no_qemu_and_no_state() -> TestResult {
    let Some(f) = fixture() else { return Ok(()) };
    let pool = f.pool(3, 4).await?;
    assert!(pool.wait_full(FILL).await);
    assert_eq!(f.vm_dirs().len(), 3);
    let needle = f.state.path().to_owned();
    assert_eq!(qemus_mentioning(&needle).len(), 3);
    pool.shutdown().await?;
    assert!(f.vm_dirs().is_empty(), "{:?}", f.vm_dirs());
    assert!(
        no_process_mentions(&needle).await,
        "{:?}",
        processes_mentioning(&needle)
    );
    // Dropping a full pool without shutdown leaks nothing either.
    let pool = f.pool(2, 2).await?;
    assert!(pool.wait_full(FILL).await);
    drop(pool);
    assert!(f.vm_dirs().is_empty(), "{:?}", f.vm_dirs());
    assert!(
        no_process_mentions(&needle).await,
        "{:?}",
        processes_mentioning(&needle)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_idle_vm_is_replaced() -> TestResult {
    let Some(f) = fixture() else { return Ok(()) };
    let pool = f.pool(2, 3).await?;
    assert!(pool.wait_full(FILL).await);
    // Kill one idle VM's QEMU behind the pool's back.
    let victim = f.vm_dirs().into_iter().next().ok_or("no idle vm")?;
    let pid: i32 = std::fs::read_to_string(victim.join("qemu.pid"))?
        .trim()
        .parse()?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    // Whatever comes first (hand-out or health check), the dead VM is
    // never handed out and gets replaced.
    for _ in 0..3 {
        let vm = pool.allocate(&spec()).await?.vm;
        assert_ne!(f.state.path().join(vm.id().as_str()), victim);
        sh(vm.as_ref(), "true").await?;
        vm.release().await?;
    }
    assert!(pool.stats().health_failures >= 1, "{:?}", pool.stats());
    assert!(pool.wait_full(FILL).await);
    assert!(!victim.exists());
    pool.shutdown().await?;
    Ok(())
}
