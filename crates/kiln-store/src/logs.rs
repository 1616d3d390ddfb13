//! Log lines of runs, already masked by the runner.

use rusqlite::params;

use crate::{LogLine, LogStream, NewLogLine, Result, Store};

impl Store {
    /// Appends lines to a run's log in one transaction.
    pub fn append_logs(&self, run_id: i64, lines: &[NewLogLine]) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO logs (run_id, job, stream, line, at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for l in lines {
                stmt.execute(params![run_id, l.job, l.stream.as_str(), l.line, l.at])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// A run's log lines after `after_seq` (0 for all), oldest first; `job`
    /// limits them to one job's lines.
    pub fn logs(&self, run_id: i64, job: Option<&str>, after_seq: i64) -> Result<Vec<LogLine>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT seq, job, stream, line, at FROM logs
             WHERE run_id = ?1 AND seq > ?2 AND (?3 IS NULL OR job = ?3) ORDER BY seq",
        )?;
        let raws = stmt
            .query_map(params![run_id, after_seq, job], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        raws.into_iter()
            .map(|(seq, job, stream, line, at)| {
                Ok(LogLine {
                    seq,
                    job,
                    stream: LogStream::parse(&stream)?,
                    line,
                    at,
                })
            })
            .collect()
    }
}
