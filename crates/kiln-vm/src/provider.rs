//! The two traits every backend implements.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc::UnboundedSender;

use crate::{ExecRequest, ExecResult, GuestLayout, OutputChunk, VmError, VmId, VmSpec};

/// A source of fresh machines. Chosen at run time, shared by the runner.
#[async_trait]
pub trait VmProvider: Send + Sync {
    /// Short backend name for logs (`local`, `mock`, `qemu`).
    fn name(&self) -> &'static str;

    /// A new machine that no other run has seen.
    async fn allocate(&self, spec: &VmSpec) -> Result<Allocated, VmError>;

    /// Destroys what a previous, dead process of this backend left behind.
    /// Called once at startup; returns how many machines were reaped.
    async fn reap_orphans(&self) -> Result<usize, VmError> {
        Ok(0)
    }
}

/// A freshly allocated machine and how long allocation took (for stats).
pub struct Allocated {
    pub vm: Box<dyn Vm>,
    pub elapsed: Duration,
}

/// One machine. Everything goes through these methods with guest paths
/// (absolute, `/`-separated), so a machine may be remote.
///
/// `release` consumes the machine, so it cannot be used afterwards nor
/// released twice; backends also clean up on `Drop` if it was never called.
#[async_trait]
pub trait Vm: Send + Sync {
    fn id(&self) -> &VmId;

    fn layout(&self) -> &GuestLayout;

    /// Runs a command, streaming its output to `output` as it is produced.
    /// A closed receiver does not stop the command.
    async fn exec(
        &self,
        req: ExecRequest,
        output: UnboundedSender<OutputChunk>,
    ) -> Result<ExecResult, VmError>;

    /// Writes a file, creating missing parent directories.
    async fn put_file(&self, guest_path: &str, contents: Vec<u8>, mode: u32)
    -> Result<(), VmError>;

    async fn get_file(&self, guest_path: &str) -> Result<Vec<u8>, VmError>;

    /// Unpacks a tar archive into `guest_dir` (created if missing).
    async fn put_archive(&self, guest_dir: &str, tar: Vec<u8>) -> Result<(), VmError>;

    /// A tar archive of the contents of `guest_dir`, paths relative to it.
    async fn get_archive(&self, guest_dir: &str) -> Result<Vec<u8>, VmError>;

    /// Destroys the machine: kills what still runs and deletes its storage.
    async fn release(self: Box<Self>) -> Result<(), VmError>;

    /// A cheap, synchronous liveness check (no round trip): false once the
    /// machine is known to be dead (its process exited, its channel broke).
    /// The warm pool calls it on every hand-out.
    fn is_alive(&self) -> bool {
        true
    }

    /// Proof of life through the machine's own channel (the qemu backend
    /// pings its agent). The warm pool runs it on idle machines.
    async fn health_check(&self) -> Result<(), VmError> {
        Ok(())
    }
}

/// Lets a runner pick a backend at run time and still wrap it (e.g. in
/// [`CountingProvider`](crate::CountingProvider)).
#[async_trait]
impl<P: VmProvider + ?Sized> VmProvider for Box<P> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    async fn allocate(&self, spec: &VmSpec) -> Result<Allocated, VmError> {
        (**self).allocate(spec).await
    }
    async fn reap_orphans(&self) -> Result<usize, VmError> {
        (**self).reap_orphans().await
    }
}

#[async_trait]
impl<P: VmProvider + ?Sized> VmProvider for Arc<P> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    async fn allocate(&self, spec: &VmSpec) -> Result<Allocated, VmError> {
        (**self).allocate(spec).await
    }
    async fn reap_orphans(&self) -> Result<usize, VmError> {
        (**self).reap_orphans().await
    }
}
