//! The built-in `actions/checkout`: puts a commit of the local repository
//! into the job's workspace. The git work happens on the host (the guest may
//! have no git and no route to the repository); the result is copied into
//! the VM as an archive, with its `.git` so later steps can use git.

use std::path::Path;
use std::process::Command;

use indexmap::IndexMap;
use kiln_vm::Vm;

use crate::config::GitInfo;

/// What a checkout put where, for the step's log.
pub struct CheckedOut {
    pub sha: String,
    pub path: String,
}

pub async fn checkout(
    vm: &dyn Vm,
    git: &GitInfo,
    with: &IndexMap<String, String>,
    workspace: &str,
) -> Result<CheckedOut, String> {
    let repo = git
        .repo_dir
        .clone()
        .ok_or("actions/checkout: there is no local repository to check out")?;
    if let Some(other) = with.get("repository").filter(|r| !r.is_empty())
        && other != &git.repository
    {
        return Err(format!(
            "actions/checkout: checking out another repository ({other}) is not supported"
        ));
    }
    let wanted = with
        .get("ref")
        .filter(|r| !r.is_empty())
        .cloned()
        .unwrap_or_else(|| git.sha.clone());
    let depth: u32 = match with.get("fetch-depth").map(|d| d.trim()) {
        None | Some("") => 1,
        Some(d) => d
            .parse()
            .map_err(|_| format!("actions/checkout: fetch-depth must be a number, got \"{d}\""))?,
    };
    let path = with.get("path").cloned().unwrap_or_default();
    if path.split('/').any(|p| p == "..") || path.starts_with('/') {
        return Err(format!(
            "actions/checkout: path \"{path}\" must stay inside the workspace"
        ));
    }
    let (sha, tar) = tokio::task::spawn_blocking(move || prepare(&repo, &wanted, depth))
        .await
        .map_err(|e| format!("actions/checkout: {e}"))??;
    let target = if path.is_empty() {
        workspace.to_string()
    } else {
        format!("{workspace}/{}", path.trim_end_matches('/'))
    };
    vm.put_archive(&target, tar)
        .await
        .map_err(|e| format!("actions/checkout: copying into the VM failed: {e}"))?;
    Ok(CheckedOut { sha, path: target })
}

/// Clones `wanted` (a commit, branch or tag) at `depth` (0 = all history)
/// into a temporary directory and archives it.
fn prepare(repo: &Path, wanted: &str, depth: u32) -> Result<(String, Vec<u8>), String> {
    let sha = git(
        repo,
        &["rev-parse", "--verify", &format!("{wanted}^{{commit}}")],
    )
    .map_err(|_| format!("actions/checkout: ref \"{wanted}\" not found in the repository"))?;
    let tmp = tempfile::tempdir().map_err(|e| format!("actions/checkout: {e}"))?;
    let dir = tmp.path();
    let url = format!("file://{}", repo.display());
    git(dir, &["init", "-q"])?;
    git(dir, &["remote", "add", "origin", &url])?;
    let mut fetch = vec!["fetch", "-q", "--no-tags", "origin"];
    let depth_arg = format!("--depth={depth}");
    if depth > 0 {
        fetch.insert(2, &depth_arg);
    }
    fetch.push(&sha);
    git(dir, &fetch)?;
    git(dir, &["checkout", "-q", "--detach", &sha])?;
    let tar = kiln_vm::archive::pack_dir(dir).map_err(|e| format!("actions/checkout: {e}"))?;
    Ok((sha, tar))
}

fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .map_err(|e| format!("actions/checkout: cannot run git: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "actions/checkout: git {} failed: {}",
            args.first().copied().unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
