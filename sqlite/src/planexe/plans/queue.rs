//! Queue and claim: [`enqueue`], [`find_duplicate`], [`claim_next`], [`claim_next_batch`],
//! [`count_pending`] and the reaper [`requeue_stale`].
//!
//! **Writes to other tables**, in the same transaction:
//!
//! | function | `events` | `workers` | `credit_history` |
//! | --- | --- | --- | --- |
//! | [`enqueue`] | `TASK_PENDING` | | |
//! | [`claim_next`], [`claim_next_batch`] | `TASK_PROCESSING` per plan | heartbeat, `current_task_id` = (first) plan | |
//! | [`requeue_stale`] | `TASK_PENDING` or `TASK_FAILED` (`reaped`) | `current_task_id` cleared | re-queued: open usage rows settled (`credit_history::settle_open_usage`) |

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use shared_db::planexe::plans::{
    Attempt, Claimed, Enqueued, MAX_CLAIM_BATCH, NewPlan, Reaped, event_context,
};
use shared_db::planexe::{clean_opt, clean_text, ident, ident_opt, json_text};
use shared_db::{Error, Result};
use sqlx::SqliteConnection;
use uuid::Uuid;

use super::PlanRow;
use crate::error::from_sqlx;
use crate::planexe::credit_history::settle_open_usage;
use crate::planexe::{hex, time_text, uuid};
use crate::tx::transaction;

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

/// Duplicate-submission lookup, as [`shared_db::planexe::plans::find_duplicate`]: the newest plan
/// of `user_id` with the same prompt and `parameters.model_profile` (compared as text, like
/// PostgreSQL's `->>`; `None` matches a plan without one), still pending or processing, created
/// within `window` of now. Parameters that are not valid JSON (another writer's) have no
/// profile, they never fail the lookup.
#[tracing::instrument(target = "shared_db_sqlite::planexe::plans", skip_all, fields(%user_id))]
pub async fn find_duplicate(
    conn: &mut SqliteConnection,
    user_id: &str,
    prompt: &str,
    model_profile: Option<&str>,
    window: Duration,
) -> Result<Option<Uuid>> {
    let user_id = ident("plan user id", user_id, 256)?;
    let model_profile = model_profile.map(|m| clean_text(m, usize::MAX));
    let prompt = clean_text(prompt, usize::MAX);
    let since = ago(window);
    let id = sqlx::query_scalar!(
        r#"SELECT id AS "id!" FROM plans
           WHERE user_id = ?1 AND prompt = ?2
             AND state IN ('pending', 'processing')
             AND timestamp_created >= ?3
             AND CASE WHEN json_valid(parameters)
                      THEN CAST(parameters ->> '$.model_profile' AS TEXT) END IS ?4
           ORDER BY timestamp_created DESC, rowid DESC
           LIMIT 1"#,
        user_id,
        prompt,
        since,
        model_profile,
    )
    .fetch_optional(conn)
    .await
    .map_err(from_sqlx)?;
    id.as_deref().map(uuid).transpose()
}

/// Claim the oldest pending plan without a stop request for `worker_id`: it becomes
/// `processing` ("Picked up by server", 0 %, the stall clock `last_progress_at` starts now) with
/// a fresh [`Attempt`], the worker's heartbeat row names it, and `TASK_PROCESSING` is appended,
/// in one `BEGIN IMMEDIATE` transaction (see the [module docs](super) for why no two workers get
/// the same plan). `None` when the queue is empty. FIFO by `timestamp_created`, then by insertion
/// order.
#[tracing::instrument(target = "shared_db_sqlite::planexe::plans", skip_all, fields(%worker_id))]
pub async fn claim_next(conn: &mut SqliteConnection, worker_id: &str) -> Result<Option<Claimed>> {
    let worker_id = worker(worker_id)?;
    let mut claimed = transaction(conn, async |tx| claim_in(tx, &worker_id, 1).await).await?;
    Ok(claimed.pop())
}

/// Claim up to `n` of the oldest pending plans without a stop request at once, as
/// [`shared_db::planexe::plans::claim_next_batch`]: each plan is marked `processing` like
/// [`claim_next`] does and stamped with its **own** [`Attempt`] (each run is owned, finished,
/// billed and reaped on its own), with one `TASK_PROCESSING` event per plan; the worker's row
/// gets the heartbeat and the first plan as `current_task_id`. One `BEGIN IMMEDIATE`
/// transaction, so two workers never share a plan. Plans in queue order; fewer than `n`
/// (possibly none) when the queue holds fewer. [`Error::BatchSize`] when `n` is outside
/// 1..=[`MAX_CLAIM_BATCH`].
#[tracing::instrument(target = "shared_db_sqlite::planexe::plans", skip_all, fields(%worker_id, n))]
pub async fn claim_next_batch(
    conn: &mut SqliteConnection,
    worker_id: &str,
    n: usize,
) -> Result<Vec<Claimed>> {
    if !(1..=MAX_CLAIM_BATCH).contains(&n) {
        return Err(Error::BatchSize {
            requested: n,
            max: MAX_CLAIM_BATCH,
        });
    }
    let worker_id = worker(worker_id)?;
    transaction(conn, async |tx| claim_in(tx, &worker_id, n).await).await
}

/// A worker id as the claim takes it: at most 255 characters, not empty.
fn worker(worker_id: &str) -> Result<String> {
    let worker_id = ident("worker id", worker_id, 255)?;
    if worker_id.is_empty() {
        return Err(Error::invalid_input("worker id must not be empty"));
    }
    Ok(worker_id)
}

/// The claim, inside the caller's write transaction: up to `n` plans, oldest first.
async fn claim_in(tx: &mut SqliteConnection, worker_id: &str, n: usize) -> Result<Vec<Claimed>> {
    let mut claimed = Vec::new();
    while claimed.len() < n {
        let token = hex_token();
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
            token.1,
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        let Some(row) = row else { break };
        let plan = row.into_plan()?;
        let plan_id = plan.id.to_string();
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
        claimed.push(Claimed {
            attempt: Attempt {
                plan_id: plan.id,
                token: token.0,
            },
            plan,
        });
    }
    // The worker's heartbeat names its (first) plan.
    if let Some(first) = claimed.first() {
        let plan_id = first.plan.id.to_string();
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
    }
    Ok(claimed)
}

/// The time `d` before now as the `DATETIME` columns hold it (the beginning of time for a
/// duration longer than the calendar).
fn ago(d: Duration) -> String {
    let back = chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
    time_text(
        Utc::now()
            .checked_sub_signed(back)
            .unwrap_or(DateTime::<Utc>::MIN_UTC),
    )
}

/// A fresh run token and its stored text.
fn hex_token() -> (Uuid, String) {
    let token = Uuid::new_v4();
    (token, hex(token))
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
    let cutoff = ago(threshold);
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
                // The attempt's usage rows, closed by the one settle rule.
                settle_open_usage(tx, id).await?;
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
