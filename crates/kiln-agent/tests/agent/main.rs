//! The agent library served over a unix socket pair, driven by the real
//! host client, running real processes.

mod common;
mod exec;
mod files;
mod output;
mod session;
