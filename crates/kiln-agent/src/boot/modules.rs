//! Kernel modules for the stock kernel, whose virtio, vsock, ext4 and
//! overlay drivers are modules: `/lib/modules/<release>/kiln-modules.load`
//! (written by `scripts/fetch-stock-kernel.sh`) lists them, dependencies
//! first, as paths under that directory. The minimal kernel has none.

use std::fs::File;
use std::io;
use std::path::Path;

use nix::errno::Errno;
use nix::kmod::{ModuleInitFlags, finit_module};

/// The load list's name in the release's module directory.
const LOAD_LIST: &str = "kiln-modules.load";

/// Loads every module of `release`'s list, in order. A module that fails
/// is reported and skipped, as `insmod` in a loop would: later ones may
/// still work, and the guest's console says what is missing.
pub fn load(modules_root: &Path, release: &str, report: &mut dyn FnMut(String)) {
    let dir = modules_root.join(release);
    let Ok(list) = std::fs::read_to_string(dir.join(LOAD_LIST)) else {
        return;
    };
    for module in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Err(e) = load_one(&dir.join(module)) {
            report(format!("insmod {module} failed ({e}; continuing)"));
        }
    }
}

fn load_one(path: &Path) -> io::Result<()> {
    let file = File::open(path)?;
    match finit_module(&file, c"", ModuleInitFlags::empty()) {
        // Already there (built in, or loaded as a dependency): fine.
        Ok(()) | Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_list_loads_nothing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut reports = Vec::new();
        load(tmp.path(), "6.1.0", &mut |r| reports.push(r));
        assert!(reports.is_empty());
    }

    #[test]
    fn a_missing_module_is_reported_and_the_rest_still_tried() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("6.1.0");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(LOAD_LIST), "kernel/a.ko\n\nkernel/b.ko\n").expect("write");
        let mut reports = Vec::new();
        load(tmp.path(), "6.1.0", &mut |r| reports.push(r));
        assert_eq!(reports.len(), 2, "{reports:?}");
        assert!(
            reports[0].starts_with("insmod kernel/a.ko failed"),
            "{reports:?}"
        );
        assert!(
            reports[1].starts_with("insmod kernel/b.ko failed"),
            "{reports:?}"
        );
    }
}
