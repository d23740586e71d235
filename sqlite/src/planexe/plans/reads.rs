//! Reads without side effects: [`get`]. None of them selects the heavy artifact columns (see
//! [`artifacts`](super::artifacts)).

use chrono::{DateTime, Utc};
use shared_db::planexe::plans::Plan;
use shared_db::{Error, Result};
use sqlx::SqliteConnection;
use uuid::Uuid;

use super::PlanRow;
use crate::error::from_sqlx;
use crate::planexe::hex;

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
