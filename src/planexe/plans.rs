//! `plans`: the plan queue and its artifacts (`PlanItem`; the table was `task_item` until 2026-04).
//!
//! The three heavy columns (`generated_report_html`, `run_zip_snapshot` up to ~40 MB,
//! `run_track_activity_jsonl`) are never part of [`Plan`]; like SQLAlchemy `deferred()` columns they
//! are read and written only by the `*_artifact*`/`fetch_*` functions. Lists and status reads select
//! `<column> IS NOT NULL` flags instead.
//!
//! State transitions (all refused with [`Error::InvalidTransition`] from any other state):
//!
//! | action | from | to |
//! | --- | --- | --- |
//! | [`claim_next`] | pending (no stop request) | processing |
//! | [`finish_completed`] | processing | completed |
//! | [`finish_failed`] | processing; stopped | failed, or stopped when a stop was requested |
//! | [`finish_stopped`] | processing; stopped | stopped |
//! | [`request_stop`] | pending, processing (stopped: no-op) | stopped |
//! | [`retry`] | failed, stopped | pending (artifacts and diagnostics cleared) |
//! | [`resume`] | failed, stopped (pipeline version 2) | pending (artifacts kept) |
//! | [`requeue_stale`] (reaper) | processing, worker heartbeat lost | pending |
//!
//! A worker's loop, in short:
//!
//! ```no_run
//! use shared_db::planexe::plans::{self, Progress, ProgressAck};
//! use rust_decimal::Decimal;
//!
//! # async fn worker(db: &shared_db::Database) -> shared_db::Result<()> {
//! while let Some(plan) = plans::claim_next(db.pool(), "worker-1").await? {
//!     let step = Progress { percentage: Decimal::from(50), message: "Halfway", ..Default::default() };
//!     match plans::update_progress(db.pool(), plan.id, &step).await? {
//!         ProgressAck::Recorded => plans::finish_completed(db.pool(), plan.id, None).await?,
//!         ProgressAck::Abort { .. } => plans::finish_stopped(db.pool(), plan.id, None).await?,
//!     }
//! }
//! # Ok(()) }
//! ```

use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::PgExecutor;
use uuid::Uuid;

use super::{Page, PlanState, clean_opt, clean_text, db_err, json_absent, json_text, secs};
use super::json::LossyJson;
use crate::error::{Error, Result};

/// The pipeline version a resumable plan must carry in `parameters.pipeline_version`.
pub const PIPELINE_VERSION: i64 = 2;

/// One row of `plans`, without the three heavy artifact columns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// Primary key.
    pub id: Uuid,
    /// Creation time; the FIFO key of the queue.
    pub timestamp_created: Option<DateTime<Utc>>,
    /// Queue state (`None` if another writer left it NULL).
    pub state: Option<PlanState>,
    /// The user's prompt.
    pub prompt: Option<String>,
    /// 0–100, two decimals.
    pub progress_percentage: Option<Decimal>,
    /// Progress text (≤128 chars).
    pub progress_message: Option<String>,
    /// Pipeline steps done.
    pub steps_completed: Option<i32>,
    /// Pipeline steps in total.
    pub steps_total: Option<i32>,
    /// Current pipeline step (≤128 chars).
    pub current_step: Option<String>,
    /// Browser keep-alive.
    pub last_seen_timestamp: Option<DateTime<Utc>>,
    /// Stop requested (a NULL column reads as `false`).
    pub stop_requested: bool,
    /// When the stop was requested.
    pub stop_requested_timestamp: Option<DateTime<Utc>>,
    /// Owner: a `user_account` UUID string, the admin username, an opaque MachAI id, ...
    pub user_id: Option<String>,
    /// `user_api_key.id` as a string.
    pub api_key_id: Option<String>,
    /// Run parameters (`model_profile`, `speed_vs_detail`, `pipeline_version`, `resume`, ...).
    pub parameters: Option<LossyJson>,
    /// Size of the activity log in bytes.
    pub run_track_activity_bytes: Option<i32>,
    /// Activity overview, including `total_cost`.
    pub run_activity_overview_json: Option<LossyJson>,
    /// Artifact layout version (the worker writes 2).
    pub run_artifact_layout_version: Option<i32>,
    /// `generation_error`, `worker_error`, `version_mismatch`, `inactivity_timeout`, ...
    pub failure_reason: Option<String>,
    /// Step that failed.
    pub failed_step: Option<String>,
    /// Error text (≤256 chars).
    pub error_message: Option<String>,
    /// Whether a retry may succeed.
    pub recoverable: Option<bool>,
    /// Last progress write (stall detection).
    pub last_progress_at: Option<DateTime<Utc>>,
    /// `generated_report_html IS NOT NULL`.
    pub has_generated_report_html: bool,
    /// `run_zip_snapshot IS NOT NULL`.
    pub has_run_zip_snapshot: bool,
    /// `run_track_activity_jsonl IS NOT NULL`.
    pub has_run_track_activity_jsonl: bool,
}

impl Plan {
    fn normalized(mut self) -> Self {
        self.parameters = json_absent(self.parameters);
        self.run_activity_overview_json = json_absent(self.run_activity_overview_json);
        self
    }
}

