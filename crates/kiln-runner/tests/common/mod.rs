//! Shared harness for the runner's integration tests: a real backend chosen
//! by `KILN_TEST_BACKEND` (default `local`), wrapped in a `CountingProvider`
//! so every test can check what was allocated, where each command ran, and
//! that nothing leaked.

#![allow(dead_code)] // Each test crate uses a different part of the harness.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kiln_runner::{RunConfig, RunError, RunEvent, RunResult, SessionManager};
use kiln_vm::{
    CountingProvider, CountingStats, KillGrace, LocalProvider, QemuConfig, QemuProvider, VmProvider,
};
use kiln_workflow::Workflow;
use tempfile::TempDir;

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Short enough that timeouts and cancellations finish in about a second.
pub const SHORT_GRACE: KillGrace = KillGrace {
    interrupt: Duration::from_millis(300),
    terminate: Duration::from_millis(300),
};

/// The backend under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Host processes below a temporary directory.
    Local,
    /// QEMU microVMs from `$KILN_HOME`'s images, their state directories
    /// below a temporary directory.
    Qemu,
}

impl Backend {
    /// From `KILN_TEST_BACKEND`: unset, empty or `local`. Anything else is a
    /// mistake in how the tests were started, so it fails loudly.
    pub fn from_env() -> Backend {
        match std::env::var("KILN_TEST_BACKEND").as_deref() {
            Err(_) | Ok("") | Ok("local") => Backend::Local,
            Ok("qemu") => Backend::Qemu,
            Ok(other) => panic!(
                "KILN_TEST_BACKEND={other:?} is not a known test backend (supported: local, qemu)"
            ),
        }
    }
}

/// The backend chosen by `KILN_TEST_BACKEND`, keeping its machines below `base`.
pub fn backend(base: &Path) -> Arc<dyn VmProvider> {
    match Backend::from_env() {
        Backend::Local => Arc::new(LocalProvider::new(base).with_kill_grace(SHORT_GRACE)),
        Backend::Qemu => Arc::new(qemu_backend(base)),
    }
}

/// The qemu backend with the short grace; no image is a setup error here,
/// not a reason to skip: `KILN_TEST_BACKEND=qemu` asked for real VMs.
fn qemu_backend(base: &Path) -> QemuProvider {
    let data = QemuConfig::default_data_dir().expect("neither KILN_HOME nor HOME is set");
    let mut config =
        QemuConfig::from_data_dir(&data).unwrap_or_else(|e| panic!("KILN_TEST_BACKEND=qemu: {e}"));
    config.state_dir = base.to_owned();
    config.kill_grace = SHORT_GRACE;
    QemuProvider::new(config).unwrap_or_else(|e| panic!("KILN_TEST_BACKEND=qemu: {e}"))
}

pub type Counting = CountingProvider<Arc<dyn VmProvider>>;

/// A session manager over a counted real backend.
pub struct Harness {
    pub backend: Backend,
    /// Where the backend keeps its machines (`local`: one directory each).
    pub base: PathBuf,
    pub counting: Arc<Counting>,
    pub manager: SessionManager,
    _tmp: TempDir,
}

impl Harness {
    pub fn new(limit: usize) -> Harness {
        Harness::wrapping(limit, |p| p)
    }

    /// Like `new`, with the backend wrapped by `wrap` inside the counter
    /// (to inject faults the counter still observes).
    pub fn wrapping(
        limit: usize,
        wrap: impl FnOnce(Arc<dyn VmProvider>) -> Arc<dyn VmProvider>,
    ) -> Harness {
        let tmp = tempfile::tempdir().expect("tempdir");
        let base = tmp.path().join("vms");
        let counting = Arc::new(CountingProvider::new(wrap(backend(&base))));
        let manager = SessionManager::new(counting.clone(), limit);
        Harness {
            backend: Backend::from_env(),
            base,
            counting,
            manager,
            _tmp: tmp,
        }
    }

    pub fn stats(&self) -> CountingStats {
        self.counting.stats()
    }

    /// Parses `yaml` and runs it, returning the result and every event.
    pub async fn run(
        &self,
        yaml: &str,
        cfg: &RunConfig,
    ) -> (Result<RunResult, RunError>, Vec<RunEvent>) {
        self.run_watching(yaml, cfg, |_| {}).await
    }

    /// Like `run`, calling `watch` on each event as it arrives (to act in
    /// the middle of a run, e.g. cancel it).
    pub async fn run_watching(
        &self,
        yaml: &str,
        cfg: &RunConfig,
        mut watch: impl FnMut(&RunEvent),
    ) -> (Result<RunResult, RunError>, Vec<RunEvent>) {
        let workflow = parse(yaml);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let run = kiln_runner::run_workflow(&self.manager, &workflow, cfg, tx);
        let collect = async {
            let mut events = Vec::new();
            // Ends when the run drops its last sender.
            while let Some(e) = rx.recv().await {
                watch(&e);
                events.push(e);
            }
            events
        };
        tokio::join!(run, collect)
    }

    /// Runs `yaml` with a default config and expects the run to be carried
    /// out (jobs may still fail).
    pub async fn run_ok(&self, yaml: &str) -> (RunResult, Vec<RunEvent>) {
        let (result, events) = self.run(yaml, &RunConfig::default()).await;
        match result {
            Ok(r) => (r, events),
            Err(e) => panic!("run failed: {e}\nevents: {events:#?}"),
        }
    }

    /// Machine directories still on disk (one per VM on both backends).
    pub fn vm_dirs_on_disk(&self) -> Vec<PathBuf> {
        match self.backend {
            Backend::Local | Backend::Qemu => match std::fs::read_dir(&self.base) {
                Ok(entries) => entries.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => panic!("cannot list {}: {e}", self.base.display()),
            },
        }
    }

