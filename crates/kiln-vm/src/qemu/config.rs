//! What the qemu backend needs, where it finds it by default (the image
//! store of `kiln image build`), and the checks that turn a missing piece
//! into an error naming the fix.

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use kiln_image::KernelKind;
use kiln_image::{Flavour, ImageStore, ResolvedImage};

use super::error::SetupError;
use crate::KillGrace;

/// Which accelerator to use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AccelMode {
    /// KVM where a probe shows it really works, else TCG.
    #[default]
    Auto,
    /// KVM, without probing; setup fails if `/dev/kvm` cannot be opened.
    Kvm,
    /// TCG (software emulation), always available.
    Tcg,
}

/// The channel between the host and the guest agent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AgentTransport {
    /// A virtio-serial port, QEMU's chardev socket on the host: works on
    /// every QEMU, and VMs can be snapshotted.
    #[default]
    VirtioSerial,
    /// vsock through a per-VM `vhost-device-vsock` daemon (vhost-user);
    /// VMs always cold-boot (QEMU cannot migrate a
    /// vhost-user-vsock device), and only initramfs images (`minimal`).
    Vsock,
}

impl AgentTransport {
    /// The name users write (`--transport`, `[vm] transport`).
    pub fn as_str(self) -> &'static str {
        match self {
            AgentTransport::VirtioSerial => "virtio",
            AgentTransport::Vsock => "vsock",
        }
    }
}

impl std::fmt::Display for AgentTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AgentTransport {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "virtio" | "virtio-serial" => Ok(AgentTransport::VirtioSerial),
            "vsock" => Ok(AgentTransport::Vsock),
            other => Err(format!(
                "unknown agent transport `{other}` (known: virtio, vsock)"
            )),
        }
    }
}

/// The vhost-user vsock daemon's program name.
pub const VSOCK_DAEMON: &str = "vhost-device-vsock";

/// What one image flavour boots from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestImage {
    /// Uncompressed ELF `vmlinux` (PVH entry: the fastest `microvm` boot).
    pub kernel: PathBuf,
    /// Decides the machine options: the minimal kernel has no ACPI.
    pub kernel_kind: KernelKind,
    /// Must contain `/usr/bin/kiln-agent` built from this workspace.
    pub initramfs: PathBuf,
    /// The read-only base disk of the `debian` flavour. Never written: each
    /// VM gets a qcow2 overlay on top of it.
    pub rootfs: Option<PathBuf>,
}

impl From<ResolvedImage> for GuestImage {
    fn from(image: ResolvedImage) -> GuestImage {
        GuestImage {
            kernel: image.kernel,
            kernel_kind: image.kernel_kind,
            initramfs: image.initramfs,
            rootfs: image.rootfs,
        }
    }
}

/// Everything [`QemuProvider`](super::QemuProvider) needs. Start from
/// [`QemuConfig::from_data_dir`] or [`QemuConfig::new`] and override fields.
#[derive(Debug, Clone)]
pub struct QemuConfig {
    /// `qemu-system-x86_64`; a bare name is looked up in `PATH`.
    pub qemu_binary: PathBuf,
    /// The `minimal` flavour (`VmSpec::image == "minimal"`), always needed.
    pub minimal: GuestImage,
    /// The `debian` flavour, if one was built.
    pub debian: Option<GuestImage>,
    /// `qemu-img`, for the overlays of root disks.
    pub qemu_img_binary: PathBuf,
    /// `passt`, the user-mode NAT of `Network::Nat`.
    pub passt_binary: PathBuf,
    pub accel: AccelMode,
    /// Parent of the per-VM directories `<state_dir>/<vm-id>/`.
    pub state_dir: PathBuf,
    /// From QEMU's start until the agent answers `hello`.
    pub boot_timeout: Duration,
    /// How long `release` waits for the agent's shutdown answer, and then
    /// for the guest to power off, before QEMU is killed.
    pub shutdown_timeout: Duration,
    /// Upper bound of `console.log`: its head and its latest part are kept.
    pub console_log_cap_bytes: u64,
    /// The ladder for timed-out or cancelled commands in the guest.
    pub kill_grace: KillGrace,
    /// How long one agent request may wait for its next reply.
    pub agent_request_timeout: Duration,
    /// Silence from the agent (despite keepalives) for this long means the
    /// VM is dead: its requests fail instead of hanging.
    pub agent_idle_timeout: Duration,
    /// Start VMs by restoring a snapshot of a booted template instead of
    /// booting them (see the `snapshot` module); falls back to a cold boot
    /// when there is no usable snapshot. Images with a root disk always
    /// cold-boot.
    pub snapshot_restore: bool,
    /// Where snapshots are kept, one directory per image, QEMU and machine
    /// shape.
    pub snapshot_dir: PathBuf,
    /// The agent channel; virtio-serial unless vsock is asked for.
    pub transport: AgentTransport,
    /// `vhost-device-vsock`, needed by [`AgentTransport::Vsock`] only. A
    /// bare name is looked up in `$KILN_HOME/bin` (where
    /// `scripts/setup.sh` installs it), then in `PATH`.
    pub vsock_daemon_binary: PathBuf,
    /// Appended to the guest kernel command line, for debugging
    /// (`kiln.debug=1` traces /init) and for tests. Later `kiln.*`
    /// parameters override earlier ones.
    pub extra_kernel_args: Vec<String>,
}

