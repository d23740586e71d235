//! Lifecycle after the claim: the worker's [`update_progress`] and `finish_*`, the user's
//! [`request_stop`], [`retry`] and [`resume`], with the state rules of
//! [`shared_db::planexe::plans`] (its table of transitions) and the same errors.
//!
//! Each function is one `BEGIN IMMEDIATE` transaction: the plan's row is changed by an
//! `UPDATE … WHERE <state and attempt allow it>`, and only when that changed nothing is the row
//! read again to say why (not found, superseded, refused), so a worker that lost its attempt
//! writes nothing. **Writes to other tables**, in the same transaction:
//!
//! | function | `events` | `workers` | `credit_history` |
//! | --- | --- | --- | --- |
//! | [`finish_completed`], [`finish_completed_batch`] | `TASK_COMPLETED` per plan completed | `current_task_id` cleared | |
//! | [`finish_failed`], [`finish_stopped`] | `TASK_FAILED` | `current_task_id` cleared | |
//! | [`retry`], [`resume`] | `TASK_PENDING` | | open usage rows settled (`credit_history::settle_open_usage`) |

use rust_decimal::Decimal;
use serde_json::{Map, Value, json};
use shared_db::planexe::PlanState;
use shared_db::planexe::plans::{
    Attempt, Completion, Failure, FinishOutcome, MAX_FINISH_BATCH, PIPELINE_VERSION, Progress,
    ProgressAck, Requeued, StopOutcome, event_context,
};
use shared_db::planexe::{clean_opt, clean_text, json_string};
use shared_db::{Error, Result};
use sqlx::SqliteConnection;
use uuid::Uuid;

use super::{ownership, transition};
use crate::error::from_sqlx;
use crate::planexe::credit_history::settle_open_usage;
use crate::planexe::{hex, json};
use crate::tx::transaction;

/// Record progress of a processing plan (percentage clamped to 0–100 and rounded to 2 places,
/// text cut to 128 characters, `last_progress_at = now`). [`ProgressAck::Abort`] when the plan is
/// no longer processing or a stop was requested; [`Error::Superseded`], nothing written, when
/// `attempt` no longer owns the run.
pub async fn update_progress(
    conn: &mut SqliteConnection,
    attempt: Attempt,
    progress: &Progress<'_>,
) -> Result<ProgressAck> {
    let pct = progress
        .percentage
        .clamp(Decimal::ZERO, Decimal::ONE_HUNDRED)
        .round_dp(2)
        .to_string();
    let message = clean_text(progress.message, 128);
    let step = clean_opt(progress.current_step, 128);
    transaction(conn, async |tx| {
        let done = sqlx::query!(
            r#"UPDATE plans
                  SET progress_percentage = ?3, progress_message = ?4, steps_completed = ?5,
                      steps_total = ?6, current_step = ?7,
                      last_progress_at = strftime('%Y-%m-%d %H:%M:%f000', 'now')
               WHERE id = ?1 AND run_attempt = ?2 AND state = 'processing'
                 AND stop_requested IS NOT 1"#,
            hex(attempt.plan_id),
            hex(attempt.token),
            pct,
            message,
            progress.steps_completed,
            progress.steps_total,
            step,
        )
        .execute(&mut *tx)
        .await
        .map_err(from_sqlx)?
        .rows_affected();
        if done == 1 {
            return Ok(ProgressAck::Recorded);
        }
        let (state, stop_requested) = ownership(tx, attempt).await?;
        Ok(ProgressAck::Abort {
            state: state.as_deref().map(PlanState::from_label),
            stop_requested,
        })
    })
    .await
}

/// Finish a processing plan as `completed` (100 %, "Completed", `steps_completed = steps_total`),
/// append `TASK_COMPLETED` with `event_context` merged in, and release the worker, in one
/// transaction. Refused with [`Error::InvalidTransition`] unless processing; [`Error::Superseded`],
/// nothing written, when `attempt` no longer owns the run.
pub async fn finish_completed(
    conn: &mut SqliteConnection,
    attempt: Attempt,
    event_context_extra: Option<&Value>,
) -> Result<()> {
    let ctx = event_context(
        event_context_extra,
        json!({ "task_id": attempt.plan_id.to_string() }),
    );
    transaction(conn, async |tx| {
        match complete_in(tx, attempt, &ctx).await? {
            FinishOutcome::Completed => Ok(()),
            FinishOutcome::Superseded => Err(Error::Superseded {
                plan_id: attempt.plan_id,
            }),
            FinishOutcome::NotProcessing { state } => Err(transition(state, "completed")),
            FinishOutcome::NotFound => Err(Error::NotFound),
        }
    })
    .await
}

