//! The schema, as numbered migrations. A migration is never edited once
//! released: changes are new entries at the end.

use std::path::Path;

use rusqlite::Connection;

use crate::{Result, StoreError};

/// Migrations in order; `user_version` = how many have been applied.
const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    "
    CREATE TABLE deliveries (
        id           TEXT PRIMARY KEY,     -- X-GitHub-Delivery
        event        TEXT NOT NULL,        -- X-GitHub-Event
        repository   TEXT,                 -- owner/name from the payload
        payload      TEXT NOT NULL,        -- the raw JSON body
        state        TEXT NOT NULL,        -- queued | dispatched | ignored | failed
        note         TEXT,                 -- why ignored or failed
        received_at  INTEGER NOT NULL,
        processed_at INTEGER
    );
    CREATE INDEX deliveries_state ON deliveries (state, received_at);

    CREATE TABLE runs (
        id                 INTEGER PRIMARY KEY AUTOINCREMENT,
        delivery_id        TEXT,
        repository         TEXT NOT NULL,
        workflow_path      TEXT NOT NULL,
        workflow_name      TEXT NOT NULL,
        event              TEXT NOT NULL,
        git_ref            TEXT NOT NULL,
        sha                TEXT NOT NULL,
        state              TEXT NOT NULL,  -- queued | in_progress | completed
        conclusion         TEXT,
        reason             TEXT,
        concurrency_group  TEXT,
        cancel_in_progress INTEGER NOT NULL DEFAULT 0,
        spec               TEXT NOT NULL,  -- opaque JSON: what the server needs to (re)start it
        created_at         INTEGER NOT NULL,
        started_at         INTEGER,
        finished_at        INTEGER
    );
    CREATE INDEX runs_state ON runs (state, id);

    CREATE TABLE jobs (
        run_id       INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        key          TEXT NOT NULL,        -- unique in the run (job id, or id + matrix name)
        job_id       TEXT NOT NULL,
        name         TEXT NOT NULL,
        state        TEXT NOT NULL,        -- queued | in_progress | completed
        conclusion   TEXT,
        check_run_id INTEGER,
        steps        TEXT NOT NULL DEFAULT '[]',
        summary      TEXT NOT NULL DEFAULT '',
        started_at   INTEGER,
        finished_at  INTEGER,
        PRIMARY KEY (run_id, key)
    );

    CREATE TABLE logs (
        seq     INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id  INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        job     TEXT,
        stream  TEXT NOT NULL,             -- stdout | stderr | meta
        line    TEXT NOT NULL,
        at      INTEGER NOT NULL
    );
    CREATE INDEX logs_run ON logs (run_id, seq);
    ",
];

/// The schema version this build writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Applies the missing migrations in one transaction.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > VERSION {
        return Err(StoreError::TooNew {
            path: path.to_owned(),
            found,
            known: VERSION,
        });
    }
    if found == VERSION {
        return Ok(());
    }
    let tx = conn.transaction()?;
    for sql in MIGRATIONS.iter().skip(usize::try_from(found).unwrap_or(0)) {
        tx.execute_batch(sql)?;
    }
    tx.pragma_update(None, "user_version", VERSION)?;
    tx.commit()?;
    Ok(())
}
