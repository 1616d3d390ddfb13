//! The `qemu` backend: every machine is a fresh QEMU `microvm` booted
//! straight into our kernel and initramfs, driven through `kiln-agent` over
//! virtio-serial.
//!
//! - [`config`]: what is needed and where it is by default; missing pieces
//!   are [`SetupError`]s that name the fix.
//! - [`accel`]: KVM only where it really works, else TCG, with the reason.
//! - `launch`: the QEMU command line (as images/README.md documents it).
//! - `state`: `<state_dir>/<vm-id>/` holds everything of one VM on the host.
//! - `console`: the serial console into a size-capped `console.log`.
//! - `net`: `Network::Nat` through passt, without access to host loopback.
//! - `agent`: the one persistent agent connection, bounded by the boot
//!   timeout, over virtio-serial (default) or vsock.
//! - `vsock`: the vsock transport's per-VM `vhost-device-vsock` daemon and
//!   its `CONNECT` handshake.
//! - `vm`: [`QemuVm`], the [`Vm`](crate::Vm) operations over that connection.
//! - `reap`: destroying VMs of dead kiln processes.
//! - [`snapshot`]: restoring VMs from a saved template instead of booting
//!   (with a fresh identity), and the fallbacks; `qmp`: the few QMP
//!   commands that needs.
//!
//! # The agent token
//!
//! Each VM gets a fresh random token on its kernel command line
//! (`kiln.token=`); /init exports it as `KILN_AGENT_TOKEN` and the agent
//! answers only a hello that carries it. The command line is the one channel
//! into the guest that exists before the agent runs. It is not a secret from
//! the guest (it reads `/proc/cmdline`), nor from host users who can read
//! QEMU's argv; the socket itself sits in a 0700 directory. What the token
//! guarantees is that the host never drives a VM it did not start.

pub mod accel;
mod agent;
mod bench;
pub mod config;
mod console;
mod error;
mod launch;
mod net;
mod process;
mod qmp;
mod reap;
pub mod snapshot;
mod state;
mod vm;
mod vsock;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kiln_protocol::{AgentClient, ClientConfig};
use tokio::process::Command;

pub use accel::{Accel, AccelDecision};
pub use bench::FloorBoot;
pub use config::{AccelMode, AgentTransport, GuestImage, KernelKind, QemuConfig};
pub use error::SetupError;
pub use snapshot::{SnapshotInfo, SnapshotStatus};
pub use vm::QemuVm;

use self::config::Checked;
use self::launch::LaunchPlan;
use self::process::Process;
use self::state::StateDir;
use self::vm::{Machine, VmSettings};
use crate::archive::blocking;
use crate::{Allocated, GuestLayout, Network, VmError, VmId, VmProvider, VmSpec};

const BACKEND: &str = "qemu";

/// `VmSpec::image` of [`QemuConfig::minimal`]: the initramfs is the root.
pub const FLAVOUR_MINIMAL: &str = "minimal";
/// `VmSpec::image` of [`QemuConfig::debian`]: a Debian root disk, written
/// through a per-VM overlay.
pub const FLAVOUR_DEBIAN: &str = "debian";

/// Hands out fresh QEMU microVMs. Cheap to clone: clones share one
/// backend (and its snapshot builds).
#[derive(Clone)]
pub struct QemuProvider {
    core: Arc<Core>,
}

/// What every VM of a provider shares; background snapshot builds hold it.
pub(crate) struct Core {
    config: QemuConfig,
    tools: Checked,
    accel: AccelDecision,
    tsc_khz: Option<u64>,
    settings: Arc<VmSettings>,
    snapshots: snapshot::Snapshots,
    counters: Counters,
}

/// What `allocate` did, for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QemuStats {
    /// VMs restored from a snapshot by `allocate`.
    pub restored: u64,
    /// Restores that failed and fell back to a cold boot.
    pub restore_failures: u64,
    /// VMs `allocate` cold-booted (with or without snapshots on).
    pub cold_boots: u64,
    /// Snapshot builds started in the background.
    pub background_builds: u64,
}

