//! Sessions: one per workflow run, each owning exactly one VM.
//!
//! The VM is allocated inside [`SessionManager::create_session`] and nowhere
//! else, so the job and step loops cannot allocate. The concurrency limit is
//! a semaphore permit acquired *before* allocating and held by the session
//! until its VM is released: N concurrent requests against limit L can never
//! produce more than L VMs, because there is no check-then-act window.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use kiln_vm::{Vm, VmError, VmProvider, VmSpec};
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("session limit reached: {limit} concurrent session(s) already running")]
    Full { limit: usize },
    #[error("could not allocate a VM for the session")]
    Allocation(#[source] VmError),
    #[error("releasing the VM of session {session} failed")]
    Release {
        session: u64,
        #[source]
        source: VmError,
    },
    #[error("the session manager is shut down")]
    Closed,
}

/// Counters over the manager's lifetime.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SessionStats {
    /// Sessions holding a VM right now.
    pub active: usize,
    /// Sessions whose VM was allocated.
    pub created: u64,
    /// Sessions whose VM was released (by `release` or by drop).
    pub released: u64,
    /// Session requests whose allocation failed.
    pub failed: u64,
}

#[derive(Default)]
struct Counters {
    active: AtomicUsize,
    created: AtomicU64,
    released: AtomicU64,
    failed: AtomicU64,
    next_id: AtomicU64,
}

/// Creates sessions within a concurrency limit.
pub struct SessionManager {
    provider: Arc<dyn VmProvider>,
    slots: Arc<Semaphore>,
    limit: usize,
    counters: Arc<Counters>,
}

impl SessionManager {
    pub fn new(provider: Arc<dyn VmProvider>, max_concurrent_sessions: usize) -> Self {
        SessionManager {
            provider,
            slots: Arc::new(Semaphore::new(max_concurrent_sessions)),
            limit: max_concurrent_sessions,
            counters: Arc::new(Counters::default()),
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn provider(&self) -> &Arc<dyn VmProvider> {
        &self.provider
    }

    /// Creates a session if a slot is free right now, else fails with
    /// [`SessionError::Full`].
    pub async fn try_create_session(&self, spec: &VmSpec) -> Result<Session, SessionError> {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(TryAcquireError::NoPermits) => {
                return Err(SessionError::Full { limit: self.limit });
            }
            Err(TryAcquireError::Closed) => return Err(SessionError::Closed),
        };
        self.allocate(spec, permit).await
    }

    /// Waits for a free slot, then creates a session.
    pub async fn create_session(&self, spec: &VmSpec) -> Result<Session, SessionError> {
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| SessionError::Closed)?;
        self.allocate(spec, permit).await
    }

    /// Stops handing out slots; waiting `create_session` calls fail.
    pub fn close(&self) {
        self.slots.close();
    }

    pub fn stats(&self) -> SessionStats {
        let c = &self.counters;
        SessionStats {
            active: c.active.load(Ordering::SeqCst),
            created: c.created.load(Ordering::SeqCst),
            released: c.released.load(Ordering::SeqCst),
            failed: c.failed.load(Ordering::SeqCst),
        }
    }

    async fn allocate(
        &self,
        spec: &VmSpec,
        permit: OwnedSemaphorePermit,
    ) -> Result<Session, SessionError> {
        let id = self.counters.next_id.fetch_add(1, Ordering::SeqCst) + 1;
        match self.provider.allocate(spec).await {
            Ok(allocated) => {
                self.counters.created.fetch_add(1, Ordering::SeqCst);
                self.counters.active.fetch_add(1, Ordering::SeqCst);
                tracing::debug!(session = id, vm = %allocated.vm.id(), elapsed = ?allocated.elapsed, "session created");
                Ok(Session {
                    id,
                    allocation_time: allocated.elapsed,
                    vm: Some(allocated.vm),
                    slot: Some(Slot {
                        _permit: permit,
                        counters: self.counters.clone(),
                    }),
                })
            }
            Err(err) => {
                self.counters.failed.fetch_add(1, Ordering::SeqCst);
                Err(SessionError::Allocation(err))
            }
        }
    }
}

/// One workflow run's claim on one VM. Release it with [`Session::release`];
/// if it is dropped instead (panic, early return), the VM is released in the
/// background and the slot is freed only once that is done.
pub struct Session {
    id: u64,
    allocation_time: Duration,
    vm: Option<Box<dyn Vm>>,
    slot: Option<Slot>,
}

/// A session's place in the limit. Dropping it frees the slot and counts
/// the session as released, so the counters stay right even when a release
/// is cut short (its future dropped, the runtime shutting down): the VM's
/// own `Drop` destroys it then.
struct Slot {
    _permit: OwnedSemaphorePermit,
    counters: Arc<Counters>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.counters.active.fetch_sub(1, Ordering::SeqCst);
        self.counters.released.fetch_add(1, Ordering::SeqCst);
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("vm", &self.vm.as_ref().map(|vm| vm.id().to_string()))
            .finish()
    }
}

impl Session {
    pub fn id(&self) -> u64 {
        self.id
    }

    /// How long allocating this session's VM took.
    pub fn allocation_time(&self) -> Duration {
        self.allocation_time
    }

    /// The session's VM. Present for the session's whole life: it is only
    /// taken out by `release` or `drop`, which consume the session.
    pub fn vm(&self) -> &dyn Vm {
        match &self.vm {
            Some(vm) => vm.as_ref(),
            None => unreachable!("a live session always holds its VM"),
        }
    }

    /// Destroys the VM and frees the slot. Consumes the session, so a VM is
    /// released exactly once.
    pub async fn release(mut self) -> Result<(), SessionError> {
        let Some(vm) = self.vm.take() else {
            return Ok(());
        };
        let slot = self.slot.take();
        let result = vm.release().await;
        drop(slot);
        tracing::debug!(session = self.id, "session released");
        result.map_err(|source| SessionError::Release {
            session: self.id,
            source,
        })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let Some(vm) = self.vm.take() else {
            return;
        };
        let slot = self.slot.take();
        let id = self.id;
        tracing::warn!(
            session = id,
            "session dropped without release; releasing its VM"
        );
        let finish = move |result: Result<(), VmError>| {
            if let Err(err) = result {
                tracing::error!(session = id, error = %err, "releasing a dropped session's VM failed");
            }
            drop(slot);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move { finish(vm.release().await) });
            }
            // No runtime (shutdown): the VM's own Drop destroys it.
            Err(_) => {
                drop(vm);
                finish(Ok(()));
            }
        }
    }
}