impl QemuConfig {
    /// Defaults around the given `minimal` image and state directory.
    pub fn new(minimal: GuestImage, state_dir: PathBuf) -> QemuConfig {
        QemuConfig {
            qemu_binary: PathBuf::from("qemu-system-x86_64"),
            minimal,
            debian: None,
            qemu_img_binary: PathBuf::from("qemu-img"),
            passt_binary: PathBuf::from("passt"),
            accel: AccelMode::Auto,
            boot_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(5),
            console_log_cap_bytes: 1024 * 1024,
            kill_grace: KillGrace::default(),
            agent_request_timeout: Duration::from_secs(30),
            agent_idle_timeout: Duration::from_secs(20),
            snapshot_restore: false,
            snapshot_dir: state_dir.join("snapshots"),
            transport: AgentTransport::VirtioSerial,
            vsock_daemon_binary: PathBuf::from(VSOCK_DAEMON),
            extra_kernel_args: Vec::new(),
            state_dir,
        }
    }

    /// The images `kiln image build` made in a Kiln data directory
    /// (`$KILN_HOME`, by default `~/.local/share/kiln`), state below
    /// `<data_dir>/qemu-vms/`. The `minimal` image is required; `debian` is
    /// used if built.
    pub fn from_data_dir(data_dir: &Path) -> Result<QemuConfig, SetupError> {
        let no_image = |source| SetupError::NoImage {
            dir: data_dir.join("images"),
            source,
        };
        let store = ImageStore::open(data_dir).map_err(no_image)?;
        let minimal = store.resolve(Flavour::Minimal).map_err(no_image)?;
        let mut config = QemuConfig::new(minimal.into(), data_dir.join("qemu-vms"));
        config.snapshot_dir = data_dir.join("qemu-snapshots");
        config.debian = store.resolve(Flavour::Debian).ok().map(GuestImage::from);
        let installed = data_dir.join("bin").join(VSOCK_DAEMON);
        if installed.is_file() {
            config.vsock_daemon_binary = installed;
        }
        Ok(config)
    }

    /// `$KILN_HOME`, else `~/.local/share/kiln` (the CLI's rule).
    pub fn default_data_dir() -> Option<PathBuf> {
        if let Some(home) = std::env::var_os("KILN_HOME") {
            return Some(home.into());
        }
        std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share/kiln"))
    }

    /// Checks that QEMU and the images exist; resolves the tools.
    pub(crate) fn check(&self) -> Result<Checked, SetupError> {
        let qemu = which(&self.qemu_binary).ok_or_else(|| SetupError::MissingTool {
            tool: "qemu",
            name: self.qemu_binary.display().to_string(),
            fix: "run ./scripts/setup.sh (installs qemu-system-x86)",
        })?;
        let file = |what, path: &Path| {
            if path.is_file() {
                Ok(())
            } else {
                Err(SetupError::MissingImage {
                    what,
                    path: path.to_owned(),
                })
            }
        };
        let mut needs_qemu_img = false;
        for image in std::iter::once(&self.minimal).chain(&self.debian) {
            file("kernel", &image.kernel)?;
            file("initramfs", &image.initramfs)?;
            if let Some(rootfs) = &image.rootfs {
                file("root disk", rootfs)?;
                needs_qemu_img = true;
            }
        }
        let qemu_img = if needs_qemu_img {
            Some(
                which(&self.qemu_img_binary).ok_or_else(|| SetupError::MissingTool {
                    tool: "qemu-img",
                    name: self.qemu_img_binary.display().to_string(),
                    fix: "run ./scripts/setup.sh (installs qemu-utils)",
                })?,
            )
        } else {
            None
        };
        let vsock_daemon = match self.transport {
            AgentTransport::VirtioSerial => None,
            AgentTransport::Vsock => {
                Some(
                    self.find_vsock_daemon()
                        .ok_or_else(|| SetupError::MissingTool {
                            tool: "vhost-device-vsock (the vsock transport's daemon)",
                            name: self.vsock_daemon_binary.display().to_string(),
                            fix: "run ./scripts/setup.sh (installs it into $KILN_HOME/bin), \
                          or use the virtio transport",
                        })?,
                )
            }
        };
        Ok(Checked {
            qemu,
            qemu_img,
            passt: which(&self.passt_binary),
            vsock_daemon,
        })
    }

