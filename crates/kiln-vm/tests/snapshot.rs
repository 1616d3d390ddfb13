//! Snapshot restore against real microVMs (TCG where KVM does not work).
//!
//! Like tests/qemu.rs: needs QEMU and the `minimal` image of `$KILN_HOME`;
//! without them each test says why and passes, unless `KILN_REQUIRE_QEMU`
//! is set. Every test has its own state and snapshot directories.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kiln_vm::{ExecRequest, Network, QemuProvider, Vm, VmSpec};
use support::{spec, vm_dirs};
use tempfile::TempDir;

mod support;

type TestResult = Result<(), Box<dyn std::error::Error>>;

struct Fixture {
    provider: QemuProvider,
    state: TempDir,
}

/// A provider with its own snapshot directory; `restore`: allocation
/// restores snapshots.
fn fixture(restore: bool) -> Option<Fixture> {
    let (provider, state) = support::provider("ks", |config| {
        config.snapshot_dir = config.state_dir.join("snapshots");
        config.snapshot_restore = restore;
    })?;
    Some(Fixture { provider, state })
}

async fn sh(vm: &dyn Vm, script: &str) -> Result<String, Box<dyn std::error::Error>> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let result = vm.exec(ExecRequest::new(["sh", "-c", script]), tx).await?;
    let mut out = Vec::new();
    while let Ok(chunk) = rx.try_recv() {
        out.extend(chunk.data);
    }
    let out = String::from_utf8_lossy(&out).into_owned();
    if !result.success() {
        return Err(format!("`{script}` failed ({result:?}): {out}").into());
    }
    Ok(out)
}

const IDENTITY: &str = "hostname; cat /etc/machine-id; head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; date +%s";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restored_vms_are_not_clones_of_one_another() -> TestResult {
    let Some(f) = fixture(false) else {
        return Ok(());
    };
    let spec = spec(Network::None);
    let info = f.provider.prepare_snapshot(&spec).await?;
    assert!(info.state_bytes > 0, "{info:?}");
    assert!(info.dir.join("state.mig").is_file());
    let a = f.provider.restore_vm(&spec).await?;
    let b = f.provider.restore_vm(&spec).await?;
    assert_ne!(a.qemu_pid(), b.qemu_pid());
    let (ia, ib) = (sh(&a, IDENTITY).await?, sh(&b, IDENTITY).await?);
    let (la, lb): (Vec<&str>, Vec<&str>) = (ia.lines().collect(), ib.lines().collect());
    assert_eq!((la.len(), lb.len()), (4, 4), "{ia} / {ib}");
    for (what, i) in [("hostname", 0), ("machine id", 1), ("random bytes", 2)] {
        assert_ne!(la[i], lb[i], "both restored vms have the same {what}");
    }
    assert!(la[0].starts_with("kiln-"), "{ia}");
    assert_eq!(la[1].len(), 32, "{ia}");
    // The clock was set from the host's, not left at the snapshot's.
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    for lines in [&la, &lb] {
        let guest: u64 = lines[3].trim().parse()?;
        assert!(guest.abs_diff(now) <= 30, "guest clock {guest}, host {now}");
    }
    // What one session writes, the next never sees.
    sh(
        &a,
        "echo secret > /tmp/left-behind; mkdir -p /home/runner/work/x",
    )
    .await?;
    let absent = sh(
        &b,
        "test -e /tmp/left-behind && echo PRESENT || echo ABSENT",
    )
    .await?;
    assert_eq!(absent.trim(), "ABSENT");
    Box::new(a).release().await?;
    Box::new(b).release().await?;
    let c = f.provider.restore_vm(&spec).await?;
    let absent = sh(
        &c,
        "test -e /tmp/left-behind && echo PRESENT || echo ABSENT",
    )
    .await?;
    assert_eq!(absent.trim(), "ABSENT");
    Box::new(c).release().await?;
    assert!(
        vm_dirs(f.state.path()).is_empty(),
        "{:?}",
        vm_dirs(f.state.path())
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_vm_with_nat_reaches_the_network() -> TestResult {
    let Some(f) = fixture(true) else {
        return Ok(());
    };
    let spec = spec(Network::Nat);
    f.provider.prepare_snapshot(&spec).await?;
    let vm = f.provider.allocate_vm(&spec).await?;
    let out = sh(&vm, "hostname; ip -4 addr show eth0; ip route").await?;
    assert!(out.starts_with("kiln-"), "not restored: {out}");
    assert!(out.contains("inet 10.0.2.15/24"), "{out}");
    assert!(out.contains("default via 10.0.2.2"), "{out}");
    // The gateway (passt) answers ARP and TCP: connecting to a closed port
    // of a routed host fails fast with "refused", not a timeout.
    if let Some(ip) = host_address() {
        let listener = std::net::TcpListener::bind((ip, 0))?;
        let port = listener.local_addr()?.port();
        let accepted = std::thread::spawn(move || listener.accept().map(drop));
        sh(
            &vm,
            &format!("timeout 10 bash -c 'echo hi >/dev/tcp/{ip}/{port}'"),
        )
        .await?;
        accepted.join().map_err(|_| "accept thread panicked")??;
    }
    Box::new(vm).release().await?;
    Ok(())
}

fn host_address() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("203.0.113.1:9").ok()?;
    Some(socket.local_addr().ok()?.ip()).filter(|ip| !ip.is_loopback())
}

/// A corrupt state file (right size, wrong bytes) makes QEMU refuse it:
/// the VM cold-boots, the snapshot is discarded and rebuilt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_snapshot_falls_back_to_a_cold_boot() -> TestResult {
    let Some(f) = fixture(true) else {
        return Ok(());
    };
    let spec = spec(Network::None);
    let info = f.provider.prepare_snapshot(&spec).await?;
    let state = info.dir.join("state.mig");
    let len = std::fs::metadata(&state)?.len();
    std::fs::write(&state, vec![0x5a; usize::try_from(len)?])?;
    let vm = f.provider.allocate_vm(&spec).await?;
    let out = sh(&vm, "hostname").await?;
    assert_eq!(
        out.trim(),
        "kiln",
        "a cold-booted vm keeps the image's hostname"
    );
    Box::new(vm).release().await?;
    // Rebuilt in the background, then used.
    wait_for_snapshot(&f, &spec).await?;
    let vm = f.provider.allocate_vm(&spec).await?;
    assert!(sh(&vm, "hostname").await?.starts_with("kiln-"));
    Box::new(vm).release().await?;
    Ok(())
}

