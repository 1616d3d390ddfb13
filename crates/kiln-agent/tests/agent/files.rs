//! File and archive transfers.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use kiln_protocol::{ClientError, DATA_CHUNK_LEN};

use crate::common::start;

fn path_str(path: &Path) -> String {
    path.to_str().expect("utf-8 temp path").to_owned()
}

#[tokio::test]
async fn put_and_get_file_round_trip_across_chunks() {
    let agent = start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("a/b/c.bin");
    // Several chunks and a ragged end, with content that shows reordering.
    let data: Vec<u8> = (0..(2 * DATA_CHUNK_LEN + 12_345))
        .map(|i| (i % 251) as u8)
        .collect();
    agent
        .client
        .put_file(&path_str(&target), 0o640, data.clone())
        .await
        .expect("put");
    let meta = std::fs::metadata(&target).expect("written");
    assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
    assert_eq!(std::fs::read(&target).expect("read"), data);
    let back = agent
        .client
        .get_file(&path_str(&target))
        .await
        .expect("get");
    assert_eq!(back, data);
}

#[tokio::test]
async fn put_replaces_and_sets_exact_mode() {
    let agent = start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let target = path_str(&dir.path().join("script.sh"));
    agent
        .client
        .put_file(&target, 0o600, "old content that is longer")
        .await
        .expect("put");
    agent
        .client
        .put_file(&target, 0o755, "#!/bin/sh\n")
        .await
        .expect("replace");
    assert_eq!(
        std::fs::read_to_string(&target).expect("read"),
        "#!/bin/sh\n"
    );
    let mode = std::fs::metadata(&target)
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755);
}

#[tokio::test]
async fn empty_files_transfer() {
    let agent = start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let target = path_str(&dir.path().join("empty"));
    agent
        .client
        .put_file(&target, 0o644, Vec::new())
        .await
        .expect("put");
    assert_eq!(agent.client.get_file(&target).await.expect("get"), b"");
}

#[tokio::test]
async fn transfer_errors_name_the_path() {
    let agent = start().await;
    let err = agent
        .client
        .get_file("/no/such/file")
        .await
        .expect_err("missing");
    assert!(
        matches!(&err, ClientError::Remote { message, .. } if message.contains("/no/such/file")),
        "{err}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let blocker = dir.path().join("blocker");
    std::fs::write(&blocker, b"a file, not a directory").expect("write");
    let err = agent
        .client
        .put_file(
            &path_str(&blocker.join("x")),
            0o644,
            vec![0u8; 3 * DATA_CHUNK_LEN],
        )
        .await
        .expect_err("parent is a file");
    assert!(matches!(err, ClientError::Remote { .. }), "{err}");
    let err = agent
        .client
        .get_archive(&path_str(&blocker))
        .await
        .expect_err("not a directory");
    assert!(matches!(err, ClientError::Remote { .. }), "{err}");
    // A failed multi-chunk upload leaves the connection in sync.
    agent.client.ping().await.expect("ping");
}

fn populate(root: &Path) {
    std::fs::create_dir_all(root.join("src/nested")).expect("mkdir");
    std::fs::write(root.join("README"), "top\n").expect("write");
    std::fs::write(
        root.join("src/nested/data.bin"),
        vec![7u8; 3 * DATA_CHUNK_LEN],
    )
    .expect("write");
    std::fs::write(root.join("src/run.sh"), "#!/bin/sh\necho hi\n").expect("write");
    std::fs::set_permissions(
        root.join("src/run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");
    std::os::unix::fs::symlink("../README", root.join("src/link")).expect("symlink");
}

fn assert_same_tree(a: &Path, b: &Path) {
    for rel in ["README", "src/nested/data.bin", "src/run.sh"] {
        assert_eq!(
            std::fs::read(a.join(rel)).expect("a"),
            std::fs::read(b.join(rel)).expect("b"),
            "{rel}"
        );
    }
    let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&a.join("src/run.sh")), mode(&b.join("src/run.sh")));
    assert_eq!(
        std::fs::read_link(b.join("src/link")).expect("still a symlink"),
        Path::new("../README")
    );
}

#[tokio::test]
async fn archives_round_trip() {
    let agent = start().await;
    let scratch = tempfile::tempdir().expect("tempdir");
    let source = scratch.path().join("source");
    populate(&source);
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    builder.append_dir_all(".", &source).expect("pack");
    let tar = builder.into_inner().expect("tar");

    let guest = scratch.path().join("guest/deep/dir");
    agent
        .client
        .put_archive(&path_str(&guest), tar)
        .await
        .expect("put archive");
    assert_same_tree(&source, &guest);

    let back = agent
        .client
        .get_archive(&path_str(&guest))
        .await
        .expect("get archive");
    let copy = scratch.path().join("copy");
    tar::Archive::new(&back[..]).unpack(&copy).expect("unpack");
    assert_same_tree(&source, &copy);
}

#[tokio::test]
async fn archive_entries_cannot_escape_the_target() {
    let agent = start().await;
    let scratch = tempfile::tempdir().expect("tempdir");
    let mut header = tar::Header::new_gnu();
    let body = b"escaped";
    header.set_size(body.len() as u64);
    header.set_mode(0o644);
    // `set_path` refuses `..`, so write the name bytes directly.
    let name = b"../escaped.txt";
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder.append(&header, &body[..]).expect("append");
    let tar = builder.into_inner().expect("tar");
    let target = scratch.path().join("inside");
    let _ = agent.client.put_archive(&path_str(&target), tar).await;
    assert!(!scratch.path().join("escaped.txt").exists());
}

#[tokio::test]
async fn garbage_archives_are_rejected() {
    let agent = start().await;
    let scratch = tempfile::tempdir().expect("tempdir");
    let err = agent
        .client
        .put_archive(&path_str(&scratch.path().join("x")), vec![0xabu8; 5000])
        .await
        .expect_err("not a tar");
    assert!(matches!(err, ClientError::Remote { .. }), "{err}");
    agent.client.ping().await.expect("ping");
}
