//! Why the qemu backend cannot be set up on this host.
//!
//! These are the errors of [`QemuProvider::new`](super::QemuProvider::new):
//! a missing tool or image is a setup problem the user fixes once, so each
//! message names the fix. Errors of one machine are [`VmError`](crate::VmError)s.

use std::io;
use std::path::PathBuf;

/// The command that builds the guest image, named in every "image missing"
/// message.
pub const IMAGE_FIX: &str = "run ./scripts/setup.sh && kiln image build";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// QEMU (or another host tool) is not installed.
    #[error("{tool} not found (looked for `{name}`): {fix}")]
    MissingTool {
        tool: &'static str,
        name: String,
        fix: &'static str,
    },
    /// `kiln image build` has not produced a usable image yet.
    #[error("no usable guest image in {}: {IMAGE_FIX}", dir.display())]
    NoImage {
        dir: PathBuf,
        #[source]
        source: kiln_image::ImageError,
    },
    /// The kernel, initramfs or root disk is not where the config says.
    #[error("guest {what} not found at {}: {IMAGE_FIX}", path.display())]
    MissingImage { what: &'static str, path: PathBuf },
    /// `accel: kvm` was forced but this host cannot run KVM guests.
    #[error("kvm was forced but is not usable here: {0}")]
    KvmUnusable(String),
    /// The per-VM state directories cannot be created.
    #[error("cannot create the state directory {}", path.display())]
    StateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Unix socket paths are limited to 107 bytes; the state directory
    /// leaves too little room for `<vm-id>/agent.sock`.
    #[error(
        "state directory {} is too long for unix socket paths ({len} of at most {max} bytes): \
         use a shorter state_dir or KILN_HOME",
        path.display()
    )]
    StateDirTooLong {
        path: PathBuf,
        len: usize,
        max: usize,
    },
}
