//! What the runner asks for when it allocates a machine.

use serde::{Deserialize, Serialize};

/// The shape of machine a workflow run needs.
///
/// Backends honour what they can: `local` ignores everything (it is the host),
/// `qemu` sizes the microVM and picks the image flavour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct VmSpec {
    pub vcpus: u32,
    pub memory_mib: u64,
    pub disk_mib: u64,
    pub network: Network,
    /// Image flavour name (e.g. `minimal`), resolved by the backend.
    pub image: String,
    /// The `runs-on` labels this machine satisfies, for logs and matching.
    pub labels: Vec<String>,
}

impl Default for VmSpec {
    /// Two vCPUs, 2 GiB RAM, 8 GiB disk, NAT network, the `minimal` image:
    /// enough for typical build steps, small enough to run several at once.
    fn default() -> Self {
        VmSpec {
            vcpus: 2,
            memory_mib: 2048,
            disk_mib: 8192,
            network: Network::Nat,
            image: "minimal".to_owned(),
            labels: Vec::new(),
        }
    }
}

/// Guest networking.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// Outbound access through NAT, no inbound.
    #[default]
    Nat,
    /// No network device at all.
    None,
}
