//! Finding workflow files on disk.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Walks up from `start` to the nearest `.github/workflows` directory.
pub fn find_workflow_dir(start: &Path) -> anyhow::Result<PathBuf> {
    for dir in start.ancestors() {
        let candidate = dir.join(".github").join("workflows");
        if candidate.is_dir() {
            return Ok(candidate);
        }
        if dir.join(".git").exists() {
            break;
        }
    }
    bail!(
        "no .github/workflows directory found in {} or its parents; pass a workflow file",
        start.display()
    )
}

/// The `*.yml` / `*.yaml` files directly inside `dir`, sorted by name.
pub fn list_workflow_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let is_yaml = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yml" | "yaml")
        );
        if is_yaml && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}
