//! Building an image with the repository's scripts.
//!
//! 1. The kernel: `build-kernel.sh` (minimal; falls back to the stock kernel
//!    with a warning when it fails) or `fetch-stock-kernel.sh`. Both cache
//!    their result, so this is instant after the first time.
//! 2. The version id from the inputs (kernel, agent, init scripts, build
//!    scripts, flavour). An existing complete image with that id means
//!    "up to date": only `current` is (re)pointed at it.
//! 3. Otherwise, in a staging directory: the kernel (hard link), the
//!    initramfs (`build-initramfs.sh`), for `debian` the root disk
//!    (`build-rootfs.sh`), their hashes, the manifest; then one rename.

use std::ffi::OsString;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{ImageError, io_err};
use crate::hash::{Inputs, sha256_file};
use crate::manifest::{
    AgentInfo, Artifact, DiskFormat, Flavour, KernelArtifact, KernelKind, MANIFEST_SCHEMA,
    Manifest, RootfsArtifact,
};
use crate::store::{ImageStore, missing_file};

/// What to build and with what.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub flavour: Flavour,
    /// The kernel wanted; `Minimal` falls back to `Stock` if it cannot be built.
    pub kernel: KernelKind,
    /// The static `kiln-agent` binary to put into the image.
    pub agent_path: PathBuf,
    /// The repository's `scripts/` directory; its parent must hold `images/`.
    pub scripts_dir: PathBuf,
    /// Show the scripts' output and the steps on stderr. Without it, output
    /// is captured and its end is put into the error of a failed script.
    pub progress: bool,
    /// Rebuild even if an image with the same inputs exists.
    pub force: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildStatus {
    /// A new image was built and made current.
    Built,
    /// An image with the same inputs already existed; it is current now.
    UpToDate,
}

#[derive(Debug, Clone)]
pub struct BuildOutcome {
    pub status: BuildStatus,
    pub manifest: Manifest,
    pub dir: PathBuf,
    /// E.g. the fallback to the stock kernel (also printed with `progress`).
    pub warnings: Vec<String>,
}

/// The device the `debian` flavour's initramfs mounts as root: the first
/// virtio-blk disk, which the qemu backend attaches first.
pub const DEBIAN_ROOT_DEVICE: &str = "/dev/vda";

const KERNEL_FILE: &str = "vmlinux";
const INITRAMFS_FILE: &str = "initramfs.cpio";
const ROOTFS_FILE: &str = "rootfs.raw";

impl ImageStore {
    /// Builds (or finds up to date) an image and makes it `current`.
    pub fn build(&self, options: &BuildOptions) -> Result<BuildOutcome, ImageError> {
        Builder {
            store: self,
            opts: options,
            warnings: Vec::new(),
            make_current: true,
        }
        .run()
    }

    /// Like [`build`](Self::build), but leaves the flavour's `current`
    /// alone: for a variant that is used by explicit version id (`kiln
    /// bench`'s stock-kernel image), never handed out by `resolve`.
    pub fn build_variant(&self, options: &BuildOptions) -> Result<BuildOutcome, ImageError> {
        Builder {
            store: self,
            opts: options,
            warnings: Vec::new(),
            make_current: false,
        }
        .run()
    }
}

struct Builder<'a> {
    store: &'a ImageStore,
    opts: &'a BuildOptions,
    warnings: Vec<String>,
    /// Point `current` at the result (`build`), or not (`build_variant`).
    make_current: bool,
}

/// The kernel the scripts produced.
struct Kernel {
    kind: KernelKind,
    vmlinux: PathBuf,
    sha256: String,
    source_version: String,
    /// The stock kernel's directory (modules for the initramfs).
    stock_dir: Option<PathBuf>,
}

/// Repository files that go into the version id.
struct Sources {
    init: PathBuf,
    rootfs_init: PathBuf,
}

fn hash(path: &Path) -> Result<String, ImageError> {
    sha256_file(path).map_err(io_err("cannot read", path))
}

