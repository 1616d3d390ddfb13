//! The parser must never panic: it is fed every fixture cut short at many
//! points and with YAML-significant characters spliced in at pseudo-random
//! places. Each result must also render, and any error it reports must have
//! a position inside the file.

use std::path::{Path, PathBuf};

use kiln_workflow::diagnostic::render_all;
use kiln_workflow::{Diagnostic, parse_action, parse_workflow};

fn fixtures() -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut out = Vec::new();
    let mut pending = vec![root];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("fixture directory") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "yml") {
                let source = std::fs::read_to_string(&path).expect("readable fixture");
                out.push((path, source));
            }
        }
    }
    out.sort();
    out
}

fn is_action(path: &Path) -> bool {
    path.components().any(|c| c.as_os_str() == "actions")
        || path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("action-"))
}

/// Parses `source` and checks that every diagnostic lies within the file.
fn check(path: &Path, source: &str) {
    let diagnostics: Vec<Diagnostic> = if is_action(path) {
        parse_action(source).1
    } else {
        parse_workflow(source).1
    };
    let lines = source.lines().count().max(1);
    for d in &diagnostics {
        assert!(
            d.span.start.line >= 1 && d.span.start.line <= lines && d.span.start.col >= 1,
            "{}: diagnostic outside the file: {d:?}\n--- source ---\n{source}",
            path.display()
        );
    }
    let _ = render_all("fixture.yml", source, &diagnostics);
}

#[test]
fn truncated_fixtures_do_not_panic() {
    for (path, source) in fixtures() {
        let cuts: Vec<usize> = source.char_indices().map(|(i, _)| i).step_by(5).collect();
        for cut in cuts {
            check(&path, &source[..cut]);
        }
    }
}

#[test]
fn mutated_fixtures_do_not_panic() {
    const NOISE: &[&str] = &[
        "{", "}", "[", "]", ":", "- ", "'", "\"", "|", ">", "&a ", "*a", "!", "#", "%", "@", "`",
        "\n", "\t", "${{", "}}", "\\", "é", "\r\n", "  ", "? ",
    ];
    // A fixed linear congruential generator: reproducible without a crate.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |bound: usize| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 33) as usize) % bound.max(1)
    };
    for (path, source) in fixtures() {
        let boundaries: Vec<usize> = source
            .char_indices()
            .map(|(i, _)| i)
            .chain([source.len()])
            .collect();
        for _ in 0..40 {
            let mut mutated = source.clone();
            for _ in 0..3 {
                let at = boundaries[next(boundaries.len())].min(mutated.len());
                if mutated.is_char_boundary(at) {
                    mutated.insert_str(at, NOISE[next(NOISE.len())]);
                }
            }
            check(&path, &mutated);
        }
    }
}
