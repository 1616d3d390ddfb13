//! Snapshot restore: boot a template VM once per image, QEMU and machine
//! shape, save its state (QEMU migration into a file), and start later VMs
//! by loading that state (`-incoming`) instead of booting a kernel.
//!
//! # The key
//!
//! A snapshot is only valid for exactly the VM it was taken of, so its
//! directory, `<snapshot_dir>/<flavour>-<key>/`, is named by a hash of
//! everything that shapes the saved state: the image files (canonical
//! paths, which carry the image's version id, sizes and mtimes), the QEMU
//! binary and its `--version`, kiln's version and protocol version, and
//! the QEMU command line with the per-VM paths, token and TSC hint replaced
//! by placeholders (so accelerator, vCPUs, memory, NIC and kernel
//! arguments are in it). A new image, a QEMU upgrade or another machine
//! shape finds no snapshot under its key: that VM cold-boots (with a
//! warning that says why) and a snapshot is built in the background.
//!
//! # Building
//!
//! The template is a normal cold boot (with a QMP socket) up to a
//! ready agent and the guest layout, then a ping so the agent connection
//! is idle at a frame boundary. QMP `stop`, then `migrate` to a unix
//! socket the host copies into `state.mig` (not `exec:cat > file`: QEMU
//! may kill the `cat` on close before it wrote everything). The template
//! is then killed. `meta.json` (0600: it holds the template's agent
//! token) is written last and the directory is renamed into place, so a
//! reader sees a complete snapshot or none. The state file's size is in
//! the metadata: a truncated file is detected before a restore.
//!
//! # Restoring
//!
//! A fresh state directory, passt and sockets; QEMU with the same machine
//! and device arguments plus `-incoming defer`. The host connects to the
//! agent socket *before* QMP `migrate-incoming exec:cat state.mig`, so the
//! restored virtio-serial port finds its host connected, as it was when
//! saved: the guest sees no disconnect and the agent's connection carries
//! on at the frame boundary where the template left it. The host then
//! says hello with the template's token and sends `Reidentify`: a new
//! token (the template's stops working), hostname, `/etc/machine-id`, the
//! wall clock, and host entropy with a forced CRNG reseed, so restored
//! VMs share nothing that matters (see kiln-agent's `identity`). QEMU
//! exiting (a corrupt or incompatible state) or no answer ends the restore
//! with an error: the provider then discards the snapshot, cold-boots and
//! rebuilds it in the background.
//!
//! Images with a root disk (`debian`): a restored guest's page cache must
//! match its disk, so the template's qcow2 overlay (flushed when QEMU
//! completed the migration) is kept in the snapshot as `disk.qcow2`, and
//! each restored VM gets its own overlay backed by it: overlay →
//! `disk.qcow2` → the image's read-only `rootfs.raw`. The disk size is in
//! the key.

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kiln_protocol::{AgentClient, ClientConfig, Identity};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::UnixStream;

use super::config::{AgentTransport, GuestImage, QemuConfig};
use super::launch::LaunchPlan;
use super::qmp::{Qmp, shell_quote};
use super::vm::{Machine, QemuVm};
use super::{BootOptions, Core, agent, allocation, boot_failed};
use crate::{GuestLayout, Network, VmError, VmSpec};

const STATE_FILE: &str = "state.mig";
/// The template's frozen disk overlay (images with a root disk): the
/// backing file of every restored VM's own overlay.
const DISK_FILE: &str = "disk.qcow2";
const META_FILE: &str = "meta.json";
const META_SCHEMA: u32 = 1;
/// The migration socket in the template's state directory.
const SAVE_SOCKET: &str = "save.sock";
/// How long saving the template's state may take.
const SAVE_LIMIT: Duration = Duration::from_secs(120);
/// How long a restored guest may take to answer the hello.
const RESTORE_LIMIT: Duration = Duration::from_secs(20);

/// A usable snapshot, as the provider reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// `<snapshot_dir>/<flavour>-<key>/`.
    pub dir: PathBuf,
    /// Size of the saved state.
    pub state_bytes: u64,
    /// How long building it took; zero if it already existed.
    pub build_time: Duration,
}

/// Whether VMs of a spec can be restored, for the CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotStatus {
    Ready(SnapshotInfo),
    /// None usable yet (why); the first allocation starts building one.
    Missing(String),
    /// VMs of this spec always cold-boot (why).
    Unsupported(String),
}

