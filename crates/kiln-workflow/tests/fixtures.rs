//! Fixture tests: every valid workflow and action parses without a single
//! diagnostic; every invalid one has at least one error, and its rendered
//! diagnostics match the reviewed snapshot in `tests/snapshots/`.
//!
//! Files in `fixtures/invalid/` named `action-*.yml` are action metadata.

use std::path::{Path, PathBuf};

use kiln_workflow::diagnostic::render_all;
use kiln_workflow::{Diagnostic, parse_action, parse_workflow};

fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The `.yml` files under `dir`, recursively, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("fixture directory") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "yml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// A path relative to `tests/fixtures`, for readable messages and snapshots.
fn display(path: &Path) -> String {
    let root = fixture_dir("");
    path.strip_prefix(&root)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).expect("fixture is readable")
}

fn assert_clean(path: &Path, source: &str, diagnostics: &[Diagnostic]) {
    assert!(
        diagnostics.is_empty(),
        "{} should parse cleanly:\n{}",
        display(path),
        render_all(&display(path), source, diagnostics)
    );
}

#[test]
fn valid_workflows_have_no_diagnostics() {
    let files = yaml_files(&fixture_dir("valid"));
    assert!(files.len() >= 12, "expected at least 12 valid workflows");
    for path in files {
        let source = read(&path);
        let (workflow, diagnostics) = parse_workflow(&source);
        assert_clean(&path, &source, &diagnostics);
        assert!(
            !workflow.jobs.is_empty(),
            "{}: no jobs parsed",
            display(&path)
        );
        assert!(
            !workflow.on.events.is_empty(),
            "{}: no events parsed",
            display(&path)
        );
    }
}

#[test]
fn valid_actions_have_no_diagnostics() {
    let files = yaml_files(&fixture_dir("actions"));
    assert!(files.len() >= 3, "expected at least 3 actions");
    for path in files {
        let source = read(&path);
        let (action, diagnostics) = parse_action(&source);
        assert_clean(&path, &source, &diagnostics);
        assert!(action.is_some(), "{}: no action parsed", display(&path));
    }
}

#[test]
fn invalid_fixtures_match_snapshots() {
    let files = yaml_files(&fixture_dir("invalid"));
    assert!(files.len() >= 30, "expected at least 30 invalid fixtures");
    for path in files {
        let source = read(&path);
        let name = display(&path);
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let diagnostics = if stem.starts_with("action-") {
            parse_action(&source).1
        } else {
            parse_workflow(&source).1
        };
        assert!(
            diagnostics.iter().any(Diagnostic::is_error),
            "{name} should have at least one error, got:\n{}",
            render_all(&name, &source, &diagnostics)
        );
        insta::assert_snapshot!(stem, render_all(&name, &source, &diagnostics));
    }
}
