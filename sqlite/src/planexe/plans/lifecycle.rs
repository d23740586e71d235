//! Lifecycle after the claim: the worker's [`update_progress`] and `finish_*`.

use rust_decimal::Decimal;
use serde_json::{Value, json};
use shared_db::planexe::PlanState;
use shared_db::planexe::plans::{Attempt, Progress, ProgressAck, event_context};
use shared_db::planexe::{clean_opt, clean_text};
use shared_db::{Error, Result};
use sqlx::SqliteConnection;

use super::ownership;
use crate::error::from_sqlx;
use crate::planexe::hex;
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

/// Finish a processing plan as `completed` (100 %, "Completed"), append `TASK_COMPLETED` with
/// `event_context` merged in, and release the worker, in one transaction. Refused with
/// [`Error::InvalidTransition`] unless processing; [`Error::Superseded`], nothing written, when
/// `attempt` no longer owns the run.
pub async fn finish_completed(
    conn: &mut SqliteConnection,
    attempt: Attempt,
    event_context_extra: Option<&Value>,
) -> Result<()> {
    let plan_text = attempt.plan_id.to_string();
    let ctx = event_context(event_context_extra, json!({ "task_id": plan_text }));
    transaction(conn, async |tx| {
        let done = sqlx::query!(
            r#"UPDATE plans
                  SET state = 'completed', progress_percentage = 100,
                      progress_message = 'Completed', steps_completed = steps_total,
                      current_step = 'Completed',
                      last_progress_at = strftime('%Y-%m-%d %H:%M:%f000', 'now')
               WHERE id = ?1 AND run_attempt = ?2 AND state = 'processing'"#,
            hex(attempt.plan_id),
            hex(attempt.token),
        )
        .execute(&mut *tx)
        .await
        .map_err(from_sqlx)?
        .rows_affected();
        if done == 0 {
            let (state, _) = ownership(tx, attempt).await?;
            return Err(Error::InvalidTransition {
                from: state.unwrap_or_else(|| "NULL".to_owned()),
                to: "completed".to_owned(),
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
        sqlx::query!(
            "UPDATE workers SET current_task_id = NULL WHERE current_task_id = ?1",
            plan_text,
        )
        .execute(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        Ok(())
    })
    .await
}
