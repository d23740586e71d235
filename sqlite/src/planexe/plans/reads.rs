//! Reads without side effects: [`get`], [`status`], [`list_by_user`], [`list_by_user_keyset`].
//! None of them selects the heavy artifact columns (see [`artifacts`](super::artifacts)).
//!
//! Lists are ordered as on PostgreSQL: newest first, plans without a creation time last, ties by
//! id descending (the hex ids sort as PostgreSQL sorts the uuids), and bounded by
//! [`shared_db::planexe::MAX_PAGE_ROWS`].

use chrono::{DateTime, Utc};
use shared_db::planexe::plans::{PROMPT_PREVIEW_CHARS, Plan, PlanListItem, PlanStatus};
use shared_db::planexe::{Keyset, PageRequest, PlanState, ident};
use shared_db::{Error, Result};
use sqlx::SqliteConnection;
use uuid::Uuid;

use super::{PlanRow, percentage};
use crate::error::from_sqlx;
use crate::planexe::{hex, time_text, uuid};

/// The plan, without its heavy columns. [`Error::NotFound`] if there is none.
pub async fn get(conn: &mut SqliteConnection, id: Uuid) -> Result<Plan> {
    let id = hex(id);
    sqlx::query_as!(
        PlanRow,
        r#"SELECT id AS "id!", timestamp_created AS "timestamp_created?: DateTime<Utc>",
                  state AS "state?", prompt AS "prompt?",
                  CAST(progress_percentage AS TEXT) AS "progress_percentage?: String",
                  progress_message AS "progress_message?",
                  steps_completed AS "steps_completed?: i32",
                  steps_total AS "steps_total?: i32", current_step AS "current_step?",
                  last_seen_timestamp AS "last_seen_timestamp?: DateTime<Utc>",
                  coalesce(stop_requested, 0) AS "stop_requested!: bool",
                  stop_requested_timestamp AS "stop_requested_timestamp?: DateTime<Utc>",
                  user_id AS "user_id?", api_key_id AS "api_key_id?",
                  parameters AS "parameters?",
                  run_track_activity_bytes AS "run_track_activity_bytes?: i32",
                  run_activity_overview_json AS "run_activity_overview_json?",
                  run_artifact_layout_version AS "run_artifact_layout_version?: i32",
                  failure_reason AS "failure_reason?", failed_step AS "failed_step?",
                  error_message AS "error_message?", recoverable AS "recoverable?: bool",
                  last_progress_at AS "last_progress_at?: DateTime<Utc>",
                  generated_report_html IS NOT NULL AS "has_generated_report_html!: bool",
                  run_zip_snapshot IS NOT NULL AS "has_run_zip_snapshot!: bool",
                  run_track_activity_jsonl IS NOT NULL AS "has_run_track_activity_jsonl!: bool"
           FROM plans WHERE id = ?1"#,
        id,
    )
    .fetch_optional(conn)
    .await
    .map_err(from_sqlx)?
    .ok_or(Error::NotFound)?
    .into_plan()
}

/// Status by id, as [`shared_db::planexe::plans::status`]: the light columns only.
/// [`Error::NotFound`] if there is no such plan.
#[tracing::instrument(target = "shared_db_sqlite::planexe::plans", skip_all)]
pub async fn status(conn: &mut SqliteConnection, id: Uuid) -> Result<PlanStatus> {
    let r = sqlx::query!(
        r#"SELECT id AS "id!", state AS "state?",
                  CAST(progress_percentage AS TEXT) AS "progress_percentage?: String",
                  progress_message AS "progress_message?",
                  steps_completed AS "steps_completed?: i32",
                  steps_total AS "steps_total?: i32", current_step AS "current_step?",
                  coalesce(stop_requested, 0) AS "stop_requested!: bool",
                  timestamp_created AS "timestamp_created?: DateTime<Utc>",
                  last_progress_at AS "last_progress_at?: DateTime<Utc>",
                  failure_reason AS "failure_reason?", error_message AS "error_message?",
                  recoverable AS "recoverable?: bool",
                  generated_report_html IS NOT NULL AS "has_generated_report_html!: bool",
                  run_zip_snapshot IS NOT NULL AS "has_run_zip_snapshot!: bool"
           FROM plans WHERE id = ?1"#,
        hex(id),
    )
    .fetch_optional(conn)
    .await
    .map_err(from_sqlx)?
    .ok_or(Error::NotFound)?;
    Ok(PlanStatus {
        id: uuid(&r.id)?,
        state: r.state.as_deref().map(PlanState::from_label),
        progress_percentage: percentage(r.progress_percentage)?,
        progress_message: r.progress_message,
        steps_completed: r.steps_completed,
        steps_total: r.steps_total,
        current_step: r.current_step,
        stop_requested: r.stop_requested,
        timestamp_created: r.timestamp_created,
        last_progress_at: r.last_progress_at,
        failure_reason: r.failure_reason,
        error_message: r.error_message,
        recoverable: r.recoverable,
        has_generated_report_html: r.has_generated_report_html,
        has_run_zip_snapshot: r.has_run_zip_snapshot,
    })
}

