//! `kiln image build|list|rm`: the guest images in `$KILN_HOME/images`
//! (see the kiln-image crate). Building runs this checkout's `scripts/`
//! and, unless `--agent` is given, builds the static guest agent first.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use kiln_image::{BuildOptions, BuildStatus, Flavour, ImageStore, KernelKind, Manifest};

use crate::exit::Code;

#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build an image (nothing to do when its inputs are unchanged) and make
    /// it the flavour's current one.
    Build(BuildArgs),
    /// List the images: flavour, version id, kernel, sizes, build date; `*`
    /// marks the current one of each flavour.
    List,
    /// Remove a flavour's images (`minimal`, `debian`) or one version (`ID`).
    Rm {
        /// A flavour, a version id, or FLAVOUR/ID.
        target: String,
    },
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// What the guest's root filesystem is.
    #[arg(long, value_enum, default_value = "minimal")]
    pub flavour: FlavourArg,
    /// The guest kernel. `minimal` falls back to `stock` if it cannot be built.
    #[arg(long, value_enum, default_value = "minimal")]
    pub kernel: KernelArg,
    /// A static kiln-agent binary. Default: build it from this checkout.
    #[arg(long, value_name = "PATH")]
    pub agent: Option<PathBuf>,
    /// Rebuild even if an image with the same inputs exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FlavourArg {
    /// Kernel + initramfs with busybox, bash and the agent.
    Minimal,
    /// Debian bookworm on a root disk (git, python3, …), booted through a
    /// small initramfs.
    Debian,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KernelArg {
    /// Kiln's tinyconfig kernel (fast boot; built once, a few minutes).
    Minimal,
    /// Debian's kernel (downloaded).
    Stock,
}

pub fn run(args: &ImageArgs) -> anyhow::Result<Code> {
    let store = ImageStore::open(crate::data_dir()?)?;
    match &args.command {
        ImageCommand::Build(build) => run_build(&store, build),
        ImageCommand::List => run_list(&store),
        ImageCommand::Rm { target } => run_rm(&store, target),
    }
}

fn run_build(store: &ImageStore, args: &BuildArgs) -> anyhow::Result<Code> {
    let scripts_dir = scripts_dir()?;
    let agent_path = match &args.agent {
        Some(path) => path.clone(),
        None => build_agent(&scripts_dir)?,
    };
    let options = BuildOptions {
        flavour: match args.flavour {
            FlavourArg::Minimal => Flavour::Minimal,
            FlavourArg::Debian => Flavour::Debian,
        },
        kernel: match args.kernel {
            KernelArg::Minimal => KernelKind::Minimal,
            KernelArg::Stock => KernelKind::Stock,
        },
        agent_path,
        scripts_dir,
        progress: true,
        force: args.force,
    };
    let outcome = store.build(&options)?;
    let m = &outcome.manifest;
    let verb = match outcome.status {
        BuildStatus::Built => "built",
        BuildStatus::UpToDate => "up to date",
    };
    println!(
        "{} image {}: {verb} ({}, {}), current; {}",
        m.flavour,
        m.version_id,
        kernel_label(m),
        sizes(&outcome.dir, m),
        outcome.dir.display()
    );
    Ok(Code::Success)
}

fn run_list(store: &ImageStore) -> anyhow::Result<Code> {
    let images = store.list()?;
    if images.is_empty() {
        eprintln!("no images: run `kiln image build`");
        return Ok(Code::Success);
    }
    let rows: Vec<[String; 5]> = images
        .iter()
        .map(|m| {
            let current = store.current_id(m.flavour).ok().flatten();
            let mark = if current.as_deref() == Some(m.version_id.as_str()) {
                "*"
            } else {
                " "
            };
            let dir = store.image_dir(m.flavour, &m.version_id);
            [
                m.flavour.to_string(),
                format!("{}{mark}", m.version_id),
                kernel_label(m),
                sizes(&dir, m),
                m.built_at.clone(),
            ]
        })
        .collect();
    let header = ["FLAVOUR", "ID", "KERNEL", "SIZE", "BUILT"].map(String::from);
    let mut widths = [0usize; 5];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    println!("(* = current)");
    Ok(Code::Success)
}

