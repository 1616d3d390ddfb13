//! The boot floor's initramfs: the image's own initramfs with a second
//! archive appended whose `/init` prints [`MARKER`] and powers the machine
//! off, nothing else. The kernel unpacks concatenated archives in order, so
//! everything of the image is unpacked as for a kiln VM (the same bytes to
//! load and copy) and only `/init` differs: the floor is the same QEMU,
//! kernel and initramfs with a bare /init. Cached in `<data>/bench/` and
//! rewritten only when its bytes would change.

use std::path::{Path, PathBuf};

use anyhow::Context;
use kiln_image::KernelKind;

/// What the floor's /init prints; nothing else on the console contains it.
pub const MARKER: &str = "KILN-FLOOR-MARKER";

/// The cached floor initramfs for `kind` over `image_initramfs`,
/// (re)written if needed.
pub fn initramfs(
    data_dir: &Path,
    kind: KernelKind,
    image_initramfs: &Path,
) -> anyhow::Result<PathBuf> {
    let mut bytes = std::fs::read(image_initramfs)
        .with_context(|| format!("cannot read {}", image_initramfs.display()))?;
    bytes.extend_from_slice(&overlay(&init_script(kind)));
    let dir = data_dir.join("bench");
    let path = dir.join(format!("floor-{}.cpio", kind.as_str()));
    if std::fs::read(&path).is_ok_and(|old| old == bytes) {
        return Ok(path);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = dir.join(format!(".floor-{}.{}", kind.as_str(), std::process::id()));
    std::fs::write(&tmp, &bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot create {}", path.display()))?;
    eprintln!(
        "kiln bench: wrote the boot-floor initramfs {}",
        path.display()
    );
    Ok(path)
}

/// Print the marker, power off the way kiln's /init does: ACPI S5 on the
/// stock kernel; a triple-fault reset (`reboot=t`, `-no-reboot`) on the
/// minimal kernel, which has no ACPI. busybox is the image's.
fn init_script(kind: KernelKind) -> String {
    let off = match kind {
        KernelKind::Stock => "poweroff",
        KernelKind::Minimal => "reboot",
    };
    format!("#!/bin/busybox sh\necho {MARKER}\nexec /bin/busybox {off} -f\n")
}

/// The appended archive: `/init`, and the console node the kernel opens as
/// init's stdio (in case the image was built without root, which cannot
/// make device nodes).
fn overlay(init: &str) -> Vec<u8> {
    let mut cpio = Cpio::default();
    cpio.entry("dev", 0o040_755, (0, 0), &[]);
    // Char device 5:1.
    cpio.entry("dev/console", 0o020_600, (5, 1), &[]);
    cpio.entry("init", 0o100_755, (0, 0), init.as_bytes());
    cpio.entry("TRAILER!!!", 0, (0, 0), &[]);
    cpio.out
}

/// A writer of the "newc" cpio format the kernel unpacks: a 110-byte ASCII
/// header, the NUL-terminated name, the data, each padded to 4 bytes.
#[derive(Default)]
struct Cpio {
    out: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.ino += 1;
        let nlink = if mode & 0o170_000 == 0o040_000 { 2 } else { 1 };
        let fields = [
            self.ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            u32::try_from(data.len()).unwrap_or(u32::MAX),
            0, // dev major
            0, // dev minor
            rdev.0,
            rdev.1,
            u32::try_from(name.len() + 1).unwrap_or(u32::MAX),
            0, // check
        ];
        self.out.extend_from_slice(b"070701");
        for field in fields {
            self.out
                .extend_from_slice(format!("{field:08X}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One parsed entry: name, mode, (rdev major, minor), data.
    type Parsed = (String, u32, (u32, u32), Vec<u8>);

    /// The entries of a newc archive, checking its framing.
    fn parse(bytes: &[u8]) -> Vec<Parsed> {
        let hex = |b: &[u8]| u32::from_str_radix(std::str::from_utf8(b).expect("ascii"), 16);
        let align = |n: usize| n.div_ceil(4) * 4;
        let mut at = 0;
        let mut entries = Vec::new();
        loop {
            let h = &bytes[at..at + 110];
            assert_eq!(&h[..6], b"070701");
            let field = |i: usize| hex(&h[6 + 8 * i..14 + 8 * i]).expect("hex field");
            let (mode, size, namesize) = (field(1), field(6) as usize, field(11) as usize);
            let name_at = at + 110;
            let name = String::from_utf8(bytes[name_at..name_at + namesize - 1].to_vec())
                .expect("utf-8 name");
            assert_eq!(bytes[name_at + namesize - 1], 0);
            let data_at = align(name_at + namesize);
            let data = bytes[data_at..data_at + size].to_vec();
            at = align(data_at + size);
            if name == "TRAILER!!!" {
                assert_eq!(at, bytes.len());
                return entries;
            }
            entries.push((name, mode, (field(9), field(10)), data));
        }
    }

    #[test]
    fn the_overlay_is_valid_newc_with_a_console_node_and_init() {
        let bytes = overlay(&init_script(KernelKind::Minimal));
        assert_eq!(bytes.len() % 4, 0);
        let entries = parse(&bytes);
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, ["dev", "dev/console", "init"]);
        let console = &entries[1];
        assert_eq!((console.1, console.2), (0o020_600, (5, 1)));
        let init = String::from_utf8(entries[2].3.clone()).expect("utf-8");
        assert_eq!(entries[2].1, 0o100_755);
        assert!(init.starts_with("#!/bin/busybox sh\n"), "{init}");
        assert!(init.contains(&format!("echo {MARKER}\n")), "{init}");
        assert!(init.ends_with("reboot -f\n"), "{init}");
        assert!(init_script(KernelKind::Stock).ends_with("poweroff -f\n"));
    }

    #[test]
    fn the_floor_is_the_image_initramfs_then_the_overlay() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let image = dir.path().join("initramfs.cpio");
        std::fs::write(&image, b"IMAGE-ARCHIVE")?;
        let floor = initramfs(dir.path(), KernelKind::Minimal, &image)?;
        let bytes = std::fs::read(&floor)?;
        assert!(bytes.starts_with(b"IMAGE-ARCHIVE"));
        assert_eq!(
            &bytes[b"IMAGE-ARCHIVE".len()..],
            overlay(&init_script(KernelKind::Minimal)).as_slice()
        );
        Ok(())
    }
}
