//! The qemu backend on the vsock transport, against real microVMs and a
//! real `vhost-device-vsock` daemon per VM.
//!
//! Needs what `tests/qemu.rs` needs plus the daemon (`./scripts/setup.sh`
//! installs it into `$KILN_HOME/bin`). Without them each test prints why
//! and passes, unless `KILN_REQUIRE_QEMU` is set (CI): then a missing
//! daemon, like a missing image, fails.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kiln_vm::qemu::AgentTransport;
use kiln_vm::{
    ExecRequest, KillGrace, Network, OutputStream, PoolConfig, QemuConfig, QemuProvider, QemuVm,
    Vm, VmProvider, VmSpec, WarmPool,
};
use support::{alive, bytes, chain, gone, noise, processes_mentioning, run, sh, text};
use tempfile::TempDir;

mod support;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Bounds a wait that only a broken transport would make endless.
const HANG_GUARD: Duration = Duration::from_secs(120);

struct Fixture {
    provider: Arc<QemuProvider>,
    state: TempDir,
}

/// A provider on the vsock transport.
fn fixture() -> Option<Fixture> {
    fixture_with(|_| {})
}

fn fixture_with(adjust: impl FnOnce(&mut QemuConfig)) -> Option<Fixture> {
    let (provider, state) = support::provider("kv", |config| {
        config.kill_grace = KillGrace {
            interrupt: Duration::from_millis(500),
            terminate: Duration::from_millis(500),
        };
        config.shutdown_timeout = Duration::from_secs(5);
        config.transport = AgentTransport::Vsock;
        adjust(config);
    })?;
    Some(Fixture {
        provider: Arc::new(provider),
        state,
    })
}

fn spec() -> VmSpec {
    support::spec(Network::None)
}

impl Fixture {
    async fn vm(&self) -> QemuVm {
        match self.provider.allocate_vm(&spec()).await {
            Ok(vm) => vm,
            Err(e) => panic!("allocate failed: {}", chain(&e)),
        }
    }