impl Builder<'_> {
    fn run(mut self) -> Result<BuildOutcome, ImageError> {
        let opts = self.opts;
        if !opts.agent_path.is_file() {
            return Err(ImageError::MissingInput {
                what: "agent binary",
                path: opts.agent_path.clone(),
                fix: "build it with `RUSTFLAGS='-C target-feature=+crt-static -C relocation-model=static' \
                      cargo build --profile agent \
                      --target x86_64-unknown-linux-gnu -p kiln-agent --target-dir target/agent`",
            });
        }
        let sources = self.sources()?;
        let agent_sha256 = hash(&opts.agent_path)?;
        let kernel = self.kernel()?;
        let inputs = self.inputs(&kernel, &sources, &agent_sha256)?;
        let id = inputs.version_id();
        let flavour = opts.flavour;
        let dir = self.store.image_dir(flavour, &id);

        if dir.is_dir() {
            let existing = Manifest::load(&dir);
            match existing {
                Ok(manifest) if !opts.force && missing_file(&dir, &manifest).is_none() => {
                    if self.make_current {
                        self.store.set_current(flavour, &id)?;
                    }
                    self.note(&format!("{flavour}/{id} is up to date"));
                    return Ok(BuildOutcome {
                        status: BuildStatus::UpToDate,
                        manifest,
                        dir,
                        warnings: self.warnings,
                    });
                }
                Ok(_) if opts.force => self.note(&format!("rebuilding {flavour}/{id} (--force)")),
                _ => self.note(&format!("{flavour}/{id} is incomplete: rebuilding it")),
            }
        }

        let flavour_dir = self.store.flavour_dir(flavour);
        std::fs::create_dir_all(&flavour_dir).map_err(io_err("cannot create", &flavour_dir))?;
        remove_stale_staging(&flavour_dir);
        let staging = flavour_dir.join(format!(".tmp-{id}-{}", std::process::id()));
        std::fs::create_dir_all(&staging).map_err(io_err("cannot create", &staging))?;
        self.note(&format!("building {flavour}/{id} in {}", staging.display()));

        let agent = AgentInfo {
            sha256: agent_sha256,
            kiln_version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        let manifest = match self.build_into(&staging, &id, &kernel, agent, inputs) {
            Ok(manifest) => manifest,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(e);
            }
        };
        // A forced rebuild replaces the directory; the old one is moved
        // aside first, so the id's directory is never half there.
        let old = flavour_dir.join(format!(".old-{id}-{}", std::process::id()));
        let replacing = dir.exists();
        if replacing {
            std::fs::rename(&dir, &old).map_err(io_err("cannot move aside", &dir))?;
        }
        if let Err(e) = std::fs::rename(&staging, &dir) {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(io_err("cannot move the new image to", &dir)(e));
        }
        if replacing {
            let _ = std::fs::remove_dir_all(&old);
        }
        if self.make_current {
            self.store.set_current(flavour, &id)?;
        }
        self.note(&format!("built {flavour}/{id}: {}", dir.display()));
        Ok(BuildOutcome {
            status: BuildStatus::Built,
            manifest,
            dir,
            warnings: self.warnings,
        })
    }

    fn build_into(
        &self,
        staging: &Path,
        id: &str,
        kernel: &Kernel,
        agent: AgentInfo,
        inputs: Inputs,
    ) -> Result<Manifest, ImageError> {
        let opts = self.opts;
        let vmlinux = staging.join(KERNEL_FILE);
        link_or_copy(&kernel.vmlinux, &vmlinux)?;

        let initramfs = staging.join(INITRAMFS_FILE);
        let mut args: Vec<OsString> = vec!["--compress".into(), "none".into(), "--out".into()];
        args.push(initramfs.clone().into());
        match opts.flavour {
            // The agent runs from the initramfs.
            Flavour::Minimal => args.extend(["--agent".into(), opts.agent_path.clone().into()]),
            // The agent runs from the root disk; the initramfs only mounts it.
            Flavour::Debian => args.extend(["--root".into(), DEBIAN_ROOT_DEVICE.into()]),
        }
        if let Some(stock_dir) = &kernel.stock_dir {
            args.extend(["--kernel-dir".into(), stock_dir.clone().into()]);
        }
        self.note("initramfs (scripts/build-initramfs.sh)");
        self.run_script("build-initramfs.sh", &args)?;

        let rootfs = match opts.flavour {
            Flavour::Minimal => None,
            Flavour::Debian => {
                let raw = staging.join(ROOTFS_FILE);
                self.note("root disk (scripts/build-rootfs.sh; debootstrap is cached after the first build)");
                self.run_script(
                    "build-rootfs.sh",
                    &[
                        "--agent".into(),
                        opts.agent_path.clone().into(),
                        "--out".into(),
                        raw.clone().into(),
                    ],
                )?;
                self.note("hashing the root disk");
                Some(RootfsArtifact {
                    path: ROOTFS_FILE.into(),
                    sha256: hash(&raw)?,
                    size: file_size(&raw)?,
                    format: DiskFormat::Raw,
                })
            }
        };

        let manifest = Manifest {
            schema: MANIFEST_SCHEMA,
            flavour: opts.flavour,
            version_id: id.to_owned(),
            kernel: KernelArtifact {
                kind: kernel.kind,
                path: KERNEL_FILE.into(),
                sha256: kernel.sha256.clone(),
                size: file_size(&vmlinux)?,
                source_version: kernel.source_version.clone(),
            },
            initramfs: Artifact {
                path: INITRAMFS_FILE.into(),
                sha256: hash(&initramfs)?,
                size: file_size(&initramfs)?,
            },
            rootfs,
            agent,
            built_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            builder_versions: self.builder_versions(kernel.kind),
            inputs: inputs.into_map(),
        };
        manifest.save(staging)?;
        Ok(manifest)
    }

    fn sources(&self) -> Result<Sources, ImageError> {
        let repo = self
            .opts
            .scripts_dir
            .parent()
            .unwrap_or(&self.opts.scripts_dir);
        let sources = Sources {
            init: repo.join("images/initramfs/init"),
            rootfs_init: repo.join("images/rootfs/kiln-init"),
        };
        let needed = match self.opts.flavour {
            Flavour::Minimal => vec![&sources.init],
            Flavour::Debian => vec![&sources.init, &sources.rootfs_init],
        };
        for path in needed {
            if !path.is_file() {
                return Err(ImageError::MissingInput {
                    what: "guest init script",
                    path: path.clone(),
                    fix: "the scripts directory must be the `scripts/` of a kiln checkout \
                          (set KILN_SCRIPTS_DIR)",
                });
            }
        }
        Ok(sources)
    }

    /// Everything the image is made from; see [`Inputs::version_id`].
    fn inputs(
        &self,
        kernel: &Kernel,
        sources: &Sources,
        agent_sha256: &str,
    ) -> Result<Inputs, ImageError> {
        let mut inputs = Inputs::new();
        inputs.insert("flavour", self.opts.flavour.as_str());
        inputs.insert("kernel.kind", kernel.kind.as_str());
        inputs.insert("kernel.sha256", kernel.sha256.clone());
        inputs.insert("agent.sha256", agent_sha256);
        inputs.insert("init.sha256", hash(&sources.init)?);
        inputs.insert(
            "script.build-initramfs.sh",
            hash(&self.script_path("build-initramfs.sh")?)?,
        );
        if kernel.kind == KernelKind::Stock {
            // Which modules the initramfs carries is decided there.
            inputs.insert(
                "script.fetch-stock-kernel.sh",
                hash(&self.script_path("fetch-stock-kernel.sh")?)?,
            );
        }
        if self.opts.flavour == Flavour::Debian {
            inputs.insert("rootfs-init.sha256", hash(&sources.rootfs_init)?);
            inputs.insert(
                "script.build-rootfs.sh",
                hash(&self.script_path("build-rootfs.sh")?)?,
            );
        }
        Ok(inputs)
    }

    fn kernel(&mut self) -> Result<Kernel, ImageError> {
        match self.opts.kernel {
            KernelKind::Stock => self.stock_kernel(),
            KernelKind::Minimal => match self.minimal_kernel() {
                Ok(kernel) => Ok(kernel),
                Err(e) => {
                    self.warn(format!(
                        "the minimal kernel could not be built ({e}); \
                         falling back to Debian's stock kernel (slower boots)"
                    ));
                    self.stock_kernel()
                }
            },
        }
    }

    fn minimal_kernel(&self) -> Result<Kernel, ImageError> {
        self.note("minimal kernel (scripts/build-kernel.sh; minutes the first time, then cached)");
        self.run_script("build-kernel.sh", &[])?;
        let vmlinux = self.print_path("build-kernel.sh")?;
        let dir = vmlinux.parent().unwrap_or(Path::new("."));
        // build-info: `source=linux-source-6.1 6.1.192-2`, `fragment_sha256_12=…`
        let info = std::fs::read_to_string(dir.join("build-info")).unwrap_or_default();
        let field = |key: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(str::to_owned)
        };
        let source_version = match (field("source"), field("fragment_sha256_12")) {
            (Some(source), Some(fragment)) => format!("{source}, fragment {fragment}"),
            _ => dir_name(dir),
        };
        Ok(Kernel {
            kind: KernelKind::Minimal,
            sha256: hash(&vmlinux)?,
            vmlinux,
            source_version,
            stock_dir: None,
        })
    }

    fn stock_kernel(&self) -> Result<Kernel, ImageError> {
        self.note("stock kernel (scripts/fetch-stock-kernel.sh; cached after the first fetch)");
        self.run_script("fetch-stock-kernel.sh", &[])?;
        let dir = self.print_path("fetch-stock-kernel.sh")?;
        let vmlinux = dir.join("vmlinux");
        // `package`: `linux-image-6.1.0-56-amd64`
        let source_version = std::fs::read_to_string(dir.join("package"))
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| dir_name(&dir));
        Ok(Kernel {
            kind: KernelKind::Stock,
            sha256: hash(&vmlinux)?,
            vmlinux,
            source_version,
            stock_dir: Some(dir),
        })
    }

    fn builder_versions(&self, kernel: KernelKind) -> std::collections::BTreeMap<String, String> {
        let mut packages = vec!["busybox-static", "bash-static", "cpio"];
        if kernel == KernelKind::Minimal {
            packages.push("linux-source-6.1");
        }
        if self.opts.flavour == Flavour::Debian {
            packages.extend(["debootstrap", "e2fsprogs"]);
        }
        let mut versions = dpkg_versions(&packages);
        versions.insert("kiln".into(), env!("CARGO_PKG_VERSION").into());
        versions
    }

    fn script_path(&self, name: &str) -> Result<PathBuf, ImageError> {
        let path = self.opts.scripts_dir.join(name);
        if path.is_file() {
            Ok(path)
        } else {
            Err(ImageError::MissingInput {
                what: "build script",
                path,
                fix: "set KILN_SCRIPTS_DIR to the `scripts/` directory of a kiln checkout",
            })
        }
    }

    fn command(&self, name: &str) -> Result<Command, ImageError> {
        // Through bash, so a checkout that lost the executable bits works.
        let mut cmd = Command::new("bash");
        cmd.arg(self.script_path(name)?)
            .env("KILN_HOME", self.store.data_dir())
            .stdin(Stdio::null());
        Ok(cmd)
    }

    /// Runs a script; with `progress` its output (stdout too) goes to our
    /// stderr, so that a caller's stdout stays clean.
    fn run_script(&self, name: &str, args: &[OsString]) -> Result<(), ImageError> {
        let mut cmd = self.command(name)?;
        cmd.args(args);
        let spawn_err = |source| ImageError::Spawn {
            program: format!("bash {name}"),
            source,
        };
        let (status, output) = if self.opts.progress {
            let stderr = std::io::stderr()
                .as_fd()
                .try_clone_to_owned()
                .map_err(spawn_err)?;
            let status = cmd.stdout(stderr).status().map_err(spawn_err)?;
            (status, String::new())
        } else {
            let out = cmd.output().map_err(spawn_err)?;
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            (out.status, text)
        };
        if status.success() {
            Ok(())
        } else {
            Err(ImageError::ScriptFailed {
                script: name.to_owned(),
                status: status.to_string(),
                output,
            })
        }
    }

    /// `SCRIPT --print`: the path of its (cached) result.
    fn print_path(&self, name: &str) -> Result<PathBuf, ImageError> {
        let out = self
            .command(name)?
            .arg("--print")
            .stderr(Stdio::piped())
            .output()
            .map_err(|source| ImageError::Spawn {
                program: format!("bash {name} --print"),
                source,
            })?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !out.status.success() || text.is_empty() || !Path::new(&text).exists() {
            return Err(ImageError::BadScriptOutput {
                script: name.to_owned(),
                output: text,
            });
        }
        Ok(PathBuf::from(text))
    }

    fn note(&self, message: &str) {
        if self.opts.progress {
            eprintln!("kiln image: {message}");
        }
    }

    fn warn(&mut self, message: String) {
        if self.opts.progress {
            eprintln!("kiln image: warning: {message}");
        }
        self.warnings.push(message);
    }
}

