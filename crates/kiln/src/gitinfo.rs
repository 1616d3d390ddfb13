//! Facts about the local git repository a run is for.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The repository root, commit and ref of a local checkout.
#[derive(Debug, Clone)]
pub struct RepoFacts {
    pub root: PathBuf,
    pub sha: String,
    /// `refs/heads/<branch>`, or the given ref, or the sha when detached.
    pub git_ref: String,
    /// `owner/name` from the `origin` remote, else `local/<dir name>`.
    pub repository: String,
}

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .context("cannot run git")?;
    if !out.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Reads the repository containing `dir`. `wanted` is `--ref`, if given.
pub fn read(dir: &Path, wanted: Option<&str>) -> anyhow::Result<RepoFacts> {
    let root = PathBuf::from(
        git(dir, &["rev-parse", "--show-toplevel"])
            .with_context(|| format!("{} is not inside a git repository", dir.display()))?,
    );
    let target = wanted.unwrap_or("HEAD");
    let sha = git(
        &root,
        &["rev-parse", "--verify", &format!("{target}^{{commit}}")],
    )
    .with_context(|| format!("ref \"{target}\" not found (does the repository have a commit?)"))?;
    let git_ref = match wanted {
        Some(w) => full_ref(&root, w).unwrap_or_else(|| w.to_string()),
        None => git(&root, &["symbolic-ref", "-q", "HEAD"]).unwrap_or_else(|_| sha.clone()),
    };
    let repository = git(&root, &["remote", "get-url", "origin"])
        .ok()
        .and_then(|url| owner_name(&url))
        .unwrap_or_else(|| {
            let name = root
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "repo".into());
            format!("local/{name}")
        });
    Ok(RepoFacts {
        root,
        sha,
        git_ref,
        repository,
    })
}

fn full_ref(root: &Path, name: &str) -> Option<String> {
    if name.starts_with("refs/") {
        return Some(name.to_string());
    }
    git(root, &["rev-parse", "--symbolic-full-name", name])
        .ok()
        .filter(|r| r.starts_with("refs/"))
}

/// `owner/name` from `git@host:owner/name.git` or `https://host/owner/name`.
fn owner_name(url: &str) -> Option<String> {
    let path = url.trim_end_matches('/').trim_end_matches(".git");
    let mut parts = path.rsplit(['/', ':']);
    let name = parts.next()?;
    let owner = parts.next()?;
    (!owner.is_empty() && !name.is_empty()).then(|| format!("{owner}/{name}"))
}

#[cfg(test)]
mod tests {
    use super::owner_name;

    #[test]
    fn owner_and_name_from_remote_urls() {
        assert_eq!(
            owner_name("git@github.com:acme/kiln.git").as_deref(),
            Some("acme/kiln")
        );
        assert_eq!(
            owner_name("https://github.com/acme/kiln").as_deref(),
            Some("acme/kiln")
        );
        assert_eq!(
            owner_name("/srv/git/acme/kiln.git").as_deref(),
            Some("acme/kiln")
        );
    }
}