/// The light columns a status poll reads (MCP `plan_status`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanStatus {
    /// Primary key.
    pub id: Uuid,
    /// Queue state.
    pub state: Option<PlanState>,
    /// 0–100.
    pub progress_percentage: Option<Decimal>,
    /// Progress text.
    pub progress_message: Option<String>,
    /// Steps done.
    pub steps_completed: Option<i32>,
    /// Steps in total.
    pub steps_total: Option<i32>,
    /// Current step.
    pub current_step: Option<String>,
    /// Stop requested (NULL reads as `false`).
    pub stop_requested: bool,
    /// Creation time.
    pub timestamp_created: Option<DateTime<Utc>>,
    /// Last progress write.
    pub last_progress_at: Option<DateTime<Utc>>,
    /// Failure reason.
    pub failure_reason: Option<String>,
    /// Error text.
    pub error_message: Option<String>,
    /// Whether a retry may succeed.
    pub recoverable: Option<bool>,
    /// A report exists.
    pub has_generated_report_html: bool,
    /// A zip snapshot exists.
    pub has_run_zip_snapshot: bool,
}

/// One line of a user's plan list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanListItem {
    /// Primary key.
    pub id: Uuid,
    /// Queue state.
    pub state: Option<PlanState>,
    /// 0–100.
    pub progress_percentage: Option<Decimal>,
    /// Creation time.
    pub timestamp_created: Option<DateTime<Utc>>,
    /// The first [`PROMPT_PREVIEW_CHARS`] characters of the prompt.
    pub prompt_preview: Option<String>,
}

/// Characters of the prompt shown in [`list_by_user`] (the frontend's 240).
pub const PROMPT_PREVIEW_CHARS: i32 = 240;

/// What [`enqueue`] needs.
#[derive(Debug, Clone, Default)]
pub struct NewPlan<'a> {
    /// The prompt (NUL bytes are stripped).
    pub prompt: &'a str,
    /// Owner id as the services store it (UUID string, admin username, MachAI id).
    pub user_id: Option<&'a str>,
    /// The API key the plan was created with.
    pub api_key_id: Option<Uuid>,
    /// Run parameters (a JSON object).
    pub parameters: Option<&'a Value>,
    /// Initial progress text, e.g. "Awaiting server to start…".
    pub progress_message: Option<&'a str>,
    /// Extra keys merged into the `TASK_PENDING` event's context (`task_id`/`user_id` are set).
    pub event_context: Option<&'a Value>,
}

/// The plan [`enqueue`] created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Enqueued {
    /// The new plan's id.
    pub id: Uuid,
    /// Its creation time (queue position).
    pub timestamp_created: DateTime<Utc>,
}

fn event_context(base: Option<&Value>, extra: Value) -> Value {
    let mut ctx = match base {
        Some(Value::Object(map)) => map.clone(),
        _ => serde_json::Map::new(),
    };
    if let Value::Object(extra) = extra {
        ctx.extend(extra);
    }
    Value::Object(ctx)
}

/// Queue a plan: the `pending` plan and its `TASK_PENDING` event are written by one statement, so
/// they commit together (the Python services use two commits). One round trip.
#[tracing::instrument(skip_all)]
pub async fn enqueue(ex: impl PgExecutor<'_>, new: &NewPlan<'_>) -> Result<Enqueued> {
    if let Some(p) = new.parameters
        && !p.is_object()
    {
        return Err(Error::invalid_input(
            "plan parameters must be a JSON object",
        ));
    }
    let id = Uuid::new_v4();
    let prompt = clean_text(new.prompt, usize::MAX);
    let user_id = clean_opt(new.user_id, 256);
    let ctx = event_context(
        new.event_context,
        json!({ "task_id": id.to_string(), "user_id": user_id }),
    );
    let row = sqlx::query!(
        r#"WITH plan AS (
               INSERT INTO plans (id, timestamp_created, state, prompt, progress_percentage,
                                  progress_message, last_seen_timestamp, stop_requested, user_id,
                                  api_key_id, parameters)
               VALUES ($1, now() AT TIME ZONE 'utc', 'pending', $2, 0.0, $3,
                       now() AT TIME ZONE 'utc', false, $4, $5, $6::text::json)
               RETURNING id, timestamp_created),
           event AS (
               INSERT INTO events ("timestamp", event_type, message, context)
               SELECT now() AT TIME ZONE 'utc', 'TASK_PENDING', 'Plan queued', $7::text::json
               FROM plan)
           SELECT id, timestamp_created AS "timestamp_created!" FROM plan"#,
        id,
        prompt,
        clean_opt(new.progress_message, 128),
        user_id,
        new.api_key_id.map(|k| k.to_string()),
        json_text(new.parameters),
        ctx.to_string(),
    )
    .fetch_one(ex)
    .await?;
    Ok(Enqueued {
        id: row.id,
        timestamp_created: row.timestamp_created,
    })
}

/// Duplicate-submission lookup (MCP `plan_create`): the newest plan of `user_id` with the same
/// prompt and `parameters.model_profile`, still pending or processing, created within `window`
/// (the services use 600 s). One round trip.
#[tracing::instrument(skip_all, fields(%user_id))]
pub async fn find_duplicate(
    ex: impl PgExecutor<'_>,
    user_id: &str,
    prompt: &str,
    model_profile: Option<&str>,
    window: Duration,
) -> Result<Option<Uuid>> {
    let prompt = clean_text(prompt, usize::MAX);
    Ok(sqlx::query_scalar!(
        r#"SELECT id FROM plans
           WHERE user_id = $1 AND prompt = $2
             AND state IN ('pending', 'processing')
             AND timestamp_created >= (now() AT TIME ZONE 'utc') - make_interval(secs => $3)
             AND (parameters->>'model_profile') IS NOT DISTINCT FROM $4
           ORDER BY timestamp_created DESC
           LIMIT 1"#,
        user_id,
        prompt,
        secs(window),
        model_profile,
    )
    .fetch_optional(ex)
    .await?)
}