/// A truncated state file is caught before QEMU even starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_or_missing_snapshot_falls_back_to_a_cold_boot() -> TestResult {
    let Some(f) = fixture(true) else {
        return Ok(());
    };
    let spec = spec(Network::None);
    // Missing: cold boot, and a snapshot is built in the background.
    assert!(f.provider.snapshot_info(&spec).is_none());
    let vm = f.provider.allocate_vm(&spec).await?;
    assert_eq!(sh(&vm, "hostname").await?.trim(), "kiln");
    Box::new(vm).release().await?;
    let info = wait_for_snapshot(&f, &spec).await?;
    let state = std::fs::OpenOptions::new()
        .write(true)
        .open(info.dir.join("state.mig"))?;
    state.set_len(info.state_bytes / 2)?;
    assert!(
        f.provider.snapshot_info(&spec).is_none(),
        "a truncated snapshot is unusable"
    );
    assert!(
        !info.dir.exists(),
        "the truncated snapshot was not discarded"
    );
    let vm = f.provider.allocate_vm(&spec).await?;
    assert_eq!(sh(&vm, "hostname").await?.trim(), "kiln");
    Box::new(vm).release().await?;
    Ok(())
}

/// A snapshot of another machine shape (here: memory) is not used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_are_keyed_by_machine_shape() -> TestResult {
    let Some(f) = fixture(false) else {
        return Ok(());
    };
    let small = spec(Network::None);
    f.provider.prepare_snapshot(&small).await?;
    let big = VmSpec {
        memory_mib: 768,
        ..small.clone()
    };
    assert!(f.provider.snapshot_info(&small).is_some());
    assert!(f.provider.snapshot_info(&big).is_none());
    let err = f.provider.restore_vm(&big).await.err().ok_or("restored")?;
    assert!(err.to_string().contains("made for another one"), "{err}");
    Ok(())
}

async fn wait_for_snapshot(
    f: &Fixture,
    spec: &VmSpec,
) -> Result<kiln_vm::qemu::SnapshotInfo, Box<dyn std::error::Error>> {
    for _ in 0..600 {
        if let Some(info) = f.provider.snapshot_info(spec) {
            return Ok(info);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err("no snapshot was built in the background within 60 s".into())
}

/// The `debian` flavour: each restored VM writes to its own overlay of the
/// template's frozen disk; nothing of one reaches another or the snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debian_vms_restore_onto_their_own_overlays() -> TestResult {
    let Some(f) = fixture(true) else {
        return Ok(());
    };
    if f.provider.config().debian.is_none() {
        eprintln!("SKIPPED: no debian image (kiln image build --flavour debian)");
        return Ok(());
    }
    let spec = VmSpec {
        image: "debian".into(),
        ..spec(Network::None)
    };
    let info = f.provider.prepare_snapshot(&spec).await?;
    let disk = info.dir.join("disk.qcow2");
    let disk_before = std::fs::read(&disk)?;
    let a = f.provider.allocate_vm(&spec).await?;
    let b = f.provider.allocate_vm(&spec).await?;
    let root = sh(
        &a,
        "awk '$2 == \"/\" {print $1, substr($4, 1, 2)}' /proc/mounts",
    )
    .await?;
    assert_eq!(root.trim(), "/dev/vda rw", "{root}");
    let (ha, hb) = (sh(&a, "hostname").await?, sh(&b, "hostname").await?);
    assert!(
        ha.starts_with("kiln-") && hb.starts_with("kiln-"),
        "not restored: {ha} {hb}"
    );
    assert_ne!(ha, hb);
    sh(&a, "echo mine > /root/only-in-a && sync").await?;
    let absent = sh(&b, "test -e /root/only-in-a && echo PRESENT || echo ABSENT").await?;
    assert_eq!(absent.trim(), "ABSENT");
    assert!(a.state_dir().join("overlay.qcow2").is_file());
    Box::new(a).release().await?;
    Box::new(b).release().await?;
    assert_eq!(
        std::fs::read(&disk)?,
        disk_before,
        "the frozen disk changed"
    );
    assert!(
        vm_dirs(f.state.path()).is_empty(),
        "{:?}",
        vm_dirs(f.state.path())
    );
    Ok(())
}
