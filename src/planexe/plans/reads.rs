//! Reads without side effects: [`get`], [`status`], [`list_by_user`]. None of them selects the
//! three heavy artifact columns (see [`artifacts`](super::artifacts)).

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use super::{PROMPT_PREVIEW_CHARS, Plan, PlanListItem, PlanStatus};
use crate::error::{Error, Result};
use crate::planexe::{Cursor, Keyset, PlanState};
use crate::planexe::{PageRequest, ident};

/// A plan by id, without the heavy columns. [`Error::NotFound`] if absent. One round trip.
#[tracing::instrument(target = "shared_db::planexe::plans", skip_all, fields(%id))]
pub async fn get(ex: impl PgExecutor<'_>, id: Uuid) -> Result<Plan> {
    let plan = sqlx::query_as!(
        Plan,
        r#"SELECT id, timestamp_created, state, prompt, progress_percentage, progress_message,
                  steps_completed, steps_total, current_step, last_seen_timestamp,
                  coalesce(stop_requested, false) AS "stop_requested!", stop_requested_timestamp,
                  user_id, api_key_id, parameters, run_track_activity_bytes,
                  run_activity_overview_json, run_artifact_layout_version, failure_reason,
                  failed_step, error_message, recoverable, last_progress_at,
                  generated_report_html IS NOT NULL AS "has_generated_report_html!",
                  run_zip_snapshot IS NOT NULL AS "has_run_zip_snapshot!",
                  run_track_activity_jsonl IS NOT NULL AS "has_run_track_activity_jsonl!"
           FROM plans WHERE id = $1"#,
        id,
    )
    .fetch_optional(ex)
    .await?;
    plan.map(Plan::normalized).ok_or(Error::NotFound)
}

/// Status by id: light columns only. [`Error::NotFound`] if absent. One round trip.
#[tracing::instrument(target = "shared_db::planexe::plans", skip_all, fields(%id))]
pub async fn status(ex: impl PgExecutor<'_>, id: Uuid) -> Result<PlanStatus> {
    sqlx::query_as!(
        PlanStatus,
        r#"SELECT id, state, progress_percentage, progress_message, steps_completed, steps_total,
                  current_step, coalesce(stop_requested, false) AS "stop_requested!",
                  timestamp_created, last_progress_at, failure_reason, error_message, recoverable,
                  generated_report_html IS NOT NULL AS "has_generated_report_html!",
                  run_zip_snapshot IS NOT NULL AS "has_run_zip_snapshot!"
           FROM plans WHERE id = $1"#,
        id,
    )
    .fetch_optional(ex)
    .await?
    .ok_or(Error::NotFound)
}

/// A user's plans, newest first (plans without a creation time last, ties by id), with a short
/// prompt preview. Served in this order by `ix_plans_user_id_timestamp_created_desc` (migration
/// 0017): a page reads its offset and its rows, not the user's whole history. One round trip.
#[tracing::instrument(target = "shared_db::planexe::plans", skip_all, fields(%user_id))]
pub async fn list_by_user(
    ex: impl PgExecutor<'_>,
    user_id: &str,
    page: PageRequest,
) -> Result<Vec<PlanListItem>> {
    let user_id = ident("plan user id", user_id, 256)?;
    Ok(sqlx::query_as!(
        PlanListItem,
        r#"SELECT id, state, progress_percentage, timestamp_created,
                  substr(prompt, 1, $2) AS prompt_preview
           FROM plans WHERE user_id = $1
           ORDER BY timestamp_created DESC NULLS LAST, id DESC
           LIMIT $3 OFFSET $4"#,
        user_id,
        PROMPT_PREVIEW_CHARS,
        page.limit(),
        page.offset(),
    )
    .fetch_all(ex)
    .await?)
}

impl PlanListItem {
    /// This row's place in the list, for the next [`list_by_user_keyset`] page.
    pub fn cursor(&self) -> Cursor<Uuid> {
        Cursor {
            at: self.timestamp_created,
            id: self.id,
        }
    }
}

/// A user's plans by keyset, in [`list_by_user`]'s order (newest first, plans without a creation
/// time last, ties by id descending): at most `page.limit` plans after `page.after`. Each part of
/// the page is a range of `ix_plans_user_id_timestamp_created_desc` starting at the cursor, so
/// page 1 000 costs what page 1 costs (an offset reads every row it skips). One round trip.
#[tracing::instrument(target = "shared_db::planexe::plans", skip_all, fields(%user_id))]
pub async fn list_by_user_keyset(
    ex: impl PgExecutor<'_>,
    user_id: &str,
    page: Keyset<Uuid>,
) -> Result<Vec<PlanListItem>> {
    let user_id = ident("plan user id", user_id, 256)?;
    Ok(sqlx::query_as!(
        PlanListItem,
        r#"SELECT id AS "id!", state AS "state: PlanState", progress_percentage,
                  timestamp_created AS "timestamp_created: DateTime<Utc>", prompt_preview
           FROM (
               -- plans with a creation time, from the cursor on (none once past them)
               (SELECT id, state, progress_percentage, timestamp_created,
                       substr(prompt, 1, $2) AS prompt_preview
                FROM plans
                WHERE user_id = $1 AND NOT $6
                  AND timestamp_created <= coalesce($3, 'infinity'::timestamp)
                  AND (timestamp_created < coalesce($3, 'infinity'::timestamp)
                       OR id < $4)
                ORDER BY timestamp_created DESC NULLS LAST, id DESC
                LIMIT $5)
               UNION ALL
               -- then the plans without one (by id, in the index's order)
               (SELECT id, state, progress_percentage, timestamp_created,
                       substr(prompt, 1, $2) AS prompt_preview
                FROM plans
                WHERE user_id = $1 AND timestamp_created IS NULL
                  AND (NOT $6 OR id < $4)
                ORDER BY timestamp_created DESC NULLS LAST, id DESC
                LIMIT $5)) page
           ORDER BY timestamp_created DESC NULLS LAST, id DESC
           LIMIT $5"#,
        user_id,
        PROMPT_PREVIEW_CHARS,
        page.at(),
        page.id(),
        page.limit(),
        page.past_dated(),
    )
    .fetch_all(ex)
    .await?)
}
