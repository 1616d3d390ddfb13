//! The machine a pool hands out: the inner machine plus its permit of the
//! global limit, destroyed (never returned to the pool) when released.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::mpsc::UnboundedSender;

use super::Shared;
use crate::{ExecRequest, ExecResult, GuestLayout, OutputChunk, Vm, VmError, VmId};

/// `inner` is `None` only once released; id and layout are copied so they
/// need no unwrapping.
pub(crate) struct PooledVm {
    id: VmId,
    layout: GuestLayout,
    inner: Option<Box<dyn Vm>>,
    /// Held until the machine is destroyed.
    permit: Option<OwnedSemaphorePermit>,
    shared: Arc<Shared>,
}

impl PooledVm {
    pub fn new(vm: Box<dyn Vm>, permit: OwnedSemaphorePermit, shared: Arc<Shared>) -> PooledVm {
        PooledVm {
            id: vm.id().clone(),
            layout: vm.layout().clone(),
            inner: Some(vm),
            permit: Some(permit),
            shared,
        }
    }

    fn vm(&self) -> Result<&dyn Vm, VmError> {
        self.inner
            .as_deref()
            .ok_or_else(|| VmError::Released(self.id.to_string()))
    }

    /// Frees the permit and wakes the refill.
    fn finish(&mut self) {
        if self.permit.take().is_some() {
            self.shared.returned();
        }
    }
}

#[async_trait]
impl Vm for PooledVm {
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
        self.vm()?.exec(req, output).await
    }

    async fn put_file(
        &self,
        guest_path: &str,
        contents: Vec<u8>,
        mode: u32,
    ) -> Result<(), VmError> {
        self.vm()?.put_file(guest_path, contents, mode).await
    }

    async fn get_file(&self, guest_path: &str) -> Result<Vec<u8>, VmError> {
        self.vm()?.get_file(guest_path).await
    }

    async fn put_archive(&self, guest_dir: &str, tar: Vec<u8>) -> Result<(), VmError> {
        self.vm()?.put_archive(guest_dir, tar).await
    }

    async fn get_archive(&self, guest_dir: &str) -> Result<Vec<u8>, VmError> {
        self.vm()?.get_archive(guest_dir).await
    }

    /// Destroys the machine; the permit is freed only after that, so the
    /// global limit also counts machines being torn down.
    async fn release(mut self: Box<Self>) -> Result<(), VmError> {
        let Some(inner) = self.inner.take() else {
            return Ok(());
        };
        let result = inner.release().await;
        self.finish();
        result
    }

    fn is_alive(&self) -> bool {
        self.inner.as_deref().is_some_and(|vm| vm.is_alive())
    }

    async fn health_check(&self) -> Result<(), VmError> {
        self.vm()?.health_check().await
    }
}

impl Drop for PooledVm {
    fn drop(&mut self) {
        // Dropping the inner machine runs the backend's own cleanup.
        drop(self.inner.take());
        self.finish();
    }
}