fn file_size(path: &Path) -> Result<u64, ImageError> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(io_err("cannot read", path))
}

fn dir_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A hard link (the kernel caches are in the same data directory), else a copy.
fn link_or_copy(from: &Path, to: &Path) -> Result<(), ImageError> {
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to)
        .map(drop)
        .map_err(io_err("cannot copy the kernel to", to))
}

/// Installed versions of Debian packages, for the manifest's record; a
/// package that is not installed (or no dpkg at all) is simply left out.
fn dpkg_versions(packages: &[&str]) -> std::collections::BTreeMap<String, String> {
    let out = Command::new("dpkg-query")
        .arg("-W")
        .arg("-f=${Package} ${Version}\\n")
        .args(packages)
        .stderr(Stdio::null())
        .output();
    let Ok(out) = out else {
        return Default::default();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, v)| !v.is_empty())
        .map(|(p, v)| (p.to_owned(), v.to_owned()))
        .collect()
}

/// Removes the `.tmp-<id>-<pid>` (staging) and `.old-<id>-<pid>` (replaced)
/// directories of builds that died.
fn remove_stale_staging(flavour_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(flavour_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name
            .strip_prefix(".tmp-")
            .or_else(|| name.strip_prefix(".old-"))
        else {
            continue;
        };
        let alive = rest
            .rsplit_once('-')
            .and_then(|(_, pid)| pid.parse::<u32>().ok())
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
