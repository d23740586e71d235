//! Usage billing by attempt on every path: the one settle rule (retry, resume, reaper,
//! `settle_plan_usage`), a live attempt never settled, the reaper closing the final row, stopped
//! and failed runs billed for what they used (once), and no telemetry from a superseded run.

use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::json;
use shared_db::Error;
use shared_db::planexe::credit_history::{self, FinalBilling, PlanUsage};
use shared_db::planexe::plans::{self, Attempt, Plan};
use shared_db::planexe::token_metrics::{self, NewTokenMetric};
use shared_db::planexe::{EventType, events, user_account};
use shared_db::testing::TestDatabase;
use shared_db::worker::{Event, Pipeline, Step, Worker};
use sqlx::PgPool;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::{claim, queue_plan, user_with_credits};

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn usage(user: Uuid, attempt: Attempt, cost: &str) -> PlanUsage {
    PlanUsage {
        user_id: user,
        attempt,
        api_key_id: None,
        cost: d(cost),
        succeeded: true,
    }
}

async fn balance(pool: &PgPool, user: Uuid) -> anyhow::Result<Decimal> {
    Ok(user_account::get(pool, user).await?.credits_balance)
}

#[tokio::test]
async fn settling_a_live_attempt_is_refused_so_it_is_never_billed_twice() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let user = user_with_credits(pool, "payer", d("100")).await;
    let plan = queue_plan(pool, &user.to_string(), "p").await;
    let run = claim(pool, "w").await;
    let mut conn = pool.acquire().await?;
    credit_history::bill_usage_progress(&mut conn, &usage(user, run, "5")).await?;

    match credit_history::settle_plan_usage(pool, plan).await {
        Err(Error::InvalidTransition { from, .. }) => assert_eq!(from, "processing"),
        other => panic!("expected InvalidTransition, got {other:?}"),
    }
    // The attempt goes on: its cumulative cost 6 is billed as 6 in all, not 5 + 6.
    assert_eq!(
        credit_history::bill_usage_progress(&mut conn, &usage(user, run, "6")).await?,
        d("1")
    );
    assert_eq!(balance(pool, user).await?, d("94"));

    // Once the run is over it settles; a removed plan is NotFound.
    plans::finish_completed(pool, run, None).await?;
    assert_eq!(credit_history::settle_plan_usage(pool, plan).await?, 2);
    assert!(matches!(
        credit_history::settle_plan_usage(pool, Uuid::new_v4()).await,
        Err(Error::NotFound)
    ));
    Ok(())
}

#[tokio::test]
async fn the_reaper_settles_the_final_row_so_the_next_attempt_pays_its_completion_fee()
-> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let user = user_with_credits(pool, "payer", d("100")).await;
    let plan = queue_plan(pool, &user.to_string(), "p").await;
    let first = claim(pool, "w1").await;
    let mut conn = pool.acquire().await?;
    credit_history::bill_usage_progress(&mut conn, &usage(user, first, "2")).await?;
    // The worker bills its final usage (2 + fee 1) and dies before finishing the plan.
    credit_history::bill_usage_final(&mut conn, &usage(user, first, "3")).await?;
    sqlx::query!(
        "UPDATE plans SET last_progress_at = now() AT TIME ZONE 'utc' - interval '1 hour'
         WHERE id = $1",
        plan
    )
    .execute(pool)
    .await?;
    sqlx::query!(
        "UPDATE workers SET last_heartbeat_at = now() AT TIME ZONE 'utc' - interval '1 hour'"
    )
    .execute(pool)
    .await?;
    let reaped = plans::requeue_stale(pool, Duration::from_secs(60), 3).await?;
    assert_eq!(reaped.requeued, vec![plan]);
    let open = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM credit_history
           WHERE external_id = $1 AND source IN ('usage_billing_progress', 'usage_billing')"#,
        plan.to_string()
    )
    .fetch_one(pool)
    .await?;
    assert_eq!(
        open, 0,
        "the lost attempt's rows, its final row included, are settled"
    );

    // The next attempt is billed afresh, its completion fee included.
    let second = claim(pool, "w2").await;
    credit_history::bill_usage_progress(&mut conn, &usage(user, second, "2")).await?;
    assert_eq!(
        credit_history::bill_usage_final(&mut conn, &usage(user, second, "3")).await?,
        FinalBilling::Charged { charged: d("1") }
    );
    assert_eq!(balance(pool, user).await?, d("94"), "two attempts of 3");
    assert!(
        credit_history::reconcile(&mut *pool.acquire().await?)
            .await?
            .is_empty()
    );
    Ok(())
}

/// Two steps of 1 credit each; the first one asks for a stop of its own plan (as a user would
/// while it runs), or the second one fails.
struct Costly {
    pool: PgPool,
    stop_in_first_step: bool,
}

