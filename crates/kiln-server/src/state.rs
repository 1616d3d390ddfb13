//! What the HTTP handlers, the dispatcher and the scheduler share.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kiln_runner::SessionManager;
use kiln_runner::concurrency::JobGroups;
use tokio::sync::Notify;

use crate::config::ServerConfig;
use crate::db::Db;
use crate::fetch::GitCache;
use crate::metrics::Metrics;
use crate::report::Reporter;

pub struct Shared {
    pub config: Arc<ServerConfig>,
    pub db: Db,
    pub metrics: Metrics,
    pub manager: Arc<SessionManager>,
    pub cache: Arc<GitCache>,
    pub reporter: Option<Arc<dyn Reporter>>,
    /// Job-level `concurrency:` groups, shared by every run.
    pub job_groups: Arc<JobGroups>,
    /// Cleared when shutting down: the webhook answers 503.
    accepting: AtomicBool,
    /// Wakes the dispatcher when a delivery was queued.
    pub wake_dispatcher: Notify,
}

/// The state handed to `app`.
pub type AppState = Arc<Shared>;

impl Shared {
    pub fn new(
        config: Arc<ServerConfig>,
        db: Db,
        manager: Arc<SessionManager>,
        cache: Arc<GitCache>,
        reporter: Option<Arc<dyn Reporter>>,
    ) -> Shared {
        Shared {
            config,
            db,
            metrics: Metrics::new(),
            manager,
            cache,
            reporter,
            job_groups: JobGroups::new(),
            accepting: AtomicBool::new(true),
            wake_dispatcher: Notify::new(),
        }
    }

    pub fn accepting(&self) -> bool {
        self.accepting.load(Ordering::SeqCst)
    }

    pub fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::SeqCst);
    }

    /// The link from GitHub to a run, if the server's URL is known.
    pub fn details_url(&self, run_id: i64) -> Option<String> {
        self.config
            .public_url
            .as_ref()
            .map(|u| format!("{}/api/runs/{run_id}", u.trim_end_matches('/')))
    }
}