/// `meta.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    schema: u32,
    key: String,
    /// The template's agent token: what a restored agent expects first.
    token: String,
    qemu_version: String,
    state_bytes: u64,
    created_unix: u64,
    /// What the key was computed from, for people.
    inputs: Vec<String>,
}

/// A snapshot found on disk.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    dir: PathBuf,
    meta: Meta,
}

impl Snapshot {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn state(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    pub fn info(&self) -> SnapshotInfo {
        SnapshotInfo {
            dir: self.dir.clone(),
            state_bytes: self.meta.state_bytes,
            build_time: Duration::ZERO,
        }
    }
}

/// What a lookup found.
pub(crate) enum Lookup {
    Found(Snapshot),
    /// None usable for this key (why, for the warning).
    Missing(String),
    /// This VM cannot be snapshotted (why).
    Unsupported(String),
}

/// What a key is made of.
struct Key {
    /// `<flavour>-<hash>`: the directory name.
    name: String,
    flavour: String,
    hash: String,
    inputs: Vec<String>,
}

/// The snapshot store of one provider. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Snapshots {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    qemu: PathBuf,
    /// `qemu --version` and the binary's identity, computed once.
    qemu_identity: OnceLock<String>,
    /// Keys being built by this process.
    building: Mutex<HashSet<String>>,
}

/// Holds a key's build slot; frees it when dropped.
pub(crate) struct BuildGuard {
    inner: Arc<Inner>,
    name: String,
}

