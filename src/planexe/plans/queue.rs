//! Queue and claim: [`enqueue`], [`find_duplicate`], [`claim_next`], [`claim_next_batch`],
//! [`count_pending`] and the reaper [`requeue_stale`].
//!
//! **Writes to other tables** (same statement as the plan):
//!
//! | function | `events` | `workers` | `credit_history` |
//! | --- | --- | --- | --- |
//! | [`enqueue`] | `TASK_PENDING` | | |
//! | [`claim_next`] | `TASK_PROCESSING` | heartbeat, `current_task_id` = plan | |
//! | [`claim_next_batch`] | `TASK_PROCESSING` per plan | heartbeat, `current_task_id` = first plan | |
//! | [`requeue_stale`] | `TASK_PENDING` or `TASK_FAILED` (`reaped`) | `current_task_id` cleared | re-queued: open usage rows settled ([`settle_plan_usage`](crate::planexe::credit_history::settle_plan_usage)'s rule) |

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::PgExecutor;
use uuid::Uuid;

use super::{Attempt, Claimed, Plan, event_context};
use crate::error::{Error, Result};
use crate::planexe::{clean_opt, clean_text, ident, ident_opt, json_text, secs};

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
/// Queue a plan: the `pending` plan and its `TASK_PENDING` event are written by one statement, so
/// they commit together (the Python services use two commits). One round trip.
#[tracing::instrument(target = "shared_db::planexe::plans", skip_all)]
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
    let user_id = ident_opt("plan user id", new.user_id, 256)?;
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
        ctx,
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
///
/// `model_profile` is read through `planexe_json_lossy` (migration 0048), so a plan whose
/// parameters Python wrote with a lone surrogate escape or a `\u0000` is compared like any other
/// (a lone surrogate reads as U+FFFD, a NUL is removed, as in the NUL-stripped `model_profile`
/// looked up) instead of failing the lookup.
#[tracing::instrument(target = "shared_db::planexe::plans", skip_all, fields(%user_id))]
pub async fn find_duplicate(
    ex: impl PgExecutor<'_>,
    user_id: &str,
    prompt: &str,
    model_profile: Option<&str>,
    window: Duration,
) -> Result<Option<Uuid>> {
    let user_id = ident("plan user id", user_id, 256)?;
    let model_profile = model_profile.map(|m| clean_text(m, usize::MAX));
    let prompt = clean_text(prompt, usize::MAX);
    Ok(sqlx::query_scalar!(
        r#"SELECT id FROM plans
           WHERE user_id = $1 AND prompt = $2
             AND state IN ('pending', 'processing')
             AND timestamp_created >= (now() AT TIME ZONE 'utc') - make_interval(secs => $3)
             AND planexe_json_lossy(parameters)->>'model_profile' IS NOT DISTINCT FROM $4
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
/// it `processing` ("Picked up by server", 0 %, `last_progress_at = now`, so the reaper's stall
/// clock starts at the claim, not at the queueing), record it as the worker's `current_task_id` (a
/// heartbeat) and append the `TASK_PROCESSING` event, all in one statement. The run is stamped with
/// a fresh [`Attempt`] that every later write of this worker names. `None` when the queue is
/// empty. One round trip.
#[tracing::instrument(target = "shared_db::planexe::plans", skip_all, fields(%worker_id))]
pub async fn claim_next(ex: impl PgExecutor<'_>, worker_id: &str) -> Result<Option<Claimed>> {
    let worker_id = ident("worker id", worker_id, 255)?;
    if worker_id.is_empty() {
        return Err(Error::invalid_input("worker id must not be empty"));
    }
    let token = Uuid::new_v4();
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
                      progress_percentage = 0.0, run_attempt = $2,
                      last_progress_at = now() AT TIME ZONE 'utc'
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
        token,
    )
    .fetch_optional(ex)
    .await?;
    Ok(plan.map(|plan| Claimed {
        attempt: Attempt {
            plan_id: plan.id,
            token,
        },
        plan: plan.normalized(),
    }))
}

/// The largest batch [`claim_next_batch`] hands out in one call.
pub const MAX_CLAIM_BATCH: usize = 1000;

/// Claim up to `n` of the oldest pending plans without a stop request at once: [`claim_next`] for
/// a batch, in one statement and one round trip. Each plan is locked with `FOR UPDATE SKIP
/// LOCKED` (plans locked by a concurrent claim are skipped, so two workers never share a plan),
/// marked `processing` like [`claim_next`] does and stamped with its **own** [`Attempt`]: each
/// run is owned, finished, billed and reaped on its own. One `TASK_PROCESSING` event per plan.
///
/// The worker's row (`workers`) gets the heartbeat and, as `current_task_id`, the first plan of
/// the batch (the column holds one plan). The other plans of the batch are covered against the
/// reaper by their `last_progress_at` (set to the claim time) only, so a worker must start each
/// plan of a batch within the reaper's threshold (or heartbeat it with
/// [`heartbeat`](crate::planexe::workers::heartbeat)); a plan re-queued before its turn is
/// refused to the stale worker ([`Error::Superseded`], or [`FinishOutcome::Superseded`] from
/// [`finish_completed_batch`](super::finish_completed_batch)), as with a single claim.
///
/// Returns the plans in queue order (oldest first); fewer than `n` (possibly none) when the
/// queue holds fewer unlocked plans. [`Error::BatchSize`] when `n` is outside
/// 1..=[`MAX_CLAIM_BATCH`].
///
/// [`FinishOutcome::Superseded`]: super::FinishOutcome::Superseded
#[tracing::instrument(target = "shared_db::planexe::plans", skip_all, fields(%worker_id, n))]
pub async fn claim_next_batch(
    ex: impl PgExecutor<'_>,
    worker_id: &str,
    n: usize,
) -> Result<Vec<Claimed>> {
    if !(1..=MAX_CLAIM_BATCH).contains(&n) {
        return Err(Error::BatchSize {
            requested: n,
            max: MAX_CLAIM_BATCH,
        });
    }
    let worker_id = ident("worker id", worker_id, 255)?;
    if worker_id.is_empty() {
        return Err(Error::invalid_input("worker id must not be empty"));
    }
    let tokens: Vec<Uuid> = (0..n).map(|_| Uuid::new_v4()).collect();
    let plans = sqlx::query_as!(
        Plan,
        r#"WITH next AS (
               -- the oldest claimable plans nobody else has locked
               SELECT id, timestamp_created AS queued_at FROM plans
               WHERE state = 'pending' AND stop_requested IS NOT TRUE
               ORDER BY timestamp_created
               LIMIT cardinality($2::uuid[])
               FOR UPDATE SKIP LOCKED),
           numbered AS (
               -- queue order 1..k: plan k gets token k
               SELECT id, queued_at, row_number() OVER (ORDER BY queued_at, id) AS ord FROM next),
           tokens AS (
               SELECT token, ord FROM unnest($2::uuid[]) WITH ORDINALITY AS t(token, ord)),
           claimed AS (
               UPDATE plans p
                  SET state = 'processing', progress_message = 'Picked up by server',
                      progress_percentage = 0.0, run_attempt = tokens.token,
                      last_progress_at = now() AT TIME ZONE 'utc'
               FROM numbered JOIN tokens ON tokens.ord = numbered.ord
               WHERE p.id = numbered.id
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
                         numbered.queued_at, numbered.ord),
           beat AS (
               -- the heartbeat, naming the first plan of the batch
               INSERT INTO workers (id, started_at, last_heartbeat_at, current_task_id)
               SELECT $1, now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc', claimed.id::text
               FROM claimed ORDER BY claimed.ord LIMIT 1
               ON CONFLICT (id) DO UPDATE
                  SET last_heartbeat_at = EXCLUDED.last_heartbeat_at,
                      current_task_id = EXCLUDED.current_task_id),
           event AS (
               -- one TASK_PROCESSING per plan
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
           FROM claimed
           ORDER BY ord"#,
        worker_id,
        &tokens,
    )
    .fetch_all(ex)
    .await?;
    // Rows come in `ord` order 1..=k, and row k was given tokens[k - 1].
    Ok(plans
        .into_iter()
        .zip(tokens)
        .map(|(plan, token)| Claimed {
            attempt: Attempt {
                plan_id: plan.id,
                token,
            },
            plan: plan.normalized(),
        })
        .collect())
}

/// Queue depth: pending plans without a stop request, i.e. what [`claim_next`] would hand out.
/// Served by `ix_plans_pending_fifo`. One round trip.
#[tracing::instrument(target = "shared_db::planexe::plans", skip_all)]
pub async fn count_pending(ex: impl PgExecutor<'_>) -> Result<i64> {
    Ok(sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM plans
           WHERE state = 'pending' AND stop_requested IS NOT TRUE"#
    )
    .fetch_one(ex)
    .await?)
}
/// What [`requeue_stale`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Reaped {
    /// Plans put back in the queue (`pending`).
    pub requeued: Vec<Uuid>,
    /// Plans whose workers were lost more than `max_requeues` times: now `failed` with
    /// `failure_reason = 'worker_lost'`, recoverable.
    pub failed: Vec<Uuid>,
}

