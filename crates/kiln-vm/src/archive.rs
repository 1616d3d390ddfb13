//! Tar helpers: moving whole directory trees in and out of a machine through
//! [`Vm::put_archive`] / [`Vm::get_archive`], the only transfer a remote
//! machine needs besides single files.

use std::io::{self, Cursor};
use std::path::Path;

use crate::{Vm, VmError};

/// Copies the contents of host directory `host_dir` into `guest_dir`.
pub async fn upload_dir(vm: &dyn Vm, host_dir: &Path, guest_dir: &str) -> Result<(), VmError> {
    let dir = host_dir.to_path_buf();
    let tar = blocking(move || pack_dir(&dir))
        .await
        .map_err(|e| VmError::io("archive host directory", &host_dir.to_string_lossy(), e))?;
    vm.put_archive(guest_dir, tar).await
}

/// Copies the contents of `guest_dir` into host directory `host_dir`
/// (created if missing).
pub async fn download_dir(vm: &dyn Vm, guest_dir: &str, host_dir: &Path) -> Result<(), VmError> {
    let tar = vm.get_archive(guest_dir).await?;
    let dir = host_dir.to_path_buf();
    blocking(move || unpack_into(&tar, &dir))
        .await
        .map_err(|e| VmError::io("unpack into host directory", &host_dir.to_string_lossy(), e))
}

/// A tar of everything below `dir`, paths relative to it. Symlinks are stored
/// as symlinks, never followed, so an archive cannot pull in outside files.
pub fn pack_dir(dir: &Path) -> io::Result<Vec<u8>> {
    if !std::fs::metadata(dir)?.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            "not a directory",
        ));
    }
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    builder.append_dir_all(".", dir)?;
    builder.into_inner()
}

/// A tar of just the directories `dirs` (absolute guest paths, mode 0755),
/// to unpack at `/`: `mkdir -p` without a process, which under TCG saves a
/// fork and exec per VM.
pub fn dirs_tar(dirs: &[&str]) -> io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for dir in dirs {
        let relative = dir.trim_start_matches('/');
        if relative.is_empty() {
            continue;
        }
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_size(0);
        builder.append_data(&mut header, relative, io::empty())?;
    }
    builder.into_inner()
}

/// Unpacks `tar` below `dir`, creating it. Entries that would land outside
/// `dir` (`..`, absolute paths, through symlinks) are refused by the tar crate.
pub fn unpack_into(tar: &[u8], dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut archive = tar::Archive::new(Cursor::new(tar));
    archive.set_preserve_permissions(true);
    archive.set_overwrite(true);
    archive.unpack(dir)
}

/// Runs filesystem work off the async threads.
pub(crate) async fn blocking<T, F>(f: F) -> io::Result<T>
where
    F: FnOnce() -> io::Result<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io::Error::other(format!("blocking task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn dirs_tar_makes_each_directory_and_its_parents() -> io::Result<()> {
        let root = tempfile::tempdir()?;
        std::fs::create_dir(root.path().join("home"))?;
        let tar = dirs_tar(&["/home/runner/work", "/home/runner/_tool", "/", "/opt/x"])?;
        unpack_into(&tar, root.path())?;
        for dir in ["home/runner/work", "home/runner/_tool", "opt/x"] {
            let meta = std::fs::metadata(root.path().join(dir))?;
            assert!(meta.is_dir(), "{dir}");
            assert_eq!(meta.permissions().mode() & 0o777, 0o755, "{dir}");
        }
        // Unpacking again over existing directories is fine.
        unpack_into(&tar, root.path())
    }
}
