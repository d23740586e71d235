//! Transactions on SQLite, with the shape of [`shared_db::tx`]: [`transaction`] runs a closure in
//! a write transaction (a savepoint when the connection is already in one) and commits on `Ok`,
//! rolls back on `Err`. [`shared_db::tx::retry`] repeats either backend's operations: it only
//! looks at [`shared_db::Error::is_retryable`], which is true here for `SQLITE_BUSY`/`LOCKED`
//! ([`crate::error`]).

use shared_db::Error;
use sqlx::{Connection, SqliteConnection};

use crate::error::from_sqlx;

/// Runs `f` in a transaction on `conn`: `BEGIN IMMEDIATE` at the top level (the write lock is
/// taken at the start, waiting under `busy_timeout`, so a read-then-write inside `f` can never
/// fail with `SQLITE_BUSY_SNAPSHOT` halfway), a `SAVEPOINT` when `conn` is already in a
/// transaction (rolled back alone when `f` fails). Pass `&mut *tx` or `&mut *pooled_conn`.
pub async fn transaction<T, E, F>(conn: &mut SqliteConnection, f: F) -> Result<T, E>
where
    F: AsyncFnOnce(&mut SqliteConnection) -> Result<T, E>,
    E: From<Error>,
{
    let mut tx = if conn.is_in_transaction() {
        conn.begin().await
    } else {
        conn.begin_with("BEGIN IMMEDIATE").await
    }
    .map_err(|e| E::from(from_sqlx(e)))?;
    match f(&mut tx).await {
        Ok(value) => {
            tx.commit().await.map_err(|e| E::from(from_sqlx(e)))?;
            Ok(value)
        }
        Err(err) => {
            if let Err(rollback_err) = tx.rollback().await {
                tracing::warn!(error = %rollback_err, "rollback failed");
            }
            Err(err)
        }
    }
}
