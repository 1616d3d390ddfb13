//! The qemu backend against real microVMs (TCG where KVM does not work).
//!
//! Needs QEMU and the guest image (`./scripts/setup.sh && kiln image build`,
//! or `scripts/build-kernel.sh` + `scripts/build-initramfs.sh --agent
//! <static kiln-agent>`), found under `$KILN_HOME` (default
//! `~/.local/share/kiln`). Without them each test prints why and passes —
//! unless `KILN_REQUIRE_QEMU` is set (CI), where a missing image fails.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_vm::qemu::GuestImage;
use kiln_vm::{
    ExecRequest, KillGrace, Network, OutputChunk, OutputStream, QemuConfig, QemuProvider, QemuVm,
    Vm, VmError, VmProvider, VmSpec,
};
use support::{alive, chain, config, gone, noise, processes_mentioning, run, sh, skip, spec, text};
use tempfile::TempDir;

mod support;
use tokio_util::sync::CancellationToken;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const GRACE: KillGrace = KillGrace {
    interrupt: Duration::from_millis(500),
    terminate: Duration::from_millis(500),
};

/// A provider with its own state directory, or `None` (printed) when QEMU
/// or the image is missing and skipping is allowed.
struct Fixture {
    provider: Arc<QemuProvider>,
    state: TempDir,
}

fn fixture() -> Option<Fixture> {
    fixture_with(|_| {})
}

fn fixture_with(adjust: impl FnOnce(&mut QemuConfig)) -> Option<Fixture> {
    let (provider, state) = support::provider("kq", |config| {
        config.kill_grace = GRACE;
        config.shutdown_timeout = Duration::from_secs(5);
        adjust(config);
    })?;
    Some(Fixture {
        provider: Arc::new(provider),
        state,
    })
}

impl Fixture {
    async fn vm(&self) -> QemuVm {
        self.vm_with(&spec(Network::None)).await
    }

