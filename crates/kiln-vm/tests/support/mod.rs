//! What the real-VM test files share: a provider over the images of
//! `$KILN_HOME` with its own state directory, and the skip rule (say why
//! and pass, unless `KILN_REQUIRE_QEMU` is set, as in CI, where a missing
//! QEMU, image or vsock daemon fails).

// Each test file uses its own part of this.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use kiln_vm::qemu::{AccelMode, SetupError};
use kiln_vm::{
    ExecRequest, ExecResult, Network, OutputChunk, OutputStream, QemuConfig, QemuProvider, Vm,
    VmError, VmSpec,
};
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

/// Whether a host process still runs (zombies count as gone).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|s| s != "Z" && s != "X")
    })
}

/// Waits (bounded: 5 s) until `pid` is gone.
pub async fn gone(pid: u32) -> bool {
    for _ in 0..250 {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Live host processes whose command line mentions `dir`, with their
/// program's file name.
pub fn processes_mentioning(dir: &Path) -> Vec<(u32, String)> {
    let needle = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter_map(|pid| {
                    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
                    let cmdline = String::from_utf8_lossy(&cmdline).into_owned();
                    let program = cmdline.split('\0').next()?.rsplit('/').next()?.to_owned();
                    (cmdline.contains(&needle) && alive(pid)).then_some((pid, program))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Runs the test `helper` of this test binary as a child process with
/// `env_var` set to `state`; the helper boots a VM, prints `READY <dir>`
/// and waits to be killed. Returns the child and the VM's directory.
pub async fn spawn_vm_owner(
    helper: &str,
    env_var: &str,
    state: &Path,
) -> Result<(std::process::Child, PathBuf), Box<dyn std::error::Error>> {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(["--exact", helper, "--nocapture", "--test-threads", "1"])
        .env(env_var, state)
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let dir = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            // libtest prints "test <name> ... " without a newline first.
            .find_map(|l| {
                l.split_once("READY ")
                    .map(|(_, dir)| PathBuf::from(dir.trim()))
            })
    })
    .await?;
    match dir {
        Some(dir) => Ok((child, dir)),
        None => {
            let _ = child.kill();
            panic!("the owner process never booted its VM");
        }
    }
}

/// Runs a command, collecting its output chunks in order.
pub async fn run(vm: &dyn Vm, req: ExecRequest) -> Result<(ExecResult, Vec<OutputChunk>), VmError> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let result = vm.exec(req, tx).await?;
    let mut chunks = Vec::new();
    while let Ok(chunk) = rx.try_recv() {
        chunks.push(chunk);
    }
    Ok((result, chunks))
}

/// The bytes of one stream, in order.
pub fn bytes(chunks: &[OutputChunk], stream: OutputStream) -> Vec<u8> {
    chunks
        .iter()
        .filter(|c| c.stream == stream)
        .flat_map(|c| c.data.iter().copied())
        .collect()
}

pub fn text(chunks: &[OutputChunk], stream: OutputStream) -> String {
    String::from_utf8_lossy(&bytes(chunks, stream)).into_owned()
}

/// `sh -c script`: its result, stdout and stderr.
pub async fn sh(vm: &dyn Vm, script: &str) -> Result<(ExecResult, String, String), VmError> {
    let (result, chunks) = run(vm, ExecRequest::new(["sh", "-c", script])).await?;
    Ok((
        result,
        text(&chunks, OutputStream::Stdout),
        text(&chunks, OutputStream::Stderr),
    ))
}

/// `len` pseudo-random bytes (xorshift, fixed seed): no repeating pattern
/// that a chunking bug could hide behind.
pub fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
