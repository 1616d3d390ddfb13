//! Which image each benchmarked kernel boots.
//!
//! `minimal`: the current `minimal` image, as `kiln run` uses it. `stock`:
//! the same flavour with Debian's stock kernel and its module-bearing
//! initramfs. Unless the current image already is that, it is a *variant*
//! of the store (`ImageStore::build_variant`): built on first use from the
//! same agent binary (taken out of the current image's initramfs) and the
//! same scripts, listed by `kiln image list`, but never made `current`, so
//! `kiln run` is not affected. Later runs find it up to date.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use kiln_image::{BuildOptions, Flavour, ImageStore, KernelKind, ResolvedImage};

const BUILD_HINT: &str = "run ./scripts/build-images.sh";

/// The image of every kernel in `kinds`, in that order.
pub fn resolve(
    data_dir: &Path,
    kinds: &[KernelKind],
) -> anyhow::Result<Vec<(KernelKind, ResolvedImage)>> {
    let store = ImageStore::open(data_dir)?;
    let current = store.resolve(Flavour::Minimal).with_context(|| {
        format!(
            "no usable minimal image in {}: {BUILD_HINT}",
            store.flavour_dir(Flavour::Minimal).display()
        )
    })?;
    let mut images = Vec::new();
    for &kind in kinds {
        let image = if current.kernel_kind == kind {
            current.clone()
        } else if kind == KernelKind::Minimal {
            bail!(
                "the current minimal image ({}) boots Debian's stock kernel, so there is no \
                 minimal kernel to measure: {BUILD_HINT} (it builds the minimal kernel)",
                current.manifest.version_id
            );
        } else {
            stock_variant(&store, &current)?
        };
        images.push((kind, image));
    }
    Ok(images)
}

/// The stock-kernel variant of `current`, built if missing.
fn stock_variant(store: &ImageStore, current: &ResolvedImage) -> anyhow::Result<ResolvedImage> {
    eprintln!(
        "kiln bench: finding or building the stock-kernel variant of minimal/{} \
         (same agent; not made current)",
        current.manifest.version_id
    );
    let agent = extract_agent(store.data_dir(), current)?;
    let options = BuildOptions {
        flavour: Flavour::Minimal,
        kernel: KernelKind::Stock,
        agent_path: agent,
        scripts_dir: crate::cmd::image::scripts_dir()?,
        progress: true,
        force: false,
    };
    let built = store
        .build_variant(&options)
        .context("cannot build the stock-kernel image")?;
    let id = &built.manifest.version_id;
    if built.manifest.kernel.kind != KernelKind::Stock {
        bail!("the image built for the stock kernel ({id}) has another kernel");
    }
    eprintln!(
        "kiln bench: stock kernel: image minimal/{id} ({})",
        built.manifest.kernel.source_version
    );
    Ok(store.resolve_version(Flavour::Minimal, id)?)
}

/// `usr/bin/kiln-agent` of `image`'s initramfs, written to `<data>/bench/`
/// and checked against the manifest's hash.
fn extract_agent(data_dir: &Path, image: &ResolvedImage) -> anyhow::Result<PathBuf> {
    let want = &image.manifest.agent.sha256;
    let dir = data_dir.join("bench");
    let path = dir.join(format!("kiln-agent-{}", &want[..want.len().min(12)]));
    if kiln_image::sha256_file(&path).is_ok_and(|have| &have == want) {
        return Ok(path);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let cpio = std::fs::File::open(&image.initramfs)
        .with_context(|| format!("cannot open {}", image.initramfs.display()))?;
    let out = Command::new("cpio")
        .args(["-i", "--quiet", "--to-stdout", "usr/bin/kiln-agent"])
        .stdin(cpio)
        .stderr(Stdio::piped())
        .output()
        .context("cannot run cpio (run ./scripts/setup.sh)")?;
    let have = kiln_image::sha256_bytes(&out.stdout);
    if !out.status.success() || &have != want {
        bail!(
            "cannot take the agent out of {} (cpio: {}; sha256 {have}, manifest says {want})",
            image.initramfs.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let tmp = dir.join(format!(".kiln-agent.{}", std::process::id()));
    std::fs::write(&tmp, &out.stdout).with_context(|| format!("cannot write {}", tmp.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(path)
}