#[derive(Default)]
struct Counters {
    restored: std::sync::atomic::AtomicU64,
    restore_failures: std::sync::atomic::AtomicU64,
    cold_boots: std::sync::atomic::AtomicU64,
    background_builds: std::sync::atomic::AtomicU64,
}

fn bump(counter: &std::sync::atomic::AtomicU64) {
    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

impl std::fmt::Debug for QemuProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QemuProvider")
            .field("accel", &self.core.accel)
            .field("state_dir", &self.core.config.state_dir)
            .field("snapshot_restore", &self.core.config.snapshot_restore)
            .finish_non_exhaustive()
    }
}

impl QemuProvider {
    /// Checks the host and the images, decides the accelerator (with
    /// `AccelMode::Auto` on a host that passes the static KVM checks, this
    /// boots the guest once under KVM, blocking for up to
    /// [`accel::PROBE_LIMIT`]), and creates the state directory.
    pub fn new(config: QemuConfig) -> Result<QemuProvider, SetupError> {
        let tools = config.check()?;
        state::prepare_base(&config.state_dir)?;
        let facts = accel::HostFacts::gather();
        let accel = accel::decide(config.accel, &facts, || {
            accel::probe_boot(&config, &tools.qemu, Accel::Kvm, accel::PROBE_LIMIT)
        })?;
        tracing::info!(accel = accel.accel.as_str(), reason = %accel.reason, "qemu accelerator");
        if tools.passt.is_none() {
            tracing::warn!(
                "passt not found: VMs with NAT networking cannot start (apt-get install passt)"
            );
        }
        let settings = Arc::new(VmSettings {
            shutdown_timeout: config.shutdown_timeout,
        });
        let snapshots = snapshot::Snapshots::new(&config, &tools.qemu);
        Ok(QemuProvider {
            core: Arc::new(Core {
                tsc_khz: launch::host_tsc_khz(),
                config,
                tools,
                accel,
                settings,
                snapshots,
                counters: Counters::default(),
            }),
        })
    }

    /// [`new`](Self::new) with [`QemuConfig::from_data_dir`].
    pub fn from_data_dir(data_dir: &Path) -> Result<QemuProvider, SetupError> {
        QemuProvider::new(QemuConfig::from_data_dir(data_dir)?)
    }

    /// The accelerator in use and why, for the CLI to print once.
    pub fn accel(&self) -> &AccelDecision {
        &self.core.accel
    }

    pub fn config(&self) -> &QemuConfig {
        &self.core.config
    }

    /// Like [`VmProvider::allocate`], but typed: for callers (tests,
    /// benchmarks) that want the host-side view of the VM. With
    /// [`QemuConfig::snapshot_restore`] the VM is restored from its
    /// image's snapshot when there is a usable one; a missing snapshot is
    /// then built in the background and this VM cold-boots.
    pub async fn allocate_vm(&self, spec: &VmSpec) -> Result<QemuVm, VmError> {
        let image = image_for(&self.core.config, spec)?;
        if self.core.config.snapshot_restore
            && let Some(vm) = self.try_restore(spec, image).await
        {
            bump(&self.core.counters.restored);
            return Ok(vm);
        }
        bump(&self.core.counters.cold_boots);
        self.core.cold_boot(spec, image).await
    }

    /// What `allocate` did so far.
    pub fn stats(&self) -> QemuStats {
        let c = &self.core.counters;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        QemuStats {
            restored: load(&c.restored),
            restore_failures: load(&c.restore_failures),
            cold_boots: load(&c.cold_boots),
            background_builds: load(&c.background_builds),
        }
    }

    /// A cold boot, whatever the snapshot settings (for benchmarks).
    pub async fn cold_boot_vm(&self, spec: &VmSpec) -> Result<QemuVm, VmError> {
        let image = image_for(&self.core.config, spec)?;
        self.core.cold_boot(spec, image).await
    }

    /// Makes sure `spec` has a usable snapshot, building it now (a cold
    /// boot of a template, then a save) if needed. Works whatever
    /// [`QemuConfig::snapshot_restore`] says.
    pub async fn prepare_snapshot(&self, spec: &VmSpec) -> Result<SnapshotInfo, VmError> {
        let image = image_for(&self.core.config, spec)?;
        self.core.prepare_snapshot(spec, image).await
    }

