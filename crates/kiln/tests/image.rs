//! Black-box tests of `kiln image`: what needs no build. Building with the
//! real scripts is tested in crates/kiln-image/tests.

use std::process::{Command, Output};

fn kiln(home: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env("KILN_HOME", home)
        .output()
        .expect("run kiln")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn list_without_images_says_how_to_build_one() {
    let home = tempfile::tempdir().expect("tempdir");
    let out = kiln(home.path(), &["image", "list"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).contains("no images: run `kiln image build`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn rm_of_an_unknown_image_is_bad_input() {
    let home = tempfile::tempdir().expect("tempdir");
    for target in ["0123456789ab", "minimal", "debian/0123456789ab"] {
        let out = kiln(home.path(), &["image", "rm", target]);
        assert_eq!(out.status.code(), Some(2), "{target}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("see `kiln image list`"),
            "{target}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn build_with_a_missing_agent_names_it_and_builds_nothing() {
    let home = tempfile::tempdir().expect("tempdir");
    let agent = home.path().join("no-such-agent");
    let agent = agent.to_str().expect("utf-8 path");
    let out = kiln(home.path(), &["image", "build", "--agent", agent]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("agent binary"), "{}", stderr(&out));
    assert!(stderr(&out).contains("no-such-agent"), "{}", stderr(&out));
    assert!(!home.path().join("images").exists());
}

#[test]
fn an_unknown_flavour_is_rejected_by_the_parser() {
    let home = tempfile::tempdir().expect("tempdir");
    let out = kiln(home.path(), &["image", "build", "--flavour", "alpine"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("minimal"), "{}", stderr(&out));
}
