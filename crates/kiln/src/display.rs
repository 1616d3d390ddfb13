//! Live progress of a run: jobs and steps with status symbols, durations,
//! indented output, collapsed groups on a terminal, and a summary table.
//! Goes to stdout, or to stderr when `--json` owns stdout.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use kiln_runner::event::Stream;
use kiln_runner::{Conclusion, JobKey, RunEvent};
use tokio::sync::mpsc::UnboundedReceiver;

pub struct Display {
    out: Box<dyn Write + Send>,
    color: bool,
    /// On a terminal, group contents are hidden and counted.
    collapse: bool,
    groups: HashMap<JobKey, (String, usize)>,
    jobs: Vec<(JobKey, Conclusion, Duration, usize)>,
    steps: HashMap<JobKey, usize>,
}

impl Display {
    pub fn new(json: bool) -> Self {
        let (out, tty): (Box<dyn Write + Send>, bool) = if json {
            (Box::new(std::io::stderr()), std::io::stderr().is_terminal())
        } else {
            (Box::new(std::io::stdout()), std::io::stdout().is_terminal())
        };
        let color = tty && std::env::var_os("NO_COLOR").is_none();
        Display {
            out,
            color,
            collapse: tty,
            groups: HashMap::new(),
            jobs: Vec::new(),
            steps: HashMap::new(),
        }
    }

    pub async fn consume(mut self, mut rx: UnboundedReceiver<RunEvent>) {
        while let Some(event) = rx.recv().await {
            self.show(event);
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn symbol(&self, c: Conclusion) -> String {
        match c {
            Conclusion::Success => self.paint("32", "✓"),
            Conclusion::Failure => self.paint("31", "✗"),
            Conclusion::Cancelled => self.paint("33", "⊘"),
            Conclusion::Skipped => self.paint("90", "-"),
        }
    }

    fn show(&mut self, event: RunEvent) {
        let line = match event {
            RunEvent::RunStarted { workflow } => Some(format!(
                "{} {}",
                self.paint("1", "▶"),
                self.paint("1", &workflow)
            )),
            RunEvent::VmAllocated { vm, elapsed } => {
                Some(self.paint("90", &format!("  vm {vm} ready in {}", human(elapsed))))
            }
            RunEvent::JobStarted { job } => Some(format!(
                "{} {}",
                self.paint("1;34", "●"),
                self.paint("1", &job.name)
            )),
            RunEvent::JobSkipped { job, reason } => {
                self.jobs
                    .push((job.clone(), Conclusion::Skipped, Duration::ZERO, 0));
                Some(format!(
                    "{} {} {}",
                    self.symbol(Conclusion::Skipped),
                    job.name,
                    self.paint("90", &format!("(skipped: {reason})"))
                ))
            }
            RunEvent::StepStarted { job, name, .. } => {
                *self.steps.entry(job).or_default() += 1;
                Some(format!("  {} {name}", self.paint("90", "┌")))
            }
            RunEvent::Output { job, line, stream } => {
                if let Some((_, hidden)) = self.groups.get_mut(&job).filter(|_| self.collapse) {
                    *hidden += 1;
                    None
                } else {
                    let bar = match stream {
                        Stream::Stdout => self.paint("90", "│"),
                        Stream::Stderr => self.paint("33", "│"),
                    };
                    Some(format!("  {bar} {line}"))
                }
            }
            RunEvent::GroupStarted { job, title } => {
                self.groups.insert(job, (title.clone(), 0));
                (!self.collapse).then(|| format!("  {} ▾ {title}", self.paint("90", "│")))
            }
            RunEvent::GroupEnded { job } => match self.groups.remove(&job) {
                Some((title, hidden)) if self.collapse => Some(format!(
                    "  {} ▸ {title} {}",
                    self.paint("90", "│"),
                    self.paint("90", &format!("({hidden} lines)"))
                )),
                _ => None,
            },
            RunEvent::Debug { .. } => None,
            RunEvent::Annotation { annotation, .. } => {
                let place = match (&annotation.file, annotation.line, annotation.col) {
                    (Some(f), Some(l), Some(c)) => format!(" {f}:{l}:{c}"),
                    (Some(f), Some(l), None) => format!(" {f}:{l}"),
                    (Some(f), None, _) => format!(" {f}"),
                    _ => String::new(),
                };
                let title = annotation
                    .title
                    .as_ref()
                    .map_or_else(String::new, |t| format!("{t}: "));
                let bar = self.paint("90", "│");
                // Continuation lines of a multiline message stay in the
                // step's indented block.
                let message = annotation.message.replace('\n', &format!("\n  {bar}   "));
                Some(format!(
                    "  {bar} {}{place}: {title}{message}",
                    self.paint("1;33", annotation.level.as_str()),
                ))
            }
            RunEvent::StepFinished {
                name,
                conclusion,
                duration,
                ..
            } => Some(format!(
                "  {} {name} {}",
                self.symbol(conclusion),
                self.paint("90", &format!("({})", human(duration)))
            )),
            RunEvent::JobFinished {
                job,
                conclusion,
                duration,
            } => {
                let steps = self.steps.get(&job).copied().unwrap_or(0);
                let line = format!(
                    "{} {} {} {}",
                    self.symbol(conclusion),
                    job.name,
                    conclusion,
                    self.paint("90", &format!("({})", human(duration)))
                );
                self.jobs.push((job, conclusion, duration, steps));
                Some(line)
            }
            RunEvent::RunFinished {
                conclusion,
                duration,
            } => {
                self.summary();
                Some(format!(
                    "{} run {} in {}",
                    self.symbol(conclusion),
                    self.paint("1", conclusion.as_str()),
                    human(duration)
                ))
            }
        };
        if let Some(line) = line {
            let _ = writeln!(self.out, "{line}");
        }
    }

    fn summary(&mut self) {
        let width = self
            .jobs
            .iter()
            .map(|(k, ..)| k.name.chars().count())
            .max()
            .unwrap_or(3)
            .max(3);
        let _ = writeln!(
            self.out,
            "\n{:<width$}  {:<9}  {:>5}  {:>8}",
            "job", "result", "steps", "time"
        );
        let rows: Vec<String> = self
            .jobs
            .iter()
            .map(|(job, c, d, steps)| {
                format!(
                    "{:<width$}  {:<9}  {:>5}  {:>8}",
                    job.name,
                    c.as_str(),
                    steps,
                    human(*d)
                )
            })
            .collect();
        for row in rows {
            let _ = writeln!(self.out, "{row}");
        }
    }
}

fn human(d: Duration) -> String {
    if d.as_secs() >= 60 {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    } else if d.as_millis() >= 1000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}ms", d.as_millis())
    }
}
