//! Turns a step's raw output chunks into masked lines, workflow commands and
//! events.

use std::collections::VecDeque;
use std::sync::{Arc, RwLock};

use kiln_vm::{OutputChunk, OutputStream};
use tokio::sync::mpsc::UnboundedSender;

use crate::commands::{Annotation, AnnotationLevel, Command, CommandParser};
use crate::event::{JobKey, RunEvent, Stream};
use crate::mask::Masker;

/// Lines kept per step for failure reports.
const TAIL_LINES: usize = 30;

/// The masker shared by a whole run: secrets plus `::add-mask::` values.
pub type SharedMasker = Arc<RwLock<Masker>>;

pub fn mask(masker: &SharedMasker, text: &str) -> String {
    match masker.read() {
        Ok(m) => m.mask(text).into_owned(),
        // A poisoned lock means a panic elsewhere; never print unmasked text.
        Err(_) => "***".to_string(),
    }
}

/// What a step's output asked for, besides being printed.
#[derive(Debug, Default)]
pub struct Effects {
    pub outputs: Vec<(String, String)>,
    pub state: Vec<(String, String)>,
    pub annotations: Vec<Annotation>,
    /// A rejected command (e.g. the disabled `set-env`) fails the step.
    pub fails_step: bool,
}

pub struct OutputProcessor {
    job: JobKey,
    events: UnboundedSender<RunEvent>,
    masker: SharedMasker,
    parser: CommandParser,
    partial: [Vec<u8>; 2],
    tail: VecDeque<String>,
    pub effects: Effects,
}

impl OutputProcessor {
    pub fn new(job: JobKey, events: UnboundedSender<RunEvent>, masker: SharedMasker) -> Self {
        OutputProcessor {
            job,
            events,
            masker,
            parser: CommandParser::new(),
            partial: [Vec::new(), Vec::new()],
            tail: VecDeque::new(),
            effects: Effects::default(),
        }
    }

    pub fn push(&mut self, chunk: OutputChunk) {
        let idx = match chunk.stream {
            OutputStream::Stdout => 0,
            OutputStream::Stderr => 1,
        };
        self.partial[idx].extend_from_slice(&chunk.data);
        while let Some(pos) = self.partial[idx].iter().position(|&b| b == b'\n') {
            let rest = self.partial[idx].split_off(pos + 1);
            let line = std::mem::replace(&mut self.partial[idx], rest);
            self.line(idx, &line[..line.len() - 1]);
        }
    }

    /// Flushes unterminated last lines; returns the masked log tail.
    pub fn finish(&mut self) -> Vec<String> {
        for idx in 0..2 {
            let line = std::mem::take(&mut self.partial[idx]);
            if !line.is_empty() {
                self.line(idx, &line);
            }
        }
        self.tail.iter().cloned().collect()
    }

    /// Reports a line the runner itself produced about the step.
    pub fn runner_line(&mut self, text: &str) {
        self.emit(Stream::Stderr, text);
    }

    fn line(&mut self, idx: usize, raw: &[u8]) {
        let text = String::from_utf8_lossy(raw);
        let text = text.strip_suffix('\r').unwrap_or(&text);
        let stream = if idx == 0 {
            Stream::Stdout
        } else {
            Stream::Stderr
        };
        match self.parser.parse_line(text) {
            None => self.emit(stream, text),
            Some(command) => self.command(stream, text, command),
        }
    }

    fn command(&mut self, stream: Stream, text: &str, command: Command) {
        let job = self.job.clone();
        match command {
            Command::AddMask(value) => {
                if let Ok(mut m) = self.masker.write() {
                    m.add(&value);
                }
                self.emit(stream, "::add-mask::***");
            }
            Command::Group(title) => {
                let title = mask(&self.masker, &title);
                self.send(RunEvent::GroupStarted { job, title });
            }
            Command::EndGroup => self.send(RunEvent::GroupEnded { job }),
            Command::Annotation(mut annotation) => {
                annotation.message = mask(&self.masker, &annotation.message);
                annotation.title = annotation.title.map(|t| mask(&self.masker, &t));
                self.remember(format!("{}: {}", annotation.level, annotation.message));
                self.effects.annotations.push(annotation.clone());
                self.send(RunEvent::Annotation { job, annotation });
            }
            Command::Debug(message) => {
                let message = mask(&self.masker, &message);
                self.send(RunEvent::Debug { job, message });
            }
            Command::SetOutput { name, value } => {
                self.effects.outputs.push((name, value));
            }
            Command::SaveState { name, value } => self.effects.state.push((name, value)),
            Command::Rejected(rejection) => {
                let message = mask(&self.masker, &rejection.message);
                if rejection.level == AnnotationLevel::Error {
                    self.effects.fails_step = true;
                }
                let annotation = Annotation::new(rejection.level, message);
                self.effects.annotations.push(annotation.clone());
                self.send(RunEvent::Annotation { job, annotation });
            }
            // Commands that only change the parser's state, and problem
            // matchers (not supported: their lines are shown as output).
            Command::StopCommands(_) | Command::ResumeCommands | Command::Echo(_) => {}
            Command::AddMatcher(_) | Command::RemoveMatcher { .. } => self.emit(stream, text),
        }
    }

    fn emit(&mut self, stream: Stream, text: &str) {
        let line = mask(&self.masker, text);
        self.remember(line.clone());
        let job = self.job.clone();
        self.send(RunEvent::Output { job, stream, line });
    }

    fn remember(&mut self, line: String) {
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line);
    }

    fn send(&self, event: RunEvent) {
        // The receiver going away (display closed) must not stop the run.
        let _ = self.events.send(event);
    }
}
