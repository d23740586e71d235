//! Lifecycle after the claim: the worker's [`update_progress`] and `finish_*`, the user's
//! [`request_stop`], [`retry`] and [`resume`].
//!
//! **Writes to other tables** (same statement as the plan):
//!
//! | function | `events` | `workers` | `credit_history` |
//! | --- | --- | --- | --- |
//! | [`finish_completed`] | `TASK_COMPLETED` | `current_task_id` cleared | |
//! | [`finish_completed_batch`] | `TASK_COMPLETED` per plan completed | `current_task_id` cleared | |
//! | [`finish_failed`] | `TASK_FAILED` | `current_task_id` cleared | |
//! | [`finish_stopped`] | `TASK_FAILED` | `current_task_id` cleared | |
//! | [`retry`] | `TASK_PENDING` | | open usage rows → `usage_billing_settled` |
//! | [`resume`] | `TASK_PENDING` | | open usage rows → `usage_billing_settled` |

use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::PgExecutor;
use uuid::Uuid;

use super::{Attempt, PIPELINE_VERSION, event_context, transition};
use crate::error::{Error, Result};
use crate::planexe::{PlanState, clean_opt, clean_text};

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
/// ([`ProgressAck::Abort`]); [`Error::Superseded`] when `attempt` no longer owns the run.
/// [`Error::NotFound`] if the plan does not exist. One round trip.
#[tracing::instrument(target = "shared_db::planexe::plans", skip_all, fields(id = %attempt.plan_id))]
pub async fn update_progress(
    ex: impl PgExecutor<'_>,
    attempt: Attempt,
    progress: &Progress<'_>,
) -> Result<ProgressAck> {
    let pct = progress
        .percentage
        .clamp(Decimal::ZERO, Decimal::ONE_HUNDRED)
        .round_dp(2);
    let row = sqlx::query!(
        r#"WITH cur AS (
               SELECT id, state, stop_requested, run_attempt FROM plans WHERE id = $1 FOR UPDATE),
           upd AS (
               UPDATE plans p
                  SET progress_percentage = $2, progress_message = $3, steps_completed = $4,
                      steps_total = $5, current_step = $6,
                      last_progress_at = now() AT TIME ZONE 'utc'
               FROM cur
               WHERE p.id = cur.id AND cur.run_attempt = $7
                 AND cur.state = 'processing' AND cur.stop_requested IS NOT TRUE
               RETURNING p.id)
           SELECT cur.state AS "state?: PlanState",
                  coalesce(cur.stop_requested, false) AS "stop_requested!",
                  cur.run_attempt IS NOT DISTINCT FROM $7 AS "owned!",
                  EXISTS (SELECT 1 FROM upd) AS "recorded!"
           FROM cur"#,
        attempt.plan_id,
        pct,
        clean_text(progress.message, 128),
        progress.steps_completed,
        progress.steps_total,
        clean_opt(progress.current_step, 128),
        attempt.token,
    )
    .fetch_optional(ex)
    .await?
    .ok_or(Error::NotFound)?;
    if !row.owned {
        return Err(attempt.superseded());
    }
    Ok(if row.recorded {
        ProgressAck::Recorded
    } else {
        ProgressAck::Abort {
            state: row.state,
            stop_requested: row.stop_requested,
        }
    })
}

