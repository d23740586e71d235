//! The target side of the session rules: no timeouts for the import's own transactions, and
//! the one check that blocks a whole shop (a different shop already in the target).

use sqlx::PgConnection;
use uuid::Uuid;

use crate::Result;

/// Lifts the pool's `statement_timeout` and `idle_in_transaction_session_timeout` for the rest
/// of the current transaction only (`set_config(…, true)`): a big shop's batch may take longer
/// than the services' 60 s, and the transaction waits idle while the source streams the next
/// batch. The connection goes back to the pool with its own settings.
pub(crate) async fn no_timeouts(conn: &mut PgConnection) -> Result<()> {
    sqlx::query_scalar!(
        r#"SELECT set_config('statement_timeout', '0', true) || set_config('idle_in_transaction_session_timeout', '0', true) AS "set!""#
    )
    .fetch_one(conn)
    .await?;
    Ok(())
}

/// A shop of the target that stands in the way of importing `(id, name)`: the same id under
/// another name, or another id under the same name. `(its id, its name)`.
pub(crate) async fn shop_conflict(
    conn: &mut PgConnection,
    id: Uuid,
    name: &str,
) -> Result<Option<(Uuid, String)>> {
    Ok(sqlx::query!(
        "SELECT id, name FROM shop.shops
         WHERE (id = $1 AND name <> $2) OR (name = $2 AND id <> $1)
         ORDER BY id = $1 DESC
         LIMIT 1",
        id,
        name
    )
    .fetch_optional(conn)
    .await?
    .map(|r| (r.id.get(), r.name)))
}
