//! Kiln's guest images: where they live, what describes them, how they are
//! built.
//!
//! An image is what one guest boots from: a kernel, an initramfs and, for
//! the `debian` flavour, a raw ext4 root disk. Images are immutable once
//! built and live in the data directory (`$KILN_HOME`, by default
//! `~/.local/share/kiln`):
//!
//! ```text
//! images/<flavour>/<version-id>/manifest.json   what is in it (see Manifest)
//! images/<flavour>/<version-id>/vmlinux          the kernel (hard link into kernels/ when possible)
//! images/<flavour>/<version-id>/initramfs.cpio
//! images/<flavour>/<version-id>/rootfs.raw       debian only: read-only base disk
//! images/<flavour>/current -> <version-id>       the version `resolve` hands out
//! ```
//!
//! The version id is a hash of everything the image is made from (kernel
//! artifact, agent binary, init scripts, build scripts, flavour): the same
//! inputs give the same id, so a second `build` finds the image and does
//! nothing ("up to date"). A new build is staged in a `.tmp-*` directory and
//! renamed into place, and `current` is replaced by an atomic rename, so a
//! reader never sees a half-built image. Older versions stay until
//! [`ImageStore::remove`]; a VM that is still running from one keeps working.
//!
//! Building runs the repository's scripts (`scripts/build-kernel.sh`,
//! `fetch-stock-kernel.sh`, `build-initramfs.sh`, `build-rootfs.sh`) with
//! `KILN_HOME` set to the store's data directory; their own caches
//! (`kernels/`, `build/`) live there too.
//!
//! Invariant: this crate never starts a VM and knows nothing of QEMU; the
//! qemu backend gets plain paths from [`ResolvedImage`].

mod build;
mod error;
mod hash;
mod manifest;
mod store;

pub use build::{BuildOptions, BuildOutcome, BuildStatus};
pub use error::ImageError;
pub use hash::{Inputs, sha256_bytes, sha256_file};
pub use manifest::{
    AgentInfo, Artifact, DiskFormat, Flavour, KernelArtifact, KernelKind, MANIFEST_SCHEMA,
    Manifest, RootfsArtifact,
};
pub use store::{ImageStore, Removed, ResolvedImage};
