//! Real processes on the host: these exercise the exec path the qemu agent
//! will mirror.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use tempfile::TempDir;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::group::pid_alive;
use super::*;
use crate::{CountingProvider, DEFAULT_PATH, OutputStream, download_dir, upload_dir};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const SHORT: KillGrace = KillGrace {
    // Long enough for a loaded machine to run a trap, short enough for tests.
    interrupt: Duration::from_millis(1000),
    terminate: Duration::from_millis(500),
};

fn provider(tmp: &TempDir) -> LocalProvider {
    LocalProvider::new(tmp.path().join("vms")).with_kill_grace(SHORT)
}

async fn alloc(p: &impl VmProvider) -> Result<Box<dyn Vm>, VmError> {
    Ok(p.allocate(&VmSpec::default()).await?.vm)
}

async fn exec(vm: &dyn Vm, req: ExecRequest) -> Result<(ExecResult, Vec<OutputChunk>), VmError> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let result = vm.exec(req, tx).await?;
    let mut chunks = Vec::new();
    while let Ok(c) = rx.try_recv() {
        chunks.push(c);
    }
    Ok((result, chunks))
}

fn sh(script: &str) -> ExecRequest {
    ExecRequest::new(["sh", "-c", script]).timeout(Duration::from_secs(30))
}

fn text(chunks: &[OutputChunk], stream: OutputStream) -> String {
    let bytes: Vec<u8> = chunks
        .iter()
        .filter(|c| c.stream == stream)
        .flat_map(|c| c.data.clone())
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Waits (bounded) for a process to disappear; a killed orphan needs a moment.
async fn gone(pid: i32) -> bool {
    for _ in 0..100 {
        if !pid_alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

fn first_pid(chunks: &[OutputChunk]) -> Result<i32, Box<dyn std::error::Error>> {
    let out = text(chunks, OutputStream::Stdout);
    let line = out.lines().next().ok_or("no pid printed")?;
    Ok(line.trim().parse()?)
}

#[tokio::test]
async fn streams_stdout_and_stderr_in_order() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let vm = alloc(&provider(&tmp)).await?;
    let script = "echo one; sleep 0.2; echo two >&2; sleep 0.2; echo three";
    let (result, chunks) = exec(&*vm, sh(script)).await?;
    assert!(result.success(), "{result:?}");
    let mut merged: Vec<(OutputStream, String)> = Vec::new();
    for c in &chunks {
        let data = String::from_utf8_lossy(&c.data);
        match merged.last_mut() {
            Some((s, text)) if *s == c.stream => text.push_str(&data),
            _ => merged.push((c.stream, data.into_owned())),
        }
    }
    assert_eq!(
        merged,
        vec![
            (OutputStream::Stdout, "one\n".to_owned()),
            (OutputStream::Stderr, "two\n".to_owned()),
            (OutputStream::Stdout, "three\n".to_owned()),
        ]
    );
    Ok(())
}

#[tokio::test]
async fn output_arrives_while_the_command_runs() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let vm = alloc(&provider(&tmp)).await?;
    let token = CancellationToken::new();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let req = ExecRequest::new(["sh", "-c", "echo first; exec sleep 300"]).cancel(token.clone());
    let watcher = async {
        let first = tokio::time::timeout(Duration::from_secs(20), rx.recv()).await;
        token.cancel();
        first
    };
    let (result, first) = tokio::join!(vm.exec(req, tx), watcher);
    let first = first.map_err(|_| "no output before the command ended")?;
    assert_eq!(first.map(|c| c.data), Some(b"first\n".to_vec()));
    assert!(result?.cancelled);
    Ok(())
}

#[tokio::test]
async fn env_is_exactly_the_given_env() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let vm = alloc(&provider(&tmp)).await?;
    let req = ExecRequest::new(["env"])
        .env("FOO", "bar")
        .env("WITH_SPACE", "a b");
    let (result, chunks) = exec(&*vm, req).await?;
    assert!(result.success());
    let lines: BTreeSet<String> = text(&chunks, OutputStream::Stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    let expected: BTreeSet<String> = [
        "FOO=bar".to_owned(),
        "WITH_SPACE=a b".to_owned(),
        format!("PATH={DEFAULT_PATH}"),
    ]
    .into();
    assert_eq!(lines, expected);

    let req = ExecRequest::new(["/usr/bin/env"]).env("PATH", "/nowhere");
    let (_, chunks) = exec(&*vm, req).await?;
    assert_eq!(text(&chunks, OutputStream::Stdout), "PATH=/nowhere\n");
    Ok(())
}

#[tokio::test]
async fn cwd_defaults_to_workspace_and_is_honoured() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let vm = alloc(&provider(&tmp)).await?;
    let (_, chunks) = exec(&*vm, sh("pwd -P")).await?;
    assert_eq!(
        text(&chunks, OutputStream::Stdout).trim_end(),
        vm.layout().workspace_root
    );
    let (_, chunks) = exec(&*vm, sh("pwd -P").cwd(vm.layout().temp.clone())).await?;
    assert_eq!(
        text(&chunks, OutputStream::Stdout).trim_end(),
        vm.layout().temp
    );
    assert!(vm.layout().temp.starts_with(&vm.layout().root));
    Ok(())
}

