//! `kiln validate`: parse workflow and action files and print every problem.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use kiln_workflow::Diagnostic;

use crate::cli::ValidateArgs;
use crate::exit::Code;
use crate::workflows;

pub fn run(args: &ValidateArgs) -> anyhow::Result<Code> {
    let files = if args.paths.is_empty() {
        let dir = workflows::find_workflow_dir(&std::env::current_dir()?)?;
        workflows::list_workflow_files(&dir)?
    } else {
        expand(&args.paths)?
    };
    if files.is_empty() {
        bail!("no workflow files found");
    }
    let mut errors = 0;
    let mut warnings = 0;
    let mut json = Vec::new();
    for path in &files {
        let source = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let diagnostics = check(path, &source);
        errors += diagnostics.iter().filter(|d| d.is_error()).count();
        warnings += diagnostics.iter().filter(|d| !d.is_error()).count();
        let shown = path.display().to_string();
        if args.json {
            json.push(serde_json::json!({ "path": shown, "diagnostics": diagnostics }));
        } else {
            print!(
                "{}",
                kiln_workflow::diagnostic::render_all(&shown, &source, &diagnostics)
            );
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&json)?);
    }
    eprintln!(
        "checked {} file{}: {errors} error{}, {warnings} warning{}",
        files.len(),
        plural(files.len()),
        plural(errors),
        plural(warnings)
    );
    Ok(if errors > 0 {
        Code::Failure
    } else {
        Code::Success
    })
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `action.yml` / `action.yaml` are action metadata; anything else a workflow.
fn check(path: &Path, source: &str) -> Vec<Diagnostic> {
    let is_action = matches!(
        path.file_name().and_then(|n| n.to_str()),
        Some("action.yml" | "action.yaml")
    );
    if is_action {
        kiln_workflow::parse_action(source).1
    } else {
        kiln_workflow::parse_workflow(source).1
    }
}

/// Files stay as given; a directory means its `.github/workflows` if it is a
/// repository root, else the YAML files directly inside it.
fn expand(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let nested = path.join(".github").join("workflows");
            let dir = if nested.is_dir() {
                nested
            } else {
                path.clone()
            };
            files.extend(workflows::list_workflow_files(&dir)?);
        } else if path.exists() {
            files.push(path.clone());
        } else {
            bail!("{}: no such file or directory", path.display());
        }
    }
    Ok(files)
}
