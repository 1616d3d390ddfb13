//! The image store against stand-in build scripts (fast, always run) and
//! against the repository's real scripts (`build_minimal_with_real_scripts`:
//! needs scripts/setup.sh's packages; skipped with the reason printed unless
//! KILN_REQUIRE_QEMU=1, which makes missing packages a failure).

// clippy.toml allows unwrap in #[test] functions; the fixture helpers here
// are test code too and fail the same way.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_image::{
    AgentInfo, Artifact, BuildOptions, BuildStatus, DiskFormat, Flavour, ImageError, ImageStore,
    KernelArtifact, KernelKind, MANIFEST_SCHEMA, Manifest, RootfsArtifact,
};

// ---------------------------------------------------------------------------
// A fake checkout: stand-ins for the four build scripts that write small
// files, and log each call to $KILN_HOME/calls.log.

const FAKE_KERNEL: &str = r#"#!/bin/bash
set -e
dir="$KILN_HOME/kernels/minimal-test"
if [ "${1:-}" = --print ]; then echo "$dir/vmlinux"; exit 0; fi
echo "build-kernel.sh $*" >> "$KILN_HOME/calls.log"
if [ -e "$KILN_HOME/fail-kernel" ]; then echo "the kernel build broke" >&2; exit 1; fi
mkdir -p "$dir"
echo "minimal vmlinux" > "$dir/vmlinux"
printf 'source=linux-source-6.1 6.1.999-1\nfragment_sha256_12=0123456789ab\n' > "$dir/build-info"
"#;

const FAKE_STOCK: &str = r#"#!/bin/bash
set -e
dir="$KILN_HOME/kernels/stock-6.1.0-99-amd64"
if [ "${1:-}" = --print ]; then mkdir -p "$dir"; echo "$dir"; exit 0; fi
echo "fetch-stock-kernel.sh $*" >> "$KILN_HOME/calls.log"
mkdir -p "$dir"
echo "stock vmlinux" > "$dir/vmlinux"
echo linux-image-6.1.0-99-amd64 > "$dir/package"
"#;

