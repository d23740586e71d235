//! `workers`: queue-worker heartbeats (Python model `WorkerItem`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;

use super::plans::Attempt;
use super::{MAX_PAGE_ROWS, ident, secs};
use crate::error::{Error, Result};

/// One row of `workers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Worker {
    /// Worker id (`PLANEXE_WORKER_ID` or `<region>_<replica>`).
    pub id: String,
    /// UTC time of the first heartbeat.
    pub started_at: DateTime<Utc>,
    /// UTC time of the latest heartbeat; the reaper's liveness clock.
    pub last_heartbeat_at: DateTime<Utc>,
    /// Plan being processed (hyphenated UUID string), `None` when idle.
    pub current_task_id: Option<String>,
}

/// Record a heartbeat: insert the worker on first sight, else move `last_heartbeat_at` and set the
/// current plan (`None` = idle). A worker naming its current run asserts that it still owns it:
/// when `current` is no longer the plan's attempt (stop + retry, the reaper), nothing is written
/// and the answer is [`Error::Superseded`], so a lost run cannot hide from the reaper behind a
/// live worker. One statement (`INSERT … ON CONFLICT DO UPDATE`), one round trip.
#[tracing::instrument(skip_all, fields(%worker_id))]
pub async fn heartbeat(
    ex: impl PgExecutor<'_>,
    worker_id: &str,
    current: Option<Attempt>,
) -> Result<Worker> {
    let worker_id = ident("worker id", worker_id, 255)?;
    if worker_id.is_empty() {
        return Err(Error::invalid_input("worker id must not be empty"));
    }
    let row = sqlx::query!(
        r#"WITH owned AS (
               SELECT $2::uuid IS NULL
                      OR EXISTS (SELECT 1 FROM plans WHERE id = $2 AND run_attempt = $3) AS ok),
           beat AS (
               INSERT INTO workers (id, started_at, last_heartbeat_at, current_task_id)
               SELECT $1, now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc', $2::uuid::text
               FROM owned WHERE owned.ok
               ON CONFLICT (id) DO UPDATE
                  SET last_heartbeat_at = EXCLUDED.last_heartbeat_at,
                      current_task_id = EXCLUDED.current_task_id
               RETURNING id, started_at, last_heartbeat_at, current_task_id)
           SELECT owned.ok AS "owned!", beat.id AS "id?",
                  beat.started_at AS "started_at?: DateTime<Utc>",
                  beat.last_heartbeat_at AS "last_heartbeat_at?: DateTime<Utc>",
                  beat.current_task_id
           FROM owned LEFT JOIN beat ON true"#,
        worker_id,
        current.map(|a| a.plan_id),
        current.map(|a| a.token),
    )
    .fetch_one(ex)
    .await?;
    match (row.owned, row.id, row.started_at, row.last_heartbeat_at) {
        (true, Some(id), Some(started_at), Some(last_heartbeat_at)) => Ok(Worker {
            id,
            started_at,
            last_heartbeat_at,
            current_task_id: row.current_task_id,
        }),
        (false, ..) => Err(Error::Superseded {
            plan_id: current.map(|a| a.plan_id).unwrap_or_default(),
        }),
        _ => Err(Error::NotFound),
    }
}

/// Workers, most recent heartbeat first: at most `limit` (clamped to 1..=[`MAX_PAGE_ROWS`]).
/// Served by `ix_workers_last_heartbeat_at` (read backwards). Heartbeats move the order on every
/// beat, so this list has no cursor: it answers "who is alive", and the
/// [`list_stale`] view answers "who is not". One round trip.
#[tracing::instrument(skip_all)]
pub async fn list(ex: impl PgExecutor<'_>, limit: i64) -> Result<Vec<Worker>> {
    Ok(sqlx::query_as!(
        Worker,
        r#"SELECT id, started_at, last_heartbeat_at, current_task_id
           FROM workers ORDER BY last_heartbeat_at DESC, id LIMIT $1"#,
        limit.clamp(1, MAX_PAGE_ROWS),
    )
    .fetch_all(ex)
    .await?)
}

/// Workers whose last heartbeat is older than `threshold`, longest silent first: at most `limit`
/// (clamped to 1..=[`MAX_PAGE_ROWS`]). Served by `ix_workers_last_heartbeat_at`. One round trip.
#[tracing::instrument(skip_all)]
pub async fn list_stale(
    ex: impl PgExecutor<'_>,
    threshold: Duration,
    limit: i64,
) -> Result<Vec<Worker>> {
    Ok(sqlx::query_as!(
        Worker,
        r#"SELECT id, started_at, last_heartbeat_at, current_task_id
           FROM workers
           WHERE last_heartbeat_at < (now() AT TIME ZONE 'utc') - make_interval(secs => $1)
           ORDER BY last_heartbeat_at, id LIMIT $2"#,
        secs(threshold),
        limit.clamp(1, MAX_PAGE_ROWS),
    )
    .fetch_all(ex)
    .await?)
}
