use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::{CountingProvider, download_dir, upload_dir};

type TestResult = Result<(), Box<dyn std::error::Error>>;

async fn exec(vm: &dyn Vm, req: ExecRequest) -> Result<(ExecResult, Vec<OutputChunk>), VmError> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let result = vm.exec(req, tx).await?;
    let mut chunks = Vec::new();
    while let Ok(c) = rx.try_recv() {
        chunks.push(c);
    }
    Ok((result, chunks))
}

#[tokio::test]
async fn handler_answers_and_every_exec_is_recorded_with_its_vm() -> TestResult {
    let provider = MockProvider::new(|req| match req.argv[0].as_str() {
        "fail" => MockResponse::exit(3).stderr("boom"),
        _ => MockResponse::ok().stdout(req.argv.join(" ")),
    });
    let a = provider.allocate(&VmSpec::default()).await?.vm;
    let b = provider.allocate(&VmSpec::default()).await?.vm;
    assert_ne!(a.id(), b.id());

    let (result, chunks) = exec(&*a, ExecRequest::new(["echo", "hi"])).await?;
    assert!(result.success());
    assert_eq!(
        chunks,
        vec![OutputChunk {
            stream: OutputStream::Stdout,
            data: b"echo hi".to_vec()
        }]
    );
    let (result, chunks) = exec(&*b, ExecRequest::new(["fail"]).env("K", "v")).await?;
    assert_eq!(result.exit_code, Some(3));
    assert!(!result.success());
    assert_eq!(chunks[0].stream, OutputStream::Stderr);

    let execs = provider.execs();
    let seen: Vec<(&VmId, &str)> = execs
        .iter()
        .map(|e| (&e.vm, e.request.argv[0].as_str()))
        .collect();
    assert_eq!(seen, vec![(a.id(), "echo"), (b.id(), "fail")]);
    assert_eq!(execs[1].request.env, vec![("K".into(), "v".into())]);

    assert_eq!(provider.live().len(), 2);
    a.release().await?;
    drop(b);
    assert!(provider.live().is_empty());
    Ok(())
}

#[tokio::test]
async fn injected_allocation_failures_then_recovery() -> TestResult {
    let provider = CountingProvider::new(MockProvider::default());
    provider.inner().fail_allocations(2);
    for _ in 0..2 {
        let err = provider.allocate(&VmSpec::default()).await.err();
        assert!(matches!(err, Some(VmError::Allocation { .. })), "{err:?}");
    }
    let vm = provider.allocate(&VmSpec::default()).await?.vm;
    vm.release().await?;
    let stats = provider.stats();
    assert_eq!(stats.allocation_failures, 2);
    assert_eq!(stats.allocations(), 1);
    assert_eq!(stats.releases, 1);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn allocation_delay_is_reported() -> TestResult {
    let provider = MockProvider::default().with_allocation_delay(Duration::from_secs(3));
    let start = tokio::time::Instant::now();
    let allocated = provider.allocate(&VmSpec::default()).await?;
    assert!(start.elapsed() >= Duration::from_secs(3));
    assert!(
        allocated.elapsed >= Duration::from_secs(3),
        "{:?}",
        allocated.elapsed
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn delay_timeout_and_cancellation() -> TestResult {
    let provider = MockProvider::new(|_| MockResponse::ok().delay(Duration::from_secs(60)));
    let vm = provider.allocate(&VmSpec::default()).await?.vm;

    let (result, _) = exec(&*vm, ExecRequest::new(["x"])).await?;
    assert_eq!(result.exit_code, Some(0));
    assert!(result.duration >= Duration::from_secs(60));

    let (result, _) = exec(
        &*vm,
        ExecRequest::new(["x"]).timeout(Duration::from_secs(5)),
    )
    .await?;
    assert!(result.timed_out && !result.success());
    assert_eq!(result.exit_code, None);

    let token = CancellationToken::new();
    let req = ExecRequest::new(["x"]).cancel(token.clone());
    let canceller = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        token.cancel();
    };
    let ((result, _), ()) = tokio::try_join!(exec(&*vm, req), async {
        canceller.await;
        Ok(())
    })?;
    assert!(result.cancelled && !result.timed_out);
    assert_eq!(result.exit_code, None);
    Ok(())
}

#[tokio::test]
async fn files_live_in_memory_and_survive_release_for_inspection() -> TestResult {
    let provider = MockProvider::default();
    let vm = provider.allocate(&VmSpec::default()).await?.vm;
    let script = format!("{}/step.sh", vm.layout().temp);
    vm.put_file(&script, b"echo hi".to_vec(), 0o755).await?;
    assert_eq!(vm.get_file(&script).await?, b"echo hi");
    assert!(matches!(
        vm.get_file("/nope").await,
        Err(VmError::NotFound { .. })
    ));
    assert!(matches!(
        vm.put_file(&vm.layout().temp, Vec::new(), 0o644).await,
        Err(VmError::InvalidPath { .. })
    ));
    let id = vm.id().clone();
    vm.release().await?;
    let files = provider.files(&id).ok_or("no files recorded")?;
    assert_eq!(files.get(&script).map(Vec::as_slice), Some(&b"echo hi"[..]));
    Ok(())
}

#[tokio::test]
async fn archives_round_trip_through_memory() -> TestResult {
    let host = tempfile::tempdir()?;
    std::fs::create_dir_all(host.path().join("src/empty"))?;
    std::fs::write(host.path().join("src/main.rs"), b"fn main() {}")?;
    std::fs::write(host.path().join("README"), b"read me")?;

    let provider = MockProvider::default();
    let vm = provider.allocate(&VmSpec::default()).await?.vm;
    let guest = format!("{}/repo", vm.layout().workspace_root);
    upload_dir(&*vm, host.path(), &guest).await?;
    assert_eq!(
        vm.get_file(&format!("{guest}/src/main.rs")).await?,
        b"fn main() {}"
    );

    let back = tempfile::tempdir()?;
    download_dir(&*vm, &guest, back.path()).await?;
    assert_eq!(std::fs::read(back.path().join("README"))?, b"read me");
    assert_eq!(
        std::fs::read(back.path().join("src/main.rs"))?,
        b"fn main() {}"
    );
    assert!(back.path().join("src/empty").is_dir());

    assert!(matches!(
        vm.get_archive("/does/not/exist").await,
        Err(VmError::NotFound { .. })
    ));
    Ok(())
}

#[tokio::test]
async fn archives_with_links_are_refused() -> TestResult {
    let host = tempfile::tempdir()?;
    std::os::unix::fs::symlink("/etc/passwd", host.path().join("link"))?;
    let provider = MockProvider::default();
    let vm = provider.allocate(&VmSpec::default()).await?.vm;
    let err = upload_dir(&*vm, host.path(), "/x").await.err();
    assert!(matches!(err, Some(VmError::Io { .. })), "{err:?}");
    assert!(matches!(
        vm.get_archive("/x").await,
        Err(VmError::NotFound { .. })
    ));
    Ok(())
}