    async fn vm_with(&self, spec: &VmSpec) -> QemuVm {
        match self.provider.allocate_vm(spec).await {
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
async fn boots_answers_hello_and_runs_echo() -> TestResult {
    let Some(f) = fixture() else { return Ok(()) };
    println!("accelerator: {}", f.provider.accel());
    let vm = f.vm().await;
    assert!(vm.id().as_str().starts_with("qemu-"));
    assert_eq!(vm.layout(), &kiln_vm::GuestLayout::standard());
    let (result, chunks) = run(&vm, ExecRequest::new(["echo", "hello", "guest"])).await?;
    assert!(result.success(), "{result:?}");
    assert_eq!(text(&chunks, OutputStream::Stdout), "hello guest\n");
    // The layout exists before the VM is handed out, and it is a guest.
    let (result, out, _) = sh(&vm, "ls -d /home/runner/work/_temp && uname -r && hostname").await?;
    assert!(result.success(), "{result:?} {out}");
    assert!(out.starts_with("/home/runner/work/_temp\n"), "{out}");
    assert_ne!(
        out.lines().nth(1),
        Some(
            String::from_utf8_lossy(
                &std::process::Command::new("uname")
                    .arg("-r")
                    .output()?
                    .stdout
            )
            .trim()
        ),
        "the command ran on the host kernel"
    );
    let console = std::fs::read_to_string(vm.state_dir().join("console.log"))?;
    assert!(console.contains("kiln-init"), "{console}");
    // The guest was booted with this VM's token, so its agent would refuse
    // any other host's hello.
    let (_, token, _) = sh(&vm, "tr ' ' '\\n' </proc/cmdline | grep '^kiln.token='").await?;
    let token = token.trim().trim_start_matches("kiln.token=");
    assert_eq!(token.len(), 32, "{token:?}");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{token:?}");
    Box::new(vm).release().await?;
    assert!(f.state_entries().is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_cwd_and_stdin_are_exactly_as_requested() -> TestResult {
    let Some(f) = fixture() else { return Ok(()) };
    let vm = f.vm().await;
    let (result, chunks) = run(&vm, ExecRequest::new(["env"]).env("FOO", "bar baz")).await?;
    assert!(result.success(), "{result:?}");
    assert_eq!(
        text(&chunks, OutputStream::Stdout),
        format!("FOO=bar baz\nPATH={}\n", kiln_vm::DEFAULT_PATH),
        "nothing leaks in from the agent's environment (its token included)"
    );
    let (_, chunks) = run(&vm, ExecRequest::new(["pwd"])).await?;
    assert_eq!(text(&chunks, OutputStream::Stdout), "/home/runner/work\n");
    let (_, chunks) = run(
        &vm,
        ExecRequest::new(["pwd"]).cwd("/home/runner/work/_temp/"),
    )
    .await?;
    assert_eq!(
        text(&chunks, OutputStream::Stdout),
        "/home/runner/work/_temp\n"
    );
    let input: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    let (result, chunks) = run(&vm, ExecRequest::new(["cat"]).stdin(input.clone())).await?;
    assert!(result.success(), "{result:?}");
    let echoed: Vec<u8> = chunks.iter().flat_map(|c| c.data.clone()).collect();
    assert!(
        echoed == input,
        "stdin came back changed ({} bytes)",
        echoed.len()
    );
    let (result, chunks) = run(&vm, ExecRequest::new(["cat"])).await?;
    assert!(
        result.success() && chunks.is_empty(),
        "stdin is empty by default"
    );
    let err = run(&vm, ExecRequest::new(["pwd"]).cwd("relative")).await;
    assert!(matches!(err, Err(VmError::InvalidPath { .. })), "{err:?}");
    Box::new(vm).release().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_streams_in_order_while_the_command_runs() -> TestResult {
    let Some(f) = fixture() else { return Ok(()) };
    let vm = f.vm().await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let started = Instant::now();
    let collect = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(chunk) = rx.recv().await {
            seen.push((started.elapsed(), chunk));
        }
        seen
    });
    let script = "echo first; sleep 2; echo second >&2; for i in 1 2 3 4 5; do echo line$i; done";
    let result = vm.exec(ExecRequest::new(["sh", "-c", script]), tx).await?;
    let returned = started.elapsed();
    let seen = collect.await?;
    assert!(result.success(), "{result:?}");
    let chunks: Vec<OutputChunk> = seen.iter().map(|(_, c)| c.clone()).collect();
    assert_eq!(
        text(&chunks, OutputStream::Stdout),
        "first\nline1\nline2\nline3\nline4\nline5\n"
    );
    assert_eq!(text(&chunks, OutputStream::Stderr), "second\n");
    let first_at = seen.first().map(|(t, _)| *t).ok_or("no output")?;
    let second_at = seen
        .iter()
        .find(|(_, c)| c.stream == OutputStream::Stderr)
        .map(|(t, _)| *t)
        .ok_or("no stderr")?;
    // Streamed, not buffered until the end: the first line arrived while
    // the command still slept.
    assert!(
        first_at + Duration::from_secs(1) < returned,
        "{first_at:?} vs {returned:?}"
    );
    assert!(first_at < second_at);
    Box::new(vm).release().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_signals_and_spawn_errors() -> TestResult {
    let Some(f) = fixture() else { return Ok(()) };
    let vm = f.vm().await;
    let (r, _, _) = sh(&vm, "exit 3").await?;
    assert_eq!((r.exit_code, r.signal, r.success()), (Some(3), None, false));
    let (r, _, _) = sh(&vm, "kill -KILL $$").await?;
    assert_eq!((r.exit_code, r.signal), (None, Some(9)));
    let (r, _, _) = sh(&vm, "true").await?;
    assert!(r.success());
    let err = run(&vm, ExecRequest::new(["kiln-no-such-program"])).await;
    match err {
        Err(VmError::Spawn { program, source }) => {
            assert_eq!(program, "kiln-no-such-program");
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound, "{source}");
        }
        other => panic!("expected a spawn error: {other:?}"),
    }
    let err = run(&vm, ExecRequest::new(Vec::<String>::new())).await;
    assert!(matches!(err, Err(VmError::InvalidRequest(_))), "{err:?}");
    // The VM is still fine after failed requests.
    let (r, out, _) = sh(&vm, "echo ok").await?;
    assert!(r.success() && out == "ok\n");
    Box::new(vm).release().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_kills_the_whole_process_group_in_the_guest() -> TestResult {
    let Some(f) = fixture() else { return Ok(()) };
    let vm = f.vm().await;
    // The background sleep ignores SIGINT (async commands of a
    // non-interactive shell do): only the group kill ends it.
    let req = ExecRequest::new(["sh", "-c", "sleep 300 & echo $! > /tmp/bg; exec sleep 300"])
        .timeout(Duration::from_secs(1));
    let (result, _) = run(&vm, req).await?;
    assert!(result.timed_out && !result.cancelled, "{result:?}");
    assert!(!result.success());
    assert!(result.duration < Duration::from_secs(30), "{result:?}");
    let (r, out, err) = sh(
        &vm,
        "bg=$(cat /tmp/bg); for i in $(seq 100); do kill -0 $bg 2>/dev/null || { echo gone; exit 0; }; \
         sleep 0.05; done; echo alive; exit 1",
    )
    .await?;
    assert!(
        r.success(),
        "background process survived the timeout: {out} {err}"
    );
    Box::new(vm).release().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_runs_the_ladder() -> TestResult {
    let Some(f) = fixture() else { return Ok(()) };
    let vm = f.vm().await;
    // A script that survives SIGINT and SIGTERM sees both, then SIGKILL.
    let script = "trap 'echo int' INT; trap 'echo term' TERM; echo ready; \
                  while :; do sleep 0.1; done";
    let cancel = CancellationToken::new();
    let req = ExecRequest::new(["bash", "-c", script]).cancel(cancel.clone());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let exec = vm.exec(req, tx);
    let watch = async {
        let mut out = Vec::new();
        while let Some(chunk) = rx.recv().await {
            // stderr has bash's own "Terminated" notes about its children.
            if chunk.stream == OutputStream::Stdout {
                out.extend(chunk.data);
            }
            if out.starts_with(b"ready\n") && !cancel.is_cancelled() {
                cancel.cancel();
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    let (result, out) = tokio::join!(exec, watch);
    let result = result?;
    assert!(result.cancelled && !result.timed_out, "{result:?}");
    assert_eq!(result.signal, Some(9), "{result:?} {out}");
    assert_eq!(out, "ready\nint\nterm\n");
    assert!(
        result.duration >= GRACE.interrupt + GRACE.terminate,
        "{result:?}"
    );

    // A command that honours SIGINT stops at the first rung.
    let cancel = CancellationToken::new();
    let req = ExecRequest::new(["sleep", "300"]).cancel(cancel.clone());
    let canceller = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            cancel.cancel();
        })
    };
    let (result, _) = run(&vm, req).await?;
    canceller.await?;
    assert!(result.cancelled, "{result:?}");
    assert_eq!(result.signal, Some(2), "{result:?}");

    // Already cancelled: not started at all.
    let req = ExecRequest::new(["sh", "-c", "touch /tmp/started"]).cancel(cancel);
    let (result, _) = run(&vm, req).await?;
    assert!(result.cancelled);
    let (r, _, _) = sh(&vm, "test -e /tmp/started").await?;
    assert_eq!(r.exit_code, Some(1));
    Box::new(vm).release().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_and_archives_round_trip() -> TestResult {
    let Some(f) = fixture() else { return Ok(()) };
    let vm = f.vm().await;
    // Larger than one protocol chunk (1 MiB), and not a repeating pattern.
    let data = noise(3 * 1024 * 1024 + 17);
    vm.put_file("/home/runner/work/a/b/data.bin", data.clone(), 0o640)
        .await?;
    assert!(vm.get_file("/home/runner/work/a/b/data.bin").await? == data);
    let (_, mode, _) = sh(&vm, "stat -c %a /home/runner/work/a/b/data.bin").await?;
    assert_eq!(mode, "640\n");
    vm.put_file("/tmp/empty", Vec::new(), 0o600).await?;
    assert!(vm.get_file("/tmp/empty").await?.is_empty());
    let missing = vm.get_file("/tmp/missing").await;
    assert!(
        matches!(missing, Err(VmError::NotFound { .. })),
        "{missing:?}"
    );

    let host = tempfile::tempdir()?;
    let src = host.path().join("src");
    std::fs::create_dir_all(src.join("nested/deeper"))?;
    std::fs::write(src.join("top.txt"), b"top\n")?;
    std::fs::write(src.join("nested/deeper/run.sh"), b"#!/bin/sh\necho ran\n")?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            src.join("nested/deeper/run.sh"),
            std::fs::Permissions::from_mode(0o755),
        )?;
    }
    std::os::unix::fs::symlink("top.txt", src.join("link"))?;
    kiln_vm::upload_dir(&vm, &src, "/home/runner/work/repo").await?;
    let (r, out, _) = sh(
        &vm,
        "cd /home/runner/work/repo && ./nested/deeper/run.sh && cat link",
    )
    .await?;
    assert!(r.success(), "{r:?}");
    assert_eq!(out, "ran\ntop\n");
    vm.put_file(
        "/home/runner/work/repo/made-in-guest",
        b"guest\n".to_vec(),
        0o644,
    )
    .await?;
    let back = host.path().join("back");
    kiln_vm::download_dir(&vm, "/home/runner/work/repo", &back).await?;
    assert_eq!(
        std::fs::read(back.join("nested/deeper/run.sh"))?,
        b"#!/bin/sh\necho ran\n"
    );
    assert_eq!(std::fs::read(back.join("made-in-guest"))?, b"guest\n");
    assert_eq!(std::fs::read_link(back.join("link"))?, Path::new("top.txt"));
    let missing = vm.get_archive("/no/such/dir").await;
    assert!(
        matches!(missing, Err(VmError::NotFound { .. })),
        "{missing:?}"
    );
    Box::new(vm).release().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vms_are_isolated_from_each_other_and_from_the_host() -> TestResult {
    let Some(f) = fixture() else { return Ok(()) };
    let (one, two) = tokio::join!(f.vm(), f.vm());
    one.put_file("/home/runner/marker", b"one\n".to_vec(), 0o644)
        .await?;
    let (r, _, _) = sh(&one, "test -e /home/runner/marker").await?;
    assert!(r.success());
    let (r, _, _) = sh(&two, "test -e /home/runner/marker").await?;
    assert_eq!(r.exit_code, Some(1), "VM 2 sees VM 1's file");
    let seen = two.get_file("/home/runner/marker").await;
    assert!(matches!(seen, Err(VmError::NotFound { .. })), "{seen:?}");

    // A host file is not visible in the guest, whatever its path.
    let host_file = tempfile::NamedTempFile::new()?;
    std::fs::write(host_file.path(), b"host secret")?;
    let path = host_file.path().to_string_lossy().into_owned();
    let (r, _, _) = run(&one, ExecRequest::new(["test", "-e", path.as_str()]))
        .await
        .map(|(r, c)| (r, c, ()))?;
    assert_eq!(r.exit_code, Some(1), "{path} exists in the guest");
    let seen = one.get_file(&path).await;
    assert!(matches!(seen, Err(VmError::NotFound { .. })), "{seen:?}");
    Box::new(one).release().await?;
    Box::new(two).release().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_and_drop_leave_no_process_and_no_state() -> TestResult {
    let Some(f) = fixture() else { return Ok(()) };
    let vm = f.vm_with(&spec(Network::Nat)).await;
    let dir = vm.state_dir().to_owned();
    let qemu = vm.qemu_pid().ok_or("no qemu pid")?;
    let passt: u32 = std::fs::read_to_string(dir.join("passt.pid"))?
        .trim()
        .parse()?;
    let pidfile: u32 = std::fs::read_to_string(dir.join("qemu.pid"))?
        .trim()
        .parse()?;
    assert_eq!(pidfile, qemu);
    assert!(alive(qemu) && alive(passt));
    assert!(dir.join("console.log").exists() && dir.join("agent.sock").exists());
    Box::new(vm).release().await?;
    assert!(gone(qemu).await, "qemu {qemu} still runs after release");
    assert!(gone(passt).await, "passt {passt} still runs after release");
    assert!(!dir.exists());
    assert!(processes_mentioning(&dir).is_empty());

    // Never released: Drop kills and deletes.
    let vm = f.vm_with(&spec(Network::Nat)).await;
    let dir = vm.state_dir().to_owned();
    let qemu = vm.qemu_pid().ok_or("no qemu pid")?;
    drop(vm);
    assert!(!dir.exists(), "Drop left the state directory");
    assert!(gone(qemu).await, "qemu {qemu} survived Drop");
    for _ in 0..100 {
        if processes_mentioning(&dir).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(processes_mentioning(&dir).is_empty());
    assert!(f.state_entries().is_empty(), "{:?}", f.state_entries());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_vms_at_once() -> TestResult {
    let Some(f) = fixture() else { return Ok(()) };
    let provider: Arc<dyn VmProvider> = f.provider.clone();
    let spec = spec(Network::None);
    let (a, b, c) = tokio::join!(
        provider.allocate(&spec),
        provider.allocate(&spec),
        provider.allocate(&spec)
    );
    let vms: Vec<Box<dyn Vm>> = vec![a?.vm, b?.vm, c?.vm];
    let ids: std::collections::BTreeSet<String> = vms.iter().map(|v| v.id().to_string()).collect();
    assert_eq!(ids.len(), 3);
    for vm in &vms {
        vm.put_file("/home/runner/id", vm.id().to_string().into_bytes(), 0o644)
            .await?;
    }
    for vm in &vms {
        let (r, out, _) = sh(vm.as_ref(), "cat /home/runner/id").await?;
        assert!(r.success());
        assert_eq!(out, vm.id().to_string());
    }
    assert_eq!(f.state_entries().len(), 3);
    for vm in vms {
        vm.release().await?;
    }
    assert!(f.state_entries().is_empty());
    Ok(())
}

/// The host's address on its default route, if it has one.
fn host_address() -> Option<std::net::IpAddr> {
    routed_address("0.0.0.0:0", "203.0.113.1:9")
}

/// The host's IPv6 address on its default route, if it has one.
fn host_address_v6() -> Option<std::net::IpAddr> {
    routed_address("[::]:0", "[2001:db8::1]:9")
}

fn routed_address(bind: &str, documentation_peer: &str) -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind(bind).ok()?;
    // Connecting a UDP socket only picks a route; nothing is sent.
    socket.connect(documentation_peer).ok()?;
    Some(socket.local_addr().ok()?.ip()).filter(|ip| !ip.is_loopback())
}

/// Connects from the guest to `ip:port` with bash's /dev/tcp.
async fn guest_connect(
    vm: &QemuVm,
    ip: &str,
    port: u16,
    timeout_s: u32,
) -> Result<bool, Box<dyn std::error::Error>> {
    let (r, out, _) = sh(
        vm,
        &format!(
            "timeout {timeout_s} bash -c 'echo from-guest >/dev/tcp/{ip}/{port}' && echo CONNECTED"
        ),
    )
    .await?;
    Ok(r.success() && out.contains("CONNECTED"))
}

/// Accepts one connection on `listener` in a thread; yields its first line.
fn accept_line(listener: TcpListener) -> std::thread::JoinHandle<std::io::Result<String>> {
    std::thread::spawn(move || {
        listener.accept().map(|(mut conn, _)| {
            let mut line = String::new();
            let _ = BufReader::new(&mut conn).read_line(&mut line);
            line
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nat_reaches_the_host_network_but_not_host_loopback() -> TestResult {
    let Some(f) = fixture() else { return Ok(()) };
    let vm = f.vm_with(&spec(Network::Nat)).await;
    let (r, out, _) = sh(&vm, "ip -4 addr show eth0; ip route; cat /etc/resolv.conf").await?;
    assert!(r.success(), "{r:?}");
    assert!(out.contains("inet 10.0.2.15/24"), "{out}");
    assert!(out.contains("default via 10.0.2.2"), "{out}");
    assert!(out.contains("nameserver 10.0.2.3"), "{out}");

    // A service on the host's loopback only.
    let loopback = TcpListener::bind("127.0.0.1:0")?;
    loopback.set_nonblocking(true)?;
    let port = loopback.local_addr()?.port();
    for target in ["10.0.2.2", "10.0.2.3", "10.0.2.15"] {
        let (r, out, _) = sh(
            &vm,
            &format!("timeout 3 bash -c 'exec 3<>/dev/tcp/{target}/{port}' && echo CONNECTED"),
        )
        .await?;
        assert!(
            !r.success() && !out.contains("CONNECTED"),
            "reached host loopback via {target}"
        );
    }
    assert!(
        loopback.accept().is_err(),
        "the host's loopback service got a connection from the guest"
    );

    // Control: the network itself works, so the refusals above are not
    // just a dead NIC. The guest reaches the host's routed address.
    match host_address() {
        Some(ip) => {
            let listener = TcpListener::bind((ip, 0))?;
            let port = listener.local_addr()?.port();
            let accepted = accept_line(listener);
            assert!(
                guest_connect(&vm, &ip.to_string(), port, 10).await?,
                "guest cannot reach {ip}:{port} through NAT"
            );
            let line = accepted.join().map_err(|_| "accept thread panicked")??;
            assert_eq!(line, "from-guest\n");
        }
        None => println!("no routed host address: NAT egress control not run"),
    }

    // IPv6, where the host has it: the guest takes an address by SLAAC,
    // reaches the host's routed IPv6 address, and not the host's `::1`.
    match host_address_v6() {
        Some(ip) => {
            let (r, out, _) = sh(&vm, "ip -6 addr show dev eth0 scope global; ip -6 route").await?;
            assert!(r.success(), "{r:?}");
            assert!(out.contains("inet6 "), "no global IPv6 address: {out}");
            let gateway = out
                .lines()
                .find_map(|l| l.strip_prefix("default via "))
                .and_then(|rest| rest.split_whitespace().next())
                .ok_or_else(|| format!("no IPv6 default route: {out}"))?
                .to_owned();
            let loopback6 = TcpListener::bind("[::1]:0")?;
            loopback6.set_nonblocking(true)?;
            let port6 = loopback6.local_addr()?.port();
            // A link-local gateway needs the interface named.
            let target = if gateway.starts_with("fe80:") {
                format!("{gateway}%eth0")
            } else {
                gateway.clone()
            };
            assert!(
                !guest_connect(&vm, &target, port6, 3).await?,
                "reached host ::1 via the IPv6 gateway {gateway}"
            );
            assert!(
                loopback6.accept().is_err(),
                "the host's ::1 service got a connection from the guest"
            );
            let listener = TcpListener::bind((ip, 0))?;
            let port = listener.local_addr()?.port();
            let accepted = accept_line(listener);
            assert!(
                guest_connect(&vm, &ip.to_string(), port, 10).await?,
                "guest cannot reach [{ip}]:{port} over IPv6"
            );
            let line = accepted.join().map_err(|_| "accept thread panicked")??;
            assert_eq!(line, "from-guest\n");
        }
        None => println!("the host has no IPv6 route: IPv6 NAT checks not run"),
    }
    // DNS goes to the host's resolver; without internet the answer may be
    // an error, so this is shown, not asserted.
    let (_, out, err) = sh(
        &vm,
        "timeout 5 nslookup deb.debian.org 10.0.2.3 2>&1 | tail -2",
    )
    .await?;
    println!("guest DNS lookup: {} {}", out.trim(), err.trim());
    Box::new(vm).release().await?;
    Ok(())
}

/// What a guest's init set up, in a form two boots can be compared by:
/// mounts with their options, names, network, device links, the power-off
/// wrappers, and whether the network was up before the first command.
const INIT_PROBE: &str = r#"
awk '{print $1, $2, $3, $4}' /proc/mounts | sort
echo "hostname: $(hostname) $(cat /etc/hostname)"
echo "resolv: $(cat /etc/resolv.conf)"
echo "lo: $(cat /sys/class/net/lo/operstate) $(ip -o addr show dev lo | awk '{print $3, $4}' | tr '\n' ' ')"
echo "eth0: $(ip -4 -o addr show dev eth0 | awk '{print $4}')"
echo "dad: $(cat /proc/sys/net/ipv6/conf/eth0/accept_dad)"
ip route | sort
for l in /dev/fd /dev/stdin /dev/stdout /dev/stderr /dev/virtio-ports/*; do
  echo "link: $l -> $(readlink $l)"
done
for d in /dev/pts /dev/shm /tmp /run /var/tmp; do echo "dir: $d $(stat -c %a $d)"; done
echo "umask: $(umask)"
md5sum /sbin/poweroff /sbin/halt
"#;

/// The agent as /init boots the machine itself; `kiln.init=sh` hands the
/// boot to the shell /init. Both must make the same guest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_init_sets_the_guest_up_as_the_shell_init_does() -> TestResult {
    let Some(native) = fixture() else {
        return Ok(());
    };
    let Some(shell) = fixture_with(|c| c.extra_kernel_args.push("kiln.init=sh".into())) else {
        return Ok(());
    };
    let mut seen = Vec::new();
    for (f, console_says) in [
        (&native, "(native)"),
        (
            &shell,
            "kiln.init=sh: handing the boot to /lib/kiln/init.sh",
        ),
    ] {
        let vm = f.vm_with(&spec(Network::Nat)).await;
        let (r, out, err) = sh(&vm, INIT_PROBE).await?;
        assert!(r.success(), "probe failed: {err}");
        let console = std::fs::read_to_string(vm.state_dir().join("console.log"))?;
        assert!(console.contains(console_says), "{console}");
        Box::new(vm).release().await?;
        seen.push(out);
    }
    let (native_out, shell_out) = (&seen[0], &seen[1]);
    for expected in [
        "devtmpfs /dev devtmpfs",
        "devpts /dev/pts devpts rw,relatime,gid=5,mode=620,ptmxmode=666",
        "tmpfs /dev/shm tmpfs rw,nosuid,nodev",
        "tmpfs /run tmpfs rw,nosuid,nodev,relatime,mode=755",
        "cgroup2 /sys/fs/cgroup cgroup2 rw,relatime,nsdelegate",
        "eth0: 10.0.2.15/24",
        "default via 10.0.2.2 dev eth0",
        "lo: unknown inet 127.0.0.1/8 inet6 ::1/128",
        "dad: 0",
        "link: /dev/fd -> /proc/self/fd",
        "link: /dev/virtio-ports/org.kiln.agent -> ../vport",
        "umask: 0022",
    ] {
        assert!(
            native_out.contains(expected),
            "{expected:?} in:\n{native_out}"
        );
    }
    assert!(native_out.contains("resolv: nameserver "), "{native_out}");
    let diff: Vec<_> = diff_lines(native_out, shell_out);
    assert!(
        diff.is_empty(),
        "native and shell /init differ:\n{}",
        diff.join("\n")
    );
    Ok(())
}

/// Lines only in `a` (`-`) or only in `b` (`+`), hostnames aside (each VM
/// has its own).
fn diff_lines(a: &str, b: &str) -> Vec<String> {
    let keep = |l: &&str| !l.starts_with("hostname:");
    let a: Vec<&str> = a.lines().filter(keep).collect();
    let b: Vec<&str> = b.lines().filter(keep).collect();
    let only = |x: &[&str], y: &[&str], sign: char| -> Vec<String> {
        x.iter()
            .filter(|l| !y.contains(l))
            .map(|l| format!("{sign} {l}"))
            .collect()
    };
    let mut out = only(&a, &b, '-');
    out.extend(only(&b, &a, '+'));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_network_means_no_nic() -> TestResult {
    let Some(f) = fixture() else { return Ok(()) };
    let vm = f.vm().await;
    let (r, out, _) = sh(&vm, "ls /sys/class/net").await?;
    assert!(r.success());
    assert_eq!(out, "lo\n");
    assert!(!vm.state_dir().join("passt.sock").exists());
    Box::new(vm).release().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_orphans_are_reaped_in_the_guest() -> TestResult {
    let Some(f) = fixture() else { return Ok(()) };
    let vm = f.vm().await;
    let (r, _, _) = sh(&vm, "(sleep 0.2 &); sleep 0.1 &").await?;
    assert!(r.success());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, out, _) = sh(
        &vm,
        "for s in /proc/[0-9]*/stat; do read -r line < $s 2>/dev/null && echo \"$line\"; done \
         | awk '{ if ($3 == \"Z\") print }'",
    )
    .await?;
    assert_eq!(out, "", "zombies in the guest");
    Box::new(vm).release().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debian_flavour_writes_only_to_its_overlay() -> TestResult {
    let base_dir = tempfile::tempdir()?;
    let base = base_dir.path().join("rootfs.img");
    let mut image = b"KILN-BASE-IMAGE\n".to_vec();
    image.resize(4 * 1024 * 1024, 0);
    std::fs::write(&base, &image)?;
    // The minimal image plus a raw disk that is not a file system: /init
    // is told not to mount it, so the test sees the bare block device.
    let Some(f) = fixture_with(|c| {
        c.debian = Some(GuestImage {
            rootfs: Some(base.clone()),
            ..c.minimal.clone()
        });
        c.extra_kernel_args = vec!["kiln.root=none".into()];
    }) else {
        return Ok(());
    };
    let spec = VmSpec {
        image: "debian".into(),
        disk_mib: 16,
        ..spec(Network::None)
    };
    let vm = f.vm_with(&spec).await;
    assert!(vm.state_dir().join("overlay.qcow2").exists());
    let (r, out, err) = sh(
        &vm,
        "head -c 16 /dev/vda; printf GUEST-WROTE-THIS | dd of=/dev/vda conv=notrunc 2>/dev/null; \
         sync; blockdev --getsize64 /dev/vda",
    )
    .await?;
    assert!(r.success(), "{err}");
    assert_eq!(out, format!("KILN-BASE-IMAGE\n{}\n", 16 * 1024 * 1024));
    let dir = vm.state_dir().to_owned();
    Box::new(vm).release().await?;
    assert!(std::fs::read(&base)? == image, "the base image was written");
    assert!(!dir.exists());

    let err = match f
        .provider
        .allocate_vm(&VmSpec {
            image: "nope".into(),
            ..spec
        })
        .await
    {
        Ok(_) => panic!("unknown flavour accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("unknown image flavour"), "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_guest_is_a_clear_error_not_a_hang() -> TestResult {
    // /init waits (100 s) for a port that never appears: no agent answers.
    let Some(f) = fixture_with(|c| {
        c.boot_timeout = Duration::from_secs(4);
        c.extra_kernel_args = vec![
            "kiln.port=org.kiln.nope".into(),
            "kiln.port_timeout=100".into(),
        ];
    }) else {
        return Ok(());
    };
    let err = match f.provider.allocate_vm(&spec(Network::None)).await {
        Ok(_) => panic!("a VM without agent was handed out"),
        Err(e) => chain(&e),
    };
    assert!(err.contains("did not answer within 4s"), "{err}");
    assert!(
        err.contains("kiln-init"),
        "the error shows the console: {err}"
    );
    assert!(f.state_entries().is_empty(), "{:?}", f.state_entries());

    // /init gives up after 1 s and powers off: QEMU's exit ends the wait.
    let Some(f) = fixture_with(|c| {
        c.extra_kernel_args = vec![
            "kiln.port=org.kiln.nope".into(),
            "kiln.port_timeout=1".into(),
        ];
    }) else {
        return Ok(());
    };
    let err = match f.provider.allocate_vm(&spec(Network::None)).await {
        Ok(_) => panic!("a VM without agent was handed out"),
        Err(e) => chain(&e),
    };
    assert!(err.contains("qemu exited during boot"), "{err}");
    assert!(err.contains("did not appear within 1s"), "{err}");
    assert!(f.state_entries().is_empty());

    // A guest that stops answering after boot fails its request within the
    // idle timeout.
    let Some(f) = fixture_with(|c| c.agent_idle_timeout = Duration::from_secs(3)) else {
        return Ok(());
    };
    let vm = f.vm().await;
    let qemu = vm.qemu_pid().ok_or("no pid")?;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(qemu)?);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP)?;
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(60), sh(&vm, "sleep 1000")).await;
    let err = match result {
        Err(_) => panic!("exec hung on a frozen guest"),
        Ok(Ok(r)) => panic!("exec on a frozen guest succeeded: {r:?}"),
        Ok(Err(e)) => chain(&e),
    };
    println!("frozen guest detected after {:?}: {err}", started.elapsed());
    assert!(err.contains("failed"), "{err}");
    let released = Box::new(vm).release().await;
    assert!(released.is_ok(), "{released:?}");
    assert!(gone(qemu).await);
    assert!(f.state_entries().is_empty());
    Ok(())
}

#[test]
fn probe_boot_reaches_init_under_tcg() {
    let state = tempfile::tempdir().expect("tempdir");
    let config = match config(state.path()) {
        Ok(config) => config,
        Err(why) => {
            let _: Option<()> = skip(&why);
            return;
        }
    };
    let took = kiln_vm::qemu::accel::probe_boot(
        &config,
        &config.qemu_binary,
        kiln_vm::qemu::Accel::Tcg,
        Duration::from_secs(60),
    );
    match took {
        Ok(took) => println!("probe boot under tcg: {took:?}"),
        Err(e) => panic!("probe boot failed: {e}"),
    }
}

/// Run by `orphans_of_a_killed_owner_are_reaped` in a child process: boots
/// a VM, says where, and waits to be killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_owner_helper() -> TestResult {
    let Some(state) = std::env::var_os("KILN_QEMU_TEST_ORPHAN_STATE") else {
        return Ok(()); // only meaningful as the child of the test below
    };
    let config = config(Path::new(&state))?;
    let provider = QemuProvider::new(config)?;
    let vm = provider.allocate_vm(&spec(Network::Nat)).await?;
    println!("READY {}", vm.state_dir().display());
    tokio::time::sleep(Duration::from_secs(300)).await;
    drop(vm);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_of_a_killed_owner_are_reaped() -> TestResult {
    let Some(f) = fixture() else { return Ok(()) };
    let (mut child, dir) = support::spawn_vm_owner(
        "orphan_owner_helper",
        "KILN_QEMU_TEST_ORPHAN_STATE",
        f.state.path(),
    )
    .await?;
    // Reaping while the owner lives must not touch its VM.
    assert_eq!(f.provider.reap_orphans().await?, 0);
    assert!(dir.exists());
    child.kill()?; // SIGKILL: no release, no Drop
    child.wait()?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let orphans = processes_mentioning(&dir);
    assert_eq!(
        orphans.len(),
        2,
        "qemu and passt outlive their owner: {orphans:?}"
    );

    assert_eq!(f.provider.reap_orphans().await?, 1);
    for (pid, program) in &orphans {
        assert!(gone(*pid).await, "orphan {program} {pid} survived reaping");
    }
    assert!(!dir.exists());
    assert!(f.state_entries().is_empty());
    assert_eq!(f.provider.reap_orphans().await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debian_flavour_boots_from_its_root_disk() -> TestResult {
    let Some(f) = fixture() else { return Ok(()) };
    let Some(base) = f
        .provider
        .config()
        .debian
        .as_ref()
        .and_then(|d| d.rootfs.clone())
    else {
        let _: Option<()> = skip("no debian image (kiln image build --flavour debian)");
        return Ok(());
    };
    let before = std::fs::metadata(&base)?;
    let spec = VmSpec {
        image: "debian".into(),
        ..spec(Network::None)
    };
    let vm = f.vm_with(&spec).await;
    let (r, out, err) = sh(
        &vm,
        ". /etc/os-release && echo \"$ID\" && findmnt -no SOURCE / && \
         echo changed > /etc/kiln-test && sync && cat /etc/kiln-test",
    )
    .await?;
    assert!(r.success(), "{r:?} {err}");
    assert_eq!(out, "debian\n/dev/vda\nchanged\n");
    let overlay = vm.state_dir().join("overlay.qcow2");
    assert!(overlay.exists());
    Box::new(vm).release().await?;
    assert!(!overlay.exists());
    let after = std::fs::metadata(&base)?;
    assert_eq!(
        before.modified()?,
        after.modified()?,
        "the base disk was written"
    );
    assert_eq!(before.len(), after.len());
    Ok(())
}
