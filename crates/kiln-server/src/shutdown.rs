//! Graceful shutdown: the signal future, and the drain sequence.
//!
//! 1. Intake stops: `POST /webhook` answers 503 (GitHub redelivers later;
//!    everything acknowledged before is in the store).
//! 2. The dispatcher stops after its current delivery; queued deliveries
//!    stay queued for the next start.
//! 3. No run starts any more; runs waiting for a slot stay queued.
//! 4. Runs in progress may finish within the grace period; then they are
//!    cancelled (GitHub's cancellation ladder runs in each VM).
//! 5. Once every run task has ended, every VM has been released (runs
//!    release theirs before they return); the HTTP server stops last.

use std::time::Duration;

/// After cancelling, how long runs get to wind down (cancellation ladder,
/// `always()` steps, VM release).
pub const CANCEL_GRACE: Duration = Duration::from_secs(60);

/// Resolves on the first SIGTERM or SIGINT.
pub async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the server with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
        _ = int.recv() => tracing::info!("SIGINT received; shutting down"),
    }
}

/// What a shutdown did, for the log and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShutdownReport {
    /// Runs still in progress when the grace period ended, cancelled.
    pub cancelled: usize,
    /// Sessions (VMs) still active at exit; 0 unless a run could not wind
    /// down within [`CANCEL_GRACE`].
    pub leaked_sessions: usize,
}
