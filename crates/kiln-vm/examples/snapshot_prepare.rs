//! Builds the snapshot of a VM spec into a given state directory and
//! prints where it is (for debugging restores by hand).
//!
//! ```text
//! cargo run -p kiln-vm --example snapshot_prepare -- STATE_DIR [MEMORY_MIB]
//! ```

use kiln_vm::{Network, QemuConfig, QemuProvider, VmSpec};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let state = args
        .next()
        .ok_or("usage: snapshot_prepare STATE_DIR [MEMORY_MIB]")?;
    let memory_mib: u64 = args.next().map_or(Ok(512), |a| a.parse())?;
    let data = QemuConfig::default_data_dir().ok_or("neither KILN_HOME nor HOME is set")?;
    let mut config = QemuConfig::from_data_dir(&data)?;
    config.state_dir = state.clone().into();
    config.snapshot_dir = std::path::Path::new(&state).join("snapshots");
    let provider = QemuProvider::new(config)?;
    let spec = VmSpec {
        vcpus: 1,
        memory_mib,
        network: Network::None,
        ..VmSpec::default()
    };
    let info = provider.prepare_snapshot(&spec).await?;
    println!("{info:?}");
    Ok(())
}