    /// Restores one VM from `spec`'s snapshot, without any fallback: `Err`
    /// if there is no usable snapshot or the restore fails (for tests and
    /// benchmarks; [`allocate_vm`](Self::allocate_vm) falls back).
    pub async fn restore_vm(&self, spec: &VmSpec) -> Result<QemuVm, VmError> {
        let image = image_for(&self.core.config, spec)?;
        let snapshot = match self.core.snapshots.find(&self.core, spec, image) {
            snapshot::Lookup::Found(snapshot) => snapshot,
            snapshot::Lookup::Missing(why) | snapshot::Lookup::Unsupported(why) => {
                return Err(VmError::Allocation {
                    reason: why,
                    source: None,
                });
            }
        };
        self.core.restore(spec, image, &snapshot).await
    }

    /// The snapshot `spec` would be restored from, if there is a usable
    /// one.
    pub fn snapshot_info(&self, spec: &VmSpec) -> Option<SnapshotInfo> {
        match self.snapshot_status(spec) {
            SnapshotStatus::Ready(info) => Some(info),
            _ => None,
        }
    }

    /// The snapshot `spec` would be restored from, or why there is none
    /// (for the CLI to say why VMs cold-boot).
    pub fn snapshot_status(&self, spec: &VmSpec) -> SnapshotStatus {
        let image = match image_for(&self.core.config, spec) {
            Ok(image) => image,
            Err(e) => return SnapshotStatus::Unsupported(e.to_string()),
        };
        match self.core.snapshots.find(&self.core, spec, image) {
            snapshot::Lookup::Found(snapshot) => SnapshotStatus::Ready(snapshot.info()),
            snapshot::Lookup::Missing(why) => SnapshotStatus::Missing(why),
            snapshot::Lookup::Unsupported(why) => SnapshotStatus::Unsupported(why),
        }
    }

    /// Waits (up to `limit`) for the snapshot builds this provider started
    /// in the background; returns whether none is left. A process about to
    /// exit calls it so that the next one finds the snapshot.
    pub async fn finish_snapshot_builds(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.core.snapshots.builds_in_progress() > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        true
    }

    /// A restored VM, or `None` (said why) for a cold boot.
    async fn try_restore(&self, spec: &VmSpec, image: &GuestImage) -> Option<QemuVm> {
        match self.core.snapshots.find(&self.core, spec, image) {
            snapshot::Lookup::Found(snapshot) => {
                match self.core.restore(spec, image, &snapshot).await {
                    Ok(vm) => return Some(vm),
                    Err(e) => {
                        bump(&self.core.counters.restore_failures);
                        tracing::warn!(
                            snapshot = %snapshot.dir().display(),
                            error = %crate::error::chain(&e),
                            "restoring the snapshot failed: cold boot instead; \
                             the snapshot is discarded and rebuilt"
                        );
                        self.core.snapshots.discard(&snapshot);
                        self.build_in_background(spec, image);
                    }
                }
            }
            snapshot::Lookup::Missing(why) => {
                if self.build_in_background(spec, image) {
                    tracing::warn!("{why}: cold boot; building a snapshot in the background");
                }
            }
            snapshot::Lookup::Unsupported(why) => {
                tracing::debug!("{why}: cold boot");
            }
        }
        None
    }

    /// Starts building `spec`'s snapshot unless a build is under way;
    /// returns whether it started one.
    fn build_in_background(&self, spec: &VmSpec, image: &GuestImage) -> bool {
        let Some(guard) = self.core.snapshots.claim_build(&self.core, spec, image) else {
            return false;
        };
        bump(&self.core.counters.background_builds);
        let core = self.core.clone();
        let (spec, image) = (spec.clone(), image.clone());
        tokio::spawn(async move {
            let _guard = guard;
            match core.build_snapshot(&spec, &image).await {
                Ok(info) => tracing::info!(
                    snapshot = %info.dir.display(),
                    took = ?info.build_time,
                    "snapshot built"
                ),
                Err(e) => tracing::warn!(
                    error = %crate::error::chain(&e),
                    "building a snapshot failed; VMs keep cold-booting"
                ),
            }
        });
        true
    }
}

