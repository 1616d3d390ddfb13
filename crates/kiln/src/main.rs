//! The `kiln` command line: parses arguments, dispatches to a subcommand and
//! maps its outcome to an exit code. Subcommands live in `cmd/`.

mod cli;
mod cmd;
mod exit;
mod workflows;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Validate(args) => cmd::validate::run(&args),
        cli::Command::Expr(args) => cmd::expr::run(&args),
    };
    match result {
        Ok(code) => code.into(),
        Err(err) => {
            eprintln!("error: {err:#}");
            exit::Code::BadInput.into()
        }
    }
}