/// Finish a processing plan as `completed` (100 %, "Completed", `steps_completed = steps_total`),
/// append `TASK_COMPLETED` with `event_context` (billing figures) merged in, and release the worker
/// (`workers.current_task_id = NULL`). One statement, one round trip. Refused unless processing;
/// [`Error::Superseded`] (nothing written) when `attempt` no longer owns the run.
#[tracing::instrument(target = "shared_db::planexe::plans", skip_all, fields(id = %attempt.plan_id))]
pub async fn finish_completed(
    ex: impl PgExecutor<'_>,
    attempt: Attempt,
    event_context: Option<&Value>,
) -> Result<()> {
    let id = attempt.plan_id;
    let ctx = self::event_context(event_context, json!({ "task_id": id.to_string() }));
    let row = sqlx::query!(
        r#"WITH cur AS (SELECT id, state, run_attempt FROM plans WHERE id = $1 FOR UPDATE),
           upd AS (
               UPDATE plans p
                  SET state = 'completed', progress_percentage = 100, progress_message = 'Completed',
                      steps_completed = p.steps_total, current_step = 'Completed',
                      last_progress_at = now() AT TIME ZONE 'utc'
               FROM cur
               WHERE p.id = cur.id AND cur.run_attempt = $3 AND cur.state = 'processing'
               RETURNING p.id),
           event AS (
               INSERT INTO events ("timestamp", event_type, message, context)
               SELECT now() AT TIME ZONE 'utc', 'TASK_COMPLETED', 'Processing -> Completed',
                      $2::text::json
               FROM upd),
           release AS (
               UPDATE workers SET current_task_id = NULL
               WHERE current_task_id = $1::uuid::text AND EXISTS (SELECT 1 FROM upd))
           SELECT cur.state::text AS from_state, EXISTS (SELECT 1 FROM upd) AS "done!",
                  cur.run_attempt IS NOT DISTINCT FROM $3 AS "owned!"
           FROM cur"#,
        id,
        ctx,
        attempt.token,
    )
    .fetch_optional(ex)
    .await?
    .ok_or(Error::NotFound)?;
    outcome(attempt, row.owned, row.done, row.from_state, "completed")
}

/// One run for [`finish_completed_batch`].
#[derive(Debug, Clone, Copy)]
pub struct Completion<'a> {
    /// The run, as [`claim_next`](super::claim_next) or
    /// [`claim_next_batch`](super::claim_next_batch) handed it out.
    pub attempt: Attempt,
    /// Merged into the plan's `TASK_COMPLETED` event (`task_id` is set), e.g. billing figures.
    pub event_context: Option<&'a Value>,
}

/// How one plan of [`finish_completed_batch`] ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum FinishOutcome {
    /// Completed by this call.
    Completed,
    /// Not written: the attempt no longer owns the run (the reaper re-queued it, a retry or
    /// resume started another run). What [`finish_completed`] answers with [`Error::Superseded`].
    Superseded,
    /// Not written: the plan is owned by the attempt but not processing (stopped, already
    /// completed by an earlier call). What [`finish_completed`] answers with
    /// [`Error::InvalidTransition`].
    NotProcessing {
        /// The plan's state as text.
        state: Option<String>,
    },
    /// No such plan.
    NotFound,
}

/// The largest batch [`finish_completed_batch`] takes.
pub const MAX_FINISH_BATCH: usize = 1000;

