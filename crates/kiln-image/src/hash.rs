//! SHA-256 of files and the version id of an image.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lowercase hex SHA-256 of a file's contents, read in 1 MiB pieces.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Everything an image is made from, as `name → value` (usually a hash).
/// The version id hashes them in name order, so insertion order does not
/// matter and any changed value gives a new id. Kept in the manifest, so a
/// rebuild can be explained by diffing two manifests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inputs(BTreeMap<String, String>);

/// Hex digits of the version id: 48 bits, plenty for one machine's images.
const ID_LEN: usize = 12;

impl Inputs {
    pub fn new() -> Inputs {
        Inputs::default()
    }

    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.insert(name.into(), value.into());
    }

    /// The first 12 hex digits of SHA-256 over `name=value\n` lines in name
    /// order. Names and values must not contain newlines (they are hashes,
    /// kinds and versions); a `=` in a name would be ambiguous, so names
    /// are kept to `[a-z0-9._-]` by the callers.
    pub fn version_id(&self) -> String {
        let mut text = String::new();
        for (name, value) in &self.0 {
            text.push_str(name);
            text.push('=');
            text.push_str(value);
            text.push('\n');
        }
        let mut id = sha256_bytes(text.as_bytes());
        id.truncate(ID_LEN);
        id
    }

    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    pub fn into_map(self) -> BTreeMap<String, String> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_matches_the_standard_vectors() {
        assert_eq!(
            sha256_bytes(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            sha256_bytes(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn sha256_file_equals_sha256_of_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        // Larger than one read buffer, not a multiple of it.
        let data: Vec<u8> = (0..(3 << 20) + 17).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        assert_eq!(sha256_file(&path).unwrap(), sha256_bytes(&data));
    }

    fn inputs(pairs: &[(&str, &str)]) -> Inputs {
        let mut inputs = Inputs::new();
        for (k, v) in pairs {
            inputs.insert(*k, *v);
        }
        inputs
    }

    #[test]
    fn version_id_is_twelve_hex_digits_of_the_sorted_lines() {
        let id = inputs(&[("flavour", "minimal"), ("agent", "aa")]).version_id();
        assert_eq!(id.len(), 12);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(id, sha256_bytes(b"agent=aa\nflavour=minimal\n")[..12]);
    }

    #[test]
    fn version_id_ignores_insertion_order() {
        let a = inputs(&[("kernel", "k1"), ("agent", "a1"), ("flavour", "minimal")]);
        let b = inputs(&[("flavour", "minimal"), ("agent", "a1"), ("kernel", "k1")]);
        assert_eq!(a.version_id(), b.version_id());
    }

    #[test]
    fn version_id_changes_with_any_input() {
        let base = [("kernel", "k1"), ("agent", "a1"), ("flavour", "minimal")];
        let id = inputs(&base).version_id();
        for i in 0..base.len() {
            let mut changed = base;
            changed[i].1 = "other";
            assert_ne!(inputs(&changed).version_id(), id, "changing {}", base[i].0);
        }
        // An added input changes it too.
        let mut more = inputs(&base);
        more.insert("rootfs-script", "r1");
        assert_ne!(more.version_id(), id);
    }
}
