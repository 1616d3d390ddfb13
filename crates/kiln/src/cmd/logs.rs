//! `kiln logs RUN`: a run's log (masked when it was written) from the
//! server's store.

use clap::Args;
use kiln_store::LogStream;

use super::runs::StoreArgs;
use crate::exit::Code;

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The run id (see `kiln runs`).
    pub run: i64,
    /// Only this job's lines (its key, as in `kiln runs --json` / the API).
    #[arg(long)]
    pub job: Option<String>,
    #[command(flatten)]
    pub store: StoreArgs,
}

pub fn run(args: &LogsArgs) -> anyhow::Result<Code> {
    let store = args.store.open()?;
    let Some(run) = store.run(args.run)? else {
        eprintln!("error: no run {}", args.run);
        return Ok(Code::BadInput);
    };
    let lines = store.logs(run.id, args.job.as_deref(), 0)?;
    let multi_job = lines
        .iter()
        .filter_map(|l| l.job.as_deref())
        .any(|j| lines.first().and_then(|f| f.job.as_deref()) != Some(j));
    let mut out = String::new();
    for l in &lines {
        if multi_job && let Some(job) = &l.job {
            out.push_str(job);
            out.push_str(" | ");
        }
        if l.stream == LogStream::Meta {
            out.push_str("## ");
        }
        out.push_str(&l.line);
        out.push('\n');
    }
    print!("{out}");
    if let Some(conclusion) = &run.conclusion {
        let reason = run
            .reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        eprintln!("run {} {conclusion}{reason}", run.id);
    } else {
        eprintln!("run {} {}", run.id, run.state);
    }
    Ok(Code::Success)
}