/// Claim the oldest pending plan without a stop request: lock it with `FOR UPDATE SKIP LOCKED`, mark
/// it `processing` ("Picked up by server", 0 %), record it as the worker's `current_task_id` (a
/// heartbeat) and append the `TASK_PROCESSING` event, all in one statement. `None` when the queue is
/// empty. One round trip.
#[tracing::instrument(skip_all, fields(%worker_id))]
pub async fn claim_next(ex: impl PgExecutor<'_>, worker_id: &str) -> Result<Option<Plan>> {
    if worker_id.is_empty() || worker_id.chars().count() > 255 {
        return Err(Error::invalid_input("worker id must be 1..=255 characters"));
    }
    let plan = sqlx::query_as!(
        Plan,
        r#"WITH next AS (
               SELECT id, timestamp_created AS queued_at FROM plans
               WHERE state = 'pending' AND stop_requested IS NOT TRUE
               ORDER BY timestamp_created
               LIMIT 1
               FOR UPDATE SKIP LOCKED),
           claimed AS (
               UPDATE plans p
                  SET state = 'processing', progress_message = 'Picked up by server',
                      progress_percentage = 0.0
               FROM next WHERE p.id = next.id
               RETURNING p.id, p.timestamp_created, p.state, p.prompt, p.progress_percentage,
                         p.progress_message, p.steps_completed, p.steps_total, p.current_step,
                         p.last_seen_timestamp, p.stop_requested, p.stop_requested_timestamp,
                         p.user_id, p.api_key_id, p.parameters, p.run_track_activity_bytes,
                         p.run_activity_overview_json, p.run_artifact_layout_version,
                         p.failure_reason, p.failed_step, p.error_message, p.recoverable,
                         p.last_progress_at,
                         p.generated_report_html IS NOT NULL AS has_report,
                         p.run_zip_snapshot IS NOT NULL AS has_zip,
                         p.run_track_activity_jsonl IS NOT NULL AS has_track,
                         next.queued_at),
           beat AS (
               INSERT INTO workers (id, started_at, last_heartbeat_at, current_task_id)
               SELECT $1, now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc', claimed.id::text
               FROM claimed
               ON CONFLICT (id) DO UPDATE
                  SET last_heartbeat_at = EXCLUDED.last_heartbeat_at,
                      current_task_id = EXCLUDED.current_task_id),
           event AS (
               INSERT INTO events ("timestamp", event_type, message, context)
               SELECT now() AT TIME ZONE 'utc', 'TASK_PROCESSING', 'Pending -> Processing',
                      json_build_object(
                          'task_id', claimed.id::text,
                          'user_id', claimed.user_id,
                          'worker_id', $1::text,
                          'duration_between_pending_and_processing',
                          extract(epoch FROM (now() AT TIME ZONE 'utc') - claimed.queued_at))
               FROM claimed)
           SELECT id, timestamp_created, state, prompt, progress_percentage, progress_message,
                  steps_completed, steps_total, current_step, last_seen_timestamp,
                  coalesce(stop_requested, false) AS "stop_requested!", stop_requested_timestamp,
                  user_id, api_key_id, parameters, run_track_activity_bytes,
                  run_activity_overview_json, run_artifact_layout_version, failure_reason,
                  failed_step, error_message, recoverable, last_progress_at,
                  has_report AS "has_generated_report_html!", has_zip AS "has_run_zip_snapshot!",
                  has_track AS "has_run_track_activity_jsonl!"
           FROM claimed"#,
        worker_id,
    )
    .fetch_optional(ex)
    .await
    .map_err(db_err)?;
    Ok(plan.map(Plan::normalized))
}

/// Queue depth: pending plans without a stop request, i.e. what [`claim_next`] would hand out.
/// Served by `ix_plans_pending_fifo`. One round trip.
#[tracing::instrument(skip_all)]
pub async fn count_pending(ex: impl PgExecutor<'_>) -> Result<i64> {
    Ok(sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM plans
           WHERE state = 'pending' AND stop_requested IS NOT TRUE"#
    )
    .fetch_one(ex)
    .await?)
}

/// A plan by id, without the heavy columns. [`Error::NotFound`] if absent. One round trip.
#[tracing::instrument(skip_all, fields(%id))]
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
    .await
    .map_err(db_err)?;
    plan.map(Plan::normalized).ok_or(Error::NotFound)
}

/// Status by id: light columns only. [`Error::NotFound`] if absent. One round trip.
#[tracing::instrument(skip_all, fields(%id))]
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
    .await
    .map_err(db_err)?
    .ok_or(Error::NotFound)
}

/// A user's plans, newest first, with a short prompt preview; served by
/// `idx_plans_user_id_timestamp_created`. One round trip.
#[tracing::instrument(skip_all, fields(%user_id))]
pub async fn list_by_user(
    ex: impl PgExecutor<'_>,
    user_id: &str,
    page: Page,
) -> Result<Vec<PlanListItem>> {
    sqlx::query_as!(
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
    .await
    .map_err(db_err)
}

/// A progress report from the worker.
#[derive(Debug, Clone, Default)]
pub struct Progress<'a> {
    /// 0–100 (clamped, rounded to 2 places).
    pub percentage: Decimal,
    /// Progress text, truncated to 128 characters.
    pub message: &'a str,
    /// Steps done.
    pub steps_completed: Option<i32>,
    /// Steps in total.
    pub steps_total: Option<i32>,
    /// Current step, truncated to 128 characters.
    pub current_step: Option<&'a str>,
}

