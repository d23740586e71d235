//! Retention: deleting old rows of the tables PlanExe lets grow without bound, in small batches
//! that are safe to run beside live services (Rust and Python).
//!
//! What may go, per the PlanExe reference (`shared/reference/planexe.md`):
//!
//! * **`events`**: the event log. Nothing reads an event to decide anything; billing and the
//!   queue live in `plans` and `credit_history`. Deleted by `timestamp`.
//! * **`nonces`**: one-shot form nonces. PlanExe's own (never scheduled) cleanup deletes them 30
//!   days after `created_at`; here a nonce goes once it has not been *used* for the given age
//!   (`last_accessed_at`), so one still being replayed keeps answering "not new".
//! * **`token_metrics`**: one telemetry row per LLM call. Deleted by `timestamp`; usage
//!   summaries ([`super::token_metrics`]) then cover the retained window only.
//!
//! **Never `credit_history`**: it is the ledger, and a balance equals the sum of its rows
//! forever. Its growth is handled by indexes, not deletion.
//!
//! Every batch is one short transaction: it picks at most `batch` rows older than a cutoff fixed
//! when the purge starts, oldest first through the table's timestamp index, locks them with
//! `FOR UPDATE SKIP LOCKED` (a row a writer holds is skipped, never waited for) and deletes them
//! by primary key. A writer that touches a row of the batch (a nonce replayed at that moment)
//! waits at most for that one batch; the purge itself waits for no lock longer than
//! [`PURGE_LOCK_TIMEOUT`] (a DDL lock, for instance) and then fails with the timeout error rather
//! than queue writers behind it.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;

use crate::error::{Error, Result};

/// Longest the purge waits for a table or row lock in one batch before giving up with
/// [`Error`]'s lock-timeout error.
pub const PURGE_LOCK_TIMEOUT: Duration = Duration::from_secs(2);

/// Default rows per batch: a few milliseconds of work, so a writer that meets the batch waits
/// that long at most.
pub const DEFAULT_BATCH: u32 = 1_000;

/// Largest accepted batch.
pub const MAX_BATCH: u32 = 50_000;

/// A table [`purge`] can delete from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    /// `events`, by `timestamp`.
    Events,
    /// `nonces`, by `last_accessed_at` (last use).
    Nonces,
    /// `token_metrics`, by `timestamp`.
    TokenMetrics,
}

impl Table {
    /// The table's name in the database.
    pub const fn name(self) -> &'static str {
        match self {
            Table::Events => "events",
            Table::Nonces => "nonces",
            Table::TokenMetrics => "token_metrics",
        }
    }
}

/// Where a running [`purge`] stands, passed to its progress callback after every batch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Progress {
    /// The table being purged.
    pub table: Table,
    /// Rows deleted so far.
    pub deleted: u64,
    /// Batches committed so far.
    pub batches: u64,
    /// Time since the purge of this table started.
    pub elapsed: Duration,
}

impl Progress {
    /// Rows deleted per second so far (0 before any time has passed).
    pub fn rows_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.deleted as f64 / secs
        } else {
            0.0
        }
    }
}

/// Deletes the rows of `table` older than `older_than` (relative to the database's clock when
/// the purge starts), `batch` rows per transaction, until a batch comes back short. Rows a
/// writer held locked at that moment are skipped and left for the next run. `progress` is
/// called after every batch. Returns the final [`Progress`] (its `deleted` is the total).
///
/// Several round trips per batch (begin, lock timeout, delete, commit); run it on a connection
/// of its own, not inside a transaction of yours (that would hold every batch's locks to the
/// end).
#[tracing::instrument(skip(conn, progress), fields(table = table.name()))]
pub async fn purge(
    conn: &mut PgConnection,
    table: Table,
    older_than: Duration,
    batch: u32,
    mut progress: impl FnMut(&Progress),
) -> Result<Progress> {
    if batch == 0 || batch > MAX_BATCH {
        return Err(Error::invalid_input(format!(
            "batch must be 1..={MAX_BATCH} rows"
        )));
    }
    let cutoff = cutoff(&mut *conn, older_than).await?;
    let started = Instant::now();
    let mut state = Progress {
        table,
        deleted: 0,
        batches: 0,
        elapsed: Duration::ZERO,
    };
    loop {
        let deleted = purge_batch(&mut *conn, table, cutoff, batch).await?;
        state.deleted += deleted;
        state.batches += 1;
        state.elapsed = started.elapsed();
        progress(&state);
        if deleted < u64::from(batch) {
            return Ok(state);
        }
    }
}

/// The database's "now" (UTC) minus `older_than`: the cutoff every batch of one purge uses, so
/// the purge ends even while new rows keep ageing past a moving cutoff.
async fn cutoff(conn: &mut PgConnection, older_than: Duration) -> Result<DateTime<Utc>> {
    let cutoff = sqlx::query_scalar!(
        r#"SELECT (now() AT TIME ZONE 'utc') - make_interval(secs => $1) AS "cutoff!""#,
        older_than.as_secs_f64(),
    )
    .fetch_one(conn)
    .await?;
    Ok(cutoff.and_utc())
}

/// One batch: at most `batch` rows of `table` older than `cutoff`, oldest first, deleted in one
/// short transaction. Returns the number deleted.
#[tracing::instrument(skip(conn), fields(table = table.name()))]
pub async fn purge_batch(
    conn: &mut PgConnection,
    table: Table,
    cutoff: DateTime<Utc>,
    batch: u32,
) -> Result<u64> {
    let cutoff = cutoff.naive_utc();
    let limit = i64::from(batch);
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    sqlx::query!(
        "SELECT set_config('lock_timeout', $1, true) AS ignored",
        format!("{}ms", PURGE_LOCK_TIMEOUT.as_millis()),
    )
    .fetch_one(&mut *tx)
    .await?;
    let done = match table {
        Table::Events => {
            sqlx::query!(
                r#"DELETE FROM events WHERE id = ANY(ARRAY(
                     SELECT id FROM events WHERE "timestamp" < $1
                     ORDER BY "timestamp" LIMIT $2 FOR UPDATE SKIP LOCKED))"#,
                cutoff,
                limit,
            )
            .execute(&mut *tx)
            .await?
        }
        Table::Nonces => {
            sqlx::query!(
                r#"DELETE FROM nonces WHERE id = ANY(ARRAY(
                     SELECT id FROM nonces WHERE last_accessed_at < $1
                     ORDER BY last_accessed_at LIMIT $2 FOR UPDATE SKIP LOCKED))"#,
                cutoff,
                limit,
            )
            .execute(&mut *tx)
            .await?
        }
        Table::TokenMetrics => {
            sqlx::query!(
                r#"DELETE FROM token_metrics WHERE id = ANY(ARRAY(
                     SELECT id FROM token_metrics WHERE "timestamp" < $1
                     ORDER BY "timestamp" LIMIT $2 FOR UPDATE SKIP LOCKED))"#,
                cutoff,
                limit,
            )
            .execute(&mut *tx)
            .await?
        }
    };
    tx.commit().await?;
    Ok(done.rows_affected())
}
