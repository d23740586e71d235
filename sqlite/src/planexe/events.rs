//! `events` on SQLite: the event log, with [`shared_db::planexe::events::Event`] rows. Every list
//! is bounded (clamped to 1..=[`MAX_PAGE_ROWS`]) and ordered as on PostgreSQL.

use chrono::{DateTime, Utc};
use serde_json::Value;
use shared_db::planexe::events::{Event, run_context};
use shared_db::planexe::plans::Attempt;
use shared_db::planexe::{EventType, MAX_PAGE_ROWS, clean_text, json_text};
use shared_db::{Error, Result};
use sqlx::SqliteConnection;
use uuid::Uuid;

use super::{hex, json, time_text};
use crate::error::from_sqlx;

struct EventRow {
    id: i64,
    timestamp: DateTime<Utc>,
    event_type: String,
    message: String,
    context: Option<String>,
}

impl EventRow {
    fn into_event(self) -> Event {
        Event {
            id: i32::try_from(self.id).unwrap_or(i32::MAX),
            timestamp: self.timestamp,
            event_type: EventType::from_label(&self.event_type),
            message: self.message,
            context: json(self.context),
        }
    }
}

/// Append an event (message NUL-stripped; `context` JSON text, `None` = SQL NULL).
pub async fn append(
    conn: &mut SqliteConnection,
    event_type: EventType,
    message: &str,
    context: Option<&Value>,
) -> Result<Event> {
    let message = clean_text(message, usize::MAX);
    let label = event_type.as_str().to_owned();
    sqlx::query_as!(
        EventRow,
        r#"INSERT INTO events ("timestamp", event_type, message, context)
           VALUES (strftime('%Y-%m-%d %H:%M:%f000', 'now'), ?1, ?2, ?3)
           RETURNING id AS "id!: i64", "timestamp" AS "timestamp!: DateTime<Utc>",
                     event_type AS "event_type!", message AS "message!", context AS "context?""#,
        label,
        message,
        json_text(context),
    )
    .fetch_one(conn)
    .await
    .map_err(from_sqlx)
    .map(EventRow::into_event)
}

/// Events of one plan (`context.task_id`, served by `ix_events_task_id`), oldest first, at most
/// `limit` (clamped to 1..=[`MAX_PAGE_ROWS`]).
pub async fn list_by_plan(
    conn: &mut SqliteConnection,
    plan_id: Uuid,
    limit: i64,
) -> Result<Vec<Event>> {
    let rows = sqlx::query_as!(
        EventRow,
        r#"SELECT id AS "id!: i64", "timestamp" AS "timestamp!: DateTime<Utc>",
                  event_type AS "event_type!", message AS "message!", context AS "context?"
           FROM events WHERE json_extract(context, '$.task_id') = ?1
           ORDER BY id LIMIT ?2"#,
        plan_id.to_string(),
        limit.clamp(1, MAX_PAGE_ROWS),
    )
    .fetch_all(conn)
    .await
    .map_err(from_sqlx)?;
    Ok(rows.into_iter().map(EventRow::into_event).collect())
}

/// Append an event of a worker's run, as [`shared_db::planexe::events::append_for_run`]: written
/// only while `attempt` owns its plan, with `task_id` = the plan in its context
/// ([`run_context`]). A run that was taken (stop + retry, the reaper, a Python service's
/// re-queue) records nothing: [`Error::Superseded`]. One statement (`INSERT … SELECT … FROM
/// plans WHERE run_attempt = …`), so the ownership test and the write are one step under
/// SQLite's one writer.
pub async fn append_for_run(
    conn: &mut SqliteConnection,
    attempt: Attempt,
    event_type: EventType,
    message: &str,
    context: Option<&Value>,
) -> Result<Event> {
    let message = clean_text(message, usize::MAX);
    let label = event_type.as_str().to_owned();
    sqlx::query_as!(
        EventRow,
        r#"INSERT INTO events ("timestamp", event_type, message, context)
           SELECT strftime('%Y-%m-%d %H:%M:%f000', 'now'), ?1, ?2, ?3
           FROM plans WHERE id = ?4 AND run_attempt = ?5
           RETURNING id AS "id!: i64", "timestamp" AS "timestamp!: DateTime<Utc>",
                     event_type AS "event_type!", message AS "message!", context AS "context?""#,
        label,
        message,
        run_context(attempt, context),
        hex(attempt.plan_id),
        hex(attempt.token),
    )
    .fetch_optional(conn)
    .await
    .map_err(from_sqlx)?
    .map(EventRow::into_event)
    .ok_or(Error::Superseded {
        plan_id: attempt.plan_id,
    })
}

/// Latest events of one type, newest first (ties by id, newest first), at most `limit` (clamped
/// to 1..=[`MAX_PAGE_ROWS`]). Served by `ix_events_event_type`.
pub async fn list_by_type(
    conn: &mut SqliteConnection,
    event_type: EventType,
    limit: i64,
) -> Result<Vec<Event>> {
    let rows = sqlx::query_as!(
        EventRow,
        r#"SELECT id AS "id!: i64", "timestamp" AS "timestamp!: DateTime<Utc>",
                  event_type AS "event_type!", message AS "message!", context AS "context?"
           FROM events WHERE event_type = ?1
           ORDER BY "timestamp" DESC, id DESC LIMIT ?2"#,
        event_type.as_str(),
        limit.clamp(1, MAX_PAGE_ROWS),
    )
    .fetch_all(conn)
    .await
    .map_err(from_sqlx)?;
    Ok(rows.into_iter().map(EventRow::into_event).collect())
}

/// Events with `from <= timestamp < to`, oldest first (ties by id), at most `limit` (clamped to
/// 1..=[`MAX_PAGE_ROWS`]). Served by `ix_events_timestamp`.
pub async fn list_in_range(
    conn: &mut SqliteConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Event>> {
    let rows = sqlx::query_as!(
        EventRow,
        r#"SELECT id AS "id!: i64", "timestamp" AS "timestamp!: DateTime<Utc>",
                  event_type AS "event_type!", message AS "message!", context AS "context?"
           FROM events WHERE "timestamp" >= ?1 AND "timestamp" < ?2
           ORDER BY "timestamp", id LIMIT ?3"#,
        time_text(from),
        time_text(to),
        limit.clamp(1, MAX_PAGE_ROWS),
    )
    .fetch_all(conn)
    .await
    .map_err(from_sqlx)?;
    Ok(rows.into_iter().map(EventRow::into_event).collect())
}

/// Polling: events with `id > after_id`, in id order, at most `limit` (clamped to
/// 1..=[`MAX_PAGE_ROWS`]; the last id is the next `after_id`). On SQLite an id is assigned under
/// the write lock, so ids become visible in id order (the overlap PostgreSQL's pollers re-read
/// is harmless here); ids are `max(id) + 1`, so one may be reused only after the newest event
/// was deleted.
pub async fn list_since(
    conn: &mut SqliteConnection,
    after_id: i32,
    limit: i64,
) -> Result<Vec<Event>> {
    let rows = sqlx::query_as!(
        EventRow,
        r#"SELECT id AS "id!: i64", "timestamp" AS "timestamp!: DateTime<Utc>",
                  event_type AS "event_type!", message AS "message!", context AS "context?"
           FROM events WHERE id > ?1 ORDER BY id LIMIT ?2"#,
        after_id,
        limit.clamp(1, MAX_PAGE_ROWS),
    )
    .fetch_all(conn)
    .await
    .map_err(from_sqlx)?;
    Ok(rows.into_iter().map(EventRow::into_event).collect())
}
