//! A warm pool of ready machines in front of any backend.
//!
//! [`WarmPool`] is itself a [`VmProvider`]: it keeps up to
//! [`PoolConfig::size`] idle machines per machine shape (a [`VmSpec`]
//! without its labels) allocated from the inner provider, and `allocate`
//! hands one of them out at once; a background task per shape refills.
//!
//! Invariants:
//! - **Never reused.** A pooled machine is handed out at most once: it
//!   leaves the idle queue when handed out, and the wrapper the caller gets
//!   ([`PooledVm`](vm::PooledVm)) destroys it on release or drop. Nothing
//!   ever puts a machine back.
//! - **Global limit.** One semaphore of [`PoolConfig::max_vms`] permits:
//!   every machine, idle, booting or handed out, holds a permit from before
//!   its allocation until it is destroyed, so idle + booting + handed out ≤
//!   `max_vms` always. Refills take only a free permit (and leave free
//!   permits to callers waiting for one); a caller who finds no idle
//!   machine and no free permit evicts an idle machine of another shape,
//!   else waits for a release.
//! - **Healthy hand-outs.** Idle machines are health-checked (the agent
//!   ping) every [`PoolConfig::health_interval`]; a hand-out checks the
//!   cheap, synchronous [`Vm::is_alive`] and pings if the last check is
//!   older than [`PoolConfig::handout_ping_after`] (by default always: a
//!   ping is ~0.5 ms under TCG). Failing machines are destroyed and
//!   replaced.
//! - **Nothing leaked.** [`WarmPool::shutdown`] stops refilling, waits for
//!   boots in flight and releases them and every idle machine. Dropping the
//!   pool without it aborts the tasks and drops the idle machines, whose
//!   backends destroy them synchronously in `Drop`.

mod vm;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::vm::PooledVm;
use crate::{Allocated, Vm, VmError, VmProvider, VmSpec};

/// How the pool behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Idle machines kept ready per machine shape.
    pub size: usize,
    /// The global machine limit: idle + booting + handed out ≤ this.
    pub max_vms: usize,
    /// Period of the background health checks of idle machines.
    pub health_interval: Duration,
    /// A hand-out pings the machine first when its last successful check
    /// is older than this (`Duration::ZERO`: always ping).
    pub handout_ping_after: Duration,
    /// Longest a health check may take before the machine counts as sick.
    pub health_timeout: Duration,
    /// Pause after a failed refill; doubles up to [`PoolConfig::max_backoff`].
    pub refill_backoff: Duration,
    pub max_backoff: Duration,
    /// Shapes warmed from the start; others are warmed from their first
    /// allocation on.
    pub specs: Vec<VmSpec>,
}

impl PoolConfig {
    /// `size` idle machines of the default [`VmSpec`], at most `max_vms`
    /// machines in all.
    pub fn new(size: usize, max_vms: usize) -> PoolConfig {
        PoolConfig {
            size,
            max_vms,
            health_interval: Duration::from_secs(2),
            // An agent ping costs ~0.5 ms under TCG: always worth it.
            handout_ping_after: Duration::ZERO,
            health_timeout: Duration::from_secs(3),
            refill_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            specs: vec![VmSpec::default()],
        }
    }
}

/// The pool's counters, as [`WarmPool::stats`] saw them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Allocations served from the idle queue.
    pub handed_out: u64,
    /// Allocations that found no idle machine and allocated directly.
    pub misses: u64,
    /// Machines allocated into the pool by the refill tasks.
    pub refills: u64,
    pub refill_failures: u64,
    pub health_checks: u64,
    /// Idle machines found dead or unresponsive (destroyed and replaced).
    pub health_failures: u64,
    /// Idle machines destroyed to make room for another shape.
    pub evictions: u64,
    /// Handed-out machines released (or dropped) by their users.
    pub returned: u64,
    /// Idle machines now.
    pub idle: usize,
    /// Machines being allocated by refill tasks now.
    pub booting: usize,
    /// Machines that hold a permit now (idle + booting + handed out).
    pub live: usize,
    /// The most `live` ever was.
    pub max_live: usize,
}

