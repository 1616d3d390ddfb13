//! Workflow runs: created with their delivery, queued until a session slot
//! (and their concurrency group) lets them start, then completed.

use rusqlite::{OptionalExtension, Row, Transaction, params};

use crate::{NewRun, Result, RunRecord, RunState, Store, now_ms};

const COLUMNS: &str = "id, delivery_id, repository, workflow_path, workflow_name, event, \
     git_ref, sha, state, conclusion, reason, concurrency_group, cancel_in_progress, spec, \
     created_at, started_at, finished_at";

type Raw = (RunRecord, String);

fn from_row(row: &Row<'_>) -> rusqlite::Result<Raw> {
    Ok((
        RunRecord {
            id: row.get(0)?,
            delivery_id: row.get(1)?,
            repository: row.get(2)?,
            workflow_path: row.get(3)?,
            workflow_name: row.get(4)?,
            event: row.get(5)?,
            git_ref: row.get(6)?,
            sha: row.get(7)?,
            state: RunState::Queued,
            conclusion: row.get(9)?,
            reason: row.get(10)?,
            concurrency_group: row.get(11)?,
            cancel_in_progress: row.get(12)?,
            spec: row.get(13)?,
            created_at: row.get(14)?,
            started_at: row.get(15)?,
            finished_at: row.get(16)?,
        },
        row.get(8)?,
    ))
}

fn finish((mut run, state): Raw) -> Result<RunRecord> {
    run.state = RunState::parse(&state)?;
    Ok(run)
}

pub(crate) fn insert_run(tx: &Transaction<'_>, run: &NewRun, now: i64) -> Result<i64> {
    let (state, conclusion, reason, finished_at) = match &run.finished {
        Some((c, r)) => (RunState::Completed, Some(c), Some(r), Some(now)),
        None => (RunState::Queued, None, None, None),
    };
    tx.execute(
        "INSERT INTO runs (delivery_id, repository, workflow_path, workflow_name, event, git_ref,
                           sha, state, conclusion, reason, concurrency_group, cancel_in_progress,
                           spec, created_at, finished_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        params![
            run.delivery_id,
            run.repository,
            run.workflow_path,
            run.workflow_name,
            run.event,
            run.git_ref,
            run.sha,
            state.as_str(),
            conclusion,
            reason,
            run.concurrency_group,
            run.cancel_in_progress,
            run.spec,
            now,
            finished_at,
        ],
    )?;
    Ok(tx.last_insert_rowid())
}

impl Store {
    /// Creates one run outside a delivery (tests, manual runs).
    pub fn insert_run(&self, run: &NewRun) -> Result<i64> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let id = insert_run(&tx, run, now_ms())?;
        tx.commit()?;
        Ok(id)
    }

    pub fn run(&self, id: i64) -> Result<Option<RunRecord>> {
        let conn = self.conn();
        let raw = conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM runs WHERE id = ?1"),
                [id],
                from_row,
            )
            .optional()?;
        raw.map(finish).transpose()
    }

    /// The newest `limit` runs, newest first.
    pub fn list_runs(&self, limit: usize) -> Result<Vec<RunRecord>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.select_runs(
            &format!("SELECT {COLUMNS} FROM runs ORDER BY id DESC LIMIT ?1"),
            [limit],
        )
    }

    /// Runs in `state`, oldest first.
    pub fn runs_in_state(&self, state: RunState) -> Result<Vec<RunRecord>> {
        self.select_runs(
            &format!("SELECT {COLUMNS} FROM runs WHERE state = ?1 ORDER BY id"),
            [state.as_str()],
        )
    }

    /// How many runs are in `state`.
    pub fn run_count(&self, state: RunState) -> Result<u64> {
        let n: i64 = self.conn().query_row(
            "SELECT count(*) FROM runs WHERE state = ?1",
            [state.as_str()],
            |r| r.get(0),
        )?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn select_runs<P: rusqlite::Params>(&self, sql: &str, params: P) -> Result<Vec<RunRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(sql)?;
        let raws = stmt
            .query_map(params, from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        raws.into_iter().map(finish).collect()
    }

    /// Records the concurrency group a run was evaluated into.
    pub fn set_run_concurrency(
        &self,
        id: i64,
        group: &str,
        cancel_in_progress: bool,
    ) -> Result<()> {
        self.conn().execute(
            "UPDATE runs SET concurrency_group = ?2, cancel_in_progress = ?3 WHERE id = ?1",
            params![id, group, cancel_in_progress],
        )?;
        Ok(())
    }

    /// A queued run got its VM.
    pub fn mark_run_started(&self, id: i64) -> Result<()> {
        self.conn().execute(
            "UPDATE runs SET state = 'in_progress', started_at = ?2 WHERE id = ?1 AND state = 'queued'",
            params![id, now_ms()],
        )?;
        Ok(())
    }

    /// Completes a run (queued or in progress). A run already completed
    /// keeps its first result; returns whether this call completed it.
    pub fn finish_run(&self, id: i64, conclusion: &str, reason: Option<&str>) -> Result<bool> {
        let changed = self.conn().execute(
            "UPDATE runs SET state = 'completed', conclusion = ?2, reason = ?3, finished_at = ?4
             WHERE id = ?1 AND state != 'completed'",
            params![id, conclusion, reason, now_ms()],
        )?;
        Ok(changed == 1)
    }

    /// After a restart: every run that was in progress is completed with
    /// `failure` and `reason`. Returns those runs (as they were before) so
    /// the caller can complete and report their unfinished jobs.
    pub fn fail_interrupted_runs(&self, reason: &str) -> Result<Vec<RunRecord>> {
        let runs = self.runs_in_state(RunState::InProgress)?;
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let now = now_ms();
        for run in &runs {
            tx.execute(
                "UPDATE runs SET state = 'completed', conclusion = 'failure', reason = ?2,
                                 finished_at = ?3 WHERE id = ?1",
                params![run.id, reason, now],
            )?;
        }
        tx.commit()?;
        Ok(runs)
    }
}
