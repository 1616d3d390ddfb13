//! Host filesystem operations of the local backend, where guest paths are
//! host paths.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Writes `contents` to `path` with `mode`, creating parent directories.
pub(crate) fn write_file(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(path, contents)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o7777))
}

/// Deletes a tree even where steps made directories read-only (Go's module
/// cache does): on failure, grant the owner write access and try again.
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            make_owner_writable(path);
            match fs::remove_dir_all(path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                other => other,
            }
        }
    }
}

/// Best effort: adds `u+rwx` to every directory below `dir` (symlinks are not
/// followed, so nothing outside the tree is touched).
fn make_owner_writable(dir: &Path) {
    let Ok(meta) = fs::symlink_metadata(dir) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let mode = meta.permissions().mode();
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o700));
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            make_owner_writable(&entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_trees_with_read_only_directories() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let root = tmp.path().join("vm");
        let locked = root.join("a/b");
        fs::create_dir_all(&locked)?;
        fs::write(locked.join("f"), b"x")?;
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o555))?;
        fs::set_permissions(root.join("a"), fs::Permissions::from_mode(0o555))?;
        remove_tree(&root)?;
        assert!(!root.exists());
        remove_tree(&root)?; // already gone is fine
        Ok(())
    }
}
