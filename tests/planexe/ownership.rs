//! Run ownership: once a plan's run is taken from a worker (stop then retry, or the reaper), that
//! worker writes nothing and bills nothing, however long it keeps going. Only the current run's
//! writes land, and its usage is billed once.

use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::json;
use shared_db::Error;
use shared_db::planexe::credit_history::{self, FinalBilling, PlanUsage};
use shared_db::planexe::plans::{self, Artifacts, Attempt, Failure, Progress};
use shared_db::planexe::{PlanState, user_account, workers};
use shared_db::testing::TestDatabase;
use sqlx::PgPool;
use uuid::Uuid;

use crate::{claim, queue_plan, user_with_credits};

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn usage(user_id: Uuid, attempt: Attempt, cost: &str) -> PlanUsage {
    PlanUsage {
        user_id,
        attempt,
        api_key_id: None,
        cost: d(cost),
        succeeded: true,
    }
}

/// Everything a worker may send about its run, each refused as superseded; `worker` is the
/// stale worker's id.
pub(crate) async fn stale_worker_sends_everything(
    pool: &PgPool,
    worker: &str,
    user: Uuid,
    stale: Attempt,
) -> anyhow::Result<()> {
    let superseded = |what: &str, r: Result<(), Error>| match r {
        Err(Error::Superseded { plan_id }) => assert_eq!(plan_id, stale.plan_id, "{what}"),
        other => panic!("{what}: expected Superseded, got {other:?}"),
    };
    let step = Progress {
        percentage: d("90"),
        message: "stale progress",
        ..Default::default()
    };
    superseded(
        "progress",
        plans::update_progress(pool, stale, &step).await.map(drop),
    );
    superseded(
        "heartbeat",
        workers::heartbeat(pool, worker, Some(stale))
            .await
            .map(drop),
    );
    let stale_artifacts = Artifacts {
        report_html: Some("stale report"),
        zip_snapshot: Some(b"stale zip"),
        ..Default::default()
    };
    superseded(
        "artifacts",
        plans::store_artifacts(pool, stale, &stale_artifacts).await,
    );
    superseded(
        "zip",
        plans::store_zip_snapshot(pool, stale, b"stale zip").await,
    );
    let mut conn = pool.acquire().await?;
    superseded(
        "chunked zip",
        plans::store_zip_snapshot_chunked(&mut conn, stale, b"stale zip").await,
    );
    superseded(
        "progress billing",
        credit_history::bill_usage_progress(&mut conn, &usage(user, stale, "5"))
            .await
            .map(drop),
    );
    superseded(
        "final billing",
        credit_history::bill_usage_final(&mut conn, &usage(user, stale, "7"))
            .await
            .map(drop),
    );
    superseded(
        "completion",
        plans::finish_completed(pool, stale, Some(&json!({ "stale": true }))).await,
    );
    let failure = Failure {
        reason: "worker_error",
        error_message: "stale failure",
        ..Default::default()
    };
    superseded(
        "failure",
        plans::finish_failed(pool, stale, &failure, None)
            .await
            .map(drop),
    );
    superseded("stop", plans::finish_stopped(pool, stale, None).await);
    Ok(())
}

/// The current run does its work: progress, artifacts, final billing of `cost`, completion.
async fn current_worker_completes(
    pool: &PgPool,
    user: Uuid,
    run: Attempt,
    cost: &str,
) -> anyhow::Result<()> {
    let step = Progress {
        percentage: d("50"),
        message: "current progress",
        ..Default::default()
    };
    plans::update_progress(pool, run, &step).await?;
    let artifacts = Artifacts {
        report_html: Some("current report"),
        zip_snapshot: Some(b"current zip"),
        ..Default::default()
    };
    plans::store_artifacts(pool, run, &artifacts).await?;
    let mut conn = pool.acquire().await?;
    assert_eq!(
        credit_history::bill_usage_final(&mut conn, &usage(user, run, cost)).await?,
        FinalBilling::Charged { charged: d(cost) }
    );
    plans::finish_completed(pool, run, None).await?;
    Ok(())
}