impl Drop for BuildGuard {
    fn drop(&mut self) {
        lock(&self.inner.building).remove(&self.name);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Snapshots {
    pub fn new(config: &QemuConfig, qemu: &Path) -> Snapshots {
        let snapshots = Snapshots {
            inner: Arc::new(Inner {
                dir: config.snapshot_dir.clone(),
                qemu: qemu.to_owned(),
                qemu_identity: OnceLock::new(),
                building: Mutex::default(),
            }),
        };
        if config.snapshot_restore {
            // Runs `qemu --version` now rather than in the first allocation.
            snapshots.qemu_identity();
        }
        snapshots
    }

    fn qemu_identity(&self) -> &str {
        self.inner.qemu_identity.get_or_init(|| {
            let version = std::process::Command::new(&self.inner.qemu)
                .arg("--version")
                .output()
                .map(|out| {
                    String::from_utf8_lossy(&out.stdout)
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .to_owned()
                })
                .unwrap_or_else(|e| format!("unknown ({e})"));
            format!("qemu {} {version}", file_identity(&self.inner.qemu))
        })
    }

    fn key(&self, core: &Core, spec: &VmSpec, image: &GuestImage) -> Key {
        let placeholder = Path::new("/S");
        let (pid, agent, passt, qmp, disk) = (
            placeholder.join("qemu.pid"),
            placeholder.join("agent.sock"),
            placeholder.join("passt.sock"),
            placeholder.join("qmp.sock"),
            placeholder.join("overlay.qcow2"),
        );
        let has_disk = image.rootfs.is_some();
        let plan = LaunchPlan {
            // Not part of the machine: a hint that differs by host load.
            tsc_khz: None,
            pidfile: Some(&pid),
            agent_socket: Some(&agent),
            passt_socket: (spec.network == Network::Nat).then_some(passt.as_path()),
            disk: has_disk.then_some(disk.as_path()),
            init_args: core.init_args("TOKEN", has_disk),
            qmp_socket: Some(&qmp),
            ..core.base_plan(spec, image, "template")
        };
        let args: Vec<String> = plan
            .args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let mut inputs = vec![
            format!(
                "kiln-vm {} protocol {}",
                env!("CARGO_PKG_VERSION"),
                kiln_protocol::PROTOCOL_VERSION
            ),
            format!("kernel {}", file_identity(&image.kernel)),
            format!("initramfs {}", file_identity(&image.initramfs)),
            self.qemu_identity().to_owned(),
            format!("args {}", args.join(" ")),
        ];
        if let Some(rootfs) = &image.rootfs {
            // The overlay's size is the disk the guest sees.
            inputs.push(format!(
                "rootfs {} disk_mib {}",
                file_identity(rootfs),
                spec.disk_mib
            ));
        }
        let hash = kiln_image::sha256_bytes(inputs.join("\n").as_bytes());
        let hash = hash.get(..16).unwrap_or(&hash).to_owned();
        let flavour = spec.image.clone();
        Key {
            name: format!("{flavour}-{hash}"),
            flavour,
            hash,
            inputs,
        }
    }

    /// The usable snapshot for `spec`, or why there is none. A snapshot
    /// that fails its checks (metadata, size) is discarded.
    pub fn find(&self, core: &Core, spec: &VmSpec, image: &GuestImage) -> Lookup {
        if core.config.transport == AgentTransport::Vsock {
            return Lookup::Unsupported(
                "the vsock transport cannot be snapshotted (QEMU blocks migrating a \
                 vhost-user-vsock device)"
                    .to_owned(),
            );
        }
        if image.rootfs.is_some() && core.tools.qemu_img.is_none() {
            return Lookup::Unsupported(format!(
                "image `{}` has a root disk and qemu-img was not found",
                spec.image
            ));
        }
        let key = self.key(core, spec, image);
        let dir = self.inner.dir.join(&key.name);
        match read_meta(&dir) {
            Ok(_) if image.rootfs.is_some() && !dir.join(DISK_FILE).is_file() => {
                self.discard_dir(&dir);
                Lookup::Missing(format!(
                    "the snapshot in {} has no disk; discarded",
                    dir.display()
                ))
            }
            Ok(meta) if meta.key == key.hash && meta.schema == META_SCHEMA => {
                let state_len = std::fs::metadata(dir.join(STATE_FILE)).map(|m| m.len());
                match state_len {
                    Ok(len) if len == meta.state_bytes => Lookup::Found(Snapshot { dir, meta }),
                    Ok(len) => {
                        self.discard_dir(&dir);
                        Lookup::Missing(format!(
                            "the snapshot in {} is corrupt ({len} bytes of state, {} expected); \
                             discarded",
                            dir.display(),
                            meta.state_bytes
                        ))
                    }
                    Err(e) => {
                        self.discard_dir(&dir);
                        Lookup::Missing(format!(
                            "the snapshot in {} has no state file ({e}); discarded",
                            dir.display()
                        ))
                    }
                }
            }
            Ok(_) => {
                self.discard_dir(&dir);
                Lookup::Missing(format!(
                    "the snapshot in {} does not match its key; discarded",
                    dir.display()
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let others = self.others(&key);
                if others.is_empty() {
                    Lookup::Missing(format!(
                        "no snapshot of image `{}` for this machine shape yet",
                        key.flavour
                    ))
                } else {
                    Lookup::Missing(format!(
                        "no snapshot of image `{}` matches this image, QEMU version and machine \
                         shape (found {}, made for another one)",
                        key.flavour,
                        others.join(", ")
                    ))
                }
            }
            Err(e) => {
                self.discard_dir(&dir);
                Lookup::Missing(format!(
                    "the snapshot metadata in {} is unreadable ({e}); discarded",
                    dir.display()
                ))
            }
        }
    }

    /// Snapshot directories of the same flavour under other keys.
    fn others(&self, key: &Key) -> Vec<String> {
        let prefix = format!("{}-", key.flavour);
        let Ok(entries) = std::fs::read_dir(&self.inner.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with(&prefix) && *n != key.name)
            .collect()
    }

    /// Deletes a snapshot that failed to restore, so it is rebuilt.
    pub fn discard(&self, snapshot: &Snapshot) {
        self.discard_dir(&snapshot.dir);
    }

    fn discard_dir(&self, dir: &Path) {
        // Renamed away first: a concurrent reader sees it whole or not.
        let trash =
            self.inner
                .dir
                .join(format!(".trash-{}-{}", std::process::id(), unique_suffix()));
        let target = match std::fs::rename(dir, &trash) {
            Ok(()) => trash,
            Err(_) => dir.to_owned(),
        };
        if let Err(e) = std::fs::remove_dir_all(&target)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %target.display(), error = %e, "cannot delete a snapshot");
        }
    }

    /// The build slot for `spec`'s key, unless this process builds it now.
    pub fn claim_build(
        &self,
        core: &Core,
        spec: &VmSpec,
        image: &GuestImage,
    ) -> Option<BuildGuard> {
        let key = self.key(core, spec, image);
        lock(&self.inner.building)
            .insert(key.name.clone())
            .then(|| BuildGuard {
                inner: self.inner.clone(),
                name: key.name,
            })
    }

    /// Builds of this process under way.
    pub fn builds_in_progress(&self) -> usize {
        lock(&self.inner.building).len()
    }

    /// Deletes `.tmp-*` and `.trash-*` directories of dead processes.
    pub fn remove_stale_builds(&self) {
        let Ok(entries) = std::fs::read_dir(&self.inner.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = name
                .strip_prefix(".tmp-")
                .or_else(|| name.strip_prefix(".trash-"))
            else {
                continue;
            };
            let owner = rest.split('-').next().and_then(|p| p.parse::<i32>().ok());
            let alive = owner.is_some_and(crate::local::group::pid_alive);
            if !alive {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

fn read_meta(dir: &Path) -> io::Result<Meta> {
    let text = std::fs::read_to_string(dir.join(META_FILE))?;
    serde_json::from_str(&text).map_err(io::Error::other)
}

/// Canonical path, size and mtime: enough to tell one build of a file
/// from another without hashing hundreds of MiB.
fn file_identity(path: &Path) -> String {
    let canonical = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    match std::fs::metadata(&canonical) {
        Ok(m) => format!(
            "{} {} {}.{}",
            canonical.display(),
            m.len(),
            m.mtime(),
            m.mtime_nsec()
        ),
        Err(e) => format!("{} ({e})", canonical.display()),
    }
}

fn unique_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{nanos:x}")
}

fn random_hex(bytes: usize) -> io::Result<String> {
    Ok(random_bytes(bytes)?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn random_bytes(len: usize) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = vec![0u8; len];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut out)?;
    Ok(out)
}

/// A fresh identity for one restored VM.
fn new_identity() -> io::Result<Identity> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Ok(Identity {
        token: agent::new_token()?,
        hostname: format!("kiln-{}", random_hex(4)?),
        machine_id: random_hex(16)?,
        entropy: Bytes::from(random_bytes(64)?),
        unix_time_ns: u64::try_from(now.as_nanos()).unwrap_or(u64::MAX),
    })
}

impl Core {
    /// `spec`'s snapshot, built now if there is none.
    pub(crate) async fn prepare_snapshot(
        &self,
        spec: &VmSpec,
        image: &GuestImage,
    ) -> Result<SnapshotInfo, VmError> {
        match self.snapshots.find(self, spec, image) {
            Lookup::Found(snapshot) => Ok(snapshot.info()),
            Lookup::Unsupported(why) => Err(VmError::Allocation {
                reason: why,
                source: None,
            }),
            Lookup::Missing(why) => {
                tracing::info!("{why}: building one");
                self.build_snapshot(spec, image).await
            }
        }
    }

    /// Boots a template, saves it, kills it; installs the snapshot.
    pub(crate) async fn build_snapshot(
        &self,
        spec: &VmSpec,
        image: &GuestImage,
    ) -> Result<SnapshotInfo, VmError> {
        let started = Instant::now();
        let key = self.snapshots.key(self, spec, image);
        let fail = |why: String, source: Option<io::Error>| VmError::Allocation {
            reason: format!("building the snapshot {}: {why}", key.name),
            source,
        };
        let base = self.snapshots.inner.dir.clone();
        std::fs::create_dir_all(&base)
            .map_err(|e| fail("cannot create the snapshot directory".into(), Some(e)))?;
        let tmp = base.join(format!(
            ".tmp-{}-{}-{}",
            std::process::id(),
            unique_suffix(),
            key.hash
        ));
        std::fs::create_dir(&tmp)
            .and_then(|()| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o700)))
            .map_err(|e| fail("cannot create its directory".into(), Some(e)))?;
        let result = self.save_template(spec, image, &tmp, &key).await;
        let installed = result.and_then(|state_bytes| {
            let target = base.join(&key.name);
            match std::fs::rename(&tmp, &target) {
                Ok(()) => Ok(SnapshotInfo {
                    dir: target,
                    state_bytes,
                    build_time: started.elapsed(),
                }),
                // Another process installed the same key meanwhile.
                Err(_) if read_meta(&target).is_ok() => {
                    let _ = std::fs::remove_dir_all(&tmp);
                    Ok(SnapshotInfo {
                        dir: target,
                        state_bytes,
                        build_time: started.elapsed(),
                    })
                }
                Err(e) => Err(fail("cannot install it".into(), Some(e))),
            }
        });
        if installed.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        installed
    }

    /// Boots the template and saves its state into `tmp`; returns the
    /// state's size.
    async fn save_template(
        &self,
        spec: &VmSpec,
        image: &GuestImage,
        tmp: &Path,
        key: &Key,
    ) -> Result<u64, VmError> {
        let machine = self.new_machine().await?;
        let id = machine.id.clone();
        let token = agent::new_token()
            .map_err(|e| allocation(&id, "cannot read /dev/urandom for its token", Some(e)))?;
        // No keepalive: nothing may be in flight on the agent channel when
        // the state is saved.
        let client = ClientConfig {
            keepalive_interval: Duration::from_secs(24 * 3600),
            idle_timeout: Duration::from_secs(48 * 3600),
            ..self.client_config()
        };
        let options = BootOptions {
            token: token.clone(),
            qmp: true,
            client,
        };
        let mut template = self.boot_vm(machine, spec, image, &options).await?;
        let saved = async {
            template.ping().await?;
            let state = tmp.join(STATE_FILE);
            let bytes = save_state(&template.machine, &state)
                .await
                .map_err(|why| allocation(&id, &format!("cannot save its state: {why}"), None))?;
            let meta = Meta {
                schema: META_SCHEMA,
                key: key.hash.clone(),
                token,
                qemu_version: self.snapshots.qemu_identity().to_owned(),
                state_bytes: bytes,
                created_unix: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or_default(),
                inputs: key.inputs.clone(),
            };
            if image.rootfs.is_some() {
                // Frozen from here on: QEMU is stopped with its disks
                // flushed, and killed below.
                std::fs::rename(template.machine.dir.overlay(), tmp.join(DISK_FILE))
                    .map_err(|e| allocation(&id, "cannot keep its disk", Some(e)))?;
            }
            write_meta(tmp, &meta)
                .map_err(|e| allocation(&id, "cannot write the snapshot metadata", Some(e)))?;
            Ok::<_, VmError>(bytes)
        }
        .await;
        // The template has served its purpose, saved or not.
        let _ = template.machine.destroy().await;
        saved
    }

    /// A VM restored from `snapshot`, with a fresh identity.
    pub(crate) async fn restore(
        &self,
        spec: &VmSpec,
        image: &GuestImage,
        snapshot: &Snapshot,
    ) -> Result<QemuVm, VmError> {
        let started = Instant::now();
        let mut machine = self.new_machine().await?;
        let id = machine.id.clone();
        let disk = match &image.rootfs {
            Some(_) => Some(
                self.overlay_on(&machine, &snapshot.dir.join(DISK_FILE))
                    .await?,
            ),
            None => None,
        };
        let passt_socket = match spec.network {
            Network::None => None,
            Network::Nat => Some(self.start_passt(&mut machine).await?),
        };
        let (pidfile, agent_socket, qmp_socket) = (
            machine.dir.qemu_pid(),
            machine.dir.agent_socket(),
            machine.dir.qmp_socket(),
        );
        let plan = LaunchPlan {
            pidfile: Some(&pidfile),
            agent_socket: Some(&agent_socket),
            passt_socket: passt_socket.as_deref(),
            disk: disk.as_deref(),
            init_args: self.init_args(&snapshot.meta.token, disk.is_some()),
            qmp_socket: Some(&qmp_socket),
            incoming: true,
            ..self.base_plan(spec, image, id.as_str())
        };
        let _progress = self.start_qemu(&mut machine, &plan)?;
        let attempt = async {
            let client = self
                .load_and_connect(&machine, snapshot, &agent_socket, &qmp_socket)
                .await?;
            let identity = new_identity().map_err(|e| format!("cannot make an identity: {e}"))?;
            client
                .reidentify(identity)
                .await
                .map_err(|e| format!("reidentify failed: {e}"))?;
            Ok::<_, String>(client)
        };
        let qemu_exit = async {
            match &machine.qemu {
                Some(qemu) => qemu.exit().await,
                None => std::future::pending().await,
            }
        };
        let outcome = tokio::select! {
            outcome = tokio::time::timeout(RESTORE_LIMIT, attempt) => match outcome {
                Ok(outcome) => outcome,
                Err(_) => Err(format!("the restored guest did not answer within {RESTORE_LIMIT:?}")),
            },
            status = qemu_exit => Err(format!("qemu exited while restoring ({status})")),
        };
        let client = match outcome {
            Ok(client) => client,
            Err(why) => {
                let why = format!("restore from {}: {why}", snapshot.dir.display());
                return Err(boot_failed(&mut machine, &why).await);
            }
        };
        tracing::debug!(vm = %id, took = ?started.elapsed(), "qemu vm restored");
        Ok(QemuVm {
            machine,
            client,
            layout: GuestLayout::standard(),
            settings: self.settings.clone(),
        })
    }

    /// A qcow2 overlay of the snapshot's frozen disk for `machine`, the
    /// same size (the guest's view must not change).
    async fn overlay_on(&self, machine: &Machine, backing: &Path) -> Result<PathBuf, VmError> {
        let id = &machine.id;
        let Some(qemu_img) = &self.tools.qemu_img else {
            return Err(allocation(id, "qemu-img was not found at setup", None));
        };
        let overlay = machine.dir.overlay();
        let out = tokio::process::Command::new(qemu_img)
            .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
            .arg(backing)
            .arg(&overlay)
            .stdin(std::process::Stdio::null())
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

    /// Connects to the agent socket, then loads the state, then says hello
    /// with the template's token (see the module docs for the order).
    async fn load_and_connect(
        &self,
        machine: &Machine,
        snapshot: &Snapshot,
        agent_socket: &Path,
        qmp_socket: &Path,
    ) -> Result<AgentClient, String> {
        let mut qmp = Qmp::connect(qmp_socket, RESTORE_LIMIT).await?;
        // QMP answering means QEMU created every chardev, the agent's too.
        let stream = UnixStream::connect(agent_socket)
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", agent_socket.display()))?;
        let client = AgentClient::new(stream, self.client_config());
        let uri = format!("exec:cat {}", shell_quote(&snapshot.state()));
        qmp.execute("migrate-incoming", json!({ "uri": uri }))
            .await?;
        // The template was stopped when saved, so the restored VM stays
        // paused until told to continue.
        qmp.wait_migration(RESTORE_LIMIT).await?;
        qmp.execute("cont", json!({})).await?;
        drop(qmp);
        client
            .hello(&snapshot.meta.token)
            .await
            .map_err(|e| format!("the restored agent failed the handshake: {e}"))?;
        tracing::trace!(vm = %machine.id, "restored agent answered hello");
        Ok(client)
    }
}

/// Stops the VM and migrates its state into `state` through a unix socket
/// the host drains; returns the state's size once QEMU completed and the
/// data is on disk.
async fn save_state(machine: &Machine, state: &Path) -> Result<u64, String> {
    let socket = machine.dir.path().join(SAVE_SOCKET);
    let listener = tokio::net::UnixListener::bind(&socket)
        .map_err(|e| format!("cannot listen on {}: {e}", socket.display()))?;
    // 0600: the guest's RAM holds the template's token.
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(state)
            .map(tokio::fs::File::from_std)
            .map_err(|e| format!("cannot create {}: {e}", state.display()))?
    };
    let drain = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await?;
        let mut file = file;
        let copied = tokio::io::copy(&mut stream, &mut file).await?;
        file.sync_all().await?;
        Ok::<_, io::Error>(copied)
    });
    let abort = drain.abort_handle();
    let migrated = async {
        let mut qmp = Qmp::connect(&machine.dir.qmp_socket(), Duration::from_secs(5)).await?;
        // QEMU's default limit (32 MiB/s) would make saving take seconds.
        qmp.execute(
            "migrate-set-parameters",
            json!({ "max-bandwidth": 1u64 << 40 }),
        )
        .await?;
        qmp.execute("stop", json!({})).await?;
        let uri = format!("unix:{}", socket.display());
        qmp.execute("migrate", json!({ "uri": uri })).await?;
        qmp.wait_migration(SAVE_LIMIT).await
    }
    .await;
    if let Err(why) = migrated {
        abort.abort();
        return Err(why);
    }
    match tokio::time::timeout(Duration::from_secs(30), drain).await {
        Ok(Ok(Ok(bytes))) => Ok(bytes),
        Ok(Ok(Err(e))) => Err(format!("cannot copy the state: {e}")),
        Ok(Err(e)) => Err(format!("the copy task failed: {e}")),
        Err(_) => {
            abort.abort();
            Err("the state stream did not end".to_owned())
        }
    }
}

fn write_meta(dir: &Path, meta: &Meta) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let text = serde_json::to_string_pretty(meta).map_err(io::Error::other)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dir.join(META_FILE))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}