    fn state_entries(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.state.path())
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boots_over_vsock_says_hello_and_streams_output_in_order() -> TestResult {
    // Snapshots on: the vsock transport must cold-boot anyway.
    let Some(f) = fixture_with(|c| c.snapshot_restore = true) else {
        return Ok(());
    };
    let vm = f.vm().await;
    let daemon = vm.vsock_daemon_pid().ok_or("no vsock daemon")?;
    assert!(alive(daemon));
    let console = std::fs::read_to_string(vm.state_dir().join("console.log"))?;
    assert!(console.contains("kiln-init: vsock port 1024"), "{console}");
    assert!(
        !vm.state_dir().join("agent.sock").exists(),
        "a virtio-serial socket on the vsock transport"
    );
    // The guest kernel knows its transport, and has no virtio-serial port.
    let (r, out, err) = sh(
        &vm,
        "cat /proc/cmdline; ls /sys/class/virtio-ports 2>/dev/null | wc -l",
    )
    .await?;
    assert!(r.success(), "{r:?} {err}");
    assert!(out.contains("kiln.transport=vsock"), "{out}");
    assert!(out.ends_with("\n0\n"), "{out}");

    // Streamed, not buffered: the command waits for a file that the host
    // creates only after it has received the first line.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let script = "echo first; until [ -e /tmp/go ]; do sleep 0.05; done; \
                  echo second >&2; for i in 1 2 3 4 5; do echo line$i; done";
    let exec = vm.exec(ExecRequest::new(["sh", "-c", script]), tx);
    let host = async {
        let first = rx.recv().await.ok_or("no output")?;
        assert_eq!(first.stream, OutputStream::Stdout);
        assert_eq!(&first.data[..], b"first\n");
        let (r, _, err) = sh(&vm, "touch /tmp/go").await?;
        assert!(r.success(), "{r:?} {err}");
        let mut rest = vec![first];
        while let Some(chunk) = rx.recv().await {
            rest.push(chunk);
        }
        Ok::<_, Box<dyn std::error::Error>>(rest)
    };
    let (result, chunks) =
        tokio::time::timeout(HANG_GUARD, async { tokio::join!(exec, host) }).await?;
    let (result, chunks) = (result?, chunks?);
    assert!(result.success(), "{result:?}");
    assert_eq!(
        text(&chunks, OutputStream::Stdout),
        "first\nline1\nline2\nline3\nline4\nline5\n"
    );
    assert_eq!(text(&chunks, OutputStream::Stderr), "second\n");

    // No snapshot with vsock: refused, said why, and nothing restored or
    // built in the background.
    let refused = f.provider.prepare_snapshot(&spec()).await;
    let err = refused.expect_err("a vsock VM cannot be snapshotted");
    assert!(err.to_string().contains("vsock"), "{err}");
    let stats = f.provider.stats();
    assert_eq!((stats.cold_boots, stats.restored), (1, 0), "{stats:?}");
    assert_eq!(stats.background_builds, 0, "{stats:?}");
    Box::new(vm).release().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_and_archives_round_trip_over_vsock() -> TestResult {
    let Some(f) = fixture() else { return Ok(()) };
    let vm = f.vm().await;
    // Several protocol chunks (1 MiB each), not a repeating pattern.
    let data = noise(5 * 1024 * 1024 + 13);
    vm.put_file("/home/runner/work/data.bin", data.clone(), 0o640)
        .await?;
    assert!(vm.get_file("/home/runner/work/data.bin").await? == data);
    let (_, mode, _) = sh(&vm, "stat -c %a /home/runner/work/data.bin").await?;
    assert_eq!(mode, "640\n");

    let host = tempfile::tempdir()?;
    let src = host.path().join("src");
    std::fs::create_dir_all(src.join("nested"))?;
    std::fs::write(src.join("top.txt"), b"top\n")?;
    std::fs::write(src.join("nested/blob"), &data[..100_000])?;
    std::os::unix::fs::symlink("top.txt", src.join("link"))?;
    kiln_vm::upload_dir(&vm, &src, "/home/runner/work/repo").await?;
    let (r, out, _) = sh(
        &vm,
        "cd /home/runner/work/repo && cat link && wc -c < nested/blob",
    )
    .await?;
    assert!(r.success(), "{r:?}");
    assert_eq!(out, "top\n100000\n");
    vm.put_file(
        "/home/runner/work/repo/made-in-guest",
        b"guest\n".to_vec(),
        0o644,
    )
    .await?;
    let back = host.path().join("back");
    kiln_vm::download_dir(&vm, "/home/runner/work/repo", &back).await?;
    assert!(std::fs::read(back.join("nested/blob"))? == data[..100_000]);
    assert_eq!(std::fs::read(back.join("made-in-guest"))?, b"guest\n");
    assert_eq!(std::fs::read_link(back.join("link"))?, Path::new("top.txt"));
    Box::new(vm).release().await?;
    Ok(())
}

/// The numbers `seq 1 LAST` prints add up to at least 100 MiB.
const LAST: u64 = 12_885_412;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_mib_of_output_arrive_intact_and_in_order() -> TestResult {
    let Some(f) = fixture() else { return Ok(()) };
    let vm = f.vm().await;
    let (result, chunks) = tokio::time::timeout(
        HANG_GUARD,
        run(&vm, ExecRequest::new(["seq", "1", &LAST.to_string()])),
    )
    .await??;
    assert!(result.success(), "{result:?}");
    let out = bytes(&chunks, OutputStream::Stdout);
    assert!(out.len() >= 100 * 1024 * 1024, "only {} bytes", out.len());
    // Every line is the next number: nothing lost, doubled or reordered.
    let mut expected = 1u64;
    for line in out.split(|&b| b == b'\n') {
        if expected > LAST {
            assert!(line.is_empty(), "output after the last number");
            break;
        }
        let got: u64 = std::str::from_utf8(line)?.parse()?;
        assert_eq!(got, expected, "line {expected}");
        expected += 1;
    }
    assert_eq!(expected, LAST + 1);
    // The connection still works afterwards.
    vm.ping().await?;
    Box::new(vm).release().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_and_drop_leave_no_qemu_no_daemon_and_no_state() -> TestResult {
    let Some(f) = fixture() else { return Ok(()) };
    for release in [true, false] {
        let vm = f.vm().await;
        let dir = vm.state_dir().to_owned();
        let qemu = vm.qemu_pid().ok_or("no qemu pid")?;
        let daemon = vm.vsock_daemon_pid().ok_or("no daemon pid")?;
        let mut programs: Vec<String> = processes_mentioning(&dir)
            .into_iter()
            .map(|(_, program)| program)
            .collect();
        programs.sort();
        assert_eq!(
            programs,
            ["qemu-system-x86_64", "vhost-device-vsock"],
            "one qemu and one daemon per vm"
        );
        if release {
            Box::new(vm).release().await?;
        } else {
            drop(vm);
        }
        assert!(gone(qemu).await, "qemu survived (release: {release})");
        assert!(gone(daemon).await, "daemon survived (release: {release})");
        assert!(!dir.exists(), "state survived (release: {release})");
        assert!(processes_mentioning(&dir).is_empty());
    }
    assert!(f.state_entries().is_empty(), "{:?}", f.state_entries());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_daemon_makes_the_vm_unhealthy() -> TestResult {
    let Some(f) = fixture() else { return Ok(()) };
    let vm = f.vm().await;
    assert!(vm.is_alive());
    let daemon = vm.vsock_daemon_pid().ok_or("no daemon pid")?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(daemon)?),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    assert!(gone(daemon).await);
    // The process watcher sees the exit: a pool would discard this VM.
    let mut unhealthy = false;
    for _ in 0..250 {
        if !vm.is_alive() {
            unhealthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        unhealthy,
        "a vm without its vsock daemon still counts as alive"
    );
    let dir = vm.state_dir().to_owned();
    // Release still cleans up (the agent cannot be reached: QEMU is killed).
    let _ = Box::new(vm).release().await;
    assert!(!dir.exists());
    assert!(processes_mentioning(&dir).is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_warm_pool_hands_out_cold_booted_vsock_vms() -> TestResult {
    let Some(f) = fixture_with(|c| c.snapshot_restore = true) else {
        return Ok(());
    };
    let inner: Arc<dyn VmProvider> = f.provider.clone();
    let pool = WarmPool::new(
        inner,
        PoolConfig {
            specs: vec![spec()],
            ..PoolConfig::new(1, 2)
        },
    );
    for round in 0..2 {
        let vm = tokio::time::timeout(HANG_GUARD, pool.allocate(&spec()))
            .await??
            .vm;
        let (r, out, _) = sh(vm.as_ref(), "echo pooled").await?;
        assert!(r.success(), "round {round}: {r:?}");
        assert_eq!(out, "pooled\n");
        vm.release().await?;
    }
    pool.shutdown().await?;
    let stats = f.provider.stats();
    assert_eq!(stats.restored, 0, "{stats:?}");
    assert!(stats.cold_boots >= 2, "{stats:?}");
    assert!(f.state_entries().is_empty(), "{:?}", f.state_entries());
    assert!(processes_mentioning(f.state.path()).is_empty());
    Ok(())
}

/// Run by `orphans_of_a_killed_owner_are_reaped_with_their_daemon` in a
/// child process: boots a vsock VM, says where, and waits to be killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vsock_orphan_owner_helper() -> TestResult {
    let Some(state) = std::env::var_os("KILN_VSOCK_TEST_ORPHAN_STATE") else {
        return Ok(()); // only meaningful as the child of the test below
    };
    let mut config = support::config(Path::new(&state))?;
    config.transport = AgentTransport::Vsock;
    let provider = QemuProvider::new(config)?;
    let vm = provider.allocate_vm(&spec()).await?;
    println!("READY {}", vm.state_dir().display());
    tokio::time::sleep(Duration::from_secs(300)).await;
    drop(vm);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_of_a_killed_owner_are_reaped_with_their_daemon() -> TestResult {
    let Some(f) = fixture() else { return Ok(()) };
    let (mut child, dir) = support::spawn_vm_owner(
        "vsock_orphan_owner_helper",
        "KILN_VSOCK_TEST_ORPHAN_STATE",
        f.state.path(),
    )
    .await?;
    assert_eq!(f.provider.reap_orphans().await?, 0);
    child.kill()?; // SIGKILL: no release, no Drop
    child.wait()?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let orphans = processes_mentioning(&dir);
    let mut programs: Vec<&str> = orphans.iter().map(|(_, p)| p.as_str()).collect();
    programs.sort_unstable();
    assert_eq!(
        programs,
        ["qemu-system-x86_64", "vhost-device-vsock"],
        "qemu and the daemon outlive their owner"
    );

    assert_eq!(f.provider.reap_orphans().await?, 1);
    for (pid, program) in &orphans {
        assert!(gone(*pid).await, "{program} {pid} survived reaping");
    }
    assert!(!dir.exists());
    assert!(f.state_entries().is_empty());
    Ok(())
}
