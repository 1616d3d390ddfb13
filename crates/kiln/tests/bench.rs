//! `kiln bench` end to end: the real binary, real microVMs (TCG here), tiny
//! sample counts. It checks the shape of the numbers, never their size
//! (benchmarks report, tests do not time).
//!
//! Each test has a private `KILN_HOME` whose `images` links to the real data
//! directory's, so its VM directories and boot-floor initramfs are its own.
//! Without the minimal image, QEMU or passt, the VM tests say why and pass,
//! unless `KILN_REQUIRE_QEMU` is set (CI), where they fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use tempfile::TempDir;

/// `$KILN_HOME`, else `~/.local/share/kiln`: where the images are built.
fn real_data_dir() -> PathBuf {
    match std::env::var_os("KILN_HOME") {
        Some(home) => PathBuf::from(home),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME is not set"))
            .join(".local/share/kiln"),
    }
}

/// A private `KILN_HOME` with the real images, or `None` (said why) when
/// the qemu backend cannot run here and skipping is allowed.
fn home_with_images(test: &str) -> Option<TempDir> {
    let images = real_data_dir().join("images");
    let mut missing = Vec::new();
    if !images.join("minimal/current/manifest.json").is_file() {
        missing.push(format!("no minimal image in {}", images.display()));
    }
    for tool in ["qemu-system-x86_64", "passt"] {
        let found = std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(tool).is_file()));
        if !found {
            missing.push(format!("{tool} not on PATH"));
        }
    }
    if !missing.is_empty() {
        let why = missing.join("; ");
        if std::env::var_os("KILN_REQUIRE_QEMU").is_some() {
            panic!("{test}: KILN_REQUIRE_QEMU is set but the qemu backend cannot run: {why}");
        }
        eprintln!("SKIPPED {test} (run ./scripts/build-images.sh first): {why}");
        return None;
    }
    let home = tempfile::Builder::new()
        .prefix("kb")
        .tempdir()
        .expect("tempdir");
    std::os::unix::fs::symlink(&images, home.path().join("images")).expect("link the images");
    Some(home)
}

fn kiln(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env("KILN_HOME", home)
        .env_remove("RUST_LOG")
        .output()
        .expect("run kiln")
}

/// The `--json` object of a successful run.
fn bench_json(home: &Path, args: &[&str]) -> serde_json::Map<String, Value> {
    let out = kiln(home, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kiln {args:?} failed: {stderr}");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    match json {
        Value::Object(map) => map,
        other => panic!("expected an object, got {other}"),
    }
}

/// Every key of `want` is there with `n` samples and positive, ordered
/// numbers, and nothing else is.
fn assert_entries(map: &serde_json::Map<String, Value>, want: &[(&str, u64)]) {
    let keys: Vec<&str> = map.keys().map(String::as_str).collect();
    let wanted: Vec<&str> = want.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, wanted, "{map:#?}");
    for (name, n) in want {
        let entry = &map[*name];
        let number = |field: &str| {
            entry[field]
                .as_f64()
                .unwrap_or_else(|| panic!("{name}.{field} is not a number: {entry}"))
        };
        let (median, p90, max) = (number("median_ms"), number("p90_ms"), number("max_ms"));
        assert_eq!(entry["n"].as_u64(), Some(*n), "{name}: {entry}");
        assert_eq!(
            entry.as_object().map(|o| o.len()),
            Some(4),
            "{name}: {entry}"
        );
        assert!(median > 0.0, "{name}: {entry}");
        assert!(median <= p90 && p90 <= max, "{name}: {entry}");
    }
}

/// Nothing of a VM is left in the private home's state directory.
fn assert_no_vms_left(home: &Path) {
    let left: Vec<_> = std::fs::read_dir(home.join("qemu-vms"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "VM directories left behind: {left:?}");
}

#[test]
fn every_entry_reports_its_numbers() {
    let Some(home) = home_with_images("every_entry_reports_its_numbers") else {
        return;
    };
    let map = bench_json(
        home.path(),
        &["bench", "-n", "1", "--warmup", "0", "--json"],
    );
    assert_entries(
        &map,
        &[
            ("boot_floor", 1),
            ("boot_floor_exit", 1),
            ("cold_boot_ready", 1),
            // At least 20 samples each, whatever -n says (issue #5).
            ("restore_ready", 20),
            ("pool_allocate", 20),
            ("exec_roundtrip", 1),
            ("stream_100mib", 1),
            ("idle_vm_rss_mib", 1),
            ("idle_passt_rss_mib", 1),
        ],
    );
    // The marker comes before QEMU's exit; passt is part of a VM's memory.
    let median = |name: &str| map[name]["median_ms"].as_f64().unwrap_or(f64::NAN);
    assert!(
        median("boot_floor") <= median("boot_floor_exit"),
        "{map:#?}"
    );
    assert!(
        median("idle_passt_rss_mib") < median("idle_vm_rss_mib"),
        "{map:#?}"
    );
    // A restore skips the kernel's boot: it beats booting to a bare /init.
    assert!(median("restore_ready") < median("boot_floor"), "{map:#?}");
    assert!(home.path().join("bench/floor-minimal.cpio").is_file());
    assert_no_vms_left(home.path());
}

#[test]
fn only_and_samples_select_what_is_measured() {
    let Some(home) = home_with_images("only_and_samples_select_what_is_measured") else {
        return;
    };
    let map = bench_json(
        home.path(),
        &[
            "bench",
            "-n",
            "3",
            "--warmup",
            "0",
            "--only",
            "exec_roundtrip",
            "--json",
        ],
    );
    assert_entries(&map, &[("exec_roundtrip", 3)]);
    // No boot floor measured: its initramfs was not even written.
    assert!(!home.path().join("bench").exists());
    assert_no_vms_left(home.path());
}

#[test]
fn missing_images_name_the_fix() {
    let home = tempfile::tempdir().expect("tempdir");
    let out = kiln(home.path(), &["bench", "-n", "1", "--only", "boot_floor"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("./scripts/build-images.sh"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn unknown_entries_and_zero_samples_are_refused() {
    let home = tempfile::tempdir().expect("tempdir");
    let out = kiln(home.path(), &["bench", "--only", "warp_speed"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cold_boot_ready"), "{stderr}");
    let out = kiln(home.path(), &["bench", "-n", "0"]);
    assert_eq!(out.status.code(), Some(2));
}

/// Debian's stock kernel has its virtio drivers as modules: the agent, as
/// /init, loads them (`finit_module`) before its port can appear, so an
/// answered exec proves the native module loading. The kernel is fetched
/// into the real data directory (cached there), the variant image built
/// next to the others.
#[test]
fn the_stock_kernel_boots_with_its_modules_loaded_by_the_agent() {
    let Some(home) =
        home_with_images("the_stock_kernel_boots_with_its_modules_loaded_by_the_agent")
    else {
        return;
    };
    let kernels = real_data_dir().join("kernels");
    std::fs::create_dir_all(&kernels).expect("create the kernels directory");
    std::os::unix::fs::symlink(&kernels, home.path().join("kernels")).expect("link the kernels");
    let map = bench_json(
        home.path(),
        &[
            "bench",
            "--kernel",
            "stock",
            "--only",
            "cold_boot_ready,exec_roundtrip",
            "-n",
            "1",
            "--warmup",
            "0",
            "--json",
        ],
    );
    assert_entries(
        &map,
        &[("cold_boot_ready[stock]", 1), ("exec_roundtrip[stock]", 1)],
    );
    assert_no_vms_left(home.path());
}
