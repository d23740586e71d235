//! `workers` on SQLite: heartbeats, with [`shared_db::planexe::workers::Worker`] rows.

use chrono::{DateTime, Utc};
use shared_db::planexe::ident;
use shared_db::planexe::plans::Attempt;
use shared_db::planexe::workers::Worker;
use shared_db::{Error, Result};
use sqlx::SqliteConnection;

use super::hex;
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
