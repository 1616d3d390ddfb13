//! Command-line arguments (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Run GitHub Actions workflows, each run in its own fresh microVM.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process; boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check workflow and action files for errors.
    Validate(ValidateArgs),
    /// Evaluate a `${{ }}` expression and print the result as JSON.
    Expr(ExprArgs),
    /// Run workflows, each run in its own fresh VM.
    Run(RunArgs),
    /// Build, list and remove guest images.
    Image(crate::cmd::image::ImageArgs),
    /// Serve GitHub webhooks: one VM per workflow run, results reported back.
    Serve(crate::cmd::serve::ServeArgs),
    /// List the runs `kiln serve` recorded.
    Runs(crate::cmd::runs::RunsArgs),
    /// Print the log of a run `kiln serve` recorded.
    Logs(crate::cmd::logs::LogsArgs),
    /// Measure boot, exec, streaming and memory of the qemu backend.
    Bench(crate::cmd::bench::BenchArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// QEMU microVMs: real isolation.
    Qemu,
    /// Host processes in a private directory: no isolation.
    Local,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VmScopeArg {
    /// One VM for the whole run.
    Run,
    /// One VM per job; independent jobs run in parallel.
    Job,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A workflow file, or a directory of them. Default: the workflows in
    /// `.github/workflows` that the event triggers.
    pub workflow: Option<PathBuf>,
    /// Run only this job (and the jobs it needs).
    #[arg(long)]
    pub job: Option<String>,
    /// The event that triggers the run.
    #[arg(long, default_value = "push")]
    pub event: String,
    /// A JSON file with the event payload (`github.event`).
    #[arg(long, value_name = "FILE")]
    pub event_path: Option<PathBuf>,
    /// Check out this ref instead of HEAD.
    #[arg(long = "ref", value_name = "REF")]
    pub git_ref: Option<String>,
    /// A `workflow_dispatch` input.
    #[arg(long = "input", value_name = "NAME=VALUE")]
    pub inputs: Vec<String>,
    /// A secret, available as `secrets.NAME` and masked in all output.
    #[arg(long = "secret", value_name = "NAME=VALUE")]
    pub secrets: Vec<String>,
    /// A dotenv file of secrets.
    #[arg(long, value_name = "FILE")]
    pub secret_file: Vec<PathBuf>,
    /// A configuration variable (`vars.NAME`).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// An environment variable for every step.
    #[arg(long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// Where steps run.
    #[arg(long, value_enum, default_value = "qemu", env = "KILN_BACKEND")]
    pub backend: Backend,
    /// The guest image flavour (`minimal` or `debian`; see `kiln image list`).
    #[arg(long, default_value = "minimal")]
    pub image: String,
    /// One VM per run (default) or per job.
    #[arg(long, value_enum, default_value = "run")]
    pub vm_scope: VmScopeArg,
    /// How many VMs may run at once.
    #[arg(long, default_value_t = 4)]
    pub max_sessions: usize,
    /// Keep this many VMs booted ahead (qemu backend), so later runs and
    /// jobs start without waiting for one; each still serves one run.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub warm_pool: usize,
    /// Start VMs by restoring a snapshot of a booted VM (qemu backend, the
    /// default); without a usable snapshot a VM cold-boots and one is built.
    #[arg(long, overrides_with = "no_snapshot")]
    pub snapshot: bool,
    /// Always cold-boot VMs.
    #[arg(long)]
    pub no_snapshot: bool,
    /// The host-guest agent channel (qemu backend): `virtio` (virtio-serial,
    /// the default) or `vsock` (through a vhost-user daemon per VM; always
    /// cold-boots; `minimal` image only).
    #[arg(long, value_enum, default_value = "virtio", env = "KILN_TRANSPORT")]
    pub transport: TransportArg,
    /// Print the full run result as JSON on stdout (progress goes to stderr).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Workflow or action files, or directories of them. Default: every
    /// workflow in `.github/workflows` of the current repository.
    pub paths: Vec<PathBuf>,
    /// Print diagnostics as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ExprArgs {
    /// The expression, with or without `${{ }}`.
    pub expression: String,
    /// A JSON file mapping context names (github, env, matrix, …) to values.
    #[arg(long, value_name = "FILE.json")]
    pub contexts: Option<PathBuf>,
}

/// `--transport` of `kiln run` and `kiln bench`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TransportArg {
    /// virtio-serial (QEMU chardev socket).
    Virtio,
    /// vsock through `vhost-device-vsock` (installed by scripts/setup.sh).
    Vsock,
}

impl From<TransportArg> for kiln_vm::qemu::AgentTransport {
    fn from(arg: TransportArg) -> Self {
        match arg {
            TransportArg::Virtio => kiln_vm::qemu::AgentTransport::VirtioSerial,
            TransportArg::Vsock => kiln_vm::qemu::AgentTransport::Vsock,
        }
    }
}
