//! Kiln's run history: webhook deliveries, workflow runs, their jobs (with
//! steps as JSON) and masked log lines, in one SQLite file under the data
//! directory.
//!
//! - One file, WAL journal, `synchronous = FULL`: a write that returned is on
//!   disk, so a delivery acknowledged with 202 survives a crash (the server
//!   acknowledges only after [`Store::insert_delivery`] committed).
//! - Schema changes are numbered migrations ([`schema`]), applied in a
//!   transaction on open; `PRAGMA user_version` records the last one.
//! - The store is synchronous; callers on an async runtime run it on a
//!   blocking thread. One connection behind a mutex: SQLite serialises
//!   writers anyway, and readers in other processes (`kiln runs`) use their
//!   own connection thanks to WAL.
//! - Times are Unix milliseconds ([`now_ms`]).
//!
//! The store knows nothing about GitHub or workflows: states are its own
//! small enums and everything else is text or opaque JSON.

mod deliveries;
mod jobs;
mod logs;
mod model;
mod runs;
pub mod schema;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags};

pub use deliveries::Inserted;
pub use model::{
    Delivery, DeliveryState, JobRecord, JobState, LogLine, LogStream, NewDelivery, NewLogLine,
    NewRun, RunRecord, RunState,
};

/// The file name of the store inside the data directory.
pub const FILE_NAME: &str = "kiln.db";

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store at {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("no kiln store at {0} (has `kiln serve` run with this data directory?)")]
    Missing(PathBuf),
    #[error("the store at {path} has schema version {found}, newer than this kiln ({known})")]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("database error")]
    Sql(#[from] rusqlite::Error),
    #[error("stored {what} is not valid: {value:?}")]
    Corrupt { what: &'static str, value: String },
    /// An async caller's blocking task was dropped (runtime shutdown).
    #[error("the store call was cancelled")]
    Cancelled,
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A handle on the store file. Cheap to share behind an `Arc`.
pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (creating if needed) the store in `data_dir`, migrating it to
    /// the current schema.
    pub fn open_in(data_dir: &Path) -> Result<Store> {
        Store::open(&data_dir.join(FILE_NAME))
    }

    /// Opens (creating if needed) the store file at `path`.
    pub fn open(path: &Path) -> Result<Store> {
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })?;
        Store::init(conn, path)
    }

    /// Opens an existing store in `data_dir` (for the CLI's read commands):
    /// a missing file is an error instead of a new empty store.
    pub fn open_existing_in(data_dir: &Path) -> Result<Store> {
        let path = data_dir.join(FILE_NAME);
        if !path.is_file() {
            return Err(StoreError::Missing(path));
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn =
            Connection::open_with_flags(&path, flags).map_err(|source| StoreError::Open {
                path: path.clone(),
                source,
            })?;
        Store::init(conn, &path)
    }

    fn init(mut conn: Connection, path: &Path) -> Result<Store> {
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        schema::migrate(&mut conn, path)?;
        Ok(Store {
            conn: Mutex::new(conn),
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves no half-done write behind:
        // every multi-statement write is a transaction.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
