//! STAND-IN for the foundation's transaction helper (replaced by `main` at merge).
use crate::error::Error;
use sqlx::{Connection, PgConnection};

/// Run `f` in a transaction (savepoint when nested): commit on Ok, rollback on Err.
pub async fn transaction<T, E, F>(conn: &mut PgConnection, f: F) -> Result<T, E>
where
    F: AsyncFnOnce(&mut PgConnection) -> Result<T, E>,
    E: From<Error>,
{
    let mut tx = conn.begin().await.map_err(|e| E::from(Error::from(e)))?;
    match f(&mut tx).await {
        Ok(v) => {
            tx.commit().await.map_err(|e| E::from(Error::from(e)))?;
            Ok(v)
        }
        Err(e) => {
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}