/// One line of a plan list as SQLite returns it.
struct ListRow {
    id: String,
    state: Option<String>,
    progress_percentage: Option<String>,
    timestamp_created: Option<DateTime<Utc>>,
    prompt_preview: Option<String>,
}

impl ListRow {
    fn into_item(self) -> Result<PlanListItem> {
        Ok(PlanListItem {
            id: uuid(&self.id)?,
            state: self.state.as_deref().map(PlanState::from_label),
            progress_percentage: percentage(self.progress_percentage)?,
            timestamp_created: self.timestamp_created,
            prompt_preview: self.prompt_preview,
        })
    }
}

/// A user's plans, newest first (plans without a creation time last, ties by id descending), with
/// the first [`PROMPT_PREVIEW_CHARS`] characters of the prompt, as
/// [`shared_db::planexe::plans::list_by_user`]: `page.limit` (clamped to 1..=200) plans after
/// skipping `page.offset`. Served in this order by `idx_plans_user_id_timestamp_created`.
#[tracing::instrument(target = "shared_db_sqlite::planexe::plans", skip_all)]
pub async fn list_by_user(
    conn: &mut SqliteConnection,
    user_id: &str,
    page: PageRequest,
) -> Result<Vec<PlanListItem>> {
    let user_id = ident("plan user id", user_id, 256)?;
    let (limit, offset) = (page.limit(), page.offset());
    sqlx::query_as!(
        ListRow,
        r#"SELECT id AS "id!", state AS "state?",
                  CAST(progress_percentage AS TEXT) AS "progress_percentage?: String",
                  timestamp_created AS "timestamp_created?: DateTime<Utc>",
                  substr(prompt, 1, ?2) AS "prompt_preview?: String"
           FROM plans WHERE user_id = ?1
           ORDER BY timestamp_created DESC NULLS LAST, id DESC
           LIMIT ?3 OFFSET ?4"#,
        user_id,
        PROMPT_PREVIEW_CHARS,
        limit,
        offset,
    )
    .fetch_all(conn)
    .await
    .map_err(from_sqlx)?
    .into_iter()
    .map(ListRow::into_item)
    .collect()
}

/// A user's plans by keyset, in [`list_by_user`]'s order, as
/// [`shared_db::planexe::plans::list_by_user_keyset`]: at most `page.limit` (clamped to 1..=200)
/// plans that sort after `page.after` (the [`PlanListItem::cursor`] of the previous page's last
/// line). Each part of the page (the dated plans from the cursor on, then the undated ones) is a
/// range of `idx_plans_user_id_timestamp_created` read from the cursor, so a deep page costs
/// what the first one costs, and plans queued while a client pages sort before its cursor: no
/// page shifts, no plan is listed twice.
#[tracing::instrument(target = "shared_db_sqlite::planexe::plans", skip_all)]
pub async fn list_by_user_keyset(
    conn: &mut SqliteConnection,
    user_id: &str,
    page: Keyset<Uuid>,
) -> Result<Vec<PlanListItem>> {
    let user_id = ident("plan user id", user_id, 256)?;
    let limit = page.limit();
    let at = page.after.as_ref().and_then(|c| c.at).map(time_text);
    let after_id = page.id().copied().map(hex);
    let past_dated = page.past_dated();
    sqlx::query_as!(
        ListRow,
        r#"SELECT id AS "id!", state AS "state?",
                  progress_percentage AS "progress_percentage?: String",
                  timestamp_created AS "timestamp_created?: DateTime<Utc>",
                  prompt_preview AS "prompt_preview?: String"
           FROM (
               -- the dated plans, from the cursor on (none once past them)
               SELECT id, state, progress_percentage, timestamp_created, prompt_preview FROM (
                   SELECT id, state, CAST(progress_percentage AS TEXT) AS progress_percentage,
                          timestamp_created, substr(prompt, 1, ?2) AS prompt_preview
                   FROM plans
                   WHERE user_id = ?1 AND NOT ?6 AND timestamp_created IS NOT NULL
                     AND (?3 IS NULL OR timestamp_created < ?3
                          OR (timestamp_created = ?3 AND id < ?4))
                   ORDER BY timestamp_created DESC, id DESC
                   LIMIT ?5)
               UNION ALL
               -- then the undated ones, by id
               SELECT id, state, progress_percentage, timestamp_created, prompt_preview FROM (
                   SELECT id, state, CAST(progress_percentage AS TEXT) AS progress_percentage,
                          timestamp_created, substr(prompt, 1, ?2) AS prompt_preview
                   FROM plans
                   WHERE user_id = ?1 AND timestamp_created IS NULL AND (NOT ?6 OR id < ?4)
                   ORDER BY id DESC
                   LIMIT ?5))
           ORDER BY timestamp_created DESC NULLS LAST, id DESC
           LIMIT ?5"#,
        user_id,
        PROMPT_PREVIEW_CHARS,
        at,
        after_id,
        limit,
        past_dated,
    )
    .fetch_all(conn)
    .await
    .map_err(from_sqlx)?
    .into_iter()
    .map(ListRow::into_item)
    .collect()
}