/// What [`update_progress`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ProgressAck {
    /// Written; keep going.
    Recorded,
    /// Not written: the plan is no longer processing or a stop was requested. The worker should end
    /// the run (with [`finish_stopped`] / [`finish_failed`]).
    Abort {
        /// The plan's state.
        state: Option<PlanState>,
        /// Whether a stop was requested.
        stop_requested: bool,
    },
}

/// Record progress of a processing plan (percentage, message, steps, current step,
/// `last_progress_at = now`). Text is truncated to the column widths and NUL bytes are stripped.
/// Refuses to write when the plan is not processing or a stop was requested, and says so
/// ([`ProgressAck::Abort`]). [`Error::NotFound`] if the plan does not exist. One round trip.
#[tracing::instrument(skip_all, fields(%id))]
pub async fn update_progress(
    ex: impl PgExecutor<'_>,
    id: Uuid,
    progress: &Progress<'_>,
) -> Result<ProgressAck> {
    let pct = progress
        .percentage
        .clamp(Decimal::ZERO, Decimal::ONE_HUNDRED)
        .round_dp(2);
    let row = sqlx::query!(
        r#"WITH upd AS (
               UPDATE plans
                  SET progress_percentage = $2, progress_message = $3, steps_completed = $4,
                      steps_total = $5, current_step = $6,
                      last_progress_at = now() AT TIME ZONE 'utc'
               WHERE id = $1 AND state = 'processing' AND stop_requested IS NOT TRUE
               RETURNING id)
           SELECT p.state, coalesce(p.stop_requested, false) AS "stop_requested!",
                  EXISTS (SELECT 1 FROM upd) AS "recorded!"
           FROM plans p WHERE p.id = $1"#,
        id,
        pct,
        clean_text(progress.message, 128),
        progress.steps_completed,
        progress.steps_total,
        clean_opt(progress.current_step, 128),
    )
    .fetch_optional(ex)
    .await
    .map_err(db_err)?
    .ok_or(Error::NotFound)?;
    Ok(if row.recorded {
        ProgressAck::Recorded
    } else {
        ProgressAck::Abort {
            state: row.state,
            stop_requested: row.stop_requested,
        }
    })
}

/// The refused transition: `from` is the stored label (`NULL` if the column is NULL), `to` the
/// target of the refused action (`pending (retry)` / `pending (resume)` tell the two apart).
fn transition(from: Option<String>, to: &str) -> Error {
    Error::InvalidTransition {
        from: from.unwrap_or_else(|| "NULL".to_owned()),
        to: to.to_owned(),
    }
}

/// Finish a processing plan as `completed` (100 %, "Completed", `steps_completed = steps_total`),
/// append `TASK_COMPLETED` with `event_context` (billing figures) merged in, and release the worker
/// (`workers.current_task_id = NULL`). One statement, one round trip. Refused unless processing.
#[tracing::instrument(skip_all, fields(%id))]
pub async fn finish_completed(
    ex: impl PgExecutor<'_>,
    id: Uuid,
    event_context: Option<&Value>,
) -> Result<()> {
    let ctx = self::event_context(event_context, json!({ "task_id": id.to_string() }));
    let row = sqlx::query!(
        r#"WITH cur AS (SELECT id, state FROM plans WHERE id = $1 FOR UPDATE),
           upd AS (
               UPDATE plans p
                  SET state = 'completed', progress_percentage = 100, progress_message = 'Completed',
                      steps_completed = p.steps_total, current_step = 'Completed',
                      last_progress_at = now() AT TIME ZONE 'utc'
               FROM cur WHERE p.id = cur.id AND cur.state = 'processing'
               RETURNING p.id),
           event AS (
               INSERT INTO events ("timestamp", event_type, message, context)
               SELECT now() AT TIME ZONE 'utc', 'TASK_COMPLETED', 'Processing -> Completed',
                      $2::text::json
               FROM upd),
           release AS (
               UPDATE workers SET current_task_id = NULL
               WHERE current_task_id = $1::uuid::text AND EXISTS (SELECT 1 FROM upd))
           SELECT cur.state::text AS from_state, EXISTS (SELECT 1 FROM upd) AS "done!" FROM cur"#,
        id,
        ctx.to_string(),
    )
    .fetch_optional(ex)
    .await?
    .ok_or(Error::NotFound)?;
    if row.done {
        Ok(())
    } else {
        Err(transition(row.from_state, "completed"))
    }
}

/// Failure diagnostics written by [`finish_failed`].
#[derive(Debug, Clone, Default)]
pub struct Failure<'a> {
    /// `generation_error`, `worker_error`, `inactivity_timeout`, `internal_error`, ... (≤64 chars).
    pub reason: &'a str,
    /// The failed step; defaults to the plan's `current_step`.
    pub failed_step: Option<&'a str>,
    /// Error text, truncated to 256 characters.
    pub error_message: &'a str,
    /// Whether a retry may succeed.
    pub recoverable: bool,
}