/// How a cold boot brings a VM up.
pub(crate) struct BootOptions {
    pub token: String,
    /// A QMP socket, for saving the VM as a snapshot template.
    pub qmp: bool,
    pub client: ClientConfig,
}

impl Core {
    /// A fresh VM booted from its kernel.
    pub(crate) async fn cold_boot(
        &self,
        spec: &VmSpec,
        image: &GuestImage,
    ) -> Result<QemuVm, VmError> {
        let machine = self.new_machine().await?;
        let token = agent::new_token().map_err(|e| {
            allocation(
                &machine.id,
                "cannot read /dev/urandom for its token",
                Some(e),
            )
        })?;
        let options = BootOptions {
            token,
            qmp: false,
            client: self.client_config(),
        };
        self.boot_vm(machine, spec, image, &options).await
    }

    /// A new VM id and its state directory.
    pub(crate) async fn new_machine(&self) -> Result<Machine, VmError> {
        let id = VmId::generate(BACKEND);
        let base = self.config.state_dir.clone();
        let id2 = id.clone();
        let dir = blocking(move || StateDir::create(&base, &id2))
            .await
            .map_err(|e| allocation(&id, "cannot create its state directory", Some(e)))?;
        Ok(Machine::new(id, dir))
    }

    /// Boots `machine` and makes the guest layout.
    pub(crate) async fn boot_vm(
        &self,
        mut machine: Machine,
        spec: &VmSpec,
        image: &GuestImage,
        options: &BootOptions,
    ) -> Result<QemuVm, VmError> {
        let boot_started = Instant::now();
        let client = self.boot(&mut machine, spec, image, options).await?;
        tracing::debug!(vm = %machine.id, took = ?boot_started.elapsed(), "qemu vm ready");
        let vm = QemuVm {
            machine,
            client,
            layout: GuestLayout::standard(),
            settings: self.settings.clone(),
        };
        make_layout_dirs(&vm).await?;
        Ok(vm)
    }

