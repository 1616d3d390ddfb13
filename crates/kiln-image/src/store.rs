//! The image store: listing, resolving and removing images under
//! `<data_dir>/images/`. Building is in `build.rs`.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::error::{ImageError, io_err};
use crate::manifest::{Flavour, KernelKind, Manifest};

/// The images of one data directory (`$KILN_HOME`).
#[derive(Debug, Clone)]
pub struct ImageStore {
    data_dir: PathBuf,
}

/// An image ready to boot: absolute paths that existed when resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    /// The read-only base disk (`debian` flavour); the VM must get a
    /// copy-on-write overlay on top of it, never write it.
    pub rootfs: Option<PathBuf>,
    pub kernel_kind: KernelKind,
    /// The image's directory.
    pub dir: PathBuf,
    pub manifest: Manifest,
}

/// What [`ImageStore::remove`] deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    pub flavour: Flavour,
    /// Version ids deleted.
    pub version_ids: Vec<String>,
    /// The flavour's `current` afterwards (`None`: no image of it left).
    pub current: Option<String>,
}

const CURRENT: &str = "current";

impl ImageStore {
    /// The store in `data_dir` (usually `$KILN_HOME`). Nothing is created
    /// until something is built.
    pub fn open(data_dir: impl Into<PathBuf>) -> Result<ImageStore, ImageError> {
        let data_dir = data_dir.into();
        match std::fs::metadata(&data_dir) {
            Ok(meta) if !meta.is_dir() => Err(ImageError::Io {
                action: "not a directory:",
                path: data_dir,
                source: std::io::Error::from(ErrorKind::NotADirectory),
            }),
            Ok(_) => Ok(ImageStore { data_dir }),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(ImageStore { data_dir }),
            Err(e) => Err(io_err("cannot read", &data_dir)(e)),
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn flavour_dir(&self, flavour: Flavour) -> PathBuf {
        self.data_dir.join("images").join(flavour.as_str())
    }

    pub fn image_dir(&self, flavour: Flavour, version_id: &str) -> PathBuf {
        self.flavour_dir(flavour).join(version_id)
    }

    /// The version `resolve` hands out for `flavour`, if any.
    pub fn current_id(&self, flavour: Flavour) -> Result<Option<String>, ImageError> {
        let link = self.flavour_dir(flavour).join(CURRENT);
        match std::fs::read_link(&link) {
            Ok(target) => Ok(Some(target.to_string_lossy().into_owned())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("cannot read", &link)(e)),
        }
    }

    /// Every image, by flavour, newest first within a flavour.
    pub fn list(&self) -> Result<Vec<Manifest>, ImageError> {
        let mut all = Vec::new();
        for flavour in Flavour::ALL {
            let mut manifests = self
                .version_ids(flavour)?
                .iter()
                .map(|id| Manifest::load(&self.image_dir(flavour, id)))
                .collect::<Result<Vec<_>, _>>()?;
            manifests.sort_by(|a, b| b.built_at.cmp(&a.built_at));
            all.extend(manifests);
        }
        Ok(all)
    }

    /// The `current` image of `flavour`, checked to be complete.
    pub fn resolve(&self, flavour: Flavour) -> Result<ResolvedImage, ImageError> {
        let id = self
            .current_id(flavour)?
            .ok_or(ImageError::NotBuilt { flavour })?;
        self.resolve_version(flavour, &id)
    }

    /// One version of `flavour`, current or not, checked to be complete.
    pub fn resolve_version(&self, flavour: Flavour, id: &str) -> Result<ResolvedImage, ImageError> {
        let id = id.to_owned();
        let dir = self.image_dir(flavour, &id);
        if !dir.is_dir() {
            return Err(ImageError::NotBuilt { flavour });
        }
        let manifest = Manifest::load(&dir)?;
        if let Some(missing) = missing_file(&dir, &manifest) {
            return Err(ImageError::Incomplete {
                flavour,
                id,
                missing,
            });
        }
        Ok(ResolvedImage {
            kernel: dir.join(&manifest.kernel.path),
            initramfs: dir.join(&manifest.initramfs.path),
            rootfs: manifest.rootfs.as_ref().map(|r| dir.join(&r.path)),
            kernel_kind: manifest.kernel.kind,
            dir,
            manifest,
        })
    }

    /// Deletes a whole flavour (`minimal`, `debian`), or one version
    /// (`<id>` or `<flavour>/<id>`). Removing the current version points
    /// `current` at the newest one left, if any.
    pub fn remove(&self, target: &str) -> Result<Removed, ImageError> {
        let not_found = || ImageError::NotFound {
            target: target.to_owned(),
        };
        if let Ok(flavour) = target.parse::<Flavour>() {
            let dir = self.flavour_dir(flavour);
            let version_ids = self.version_ids(flavour)?;
            if version_ids.is_empty() {
                // Nothing to remove (a leftover empty directory goes quietly).
                let _ = std::fs::remove_dir_all(&dir);
                return Err(not_found());
            }
            std::fs::remove_dir_all(&dir).map_err(io_err("cannot remove", &dir))?;
            return Ok(Removed {
                flavour,
                version_ids,
                current: None,
            });
        }
        let (flavour, id) = match target.split_once('/') {
            Some((f, id)) => (f.parse::<Flavour>()?, id),
            None => {
                let flavour = Flavour::ALL
                    .into_iter()
                    .find(|&f| {
                        self.version_ids(f)
                            .is_ok_and(|ids| ids.iter().any(|i| i == target))
                    })
                    .ok_or_else(not_found)?;
                (flavour, target)
            }
        };
        if !self.version_ids(flavour)?.iter().any(|i| i == id) {
            return Err(not_found());
        }
        let dir = self.image_dir(flavour, id);
        std::fs::remove_dir_all(&dir).map_err(io_err("cannot remove", &dir))?;
        let mut current = self.current_id(flavour)?;
        if current.as_deref() == Some(id) {
            // The newest remaining complete image, else none.
            current = self
                .list()?
                .into_iter()
                .filter(|m| m.flavour == flavour)
                .find(|m| missing_file(&self.image_dir(flavour, &m.version_id), m).is_none())
                .map(|m| m.version_id);
            match &current {
                Some(next) => self.set_current(flavour, next)?,
                None => {
                    let link = self.flavour_dir(flavour).join(CURRENT);
                    std::fs::remove_file(&link).map_err(io_err("cannot remove", &link))?;
                }
            }
        }
        Ok(Removed {
            flavour,
            version_ids: vec![id.to_owned()],
            current,
        })
    }

    /// Version directories of a flavour (names not starting with `.`).
    pub(crate) fn version_ids(&self, flavour: Flavour) -> Result<Vec<String>, ImageError> {
        let dir = self.flavour_dir(flavour);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("cannot read", &dir)(e)),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err("cannot read", &dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if is_dir && !name.starts_with('.') {
                ids.push(name);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Points `current` at `version_id`, atomically (a new symlink renamed
    /// over the old one).
    pub(crate) fn set_current(&self, flavour: Flavour, version_id: &str) -> Result<(), ImageError> {
        let dir = self.flavour_dir(flavour);
        let tmp = dir.join(format!(".{CURRENT}-{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(version_id, &tmp).map_err(io_err("cannot create", &tmp))?;
        let link = dir.join(CURRENT);
        std::fs::rename(&tmp, &link).map_err(io_err("cannot replace", &link))
    }
}

/// The first file the manifest names that is not in `dir`.
pub(crate) fn missing_file(dir: &Path, manifest: &Manifest) -> Option<PathBuf> {
    manifest
        .files()
        .into_iter()
        .map(|f| dir.join(f))
        .find(|p| !p.is_file())
}
