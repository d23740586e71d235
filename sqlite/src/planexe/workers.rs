//! `workers` on SQLite: heartbeats, with [`shared_db::planexe::workers::Worker`] rows.

use std::time::Duration;

use chrono::{DateTime, Utc};
use shared_db::planexe::plans::Attempt;
use shared_db::planexe::workers::Worker;
use shared_db::planexe::{MAX_PAGE_ROWS, ident};
use shared_db::{Error, Result};
use sqlx::SqliteConnection;

use super::{ago, hex};
use crate::error::from_sqlx;
use crate::tx::transaction;

/// Record a heartbeat (insert on first sight, else move `last_heartbeat_at` and set the current
/// plan, `None` = idle). Naming a run asserts it is still the worker's: when `current` no longer
/// owns its plan, nothing is written and the answer is [`Error::Superseded`], so a lost run
/// cannot hide from the reaper behind a live worker. One transaction.
pub async fn heartbeat(
    conn: &mut SqliteConnection,
    worker_id: &str,
    current: Option<Attempt>,
) -> Result<Worker> {
    let worker_id = ident("worker id", worker_id, 255)?;
    if worker_id.is_empty() {
        return Err(Error::invalid_input("worker id must not be empty"));
    }
    transaction(conn, async |tx| {
        if let Some(a) = current {
            let owned = sqlx::query_scalar!(
                r#"SELECT count(*) AS "n!: i64" FROM plans WHERE id = ?1 AND run_attempt = ?2"#,
                hex(a.plan_id),
                hex(a.token),
            )
            .fetch_one(&mut *tx)
            .await
            .map_err(from_sqlx)?;
            if owned == 0 {
                return Err(Error::Superseded { plan_id: a.plan_id });
            }
        }
        let task = current.map(|a| a.plan_id.to_string());
        sqlx::query_as!(
            Worker,
            r#"INSERT INTO workers (id, started_at, last_heartbeat_at, current_task_id)
               VALUES (?1, strftime('%Y-%m-%d %H:%M:%f000', 'now'),
                       strftime('%Y-%m-%d %H:%M:%f000', 'now'), ?2)
               ON CONFLICT (id) DO UPDATE
                  SET last_heartbeat_at = excluded.last_heartbeat_at,
                      current_task_id = excluded.current_task_id
               RETURNING id AS "id!", started_at AS "started_at!: DateTime<Utc>",
                         last_heartbeat_at AS "last_heartbeat_at!: DateTime<Utc>",
                         current_task_id AS "current_task_id?""#,
            worker_id,
            task,
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(from_sqlx)
    })
    .await
}

/// Workers, most recent heartbeat first (ties by id): at most `limit` (clamped to
/// 1..=[`MAX_PAGE_ROWS`]). Served by `ix_workers_last_heartbeat_at`. No cursor: heartbeats move
/// the order on every beat; [`list_stale`] answers "who is not alive".
pub async fn list(conn: &mut SqliteConnection, limit: i64) -> Result<Vec<Worker>> {
    sqlx::query_as!(
        Worker,
        r#"SELECT id AS "id!", started_at AS "started_at!: DateTime<Utc>",
                  last_heartbeat_at AS "last_heartbeat_at!: DateTime<Utc>",
                  current_task_id AS "current_task_id?"
           FROM workers ORDER BY last_heartbeat_at DESC, id LIMIT ?1"#,
        limit.clamp(1, MAX_PAGE_ROWS),
    )
    .fetch_all(conn)
    .await
    .map_err(from_sqlx)
}

/// Workers whose last heartbeat is older than `threshold`, longest silent first (ties by id): at
/// most `limit` (clamped to 1..=[`MAX_PAGE_ROWS`]). Served by `ix_workers_last_heartbeat_at`.
pub async fn list_stale(
    conn: &mut SqliteConnection,
    threshold: Duration,
    limit: i64,
) -> Result<Vec<Worker>> {
    let cutoff = ago(threshold);
    sqlx::query_as!(
        Worker,
        r#"SELECT id AS "id!", started_at AS "started_at!: DateTime<Utc>",
                  last_heartbeat_at AS "last_heartbeat_at!: DateTime<Utc>",
                  current_task_id AS "current_task_id?"
           FROM workers WHERE last_heartbeat_at < ?1
           ORDER BY last_heartbeat_at, id LIMIT ?2"#,
        cutoff,
        limit.clamp(1, MAX_PAGE_ROWS),
    )
    .fetch_all(conn)
    .await
    .map_err(from_sqlx)
}
