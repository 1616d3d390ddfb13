//! The `kiln` command line: parses arguments, dispatches to a subcommand and
//! maps its outcome to an exit code. Subcommands live in `cmd/`.

mod cli;
mod cmd;
mod display;
mod exit;
mod gitinfo;
mod workflows;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Validate(args) => cmd::validate::run(&args),
        cli::Command::Expr(args) => cmd::expr::run(&args),
        cli::Command::Run(args) => cmd::run::run(&args),
        cli::Command::Image(args) => cmd::image::run(&args),
        cli::Command::Serve(args) => cmd::serve::run(&args),
        cli::Command::Runs(args) => cmd::runs::run(&args),
        cli::Command::Logs(args) => cmd::logs::run(&args),
        cli::Command::Bench(args) => cmd::bench::run(&args),
    };
    match result {
        Ok(code) => code.into(),
        Err(err) => {
            eprintln!("error: {err:#}");
            exit::Code::BadInput.into()
        }
    }
}

/// Where kiln keeps its state: `$KILN_HOME`, else `~/.local/share/kiln`.
pub fn data_dir() -> anyhow::Result<std::path::PathBuf> {
    if let Some(home) = std::env::var_os("KILN_HOME") {
        return Ok(home.into());
    }
    let home = std::env::var_os("HOME")
        .ok_or_else(|| anyhow::anyhow!("neither KILN_HOME nor HOME is set"))?;
    Ok(std::path::PathBuf::from(home).join(".local/share/kiln"))
}
