//! `kiln serve`: GitHub webhooks in, one VM per workflow run, results back
//! to GitHub as check runs or commit statuses.
//!
//! Flow: [`intake`] verifies a delivery's signature, records it in the
//! store and answers 202 → [`queue`] dispatches stored deliveries
//! ([`dispatch`]: fetch the commit with [`fetch`], match its workflows) into
//! runs → [`scheduler`] orders them ([`concurrency`] groups) and starts each
//! in [`execute`] once a session slot is free → [`progress`] records jobs,
//! steps and logs and [`report`]s them to GitHub.
//!
//! Everything accepted is in the SQLite store (`kiln-store`) before it is
//! acknowledged; on start, [`recover`] fails runs a dead process left in
//! progress, reaps orphaned VMs and resumes queued runs. [`shutdown`]
//! drains gracefully. The HTTP surface is [`app`].

pub mod api;
pub mod concurrency;
pub mod config;
mod context;
pub mod db;
pub mod dispatch;
pub mod execute;
pub mod fetch;
pub mod intake;
pub mod metrics;
pub mod payload;
pub mod progress;
pub mod queue;
pub mod recover;
pub mod report;
pub mod scheduler;
pub mod shutdown;
pub mod signature;
pub mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use kiln_runner::SessionManager;
use kiln_vm::{LocalProvider, VmProvider};
use tokio_util::sync::CancellationToken;

pub use config::{Overrides, ServerConfig};
pub use report::Reporter;
pub use shutdown::ShutdownReport;
pub use state::{AppState, Shared};

use crate::config::{Backend, GitHubAuth};
use crate::db::Db;
use crate::fetch::{GitAuth, GitCache};
use crate::scheduler::Scheduler;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot open the store")]
    Store(#[from] kiln_store::StoreError),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("backend {backend}: {message}")]
    Backend {
        backend: &'static str,
        message: String,
    },
    #[error("invalid GitHub configuration")]
    GitHub(#[from] kiln_github::GitHubError),
    #[error("start-up recovery failed")]
    Recover(#[from] recover::RecoverError),
}

/// The HTTP routes over `state`.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/webhook", post(intake::webhook))
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(api::metrics))
        .route("/api/runs", get(api::list_runs))
        .route("/api/runs/{id}", get(api::get_run))
        .route("/api/runs/{id}/logs", get(api::get_logs))
        .with_state(state)
}

/// What the server is given rather than builds: where VMs come from and
/// where reports go (tests pass wrapped or fake ones).
pub struct Deps {
    pub provider: Arc<dyn VmProvider>,
    pub reporter: Option<Arc<dyn Reporter>>,
}

impl Deps {
    /// The backend and GitHub client the configuration asks for.
    pub async fn from_config(config: &ServerConfig) -> Result<Deps, ServeError> {
        Ok(Deps {
            provider: provider(config).await?,
            reporter: reporter(config)?,
        })
    }
}

/// The VM backend of `config`.
pub async fn provider(config: &ServerConfig) -> Result<Arc<dyn VmProvider>, ServeError> {
    match config.backend {
        Backend::Local => {
            tracing::warn!("{}", LocalProvider::ISOLATION_WARNING);
            Ok(Arc::new(LocalProvider::new(config.data_dir.join("vms"))))
        }
        Backend::Qemu => qemu_provider(config).await,
    }
}

/// The qemu backend for `kiln serve`: images from `config.images_dir`
/// (default `$KILN_HOME`, where `kiln image build` puts them), each VM's
/// state under `<data_dir>/qemu-vms/`, so `reap_orphans` at start cleans up
/// exactly what a previous server on this data directory left.
///
/// With `warm_pool > 0` the provider is a [`kiln_vm::WarmPool`] of that
/// many idle VMs of `config.vm` (VM limit: sessions + pool); dropping it
/// at exit destroys the idle VMs. With snapshot restore on, the snapshot is
/// made before the pool starts: a build in the background, during a pool
/// refill, would run a template VM beyond that limit.
pub async fn qemu_provider(config: &ServerConfig) -> Result<Arc<dyn VmProvider>, ServeError> {
    let backend_error = |message: String| ServeError::Backend {
        backend: "qemu",
        message,
    };
    let images = match &config.images_dir {
        Some(dir) => dir.clone(),
        None => kiln_vm::QemuConfig::default_data_dir().ok_or_else(|| {
            backend_error("neither KILN_HOME nor HOME is set: cannot find guest images".into())
        })?,
    };
    let mut qemu = kiln_vm::QemuConfig::from_data_dir(&images)
        .map_err(|e| backend_error(execute::error_chain(&e)))?;
    qemu.state_dir = config.data_dir.join("qemu-vms");
    qemu.snapshot_restore = config.snapshot_restore;
    qemu.transport = config.transport;
    let provider =
        kiln_vm::QemuProvider::new(qemu).map_err(|e| backend_error(execute::error_chain(&e)))?;
    tracing::info!(
        accel = %provider.accel(),
        warm_pool = config.warm_pool,
        snapshot_restore = config.snapshot_restore,
        transport = %config.transport,
        "qemu backend ready"
    );
    if config.warm_pool == 0 {
        return Ok(Arc::new(provider));
    }
    // vsock VMs cannot be snapshotted: they always cold-boot.
    if config.snapshot_restore && config.transport == kiln_vm::qemu::AgentTransport::VirtioSerial {
        match provider.prepare_snapshot(&config.vm).await {
            Ok(info) => tracing::info!(snapshot = %info.dir.display(), "vm snapshot ready"),
            Err(e) => tracing::warn!("cannot make the vm snapshot, VMs will cold-boot: {e}"),
        }
    }
    let pool = kiln_vm::PoolConfig {
        specs: vec![config.vm.clone()],
        ..kiln_vm::PoolConfig::new(
            config.warm_pool,
            config.max_concurrent_sessions + config.warm_pool,
        )
    };
    Ok(Arc::new(kiln_vm::WarmPool::new(Arc::new(provider), pool)))
}

