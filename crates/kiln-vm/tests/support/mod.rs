//! What the real-VM test files share: a provider over the images of
//! `$KILN_HOME` with its own state directory, and the skip rule (say why
//! and pass, unless `KILN_REQUIRE_QEMU` is set, as in CI, where a missing
//! QEMU, image or vsock daemon fails).

// Each test file uses its own part of this.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use kiln_vm::qemu::{AccelMode, SetupError};
use kiln_vm::{Network, QemuConfig, QemuProvider, VmSpec};
use tempfile::TempDir;

/// A provider whose VMs live in the returned directory (named `prefix…`),
/// with `adjust` applied to the config; `None` (said why) when the qemu
/// backend cannot run here and skipping is allowed.
pub fn provider(
    prefix: &str,
    adjust: impl FnOnce(&mut QemuConfig),
) -> Option<(QemuProvider, TempDir)> {
    let state = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("tempdir");
    let mut config = match config(state.path()) {
        Ok(config) => config,
        Err(why) => return skip(&why),
    };
    adjust(&mut config);
    match QemuProvider::new(config) {
        Ok(provider) => Some((provider, state)),
        // A missing vsock daemon is a MissingTool too.
        Err(
            e @ (SetupError::MissingTool { .. }
            | SetupError::MissingImage { .. }
            | SetupError::NoImage { .. }),
        ) => skip(&chain(&e)),
        Err(e) => panic!("qemu provider setup failed: {e}"),
    }
}

/// The images of `$KILN_HOME` (default `~/.local/share/kiln`), state in
/// `state`; `Err` says why there is none.
pub fn config(state: &Path) -> Result<QemuConfig, String> {
    let data = QemuConfig::default_data_dir().ok_or("neither KILN_HOME nor HOME is set")?;
    let mut config = QemuConfig::from_data_dir(&data).map_err(|e| chain(&e))?;
    config.state_dir = state.to_owned();
    config.boot_timeout = Duration::from_secs(60);
    config.accel = AccelMode::Auto;
    Ok(config)
}

pub fn skip<T>(why: &str) -> Option<T> {
    if std::env::var_os("KILN_REQUIRE_QEMU").is_some() {
        panic!("KILN_REQUIRE_QEMU is set but the qemu backend cannot run: {why}");
    }
    eprintln!("SKIPPED (qemu backend unavailable): {why}");
    None
}

/// The small VM the tests boot.
pub fn spec(network: Network) -> VmSpec {
    VmSpec {
        vcpus: 1,
        memory_mib: 512,
        network,
        ..VmSpec::default()
    }
}

/// An error with its sources, `: `-separated.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// VM state directories (`qemu-…`, not snapshots) in `state`.
pub fn vm_dirs(state: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(state)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("qemu-"))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}
