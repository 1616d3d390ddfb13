//! What the qemu backend needs, where it finds it by default, and the checks
//! that turn a missing piece into an error naming the fix.

use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// The guest kernel's kind decides how the machine and the kernel are told
/// to power off (see images/README.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KernelKind {
    /// Our tinyconfig kernel: no ACPI, so QEMU's `microvm,acpi=off` passes the
    /// virtio-mmio devices on the command line and power-off is a reset
    /// (`reboot=t` + `-no-reboot`).
    #[default]
    Minimal,
    /// Debian's kernel: finds devices through ACPI and powers off through it;
    /// needs the initramfs that carries its modules.
    Stock,
}

/// Everything [`QemuProvider`](super::QemuProvider) needs. Start from
/// [`QemuConfig::from_data_dir`] and override fields.
#[derive(Debug, Clone)]
pub struct QemuConfig {
    /// `qemu-system-x86_64`; a bare name is looked up in `PATH`.
    pub qemu_binary: PathBuf,
    /// Uncompressed ELF `vmlinux` (PVH entry: fastest `microvm` boot).
    pub kernel: PathBuf,
    pub kernel_kind: KernelKind,
    /// Must contain `/usr/bin/kiln-agent` built from this workspace.
    pub initramfs: PathBuf,
    /// Raw base disk of the `debian` image flavour. Never written: each VM
    /// gets a qcow2 overlay on top of it.
    pub rootfs_image: Option<PathBuf>,
    /// `qemu-img`, for the overlays of `rootfs_image`.
    pub qemu_img_binary: PathBuf,
    /// `passt`, the user-mode NAT of `Network::Nat`.
    pub passt_binary: PathBuf,
    pub accel: AccelMode,
    /// Parent of the per-VM directories `<state_dir>/<vm-id>/`.
    pub state_dir: PathBuf,
    /// From QEMU's start until the agent answers `hello`.
    pub boot_timeout: Duration,
    /// How long `release` waits for the guest to power off after the agent
    /// confirmed `shutdown`, before QEMU is killed.
    pub shutdown_timeout: Duration,
    /// Upper bound of `console.log`: its head and its latest part are kept.
    pub console_log_cap_bytes: u64,
    /// The ladder for timed-out or cancelled commands in the guest.
    pub kill_grace: KillGrace,
    /// How long one agent request may wait for its next reply, and how long
    /// the agent may stay silent (despite keepalives) before the VM counts
    /// as dead.
    pub agent_request_timeout: Duration,
    pub agent_idle_timeout: Duration,
    /// Appended to the guest kernel command line, for debugging
    /// (`kiln.debug=1` traces /init) and for tests.
    pub extra_kernel_args: Vec<String>,
}

impl QemuConfig {
    /// The standard layout of a Kiln data directory (`$KILN_HOME`, by default
    /// `~/.local/share/kiln`): the newest `kernels/minimal-*/vmlinux`,
    /// `initramfs/minimal.cpio`, state below `qemu-vms/`. Nothing is checked
    /// here; [`QemuProvider::new`](super::QemuProvider::new) does that.
    pub fn from_data_dir(data_dir: &Path) -> QemuConfig {
        let kernels = data_dir.join("kernels");
        let kernel = newest_kernel(&kernels, "minimal-")
            .unwrap_or_else(|| kernels.join("minimal-<version>").join("vmlinux"));
        QemuConfig {
            qemu_binary: PathBuf::from("qemu-system-x86_64"),
            kernel,
            kernel_kind: KernelKind::Minimal,
            initramfs: data_dir.join("initramfs").join("minimal.cpio"),
            rootfs_image: None,
            qemu_img_binary: PathBuf::from("qemu-img"),
            passt_binary: PathBuf::from("passt"),
            accel: AccelMode::Auto,
            state_dir: data_dir.join("qemu-vms"),
            boot_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(5),
            console_log_cap_bytes: 1024 * 1024,
            kill_grace: KillGrace::default(),
            agent_request_timeout: Duration::from_secs(30),
            agent_idle_timeout: Duration::from_secs(20),
            extra_kernel_args: Vec::new(),
        }
    }

    /// `$KILN_HOME`, else `~/.local/share/kiln` (the CLI's rule).
    pub fn default_data_dir() -> Option<PathBuf> {
        if let Some(home) = std::env::var_os("KILN_HOME") {
            return Some(home.into());
        }
        std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share/kiln"))
    }

    /// Checks that QEMU and the images exist; returns the resolved QEMU path.
    pub(crate) fn check(&self) -> Result<Checked, SetupError> {
        let qemu = which(&self.qemu_binary).ok_or_else(|| SetupError::MissingTool {
            tool: "qemu",
            name: self.qemu_binary.display().to_string(),
            fix: "run ./scripts/setup.sh (installs qemu-system-x86)",
        })?;
        let image = |what, path: &Path| {
            if path.is_file() {
                Ok(())
            } else {
                Err(SetupError::MissingImage {
                    what,
                    path: path.to_owned(),
                })
            }
        };
        image("kernel", &self.kernel)?;
        image("initramfs", &self.initramfs)?;
        let qemu_img = match &self.rootfs_image {
            Some(rootfs) => {
                image("rootfs image", rootfs)?;
                Some(
                    which(&self.qemu_img_binary).ok_or_else(|| SetupError::MissingTool {
                        tool: "qemu-img",
                        name: self.qemu_img_binary.display().to_string(),
                        fix: "run ./scripts/setup.sh (installs qemu-utils)",
                    })?,
                )
            }
            None => None,
        };
        Ok(Checked {
            qemu,
            qemu_img,
            passt: which(&self.passt_binary),
        })
    }
}

/// Host tools as resolved at setup.
#[derive(Debug, Clone)]
pub(crate) struct Checked {
    pub qemu: PathBuf,
    pub qemu_img: Option<PathBuf>,
    /// `None`: NAT allocations fail with an error naming the fix.
    pub passt: Option<PathBuf>,
}

/// The most recently built `<prefix>*/vmlinux` below `dir`: rebuilding the
/// kernel with another config fragment adds a directory, and the newest is
/// the one meant.
fn newest_kernel(dir: &Path, prefix: &str) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path().join("vmlinux"))
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .max()
        .map(|(_, p)| p)
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

    #[test]
    fn missing_images_name_the_fix() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut config = QemuConfig::from_data_dir(tmp.path());
        // Any executable stands in for QEMU: the images are what is missing.
        config.qemu_binary = PathBuf::from("sh");
        let err = config.check().expect_err("no kernel");
        let shown = err.to_string();
        assert!(shown.starts_with("guest kernel not found at "), "{shown}");
        assert!(shown.ends_with(IMAGE_FIX), "{shown}");

        config.qemu_binary = PathBuf::from("kiln-no-such-qemu");
        let shown = config.check().expect_err("no qemu").to_string();
        assert!(shown.contains("scripts/setup.sh"), "{shown}");
    }

    #[test]
    fn the_newest_kernel_wins() -> std::io::Result<()> {
        let tmp = tempfile::tempdir()?;
        for name in ["minimal-a", "minimal-b", "stock-c"] {
            std::fs::create_dir(tmp.path().join(name))?;
            std::fs::write(tmp.path().join(name).join("vmlinux"), b"")?;
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            newest_kernel(tmp.path(), "minimal-"),
            Some(tmp.path().join("minimal-b/vmlinux"))
        );
        assert_eq!(newest_kernel(&tmp.path().join("none"), "minimal-"), None);
        Ok(())
    }
}
