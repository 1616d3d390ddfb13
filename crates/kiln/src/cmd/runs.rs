//! `kiln runs`: the runs `kiln serve` recorded, newest first, from the
//! same store the server writes (read while it runs, thanks to WAL).

use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use clap::Args;
use kiln_store::{RunRecord, Store};

use crate::exit::Code;

#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The server's data directory [default: from --config, else
    /// $KILN_HOME/server].
    #[arg(long, value_name = "DIR", env = "KILN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The server's TOML configuration file, to find its data directory.
    #[arg(long, value_name = "FILE", env = "KILN_CONFIG")]
    pub config: Option<PathBuf>,
}

impl StoreArgs {
    /// Opens the existing store (never creates one).
    pub fn open(&self) -> anyhow::Result<Store> {
        let dir = match (&self.data_dir, &self.config) {
            (Some(dir), _) => dir.clone(),
            (None, Some(path)) => kiln_server::config::FileConfig::read(path)?
                .data_dir
                .map_or_else(super::serve::default_data_dir, Ok)?,
            (None, None) => super::serve::default_data_dir()?,
        };
        Ok(Store::open_existing_in(&dir)?)
    }
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// How many runs to show.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &RunsArgs) -> anyhow::Result<Code> {
    let store = args.store.open()?;
    let runs = store.list_runs(args.limit)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(Code::Success);
    }
    print!("{}", table(&runs));
    Ok(Code::Success)
}

/// The runs as an aligned text table.
pub fn table(runs: &[RunRecord]) -> String {
    let header = [
        "ID",
        "STATUS",
        "REPOSITORY",
        "WORKFLOW",
        "EVENT",
        "REF",
        "COMMIT",
        "CREATED",
        "DURATION",
    ];
    let rows: Vec<[String; 9]> = runs
        .iter()
        .map(|r| {
            let status = match &r.conclusion {
                Some(c) => c.clone(),
                None => r.state.to_string(),
            };
            [
                r.id.to_string(),
                status,
                r.repository.clone(),
                r.workflow_name.clone(),
                r.event.clone(),
                short_ref(&r.git_ref).to_owned(),
                r.sha.chars().take(7).collect(),
                time(r.created_at),
                duration(r.started_at, r.finished_at),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    if rows.is_empty() {
        out.push_str("(no runs yet)\n");
    }
    out
}

fn short_ref(git_ref: &str) -> &str {
    git_ref
        .strip_prefix("refs/heads/")
        .or_else(|| git_ref.strip_prefix("refs/tags/"))
        .unwrap_or(git_ref)
}

fn time(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

fn duration(start: Option<i64>, end: Option<i64>) -> String {
    match (start, end) {
        (Some(s), Some(e)) if e >= s => {
            let secs = (e - s) as f64 / 1000.0;
            if secs < 60.0 {
                format!("{secs:.1}s")
            } else {
                format!("{}m{:02}s", (secs / 60.0) as u64, (secs % 60.0) as u64)
            }
        }
        (Some(_), None) => "running".to_owned(),
        _ => "-".to_owned(),
    }
}