/// Only the current run's writes are in the plan, and the open ledger holds its bill once.
async fn only_the_current_run_landed(pool: &PgPool, plan: Uuid, cost: &str) -> anyhow::Result<()> {
    let p = plans::get(pool, plan).await?;
    assert_eq!(p.state, Some(PlanState::Completed));
    assert_eq!(
        plans::fetch_report_html(pool, plan).await?.as_deref(),
        Some("current report")
    );
    assert_eq!(
        plans::fetch_zip_snapshot(pool, plan).await?.as_deref(),
        Some(&b"current zip"[..])
    );
    let ledger = sqlx::query!(
        r#"SELECT count(*) FILTER (WHERE source = 'usage_billing') AS "finals!",
                  coalesce(sum(delta) FILTER (WHERE source IN ('usage_billing',
                                                               'usage_billing_progress')), 0)
                      AS "open_usage!"
           FROM credit_history WHERE external_id = $1"#,
        plan.to_string()
    )
    .fetch_one(pool)
    .await?;
    assert_eq!(ledger.finals, 1, "the plan is billed once");
    assert_eq!(ledger.open_usage, -d(cost), "and only by the current run");
    let completions = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM events
           WHERE event_type = 'TASK_COMPLETED' AND context->>'task_id' = $1"#,
        plan.to_string()
    )
    .fetch_one(pool)
    .await?;
    assert_eq!(completions, 1);
    assert!(
        credit_history::reconcile(&mut *pool.acquire().await?)
            .await?
            .is_empty()
    );
    Ok(())
}

#[tokio::test]
async fn after_stop_and_retry_the_first_worker_still_reporting_writes_and_bills_nothing()
-> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let user = user_with_credits(pool, "payer", d("100")).await;
    let plan = queue_plan(pool, &user.to_string(), "p").await;

    // The first worker claims, reports a step and bills it.
    let first = claim(pool, "w1").await;
    let mut conn = pool.acquire().await?;
    let step_cost = PlanUsage {
        succeeded: false,
        ..usage(user, first, "1")
    };
    assert_eq!(
        credit_history::bill_usage_progress(&mut conn, &step_cost).await?,
        d("1")
    );
    // The user stops the plan and retries it; a second worker claims the new run.
    plans::request_stop(pool, plan).await?;
    plans::retry(pool, plan).await?;
    let second = claim(pool, "w2").await;
    assert_eq!(second.plan_id, plan);
    assert_ne!(second.token, first.token);

    // The first worker has not noticed and keeps going: every write is refused.
    stale_worker_sends_everything(pool, "w1", user, first).await?;
    current_worker_completes(pool, user, second, "2").await?;
    // ...even after the current run has ended.
    stale_worker_sends_everything(pool, "w1", user, first).await?;

    only_the_current_run_landed(pool, plan, "2").await?;
    // The first run's step (work really done) stays charged, settled; the second run's bill once.
    assert_eq!(
        user_account::get(pool, user).await?.credits_balance,
        d("97")
    );
    Ok(())
}

/// Ages a run as a worker that is slow, not dead, would: no heartbeat and no progress for ten
/// minutes (backdated in the database rather than waited for).
async fn make_it_look_lost(pool: &PgPool, worker: &str, plan: Uuid) -> anyhow::Result<()> {
    sqlx::query!(
        r#"UPDATE workers SET last_heartbeat_at = last_heartbeat_at - interval '10 minutes'
           WHERE id = $1"#,
        worker
    )
    .execute(pool)
    .await?;
    sqlx::query!(
        r#"UPDATE plans
              SET last_progress_at = (now() AT TIME ZONE 'utc') - interval '10 minutes',
                  timestamp_created = timestamp_created - interval '10 minutes'
           WHERE id = $1"#,
        plan
    )
    .execute(pool)
    .await?;
    Ok(())
}

const THRESHOLD: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_slow_worker_reaped_by_mistake_writes_and_bills_nothing_when_it_wakes_up()
-> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let user = user_with_credits(pool, "payer", d("100")).await;
    let plan = queue_plan(pool, &user.to_string(), "p").await;

    let slow = claim(pool, "slow").await;
    make_it_look_lost(pool, "slow", plan).await?;
    let reaped = plans::requeue_stale(pool, THRESHOLD, 3).await?;
    assert_eq!(
        reaped.requeued,
        [plan],
        "a false positive: the worker is alive"
    );
    let current = claim(pool, "fast").await;

    // The slow worker wakes up and carries on with its run.
    stale_worker_sends_everything(pool, "slow", user, slow).await?;
    current_worker_completes(pool, user, current, "3").await?;
    only_the_current_run_landed(pool, plan, "3").await?;
    assert_eq!(
        user_account::get(pool, user).await?.credits_balance,
        d("97")
    );
    let slow_worker = workers::list(pool, 200)
        .await?
        .into_iter()
        .find(|w| w.id == "slow")
        .expect("the slow worker's row");
    assert_eq!(
        slow_worker.current_task_id, None,
        "its refused heartbeat did not claim the plan back"
    );
    Ok(())
}

