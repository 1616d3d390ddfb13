//! `hashFiles(...)`: the SHA-256 over the workspace files matching a set of
//! patterns, as GitHub computes it (the hash of each file's hash, in path
//! order). The files live in the VM, so the runner first copies the
//! workspace to a host snapshot (only for steps that use `hashFiles`) and
//! the expression host computes over that snapshot.

use std::path::Path;

use kiln_workflow::filter::PatternList;
use sha2::{Digest, Sha256};

/// Computes `hashFiles` over `root`. Patterns are relative to the workspace
/// (absolute ones under `workspace` are made relative); `!` excludes.
pub fn hash_files(root: &Path, workspace: &str, patterns: &[String]) -> Result<String, String> {
    let relative: Vec<String> = patterns
        .iter()
        .map(|p| {
            let (neg, body) = p.strip_prefix('!').map_or(("", p.as_str()), |b| ("!", b));
            let body = body
                .strip_prefix(workspace)
                .map_or(body, |b| b.trim_start_matches('/'));
            format!("{neg}{}", body.trim_start_matches("./"))
        })
        .collect();
    let list = PatternList::new(&relative).map_err(|e| e.to_string())?;
    let mut files = Vec::new();
    collect(root, root, &mut files).map_err(|e| format!("reading the workspace: {e}"))?;
    files.sort();
    let mut outer = Sha256::new();
    let mut matched = 0usize;
    for rel in files {
        if !list.is_match(&rel) {
            continue;
        }
        let bytes = std::fs::read(root.join(&rel)).map_err(|e| format!("{rel}: {e}"))?;
        outer.update(Sha256::digest(&bytes));
        matched += 1;
    }
    if matched == 0 {
        return Ok(String::new());
    }
    Ok(hex(&outer.finalize()))
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let path = entry.path();
        if kind.is_dir() {
            collect(root, &path, out)?;
        } else if kind.is_file()
            && let Ok(rel) = path.strip_prefix(root)
        {
            out.push(rel.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_matching_files_in_path_order_and_empty_when_none() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("Cargo.lock"), "x").unwrap();
        std::fs::write(dir.path().join("a/b/Cargo.lock"), "y").unwrap();
        std::fs::write(dir.path().join("a/other.txt"), "z").unwrap();
        let ws = "/home/runner/work/r/r";
        let all = hash_files(dir.path(), ws, &["**/Cargo.lock".into()]).unwrap();
        let mut expected = Sha256::new();
        // Path order: "Cargo.lock" sorts before "a/b/Cargo.lock".
        expected.update(Sha256::digest(b"x"));
        expected.update(Sha256::digest(b"y"));
        assert_eq!(all, hex(&expected.finalize()));
        let root_only = hash_files(dir.path(), ws, &["Cargo.lock".into()]).unwrap();
        assert_eq!(root_only, hex(&Sha256::digest(Sha256::digest(b"x"))));
        let absolute = hash_files(dir.path(), ws, &[format!("{ws}/Cargo.lock")]).unwrap();
        assert_eq!(absolute, root_only);
        let excluded =
            hash_files(dir.path(), ws, &["**/Cargo.lock".into(), "!a/**".into()]).unwrap();
        assert_eq!(excluded, root_only);
        assert_eq!(hash_files(dir.path(), ws, &["*.nope".into()]).unwrap(), "");
    }
}
