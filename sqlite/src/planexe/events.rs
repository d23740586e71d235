//! `events` on SQLite: the event log, with [`shared_db::planexe::events::Event`] rows.

use chrono::{DateTime, Utc};
use serde_json::Value;
use shared_db::Result;
use shared_db::planexe::events::Event;
use shared_db::planexe::{EventType, MAX_PAGE_ROWS, clean_text, json_text};
use sqlx::SqliteConnection;
use uuid::Uuid;

use super::json;
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