#[tokio::test]
async fn stdin_is_fed_or_empty() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let vm = alloc(&provider(&tmp)).await?;
    let req = ExecRequest::new(["cat"]).stdin("hello\nworld");
    let (result, chunks) = exec(&*vm, req).await?;
    assert!(result.success());
    assert_eq!(text(&chunks, OutputStream::Stdout), "hello\nworld");
    // Without stdin, `cat` must see EOF rather than inherit ours and hang.
    let req = ExecRequest::new(["cat"]).timeout(Duration::from_secs(20));
    let (result, chunks) = exec(&*vm, req).await?;
    assert!(result.success(), "{result:?}");
    assert!(chunks.is_empty());
    Ok(())
}

#[tokio::test]
async fn exit_codes_and_signals() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let vm = alloc(&provider(&tmp)).await?;
    let (r, _) = exec(&*vm, sh("exit 3")).await?;
    assert_eq!((r.exit_code, r.signal, r.success()), (Some(3), None, false));
    let (r, _) = exec(&*vm, sh("kill -TERM $$")).await?;
    assert_eq!((r.exit_code, r.signal), (None, Some(15)));
    assert!(!r.timed_out && !r.cancelled && !r.success());
    let (r, _) = exec(&*vm, sh("true")).await?;
    assert!(r.success());
    Ok(())
}

#[tokio::test]
async fn bad_requests_are_errors() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let vm = alloc(&provider(&tmp)).await?;
    let err = exec(&*vm, ExecRequest::new(["/definitely/not/here"]))
        .await
        .err();
    assert!(matches!(err, Some(VmError::Spawn { .. })), "{err:?}");
    let err = exec(&*vm, ExecRequest::new(Vec::<String>::new()))
        .await
        .err();
    assert!(matches!(err, Some(VmError::InvalidRequest(_))), "{err:?}");
    let err = exec(&*vm, sh("true").cwd("relative")).await.err();
    assert!(matches!(err, Some(VmError::InvalidPath { .. })), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn timeout_kills_the_whole_process_group() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let vm = alloc(&provider(&tmp)).await?;
    // The background sleep ignores SIGINT (as in any non-interactive shell),
    // so only a group-wide SIGTERM reaches it.
    let req = sh("sleep 300 & echo $!; wait").timeout(Duration::from_millis(300));
    let (result, chunks) = exec(&*vm, req).await?;
    assert!(
        result.timed_out && !result.cancelled && !result.success(),
        "{result:?}"
    );
    let child = first_pid(&chunks)?;
    assert!(
        gone(child).await,
        "background child {child} survived the timeout"
    );
    Ok(())
}

#[tokio::test]
async fn cancellation_sends_sigint_first() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let vm = alloc(&provider(&tmp)).await?;
    let script = "trap 'echo got-int; exit 0' INT; trap 'echo got-term' TERM; \
                  echo ready; while :; do sleep 0.05; done";
    let (result, out) = cancel_after_ready(&*vm, script).await?;
    assert!(result.cancelled && !result.success(), "{result:?}");
    assert_eq!(result.exit_code, Some(0), "{out}");
    assert_eq!(out, "ready\ngot-int\n");
    Ok(())
}

#[tokio::test]
async fn cancellation_escalates_to_sigterm_then_sigkill() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let vm = alloc(&provider(&tmp)).await?;
    let script = "trap 'echo int' INT; trap 'echo term' TERM; \
                  echo ready; while :; do sleep 0.05; done";
    let (result, out) = cancel_after_ready(&*vm, script).await?;
    assert!(result.cancelled, "{result:?}");
    assert_eq!(result.signal, Some(9), "{result:?}");
    assert_eq!(out, "ready\nint\nterm\n");
    Ok(())
}

/// Runs `script`, cancels once it printed `ready`, returns result and stdout.
async fn cancel_after_ready(
    vm: &dyn Vm,
    script: &str,
) -> Result<(ExecResult, String), Box<dyn std::error::Error>> {
    let token = CancellationToken::new();
    let (tx, mut rx) = mpsc::unbounded_channel::<OutputChunk>();
    let req = ExecRequest::new(["sh", "-c", script]).cancel(token.clone());
    let collect = async {
        let mut out = String::new();
        while let Ok(Some(chunk)) = tokio::time::timeout(Duration::from_secs(20), rx.recv()).await {
            // The shell reports killed children on stderr; only stdout matters.
            if chunk.stream == OutputStream::Stdout {
                out.push_str(&String::from_utf8_lossy(&chunk.data));
            }
            if out.contains("ready\n") {
                token.cancel();
            }
        }
        token.cancel();
        out
    };
    let (result, out) = tokio::join!(vm.exec(req, tx), collect);
    Ok((result?, out))
}