const FAKE_INITRAMFS: &str = r#"#!/bin/bash
set -e
echo "build-initramfs.sh $*" >> "$KILN_HOME/calls.log"
out=
while [ $# -gt 0 ]; do case "$1" in --out) out=$2; shift 2 ;; *) shift ;; esac; done
echo "initramfs made with: $(tail -1 "$KILN_HOME/calls.log")" > "$out"
"#;

const FAKE_ROOTFS: &str = r#"#!/bin/bash
set -e
echo "build-rootfs.sh $*" >> "$KILN_HOME/calls.log"
out=
while [ $# -gt 0 ]; do case "$1" in --out) out=$2; shift 2 ;; *) shift ;; esac; done
truncate -s 1M "$out"
"#;

struct Fixture {
    _tmp: tempfile::TempDir,
    repo: PathBuf,
    data: PathBuf,
    agent: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        let data = tmp.path().join("kiln-home");
        let scripts = repo.join("scripts");
        std::fs::create_dir_all(&scripts).unwrap();
        std::fs::create_dir_all(repo.join("images/initramfs")).unwrap();
        std::fs::create_dir_all(repo.join("images/rootfs")).unwrap();
        std::fs::create_dir_all(&data).unwrap();
        for (name, text) in [
            ("build-kernel.sh", FAKE_KERNEL),
            ("fetch-stock-kernel.sh", FAKE_STOCK),
            ("build-initramfs.sh", FAKE_INITRAMFS),
            ("build-rootfs.sh", FAKE_ROOTFS),
        ] {
            std::fs::write(scripts.join(name), text).unwrap();
        }
        std::fs::write(repo.join("images/initramfs/init"), "#!/bin/sh\n# init v1\n").unwrap();
        std::fs::write(
            repo.join("images/rootfs/kiln-init"),
            "#!/bin/sh\n# rootfs init\n",
        )
        .unwrap();
        let agent = tmp.path().join("kiln-agent");
        std::fs::write(&agent, "agent v1").unwrap();
        Fixture {
            _tmp: tmp,
            repo,
            data,
            agent,
        }
    }

    fn store(&self) -> ImageStore {
        ImageStore::open(&self.data).unwrap()
    }

    fn options(&self, flavour: Flavour, kernel: KernelKind) -> BuildOptions {
        BuildOptions {
            flavour,
            kernel,
            agent_path: self.agent.clone(),
            scripts_dir: self.repo.join("scripts"),
            progress: false,
            force: false,
        }
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.data.join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn calls_to(&self, script: &str) -> usize {
        self.calls()
            .iter()
            .filter(|c| c.starts_with(script))
            .count()
    }
}

fn sample_manifest() -> Manifest {
    Manifest {
        schema: MANIFEST_SCHEMA,
        flavour: Flavour::Debian,
        version_id: "0123456789ab".into(),
        kernel: KernelArtifact {
            kind: KernelKind::Stock,
            path: "vmlinux".into(),
            sha256: "aa".repeat(32),
            size: 65_906_612,
            source_version: "linux-image-6.1.0-56-amd64".into(),
        },
        initramfs: Artifact {
            path: "initramfs.cpio".into(),
            sha256: "bb".repeat(32),
            size: 8_223_744,
        },
        rootfs: Some(RootfsArtifact {
            path: "rootfs.raw".into(),
            sha256: "cc".repeat(32),
            size: 4 << 30,
            format: DiskFormat::Raw,
        }),
        agent: AgentInfo {
            sha256: "dd".repeat(32),
            kiln_version: "0.1.0".into(),
        },
        built_at: "2026-11-26T06:30:30Z".into(),
        builder_versions: BTreeMap::from([("debootstrap".into(), "1.0.128".into())]),
        inputs: BTreeMap::from([("flavour".into(), "debian".into())]),
    }
}

#[test]
fn manifest_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = sample_manifest();
    manifest.save(dir.path()).unwrap();
    assert_eq!(Manifest::load(dir.path()).unwrap(), manifest);

    // The on-disk names are a format other tools read: pin them.
    let text = std::fs::read_to_string(dir.path().join("manifest.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["schema"], 1);
    assert_eq!(json["flavour"], "debian");
    assert_eq!(json["version_id"], "0123456789ab");
    assert_eq!(json["kernel"]["kind"], "stock");
    assert_eq!(
        json["kernel"]["source_version"],
        "linux-image-6.1.0-56-amd64"
    );
    assert_eq!(json["rootfs"]["format"], "raw");
    assert_eq!(json["agent"]["kiln_version"], "0.1.0");
    assert_eq!(json["built_at"], "2026-11-26T06:30:30Z");

    let minimal = Manifest {
        rootfs: None,
        ..manifest
    };
    minimal.save(dir.path()).unwrap();
    assert_eq!(Manifest::load(dir.path()).unwrap(), minimal);
}

#[test]
fn a_corrupt_manifest_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("manifest.json"),
        "{\"schema\": 1, \"flavour\": ",
    )
    .unwrap();
    let err = Manifest::load(dir.path()).unwrap_err();
    assert!(matches!(err, ImageError::BadManifest { .. }), "{err}");
    assert!(err.to_string().contains("manifest.json"), "{err}");
}

#[test]
fn resolve_errors_when_missing_name_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    // Neither the data directory nor images/ exist yet.
    let store = ImageStore::open(tmp.path().join("nothing-here")).unwrap();
    let err = store.resolve(Flavour::Minimal).unwrap_err();
    assert!(matches!(
        err,
        ImageError::NotBuilt {
            flavour: Flavour::Minimal
        }
    ));
    assert_eq!(err.to_string(), "no minimal image: run `kiln image build`");
    let err = store.resolve(Flavour::Debian).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no debian image: run `kiln image build --flavour debian`"
    );
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn build_minimal_then_resolve() {
    let fx = Fixture::new();
    let store = fx.store();
    let outcome = store
        .build(&fx.options(Flavour::Minimal, KernelKind::Minimal))
        .unwrap();
    assert_eq!(outcome.status, BuildStatus::Built);
    assert!(outcome.warnings.is_empty(), "{:?}", outcome.warnings);
    let m = &outcome.manifest;
    assert_eq!(m.version_id.len(), 12);
    assert_eq!(m.kernel.kind, KernelKind::Minimal);
    assert_eq!(
        m.kernel.source_version,
        "linux-source-6.1 6.1.999-1, fragment 0123456789ab"
    );
    assert_eq!(
        m.kernel.sha256,
        kiln_image::sha256_bytes(b"minimal vmlinux\n")
    );
    assert_eq!(m.agent.sha256, kiln_image::sha256_bytes(b"agent v1"));
    assert!(m.rootfs.is_none());
    for key in ["flavour", "kernel.sha256", "agent.sha256", "init.sha256"] {
        assert!(
            m.inputs.contains_key(key),
            "inputs lack {key}: {:?}",
            m.inputs
        );
    }
    // The agent goes into the minimal flavour's initramfs.
    let initramfs_call = &fx.calls()[fx.calls().len() - 1];
    assert!(initramfs_call.contains(&format!("--agent {}", fx.agent.display())));
    assert!(!initramfs_call.contains("--root"));

    let resolved = store.resolve(Flavour::Minimal).unwrap();
    assert_eq!(
        resolved.dir,
        store.image_dir(Flavour::Minimal, &m.version_id)
    );
    assert_eq!(resolved.kernel_kind, KernelKind::Minimal);
    assert_eq!(&resolved.manifest, m);
    assert_eq!(
        std::fs::read(&resolved.kernel).unwrap(),
        b"minimal vmlinux\n"
    );
    assert!(resolved.initramfs.is_file());
    assert_eq!(resolved.rootfs, None);
    assert_eq!(
        store.current_id(Flavour::Minimal).unwrap().as_deref(),
        Some(m.version_id.as_str())
    );
    // Nothing of the staging directory is left.
    let leftovers: Vec<_> = std::fs::read_dir(store.flavour_dir(Flavour::Minimal))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn second_build_is_up_to_date_and_changes_nothing() {
    let fx = Fixture::new();
    let store = fx.store();
    let options = fx.options(Flavour::Minimal, KernelKind::Minimal);
    let first = store.build(&options).unwrap();
    let manifest_path = first.dir.join("manifest.json");
    let bytes = std::fs::read(&manifest_path).unwrap();
    let mtime = std::fs::metadata(&manifest_path)
        .unwrap()
        .modified()
        .unwrap();

    let second = store.build(&options).unwrap();
    assert_eq!(second.status, BuildStatus::UpToDate);
    assert_eq!(second.manifest, first.manifest);
    assert_eq!(second.dir, first.dir);
    assert_eq!(std::fs::read(&manifest_path).unwrap(), bytes);
    assert_eq!(
        std::fs::metadata(&manifest_path)
            .unwrap()
            .modified()
            .unwrap(),
        mtime
    );
    assert_eq!(fx.calls_to("build-initramfs.sh"), 1, "{:?}", fx.calls());
    assert_eq!(store.list().unwrap().len(), 1);

    // --force rebuilds the same id.
    let forced = store
        .build(&BuildOptions {
            force: true,
            ..options
        })
        .unwrap();
    assert_eq!(forced.status, BuildStatus::Built);
    assert_eq!(forced.manifest.version_id, first.manifest.version_id);
    assert_eq!(fx.calls_to("build-initramfs.sh"), 2);
}

#[test]
fn a_variant_build_leaves_current_alone_and_resolves_by_id() {
    let fx = Fixture::new();
    let store = fx.store();
    let current = store
        .build(&fx.options(Flavour::Minimal, KernelKind::Minimal))
        .unwrap()
        .manifest;
    let options = fx.options(Flavour::Minimal, KernelKind::Stock);
    let variant = store.build_variant(&options).unwrap();
    assert_eq!(variant.status, BuildStatus::Built);
    assert_ne!(variant.manifest.version_id, current.version_id);
    assert_eq!(
        store.current_id(Flavour::Minimal).unwrap().as_deref(),
        Some(current.version_id.as_str()),
        "a variant never becomes current"
    );
    assert_eq!(store.resolve(Flavour::Minimal).unwrap().manifest, current);
    let resolved = store
        .resolve_version(Flavour::Minimal, &variant.manifest.version_id)
        .unwrap();
    assert_eq!(resolved.kernel_kind, KernelKind::Stock);
    assert_eq!(resolved.manifest, variant.manifest);
    // Up to date the second time, and still not current.
    let again = store.build_variant(&options).unwrap();
    assert_eq!(again.status, BuildStatus::UpToDate);
    assert_eq!(
        store.current_id(Flavour::Minimal).unwrap().as_deref(),
        Some(current.version_id.as_str())
    );
    assert!(
        store
            .resolve_version(Flavour::Minimal, "000000000000")
            .is_err()
    );
}

#[test]
fn a_changed_input_gives_a_new_current_version() {
    let fx = Fixture::new();
    let store = fx.store();
    let options = fx.options(Flavour::Minimal, KernelKind::Minimal);
    let first = store.build(&options).unwrap().manifest;

    std::fs::write(&fx.agent, "agent v2").unwrap();
    let second = store.build(&options).unwrap();
    assert_eq!(second.status, BuildStatus::Built);
    assert_ne!(second.manifest.version_id, first.version_id);

    std::fs::write(
        fx.repo.join("images/initramfs/init"),
        "#!/bin/sh\n# init v2\n",
    )
    .unwrap();
    let third = store.build(&options).unwrap().manifest;
    assert_ne!(third.version_id, second.manifest.version_id);

    let listed: Vec<String> = store
        .list()
        .unwrap()
        .into_iter()
        .map(|m| m.version_id)
        .collect();
    assert_eq!(listed.len(), 3);
    assert!(listed.contains(&first.version_id));
    assert_eq!(
        store.current_id(Flavour::Minimal).unwrap(),
        Some(third.version_id)
    );
}

#[test]
fn a_failed_minimal_kernel_falls_back_to_stock_with_a_warning() {
    let fx = Fixture::new();
    std::fs::write(fx.data.join("fail-kernel"), "").unwrap();
    let outcome = fx
        .store()
        .build(&fx.options(Flavour::Minimal, KernelKind::Minimal))
        .unwrap();
    assert_eq!(outcome.manifest.kernel.kind, KernelKind::Stock);
    assert_eq!(
        outcome.manifest.kernel.source_version,
        "linux-image-6.1.0-99-amd64"
    );
    assert_eq!(outcome.warnings.len(), 1);
    let warning = &outcome.warnings[0];
    assert!(warning.contains("falling back"), "{warning}");
    assert!(warning.contains("the kernel build broke"), "{warning}");
    // The stock kernel's modules go into the initramfs.
    let calls = fx.calls();
    assert!(calls.last().unwrap().contains("--kernel-dir"), "{calls:?}");
}

#[test]
fn build_debian_puts_the_agent_on_the_root_disk() {
    let fx = Fixture::new();
    let store = fx.store();
    let outcome = store
        .build(&fx.options(Flavour::Debian, KernelKind::Stock))
        .unwrap();
    let m = &outcome.manifest;
    let rootfs = m.rootfs.as_ref().expect("debian has a root disk");
    assert_eq!(rootfs.format, DiskFormat::Raw);
    assert_eq!(rootfs.size, 1 << 20);
    let calls = fx.calls();
    let initramfs = calls
        .iter()
        .find(|c| c.starts_with("build-initramfs.sh"))
        .unwrap();
    assert!(initramfs.contains("--root /dev/vda"), "{initramfs}");
    assert!(!initramfs.contains("--agent"), "{initramfs}");
    let rootfs_call = calls
        .iter()
        .find(|c| c.starts_with("build-rootfs.sh"))
        .unwrap();
    assert!(rootfs_call.contains(&format!("--agent {}", fx.agent.display())));

    let resolved = store.resolve(Flavour::Debian).unwrap();
    assert_eq!(resolved.kernel_kind, KernelKind::Stock);
    assert_eq!(resolved.rootfs, Some(outcome.dir.join("rootfs.raw")));
    // The minimal flavour is independent.
    assert!(matches!(
        store.resolve(Flavour::Minimal),
        Err(ImageError::NotBuilt { .. })
    ));
}

#[test]
fn resolve_reports_a_missing_file() {
    let fx = Fixture::new();
    let store = fx.store();
    let outcome = store
        .build(&fx.options(Flavour::Minimal, KernelKind::Minimal))
        .unwrap();
    std::fs::remove_file(outcome.dir.join("initramfs.cpio")).unwrap();
    let err = store.resolve(Flavour::Minimal).unwrap_err();
    assert!(matches!(err, ImageError::Incomplete { .. }), "{err}");
    assert!(err.to_string().contains("kiln image build"), "{err}");
    // And a build repairs it rather than calling it up to date.
    let again = store
        .build(&fx.options(Flavour::Minimal, KernelKind::Minimal))
        .unwrap();
    assert_eq!(again.status, BuildStatus::Built);
    store.resolve(Flavour::Minimal).unwrap();
}

#[test]
fn rm_removes_files_and_repoints_current() {
    let fx = Fixture::new();
    let store = fx.store();
    let options = fx.options(Flavour::Minimal, KernelKind::Minimal);
    let old = store.build(&options).unwrap();
    std::fs::write(&fx.agent, "agent v2").unwrap();
    let new = store.build(&options).unwrap();
    let debian = store
        .build(&fx.options(Flavour::Debian, KernelKind::Minimal))
        .unwrap();

    // Removing the current version falls back to the other one.
    let removed = store.remove(&new.manifest.version_id).unwrap();
    assert_eq!(removed.flavour, Flavour::Minimal);
    assert_eq!(removed.version_ids, vec![new.manifest.version_id.clone()]);
    assert_eq!(removed.current.as_ref(), Some(&old.manifest.version_id));
    assert!(!new.dir.exists());
    assert_eq!(
        store.resolve(Flavour::Minimal).unwrap().manifest,
        old.manifest
    );

    // FLAVOUR/ID works too; the last one leaves no current.
    let target = format!("minimal/{}", old.manifest.version_id);
    let removed = store.remove(&target).unwrap();
    assert_eq!(removed.current, None);
    assert!(!old.dir.exists());
    assert!(matches!(
        store.resolve(Flavour::Minimal),
        Err(ImageError::NotBuilt { .. })
    ));

    // A whole flavour.
    let removed = store.remove("debian").unwrap();
    assert_eq!(
        removed.version_ids,
        vec![debian.manifest.version_id.clone()]
    );
    assert!(!store.flavour_dir(Flavour::Debian).exists());
    assert!(store.list().unwrap().is_empty());

    // The kernel cache the images linked to is untouched.
    assert!(fx.data.join("kernels/minimal-test/vmlinux").is_file());

    let err = store.remove("0000deadbeef").unwrap_err();
    assert!(matches!(err, ImageError::NotFound { .. }), "{err}");
    assert!(store.remove("minimal").is_err(), "nothing left to remove");
}

#[test]
fn missing_scripts_and_agent_are_named() {
    let fx = Fixture::new();
    let store = fx.store();
    let mut options = fx.options(Flavour::Minimal, KernelKind::Minimal);
    options.agent_path = fx.data.join("no-agent");
    let err = store.build(&options).unwrap_err();
    assert!(err.to_string().contains("agent binary"), "{err}");

    let mut options = fx.options(Flavour::Minimal, KernelKind::Minimal);
    options.scripts_dir = fx.data.join("no-scripts");
    let err = store.build(&options).unwrap_err();
    assert!(err.to_string().contains("KILN_SCRIPTS_DIR"), "{err}");
}

// ---------------------------------------------------------------------------
// The real scripts.

fn require_real() -> bool {
    std::env::var_os("KILN_REQUIRE_QEMU").is_some_and(|v| v == "1")
}

/// Why the real build cannot run here, if it cannot.
fn real_build_blocker(shared: &Path) -> Option<String> {
    for file in ["/bin/busybox", "/bin/bash-static"] {
        if !Path::new(file).exists() {
            return Some(format!("{file} is missing (run scripts/setup.sh)"));
        }
    }
    if Command::new("cpio").arg("--version").output().is_err() {
        return Some("cpio is missing (run scripts/setup.sh)".into());
    }
    let kernel_cached = std::fs::read_dir(shared.join("kernels"))
        .map(|entries| {
            entries.flatten().any(|e| {
                e.path().join("vmlinux").is_file()
                    && e.file_name().to_string_lossy().starts_with("minimal-")
            })
        })
        .unwrap_or(false);
    if !kernel_cached && !require_real() {
        return Some(format!(
            "the minimal kernel is not built yet in {} (scripts/build-images.sh builds it; \
             KILN_REQUIRE_QEMU=1 builds it here, minutes)",
            shared.display()
        ));
    }
    None
}

/// `$KILN_HOME`, else `~/.local/share/kiln`: where the kernel cache is shared.
fn shared_data_dir() -> PathBuf {
    std::env::var_os("KILN_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".local/share/kiln")
        })
}