/// [`finish_completed`] for many runs in one statement and one round trip: each plan whose
/// attempt still owns it and that is processing becomes `completed`, gets its own
/// `TASK_COMPLETED` event (with its own context) and releases its worker; every other plan is
/// left untouched and reported — the ownership check is per plan, so a plan the reaper took from
/// this worker in the meantime is not finished by it. Returns one [`FinishOutcome`] per run, in
/// the order given.
///
/// The plans are locked in id order, so concurrent batches over overlapping plans cannot
/// deadlock. [`Error::BatchSize`] when `runs` is empty or longer than [`MAX_FINISH_BATCH`];
/// [`Error::InvalidInput`] when a plan appears twice. Nothing is written in either case.
#[tracing::instrument(target = "shared_db::planexe::plans", skip_all, fields(n = runs.len()))]
pub async fn finish_completed_batch(
    ex: impl PgExecutor<'_>,
    runs: &[Completion<'_>],
) -> Result<Vec<(Uuid, FinishOutcome)>> {
    if !(1..=MAX_FINISH_BATCH).contains(&runs.len()) {
        return Err(Error::BatchSize {
            requested: runs.len(),
            max: MAX_FINISH_BATCH,
        });
    }
    let ids: Vec<Uuid> = runs.iter().map(|r| r.attempt.plan_id).collect();
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    if unique.len() != ids.len() {
        return Err(Error::invalid_input("a plan appears twice in the batch"));
    }
    let tokens: Vec<Uuid> = runs.iter().map(|r| r.attempt.token).collect();
    let contexts: Vec<String> = runs
        .iter()
        .map(|r| {
            let id = r.attempt.plan_id;
            self::event_context(r.event_context, json!({ "task_id": id.to_string() }))
        })
        .collect();
    let rows = sqlx::query!(
        r#"WITH input AS (
               SELECT id, token, ctx, ord
               FROM unnest($1::uuid[], $2::uuid[], $3::text[]) WITH ORDINALITY
                    AS i(id, token, ctx, ord)),
           cur AS (
               -- the plans, locked in id order (no deadlock between overlapping batches)
               SELECT p.id, p.state, p.run_attempt FROM plans p
               WHERE p.id = ANY($1::uuid[])
               ORDER BY p.id
               FOR UPDATE OF p),
           upd AS (
               -- only the runs still owned and processing
               UPDATE plans p
                  SET state = 'completed', progress_percentage = 100, progress_message = 'Completed',
                      steps_completed = p.steps_total, current_step = 'Completed',
                      last_progress_at = now() AT TIME ZONE 'utc'
               FROM cur JOIN input ON input.id = cur.id
               WHERE p.id = cur.id AND cur.run_attempt = input.token AND cur.state = 'processing'
               RETURNING p.id),
           event AS (
               -- one TASK_COMPLETED per plan completed, with its own context
               INSERT INTO events ("timestamp", event_type, message, context)
               SELECT now() AT TIME ZONE 'utc', 'TASK_COMPLETED', 'Processing -> Completed',
                      input.ctx::json
               FROM upd JOIN input ON input.id = upd.id),
           release AS (
               UPDATE workers SET current_task_id = NULL
               WHERE current_task_id IN (SELECT upd.id::text FROM upd))
           -- one answer per run given, in the order given
           SELECT input.id AS "id!", cur.id IS NOT NULL AS "found!",
                  cur.state::text AS from_state,
                  cur.run_attempt IS NOT DISTINCT FROM input.token AS "owned!",
                  EXISTS (SELECT 1 FROM upd WHERE upd.id = input.id) AS "done!"
           FROM input LEFT JOIN cur ON cur.id = input.id
           ORDER BY input.ord"#,
        &ids,
        &tokens,
        &contexts,
    )
    .fetch_all(ex)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let outcome = if !r.found {
                FinishOutcome::NotFound
            } else if !r.owned {
                FinishOutcome::Superseded
            } else if r.done {
                FinishOutcome::Completed
            } else {
                FinishOutcome::NotProcessing {
                    state: r.from_state,
                }
            };
            (r.id, outcome)
        })
        .collect())
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
/// Refused unless processing or stopped; [`Error::Superseded`] (nothing written) when `attempt`
/// no longer owns the run.
#[tracing::instrument(target = "shared_db::planexe::plans", skip_all, fields(id = %attempt.plan_id))]
pub async fn finish_failed(
    ex: impl PgExecutor<'_>,
    attempt: Attempt,
    failure: &Failure<'_>,
    event_context: Option<&Value>,
) -> Result<PlanState> {
    let id = attempt.plan_id;
    let ctx = self::event_context(
        event_context,
        json!({ "task_id": id.to_string(), "failure_reason": failure.reason }),
    );
    // The CASE has a branch typed by the column (`WHEN false THEN p.state`), so PostgreSQL types the
    // string literals as the column's enum, whether it is called planstate or taskstate.
    let row = sqlx::query!(
        r#"WITH cur AS (SELECT id, state, run_attempt FROM plans WHERE id = $1 FOR UPDATE),
           upd AS (
               UPDATE plans p
                  SET state = CASE WHEN p.stop_requested IS TRUE OR cur.state = 'stopped'
                                   THEN 'stopped' WHEN false THEN p.state ELSE 'failed' END,
                      failure_reason = $2, failed_step = coalesce($3, p.current_step),
                      error_message = $4, recoverable = $5,
                      progress_message = CASE WHEN p.stop_requested IS TRUE OR cur.state = 'stopped'
                                              THEN 'Stopped' ELSE 'Failed' END
               FROM cur
               WHERE p.id = cur.id AND cur.run_attempt = $7
                 AND cur.state IN ('processing', 'stopped')
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
           SELECT cur.state::text AS from_state, (SELECT state FROM upd) AS "new_state?",
                  cur.run_attempt IS NOT DISTINCT FROM $7 AS "owned!"
           FROM cur"#,
        id,
        clean_text(failure.reason, 64),
        clean_opt(failure.failed_step, 128),
        clean_text(failure.error_message, 256),
        failure.recoverable,
        ctx,
        attempt.token,
    )
    .fetch_optional(ex)
    .await?
    .ok_or(Error::NotFound)?;
    if !row.owned {
        return Err(attempt.superseded());
    }
    row.new_state
        .ok_or_else(|| transition(row.from_state, "failed"))
}

/// Finish a run that ended on a stop request: state `stopped`, appends `TASK_FAILED`
/// ("Processing -> Stopped") and releases the worker. One round trip. Refused unless processing or
/// stopped; [`Error::Superseded`] (nothing written) when `attempt` no longer owns the run.
#[tracing::instrument(target = "shared_db::planexe::plans", skip_all, fields(id = %attempt.plan_id))]
pub async fn finish_stopped(
    ex: impl PgExecutor<'_>,
    attempt: Attempt,
    event_context: Option<&Value>,
) -> Result<()> {
    let id = attempt.plan_id;
    let ctx = self::event_context(event_context, json!({ "task_id": id.to_string() }));
    let row = sqlx::query!(
        r#"WITH cur AS (SELECT id, state, run_attempt FROM plans WHERE id = $1 FOR UPDATE),
           upd AS (
               UPDATE plans p SET state = 'stopped', progress_message = 'Stopped'
               FROM cur
               WHERE p.id = cur.id AND cur.run_attempt = $3
                 AND cur.state IN ('processing', 'stopped')
               RETURNING p.id),
           event AS (
               INSERT INTO events ("timestamp", event_type, message, context)
               SELECT now() AT TIME ZONE 'utc', 'TASK_FAILED', 'Processing -> Stopped',
                      $2::text::json
               FROM upd),
           release AS (
               UPDATE workers SET current_task_id = NULL
               WHERE current_task_id = $1::uuid::text AND EXISTS (SELECT 1 FROM upd))
           SELECT cur.state::text AS from_state, EXISTS (SELECT 1 FROM upd) AS "done!",
                  cur.run_attempt IS NOT DISTINCT FROM $3 AS "owned!"
           FROM cur"#,
        id,
        ctx,
        attempt.token,
    )
    .fetch_optional(ex)
    .await?
    .ok_or(Error::NotFound)?;
    outcome(attempt, row.owned, row.done, row.from_state, "stopped")
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
#[tracing::instrument(target = "shared_db::planexe::plans", skip_all, fields(%id))]
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
#[tracing::instrument(target = "shared_db::planexe::plans", skip_all, fields(%id))]
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
                      last_seen_timestamp = now() AT TIME ZONE 'utc',
                      run_attempt = NULL, reaped_count = NULL
               FROM cur WHERE p.id = cur.id AND cur.state IN ('failed', 'stopped')
               RETURNING p.id),
           settle AS (
               -- close the previous attempt's usage rows (the one settle rule, migration 0071)
               SELECT planexe_settle_plan_usage(upd.id::text) AS n FROM upd),
           event AS (
               INSERT INTO events ("timestamp", event_type, message, context)
               SELECT now() AT TIME ZONE 'utc', 'TASK_PENDING', 'Retry -> Pending',
                      json_build_object('task_id', upd.id::text, 'retry', true)
               FROM upd)
           SELECT cur.state::text AS from_label, EXISTS (SELECT 1 FROM upd) AS "done!",
                  coalesce((SELECT n FROM settle), 0) AS "settled!"
           FROM cur"#,
        id,
    )
    .fetch_optional(ex)
    .await?
    .ok_or(Error::NotFound)?;
    // Done means the plan was failed or stopped; otherwise the stored label (an unknown one
    // included) is the refused transition's origin.
    match (
        row.done,
        row.from_label.as_deref().map(PlanState::from_label),
    ) {
        (true, Some(from)) => Ok(Requeued {
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
///
/// Parameters that Python wrote with a lone surrogate escape or a `\u0000` (which PostgreSQL
/// cannot de-escape) are read through `planexe_json_lossy` (migration 0048): the plan resumes,
/// its other keys kept, a lone surrogate rewritten as U+FFFD and a NUL removed.
#[tracing::instrument(target = "shared_db::planexe::plans", skip_all, fields(%id))]
pub async fn resume(ex: impl PgExecutor<'_>, id: Uuid) -> Result<Requeued> {
    let row = sqlx::query!(
        r#"WITH cur AS (
               SELECT id, state, planexe_json_lossy(parameters) AS params
               FROM plans WHERE id = $1 FOR UPDATE),
           upd AS (
               UPDATE plans p
                  SET state = 'pending', stop_requested = false, stop_requested_timestamp = NULL,
                      failure_reason = NULL, failed_step = NULL, error_message = NULL,
                      recoverable = NULL, progress_message = 'Resuming',
                      last_seen_timestamp = now() AT TIME ZONE 'utc',
                      run_attempt = NULL, reaped_count = NULL,
                      parameters = (
                          (CASE WHEN jsonb_typeof(cur.params) = 'object'
                                THEN cur.params ELSE '{}'::jsonb END)
                          || jsonb_build_object(
                                 'resume', true,
                                 'resume_count',
                                 CASE WHEN jsonb_typeof(cur.params->'resume_count') = 'number'
                                      THEN floor((cur.params->>'resume_count')::numeric)::bigint
                                      ELSE 0 END + 1))::json
               FROM cur
               WHERE p.id = cur.id AND cur.state IN ('failed', 'stopped')
                 AND cur.params->>'pipeline_version' = $2
               RETURNING p.id),
           settle AS (
               -- close the previous attempt's usage rows (the one settle rule, migration 0071)
               SELECT planexe_settle_plan_usage(upd.id::text) AS n FROM upd),
           event AS (
               INSERT INTO events ("timestamp", event_type, message, context)
               SELECT now() AT TIME ZONE 'utc', 'TASK_PENDING', 'Resume -> Pending',
                      json_build_object('task_id', upd.id::text, 'resume', true)
               FROM upd)
           SELECT cur.state::text AS from_label,
                  cur.params->>'pipeline_version' AS pipeline_version,
                  EXISTS (SELECT 1 FROM upd) AS "done!",
                  coalesce((SELECT n FROM settle), 0) AS "settled!"
           FROM cur"#,
        id,
        PIPELINE_VERSION.to_string(),
    )
    .fetch_optional(ex)
    .await?
    .ok_or(Error::NotFound)?;
    match (
        row.done,
        row.from_label.as_deref().map(PlanState::from_label),
    ) {
        (true, Some(from)) => Ok(Requeued {
            from,
            settled_billing_rows: row.settled,
        }),
        (false, Some(PlanState::Failed | PlanState::Stopped)) => {
            Err(Error::invalid_input(format!(
                "plan {id} has pipeline version {}, resume needs {PIPELINE_VERSION}",
                row.pipeline_version.as_deref().unwrap_or("<none>")
            )))
        }
        _ => Err(transition(row.from_label, "pending (resume)")),
    }
}

/// What a finishing statement's `owned` / `done` / `from_state` mean for the caller: superseded
/// (nothing written) before refused, refused before done.
fn outcome(
    attempt: Attempt,
    owned: bool,
    done: bool,
    from_state: Option<String>,
    to: &str,
) -> Result<()> {
    if !owned {
        Err(attempt.superseded())
    } else if done {
        Ok(())
    } else {
        Err(transition(from_state, to))
    }
}
