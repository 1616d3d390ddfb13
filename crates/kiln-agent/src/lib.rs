//! `kiln-agent`: the agent inside every Kiln guest VM.
//!
//! It serves one host connection at a time over a byte stream (the
//! virtio-serial port `org.kiln.agent` in a guest, or vsock port 1024 with
//! `kiln.transport=vsock`; a unix socket or stdio in tests), speaking
//! [`kiln_protocol`]: it runs commands as process groups and
//! streams their output, moves files and tar archives, answers pings, and
//! powers the guest off on request.
//!
//! [`serve`] is generic over the stream so the whole agent is tested on the
//! host over a socket pair; [`run`] adds the reconnect loops of the real
//! transports; `main.rs` only parses arguments.
//!
//! The kernel starts the agent as the guest's `/init` (PID 1): [`boot`]
//! sets the machine up, then [`init`] keeps a minimal reaper in PID 1 and
//! runs the agent proper as its child.

pub mod boot;
mod error;
mod exec;
mod files;
mod identity;
pub mod init;
mod run;
mod server;
pub mod transport;

pub use error::AgentError;
pub use run::{Endpoint, power_off, run};
pub use server::{AgentConfig, ServeOutcome, serve};
