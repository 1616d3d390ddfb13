//! A wrapper that counts what any backend does, so tests can prove "one VM
//! per run, no leaks" against real backends, not only the mock.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use tokio::sync::mpsc::UnboundedSender;

use crate::{
    Allocated, CountingStats, ExecRequest, ExecResult, GuestLayout, OpRecord, OutputChunk, Vm,
    VmError, VmId, VmOp, VmProvider, VmSpec,
};

type Shared = Arc<Mutex<CountingStats>>;

/// Wraps a provider; every machine it hands out is wrapped too.
pub struct CountingProvider<P> {
    inner: P,
    stats: Shared,
}

impl<P: VmProvider> CountingProvider<P> {
    pub fn new(inner: P) -> Self {
        CountingProvider {
            inner,
            stats: Shared::default(),
        }
    }

    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// A copy of the counters as they are now.
    pub fn stats(&self) -> CountingStats {
        lock(&self.stats).clone()
    }
}

#[async_trait]
impl<P: VmProvider> VmProvider for CountingProvider<P> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn allocate(&self, spec: &VmSpec) -> Result<Allocated, VmError> {
        let allocated = match self.inner.allocate(spec).await {
            Ok(a) => a,
            Err(e) => {
                lock(&self.stats).allocation_failures += 1;
                return Err(e);
            }
        };
        let id = allocated.vm.id().clone();
        {
            let mut stats = lock(&self.stats);
            stats.allocated.push(id.clone());
            stats.live.insert(id.clone());
            stats.max_live = stats.max_live.max(stats.live.len());
        }
        let vm = CountingVm {
            id,
            layout: allocated.vm.layout().clone(),
            inner: Some(allocated.vm),
            stats: self.stats.clone(),
        };
        Ok(Allocated {
            vm: Box::new(vm),
            elapsed: allocated.elapsed,
        })
    }

    async fn reap_orphans(&self) -> Result<usize, VmError> {
        self.inner.reap_orphans().await
    }
}

/// `inner` is `None` only once released; the id and layout are copied so
/// they need no unwrapping.
struct CountingVm {
    id: VmId,
    layout: GuestLayout,
    inner: Option<Box<dyn Vm>>,
    stats: Shared,
}

impl CountingVm {
    fn record(&self, op: VmOp) -> Result<&dyn Vm, VmError> {
        lock(&self.stats).ops.push(OpRecord {
            vm: self.id.clone(),
            op,
        });
        self.inner
            .as_deref()
            .ok_or_else(|| VmError::Released(self.id.to_string()))
    }
}

#[async_trait]
impl Vm for CountingVm {
    fn id(&self) -> &VmId {
        &self.id
    }

    fn layout(&self) -> &GuestLayout {
        &self.layout
    }

    async fn exec(
        &self,
        req: ExecRequest,
        output: UnboundedSender<OutputChunk>,
    ) -> Result<ExecResult, VmError> {
        let argv = req.argv.clone();
        self.record(VmOp::Exec { argv })?.exec(req, output).await
    }

    async fn put_file(
        &self,
        guest_path: &str,
        contents: Vec<u8>,
        mode: u32,
    ) -> Result<(), VmError> {
        let path = guest_path.to_owned();
        self.record(VmOp::PutFile { path })?
            .put_file(guest_path, contents, mode)
            .await
    }

    async fn get_file(&self, guest_path: &str) -> Result<Vec<u8>, VmError> {
        let path = guest_path.to_owned();
        self.record(VmOp::GetFile { path })?
            .get_file(guest_path)
            .await
    }

    async fn put_archive(&self, guest_dir: &str, tar: Vec<u8>) -> Result<(), VmError> {
        let dir = guest_dir.to_owned();
        self.record(VmOp::PutArchive { dir })?
            .put_archive(guest_dir, tar)
            .await
    }

    async fn get_archive(&self, guest_dir: &str) -> Result<Vec<u8>, VmError> {
        let dir = guest_dir.to_owned();
        self.record(VmOp::GetArchive { dir })?
            .get_archive(guest_dir)
            .await
    }

    async fn release(mut self: Box<Self>) -> Result<(), VmError> {
        let Some(inner) = self.inner.take() else {
            return Ok(());
        };
        let result = inner.release().await;
        let mut stats = lock(&self.stats);
        stats.releases += 1;
        stats.release_failures += usize::from(result.is_err());
        stats.live.remove(&self.id);
        result
    }

    /// Not recorded: health checks are the pool's, not the run's.
    fn is_alive(&self) -> bool {
        self.alive()
    }

    async fn health_check(&self) -> Result<(), VmError> {
        match self.inner.as_deref() {
            Some(vm) => vm.health_check().await,
            None => Err(VmError::Released(self.id.to_string())),
        }
    }
}

impl CountingVm {
    fn alive(&self) -> bool {
        self.inner.as_deref().is_some_and(|vm| vm.is_alive())
    }
}

impl Drop for CountingVm {
    fn drop(&mut self) {
        // Dropping `inner` runs the backend's own cleanup.
        if let Some(inner) = self.inner.take() {
            drop(inner);
            let mut stats = lock(&self.stats);
            stats.dropped_unreleased += 1;
            stats.live.remove(&self.id);
        }
    }
}

fn lock(stats: &Mutex<CountingStats>) -> MutexGuard<'_, CountingStats> {
    stats.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MockProvider, MockResponse};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// A backend chosen at run time (`Arc<dyn VmProvider>`) can be wrapped.
    #[tokio::test]
    async fn wraps_a_dynamically_chosen_backend() -> TestResult {
        let backend: Arc<dyn VmProvider> = Arc::new(MockProvider::new(|_| MockResponse::exit(1)));
        let counting = CountingProvider::new(backend);
        assert_eq!(counting.name(), "mock");
        let vm = counting.allocate(&VmSpec::default()).await?.vm;
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let result = vm.exec(ExecRequest::new(["x", "y"]), tx).await?;
        assert_eq!(result.exit_code, Some(1));
        let id = vm.id().clone();
        assert_eq!(counting.stats().live, [id.clone()].into());
        vm.release().await?;
        let stats = counting.stats();
        let execs: Vec<_> = stats.execs().collect();
        assert_eq!(execs, vec![(&id, &["x".to_owned(), "y".to_owned()][..])]);
        assert_eq!(
            (stats.releases, stats.max_live, stats.live.len()),
            (1, 1, 0)
        );
        Ok(())
    }
}
