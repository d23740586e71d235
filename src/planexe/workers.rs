//! `workers`: queue-worker heartbeats (`WorkerItem`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;
use uuid::Uuid;

use super::secs;
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
/// current plan (`None` = idle). One statement (`INSERT … ON CONFLICT DO UPDATE`), one round trip.
#[tracing::instrument(skip_all, fields(%worker_id))]
pub async fn heartbeat(
    ex: impl PgExecutor<'_>,
    worker_id: &str,
    current_plan: Option<Uuid>,
) -> Result<Worker> {
    if worker_id.is_empty() || worker_id.chars().count() > 255 {
        return Err(Error::invalid_input("worker id must be 1..=255 characters"));
    }
    let task = current_plan.map(|id| id.hyphenated().to_string());
    Ok(sqlx::query_as!(
        Worker,
        r#"INSERT INTO workers (id, started_at, last_heartbeat_at, current_task_id)
           VALUES ($1, now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc', $2)
           ON CONFLICT (id) DO UPDATE
              SET last_heartbeat_at = EXCLUDED.last_heartbeat_at,
                  current_task_id = EXCLUDED.current_task_id
           RETURNING id, started_at, last_heartbeat_at, current_task_id"#,
        worker_id,
        task,
    )
    .fetch_one(ex)
    .await?)
}

/// All workers, most recent heartbeat first. One round trip.
#[tracing::instrument(skip_all)]
pub async fn list(ex: impl PgExecutor<'_>) -> Result<Vec<Worker>> {
    Ok(sqlx::query_as!(
        Worker,
        r#"SELECT id, started_at, last_heartbeat_at, current_task_id
           FROM workers ORDER BY last_heartbeat_at DESC, id"#,
    )
    .fetch_all(ex)
    .await?)
}

/// Workers whose last heartbeat is older than `threshold`. One round trip.
#[tracing::instrument(skip_all)]
pub async fn list_stale(ex: impl PgExecutor<'_>, threshold: Duration) -> Result<Vec<Worker>> {
    Ok(sqlx::query_as!(
        Worker,
        r#"SELECT id, started_at, last_heartbeat_at, current_task_id
           FROM workers
           WHERE last_heartbeat_at < (now() AT TIME ZONE 'utc') - make_interval(secs => $1)
           ORDER BY last_heartbeat_at"#,
        secs(threshold),
    )
    .fetch_all(ex)
    .await?)
}
