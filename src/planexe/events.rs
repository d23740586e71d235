//! `events`: the event log (`EventItem`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::json::LossyJson;
use super::plans::Attempt;
use super::{EventType, MAX_PAGE_ROWS, json_absent, json_text};
use crate::error::{Error, Result};

/// One row of `events`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Serial id; increases with insertion order (polling key for [`list_since`]).
    pub id: i32,
    /// When it happened (UTC).
    pub timestamp: DateTime<Utc>,
    /// Kind.
    pub event_type: EventType,
    /// Human-readable message, e.g. `Pending -> Processing`.
    pub message: String,
    /// Free-form context (`task_id`, `user_id`, `billing_*`, ...); JSON `null` reads as `None`.
    pub context: Option<LossyJson>,
}

impl Event {
    fn normalized(mut self) -> Self {
        self.context = json_absent(self.context);
        self
    }
}

/// Append an event. One round trip.
#[tracing::instrument(skip_all, fields(%event_type))]
pub async fn append(
    ex: impl PgExecutor<'_>,
    event_type: EventType,
    message: &str,
    context: Option<&Value>,
) -> Result<Event> {
    let message = super::clean_text(message, usize::MAX);
    Ok(sqlx::query_as!(
        Event,
        r#"INSERT INTO events ("timestamp", event_type, message, context)
           VALUES (now() AT TIME ZONE 'utc', $1, $2, $3::text::json)
           RETURNING id, "timestamp", event_type, message, context"#,
        event_type as EventType,
        message,
        json_text(context),
    )
    .fetch_one(ex)
    .await?
    .normalized())
}

/// The context stored with an event of `attempt`'s run (JSON text, NULs stripped): the caller's
/// object (anything else is dropped) with `task_id` set to the run's plan, hyphenated, so the
/// event is listed with its plan. One rule for both backends.
pub fn run_context(attempt: Attempt, context: Option<&Value>) -> String {
    let mut ctx = match context {
        Some(Value::Object(map)) => map.clone(),
        _ => serde_json::Map::new(),
    };
    ctx.insert("task_id".into(), Value::String(attempt.plan_id.to_string()));
    super::json_string(&Value::Object(ctx))
}

/// Append an event of a worker's run: written only while `attempt` owns its plan, with
/// `task_id` = the plan in its context. A run that was taken (stop + retry, resume, the reaper, a
/// Python service's re-queue) records nothing: [`Error::Superseded`]. The plan row is held
/// `FOR SHARE` while the event is written, so no re-queue slips in between. One round trip.
#[tracing::instrument(skip_all, fields(%event_type, plan_id = %attempt.plan_id))]
pub async fn append_for_run(
    ex: impl PgExecutor<'_>,
    attempt: Attempt,
    event_type: EventType,
    message: &str,
    context: Option<&Value>,
) -> Result<Event> {
    let message = super::clean_text(message, usize::MAX);
    sqlx::query_as!(
        Event,
        r#"WITH run AS (
               -- the run still owns its plan (held against a re-queue while we write)
               SELECT id FROM plans WHERE id = $4 AND run_attempt = $5 FOR SHARE)
           INSERT INTO events ("timestamp", event_type, message, context)
           SELECT now() AT TIME ZONE 'utc', $1, $2, $3::text::json FROM run
           RETURNING id, "timestamp", event_type, message, context"#,
        event_type as EventType,
        message,
        run_context(attempt, context),
        attempt.plan_id,
        attempt.token,
    )
    .fetch_optional(ex)
    .await?
    .map(Event::normalized)
    .ok_or(Error::Superseded {
        plan_id: attempt.plan_id,
    })
}

/// Events of one plan (`context.task_id`, served by `ix_events_task_id`), oldest first, at most
/// `limit` (clamped to 1..=[`MAX_PAGE_ROWS`], as in every list here). Events whose context holds
/// a lone surrogate (written by Python) are found too.
/// One round trip.
#[tracing::instrument(skip_all, fields(%plan_id))]
pub async fn list_by_plan(
    ex: impl PgExecutor<'_>,
    plan_id: Uuid,
    limit: i64,
) -> Result<Vec<Event>> {
    let rows = sqlx::query_as!(
        Event,
        r#"SELECT id, "timestamp", event_type, message, context
           FROM events WHERE planexe_event_task_id(context) = $1::uuid::text
           ORDER BY id LIMIT $2"#,
        plan_id,
        limit.clamp(1, MAX_PAGE_ROWS),
    )
    .fetch_all(ex)
    .await?;
    Ok(rows.into_iter().map(Event::normalized).collect())
}

