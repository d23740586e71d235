//! `plans` on SQLite: the queue ([`enqueue`], [`claim_next`], [`count_pending`]), run ownership
//! ([`update_progress`], [`finish_completed`], [`store_report_html`]: every worker write names its
//! [`Attempt`]), the reaper ([`requeue_stale`]) and reads ([`get`], [`fetch_report_html`]). The
//! row types and their meaning are [`shared_db::planexe::plans`]'s.
//!
//! **The claim without `SKIP LOCKED`.** SQLite has one writer at a time. [`claim_next`] runs in a
//! `BEGIN IMMEDIATE` transaction, so it holds the write lock from its first statement: the
//! `UPDATE … WHERE rowid = (oldest pending) … RETURNING` it runs sees every claim committed
//! before it, and no other claim runs until it commits. Two workers, in one process or in many
//! on the same file, therefore never get the same plan; a worker that finds the lock taken waits
//! under `busy_timeout` (the claim is short), and the contention shows up as latency, never as a
//! double claim or an error (see `sqlite/tests/planexe.rs`, several OS processes on one file).
//!
//! The heavy columns (`generated_report_html`, `run_zip_snapshot`, `run_track_activity_jsonl`)
//! are never part of [`Plan`]: rows select `<column> IS NOT NULL` flags, and only the `*_report_*`
//! functions move the report itself (SQLAlchemy's `deferred()`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use shared_db::planexe::plans::{
    Attempt, Claimed, Enqueued, NewPlan, Plan, Progress, ProgressAck, Reaped, event_context,
};
use shared_db::planexe::{PlanState, clean_opt, clean_text, ident, ident_opt, json_text};
use shared_db::{Error, Result};
use sqlx::SqliteConnection;
use uuid::Uuid;

use super::{hex, json, time_text, uuid};
use crate::error::from_sqlx;
use crate::tx::transaction;

/// A `plans` row as SQLite returns it (text ids, text numbers and JSON); [`PlanRow::into_plan`]
/// makes it the library's [`Plan`].
struct PlanRow {
    id: String,
    timestamp_created: Option<DateTime<Utc>>,
    state: Option<String>,
    prompt: Option<String>,
    progress_percentage: Option<String>,
    progress_message: Option<String>,
    steps_completed: Option<i32>,
    steps_total: Option<i32>,
    current_step: Option<String>,
    last_seen_timestamp: Option<DateTime<Utc>>,
    stop_requested: bool,
    stop_requested_timestamp: Option<DateTime<Utc>>,
    user_id: Option<String>,
    api_key_id: Option<String>,
    parameters: Option<String>,
    run_track_activity_bytes: Option<i32>,
    run_activity_overview_json: Option<String>,
    run_artifact_layout_version: Option<i32>,
    failure_reason: Option<String>,
    failed_step: Option<String>,
    error_message: Option<String>,
    recoverable: Option<bool>,
    last_progress_at: Option<DateTime<Utc>>,
    has_generated_report_html: bool,
    has_run_zip_snapshot: bool,
    has_run_track_activity_jsonl: bool,
}