/// Finish a run that did not succeed: state `failed`, or `stopped` when a stop was requested (a stop
/// request may already have set `stopped`), returned; writes the diagnostics, appends `TASK_FAILED`
/// ("Processing -> Failed" / "Processing -> Stopped") and releases the worker. One round trip.
/// Refused unless processing or stopped.
#[tracing::instrument(skip_all, fields(%id))]
pub async fn finish_failed(
    ex: impl PgExecutor<'_>,
    id: Uuid,
    failure: &Failure<'_>,
    event_context: Option<&Value>,
) -> Result<PlanState> {
    let ctx = self::event_context(
        event_context,
        json!({ "task_id": id.to_string(), "failure_reason": failure.reason }),
    );
    // The CASE has a branch typed by the column (`WHEN false THEN p.state`), so PostgreSQL types the
    // string literals as the column's enum, whether it is called planstate or taskstate.
    let row = sqlx::query!(
        r#"WITH cur AS (SELECT id, state FROM plans WHERE id = $1 FOR UPDATE),
           upd AS (
               UPDATE plans p
                  SET state = CASE WHEN p.stop_requested IS TRUE OR cur.state = 'stopped'
                                   THEN 'stopped' WHEN false THEN p.state ELSE 'failed' END,
                      failure_reason = $2, failed_step = coalesce($3, p.current_step),
                      error_message = $4, recoverable = $5,
                      progress_message = CASE WHEN p.stop_requested IS TRUE OR cur.state = 'stopped'
                                              THEN 'Stopped' ELSE 'Failed' END
               FROM cur WHERE p.id = cur.id AND cur.state IN ('processing', 'stopped')
               RETURNING p.id, p.state),
           event AS (
               INSERT INTO events ("timestamp", event_type, message, context)
               SELECT now() AT TIME ZONE 'utc', 'TASK_FAILED',
                      CASE WHEN upd.state = 'stopped' THEN 'Processing -> Stopped'
                           ELSE 'Processing -> Failed' END,
                      $6::text::json
               FROM upd),
           release AS (
               UPDATE workers SET current_task_id = NULL
               WHERE current_task_id = $1::uuid::text AND EXISTS (SELECT 1 FROM upd))
           SELECT cur.state::text AS from_state, (SELECT state FROM upd) AS "new_state?"
           FROM cur"#,
        id,
        clean_text(failure.reason, 64),
        clean_opt(failure.failed_step, 128),
        clean_text(failure.error_message, 256),
        failure.recoverable,
        ctx.to_string(),
    )
    .fetch_optional(ex)
    .await
    .map_err(db_err)?
    .ok_or(Error::NotFound)?;
    row.new_state
        .ok_or_else(|| transition(row.from_state, "failed"))
}

/// Finish a run that ended on a stop request: state `stopped`, appends `TASK_FAILED`
/// ("Processing -> Stopped") and releases the worker. One round trip. Refused unless processing or
/// stopped.
#[tracing::instrument(skip_all, fields(%id))]
pub async fn finish_stopped(
    ex: impl PgExecutor<'_>,
    id: Uuid,
    event_context: Option<&Value>,
) -> Result<()> {
    let ctx = self::event_context(event_context, json!({ "task_id": id.to_string() }));
    let row = sqlx::query!(
        r#"WITH cur AS (SELECT id, state FROM plans WHERE id = $1 FOR UPDATE),
           upd AS (
               UPDATE plans p SET state = 'stopped', progress_message = 'Stopped'
               FROM cur WHERE p.id = cur.id AND cur.state IN ('processing', 'stopped')
               RETURNING p.id),
           event AS (
               INSERT INTO events ("timestamp", event_type, message, context)
               SELECT now() AT TIME ZONE 'utc', 'TASK_FAILED', 'Processing -> Stopped',
                      $2::text::json
               FROM upd),
           release AS (
               UPDATE workers SET current_task_id = NULL
               WHERE current_task_id = $1::uuid::text AND EXISTS (SELECT 1 FROM upd))
           SELECT cur.state::text AS from_state, EXISTS (SELECT 1 FROM upd) AS "done!" FROM cur"#,
        id,
        ctx.to_string(),
    )
    .fetch_optional(ex)
    .await?
    .ok_or(Error::NotFound)?;
    if row.done {
        Ok(())
    } else {
        Err(transition(row.from_state, "stopped"))
    }
}

/// What [`request_stop`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum StopOutcome {
    /// The plan was pending or processing and is now `stopped`; a running worker notices the flag
    /// at its next progress report.
    Stopped,
    /// The plan was already stopped; nothing changed.
    AlreadyStopped,
}

/// Request a stop: `stop_requested = true`, `stop_requested_timestamp = now`, and for a pending or
/// processing plan `state = stopped` with "Stop requested by user.". Refused for completed and failed
/// plans. One round trip.
#[tracing::instrument(skip_all, fields(%id))]
pub async fn request_stop(ex: impl PgExecutor<'_>, id: Uuid) -> Result<StopOutcome> {
    let row = sqlx::query!(
        r#"WITH cur AS (SELECT id, state FROM plans WHERE id = $1 FOR UPDATE),
           upd AS (
               UPDATE plans p
                  SET stop_requested = true,
                      stop_requested_timestamp = now() AT TIME ZONE 'utc',
                      state = 'stopped', progress_message = 'Stop requested by user.'
               FROM cur WHERE p.id = cur.id AND cur.state IN ('pending', 'processing')
               RETURNING p.id)
           SELECT cur.state::text AS from_state, EXISTS (SELECT 1 FROM upd) AS "done!" FROM cur"#,
        id,
    )
    .fetch_optional(ex)
    .await?
    .ok_or(Error::NotFound)?;
    match (row.done, row.from_state.as_deref()) {
        (true, _) => Ok(StopOutcome::Stopped),
        (false, Some("stopped")) => Ok(StopOutcome::AlreadyStopped),
        (false, _) => Err(transition(row.from_state, "stopped")),
    }
}

/// What [`retry`] / [`resume`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Requeued {
    /// The state the plan came from.
    pub from: PlanState,
    /// Ledger rows of the previous attempt settled (`usage_billing_progress` and `usage_billing` →
    /// `usage_billing_settled`), so the next attempt is billed afresh.
    pub settled_billing_rows: i64,
}