fn run_rm(store: &ImageStore, target: &str) -> anyhow::Result<Code> {
    let removed = store.remove(target)?;
    for id in &removed.version_ids {
        println!("removed {}/{id}", removed.flavour);
    }
    match &removed.current {
        Some(id) => println!("{} image {id} is current", removed.flavour),
        None => println!(
            "no {} image left (`{}` builds one)",
            removed.flavour,
            removed.flavour.build_command()
        ),
    }
    Ok(Code::Success)
}

/// `minimal 6.1.192-2` (from `linux-source-6.1 6.1.192-2, fragment …`) or
/// `stock 6.1.0-56-amd64` (from `linux-image-6.1.0-56-amd64`).
fn kernel_label(m: &Manifest) -> String {
    let source = m
        .kernel
        .source_version
        .split(", ")
        .next()
        .unwrap_or_default();
    let version = source.rsplit(' ').next().unwrap_or_default();
    let version = version.strip_prefix("linux-image-").unwrap_or(version);
    format!("{} {version}", m.kernel.kind)
}

/// `kernel 18 MiB + initramfs 4.2 MiB + rootfs 4.0 GiB (361 MiB on disk)`.
fn sizes(dir: &Path, m: &Manifest) -> String {
    let mut text = format!(
        "kernel {} + initramfs {}",
        human(m.kernel.size),
        human(m.initramfs.size)
    );
    if let Some(rootfs) = &m.rootfs {
        text.push_str(&format!(" + rootfs {}", human(rootfs.size)));
        if let Some(used) = on_disk(&dir.join(&rootfs.path)) {
            text.push_str(&format!(" ({} on disk)", human(used)));
        }
    }
    text
}

fn on_disk(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.blocks() * 512)
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else if value < 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// `$KILN_SCRIPTS_DIR`, else the `scripts/` of the checkout this binary was
/// built from.
pub(crate) fn scripts_dir() -> anyhow::Result<PathBuf> {
    let dir = match std::env::var_os("KILN_SCRIPTS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts"),
    };
    if !dir.join("build-initramfs.sh").is_file() {
        bail!(
            "no kiln scripts directory at {} (it needs build-initramfs.sh): \
             set KILN_SCRIPTS_DIR to the scripts/ of a kiln checkout",
            dir.display()
        );
    }
    dir.canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))
}

/// How the guest agent is compiled (see `build_agent`).
const AGENT_RUSTFLAGS: &str = "-C target-feature=+crt-static -C relocation-model=static";

/// Builds the static guest agent in the checkout that holds `scripts_dir`
/// (cargo's output shown on stderr); returns the binary's path.
fn build_agent(scripts_dir: &Path) -> anyhow::Result<PathBuf> {
    const TARGET: &str = "x86_64-unknown-linux-gnu";
    let root = scripts_dir
        .parent()
        .context("the scripts directory has no parent")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!(
        "kiln image: building the static guest agent (cargo build --profile agent -p kiln-agent)"
    );
    let stderr = std::io::stderr();
    let status = Command::new(&cargo)
        .args([
            "build",
            "--profile",
            "agent",
            "--target",
            TARGET,
            "-p",
            "kiln-agent",
        ])
        .args(["--target-dir", "target/agent"])
        // Static and not position-independent: under TCG a static-pie
        // binary starts ~30 ms slower on every exec (its code lands at a
        // new address each time, so QEMU translates it again), and the
        // agent is exec'd twice per boot.
        .env("RUSTFLAGS", AGENT_RUSTFLAGS)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(std::os::fd::AsFd::as_fd(&stderr).try_clone_to_owned()?)
        .status()
        .with_context(|| format!("cannot run {}", Path::new(&cargo).display()))?;
    if !status.success() {
        bail!(
            "building the guest agent failed ({status}); or pass a prebuilt one with --agent PATH"
        );
    }
    let agent = root
        .join("target/agent")
        .join(TARGET)
        .join("agent/kiln-agent");
    if !agent.is_file() {
        bail!("cargo built the agent but {} is not there", agent.display());
    }
    Ok(agent)
}

#[cfg(test)]
mod tests {
    use super::human;

    #[test]
    fn human_sizes() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(4_370_432), "4.2 MiB");
        assert_eq!(human(18_531_648), "18 MiB");
        assert_eq!(human(4 << 30), "4.0 GiB");
    }
}