#[test]
fn build_minimal_with_real_scripts() {
    let shared = shared_data_dir();
    if let Some(reason) = real_build_blocker(&shared) {
        assert!(!require_real(), "KILN_REQUIRE_QEMU=1 but {reason}");
        eprintln!("skipping build_minimal_with_real_scripts: {reason}");
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("kiln-home");
    std::fs::create_dir_all(&data).unwrap();
    // A private image store, sharing the (expensive) kernel cache and source tree.
    for dir in ["kernels", "build"] {
        std::fs::create_dir_all(shared.join(dir)).unwrap();
        std::os::unix::fs::symlink(shared.join(dir), data.join(dir)).unwrap();
    }
    // Any executable will do as the agent: the build only installs it.
    let agent = tmp.path().join("kiln-agent");
    std::fs::write(&agent, "#!/bin/sh\necho stand-in agent\n").unwrap();
    std::fs::set_permissions(&agent, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let store = ImageStore::open(&data).unwrap();
    let options = BuildOptions {
        flavour: Flavour::Minimal,
        kernel: KernelKind::Minimal,
        agent_path: agent,
        scripts_dir: repo.join("scripts"),
        progress: false,
        force: false,
    };
    let first = store.build(&options).unwrap();
    assert_eq!(first.status, BuildStatus::Built);
    assert!(first.warnings.is_empty(), "{:?}", first.warnings);
    let resolved = store.resolve(Flavour::Minimal).unwrap();
    assert_eq!(resolved.kernel_kind, KernelKind::Minimal);
    // An ELF kernel, and an initramfs with /init, busybox, bash and the agent.
    let head = std::fs::read(&resolved.kernel).unwrap();
    assert_eq!(&head[..4], b"\x7fELF");
    let listing = Command::new("cpio")
        .args(["-t", "--quiet", "-F"])
        .arg(&resolved.initramfs)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    for path in ["init", "bin/busybox", "bin/bash", "usr/bin/kiln-agent"] {
        assert!(
            listing.lines().any(|l| l == path),
            "{path} not in the initramfs"
        );
    }
    assert_eq!(
        kiln_image::sha256_file(&resolved.initramfs).unwrap(),
        first.manifest.initramfs.sha256
    );

    let second = store.build(&options).unwrap();
    assert_eq!(second.status, BuildStatus::UpToDate);
    assert_eq!(second.manifest, first.manifest);

    store.remove(&first.manifest.version_id).unwrap();
    assert!(!first.dir.exists());
    assert!(store.resolve(Flavour::Minimal).is_err());
    // The shared kernel cache survives.
    assert!(shared.join("kernels").is_dir());
}