    /// What every launch of `spec` on `image` shares: machine, kernel,
    /// initramfs, accelerator. One place, because a snapshot restores only
    /// onto the very machine it was saved from. Callers add their own
    /// files, `kiln.*` arguments and `-incoming`.
    pub(crate) fn base_plan<'a>(
        &self,
        spec: &VmSpec,
        image: &'a GuestImage,
        name: &'a str,
    ) -> LaunchPlan<'a> {
        LaunchPlan {
            accel: self.accel.accel,
            vcpus: spec.vcpus,
            memory_mib: spec.memory_mib,
            kernel: &image.kernel,
            kernel_kind: image.kernel_kind,
            initramfs: &image.initramfs,
            tsc_khz: self.tsc_khz,
            name,
            pidfile: None,
            agent_socket: None,
            vsock_socket: None,
            passt_socket: None,
            disk: None,
            init_args: Vec::new(),
            qmp_socket: None,
            incoming: false,
        }
    }

    /// The kernel command line's `kiln.*` parameters for /init.
    pub(crate) fn init_args(&self, token: &str, has_disk: bool) -> Vec<String> {
        let mut init_args = vec![
            format!("kiln.token={token}"),
            // Explicit either way, whatever default the initramfs was built
            // with: the overlay is the first virtio disk, `/dev/vda`.
            format!("kiln.root={}", if has_disk { "/dev/vda" } else { "none" }),
        ];
        init_args.extend(self.config.extra_kernel_args.iter().cloned());
        init_args
    }

    /// Starts passt, the vsock daemon (vsock transport) and QEMU for
    /// `machine` and connects to its agent. On
    /// error, `machine` still owns whatever was started (its Drop cleans
    /// up).
    async fn boot(
        &self,
        machine: &mut Machine,
        spec: &VmSpec,
        image: &GuestImage,
        options: &BootOptions,
    ) -> Result<AgentClient, VmError> {
        let id = machine.id.clone();
        let disk = match &image.rootfs {
            Some(base) => Some(self.create_overlay(machine, spec, base).await?),
            None => None,
        };
        let passt_socket = match spec.network {
            Network::None => None,
            Network::Nat => Some(self.start_passt(machine).await?),
        };
        let channel = self.agent_channel(machine).await?;
        let token = &options.token;
        let pidfile = machine.dir.qemu_pid();
        let qmp_socket = options.qmp.then(|| machine.dir.qmp_socket());
        let plan = LaunchPlan {
            pidfile: Some(&pidfile),
            agent_socket: channel.virtio_socket(),
            vsock_socket: channel.vhost_socket(),
            passt_socket: passt_socket.as_deref(),
            disk: disk.as_deref(),
            init_args: self.init_args(token, disk.is_some()),
            qmp_socket: qmp_socket.as_deref(),
            ..self.base_plan(spec, image, id.as_str())
        };
        let progress = self.start_qemu(machine, &plan)?;
        let Some(qemu) = machine.qemu.as_ref() else {
            return Err(allocation(&id, "qemu was not started", None));
        };
        let watched = agent::Watched {
            qemu,
            daemon: machine.vsock.as_ref(),
        };
        let connected = agent::connect(
            &channel,
            token,
            &options.client,
            self.config.boot_timeout,
            watched,
            progress,
        )
        .await;
        match connected {
            Ok((client, _info)) => Ok(client),
            Err(why) => Err(boot_failed(machine, &why.to_string()).await),
        }
    }

    /// The agent channel of `machine` for the configured transport; with
    /// vsock, its daemon is started first (QEMU needs its socket).
    pub(crate) async fn agent_channel(
        &self,
        machine: &mut Machine,
    ) -> Result<agent::Channel, VmError> {
        match self.config.transport {
            AgentTransport::VirtioSerial => {
                Ok(agent::Channel::VirtioSerial(machine.dir.agent_socket()))
            }
            AgentTransport::Vsock => {
                let (vhost, uds) = self.start_vsock_daemon(machine).await?;
                Ok(agent::Channel::Vsock { vhost, uds })
            }
        }
    }

    /// The vsock daemon of `machine`; returns its vhost-user socket and
    /// the socket the host connects to the guest through.
    async fn start_vsock_daemon(
        &self,
        machine: &mut Machine,
    ) -> Result<(PathBuf, PathBuf), VmError> {
        let id = &machine.id;
        let daemon = self.tools.vsock_daemon.as_ref().ok_or_else(|| {
            allocation(id, "the vsock transport was not set up (no daemon)", None)
        })?;
        let (vhost, uds) = (machine.dir.vhost_socket(), machine.dir.vsock_socket());
        let process = vsock::start_daemon(daemon, &vhost, &uds, &machine.dir.vsock_log())
            .await
            .map_err(|why| allocation(id, &why, None))?;
        // For reaping, as passt's.
        let _ = std::fs::write(machine.dir.vsock_pid(), format!("{}\n", process.pid));
        machine.vsock = Some(process);
        Ok((vhost, uds))
    }

    /// passt for `machine`; returns its socket.
    pub(crate) async fn start_passt(&self, machine: &mut Machine) -> Result<PathBuf, VmError> {
        let id = &machine.id;
        let passt = self.tools.passt.as_ref().ok_or_else(|| {
            allocation(
                id,
                "NAT networking needs passt, which is not installed \
                 (apt-get install passt, or ./scripts/setup.sh)",
                None,
            )
        })?;
        let socket = machine.dir.passt_socket();
        let process = net::start_passt(passt, &socket, &machine.dir.passt_log())
            .await
            .map_err(|why| allocation(id, &why, None))?;
        // For reaping: passt drops privileges before it could write one.
        let _ = std::fs::write(machine.dir.passt_pid(), format!("{}\n", process.pid));
        machine.passt = Some(process);
        Ok(socket)
    }

    /// Starts QEMU with its console pumped into `console.log`; returns the
    /// console's view of /init's progress.
    pub(crate) fn start_qemu(
        &self,
        machine: &mut Machine,
        plan: &LaunchPlan<'_>,
    ) -> Result<console::InitProgress, VmError> {
        let id = &machine.id;
        let qemu_log = std::fs::File::create(machine.dir.qemu_log())
            .map_err(|e| allocation(id, "cannot create qemu.log", Some(e)))?;
        let log = console::ConsoleLog::create(
            &machine.dir.console_log(),
            self.config.console_log_cap_bytes,
        )
        .map_err(|e| allocation(id, "cannot create console.log", Some(e)))?;
        let mut cmd = Command::new(&self.tools.qemu);
        cmd.args(plan.args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(qemu_log);
        let (qemu, stdout) = Process::spawn("qemu", cmd).map_err(|e| {
            let what = format!("cannot start {}", self.tools.qemu.display());
            allocation(id, &what, Some(e))
        })?;
        machine.qemu = Some(qemu);
        let stdout =
            stdout.ok_or_else(|| allocation(id, "qemu's console pipe is missing", None))?;
        let (pump, progress) = console::pump(stdout, log);
        machine.console = Some(pump);
        Ok(progress)
    }

    pub(crate) fn client_config(&self) -> ClientConfig {
        ClientConfig {
            request_timeout: self.config.agent_request_timeout,
            keepalive_interval: self.config.agent_idle_timeout / 4,
            idle_timeout: self.config.agent_idle_timeout,
            kill_grace: kiln_protocol::KillGrace {
                interrupt_ms: millis(self.config.kill_grace.interrupt),
                terminate_ms: millis(self.config.kill_grace.terminate),
            },
        }
    }

    /// `qemu-img create -f qcow2 -b <base> -F raw overlay.qcow2 [size]`: the
    /// guest writes go to the overlay, the base is only ever read.
    async fn create_overlay(
        &self,
        machine: &Machine,
        spec: &VmSpec,
        base: &Path,
    ) -> Result<PathBuf, VmError> {
        let id = &machine.id;
        let Some(qemu_img) = &self.tools.qemu_img else {
            return Err(allocation(id, "qemu-img was not found at setup", None));
        };
        let base = base
            .canonicalize()
            .map_err(|e| allocation(id, "cannot resolve the root disk", Some(e)))?;
        let base_len = base.metadata().map(|m| m.len()).unwrap_or(0);
        let size = spec.disk_mib.saturating_mul(1024 * 1024).max(base_len);
        let overlay = machine.dir.overlay();
        let out = Command::new(qemu_img)
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(&base)
            .arg(&overlay)
            .arg(size.to_string())
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| allocation(id, "cannot run qemu-img", Some(e)))?;
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr);
            return Err(allocation(
                id,
                &format!("qemu-img create failed: {}", why.trim()),
                None,
            ));
        }
        Ok(overlay)
    }
}

