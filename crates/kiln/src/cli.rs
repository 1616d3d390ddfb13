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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check workflow and action files for errors.
    Validate(ValidateArgs),
    /// Evaluate a `${{ }}` expression and print the result as JSON.
    Expr(ExprArgs),
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