/// Retry a failed or stopped plan from scratch: state `pending` at the back of the queue
/// (`timestamp_created = now`, as MCP retry does), stop flag cleared, progress zeroed, artifacts and
/// diagnostics cleared (JSON ones to JSON `null`, as the Python services do), `last_seen_timestamp =
/// now`; in the same statement the previous attempt's billing rows are settled and `TASK_PENDING` is
/// appended. One round trip. Refused unless failed or stopped.
#[tracing::instrument(skip_all, fields(%id))]
pub async fn retry(ex: impl PgExecutor<'_>, id: Uuid) -> Result<Requeued> {
    let row = sqlx::query!(
        r#"WITH cur AS (SELECT id, state FROM plans WHERE id = $1 FOR UPDATE),
           upd AS (
               UPDATE plans p
                  SET state = 'pending', timestamp_created = now() AT TIME ZONE 'utc',
                      stop_requested = false, stop_requested_timestamp = NULL,
                      progress_percentage = 0, progress_message = NULL, steps_completed = 0,
                      steps_total = NULL, current_step = NULL,
                      generated_report_html = NULL, run_zip_snapshot = NULL,
                      run_track_activity_jsonl = NULL, run_track_activity_bytes = NULL,
                      run_activity_overview_json = 'null'::json, run_artifact_layout_version = NULL,
                      failure_reason = NULL, failed_step = NULL, error_message = NULL,
                      recoverable = NULL, last_progress_at = NULL,
                      last_seen_timestamp = now() AT TIME ZONE 'utc'
               FROM cur WHERE p.id = cur.id AND cur.state IN ('failed', 'stopped')
               RETURNING p.id),
           settle AS (
               UPDATE credit_history SET source = 'usage_billing_settled'
               WHERE external_id = $1::uuid::text
                 AND source IN ('usage_billing_progress', 'usage_billing')
                 AND EXISTS (SELECT 1 FROM upd)
               RETURNING id),
           event AS (
               INSERT INTO events ("timestamp", event_type, message, context)
               SELECT now() AT TIME ZONE 'utc', 'TASK_PENDING', 'Retry -> Pending',
                      json_build_object('task_id', upd.id::text, 'retry', true)
               FROM upd)
           SELECT cur.state::text AS from_label, EXISTS (SELECT 1 FROM upd) AS "done!",
                  (SELECT count(*) FROM settle) AS "settled!"
           FROM cur"#,
        id,
    )
    .fetch_optional(ex)
    .await
    .map_err(db_err)?
    .ok_or(Error::NotFound)?;
    // The state is read as text so that an unknown label (e.g. `import_pending`) is reported as
    // the refused transition's origin rather than failing the whole row decode.
    let from = row.from_label.as_deref().map(str::parse::<PlanState>);
    match (row.done, from) {
        (true, Some(Ok(from))) => Ok(Requeued {
            from,
            settled_billing_rows: row.settled,
        }),
        _ => Err(transition(row.from_label, "pending (retry)")),
    }
}

/// Resume a failed or stopped plan where it left off: state `pending`, stop flag and diagnostics
/// cleared, artifacts and progress kept, `parameters.resume = true` and `parameters.resume_count`
/// incremented; the previous attempt's billing rows are settled (in every resume path, unlike MCP
/// resume in Python) and `TASK_PENDING` is appended. One round trip. Refused unless failed or
/// stopped; [`Error::InvalidInput`] when `parameters.pipeline_version` is not
/// [`PIPELINE_VERSION`].
#[tracing::instrument(skip_all, fields(%id))]
pub async fn resume(ex: impl PgExecutor<'_>, id: Uuid) -> Result<Requeued> {
    let row = sqlx::query!(
        r#"WITH cur AS (
               SELECT id, state, parameters->>'pipeline_version' AS pipeline_version
               FROM plans WHERE id = $1 FOR UPDATE),
           upd AS (
               UPDATE plans p
                  SET state = 'pending', stop_requested = false, stop_requested_timestamp = NULL,
                      failure_reason = NULL, failed_step = NULL, error_message = NULL,
                      recoverable = NULL, progress_message = 'Resuming',
                      last_seen_timestamp = now() AT TIME ZONE 'utc',
                      parameters = (
                          (CASE WHEN json_typeof(p.parameters) = 'object'
                                THEN p.parameters::jsonb ELSE '{}'::jsonb END)
                          || jsonb_build_object(
                                 'resume', true,
                                 'resume_count',
                                 CASE WHEN json_typeof(p.parameters->'resume_count') = 'number'
                                      THEN floor((p.parameters->>'resume_count')::numeric)::bigint
                                      ELSE 0 END + 1))::json
               FROM cur
               WHERE p.id = cur.id AND cur.state IN ('failed', 'stopped')
                 AND cur.pipeline_version = $2
               RETURNING p.id),
           settle AS (
               UPDATE credit_history SET source = 'usage_billing_settled'
               WHERE external_id = $1::uuid::text
                 AND source IN ('usage_billing_progress', 'usage_billing')
                 AND EXISTS (SELECT 1 FROM upd)
               RETURNING id),
           event AS (
               INSERT INTO events ("timestamp", event_type, message, context)
               SELECT now() AT TIME ZONE 'utc', 'TASK_PENDING', 'Resume -> Pending',
                      json_build_object('task_id', upd.id::text, 'resume', true)
               FROM upd)
           SELECT cur.state::text AS from_label, cur.pipeline_version,
                  EXISTS (SELECT 1 FROM upd) AS "done!",
                  (SELECT count(*) FROM settle) AS "settled!"
           FROM cur"#,
        id,
        PIPELINE_VERSION.to_string(),
    )
    .fetch_optional(ex)
    .await
    .map_err(db_err)?
    .ok_or(Error::NotFound)?;
    let from = row.from_label.as_deref().map(str::parse::<PlanState>);
    match (row.done, from) {
        (true, Some(Ok(from))) => Ok(Requeued {
            from,
            settled_billing_rows: row.settled,
        }),
        (false, Some(Ok(PlanState::Failed | PlanState::Stopped))) => {
            Err(Error::invalid_input(format!(
                "plan {id} has pipeline version {}, resume needs {PIPELINE_VERSION}",
                row.pipeline_version.as_deref().unwrap_or("<none>")
            )))
        }
        _ => Err(transition(row.from_label, "pending (resume)")),
    }
}

