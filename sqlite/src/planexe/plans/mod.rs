//! `plans` on SQLite: the operations of [`shared_db::planexe::plans`] on one file, with its row
//! types, input rules, errors and state machine (the table of transitions there holds here too).
//! One module per concern, all re-exported here (`shared_db_sqlite::planexe::plans::claim_next`),
//! as on PostgreSQL:
//!
//! * [`queue`]: enqueue, the claim, queue depth, the reaper;
//! * [`lifecycle`]: progress and the state transitions after the claim;
//! * [`artifacts`]: the heavy columns (report, zip snapshot, activity log);
//! * [`reads`]: a plan, its status, a user's list.
//!
//! **Run ownership.** Every worker write names its [`Attempt`] (`plans.run_attempt`, hex like the
//! ids) and is refused with [`Error::Superseded`], writing nothing, once the attempt no longer
//! owns the run: the write is one `UPDATE … WHERE run_attempt = ?`, and only when it changed
//! nothing does a second read (in the same transaction) say why.
//!
//! **The claim without `SKIP LOCKED`.** SQLite has one writer at a time. [`claim_next`] runs in a
//! `BEGIN IMMEDIATE` transaction, so it holds the write lock from its first statement: the
//! `UPDATE … WHERE rowid = (oldest pending) … RETURNING` it runs sees every claim committed
//! before it, and no other claim runs until it commits. Two workers, in one process or in many
//! on the same file, therefore never get the same plan; a worker that finds the lock taken waits
//! under `busy_timeout` (the claim is short), and the contention shows up as latency, never as a
//! double claim or an error (see `sqlite/tests/processes.rs`, several OS processes on one file).
//!
//! The heavy columns (`generated_report_html`, `run_zip_snapshot`, `run_track_activity_jsonl`)
//! are never part of [`Plan`]: rows select `<column> IS NOT NULL` flags, and only the functions
//! of [`artifacts`] move the columns themselves (SQLAlchemy's `deferred()`).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use shared_db::planexe::PlanState;
use shared_db::planexe::plans::{Attempt, Plan};
use shared_db::{Error, Result};
use sqlx::SqliteConnection;

use super::{hex, json, uuid};
use crate::error::from_sqlx;

pub mod artifacts;
pub mod lifecycle;
pub mod queue;
pub mod reads;

pub use artifacts::*;
pub use lifecycle::*;
pub use queue::*;
pub use reads::*;

/// A `plans` row as SQLite returns it (text ids, text numbers and JSON); [`PlanRow::into_plan`]
/// makes it the library's [`Plan`].
pub(crate) struct PlanRow {
    pub(crate) id: String,
    pub(crate) timestamp_created: Option<DateTime<Utc>>,
    pub(crate) state: Option<String>,
    pub(crate) prompt: Option<String>,
    pub(crate) progress_percentage: Option<String>,
    pub(crate) progress_message: Option<String>,
    pub(crate) steps_completed: Option<i32>,
    pub(crate) steps_total: Option<i32>,
    pub(crate) current_step: Option<String>,
    pub(crate) last_seen_timestamp: Option<DateTime<Utc>>,
    pub(crate) stop_requested: bool,
    pub(crate) stop_requested_timestamp: Option<DateTime<Utc>>,
    pub(crate) user_id: Option<String>,
    pub(crate) api_key_id: Option<String>,
    pub(crate) parameters: Option<String>,
    pub(crate) run_track_activity_bytes: Option<i32>,
    pub(crate) run_activity_overview_json: Option<String>,
    pub(crate) run_artifact_layout_version: Option<i32>,
    pub(crate) failure_reason: Option<String>,
    pub(crate) failed_step: Option<String>,
    pub(crate) error_message: Option<String>,
    pub(crate) recoverable: Option<bool>,
    pub(crate) last_progress_at: Option<DateTime<Utc>>,
    pub(crate) has_generated_report_html: bool,
    pub(crate) has_run_zip_snapshot: bool,
    pub(crate) has_run_track_activity_jsonl: bool,
}

impl PlanRow {
    pub(crate) fn into_plan(self) -> Result<Plan> {
        let pct = percentage(self.progress_percentage)?;
        Ok(Plan {
            id: uuid(&self.id)?,
            timestamp_created: self.timestamp_created,
            state: self.state.as_deref().map(PlanState::from_label),
            prompt: self.prompt,
            progress_percentage: pct,
            progress_message: self.progress_message,
            steps_completed: self.steps_completed,
            steps_total: self.steps_total,
            current_step: self.current_step,
            last_seen_timestamp: self.last_seen_timestamp,
            stop_requested: self.stop_requested,
            stop_requested_timestamp: self.stop_requested_timestamp,
            user_id: self.user_id,
            api_key_id: self.api_key_id,
            parameters: json(self.parameters),
            run_track_activity_bytes: self.run_track_activity_bytes,
            run_activity_overview_json: json(self.run_activity_overview_json),
            run_artifact_layout_version: self.run_artifact_layout_version,
            failure_reason: self.failure_reason,
            failed_step: self.failed_step,
            error_message: self.error_message,
            recoverable: self.recoverable,
            last_progress_at: self.last_progress_at,
            has_generated_report_html: self.has_generated_report_html,
            has_run_zip_snapshot: self.has_run_zip_snapshot,
            has_run_track_activity_jsonl: self.has_run_track_activity_jsonl,
        })
    }
}

/// Where a worker write of `attempt` stands when it changed nothing: [`Error::NotFound`] without
/// the plan, [`Error::Superseded`] when another attempt (or none) owns it, else `Ok(state)`.
pub(crate) async fn ownership(
    conn: &mut SqliteConnection,
    attempt: Attempt,
) -> Result<(Option<String>, bool)> {
    let row = sqlx::query!(
        r#"SELECT state AS "state?", coalesce(stop_requested, 0) AS "stop_requested!: bool",
                  run_attempt IS ?2 AS "owned!: bool"
           FROM plans WHERE id = ?1"#,
        hex(attempt.plan_id),
        Some(hex(attempt.token)),
    )
    .fetch_optional(conn)
    .await
    .map_err(from_sqlx)?
    .ok_or(Error::NotFound)?;
    if !row.owned {
        return Err(Error::Superseded {
            plan_id: attempt.plan_id,
        });
    }
    Ok((row.state, row.stop_requested))
}

/// A stored progress percentage, read as `CAST(progress_percentage AS TEXT)`, with two places.
pub(crate) fn percentage(text: Option<String>) -> Result<Option<Decimal>> {
    text.map(|p| {
        p.parse::<Decimal>()
            .or_else(|_| Decimal::from_scientific(&p))
            .map(|d| d.round_dp(2))
            .map_err(|e| Error::internal(format!("stored progress {p:?}: {e}")))
    })
    .transpose()
}

/// The refused transition, as on PostgreSQL: `from` is the stored label (`NULL` if the column is
/// NULL), `to` the target of the refused action.
pub(crate) fn transition(from: Option<String>, to: &str) -> Error {
    Error::InvalidTransition {
        from: from.unwrap_or_else(|| "NULL".to_owned()),
        to: to.to_owned(),
    }
}