    /// Every allocated machine was released (not merely dropped), nothing
    /// is live, the manager holds no session, and nothing is left on disk.
    pub fn assert_no_leaks(&self) {
        let stats = self.stats();
        assert!(stats.allocations() > 0, "nothing was allocated: {stats:#?}");
        assert_eq!(
            stats.releases,
            stats.allocations(),
            "releases != allocations: {stats:#?}"
        );
        assert_eq!(stats.release_failures, 0, "{stats:#?}");
        assert_eq!(stats.dropped_unreleased, 0, "{stats:#?}");
        assert!(stats.live.is_empty(), "live machines: {:?}", stats.live);
        let sessions = self.manager.stats();
        assert_eq!(sessions.active, 0, "{sessions:?}");
        assert_eq!(sessions.released, sessions.created, "{sessions:?}");
        let left = self.vm_dirs_on_disk();
        assert!(
            left.is_empty(),
            "machine directories left on disk: {left:?}"
        );
    }
}

/// Parses a workflow, failing the test on any error diagnostic.
pub fn parse(yaml: &str) -> Workflow {
    let (workflow, diagnostics) = kiln_workflow::parse_workflow(yaml);
    let errors: Vec<String> = diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.render("test.yml", yaml))
        .collect();
    assert!(
        errors.is_empty(),
        "workflow does not parse:\n{}",
        errors.join("\n")
    );
    workflow
}

/// The argv of every exec, grouped by machine, in order.
pub fn execs_of<'a>(stats: &'a CountingStats, vm: &str) -> Vec<&'a [String]> {
    stats
        .execs()
        .filter(|(id, _)| id.as_str() == vm)
        .map(|(_, argv)| argv)
        .collect()
}

/// Output lines (masked) of all events, in order.
pub fn output_lines(events: &[RunEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            RunEvent::Output { line, .. } => Some(line.clone()),
            _ => None,
        })
        .collect()
}

/// A workflow with one job of `steps` trivial `run:` steps, each printing
/// `<tag>-<i>`.
pub fn steps_workflow(tag: &str, steps: usize) -> String {
    let mut yaml =
        format!("name: {tag}\non: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n");
    for i in 1..=steps {
        yaml.push_str(&format!("      - run: echo {tag}-{i}\n"));
    }
    yaml
}

/// Whether the exec is the run's setup (`mkdir -p` of the layout).
pub fn is_setup(argv: &[String]) -> bool {
    argv.first().is_some_and(|a| a == "mkdir")
}

/// Whether the exec is the run's cleanup (`rm -rf`).
pub fn is_cleanup(argv: &[String]) -> bool {
    argv.first().is_some_and(|a| a == "rm")
}

/// Whether a host process still runs (a zombie counts as gone).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Waits (bounded) for a process to be gone; a killed process needs a moment
/// to be reaped.
pub async fn process_gone(pid: u32) -> bool {
    for _ in 0..100 {
        if !process_alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// The image flavour for a test whose steps need git or python3 in the
/// machine: the `minimal` guest image has neither, the `debian` one has both
/// (`local` ignores the image: it is the host).
pub fn image_with_git_and_python() -> String {
    match Backend::from_env() {
        Backend::Local => kiln_vm::VmSpec::default().image,
        Backend::Qemu => "debian".to_owned(),
    }
}

/// A barrier for steps running in different machines: each step that runs
/// [`Rendezvous::wait_script`] blocks until `parties` steps are waiting, so
/// a test knows they ran at the same time (without timing assumptions).
///
/// It is a TCP server in the test process; steps connect with bash's
/// `/dev/tcp`. Machines of the `local` backend reach it on 127.0.0.1; guests
/// of the `qemu` backend cannot reach the host's loopback (by design), so it
/// listens on the host's routed address, which NAT lets them reach.
pub struct Rendezvous {
    addr: std::net::SocketAddr,
}

impl Rendezvous {
    /// How long a step waits for the others before failing.
    const PATIENCE_SECS: u64 = 120;

    pub fn new(parties: usize) -> Rendezvous {
        let ip = match Backend::from_env() {
            Backend::Local => std::net::IpAddr::from([127, 0, 0, 1]),
            Backend::Qemu => host_address()
                .expect("the qemu backend's barrier needs a host address on a default route"),
        };
        let listener = std::net::TcpListener::bind((ip, 0)).expect("bind the barrier");
        let addr = listener.local_addr().expect("barrier address");
        std::thread::spawn(move || {
            let mut waiting = Vec::new();
            while waiting.len() < parties {
                match listener.accept() {
                    Ok((conn, _)) => waiting.push(conn),
                    Err(_) => return,
                }
            }
            for mut conn in waiting {
                let _ = std::io::Write::write_all(&mut conn, b"go\n");
            }
        });
        Rendezvous { addr }
    }

    /// bash lines that wait at the barrier (failing the step after
    /// [`Self::PATIENCE_SECS`]), indented for a `run: |` block at `indent`.
    pub fn wait_script(&self, indent: usize) -> String {
        let pad = " ".repeat(indent);
        format!(
            "{pad}exec 3<>/dev/tcp/{ip}/{port}\n\
             {pad}read -r -t {secs} go <&3\n\
             {pad}[ \"$go\" = go ]\n\
             {pad}exec 3<&-\n",
            ip = self.addr.ip(),
            port = self.addr.port(),
            secs = Self::PATIENCE_SECS,
        )
    }
}

/// The host's address on its default route, if it has one.
pub fn host_address() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    // Connecting a UDP socket only picks a route; nothing is sent.
    socket.connect("203.0.113.1:9").ok()?;
    Some(socket.local_addr().ok()?.ip()).filter(|ip| !ip.is_loopback())
}
