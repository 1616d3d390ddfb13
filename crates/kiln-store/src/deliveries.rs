//! Webhook deliveries: recorded by the intake, consumed by the dispatcher,
//! kept for deduplication and pruned after the retention period.

use rusqlite::{OptionalExtension, Row, params};

use crate::runs::insert_run;
use crate::{Delivery, DeliveryState, NewDelivery, NewRun, Result, Store, now_ms};

/// What [`Store::insert_delivery`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// A new delivery, now committed.
    New,
    /// A delivery with this id was already recorded; nothing changed.
    Duplicate,
}

const COLUMNS: &str = "id, event, repository, payload, state, note, received_at, processed_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<(Delivery, String)> {
    let state: String = row.get(4)?;
    Ok((
        Delivery {
            id: row.get(0)?,
            event: row.get(1)?,
            repository: row.get(2)?,
            payload: row.get(3)?,
            state: DeliveryState::Queued,
            note: row.get(5)?,
            received_at: row.get(6)?,
            processed_at: row.get(7)?,
        },
        state,
    ))
}

fn finish((mut delivery, state): (Delivery, String)) -> Result<Delivery> {
    delivery.state = DeliveryState::parse(&state)?;
    Ok(delivery)
}

impl Store {
    /// Records a delivery unless its id is already known. Returns once the
    /// row is committed to disk.
    pub fn insert_delivery(&self, d: &NewDelivery) -> Result<Inserted> {
        let changed = self.conn().execute(
            "INSERT OR IGNORE INTO deliveries (id, event, repository, payload, state, note, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                d.id,
                d.event,
                d.repository,
                d.payload,
                d.state.as_str(),
                d.note,
                d.received_at
            ],
        )?;
        Ok(if changed == 0 {
            Inserted::Duplicate
        } else {
            Inserted::New
        })
    }

    pub fn delivery(&self, id: &str) -> Result<Option<Delivery>> {
        let conn = self.conn();
        let row = conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM deliveries WHERE id = ?1"),
                [id],
                from_row,
            )
            .optional()?;
        row.map(finish).transpose()
    }

    /// The oldest delivery waiting for the dispatcher.
    pub fn next_queued_delivery(&self) -> Result<Option<Delivery>> {
        let conn = self.conn();
        let row = conn
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM deliveries WHERE state = 'queued'
                     ORDER BY received_at, rowid LIMIT 1"
                ),
                [],
                from_row,
            )
            .optional()?;
        row.map(finish).transpose()
    }

    /// How many deliveries wait for the dispatcher.
    pub fn queued_delivery_count(&self) -> Result<u64> {
        let n: i64 = self.conn().query_row(
            "SELECT count(*) FROM deliveries WHERE state = 'queued'",
            [],
            |r| r.get(0),
        )?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Marks a delivery processed and creates its runs, atomically: after a
    /// crash either both happened or the delivery is still queued. Returns
    /// the new runs' ids in the order given.
    pub fn finish_delivery(
        &self,
        id: &str,
        state: DeliveryState,
        note: Option<&str>,
        runs: &[NewRun],
    ) -> Result<Vec<i64>> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let now = now_ms();
        let mut ids = Vec::with_capacity(runs.len());
        for run in runs {
            ids.push(insert_run(&tx, run, now)?);
        }
        tx.execute(
            "UPDATE deliveries SET state = ?2, note = ?3, processed_at = ?4 WHERE id = ?1",
            params![id, state.as_str(), note, now],
        )?;
        tx.commit()?;
        Ok(ids)
    }

    /// Deletes deliveries received before `cutoff` (Unix ms) that are done
    /// with: processed, and no unfinished run needs their payload.
    pub fn prune_deliveries(&self, cutoff: i64) -> Result<usize> {
        Ok(self.conn().execute(
            "DELETE FROM deliveries
             WHERE received_at < ?1 AND state != 'queued'
               AND NOT EXISTS (SELECT 1 FROM runs
                               WHERE runs.delivery_id = deliveries.id AND runs.state != 'completed')",
            [cutoff],
        )?)
    }
}