/// The GitHub client of `config`, if reporting is on.
pub fn reporter(config: &ServerConfig) -> Result<Option<Arc<dyn Reporter>>, ServeError> {
    let Some(github) = config.github.as_ref() else {
        return Ok(None);
    };
    if config.report == config::ReportMode::None {
        return Ok(None);
    }
    Ok(Some(Arc::new(kiln_github::GitHubClient::new(
        github_config(github),
    )?)))
}

fn github_config(github: &config::GitHubSettings) -> kiln_github::GitHubConfig {
    let auth = match &github.auth {
        GitHubAuth::Token(t) => kiln_github::Auth::Token(t.expose().to_owned()),
        GitHubAuth::App {
            app_id,
            private_key_pem,
            installation_id,
        } => kiln_github::Auth::App {
            app_id: *app_id,
            private_key_pem: private_key_pem.expose().to_owned(),
            installation_id: *installation_id,
        },
    };
    let mut gh = kiln_github::GitHubConfig::new(auth);
    gh.api_url = github.api_url.clone();
    gh
}

/// How the repository cache authenticates fetches: the configured token,
/// or the app's installation tokens (whatever the report mode is).
pub fn git_auth(config: &ServerConfig) -> Result<GitAuth, ServeError> {
    let Some(github) = config.github.as_ref() else {
        return Ok(GitAuth::None);
    };
    Ok(match &github.auth {
        GitHubAuth::Token(t) => GitAuth::Token(t.clone()),
        GitHubAuth::App { .. } => GitAuth::App(Arc::new(kiln_github::GitHubClient::new(
            github_config(github),
        )?)),
    })
}

/// A running server.
pub struct Server {
    shared: Arc<Shared>,
    scheduler: Arc<Scheduler>,
    addr: SocketAddr,
    stop_dispatch: CancellationToken,
    dispatcher: tokio::task::JoinHandle<()>,
    stop_http: CancellationToken,
    http: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Opens the store, recovers from a previous run, binds the listener
    /// and starts serving.
    pub async fn start(config: ServerConfig, deps: Deps) -> Result<Server, ServeError> {
        let config = Arc::new(config);
        let store = kiln_store::Store::open_in(&config.data_dir)?;
        let db = Db::new(store);
        let cache = Arc::new(GitCache::new(
            config.data_dir.join("repos"),
            git_auth(&config)?,
        ));
        let manager = Arc::new(SessionManager::new(
            deps.provider,
            config.max_concurrent_sessions,
        ));
        let shared = Arc::new(Shared::new(
            config.clone(),
            db,
            manager,
            cache,
            deps.reporter,
        ));
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServeError::Listen {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ServeError::Listen {
            addr: config.listen,
            source,
        })?;
        let scheduler = Scheduler::new(shared.clone());
        recover::recover(&shared, &scheduler).await?;
        let stop_http = CancellationToken::new();
        let router = app(shared.clone());
        let http = tokio::spawn({
            let stop = stop_http.clone();
            async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await
            }
        });
        let stop_dispatch = CancellationToken::new();
        let dispatcher = tokio::spawn(queue::run_dispatcher(
            shared.clone(),
            scheduler.clone(),
            stop_dispatch.clone(),
        ));
        tracing::info!(%addr, backend = shared.manager.provider().name(),
            sessions = config.max_concurrent_sessions, "kiln serve listening");
        Ok(Server {
            shared,
            scheduler,
            addr,
            stop_dispatch,
            dispatcher,
            stop_http,
            http,
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> &AppState {
        &self.shared
    }

    /// Serves until `signal` resolves, then shuts down gracefully.
    pub async fn serve_until(self, signal: impl Future<Output = ()>) -> ShutdownReport {
        signal.await;
        self.shutdown().await
    }

    /// Drains and stops (see [`shutdown`]), waiting up to the configured
    /// grace period for runs in progress.
    pub async fn shutdown(self) -> ShutdownReport {
        let grace = self.shared.config.shutdown_grace;
        self.shutdown_with(grace).await
    }

    /// [`Server::shutdown`] with an explicit grace period.
    pub async fn shutdown_with(self, grace: Duration) -> ShutdownReport {
        let mut report = ShutdownReport::default();
        self.shared.stop_accepting();
        self.stop_dispatch.cancel();
        let _ = self.dispatcher.await;
        self.scheduler.stop_starting();
        let running = self.scheduler.running_tasks();
        if running > 0 {
            tracing::info!(runs = running, grace = ?grace, "waiting for runs in progress");
        }
        if tokio::time::timeout(grace, self.scheduler.wait())
            .await
            .is_err()
        {
            report.cancelled = self.scheduler.running_tasks();
            tracing::warn!(
                runs = report.cancelled,
                "grace period over; cancelling runs"
            );
            self.scheduler.cancel_all();
            if tokio::time::timeout(shutdown::CANCEL_GRACE, self.scheduler.wait())
                .await
                .is_err()
            {
                tracing::error!("runs did not wind down after cancellation");
            }
        }
        self.shared.manager.close();
        // A session dropped instead of released frees its VM in the background.
        let until = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.shared.manager.stats().active > 0 && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        report.leaked_sessions = self.shared.manager.stats().active;
        self.stop_http.cancel();
        match self.http.await {
            Ok(Err(e)) => tracing::error!(error = %e, "the HTTP server failed"),
            Err(e) => tracing::error!(error = %e, "the HTTP server task failed"),
            Ok(Ok(())) => {}
        }
        tracing::info!(?report, "kiln serve stopped");
        report
    }
}
