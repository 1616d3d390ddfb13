//! Just enough of the QEMU Machine Protocol for snapshots: `stop`,
//! `migrate`, `migrate-incoming`, `query-migrate`. One JSON object per line
//! each way; asynchronous events are skipped.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

/// How long one command may take to be answered.
const ANSWER_WAIT: Duration = Duration::from_secs(10);

pub(crate) struct Qmp {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Qmp {
    /// Connects (retrying until `limit` while QEMU has not created the
    /// socket yet) and leaves capabilities negotiation mode.
    pub async fn connect(socket: &Path, limit: Duration) -> Result<Qmp, String> {
        let deadline = tokio::time::Instant::now() + limit;
        let stream = loop {
            match UnixStream::connect(socket).await {
                Ok(stream) => break stream,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(format!(
                        "cannot connect to qmp at {}: {e}",
                        socket.display()
                    ));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        };
        let (read, writer) = stream.into_split();
        let mut qmp = Qmp {
            reader: BufReader::new(read),
            writer,
        };
        let greeting = qmp.next_message().await?;
        if greeting.get("QMP").is_none() {
            return Err(format!("unexpected qmp greeting: {greeting}"));
        }
        qmp.execute("qmp_capabilities", json!({})).await?;
        Ok(qmp)
    }

    /// Runs a command; returns its `return` value or the error QEMU gave.
    pub async fn execute(&mut self, command: &str, arguments: Value) -> Result<Value, String> {
        let mut line = json!({ "execute": command, "arguments": arguments }).to_string();
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .await
            .map_err(|e| format!("qmp {command}: cannot send: {e}"))?;
        loop {
            let message = self.next_message().await?;
            if message.get("event").is_some() {
                continue;
            }
            if let Some(value) = message.get("return") {
                return Ok(value.clone());
            }
            if let Some(error) = message.get("error") {
                let desc = error
                    .get("desc")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown error");
                return Err(format!("qmp {command} failed: {desc}"));
            }
            return Err(format!("qmp {command}: unexpected answer {message}"));
        }
    }

    async fn next_message(&mut self) -> Result<Value, String> {
        let mut line = String::new();
        let read = tokio::time::timeout(ANSWER_WAIT, self.reader.read_line(&mut line))
            .await
            .map_err(|_| format!("qmp gave no answer within {ANSWER_WAIT:?}"))?
            .map_err(|e| format!("cannot read from qmp: {e}"))?;
        if read == 0 {
            return Err("qmp closed the connection (qemu exited?)".to_owned());
        }
        serde_json::from_str(&line).map_err(|e| format!("qmp sent invalid json ({e}): {line}"))
    }

    /// Polls `query-migrate` until the migration completed; `Err` on
    /// failure, cancellation or `limit`.
    pub async fn wait_migration(&mut self, limit: Duration) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let info = self.execute("query-migrate", json!({})).await?;
            match info.get("status").and_then(Value::as_str) {
                Some("completed") => return Ok(()),
                Some(status @ ("failed" | "cancelled")) => {
                    let why = info
                        .get("error-desc")
                        .and_then(Value::as_str)
                        .unwrap_or("no reason given");
                    return Err(format!("migration {status}: {why}"));
                }
                _ => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("migration did not complete within {limit:?}"));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// `path` quoted for the `sh -c` QEMU runs `exec:` migration URIs with.
pub(crate) fn shell_quote(path: &Path) -> String {
    let text = path.to_string_lossy();
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_quoted_for_the_shell() {
        assert_eq!(shell_quote(Path::new("/a b/c")), "'/a b/c'");
        assert_eq!(shell_quote(Path::new("/it's")), r"'/it'\''s'");
    }
}