#[tokio::test]
async fn the_reaper_gives_up_after_max_requeues_and_fails_the_plan_with_a_reason()
-> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let plan = queue_plan(pool, "alice", "a plan that kills its workers").await;
    for lost in 1..=2 {
        claim(pool, &format!("w{lost}")).await;
        make_it_look_lost(pool, &format!("w{lost}"), plan).await?;
        let reaped = plans::requeue_stale(pool, THRESHOLD, 2).await?;
        assert_eq!(reaped.requeued, [plan], "requeue {lost} of 2");
    }
    let last = claim(pool, "w3").await;
    make_it_look_lost(pool, "w3", plan).await?;
    let reaped = plans::requeue_stale(pool, THRESHOLD, 2).await?;
    assert_eq!((reaped.requeued.len(), reaped.failed), (0, vec![plan]));

    let p = plans::get(pool, plan).await?;
    assert_eq!(p.state, Some(PlanState::Failed));
    assert_eq!(p.failure_reason.as_deref(), Some("worker_lost"));
    assert_eq!(
        p.error_message.as_deref(),
        Some("Worker lost 3 times; the reaper gave up")
    );
    assert_eq!(p.recoverable, Some(true));
    let failed_event = sqlx::query_scalar!(
        r#"SELECT message AS "m!" FROM events
           WHERE event_type = 'TASK_FAILED' AND context->>'task_id' = $1"#,
        plan.to_string()
    )
    .fetch_one(pool)
    .await?;
    assert_eq!(failed_event, "Processing -> Failed (worker lost)");
    assert!(matches!(
        plans::finish_completed(pool, last, None).await,
        Err(Error::Superseded { .. })
    ));

    // A user's retry starts the count afresh.
    plans::retry(pool, plan).await?;
    claim(pool, "w4").await;
    make_it_look_lost(pool, "w4", plan).await?;
    assert_eq!(
        plans::requeue_stale(pool, THRESHOLD, 2).await?.requeued,
        [plan]
    );
    Ok(())
}

#[tokio::test]
async fn a_plan_inserted_by_python_without_the_new_columns_is_claimed_and_owned()
-> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    // The Python model's INSERT names only the columns it maps.
    let id = Uuid::new_v4();
    sqlx::query!(
        r#"INSERT INTO plans (id, timestamp_created, state, prompt, progress_percentage,
                              progress_message, last_seen_timestamp, stop_requested, user_id,
                              parameters)
           VALUES ($1, now() AT TIME ZONE 'utc', 'pending', 'from python', 0.0, NULL,
                   now() AT TIME ZONE 'utc', false, 'py-user', '{"pipeline_version": 2}')"#,
        id
    )
    .execute(pool)
    .await?;
    // A Python ledger row leaves the idempotency columns NULL, twice over: no constraint trips.
    for _ in 0..2 {
        sqlx::query!(
            r#"INSERT INTO credit_history (id, user_id, delta, reason, source, external_id,
                                           created_at)
               VALUES (gen_random_uuid(), gen_random_uuid(), -1, 'plan_usage_in_progress',
                       'usage_billing_progress', $1, now() AT TIME ZONE 'utc')"#,
            id.to_string()
        )
        .execute(pool)
        .await?;
    }
    let run = claim(pool, "w").await;
    assert_eq!(run.plan_id, id);
    plans::finish_completed(pool, run, None).await?;
    assert_eq!(
        plans::status(pool, id).await?.state,
        Some(PlanState::Completed)
    );
    // A Python service updating the row the way it does (no run_attempt) is not hindered.
    sqlx::query!(
        "UPDATE plans SET state = 'pending', progress_message = 'Retry' WHERE id = $1",
        id
    )
    .execute(pool)
    .await?;
    Ok(())
}
