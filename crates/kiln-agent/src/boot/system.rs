//! The file systems, device links and names every guest has, made with
//! system calls: the same layout `images/initramfs/init` makes with mount(8),
//! ln and echo, without a fork each.

use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use nix::mount::{MsFlags, mount};

/// Mounts `fstype` on `target` (made first if missing).
pub fn mount_fs(fstype: &str, target: &str, flags: MsFlags, data: Option<&str>) -> io::Result<()> {
    fs::create_dir_all(target)?;
    mount(Some(fstype), target, Some(fstype), flags, data)
        .map_err(|e| io::Error::other(format!("mount {fstype} on {target}: {e}")))
}

/// `/proc`, which everything else reads from; kept apart because the
/// command line is read before deciding who boots.
pub fn mount_proc() -> io::Result<()> {
    if Path::new("/proc/self").exists() {
        return Ok(());
    }
    mount_fs("proc", "/proc", MsFlags::empty(), None)
}

/// sysfs, devtmpfs and the rest, with the shell /init's options. A mount
/// that fails is reported and the rest still tried, as `mount -a` does.
pub fn mount_all(report: &mut dyn FnMut(String)) {
    let nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let mut try_mount = |fstype, target, flags, data| {
        if let Err(e) = mount_fs(fstype, target, flags, data) {
            report(e.to_string());
        }
    };
    try_mount("sysfs", "/sys", MsFlags::empty(), None);
    // The kernel mounts devtmpfs itself when built with DEVTMPFS_MOUNT.
    if !is_mount_point("/dev") {
        try_mount("devtmpfs", "/dev", MsFlags::empty(), None);
    }
    try_mount(
        "devpts",
        "/dev/pts",
        MsFlags::empty(),
        Some("gid=5,mode=620,ptmxmode=666"),
    );
    try_mount("tmpfs", "/dev/shm", nodev, Some("mode=1777"));
    try_mount("tmpfs", "/tmp", MsFlags::empty(), Some("mode=1777"));
    try_mount("tmpfs", "/run", nodev, Some("mode=755"));
    let has_cgroup2 = fs::read_to_string("/proc/filesystems").is_ok_and(|list| {
        list.lines()
            .any(|line| line.split_whitespace().any(|word| word == "cgroup2"))
    });
    if has_cgroup2 {
        try_mount(
            "cgroup2",
            "/sys/fs/cgroup",
            MsFlags::empty(),
            Some("nsdelegate"),
        );
    }
    for dir in ["/dev/virtio-ports", "/var/tmp"] {
        if let Err(e) = fs::create_dir_all(dir) {
            report(format!("mkdir {dir}: {e}"));
        }
    }
}

/// True if `dir` is a mount point (its device differs from its parent's).
fn is_mount_point(dir: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    let dev = |path: &Path| fs::metadata(path).map(|m| m.dev()).ok();
    let here = dev(Path::new(dir));
    here.is_some() && here != dev(&Path::new(dir).join(".."))
}

/// `/dev/fd` and `/dev/std{in,out,err}`, which devtmpfs lacks and scripts
/// use (`<(...)`, `> /dev/stderr`).
pub fn dev_links() -> io::Result<()> {
    for (link, target) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "fd/0"),
        ("/dev/stdout", "fd/1"),
        ("/dev/stderr", "fd/2"),
    ] {
        match symlink(target, link) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// The kernel's hostname and `/etc/hostname`.
pub fn set_hostname(name: &str) -> io::Result<()> {
    nix::unistd::sethostname(name)
        .map_err(|e| io::Error::other(format!("sethostname {name:?}: {e}")))?;
    fs::write("/etc/hostname", format!("{name}\n"))
}

/// Without ACPI (the minimal kernel) the kernel cannot power off: poweroff(2)
/// halts and QEMU would hang. A reset does end QEMU (`reboot=t` and
/// `-no-reboot`), so `poweroff` and `halt` become busybox `reboot`, for the
/// agent and for steps alike.
pub fn poweroff_means_reset() -> io::Result<()> {
    if Path::new("/sys/firmware/acpi").exists() {
        return Ok(());
    }
    for cmd in ["/sbin/poweroff", "/sbin/halt"] {
        match fs::remove_file(cmd) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        fs::write(
            cmd,
            "#!/bin/sh\n# no ACPI: reset instead (QEMU -no-reboot exits)\nexec /bin/busybox reboot \"$@\"\n",
        )?;
        fs::set_permissions(cmd, fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

/// Reopens stdin, stdout and stderr on `/dev/console` (the archive may have
/// had no console node when the kernel started init).
pub fn console_stdio() -> io::Result<()> {
    let console = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/console")?;
    nix::unistd::dup2_stdin(&console)?;
    nix::unistd::dup2_stdout(&console)?;
    nix::unistd::dup2_stderr(&console)?;
    Ok(())
}