#[derive(Default)]
struct Counters {
    handed_out: AtomicU64,
    misses: AtomicU64,
    refills: AtomicU64,
    refill_failures: AtomicU64,
    health_checks: AtomicU64,
    health_failures: AtomicU64,
    evictions: AtomicU64,
    returned: AtomicU64,
    max_live: AtomicUsize,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// A ready machine waiting in the pool with its permit.
struct Idle {
    vm: Box<dyn Vm>,
    permit: OwnedSemaphorePermit,
    /// When it last passed a health check (or finished booting).
    checked: Instant,
}

/// The idle machines of one shape.
struct ShapePool {
    shape: VmSpec,
    idle: VecDeque<Idle>,
    booting: usize,
}

#[derive(Default)]
struct State {
    shapes: Vec<ShapePool>,
    shut: bool,
}

impl State {
    fn shape(&mut self, shape: &VmSpec) -> Option<&mut ShapePool> {
        self.shapes.iter_mut().find(|p| &p.shape == shape)
    }
}

pub(crate) struct Shared {
    inner: Arc<dyn VmProvider>,
    config: PoolConfig,
    permits: Arc<Semaphore>,
    state: Mutex<State>,
    /// Signalled when a refill may be needed or possible (a machine taken,
    /// a permit freed) and on shutdown.
    changed: Notify,
    /// Signalled when a refill added a machine.
    added: Notify,
    stop: CancellationToken,
    /// Callers waiting for a free permit; refills leave them that many.
    waiting: AtomicUsize,
    counters: Counters,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn live(&self) -> usize {
        self.config.max_vms - self.permits.available_permits()
    }

    fn note_live(&self) {
        self.counters
            .max_live
            .fetch_max(self.live(), Ordering::Relaxed);
    }

    /// A handed-out machine is gone: its permit is (about to be) free.
    pub(crate) fn returned(&self) {
        bump(&self.counters.returned);
        self.changed.notify_waiters();
    }
}

/// The machine shape a pool is kept for: labels do not change the machine.
fn shape_of(spec: &VmSpec) -> VmSpec {
    VmSpec {
        labels: Vec::new(),
        ..spec.clone()
    }
}

/// A [`VmProvider`] that hands out pre-allocated machines; see the module
/// docs.
pub struct WarmPool {
    shared: Arc<Shared>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl WarmPool {
    /// Starts the refill and health tasks (so it must run inside a tokio
    /// runtime). `config.max_vms` is raised to at least 1.
    pub fn new(inner: Arc<dyn VmProvider>, mut config: PoolConfig) -> WarmPool {
        config.max_vms = config.max_vms.max(1);
        let specs = std::mem::take(&mut config.specs);
        let shared = Arc::new(Shared {
            inner,
            permits: Arc::new(Semaphore::new(config.max_vms)),
            config,
            state: Mutex::default(),
            changed: Notify::new(),
            added: Notify::new(),
            stop: CancellationToken::new(),
            waiting: AtomicUsize::new(0),
            counters: Counters::default(),
        });
        let pool = WarmPool {
            tasks: Mutex::new(vec![tokio::spawn(health_loop(shared.clone()))]),
            shared,
        };
        for spec in &specs {
            pool.ensure_shape(&shape_of(spec));
        }
        pool
    }

    pub fn config(&self) -> &PoolConfig {
        &self.shared.config
    }

    /// The inner provider.
    pub fn inner(&self) -> &Arc<dyn VmProvider> {
        &self.shared.inner
    }

    pub fn stats(&self) -> PoolStats {
        let c = &self.shared.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (idle, booting) = {
            let state = self.shared.lock();
            state
                .shapes
                .iter()
                .fold((0, 0), |(i, b), p| (i + p.idle.len(), b + p.booting))
        };
        PoolStats {
            handed_out: load(&c.handed_out),
            misses: load(&c.misses),
            refills: load(&c.refills),
            refill_failures: load(&c.refill_failures),
            health_checks: load(&c.health_checks),
            health_failures: load(&c.health_failures),
            evictions: load(&c.evictions),
            returned: load(&c.returned),
            idle,
            booting,
            live: self.shared.live(),
            max_live: c.max_live.load(Ordering::Relaxed),
        }
    }

    /// Waits until every warmed shape has `size` idle machines (or the
    /// global limit allows no more), up to `limit`. Returns whether it got
    /// there.
    pub async fn wait_full(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let added = self.shared.added.notified();
            tokio::pin!(added);
            added.as_mut().enable();
            let full = {
                let state = self.shared.lock();
                let size = self.shared.config.size;
                let all_full = state.shapes.iter().all(|p| p.idle.len() >= size);
                let none_booting = state.shapes.iter().all(|p| p.booting == 0);
                all_full || (self.shared.permits.available_permits() == 0 && none_booting)
            };
            if full {
                return true;
            }
            let wake = tokio::time::Instant::now() + Duration::from_millis(100);
            if tokio::time::timeout_at(deadline.min(wake), added)
                .await
                .is_err()
                && tokio::time::Instant::now() >= deadline
            {
                return false;
            }
        }
    }

