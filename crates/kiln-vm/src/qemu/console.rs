//! The guest's serial console, copied from QEMU's stdout into `console.log`
//! with a size cap.
//!
//! The head (boot messages, /init's report) and the latest output (what
//! happened just before a failure) are what explain a broken VM, so both are
//! kept: the first quarter of the cap is written once, the rest of the cap
//! holds the newest bytes, and a marker line says how much was left out in
//! between. The tail is rewritten at most every [`FLUSH_EVERY`] and at EOF,
//! so a chatty guest costs bounded I/O.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// A size-capped log file: a fixed head plus a rolling tail.
pub(crate) struct ConsoleLog {
    file: File,
    head_cap: u64,
    head_len: u64,
    tail_cap: usize,
    tail: VecDeque<u8>,
    omitted: u64,
    dirty: bool,
}

impl ConsoleLog {
    pub fn create(path: &Path, cap: u64) -> io::Result<ConsoleLog> {
        let head_cap = cap / 4;
        Ok(ConsoleLog {
            file: File::create(path)?,
            head_cap,
            head_len: 0,
            tail_cap: usize::try_from(cap - head_cap).unwrap_or(usize::MAX),
            tail: VecDeque::new(),
            omitted: 0,
            dirty: false,
        })
    }

    pub fn push(&mut self, mut data: &[u8]) -> io::Result<()> {
        if self.tail.is_empty() && self.head_len < self.head_cap {
            let room = usize::try_from(self.head_cap - self.head_len).unwrap_or(usize::MAX);
            let n = room.min(data.len());
            self.file.write_all(&data[..n])?;
            self.head_len += n as u64;
            data = &data[n..];
        }
        if data.is_empty() {
            return Ok(());
        }
        self.tail.extend(data);
        let excess = self.tail.len().saturating_sub(self.tail_cap);
        self.tail.drain(..excess);
        self.omitted += excess as u64;
        self.dirty = true;
        Ok(())
    }

    /// Writes the tail after the head.
    pub fn flush(&mut self) -> io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        self.file.seek(SeekFrom::Start(self.head_len))?;
        if self.omitted > 0 {
            let marker = format!(
                "\n[kiln: {} bytes of console output omitted]\n",
                self.omitted
            );
            self.file.write_all(marker.as_bytes())?;
        }
        let (a, b) = self.tail.as_slices();
        self.file.write_all(a)?;
        self.file.write_all(b)?;
        let end = self.file.stream_position()?;
        self.file.set_len(end)?;
        self.dirty = false;
        Ok(())
    }
}

/// Lines of the guest's /init (the agent's `boot` module, or
/// images/initramfs/init, and the root disk's kiln-init) start with this. The last one comes right before the agent
/// starts, so "when did /init last speak" tells the handshake how long to
/// keep waiting (see `agent.rs`).
pub(crate) const INIT_PREFIX: &[u8] = b"kiln-init: ";

/// When the last /init line was seen; `None` before the first.
pub(crate) type InitProgress = watch::Receiver<Option<Instant>>;

/// Watches console output, one line at a time, for /init's lines.
struct LineWatch {
    line: Vec<u8>,
    progress: watch::Sender<Option<Instant>>,
}

impl LineWatch {
    /// Only a line's start matters; longer lines are cut.
    const KEEP: usize = 64;

    fn feed(&mut self, data: &[u8]) {
        for &b in data {
            if b == b'\n' {
                if self.line.starts_with(INIT_PREFIX) {
                    self.progress.send_replace(Some(Instant::now()));
                }
                self.line.clear();
            } else if self.line.len() < Self::KEEP {
                self.line.push(b);
            }
        }
    }
}

/// Copies `pipe` into the log until EOF (QEMU's exit), flushing the tail
/// periodically, and reports /init's progress. The returned task ends once
/// the log is complete.
pub(crate) fn pump(
    mut pipe: impl AsyncRead + Unpin + Send + 'static,
    mut log: ConsoleLog,
) -> (JoinHandle<()>, InitProgress) {
    let (progress, seen) = watch::channel(None);
    let mut lines = LineWatch {
        line: Vec::new(),
        progress,
    };
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                read = pipe.read(&mut buf) => match read {
                    Ok(n) if n > 0 => {
                        lines.feed(&buf[..n]);
                        if let Err(e) = log.push(&buf[..n]) {
                            tracing::debug!(error = %e, "cannot write the console log");
                        }
                    }
                    _ => break,
                },
                _ = tick.tick() => {
                    let _ = log.flush();
                }
            }
        }
        let _ = log.flush();
    });
    (task, seen)
}

/// The last `lines` lines of a log file (at most its last 8 KiB), for error
/// messages. Empty if the file cannot be read.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    const WINDOW: u64 = 8 * 1024;
    let read = || -> io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(WINDOW)))?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    let text = read().unwrap_or_default();
    let all: Vec<&str> = text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty())
        .collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_output_is_kept_whole() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let path = tmp.path().join("console.log");
        let mut log = ConsoleLog::create(&path, 400)?;
        log.push(b"boot\n")?;
        log.push(&[b'a'; 150])?;
        log.flush()?;
        let text = std::fs::read(&path)?;
        assert_eq!(text.len(), 155);
        assert!(text.starts_with(b"boot\n"));
        Ok(())
    }

    #[test]
    fn long_output_keeps_head_and_latest_tail_within_the_cap() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let path = tmp.path().join("console.log");
        let mut log = ConsoleLog::create(&path, 400)?;
        log.push(&[b'h'; 100])?;
        for i in 0..100u8 {
            log.push(&[b'0' + i % 10; 50])?;
            if i % 7 == 0 {
                log.flush()?;
            }
        }
        log.push(b"LAST")?;
        log.flush()?;
        let text = String::from_utf8_lossy(&std::fs::read(&path)?).into_owned();
        assert!(text.starts_with(&"h".repeat(100)), "{text}");
        assert!(text.ends_with("LAST"), "{text}");
        assert!(text.contains("bytes of console output omitted"), "{text}");
        let marker = text.find("\n[kiln").expect("marker");
        let after = text[marker..].split_once("]\n").map_or(0, |(_, t)| t.len());
        assert_eq!(after, 300, "the tail is filled to its cap");
        // 5104 bytes in all; the head keeps 100, the tail 300.
        assert!(text.contains("[kiln: 4704 bytes"), "{text}");
        Ok(())
    }

    #[test]
    fn init_lines_are_noticed_even_when_split() {
        let (progress, seen) = watch::channel(None);
        let mut lines = LineWatch {
            line: Vec::new(),
            progress,
        };
        lines.feed(b"[    0.5] kernel says kiln-init: not at the start\nkiln-in");
        assert!(seen.borrow().is_none());
        lines.feed(b"it: port org.kiln.agent is /dev/vport1p1");
        assert!(seen.borrow().is_none(), "only complete lines count");
        lines.feed(b"\n");
        assert!(seen.borrow().is_some());
    }

    #[test]
    fn tail_gives_the_last_nonempty_lines() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let path = tmp.path().join("log");
        std::fs::write(&path, "a\nb\r\n\nc\n")?;
        assert_eq!(tail(&path, 2), "b\nc");
        assert_eq!(tail(&tmp.path().join("none"), 2), "");
        Ok(())
    }
}
