//! Jobs of a run: one row per job instance, its steps as JSON, and the
//! check run it is reported as.

use rusqlite::{Row, params};

use crate::{JobRecord, JobState, Result, Store};

const COLUMNS: &str = "run_id, key, job_id, name, state, conclusion, check_run_id, steps, \
     summary, started_at, finished_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<(JobRecord, String, String)> {
    let check: Option<i64> = row.get(6)?;
    Ok((
        JobRecord {
            run_id: row.get(0)?,
            key: row.get(1)?,
            job_id: row.get(2)?,
            name: row.get(3)?,
            state: JobState::Queued,
            conclusion: row.get(5)?,
            check_run_id: check.and_then(|c| u64::try_from(c).ok()),
            steps: serde_json::Value::Null,
            summary: row.get(8)?,
            started_at: row.get(9)?,
            finished_at: row.get(10)?,
        },
        row.get(4)?,
        row.get(7)?,
    ))
}

impl Store {
    /// Inserts or replaces a job (keyed by run id and key).
    pub fn save_job(&self, job: &JobRecord) -> Result<()> {
        let check = job.check_run_id.and_then(|c| i64::try_from(c).ok());
        self.conn().execute(
            "INSERT INTO jobs (run_id, key, job_id, name, state, conclusion, check_run_id, steps,
                               summary, started_at, finished_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (run_id, key) DO UPDATE SET
                job_id = excluded.job_id, name = excluded.name, state = excluded.state,
                conclusion = excluded.conclusion,
                check_run_id = coalesce(excluded.check_run_id, jobs.check_run_id),
                steps = excluded.steps, summary = excluded.summary,
                started_at = excluded.started_at, finished_at = excluded.finished_at",
            params![
                job.run_id,
                job.key,
                job.job_id,
                job.name,
                job.state.as_str(),
                job.conclusion,
                check,
                job.steps.to_string(),
                job.summary,
                job.started_at,
                job.finished_at,
            ],
        )?;
        Ok(())
    }

    /// Records the check run a job is reported as.
    pub fn set_job_check_run(&self, run_id: i64, key: &str, check_run_id: u64) -> Result<()> {
        let check = i64::try_from(check_run_id).unwrap_or(i64::MAX);
        self.conn().execute(
            "UPDATE jobs SET check_run_id = ?3 WHERE run_id = ?1 AND key = ?2",
            params![run_id, key, check],
        )?;
        Ok(())
    }

    /// A run's jobs, in the order they were first saved.
    pub fn jobs(&self, run_id: i64) -> Result<Vec<JobRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM jobs WHERE run_id = ?1 ORDER BY rowid"
        ))?;
        let raws = stmt
            .query_map([run_id], from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        raws.into_iter()
            .map(|(mut job, state, steps)| {
                job.state = JobState::parse(&state)?;
                job.steps =
                    serde_json::from_str(&steps).map_err(|_| crate::StoreError::Corrupt {
                        what: "job steps",
                        value: steps,
                    })?;
                Ok(job)
            })
            .collect()
    }
}
