//! Transactions and savepoints (local stand-in until the foundation is merged).

use sqlx::{Connection, PgConnection};

use crate::{Error, Result};

/// Runs `f` in a transaction on `conn` (a savepoint if `conn` is already in one).
///
/// Commits when `f` returns `Ok`, rolls back when it returns `Err`.
pub async fn transaction<T, E, F>(conn: &mut PgConnection, f: F) -> Result<T, E>
where
    F: AsyncFnOnce(&mut PgConnection) -> Result<T, E>,
    E: From<Error>,
{
    let mut tx = conn.begin().await.map_err(|e| E::from(e.into()))?;
    match f(&mut tx).await {
        Ok(value) => {
            tx.commit().await.map_err(|e| E::from(e.into()))?;
            Ok(value)
        }
        Err(err) => {
            let _ = tx.rollback().await;
            Err(err)
        }
    }
}