    /// Stops refilling, waits for allocations in flight and releases them
    /// and every idle machine. Machines already handed out are their
    /// users' to release. Returns the first release error, if any.
    pub async fn shutdown(&self) -> Result<(), VmError> {
        self.shared.lock().shut = true;
        self.shared.stop.cancel();
        self.shared.changed.notify_waiters();
        let tasks = std::mem::take(&mut *lock(&self.tasks));
        for task in tasks {
            let _ = task.await;
        }
        let idle: Vec<Idle> = {
            let mut state = self.shared.lock();
            state
                .shapes
                .iter_mut()
                .flat_map(|p| p.idle.drain(..))
                .collect()
        };
        let mut releases = tokio::task::JoinSet::new();
        for entry in idle {
            releases.spawn(async move {
                let result = entry.vm.release().await;
                drop(entry.permit);
                result
            });
        }
        let mut first_error = None;
        while let Some(done) = releases.join_next().await {
            let result = done.unwrap_or_else(|e| {
                Err(VmError::Exec {
                    reason: format!("releasing a pooled vm panicked: {e}"),
                    source: None,
                })
            });
            if let Err(e) = result {
                tracing::warn!(error = %e, "releasing an idle pooled vm failed");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Registers `shape` and starts its refill task, once.
    fn ensure_shape(&self, shape: &VmSpec) {
        {
            let mut state = self.shared.lock();
            if state.shut || state.shape(shape).is_some() {
                return;
            }
            state.shapes.push(ShapePool {
                shape: shape.clone(),
                idle: VecDeque::new(),
                booting: 0,
            });
        }
        if self.shared.config.size > 0 {
            let task = tokio::spawn(refill_loop(self.shared.clone(), shape.clone()));
            lock(&self.tasks).push(task);
        }
    }

    /// The next healthy idle machine of `shape`, waiting for a boot in
    /// flight rather than starting a second one. `None`: allocate directly.
    async fn take_idle(&self, shape: &VmSpec) -> Option<Idle> {
        let shared = &self.shared;
        loop {
            let added = shared.added.notified();
            tokio::pin!(added);
            added.as_mut().enable();
            let (entry, booting) = {
                let mut state = shared.lock();
                let pool = state.shape(shape)?;
                (pool.idle.pop_front(), pool.booting)
            };
            let Some(entry) = entry else {
                if booting == 0 {
                    return None;
                }
                tokio::select! {
                    () = added => continue,
                    () = shared.stop.cancelled() => return None,
                }
            };
            shared.changed.notify_waiters();
            if !entry.vm.is_alive() {
                self.discard(entry, "found dead at hand-out");
                continue;
            }
            if entry.checked.elapsed() >= shared.config.handout_ping_after
                && let Err(why) = check(shared, entry.vm.as_ref()).await
            {
                self.discard(entry, &why);
                continue;
            }
            return Some(entry);
        }
    }

    /// Destroys a sick idle machine in the background (its permit goes
    /// with it) and wakes the refill.
    fn discard(&self, entry: Idle, why: &str) {
        bump(&self.shared.counters.health_failures);
        tracing::warn!(vm = %entry.vm.id(), "pooled vm {why}; replacing it");
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let _ = entry.vm.release().await;
            drop(entry.permit);
            shared.changed.notify_waiters();
        });
    }

    /// A permit for a direct allocation: a free one, else one freed by
    /// evicting an idle machine (of another shape, since this one has
    /// none), else the next one released.
    async fn permit(&self) -> Result<OwnedSemaphorePermit, VmError> {
        let shared = &self.shared;
        // Counted as waiting from the start, so that a refill does not
        // take the permit an eviction below frees.
        let _waiting = Waiting::new(&shared.waiting);
        loop {
            if let Ok(permit) = shared.permits.clone().try_acquire_owned() {
                return Ok(permit);
            }
            let victim = {
                let mut state = shared.lock();
                state
                    .shapes
                    .iter_mut()
                    .max_by_key(|p| p.idle.len())
                    .and_then(|p| p.idle.pop_back())
            };
            if let Some(entry) = victim {
                bump(&shared.counters.evictions);
                tracing::debug!(vm = %entry.vm.id(), "evicting an idle vm to make room");
                let _ = entry.vm.release().await;
                drop(entry.permit);
                continue;
            }
            let acquired = tokio::select! {
                permit = shared.permits.clone().acquire_owned() => permit.ok(),
                () = shared.stop.cancelled() => None,
            };
            return acquired.ok_or_else(shut_down);
        }
    }
}

/// Counts a caller waiting for a permit while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn shut_down() -> VmError {
    VmError::Allocation {
        reason: "the warm pool is shut down".to_owned(),
        source: None,
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A health check bounded by the configured timeout; `Err` says why.
async fn check(shared: &Shared, vm: &dyn Vm) -> Result<(), String> {
    bump(&shared.counters.health_checks);
    match tokio::time::timeout(shared.config.health_timeout, vm.health_check()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("failed its health check: {e}")),
        Err(_) => Err(format!(
            "did not answer its health check within {:?}",
            shared.config.health_timeout
        )),
    }
}

#[async_trait]
impl VmProvider for WarmPool {
    fn name(&self) -> &'static str {
        self.shared.inner.name()
    }

