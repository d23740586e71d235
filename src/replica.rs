//! Reads from a streaming replica, and how far behind it is.
//!
//! With `DATABASE_REPLICA_URL` set, [`Database`](crate::Database) opens a second pool to a
//! read-only replica. Nothing reads from it unless the caller asks: a repository function reads
//! from the replica only when handed [`Database::replica`](crate::Database::replica) as its
//! executor. Without a replica that executor is the primary pool, so code written for a replica
//! runs unchanged against one server.
//!
//! A replica is behind the primary by [`ReplicaLag`]. Use it for reads that tolerate that: lists,
//! dashboards, reports, the admin catalog. Read what the caller has just written from the primary
//! (`db.pool()`): a plan's status straight after `plans::enqueue`, a balance after a charge, a
//! claim. Writes sent to a replica fail with SQLSTATE 25006 (`read_only_sql_transaction`).

use serde::Serialize;
use sqlx::PgPool;

use crate::Result;

/// How far a replica is behind its primary, measured at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplicaLag {
    /// WAL bytes the primary has written that the replica has not replayed yet (0 when caught
    /// up). `None` when the replica server is not in recovery (not a replica at all).
    pub bytes: Option<i64>,
    /// Milliseconds between now and the commit time of the last transaction the replica
    /// replayed. Grows while the primary commits nothing, so read it together with `bytes`: a
    /// large value with `bytes == Some(0)` means an idle primary, not a slow replica. `None`
    /// before the replica has replayed any transaction.
    pub since_last_replay_ms: Option<i64>,
}

/// The replica part of a [`Health`](crate::schema::Health) report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaHealth {
    /// The replica answered; this is its lag.
    Lag(ReplicaLag),
    /// The replica (or the primary, for its WAL position) could not be asked; why.
    Unreachable(String),
}

/// Measures the lag of `replica` behind `primary`: the primary's current WAL position, then the
/// replica's replay position and last replayed commit time. Two round trips, one per server.
pub async fn lag(primary: &PgPool, replica: &PgPool) -> Result<ReplicaLag> {
    let primary_lsn = sqlx::query_scalar!(r#"SELECT pg_current_wal_lsn()::text AS "lsn!""#)
        .fetch_one(primary)
        .await?;
    let row = sqlx::query!(
        r#"SELECT CASE WHEN pg_is_in_recovery()
                       THEN greatest(pg_wal_lsn_diff($1::text::pg_lsn, pg_last_wal_replay_lsn()), 0)::bigint
                  END AS bytes,
                  (extract(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000)::bigint
                      AS since_last_replay_ms"#,
        primary_lsn,
    )
    .fetch_one(replica)
    .await?;
    Ok(ReplicaLag {
        bytes: row.bytes,
        since_last_replay_ms: row.since_last_replay_ms,
    })
}