    /// [`vsock_daemon_binary`](Self::vsock_daemon_binary): a path as is; a
    /// bare name in `$KILN_HOME/bin`, then in `PATH`.
    fn find_vsock_daemon(&self) -> Option<PathBuf> {
        let name = &self.vsock_daemon_binary;
        if name.components().count() == 1
            && let Some(dir) = QemuConfig::default_data_dir()
            && let Some(found) = which(&dir.join("bin").join(name))
        {
            return Some(found);
        }
        which(name)
    }
}

/// Host tools as resolved at setup.
#[derive(Debug, Clone)]
pub(crate) struct Checked {
    pub qemu: PathBuf,
    pub qemu_img: Option<PathBuf>,
    /// `None`: NAT allocations fail with an error naming the fix.
    pub passt: Option<PathBuf>,
    /// Resolved when the vsock transport is chosen (else `None`).
    pub vsock_daemon: Option<PathBuf>,
}

/// `name` itself if it contains a `/`, else the first executable in `PATH`.
pub(crate) fn which(name: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.components().count() > 1 {
        return executable(name).then(|| name.to_owned());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| executable(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu::error::IMAGE_FIX;

    fn image(dir: &Path) -> GuestImage {
        GuestImage {
            kernel: dir.join("vmlinux"),
            kernel_kind: KernelKind::Minimal,
            initramfs: dir.join("initramfs.cpio"),
            rootfs: None,
        }
    }

    #[test]
    fn transports_by_name() {
        for t in [AgentTransport::VirtioSerial, AgentTransport::Vsock] {
            assert_eq!(t.as_str().parse::<AgentTransport>(), Ok(t));
        }
        assert_eq!("virtio-serial".parse(), Ok(AgentTransport::VirtioSerial));
        let err = "tcp".parse::<AgentTransport>().expect_err("unknown");
        assert!(err.contains("virtio, vsock"), "{err}");
        assert_eq!(AgentTransport::default(), AgentTransport::VirtioSerial);
    }

    #[test]
    fn missing_pieces_name_the_fix() -> std::io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let err = QemuConfig::from_data_dir(tmp.path()).expect_err("no images");
        let shown = err.to_string();
        assert!(shown.contains("images"), "{shown}");
        assert!(shown.ends_with(IMAGE_FIX), "{shown}");

        let mut config = QemuConfig::new(image(tmp.path()), tmp.path().join("vms"));
        // Any executable stands in for QEMU: the image is what is missing.
        config.qemu_binary = PathBuf::from("sh");
        let shown = config.check().expect_err("no kernel").to_string();
        assert!(shown.starts_with("guest kernel not found at "), "{shown}");
        assert!(shown.ends_with(IMAGE_FIX), "{shown}");

        std::fs::write(tmp.path().join("vmlinux"), b"")?;
        std::fs::write(tmp.path().join("initramfs.cpio"), b"")?;
        assert!(config.check().is_ok());
        config.debian = Some(GuestImage {
            rootfs: Some(tmp.path().join("rootfs.raw")),
            ..image(tmp.path())
        });
        let shown = config.check().expect_err("no disk").to_string();
        assert!(shown.starts_with("guest root disk not found"), "{shown}");

        config.debian = None;
        config.transport = AgentTransport::Vsock;
        config.vsock_daemon_binary = tmp.path().join("no-such-vhost-device-vsock");
        let shown = config.check().expect_err("no vsock daemon").to_string();
        assert!(shown.starts_with("vhost-device-vsock"), "{shown}");
        assert!(shown.contains("scripts/setup.sh"), "{shown}");
        // Any executable stands in for the daemon.
        config.vsock_daemon_binary = PathBuf::from("/bin/sh");
        let checked = config.check().expect("daemon found");
        assert_eq!(checked.vsock_daemon, Some(PathBuf::from("/bin/sh")));
        config.transport = AgentTransport::VirtioSerial;
        assert_eq!(config.check().expect("no daemon needed").vsock_daemon, None);

        config.qemu_binary = PathBuf::from("kiln-no-such-qemu");
        let shown = config.check().expect_err("no qemu").to_string();
        assert!(shown.contains("scripts/setup.sh"), "{shown}");
        Ok(())
    }
}