    async fn allocate(&self, spec: &VmSpec) -> Result<Allocated, VmError> {
        let started = Instant::now();
        if self.shared.stop.is_cancelled() {
            return Err(shut_down());
        }
        let shape = shape_of(spec);
        self.ensure_shape(&shape);
        if let Some(entry) = self.take_idle(&shape).await {
            bump(&self.shared.counters.handed_out);
            let vm = PooledVm::new(entry.vm, entry.permit, self.shared.clone());
            return Ok(Allocated {
                vm: Box::new(vm),
                elapsed: started.elapsed(),
            });
        }
        if self.shared.stop.is_cancelled() {
            return Err(shut_down());
        }
        bump(&self.shared.counters.misses);
        let permit = self.permit().await?;
        self.shared.note_live();
        let allocated = match self.shared.inner.allocate(spec).await {
            Ok(allocated) => allocated,
            Err(e) => {
                drop(permit);
                self.shared.changed.notify_waiters();
                return Err(e);
            }
        };
        let vm = PooledVm::new(allocated.vm, permit, self.shared.clone());
        Ok(Allocated {
            vm: Box::new(vm),
            elapsed: started.elapsed(),
        })
    }

    async fn reap_orphans(&self) -> Result<usize, VmError> {
        self.shared.inner.reap_orphans().await
    }
}

impl Drop for WarmPool {
    /// Without [`shutdown`](Self::shutdown): aborts the tasks (an
    /// allocation in flight is dropped, which destroys what it started)
    /// and drops the idle machines (their backends destroy them).
    fn drop(&mut self) {
        self.shared.stop.cancel();
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
        let idle: Vec<Idle> = {
            let mut state = self.shared.lock();
            state.shut = true;
            state
                .shapes
                .iter_mut()
                .flat_map(|p| p.idle.drain(..))
                .collect()
        };
        drop(idle);
    }
}

/// Keeps `shape`'s idle queue at `size`, one allocation at a time.
async fn refill_loop(shared: Arc<Shared>, shape: VmSpec) {
    let mut backoff = shared.config.refill_backoff;
    loop {
        let changed = shared.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if shared.stop.is_cancelled() {
            return;
        }
        let permit = {
            let mut state = shared.lock();
            let Some(pool) = state.shape(&shape) else {
                return;
            };
            let wanted = pool.idle.len() + pool.booting < shared.config.size;
            // Free permits go to callers waiting for one first.
            let spare = shared.permits.available_permits() > shared.waiting.load(Ordering::SeqCst);
            let permit = if wanted && spare {
                shared.permits.clone().try_acquire_owned().ok()
            } else {
                None
            };
            if permit.is_some() {
                pool.booting += 1;
            }
            permit
        };
        let Some(permit) = permit else {
            // Woken by a hand-out, a release or shutdown; the timeout is a
            // safety net only.
            tokio::select! {
                () = &mut changed => {}
                () = shared.stop.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            continue;
        };
        shared.note_live();
        // Not cancelled by shutdown: what it starts is released below.
        let result = shared.inner.allocate(&shape).await;
        let leftover = {
            let mut state = shared.lock();
            let shut = state.shut;
            let pool = state.shape(&shape);
            match (result, pool) {
                (Ok(allocated), Some(pool)) if !shut => {
                    pool.booting -= 1;
                    pool.idle.push_back(Idle {
                        vm: allocated.vm,
                        permit,
                        checked: Instant::now(),
                    });
                    Ok(None)
                }
                (Ok(allocated), pool) => {
                    if let Some(pool) = pool {
                        pool.booting -= 1;
                    }
                    Ok(Some((allocated.vm, permit)))
                }
                (Err(e), pool) => {
                    if let Some(pool) = pool {
                        pool.booting -= 1;
                    }
                    drop(permit);
                    Err(e)
                }
            }
        };
        match leftover {
            Ok(None) => {
                bump(&shared.counters.refills);
                backoff = shared.config.refill_backoff;
                shared.added.notify_waiters();
            }
            Ok(Some((vm, permit))) => {
                // Shut down meanwhile.
                let _ = vm.release().await;
                drop(permit);
                return;
            }
            Err(e) => {
                bump(&shared.counters.refill_failures);
                tracing::warn!(error = %e, retry_in = ?backoff, "warm pool refill failed");
                shared.added.notify_waiters();
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shared.stop.cancelled() => return,
                }
                backoff = (backoff * 2).min(shared.config.max_backoff);
            }
        }
    }
}

/// Checks idle machines whose last check is older than the interval, one
/// at a time (the others stay available), and replaces the sick ones.
async fn health_loop(shared: Arc<Shared>) {
    let interval = shared.config.health_interval;
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = shared.stop.cancelled() => return,
        }
        let shapes: Vec<VmSpec> = shared
            .lock()
            .shapes
            .iter()
            .map(|p| p.shape.clone())
            .collect();
        for shape in shapes {
            loop {
                let entry = {
                    let mut state = shared.lock();
                    let Some(pool) = state.shape(&shape) else {
                        break;
                    };
                    match pool
                        .idle
                        .iter()
                        .position(|e| e.checked.elapsed() >= interval)
                    {
                        Some(i) => pool.idle.remove(i),
                        None => None,
                    }
                };
                let Some(mut entry) = entry else { break };
                let verdict = if entry.vm.is_alive() {
                    check(&shared, entry.vm.as_ref()).await
                } else {
                    Err("found dead".to_owned())
                };
                let rejected = {
                    let mut state = shared.lock();
                    let shut = state.shut;
                    match (&verdict, state.shape(&shape)) {
                        (Ok(()), Some(pool)) if !shut => {
                            entry.checked = Instant::now();
                            pool.idle.push_back(entry);
                            None
                        }
                        _ => Some(entry),
                    }
                };
                match rejected {
                    None => shared.added.notify_waiters(),
                    Some(entry) => {
                        if let Err(why) = verdict {
                            bump(&shared.counters.health_failures);
                            tracing::warn!(vm = %entry.vm.id(), "pooled vm {why}; replacing it");
                        }
                        let _ = entry.vm.release().await;
                        drop(entry.permit);
                        shared.changed.notify_waiters();
                    }
                }
                if shared.stop.is_cancelled() {
                    return;
                }
            }
        }
    }
}