impl PlanRow {
    fn into_plan(self) -> Result<Plan> {
        let pct = self
            .progress_percentage
            .map(|p| {
                p.parse::<Decimal>()
                    .or_else(|_| Decimal::from_scientific(&p))
                    .map(|d| d.round_dp(2))
                    .map_err(|e| Error::internal(format!("stored progress {p:?}: {e}")))
            })
            .transpose()?;
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

/// Queue a plan: the `pending` plan and its `TASK_PENDING` event in one transaction. Input rules
/// as on PostgreSQL (parameters a JSON object, owner id at most 256 characters, NUL stripped).
#[tracing::instrument(target = "shared_db_sqlite::planexe::plans", skip_all)]
pub async fn enqueue(conn: &mut SqliteConnection, new: &NewPlan<'_>) -> Result<Enqueued> {
    if let Some(p) = new.parameters
        && !p.is_object()
    {
        return Err(Error::invalid_input(
            "plan parameters must be a JSON object",
        ));
    }
    let id = Uuid::new_v4();
    let id_hex = hex(id);
    let prompt = clean_text(new.prompt, usize::MAX);
    let user_id = ident_opt("plan user id", new.user_id, 256)?;
    let ctx = event_context(
        new.event_context,
        json!({ "task_id": id.to_string(), "user_id": user_id }),
    );
    let progress_message = clean_opt(new.progress_message, 128);
    let api_key_id = new.api_key_id.map(|k| k.to_string());
    let parameters = json_text(new.parameters);
    transaction(conn, async |tx| {
        let created = sqlx::query_scalar!(
            r#"INSERT INTO plans (id, timestamp_created, state, prompt, progress_percentage,
                                  progress_message, last_seen_timestamp, stop_requested, user_id,
                                  api_key_id, parameters)
               VALUES (?1, strftime('%Y-%m-%d %H:%M:%f000', 'now'), 'pending', ?2, 0.0, ?3,
                       strftime('%Y-%m-%d %H:%M:%f000', 'now'), 0, ?4, ?5, ?6)
               RETURNING timestamp_created AS "timestamp_created!: DateTime<Utc>""#,
            id_hex,
            prompt,
            progress_message,
            user_id,
            api_key_id,
            parameters,
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        sqlx::query!(
            r#"INSERT INTO events ("timestamp", event_type, message, context)
               VALUES (strftime('%Y-%m-%d %H:%M:%f000', 'now'), 'TASK_PENDING', 'Plan queued', ?1)"#,
            ctx,
        )
        .execute(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        Ok(Enqueued {
            id,
            timestamp_created: created,
        })
    })
    .await
}

/// Claim the oldest pending plan without a stop request for `worker_id`: it becomes
/// `processing` ("Picked up by server", 0 %, the stall clock `last_progress_at` starts now) with
/// a fresh [`Attempt`], the worker's heartbeat row names it, and `TASK_PROCESSING` is appended,
/// in one `BEGIN IMMEDIATE` transaction (see the [module docs](self) for why no two workers get
/// the same plan). `None` when the queue is empty. FIFO by `timestamp_created`, then by insertion
/// order.
#[tracing::instrument(target = "shared_db_sqlite::planexe::plans", skip_all, fields(%worker_id))]
pub async fn claim_next(conn: &mut SqliteConnection, worker_id: &str) -> Result<Option<Claimed>> {
    let worker_id = ident("worker id", worker_id, 255)?;
    if worker_id.is_empty() {
        return Err(Error::invalid_input("worker id must not be empty"));
    }
    let token = Uuid::new_v4();
    let token_hex = hex(token);
    transaction(conn, async |tx| {
        // The oldest claimable plan, marked processing, in one statement under the write lock.
        let row = sqlx::query_as!(
            PlanRow,
            r#"UPDATE plans
                  SET state = 'processing', progress_message = 'Picked up by server',
                      progress_percentage = 0.0, run_attempt = ?1,
                      last_progress_at = strftime('%Y-%m-%d %H:%M:%f000', 'now')
               WHERE rowid = (SELECT rowid FROM plans
                              WHERE state = 'pending' AND stop_requested IS NOT 1
                              ORDER BY timestamp_created, rowid
                              LIMIT 1)
               RETURNING id AS "id!", timestamp_created AS "timestamp_created?: DateTime<Utc>",
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
                         run_track_activity_jsonl IS NOT NULL AS "has_run_track_activity_jsonl!: bool""#,
            token_hex,
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        let Some(row) = row else { return Ok(None) };
        let plan = row.into_plan()?;
        let plan_id = plan.id.to_string();
        // The worker's heartbeat names its plan.
        sqlx::query!(
            r#"INSERT INTO workers (id, started_at, last_heartbeat_at, current_task_id)
               VALUES (?1, strftime('%Y-%m-%d %H:%M:%f000', 'now'),
                       strftime('%Y-%m-%d %H:%M:%f000', 'now'), ?2)
               ON CONFLICT (id) DO UPDATE
                  SET last_heartbeat_at = excluded.last_heartbeat_at,
                      current_task_id = excluded.current_task_id"#,
            worker_id,
            plan_id,
        )
        .execute(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        let waited = plan
            .timestamp_created
            .map(|t| (Utc::now() - t).num_microseconds().unwrap_or(0) as f64 / 1e6);
        let ctx = json!({
            "task_id": plan_id,
            "user_id": plan.user_id,
            "worker_id": worker_id,
            "duration_between_pending_and_processing": waited,
        })
        .to_string();
        sqlx::query!(
            r#"INSERT INTO events ("timestamp", event_type, message, context)
               VALUES (strftime('%Y-%m-%d %H:%M:%f000', 'now'), 'TASK_PROCESSING',
                       'Pending -> Processing', ?1)"#,
            ctx,
        )
        .execute(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        Ok(Some(Claimed {
            attempt: Attempt {
                plan_id: plan.id,
                token,
            },
            plan,
        }))
    })
    .await
}

/// Queue depth: pending plans without a stop request (what [`claim_next`] hands out).
pub async fn count_pending(conn: &mut SqliteConnection) -> Result<i64> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!: i64" FROM plans
           WHERE state = 'pending' AND stop_requested IS NOT 1"#
    )
    .fetch_one(conn)
    .await
    .map_err(from_sqlx)
}

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

/// Where a worker write of `attempt` stands when it changed nothing: [`Error::NotFound`] without
/// the plan, [`Error::Superseded`] when another attempt (or none) owns it, else `Ok(state)`.
async fn ownership(
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

/// Store the run's report (a heavy, deferred column). [`Error::Superseded`], nothing written,
/// when `attempt` no longer owns the run; [`Error::NotFound`] without the plan.
pub async fn store_report_html(
    conn: &mut SqliteConnection,
    attempt: Attempt,
    html: &str,
) -> Result<()> {
    let html = clean_text(html, usize::MAX);
    transaction(conn, async |tx| {
        let done = sqlx::query!(
            "UPDATE plans SET generated_report_html = ?3 WHERE id = ?1 AND run_attempt = ?2",
            hex(attempt.plan_id),
            hex(attempt.token),
            html,
        )
        .execute(&mut *tx)
        .await
        .map_err(from_sqlx)?
        .rows_affected();
        if done == 0 {
            ownership(tx, attempt).await?;
        }
        Ok(())
    })
    .await
}

/// The report HTML (`None` if none is stored). [`Error::NotFound`] without the plan.
pub async fn fetch_report_html(conn: &mut SqliteConnection, id: Uuid) -> Result<Option<String>> {
    sqlx::query_scalar!(
        r#"SELECT generated_report_html AS "html?" FROM plans WHERE id = ?1"#,
        hex(id)
    )
    .fetch_optional(conn)
    .await
    .map_err(from_sqlx)?
    .ok_or(Error::NotFound)
}

/// The reaper, as [`shared_db::planexe::plans::requeue_stale`]: `processing` plans whose worker
/// has no heartbeat newer than `threshold` (and no progress for as long) go back to `pending`
/// with their attempt cleared (the lost worker's writes are [`Error::Superseded`] from now on),
/// their open usage rows settled, and a `TASK_PENDING` event; after `max_requeues` such losses a
/// plan fails (`worker_lost`, recoverable) instead. One transaction.
pub async fn requeue_stale(
    conn: &mut SqliteConnection,
    threshold: Duration,
    max_requeues: u32,
) -> Result<Reaped> {
    let cutoff = time_text(
        Utc::now() - chrono::Duration::from_std(threshold).unwrap_or(chrono::Duration::MAX),
    );
    let max = i64::from(max_requeues);
    transaction(conn, async |tx| {
        // Running plans no live worker names, stalled since before the cutoff.
        let dead = sqlx::query!(
            r#"SELECT p.id AS "id!", coalesce(p.reaped_count, 0) AS "reaped!: i64"
               FROM plans p
               WHERE p.state = 'processing'
                 AND coalesce(p.last_progress_at, p.timestamp_created, ?1) <= ?1
                 AND NOT EXISTS (
                     SELECT 1 FROM workers w
                     WHERE w.current_task_id = lower(substr(p.id, 1, 8) || '-' || substr(p.id, 9, 4)
                               || '-' || substr(p.id, 13, 4) || '-' || substr(p.id, 17, 4)
                               || '-' || substr(p.id, 21))
                       AND w.last_heartbeat_at > ?1)"#,
            cutoff,
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        let mut reaped = Reaped::default();
        for plan in dead {
            let id = uuid(&plan.id)?;
            let text = id.to_string();
            if plan.reaped < max {
                sqlx::query!(
                    r#"UPDATE plans SET state = 'pending', progress_message = 'Re-queued: worker lost',
                              run_attempt = NULL, reaped_count = ?2
                       WHERE id = ?1"#,
                    plan.id,
                    plan.reaped + 1,
                )
                .execute(&mut *tx)
                .await
                .map_err(from_sqlx)?;
                // The one settle rule (PostgreSQL planexe_settle_plan_usage).
                sqlx::query!(
                    r#"UPDATE credit_history SET source = 'usage_billing_settled'
                       WHERE external_id = ?1
                         AND source IN ('usage_billing_progress', 'usage_billing')"#,
                    text,
                )
                .execute(&mut *tx)
                .await
                .map_err(from_sqlx)?;
                let ctx = json!({ "task_id": text, "reaped": true }).to_string();
                sqlx::query!(
                    r#"INSERT INTO events ("timestamp", event_type, message, context)
                       VALUES (strftime('%Y-%m-%d %H:%M:%f000', 'now'), 'TASK_PENDING',
                               'Processing -> Pending (worker lost)', ?1)"#,
                    ctx,
                )
                .execute(&mut *tx)
                .await
                .map_err(from_sqlx)?;
                reaped.requeued.push(id);
            } else {
                let message = format!("Worker lost {} times; the reaper gave up", plan.reaped + 1);
                sqlx::query!(
                    r#"UPDATE plans SET state = 'failed', progress_message = 'Failed',
                              failure_reason = 'worker_lost', failed_step = current_step,
                              error_message = ?2, recoverable = 1, run_attempt = NULL
                       WHERE id = ?1"#,
                    plan.id,
                    message,
                )
                .execute(&mut *tx)
                .await
                .map_err(from_sqlx)?;
                let ctx = json!({ "task_id": text, "reaped": true, "failure_reason": "worker_lost" })
                    .to_string();
                sqlx::query!(
                    r#"INSERT INTO events ("timestamp", event_type, message, context)
                       VALUES (strftime('%Y-%m-%d %H:%M:%f000', 'now'), 'TASK_FAILED',
                               'Processing -> Failed (worker lost)', ?1)"#,
                    ctx,
                )
                .execute(&mut *tx)
                .await
                .map_err(from_sqlx)?;
                reaped.failed.push(id);
            }
            sqlx::query!(
                "UPDATE workers SET current_task_id = NULL WHERE current_task_id = ?1",
                text,
            )
            .execute(&mut *tx)
            .await
            .map_err(from_sqlx)?;
        }
        Ok(reaped)
    })
    .await
}