/// Artifacts written when a run ends ([`store_artifacts`]).
#[derive(Debug, Clone, Default)]
pub struct Artifacts<'a> {
    /// The report; `None` keeps the stored one (the worker writes it only if it exists).
    pub report_html: Option<&'a str>,
    /// The run directory as a zip.
    pub zip_snapshot: Option<&'a [u8]>,
    /// The activity log (JSON lines).
    pub track_activity_jsonl: Option<&'a str>,
    /// Size of the activity log in bytes.
    pub track_activity_bytes: Option<i32>,
    /// Activity overview (includes `total_cost`).
    pub activity_overview: Option<&'a Value>,
}

/// The artifact layout version written by [`store_artifacts`] (as the Python worker).
pub const ARTIFACT_LAYOUT_VERSION: i32 = 2;

/// Store a run's artifacts in one statement (one round trip); sets
/// `run_artifact_layout_version = 2`. [`Error::NotFound`] if the plan does not exist.
#[tracing::instrument(skip_all, fields(%id))]
pub async fn store_artifacts(
    ex: impl PgExecutor<'_>,
    id: Uuid,
    artifacts: &Artifacts<'_>,
) -> Result<()> {
    let done = sqlx::query!(
        r#"UPDATE plans
              SET generated_report_html = coalesce($2, generated_report_html),
                  run_zip_snapshot = $3, run_track_activity_jsonl = $4,
                  run_track_activity_bytes = $5, run_activity_overview_json = $6::text::json,
                  run_artifact_layout_version = $7
           WHERE id = $1"#,
        id,
        artifacts.report_html.map(|s| clean_text(s, usize::MAX)),
        artifacts.zip_snapshot,
        artifacts
            .track_activity_jsonl
            .map(|s| clean_text(s, usize::MAX)),
        artifacts.track_activity_bytes,
        json_text(artifacts.activity_overview),
        ARTIFACT_LAYOUT_VERSION,
    )
    .execute(ex)
    .await?;
    if done.rows_affected() == 0 {
        return Err(Error::NotFound);
    }
    Ok(())
}

/// Store the periodic zip snapshot (every few steps, so the run's files can be listed while it
/// runs). One round trip.
#[tracing::instrument(skip_all, fields(%id))]
pub async fn store_zip_snapshot(ex: impl PgExecutor<'_>, id: Uuid, zip: &[u8]) -> Result<()> {
    let done = sqlx::query!(
        "UPDATE plans SET run_zip_snapshot = $2 WHERE id = $1",
        id,
        zip
    )
    .execute(ex)
    .await?;
    if done.rows_affected() == 0 {
        return Err(Error::NotFound);
    }
    Ok(())
}

/// The report HTML (`None` if there is none). [`Error::NotFound`] if the plan does not exist.
/// One round trip.
#[tracing::instrument(skip_all, fields(%id))]
pub async fn fetch_report_html(ex: impl PgExecutor<'_>, id: Uuid) -> Result<Option<String>> {
    sqlx::query_scalar!("SELECT generated_report_html FROM plans WHERE id = $1", id)
        .fetch_optional(ex)
        .await?
        .ok_or(Error::NotFound)
}

/// The run zip snapshot (`None` if there is none). [`Error::NotFound`] if the plan does not exist.
/// One round trip.
#[tracing::instrument(skip_all, fields(%id))]
pub async fn fetch_zip_snapshot(ex: impl PgExecutor<'_>, id: Uuid) -> Result<Option<Vec<u8>>> {
    sqlx::query_scalar!("SELECT run_zip_snapshot FROM plans WHERE id = $1", id)
        .fetch_optional(ex)
        .await?
        .ok_or(Error::NotFound)
}