/// The error for a VM whose agent never answered, with what QEMU and the
/// console said. QEMU is stopped first so the console log is complete.
pub(crate) async fn boot_failed(machine: &mut Machine, why: &str) -> VmError {
    if let Some(qemu) = &machine.qemu {
        qemu.kill_and_wait(Duration::from_secs(2)).await;
    }
    machine.finish_console().await;
    let mut reason = why.to_owned();
    let qemu_said = machine.qemu_log_tail();
    if !qemu_said.is_empty() {
        reason.push_str(&format!("; qemu said: {qemu_said}"));
    }
    reason.push_str(&format!(
        "; console (last lines):\n{}",
        machine.console_tail()
    ));
    allocation(&machine.id, &reason, None)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub(crate) fn allocation(id: &VmId, why: &str, source: Option<std::io::Error>) -> VmError {
    VmError::Allocation {
        reason: format!("vm {id}: {why}"),
        source,
    }
}

/// The image of `spec`'s flavour, after checking its size.
fn image_for<'c>(config: &'c QemuConfig, spec: &VmSpec) -> Result<&'c GuestImage, VmError> {
    let invalid = |reason: String| VmError::Allocation {
        reason,
        source: None,
    };
    if spec.vcpus == 0 {
        return Err(invalid("a vm needs at least one vcpu".into()));
    }
    if spec.memory_mib < 128 {
        return Err(invalid(format!(
            "{} MiB of memory is too little for a guest (at least 128)",
            spec.memory_mib
        )));
    }
    let image = match spec.image.as_str() {
        FLAVOUR_MINIMAL => &config.minimal,
        FLAVOUR_DEBIAN => config.debian.as_ref().ok_or_else(|| {
            invalid(format!(
                "no debian image: run `{}`",
                kiln_image::Flavour::Debian.build_command()
            ))
        })?,
        other => {
            return Err(invalid(format!(
                "unknown image flavour `{other}` (known: {FLAVOUR_MINIMAL}, {FLAVOUR_DEBIAN})"
            )));
        }
    };
    if config.transport == AgentTransport::Vsock && image.rootfs.is_some() {
        // Such images boot through the shell /init and the disk's
        // kiln-init, which know only the virtio port.
        return Err(invalid(format!(
            "the vsock transport boots initramfs-only images ({FLAVOUR_MINIMAL}); image `{}` \
             has a root disk: use the virtio transport",
            spec.image
        )));
    }
    Ok(image)
}

