//! Transactions, savepoints and retries.
//!
//! [`transaction`] runs a closure inside a transaction: it commits when the closure returns
//! `Ok` and rolls back when it returns `Err` (or panics, or its future is dropped). Called on a
//! connection that is already inside a transaction, it opens a **savepoint** instead, so an inner
//! failure undoes only the inner work and the outer transaction carries on. (The Python
//! `transactional` decorator this replaces silently discarded the outer work.)
//!
//! ```no_run
//! use shared_db::{tx, Database, Error, Result};
//! use sqlx::PgConnection;
//!
//! async fn step(conn: &mut PgConnection) -> Result<i64> {
//!     // a repository function; takes `&mut PgConnection`
//!     # let _ = conn;
//!     Ok(1)
//! }
//!
//! # async fn example(db: &Database) -> Result<()> {
//! let mut conn = db.acquire().await?;
//! let total = tx::transaction(&mut conn, async |tx| {
//!     let a = step(tx).await?;
//!     // Nested: runs in a savepoint. Had it failed, only its own work would be undone,
//!     // and `a`'s work would still commit if we chose to carry on.
//!     let b = tx::transaction(tx, async |sp| step(sp).await).await?;
//!     Ok::<_, Error>(a + b)
//! })
//! .await?;
//! assert_eq!(total, 2);
//! # Ok(()) }
//! ```

use std::future::Future;
use std::time::Duration;

use sqlx::{Connection, PgConnection};

use crate::{Error, Result};

/// Isolation levels for [`transaction_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// PostgreSQL's default.
    ReadCommitted,
    /// Snapshot isolation.
    RepeatableRead,
    /// Full serializability; callers should expect retryable serialization failures and use
    /// [`retry`].
    Serializable,
}

impl Isolation {
    fn begin_statement(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "BEGIN ISOLATION LEVEL READ COMMITTED",
            Isolation::RepeatableRead => "BEGIN ISOLATION LEVEL REPEATABLE READ",
            Isolation::Serializable => "BEGIN ISOLATION LEVEL SERIALIZABLE",
        }
    }
}

/// Runs `f` in a transaction on `conn` (a savepoint if `conn` is already in one).
///
/// Commits when `f` returns `Ok`, rolls back when it returns `Err`. Pass `&mut *tx` or
/// `&mut *pooled_conn`. The future is `Send` when `f`'s is, so it runs in `tokio::spawn`.
pub async fn transaction<T, E, F>(conn: &mut PgConnection, f: F) -> Result<T, E>
where
    F: AsyncFnOnce(&mut PgConnection) -> Result<T, E>,
    E: From<Error>,
{
    let tx = conn.begin().await.map_err(|e| E::from(e.into()))?;
    run(tx, f).await
}

/// Like [`transaction`] with an explicit isolation level. Only valid at the top level: asking for
/// an isolation level on a connection that is already in a transaction is
/// [`Error::InvalidInput`], because PostgreSQL cannot change it mid-transaction.
pub async fn transaction_with<T, E, F>(
    conn: &mut PgConnection,
    isolation: Isolation,
    f: F,
) -> Result<T, E>
where
    F: AsyncFnOnce(&mut PgConnection) -> Result<T, E>,
    E: From<Error>,
{
    if conn.is_in_transaction() {
        return Err(E::from(Error::invalid_input(
            "an isolation level can only be chosen for a top-level transaction",
        )));
    }
    let tx = conn
        .begin_with(isolation.begin_statement())
        .await
        .map_err(|e| E::from(e.into()))?;
    run(tx, f).await
}

async fn run<T, E, F>(mut tx: sqlx::Transaction<'_, sqlx::Postgres>, f: F) -> Result<T, E>
where
    F: AsyncFnOnce(&mut PgConnection) -> Result<T, E>,
    E: From<Error>,
{
    match f(&mut tx).await {
        Ok(value) => {
            tx.commit().await.map_err(|e| E::from(e.into()))?;
            Ok(value)
        }
        Err(err) => {
            // A failed rollback means the connection is broken; the pool discards it. The
            // caller's error is the one worth reporting.
            if let Err(rollback_err) = tx.rollback().await {
                tracing::warn!(error = %rollback_err, "rollback failed");
            }
            Err(err)
        }
    }
}

/// How [`retry`] spaces and bounds its attempts, and whether the operation may be repeated
/// after an unknown outcome.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Total attempts, including the first (at least 1).
    pub max_attempts: u32,
    /// Delay before the second attempt; doubled each time after.
    pub initial_backoff: Duration,
    /// Upper bound on a single delay.
    pub max_backoff: Duration,
    /// The operation is idempotent: running it twice has the effect of running it once (it
    /// carries an idempotency key, or checks state and returns the first outcome). Only then
    /// does [`retry`] also repeat it after a lost connection
    /// ([`Error::is_outcome_unknown`]), when the first attempt may have committed. `false`
    /// by default.
    pub idempotent: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(500),
            idempotent: false,
        }
    }
}

impl RetryPolicy {
    /// The default policy for an idempotent operation ([`RetryPolicy::idempotent`] set).
    pub fn idempotent() -> Self {
        RetryPolicy {
            idempotent: true,
            ..RetryPolicy::default()
        }
    }

    fn should_retry(&self, e: &Error) -> bool {
        e.is_retryable() || (self.idempotent && e.is_outcome_unknown())
    }
}

/// Runs `op` until it succeeds, fails with an error not worth retrying, or
/// `policy.max_attempts` is reached. Retried: errors for which [`Error::is_retryable`] is true
/// (the attempt applied nothing: serialization failure, deadlock, lock timeout, pool timeout…);
/// with [`RetryPolicy::idempotent`], also a lost connection, whose attempt may have committed.
/// The returned error is the last one seen.
///
/// `op` is called afresh for each attempt with the attempt number (from 1), so it must redo
/// the whole unit of work (typically a [`transaction`]). It is a closure returning a future
/// (`|attempt| async move { … }`) rather than an async closure, so that the future of `retry`
/// is `Send` whenever `op`'s future is, and can run in `tokio::spawn` or an axum handler; to
/// use a value from outside in every attempt, move a reference (or a clone) into the block:
///
/// ```no_run
/// use shared_db::tx::{self, RetryPolicy};
///
/// # async fn example(db: shared_db::Database) -> shared_db::Result<()> {
/// let handle = tokio::spawn(async move {
///     let db = &db;
///     tx::retry(RetryPolicy::default(), |_attempt| async move {
///         let mut conn = db.acquire().await?;
///         tx::transaction(&mut conn, async |tx| {
///             sqlx::query("UPDATE counter SET value = value + 1")
///                 .execute(&mut *tx)
///                 .await?;
///             Ok(())
///         })
///         .await
///     })
///     .await
/// });
/// handle.await.expect("not panicked")?;
/// # Ok(()) }
/// ```
pub async fn retry<T, F, Fut>(policy: RetryPolicy, mut op: F) -> Result<T>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let attempts = policy.max_attempts.max(1);
    let mut backoff = policy.initial_backoff;
    let mut attempt = 1;
    loop {
        match op(attempt).await {
            Err(e) if policy.should_retry(&e) && attempt < attempts => {
                tracing::debug!(attempt, error = %e, "retrying after a retryable error");
                tokio::time::sleep(backoff + jitter()).await;
                backoff = (backoff * 2).min(policy.max_backoff);
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Up to 1 ms from the clock's sub-second nanos, so replicas do not retry in step.
pub(crate) fn jitter() -> Duration {
    Duration::from_nanos(u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
            % 1_000_000,
    ))
}