/// [`store_zip_snapshot`] for big snapshots: sends the zip in [`ZIP_CHUNK_BYTES`] slices into a
/// temporary large object, moves it into the column with one `UPDATE` and unlinks the large
/// object, all in one transaction (a savepoint inside the caller's), so readers see the old
/// snapshot or the new one, never a part. Beyond the caller's buffer the process holds about one
/// slice (≈0.3× of a 40 MB zip) instead of sqlx's argument and write buffers around the whole
/// value (≈3×, see BENCHMARKS.md); the price is 4 + ⌈size / 4 MiB⌉ statements and a second copy
/// on the server (`pg_largeobject`, then the column). [`Error::NotFound`] if the plan does not
/// exist (nothing is written).
pub async fn store_zip_snapshot_chunked(
    conn: &mut sqlx::PgConnection,
    id: Uuid,
    zip: &[u8],
) -> Result<()> {
    crate::tx::transaction(conn, async |tx| {
        sqlx::query_scalar!("SELECT id FROM plans WHERE id = $1 FOR UPDATE", id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(Error::NotFound)?;
        let lo = sqlx::query_scalar!(r#"SELECT lo_create(0) AS "oid!""#)
            .fetch_one(&mut *tx)
            .await?;
        for (i, slice) in zip.chunks(ZIP_CHUNK_BYTES as usize).enumerate() {
            let offset = i as i64 * i64::from(ZIP_CHUNK_BYTES);
            sqlx::query_scalar!(
                r#"SELECT true AS "put!" FROM (SELECT lo_put($1, $2, $3)) AS p"#,
                lo,
                offset,
                slice
            )
            .fetch_one(&mut *tx)
            .await?;
        }
        sqlx::query!(
            "UPDATE plans SET run_zip_snapshot = lo_get($2) WHERE id = $1",
            id,
            lo
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query_scalar!(r#"SELECT lo_unlink($1) AS "unlinked!""#, lo)
            .fetch_one(&mut *tx)
            .await?;
        Ok(())
    })
    .await
}

/// Slice size of [`fetch_zip_snapshot_chunked`] (4 MiB).
pub const ZIP_CHUNK_BYTES: i32 = 4 * 1024 * 1024;

/// [`fetch_zip_snapshot`] for big snapshots: reads the zip in [`ZIP_CHUNK_BYTES`] slices into a
/// buffer of its final size, so the process holds it about once plus one slice (≈1.2× its size)
/// instead of once in sqlx's receive buffer and once more in the returned `Vec` (≈3.5× for 40 MB,
/// see BENCHMARKS.md). The row is locked `FOR SHARE` first, in a transaction (a savepoint inside
/// the caller's), so a concurrent store waits and the slices always belong to one snapshot.
/// `None` if there is no snapshot; [`Error::NotFound`] if the plan does not exist.
/// 1 + ⌈size / 4 MiB⌉ statements, plus BEGIN/COMMIT.
pub async fn fetch_zip_snapshot_chunked(
    conn: &mut sqlx::PgConnection,
    id: Uuid,
) -> Result<Option<Vec<u8>>> {
    crate::tx::transaction(conn, async |tx| {
        let len = sqlx::query_scalar!(
            "SELECT octet_length(run_zip_snapshot) FROM plans WHERE id = $1 FOR SHARE",
            id
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(Error::NotFound)?;
        let Some(len) = len else {
            return Ok(None);
        };
        let mut zip = Vec::with_capacity(len as usize);
        let mut from = 1;
        while from <= len {
            let slice = sqlx::query_scalar!(
                r#"SELECT substring(run_zip_snapshot FROM $2 FOR $3) AS "slice!"
                   FROM plans WHERE id = $1"#,
                id,
                from,
                ZIP_CHUNK_BYTES,
            )
            .fetch_one(&mut *tx)
            .await?;
            zip.extend_from_slice(&slice);
            from += ZIP_CHUNK_BYTES;
        }
        Ok(Some(zip))
    })
    .await
}

/// The activity log (`None` if there is none). [`Error::NotFound`] if the plan does not exist.
/// One round trip.
#[tracing::instrument(skip_all, fields(%id))]
pub async fn fetch_track_activity_jsonl(
    ex: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<String>> {
    sqlx::query_scalar!(
        "SELECT run_track_activity_jsonl FROM plans WHERE id = $1",
        id
    )
    .fetch_optional(ex)
    .await?
    .ok_or(Error::NotFound)
}

/// The reaper (the Python services have none): re-queue `processing` plans that no live worker
/// holds. A plan is re-queued when no worker whose heartbeat is newer than `threshold` has it as
/// `current_task_id`, and its last progress (or creation) is also older than `threshold`. It goes
/// back to `pending` at its old queue position with "Re-queued: worker lost", the dead attempt's
/// incremental billing is settled, the dead worker's `current_task_id` is cleared and a
/// `TASK_PENDING` event is appended. Plans locked by a concurrent claim or reaper are skipped.
/// Returns the re-queued plan ids. One statement, one round trip.
#[tracing::instrument(skip_all)]
pub async fn requeue_stale(ex: impl PgExecutor<'_>, threshold: Duration) -> Result<Vec<Uuid>> {
    Ok(sqlx::query_scalar!(
        r#"WITH cutoff AS (
               SELECT (now() AT TIME ZONE 'utc') - make_interval(secs => $1) AS at),
           dead AS (
               SELECT p.id FROM plans p, cutoff
               WHERE p.state = 'processing'
                 AND coalesce(p.last_progress_at, p.timestamp_created, cutoff.at) <= cutoff.at
                 AND NOT EXISTS (
                     SELECT 1 FROM workers w
                     WHERE w.current_task_id = p.id::text AND w.last_heartbeat_at > cutoff.at)
               FOR UPDATE OF p SKIP LOCKED),
           requeued AS (
               UPDATE plans p
                  SET state = 'pending', progress_message = 'Re-queued: worker lost'
               FROM dead WHERE p.id = dead.id
               RETURNING p.id),
           settle AS (
               UPDATE credit_history SET source = 'usage_billing_settled'
               WHERE source = 'usage_billing_progress'
                 AND external_id IN (SELECT id::text FROM requeued)),
           release AS (
               UPDATE workers SET current_task_id = NULL
               WHERE current_task_id IN (SELECT id::text FROM requeued)),
           event AS (
               INSERT INTO events ("timestamp", event_type, message, context)
               SELECT now() AT TIME ZONE 'utc', 'TASK_PENDING', 'Processing -> Pending (worker lost)',
                      json_build_object('task_id', requeued.id::text, 'reaped', true)
               FROM requeued)
           SELECT id FROM requeued"#,
        secs(threshold),
    )
    .fetch_all(ex)
    .await?)
}