#[tokio::test]
async fn a_cancelled_request_never_starts() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let vm = alloc(&provider(&tmp)).await?;
    let token = CancellationToken::new();
    token.cancel();
    let (result, _) = exec(&*vm, sh("touch started").cancel(token)).await?;
    assert!(result.cancelled && result.exit_code.is_none());
    assert!(
        !Path::new(&vm.layout().workspace_root)
            .join("started")
            .exists()
    );
    Ok(())
}

#[tokio::test]
async fn dropping_the_exec_future_kills_the_group() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let vm = alloc(&provider(&tmp)).await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut fut = Box::pin(vm.exec(sh("echo $$; exec sleep 300"), tx));
    let chunk = tokio::select! {
        r = &mut fut => return Err(format!("command ended early: {r:?}").into()),
        c = rx.recv() => c.ok_or("no output")?,
    };
    drop(fut);
    let pid = first_pid(&[chunk])?;
    assert!(gone(pid).await, "process {pid} outlived its dropped exec");
    Ok(())
}

#[tokio::test]
async fn background_process_does_not_hold_exec_and_dies_on_release() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let vm = alloc(&provider(&tmp)).await?;
    let (result, chunks) = exec(&*vm, sh("sleep 300 & echo $!")).await?;
    assert!(result.success() && !result.timed_out, "{result:?}");
    let child = first_pid(&chunks)?;
    assert!(
        pid_alive(child),
        "a finished step must not kill its background jobs"
    );
    vm.release().await?;
    assert!(gone(child).await, "release left {child} running");
    Ok(())
}

#[tokio::test]
async fn put_and_get_file_round_trip() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let vm = alloc(&provider(&tmp)).await?;
    let path = format!("{}/a/b/script.sh", vm.layout().temp);
    vm.put_file(&path, b"#!/bin/sh\necho from-file\n".to_vec(), 0o750)
        .await?;
    assert_eq!(vm.get_file(&path).await?, b"#!/bin/sh\necho from-file\n");
    let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o750);
    let (_, chunks) = exec(&*vm, ExecRequest::new([path.as_str()])).await?;
    assert_eq!(text(&chunks, OutputStream::Stdout), "from-file\n");

    let missing = format!("{}/missing", vm.layout().temp);
    assert!(matches!(
        vm.get_file(&missing).await,
        Err(VmError::NotFound { .. })
    ));
    assert!(matches!(
        vm.put_file("relative", Vec::new(), 0o644).await,
        Err(VmError::InvalidPath { .. })
    ));
    assert!(matches!(
        vm.get_file(&format!("{}/../x", vm.layout().temp)).await,
        Err(VmError::InvalidPath { .. })
    ));
    Ok(())
}

#[tokio::test]
async fn archive_round_trip_keeps_tree_modes_and_links() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("nested/deeper"))?;
    std::fs::create_dir_all(src.join("empty"))?;
    std::fs::write(src.join("top.txt"), b"top")?;
    std::fs::write(src.join("nested/deeper/run.sh"), b"#!/bin/sh\necho ran\n")?;
    std::fs::set_permissions(
        src.join("nested/deeper/run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )?;
    std::os::unix::fs::symlink("top.txt", src.join("link"))?;

    let vm = alloc(&provider(&tmp)).await?;
    let guest = format!("{}/repo", vm.layout().workspace_root);
    upload_dir(&*vm, &src, &guest).await?;
    let (_, chunks) = exec(
        &*vm,
        sh("./nested/deeper/run.sh && cat link").cwd(guest.clone()),
    )
    .await?;
    assert_eq!(text(&chunks, OutputStream::Stdout), "ran\ntop");

    let back = tmp.path().join("back");
    download_dir(&*vm, &guest, &back).await?;
    assert_eq!(tree(&src)?, tree(&back)?);
    assert!(!tree(&back)?.is_empty());

    let missing = format!("{}/missing", vm.layout().temp);
    assert!(matches!(
        vm.get_archive(&missing).await,
        Err(VmError::NotFound { .. })
    ));
    Ok(())
}

/// Relative path, kind, mode, contents or link target.
type TreeEntry = (String, char, u32, Vec<u8>);

/// Every entry of a host tree, for comparing two trees.
fn tree(root: &Path) -> std::io::Result<BTreeSet<TreeEntry>> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let rel = path.strip_prefix(root).map_err(std::io::Error::other)?;
            let rel = rel.to_string_lossy().into_owned();
            let meta = std::fs::symlink_metadata(&path)?;
            let mode = meta.permissions().mode() & 0o777;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path)?;
                out.insert((rel, 'l', 0, target.to_string_lossy().as_bytes().to_vec()));
            } else if meta.is_dir() {
                out.insert((rel, 'd', mode, Vec::new()));
                stack.push(path);
            } else {
                out.insert((rel, 'f', mode, std::fs::read(&path)?));
            }
        }
    }
    Ok(out)
}