impl Pipeline for Costly {
    type Error = String;
    fn steps(&self) -> &[&'static str] {
        &["Outline", "Drafting"]
    }
    async fn run_step(&self, plan: &Plan, step: usize) -> Result<Step, String> {
        if step == 0 && self.stop_in_first_step {
            plans::request_stop(&self.pool, plan.id)
                .await
                .map_err(|e| e.to_string())?;
        }
        if step == 1 && !self.stop_in_first_step {
            return Err("the model refused".into());
        }
        Ok(Step::Done { cost: d("1") })
    }
    fn completion_fee(&self, _plan: &Plan) -> Decimal {
        d("10")
    }
}

/// Runs one worker until it has handled one plan; its events.
async fn run_one_plan(db: &TestDatabase, stop_in_first_step: bool) -> anyhow::Result<Vec<Event>> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (stop_tx, stop) = watch::channel(false);
    let worker = Worker::new(
        db.db().clone(),
        "w",
        Costly {
            pool: db.pool().clone(),
            stop_in_first_step,
        },
    )
    .idle_poll(Duration::from_millis(20))
    .events(tx);
    let running = tokio::spawn(worker.run(stop));
    let mut seen = Vec::new();
    while let Some(event) = rx.recv().await {
        let end = matches!(event, Event::Stopped { .. } | Event::Failed { .. });
        seen.push(event);
        if end {
            break;
        }
    }
    stop_tx.send(true)?;
    running.await??;
    Ok(seen)
}

async fn final_rows(pool: &PgPool, plan: Uuid) -> anyhow::Result<Vec<(String, Decimal)>> {
    Ok(sqlx::query!(
        r#"SELECT reason, delta FROM credit_history
           WHERE external_id = $1 AND source = 'usage_billing'"#,
        plan.to_string()
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|r| (r.reason, r.delta))
    .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_run_is_billed_for_the_step_it_finished_once() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let user = user_with_credits(pool, "payer", d("100")).await;
    let plan = queue_plan(pool, &user.to_string(), "p").await;
    let events = run_one_plan(&db, true).await?;
    assert!(
        matches!(events.last(), Some(Event::Stopped { .. })),
        "{events:?}"
    );
    assert_eq!(
        balance(pool, user).await?,
        d("99"),
        "the finished step's credit, no completion fee"
    );
    assert_eq!(
        final_rows(pool, plan).await?,
        vec![("plan_failed_usage_cost".to_owned(), d("-1"))]
    );
    assert!(
        credit_history::reconcile(&mut *pool.acquire().await?)
            .await?
            .is_empty()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_is_billed_for_its_usage_once_with_a_final_row() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let user = user_with_credits(pool, "payer", d("100")).await;
    let plan = queue_plan(pool, &user.to_string(), "p").await;
    let events = run_one_plan(&db, false).await?;
    assert!(
        matches!(events.last(), Some(Event::Failed { .. })),
        "{events:?}"
    );
    assert_eq!(balance(pool, user).await?, d("99"), "one step done");
    // The attempt's final row closes its billing (zero: the step was billed as it ran).
    assert_eq!(
        final_rows(pool, plan).await?,
        vec![("plan_failed_usage_cost".to_owned(), d("0"))]
    );
    assert_eq!(
        plans::get(pool, plan).await?.state,
        Some(shared_db::planexe::PlanState::Failed)
    );
    Ok(())
}

#[tokio::test]
async fn a_superseded_run_records_no_telemetry() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let plan = queue_plan(pool, "owner", "p").await;
    let run = claim(pool, "w").await;
    let metric = |attempt| NewTokenMetric {
        llm_model: "gpt",
        attempt: Some(attempt),
        input_tokens: Some(10),
        success: true,
        ..Default::default()
    };
    // While the run owns its plan, both are recorded under the plan.
    let e = events::append_for_run(pool, run, EventType::GenericEvent, "step", Some(&json!({})))
        .await?;
    assert_eq!(
        e.context.map(|c| c.0["task_id"].clone()),
        Some(json!(plan.to_string()))
    );
    let m = token_metrics::record(pool, &metric(run)).await?;
    assert_eq!(m.task_id, Some(plan.to_string()));

    // The user stops and retries: the run is taken, and whatever it sends is not recorded.
    plans::request_stop(pool, plan).await?;
    plans::retry(pool, plan).await?;
    assert!(matches!(
        events::append_for_run(pool, run, EventType::GenericEvent, "late", None).await,
        Err(Error::Superseded { plan_id }) if plan_id == plan
    ));
    assert!(matches!(
        token_metrics::record(pool, &metric(run)).await,
        Err(Error::Superseded { plan_id }) if plan_id == plan
    ));
    let (late_events, metrics) = (
        sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM events WHERE message = 'late'"#)
            .fetch_one(pool)
            .await?,
        sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM token_metrics"#)
            .fetch_one(pool)
            .await?,
    );
    assert_eq!((late_events, metrics), (0, 1));
    Ok(())
}
