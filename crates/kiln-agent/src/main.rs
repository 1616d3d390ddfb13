//! `kiln-agent`: see the library docs. This file only maps arguments.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use kiln_agent::boot::{Booted, Channel};
use kiln_agent::{AgentConfig, Endpoint, ServeOutcome, power_off, run, transport};

/// The Kiln guest agent: runs commands and moves files for the host.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Serve the virtio-serial port with this name (the default channel).
    #[arg(long, default_value = transport::DEFAULT_PORT_NAME)]
    virtio_port: String,
    /// The virtio port's device, when already known (the guest's `/init`
    /// exports it); skips the search by name.
    #[arg(long, env = "KILN_AGENT_PORT", value_name = "PATH")]
    port_device: Option<PathBuf>,
    /// How long to wait for the virtio port to appear, in seconds.
    #[arg(long, default_value_t = 30)]
    port_wait_secs: u64,
    /// Listen on this vsock port instead (any CID), as with the guest
    /// kernel parameter `kiln.transport=vsock`; the host connects through
    /// the VM's vhost-user vsock daemon.
    #[arg(long, value_name = "PORT", conflicts_with_all = ["connect", "listen", "stdio"])]
    vsock_port: Option<u32>,
    /// Connect to the host at `unix:/path` instead.
    #[arg(long, value_name = "ADDR", conflicts_with_all = ["listen", "stdio"])]
    connect: Option<String>,
    /// Listen at `unix:/path` instead.
    #[arg(long, value_name = "ADDR", conflicts_with = "stdio")]
    listen: Option<String>,
    /// Serve one connection on stdin/stdout instead.
    #[arg(long)]
    stdio: bool,
    /// Require this token in the host's hello.
    #[arg(long, env = "KILN_AGENT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Answer a shutdown request without powering off. Only the guest
    /// channels (virtio, vsock) power off in the first place, so that an
    /// agent tried out on a host cannot turn it off.
    #[arg(long)]
    no_poweroff: bool,
}

fn unix_path(addr: &str) -> anyhow::Result<PathBuf> {
    match addr.strip_prefix("unix:") {
        Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
        _ => bail!("unsupported address {addr:?}: expected unix:/path"),
    }
}

fn main() -> ExitCode {
    let mut booted = None;
    if kiln_agent::init::is_pid1() {
        if kiln_agent::boot::started_by_kernel() {
            booted = Some(kiln_agent::boot::boot_as_init());
        }
        kiln_agent::init::split_as_init();
    }
    init_logging();
    let result = match booted {
        // Booted by this binary: everything is known, no arguments to
        // parse (clap's code alone costs ~10 ms of translation under TCG).
        Some(booted) => serve_booted(&booted),
        None => real_main(Args::parse()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kiln-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr (the guest's console): `RUST_LOG` if set, else info.
/// Without `RUST_LOG` no filter is parsed: the directive parser builds a
/// regex, milliseconds of every boot under TCG.
fn init_logging() {
    let logs = tracing_subscriber::fmt().with_writer(std::io::stderr);
    match tracing_subscriber::EnvFilter::try_from_default_env() {
        Ok(filter) => logs.with_env_filter(filter).init(),
        Err(_) => logs
            .with_max_level(tracing::level_filters::LevelFilter::INFO)
            .init(),
    }
}

/// The agent of a guest this binary booted as `/init`.
fn serve_booted(booted: &Booted) -> anyhow::Result<()> {
    let network = booted.configure_network();
    let endpoint = match &booted.channel {
        Channel::Virtio(device) => Endpoint::Virtio {
            name: transport::DEFAULT_PORT_NAME.to_owned(),
            device: Some(device.clone()),
            wait: Duration::from_secs(30),
        },
        Channel::Vsock(port) => Endpoint::Vsock { port: *port },
    };
    let config = AgentConfig::new(booted.token.clone())
        .managing_system(true)
        .commands_after(network);
    serve_until_shutdown(&endpoint, &config, true)
}

fn real_main(args: Args) -> anyhow::Result<()> {
    let endpoint = if let Some(port) = args.vsock_port {
        Endpoint::Vsock { port }
    } else if let Some(addr) = &args.connect {
        Endpoint::Connect(unix_path(addr)?)
    } else if let Some(addr) = &args.listen {
        Endpoint::Listen(unix_path(addr)?)
    } else if args.stdio {
        Endpoint::Stdio
    } else {
        Endpoint::Virtio {
            name: args.virtio_port.clone(),
            device: args.port_device.clone(),
            wait: Duration::from_secs(args.port_wait_secs),
        }
    };
    // vsock, like virtio-serial, is a channel of a guest.
    let in_guest = matches!(endpoint, Endpoint::Virtio { .. } | Endpoint::Vsock { .. });
    let may_power_off = in_guest && !args.no_poweroff;
    let config = AgentConfig::new(args.token).managing_system(in_guest);
    serve_until_shutdown(&endpoint, &config, may_power_off)
}

/// Serves `endpoint`; powers off after a shutdown request if allowed.
fn serve_until_shutdown(
    endpoint: &Endpoint,
    config: &AgentConfig,
    may_power_off: bool,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let outcome = runtime.block_on(async {
        tokio::select! {
            outcome = run(endpoint, config) => outcome,
            // The agent handles SIGINT (see the library), so stop on it here.
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("interrupted");
                Ok(ServeOutcome::Closed)
            }
        }
    })?;
    drop(runtime);
    if outcome == ServeOutcome::Shutdown && may_power_off {
        tracing::info!("powering off");
        return Err(power_off()).context("cannot power off");
    }
    Ok(())
}
