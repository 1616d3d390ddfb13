//! `manifest.json`: what one image version is made of.
//!
//! Paths in a manifest are relative to the image's own directory, so a data
//! directory can be moved. The manifest is written once, after every file it
//! names is in place, and never changed.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::ImageError;

/// The manifest format this crate reads and writes. A manifest with another
/// schema is an error that says to rebuild, never a silent misreading.
pub const MANIFEST_SCHEMA: u32 = 1;

/// What the guest's root filesystem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavour {
    /// Kernel + initramfs (busybox, bash, the agent); the root is the
    /// initramfs itself, in RAM.
    Minimal,
    /// Kernel + a small initramfs that mounts a Debian bookworm root disk
    /// (`/dev/vda`) and switches into it.
    Debian,
}

impl Flavour {
    pub const ALL: [Flavour; 2] = [Flavour::Minimal, Flavour::Debian];

    pub fn as_str(self) -> &'static str {
        match self {
            Flavour::Minimal => "minimal",
            Flavour::Debian => "debian",
        }
    }

    /// The command that builds this flavour (named by error messages).
    pub fn build_command(self) -> &'static str {
        match self {
            Flavour::Minimal => "kiln image build",
            Flavour::Debian => "kiln image build --flavour debian",
        }
    }
}

impl fmt::Display for Flavour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Flavour {
    type Err = ImageError;
    fn from_str(s: &str) -> Result<Flavour, ImageError> {
        Flavour::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| ImageError::UnknownFlavour(s.to_owned()))
    }
}

/// Which kernel an image boots. It decides the QEMU machine options (see
/// images/README.md): the minimal kernel has no ACPI and no modules, the
/// stock one needs both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KernelKind {
    /// Our tinyconfig kernel (`scripts/build-kernel.sh`).
    Minimal,
    /// Debian's kernel (`scripts/fetch-stock-kernel.sh`); its modules are in
    /// the initramfs.
    Stock,
}

impl KernelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KernelKind::Minimal => "minimal",
            KernelKind::Stock => "stock",
        }
    }
}

impl fmt::Display for KernelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KernelKind {
    type Err = ImageError;
    fn from_str(s: &str) -> Result<KernelKind, ImageError> {
        match s {
            "minimal" => Ok(KernelKind::Minimal),
            "stock" => Ok(KernelKind::Stock),
            _ => Err(ImageError::UnknownKernelKind(s.to_owned())),
        }
    }
}

/// One file of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// Relative to the image directory.
    pub path: PathBuf,
    /// Lowercase hex SHA-256 of the contents.
    pub sha256: String,
    /// Length in bytes (a sparse disk image takes less space than this).
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelArtifact {
    pub kind: KernelKind,
    /// Relative to the image directory: an uncompressed ELF `vmlinux`.
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
    /// Where it came from, e.g. `linux-source-6.1 6.1.192-2, fragment
    /// 9cd45ca6ac49` or `linux-image-6.1.0-56-amd64`.
    pub source_version: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    Raw,
}

/// The root disk of the `debian` flavour: a read-only base; each VM writes
/// to its own copy-on-write overlay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootfsArtifact {
    /// Relative to the image directory.
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
    pub format: DiskFormat,
}

/// The guest agent baked into the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    pub sha256: String,
    /// The version of the kiln that built the image (and so, normally, the
    /// agent).
    pub kiln_version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_SCHEMA`] when written.
    pub schema: u32,
    pub flavour: Flavour,
    /// Hash of `inputs` (see [`Inputs::version_id`](crate::Inputs::version_id));
    /// also the directory name.
    pub version_id: String,
    pub kernel: KernelArtifact,
    pub initramfs: Artifact,
    pub rootfs: Option<RootfsArtifact>,
    pub agent: AgentInfo,
    /// RFC 3339, UTC, seconds.
    pub built_at: String,
    /// Versions of the tools and packages that went in (`kiln`, `busybox-static`,
    /// `debootstrap`, …), for the record: they are not part of the id.
    pub builder_versions: BTreeMap<String, String>,
    /// What the version id hashes: name → hash or value.
    pub inputs: BTreeMap<String, String>,
}

impl Manifest {
    pub const FILE_NAME: &'static str = "manifest.json";

    /// Reads and checks `dir/manifest.json`.
    pub fn load(dir: &Path) -> Result<Manifest, ImageError> {
        let path = dir.join(Manifest::FILE_NAME);
        let text = std::fs::read_to_string(&path).map_err(|source| ImageError::Io {
            action: "cannot read",
            path: path.clone(),
            source,
        })?;
        Manifest::parse(&text, &path)
    }

    /// Parses a manifest's text; `path` is only for error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Manifest, ImageError> {
        #[derive(Deserialize)]
        struct SchemaOnly {
            schema: u32,
        }
        let bad = |source| ImageError::BadManifest {
            path: path.to_owned(),
            source,
        };
        // The schema first, so a future format is reported as such rather
        // than as a missing field.
        let SchemaOnly { schema } = serde_json::from_str(text).map_err(bad)?;
        if schema != MANIFEST_SCHEMA {
            return Err(ImageError::Schema {
                path: path.to_owned(),
                found: schema,
                expected: MANIFEST_SCHEMA,
            });
        }
        serde_json::from_str(text).map_err(bad)
    }

    /// Writes `dir/manifest.json` (pretty, trailing newline).
    pub fn save(&self, dir: &Path) -> Result<(), ImageError> {
        let path = dir.join(Manifest::FILE_NAME);
        let mut text =
            serde_json::to_string_pretty(self).map_err(|source| ImageError::BadManifest {
                path: path.clone(),
                source,
            })?;
        text.push('\n');
        std::fs::write(&path, text).map_err(|source| ImageError::Io {
            action: "cannot write",
            path,
            source,
        })
    }

    /// Every file the manifest names, relative to the image directory.
    pub fn files(&self) -> Vec<&Path> {
        let mut files = vec![self.kernel.path.as_path(), self.initramfs.path.as_path()];
        if let Some(rootfs) = &self.rootfs {
            files.push(rootfs.path.as_path());
        }
        files
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flavour_and_kernel_kind_parse_their_names() {
        for f in Flavour::ALL {
            assert_eq!(f.as_str().parse::<Flavour>().unwrap(), f);
        }
        assert!("alpine".parse::<Flavour>().is_err());
        assert_eq!("stock".parse::<KernelKind>().unwrap(), KernelKind::Stock);
        assert!("big".parse::<KernelKind>().is_err());
    }

    #[test]
    fn another_schema_is_reported_as_such() {
        let err =
            Manifest::parse(r#"{"schema": 2, "whatever": true}"#, Path::new("m.json")).unwrap_err();
        assert!(matches!(err, ImageError::Schema { found: 2, .. }), "{err}");
    }
}