/// The layout's directories exist before the VM is handed out, as on every
/// backend.
pub(crate) async fn make_layout_dirs(vm: &QemuVm) -> Result<(), VmError> {
    let tar = crate::archive::dirs_tar(&vm.layout.dirs())
        .map_err(|e| allocation(&vm.machine.id, "cannot archive the guest layout", Some(e)))?;
    crate::Vm::put_archive(vm, "/", tar)
        .await
        .map_err(|e| VmError::Allocation {
            reason: format!("vm {}: cannot create the guest layout: {e}", vm.machine.id),
            source: None,
        })
}

#[async_trait]
impl VmProvider for QemuProvider {
    fn name(&self) -> &'static str {
        BACKEND
    }

    async fn allocate(&self, spec: &VmSpec) -> Result<Allocated, VmError> {
        let started = Instant::now();
        let vm = self.allocate_vm(spec).await?;
        Ok(Allocated {
            vm: Box::new(vm),
            elapsed: started.elapsed(),
        })
    }

    /// Kills the QEMU, passt and vsock daemon of `qemu-<pid>-...`
    /// directories whose owning process is gone, and deletes the
    /// directories.
    async fn reap_orphans(&self) -> Result<usize, VmError> {
        let base = self.core.config.state_dir.clone();
        let snapshots = self.core.snapshots.clone();
        blocking(move || {
            snapshots.remove_stale_builds();
            reap::reap(&base)
        })
        .await
        .map_err(|e| {
            VmError::io(
                "reap orphans in",
                &self.core.config.state_dir.to_string_lossy(),
                e,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_checked_before_anything_starts() {
        let image = GuestImage {
            kernel: "/k".into(),
            kernel_kind: KernelKind::Minimal,
            initramfs: "/i".into(),
            rootfs: None,
        };
        let mut config = QemuConfig::new(image.clone(), "/s".into());
        let ok = VmSpec::default();
        assert_eq!(image_for(&config, &ok).ok(), Some(&image));
        let zero = VmSpec {
            vcpus: 0,
            ..VmSpec::default()
        };
        assert!(image_for(&config, &zero).is_err());
        let tiny = VmSpec {
            memory_mib: 64,
            ..VmSpec::default()
        };
        assert!(image_for(&config, &tiny).is_err());
        let debian = VmSpec {
            image: FLAVOUR_DEBIAN.into(),
            ..VmSpec::default()
        };
        let err = image_for(&config, &debian).expect_err("no debian image");
        assert!(
            err.to_string()
                .contains("kiln image build --flavour debian"),
            "{err}"
        );
        config.debian = Some(image.clone());
        assert!(image_for(&config, &debian).is_ok());
        config.transport = AgentTransport::Vsock;
        assert!(image_for(&config, &ok).is_ok());
        assert!(image_for(&config, &debian).is_ok(), "no root disk");
        config.debian = Some(GuestImage {
            rootfs: Some("/r".into()),
            ..image.clone()
        });
        let err = image_for(&config, &debian).expect_err("vsock and a root disk");
        assert!(err.to_string().contains("virtio transport"), "{err}");
        config.transport = AgentTransport::VirtioSerial;
        assert!(image_for(&config, &debian).is_ok());
        let odd = VmSpec {
            image: "windows".into(),
            ..VmSpec::default()
        };
        let err = image_for(&config, &odd).expect_err("unknown");
        assert!(err.to_string().contains("unknown image flavour"), "{err}");
    }
}