/// Latest events of one type, newest first, at most `limit` (clamped to 1..=[`MAX_PAGE_ROWS`]).
/// One round trip.
#[tracing::instrument(skip_all, fields(%event_type))]
pub async fn list_by_type(
    ex: impl PgExecutor<'_>,
    event_type: EventType,
    limit: i64,
) -> Result<Vec<Event>> {
    let rows = sqlx::query_as!(
        Event,
        r#"SELECT id, "timestamp", event_type, message, context
           FROM events WHERE event_type = $1
           ORDER BY "timestamp" DESC, id DESC LIMIT $2"#,
        event_type as EventType,
        limit.clamp(1, MAX_PAGE_ROWS),
    )
    .fetch_all(ex)
    .await?;
    Ok(rows.into_iter().map(Event::normalized).collect())
}

/// Events with `from <= timestamp < to`, oldest first, at most `limit` (clamped to
/// 1..=[`MAX_PAGE_ROWS`]). One round trip.
#[tracing::instrument(skip_all)]
pub async fn list_in_range(
    ex: impl PgExecutor<'_>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Event>> {
    let rows = sqlx::query_as!(
        Event,
        r#"SELECT id, "timestamp", event_type, message, context
           FROM events WHERE "timestamp" >= $1 AND "timestamp" < $2
           ORDER BY "timestamp", id LIMIT $3"#,
        from.naive_utc(),
        to.naive_utc(),
        limit.clamp(1, MAX_PAGE_ROWS),
    )
    .fetch_all(ex)
    .await?;
    Ok(rows.into_iter().map(Event::normalized).collect())
}

/// Polling: events with `id > after_id`, in id order, at most `limit` (clamped to
/// 1..=[`MAX_PAGE_ROWS`]; the last id is the next `after_id`, a keyset). One round trip.
///
/// Serial ids are assigned at insert, not at commit: a poller that must never miss an event should
/// re-read a short overlap (e.g. the last few seconds) and de-duplicate by id.
#[tracing::instrument(skip_all)]
pub async fn list_since(ex: impl PgExecutor<'_>, after_id: i32, limit: i64) -> Result<Vec<Event>> {
    let rows = sqlx::query_as!(
        Event,
        r#"SELECT id, "timestamp", event_type, message, context
           FROM events WHERE id > $1 ORDER BY id LIMIT $2"#,
        after_id,
        limit.clamp(1, MAX_PAGE_ROWS),
    )
    .fetch_all(ex)
    .await?;
    Ok(rows.into_iter().map(Event::normalized).collect())
}

/// Runs in the migration loop just before `migration` is applied.
///
/// Before planexe's 0003 (recognised by version and the index it creates, so other migrators are
/// left alone) it creates an empty placeholder under 0003's index name, so 0003
/// (`CREATE INDEX IF NOT EXISTS ix_events_context_task_id ON events ((context ->> 'task_id'))`)
/// does nothing: that expression raises on a context holding a lone surrogate, so building it fails
/// on a database where Python already wrote such an event, and while it exists Python inserts of
/// such events fail. 0003 cannot be edited (its checksum is recorded on live databases); 0011 builds
/// the index that replaces it and 0012 drops the placeholder, so a database migrated from scratch and
/// one that ran the old 0003 end with the same schema. Built `CONCURRENTLY` (the `events` table of an
/// adopted Python database is live); the partial predicate `WHERE false` keeps it empty.
pub(crate) async fn before_migration(
    conn: &mut PgConnection,
    migration: &sqlx::migrate::Migration,
    watch: &crate::schema::Watch,
) -> Result<()> {
    if migration.version == 3 && migration.sql.as_str().contains("ix_events_context_task_id") {
        // A concurrent build like any other: it waits for older transactions unbounded (and
        // says whom it waits for), instead of timing out under the migration's lock bound.
        let waiting = watch.begin(conn, "0003 placeholder index").await?;
        let built = sqlx::query!(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_events_context_task_id ON events (id) WHERE false"
        )
        .execute(&mut *conn)
        .await;
        watch.end(conn, waiting).await?;
        built?;
    }
    Ok(())
}