/// Completes one run inside the caller's transaction (plan, `TASK_COMPLETED` with `ctx`, worker
/// released) when `attempt` owns it and it is processing; otherwise writes nothing and says why.
async fn complete_in(
    tx: &mut SqliteConnection,
    attempt: Attempt,
    ctx: &str,
) -> Result<FinishOutcome> {
    let id = hex(attempt.plan_id);
    let token = hex(attempt.token);
    let done = sqlx::query!(
        r#"UPDATE plans
              SET state = 'completed', progress_percentage = 100,
                  progress_message = 'Completed', steps_completed = steps_total,
                  current_step = 'Completed',
                  last_progress_at = strftime('%Y-%m-%d %H:%M:%f000', 'now')
           WHERE id = ?1 AND run_attempt = ?2 AND state = 'processing'"#,
        id,
        token,
    )
    .execute(&mut *tx)
    .await
    .map_err(from_sqlx)?
    .rows_affected();
    if done == 0 {
        let row = sqlx::query!(
            r#"SELECT state AS "state?", run_attempt IS ?2 AS "owned!: bool"
               FROM plans WHERE id = ?1"#,
            id,
            token,
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        return Ok(match row {
            None => FinishOutcome::NotFound,
            Some(r) if !r.owned => FinishOutcome::Superseded,
            Some(r) => FinishOutcome::NotProcessing { state: r.state },
        });
    }
    sqlx::query!(
        r#"INSERT INTO events ("timestamp", event_type, message, context)
           VALUES (strftime('%Y-%m-%d %H:%M:%f000', 'now'), 'TASK_COMPLETED',
                   'Processing -> Completed', ?1)"#,
        ctx,
    )
    .execute(&mut *tx)
    .await
    .map_err(from_sqlx)?;
    release(tx, attempt.plan_id).await?;
    Ok(FinishOutcome::Completed)
}

/// The worker whose current plan this was is idle again (`workers.current_task_id` holds the
/// hyphenated id).
async fn release(tx: &mut SqliteConnection, plan_id: Uuid) -> Result<()> {
    let text = plan_id.to_string();
    sqlx::query!(
        "UPDATE workers SET current_task_id = NULL WHERE current_task_id = ?1",
        text,
    )
    .execute(&mut *tx)
    .await
    .map_err(from_sqlx)?;
    Ok(())
}

/// [`finish_completed`] for many runs, as [`shared_db::planexe::plans::finish_completed_batch`]:
/// each plan whose attempt still owns it and that is processing becomes `completed` with its own
/// `TASK_COMPLETED` event (its own context) and releases its worker; every other plan is left
/// untouched and reported. One [`FinishOutcome`] per run, in the order given, all in one
/// transaction. [`Error::BatchSize`] when `runs` is empty or longer than [`MAX_FINISH_BATCH`];
/// [`Error::InvalidInput`] when a plan appears twice; nothing is written in either case.
#[tracing::instrument(target = "shared_db_sqlite::planexe::plans", skip_all)]
pub async fn finish_completed_batch(
    conn: &mut SqliteConnection,
    runs: &[Completion<'_>],
) -> Result<Vec<(Uuid, FinishOutcome)>> {
    if !(1..=MAX_FINISH_BATCH).contains(&runs.len()) {
        return Err(Error::BatchSize {
            requested: runs.len(),
            max: MAX_FINISH_BATCH,
        });
    }
    let mut unique: Vec<Uuid> = runs.iter().map(|r| r.attempt.plan_id).collect();
    unique.sort_unstable();
    unique.dedup();
    if unique.len() != runs.len() {
        return Err(Error::invalid_input("a plan appears twice in the batch"));
    }
    let contexts: Vec<String> = runs
        .iter()
        .map(|r| {
            let id = r.attempt.plan_id.to_string();
            event_context(r.event_context, json!({ "task_id": id }))
        })
        .collect();
    transaction(conn, async |tx| {
        let mut outcomes = Vec::with_capacity(runs.len());
        for (run, ctx) in runs.iter().zip(&contexts) {
            let outcome = complete_in(tx, run.attempt, ctx).await?;
            outcomes.push((run.attempt.plan_id, outcome));
        }
        Ok(outcomes)
    })
    .await
}

/// Finish a run that did not succeed, as [`shared_db::planexe::plans::finish_failed`]: state
/// `failed`, or `stopped` when a stop was requested (or the plan is already stopped), returned;
/// the diagnostics written (reason cut to 64 characters, failed step defaulting to the current
/// one, message cut to 256), `TASK_FAILED` ("Processing -> Failed" / "Processing -> Stopped")
/// appended and the worker released, in one transaction. Refused with
/// [`Error::InvalidTransition`] unless processing or stopped; [`Error::Superseded`], nothing
/// written, when `attempt` no longer owns the run.
#[tracing::instrument(target = "shared_db_sqlite::planexe::plans", skip_all)]
pub async fn finish_failed(
    conn: &mut SqliteConnection,
    attempt: Attempt,
    failure: &Failure<'_>,
    event_context_extra: Option<&Value>,
) -> Result<PlanState> {
    let ctx = event_context(
        event_context_extra,
        json!({ "task_id": attempt.plan_id.to_string(), "failure_reason": failure.reason }),
    );
    let reason = clean_text(failure.reason, 64);
    let step = clean_opt(failure.failed_step, 128);
    let message = clean_text(failure.error_message, 256);
    transaction(conn, async |tx| {
        // SET expressions read the row as it was, so both CASEs see the old state.
        let state = sqlx::query_scalar!(
            r#"UPDATE plans
                  SET state = CASE WHEN stop_requested IS 1 OR state = 'stopped'
                                   THEN 'stopped' ELSE 'failed' END,
                      progress_message = CASE WHEN stop_requested IS 1 OR state = 'stopped'
                                              THEN 'Stopped' ELSE 'Failed' END,
                      failure_reason = ?3, failed_step = coalesce(?4, current_step),
                      error_message = ?5, recoverable = ?6
               WHERE id = ?1 AND run_attempt = ?2 AND state IN ('processing', 'stopped')
               RETURNING state AS "state!""#,
            hex(attempt.plan_id),
            hex(attempt.token),
            reason,
            step,
            message,
            failure.recoverable,
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        let Some(state) = state else {
            let (from, _) = ownership(tx, attempt).await?;
            return Err(transition(from, "failed"));
        };
        let event = if state == "stopped" {
            "Processing -> Stopped"
        } else {
            "Processing -> Failed"
        };
        sqlx::query!(
            r#"INSERT INTO events ("timestamp", event_type, message, context)
               VALUES (strftime('%Y-%m-%d %H:%M:%f000', 'now'), 'TASK_FAILED', ?1, ?2)"#,
            event,
            ctx,
        )
        .execute(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        release(tx, attempt.plan_id).await?;
        Ok(PlanState::from_label(&state))
    })
    .await
}

/// Finish a run that ended on a stop request, as [`shared_db::planexe::plans::finish_stopped`]:
/// state `stopped`, `TASK_FAILED` ("Processing -> Stopped") appended, the worker released, in one
/// transaction. Refused with [`Error::InvalidTransition`] unless processing or stopped;
/// [`Error::Superseded`], nothing written, when `attempt` no longer owns the run.
#[tracing::instrument(target = "shared_db_sqlite::planexe::plans", skip_all)]
pub async fn finish_stopped(
    conn: &mut SqliteConnection,
    attempt: Attempt,
    event_context_extra: Option<&Value>,
) -> Result<()> {
    let ctx = event_context(
        event_context_extra,
        json!({ "task_id": attempt.plan_id.to_string() }),
    );
    transaction(conn, async |tx| {
        let done = sqlx::query!(
            r#"UPDATE plans SET state = 'stopped', progress_message = 'Stopped'
               WHERE id = ?1 AND run_attempt = ?2 AND state IN ('processing', 'stopped')"#,
            hex(attempt.plan_id),
            hex(attempt.token),
        )
        .execute(&mut *tx)
        .await
        .map_err(from_sqlx)?
        .rows_affected();
        if done == 0 {
            let (from, _) = ownership(tx, attempt).await?;
            return Err(transition(from, "stopped"));
        }
        sqlx::query!(
            r#"INSERT INTO events ("timestamp", event_type, message, context)
               VALUES (strftime('%Y-%m-%d %H:%M:%f000', 'now'), 'TASK_FAILED',
                       'Processing -> Stopped', ?1)"#,
            ctx,
        )
        .execute(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        release(tx, attempt.plan_id).await
    })
    .await
}

/// The plan's stored state label (`None`: the column is NULL); [`Error::NotFound`] without the
/// plan. Read inside the caller's write transaction, so it is the state the next statement sees.
async fn state_of(tx: &mut SqliteConnection, id: Uuid) -> Result<Option<String>> {
    sqlx::query_scalar!(
        r#"SELECT state AS "state?" FROM plans WHERE id = ?1"#,
        hex(id)
    )
    .fetch_optional(&mut *tx)
    .await
    .map_err(from_sqlx)?
    .ok_or(Error::NotFound)
}

/// Request a stop, as [`shared_db::planexe::plans::request_stop`]: a pending or processing plan
/// becomes `stopped` ("Stop requested by user.", `stop_requested`, its time now); a stopped one
/// answers [`StopOutcome::AlreadyStopped`]; any other state is refused with
/// [`Error::InvalidTransition`]. One transaction.
#[tracing::instrument(target = "shared_db_sqlite::planexe::plans", skip_all)]
pub async fn request_stop(conn: &mut SqliteConnection, id: Uuid) -> Result<StopOutcome> {
    transaction(conn, async |tx| {
        let done = sqlx::query!(
            r#"UPDATE plans
                  SET stop_requested = 1,
                      stop_requested_timestamp = strftime('%Y-%m-%d %H:%M:%f000', 'now'),
                      state = 'stopped', progress_message = 'Stop requested by user.'
               WHERE id = ?1 AND state IN ('pending', 'processing')"#,
            hex(id),
        )
        .execute(&mut *tx)
        .await
        .map_err(from_sqlx)?
        .rows_affected();
        if done == 1 {
            return Ok(StopOutcome::Stopped);
        }
        match state_of(tx, id).await? {
            Some(s) if s == "stopped" => Ok(StopOutcome::AlreadyStopped),
            from => Err(transition(from, "stopped")),
        }
    })
    .await
}

/// The `TASK_PENDING` event of a retry or resume, and the previous attempt's usage rows settled.
async fn requeued(tx: &mut SqliteConnection, id: Uuid, message: &str, key: &str) -> Result<i64> {
    let settled = settle_open_usage(tx, id).await?;
    let mut ctx = Map::new();
    ctx.insert("task_id".to_owned(), json!(id.to_string()));
    ctx.insert(key.to_owned(), json!(true));
    let ctx = json_string(&Value::Object(ctx));
    sqlx::query!(
        r#"INSERT INTO events ("timestamp", event_type, message, context)
           VALUES (strftime('%Y-%m-%d %H:%M:%f000', 'now'), 'TASK_PENDING', ?1, ?2)"#,
        message,
        ctx,
    )
    .execute(&mut *tx)
    .await
    .map_err(from_sqlx)?;
    Ok(i64::try_from(settled).unwrap_or(i64::MAX))
}

/// Retry a failed or stopped plan from scratch, as [`shared_db::planexe::plans::retry`]: state
/// `pending` at the back of the queue (`timestamp_created = now`), stop flag cleared, progress
/// zeroed, artifacts and diagnostics cleared (the overview to JSON `null`, as the Python services
/// do), the attempt and the reaper's count cleared; the previous attempt's usage rows settled and
/// `TASK_PENDING` appended, in one transaction. Refused with [`Error::InvalidTransition`]
/// (`to` = `pending (retry)`) unless failed or stopped.
#[tracing::instrument(target = "shared_db_sqlite::planexe::plans", skip_all)]
pub async fn retry(conn: &mut SqliteConnection, id: Uuid) -> Result<Requeued> {
    transaction(conn, async |tx| {
        let from = state_of(tx, id).await?;
        let Some(state @ (PlanState::Failed | PlanState::Stopped)) =
            from.as_deref().map(PlanState::from_label)
        else {
            return Err(transition(from, "pending (retry)"));
        };
        sqlx::query!(
            r#"UPDATE plans
                  SET state = 'pending',
                      timestamp_created = strftime('%Y-%m-%d %H:%M:%f000', 'now'),
                      stop_requested = 0, stop_requested_timestamp = NULL,
                      progress_percentage = 0, progress_message = NULL, steps_completed = 0,
                      steps_total = NULL, current_step = NULL,
                      generated_report_html = NULL, run_zip_snapshot = NULL,
                      run_track_activity_jsonl = NULL, run_track_activity_bytes = NULL,
                      run_activity_overview_json = 'null', run_artifact_layout_version = NULL,
                      failure_reason = NULL, failed_step = NULL, error_message = NULL,
                      recoverable = NULL, last_progress_at = NULL,
                      last_seen_timestamp = strftime('%Y-%m-%d %H:%M:%f000', 'now'),
                      run_attempt = NULL, reaped_count = NULL
               WHERE id = ?1"#,
            hex(id),
        )
        .execute(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        let settled = requeued(tx, id, "Retry -> Pending", "retry").await?;
        Ok(Requeued {
            from: state,
            settled_billing_rows: settled,
        })
    })
    .await
}

/// Resume a failed or stopped plan where it left off, as [`shared_db::planexe::plans::resume`]:
/// state `pending`, stop flag and diagnostics cleared, artifacts and progress kept,
/// `parameters.resume = true` and `parameters.resume_count` incremented (parameters that are not
/// a JSON object, or not JSON at all, start from `{}`; a lone surrogate escape Python wrote reads
/// as U+FFFD); the previous attempt's usage rows settled and `TASK_PENDING` appended, in one
/// transaction. Refused with [`Error::InvalidTransition`] (`to` = `pending (resume)`) unless
/// failed or stopped; [`Error::InvalidInput`] when `parameters.pipeline_version` is not
/// [`PIPELINE_VERSION`] (compared as text, as PostgreSQL's `->>` does: `2` and `"2"` pass).
#[tracing::instrument(target = "shared_db_sqlite::planexe::plans", skip_all)]
pub async fn resume(conn: &mut SqliteConnection, id: Uuid) -> Result<Requeued> {
    transaction(conn, async |tx| {
        let row = sqlx::query!(
            r#"SELECT state AS "state?", parameters AS "parameters?" FROM plans WHERE id = ?1"#,
            hex(id),
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(from_sqlx)?
        .ok_or(Error::NotFound)?;
        let Some(state @ (PlanState::Failed | PlanState::Stopped)) =
            row.state.as_deref().map(PlanState::from_label)
        else {
            return Err(transition(row.state, "pending (resume)"));
        };
        let mut params = match json(row.parameters).map(|j| j.into_inner()) {
            Some(Value::Object(map)) => map,
            _ => Map::new(),
        };
        // `->>` of PostgreSQL: a string's contents, any other value's JSON text.
        let version = params.get("pipeline_version").map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        if version.as_deref() != Some(PIPELINE_VERSION.to_string().as_str()) {
            return Err(Error::invalid_input(format!(
                "plan {id} has pipeline version {}, resume needs {PIPELINE_VERSION}",
                version.as_deref().unwrap_or("<none>")
            )));
        }
        let count = match params.get("resume_count") {
            // floor(), as PostgreSQL takes a fractional count; integers exactly.
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().map(|f| f.floor() as i64))
                .unwrap_or(0),
            _ => 0,
        };
        params.insert("resume".to_owned(), json!(true));
        params.insert("resume_count".to_owned(), json!(count + 1));
        let params = json_string(&Value::Object(params));
        sqlx::query!(
            r#"UPDATE plans
                  SET state = 'pending', stop_requested = 0, stop_requested_timestamp = NULL,
                      failure_reason = NULL, failed_step = NULL, error_message = NULL,
                      recoverable = NULL, progress_message = 'Resuming',
                      last_seen_timestamp = strftime('%Y-%m-%d %H:%M:%f000', 'now'),
                      run_attempt = NULL, reaped_count = NULL, parameters = ?2
               WHERE id = ?1"#,
            hex(id),
            params,
        )
        .execute(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        let settled = requeued(tx, id, "Resume -> Pending", "resume").await?;
        Ok(Requeued {
            from: state,
            settled_billing_rows: settled,
        })
    })
    .await
}
