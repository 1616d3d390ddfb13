//! Unique, printable VM identifiers.

use std::fmt;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Identifies one machine for its whole life: `<backend>-<pid>-<counter>-<random>`.
///
/// The process-wide counter makes ids unique within a process (never reused);
/// the pid and the random suffix keep them apart across processes sharing a
/// state directory, and the pid lets orphan reaping tell whether the owner
/// still lives.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct VmId(String);

/// Monotonic across all providers of the process; an atomic, not mutable state.
static NEXT: AtomicU64 = AtomicU64::new(0);

impl VmId {
    /// A fresh id for `backend` (a short lowercase word such as `local`).
    pub fn generate(backend: &str) -> VmId {
        let counter = NEXT.fetch_add(1, Ordering::Relaxed);
        VmId(format!(
            "{backend}-{}-{counter}-{:08x}",
            std::process::id(),
            random_u32(counter)
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The pid of the process that generated an id of `backend`, if `name`
    /// has that shape. Used to find directories left by dead processes.
    pub fn owner_pid(name: &str, backend: &str) -> Option<u32> {
        let rest = name.strip_prefix(backend)?.strip_prefix('-')?;
        let mut parts = rest.split('-');
        let pid = parts.next()?.parse().ok()?;
        parts.next()?.parse::<u64>().ok()?;
        let random = parts.next()?;
        let well_formed = random.len() == 8
            && random.bytes().all(|b| b.is_ascii_hexdigit())
            && parts.next().is_none();
        well_formed.then_some(pid)
    }
}

/// Not cryptographic: only has to make collisions between processes unlikely.
fn random_u32(salt: u64) -> u32 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(salt);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    hasher.write_u128(nanos);
    (hasher.finish() >> 32) as u32
}

impl fmt::Display for VmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_back_to_their_pid() {
        let id = VmId::generate("local");
        assert_eq!(
            VmId::owner_pid(id.as_str(), "local"),
            Some(std::process::id())
        );
        assert_eq!(VmId::owner_pid(id.as_str(), "qemu"), None);
        assert_eq!(VmId::owner_pid("local-12-x-0000abcd", "local"), None);
        assert_eq!(VmId::owner_pid("local-12-3-0000abcd-x", "local"), None);
    }

    #[test]
    fn ids_differ_even_in_a_tight_loop() {
        let a = VmId::generate("t");
        let b = VmId::generate("t");
        assert_ne!(a, b);
    }
}