/// The reaper (the Python services have none): re-queue `processing` plans that no live worker
/// holds. A plan is reaped when no worker whose heartbeat is newer than `threshold` has it as
/// `current_task_id`, and its last progress (or creation) is also older than `threshold`.
///
/// A reaped plan goes back to `pending` at its old queue position with "Re-queued: worker lost";
/// its run attempt is cleared (so the lost worker, should it be alive after all, writes nothing
/// more: [`Error::Superseded`]), `reaped_count` goes up by one, the attempt's usage rows (the
/// incremental ones and a final one its worker may have written before it was lost) are settled
/// by the one settle rule (see
/// [`settle_plan_usage`](crate::planexe::credit_history::settle_plan_usage)), and a
/// `TASK_PENDING` event is appended. A plan already re-queued `max_requeues`
/// times since a user last queued it is not re-queued again but fails with `failure_reason =
/// 'worker_lost'`, `recoverable = true` and a `TASK_FAILED` event, so a plan that kills its
/// workers cannot cycle for ever. Either way the lost worker's `current_task_id` is cleared.
/// Plans locked by a concurrent claim or reaper are skipped. One statement, one round trip.
#[tracing::instrument(target = "shared_db::planexe::plans", skip_all)]
pub async fn requeue_stale(
    ex: impl PgExecutor<'_>,
    threshold: Duration,
    max_requeues: u32,
) -> Result<Reaped> {
    let rows = sqlx::query!(
        r#"WITH cutoff AS (
               SELECT (now() AT TIME ZONE 'utc') - make_interval(secs => $1) AS at),
           dead AS (
               SELECT p.id, coalesce(p.reaped_count, 0) AS reaped FROM plans p, cutoff
               WHERE p.state = 'processing'
                 AND coalesce(p.last_progress_at, p.timestamp_created, cutoff.at) <= cutoff.at
                 AND NOT EXISTS (
                     SELECT 1 FROM workers w
                     WHERE w.current_task_id = p.id::text AND w.last_heartbeat_at > cutoff.at)
               FOR UPDATE OF p SKIP LOCKED),
           requeued AS (
               UPDATE plans p
                  SET state = 'pending', progress_message = 'Re-queued: worker lost',
                      run_attempt = NULL, reaped_count = dead.reaped + 1
               FROM dead WHERE p.id = dead.id AND dead.reaped < $2
               RETURNING p.id),
           failed AS (
               UPDATE plans p
                  SET state = 'failed', progress_message = 'Failed',
                      failure_reason = 'worker_lost', failed_step = p.current_step,
                      error_message = format('Worker lost %s times; the reaper gave up',
                                             dead.reaped + 1),
                      recoverable = true, run_attempt = NULL
               FROM dead WHERE p.id = dead.id AND dead.reaped >= $2
               RETURNING p.id),
           release AS (
               UPDATE workers SET current_task_id = NULL
               WHERE current_task_id IN (SELECT id::text FROM requeued
                                         UNION ALL SELECT id::text FROM failed)),
           pending_event AS (
               INSERT INTO events ("timestamp", event_type, message, context)
               SELECT now() AT TIME ZONE 'utc', 'TASK_PENDING', 'Processing -> Pending (worker lost)',
                      json_build_object('task_id', requeued.id::text, 'reaped', true)
               FROM requeued),
           failed_event AS (
               INSERT INTO events ("timestamp", event_type, message, context)
               SELECT now() AT TIME ZONE 'utc', 'TASK_FAILED', 'Processing -> Failed (worker lost)',
                      json_build_object('task_id', failed.id::text, 'reaped', true,
                                        'failure_reason', 'worker_lost')
               FROM failed)
           -- a re-queued plan's attempt is closed by the one settle rule (migration 0071): its
           -- progress rows and a final row it may have written before its worker was lost
           SELECT id AS "id!", false AS "failed!",
                  planexe_settle_plan_usage(id::text) AS "settled!"
           FROM requeued
           UNION ALL
           SELECT id, true, 0 FROM failed"#,
        secs(threshold),
        i32::try_from(max_requeues).unwrap_or(i32::MAX),
    )
    .fetch_all(ex)
    .await?;
    let mut reaped = Reaped::default();
    for row in rows {
        if row.failed {
            reaped.failed.push(row.id);
        } else {
            reaped.requeued.push(row.id);
        }
    }
    Ok(reaped)
}