#[tokio::test]
async fn release_deletes_the_directory_and_is_counted_once() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let counting = CountingProvider::new(provider(&tmp));
    let vm = alloc(&counting).await?;
    let root = PathBuf::from(&vm.layout().root);
    assert!(root.is_dir());
    for dir in vm.layout().dirs() {
        assert!(Path::new(dir).is_dir(), "{dir} missing");
    }
    vm.put_file(&format!("{}/f", vm.layout().home), b"x".to_vec(), 0o400)
        .await?;
    vm.release().await?;
    assert!(!root.exists(), "release left {}", root.display());
    let stats = counting.stats();
    assert_eq!((stats.allocations(), stats.releases), (1, 1));
    assert_eq!(stats.dropped_unreleased, 0);
    assert!(stats.live.is_empty());
    Ok(())
}

#[tokio::test]
async fn drop_without_release_cleans_up() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let counting = CountingProvider::new(provider(&tmp));
    let vm = alloc(&counting).await?;
    let root = PathBuf::from(&vm.layout().root);
    let (_, chunks) = exec(&*vm, sh("sleep 300 & echo $!")).await?;
    let child = first_pid(&chunks)?;
    drop(vm);
    assert!(!root.exists(), "drop left {}", root.display());
    assert!(gone(child).await, "drop left {child} running");
    let stats = counting.stats();
    assert_eq!((stats.releases, stats.dropped_unreleased), (0, 1));
    assert!(stats.live.is_empty());
    Ok(())
}

#[tokio::test]
async fn ids_are_unique_over_1000_allocations() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let provider = provider(&tmp);
    let mut vms = Vec::new();
    for _ in 0..1000 {
        vms.push(alloc(&provider).await?);
    }
    let ids: BTreeSet<&VmId> = vms.iter().map(|vm| vm.id()).collect();
    let roots: BTreeSet<&str> = vms.iter().map(|vm| vm.layout().root.as_str()).collect();
    assert_eq!((ids.len(), roots.len()), (1000, 1000));
    assert!(ids.iter().all(|id| id.as_str().starts_with("local-")));
    for vm in vms {
        vm.release().await?;
    }
    assert_eq!(std::fs::read_dir(provider.base_dir())?.count(), 0);
    Ok(())
}

#[tokio::test]
async fn counting_wrapper_records_which_vm_ran_each_exec() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let counting = CountingProvider::new(provider(&tmp));
    let a = alloc(&counting).await?;
    let b = alloc(&counting).await?;
    exec(&*a, ExecRequest::new(["true"])).await?;
    exec(&*b, ExecRequest::new(["false"])).await?;
    a.put_file(&format!("{}/x", a.layout().temp), Vec::new(), 0o644)
        .await?;
    let (ida, idb) = (a.id().clone(), b.id().clone());
    a.release().await?;
    let c = alloc(&counting).await?;
    c.release().await?;
    b.release().await?;

    let stats = counting.stats();
    let execs: Vec<(&VmId, &[String])> = stats.execs().collect();
    assert_eq!(
        execs,
        vec![
            (&ida, &["true".to_owned()][..]),
            (&idb, &["false".to_owned()][..])
        ]
    );
    assert_eq!(stats.vms_used(), [&ida, &idb].into());
    assert_eq!(stats.ops.len(), 3);
    assert_eq!(
        (stats.allocations(), stats.releases, stats.max_live),
        (3, 3, 2)
    );
    assert!(stats.live.is_empty());
    Ok(())
}

#[tokio::test]
async fn reaps_directories_of_dead_owners_only() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let provider = provider(&tmp);
    let live = alloc(&provider).await?;
    let base = provider.base_dir();
    let dead = base.join(format!("local-{}-7-0000abcd", i32::MAX));
    std::fs::create_dir_all(dead.join("workspace/ro"))?;
    std::fs::set_permissions(
        dead.join("workspace/ro"),
        std::fs::Permissions::from_mode(0o500),
    )?;
    std::fs::create_dir(base.join("not-a-vm"))?;

    assert_eq!(provider.reap_orphans().await?, 1);
    assert!(!dead.exists());
    assert!(base.join("not-a-vm").exists());
    assert!(Path::new(&live.layout().root).exists());
    live.release().await?;
    Ok(())
}
