//! Run ownership holds whoever moves a plan: the Python services' own stop, retry, resume and
//! claim (reference planexe.md §9.3, §9.7–§9.9) do not know `run_attempt`, and the database
//! clears it for them (migration 0047). A Rust worker whose run they took writes and bills
//! nothing.

use rust_decimal::Decimal;
use shared_db::planexe::PlanState;
use shared_db::planexe::credit_history::{self, PlanUsage};
use shared_db::planexe::plans::{self, Attempt, Progress};
use shared_db::testing::TestDatabase;
use sqlx::PgPool;
use uuid::Uuid;

use crate::ownership::stale_worker_sends_everything;
use crate::{claim, queue_plan, user_with_credits};

/// §9.7: the frontend's `/plan/stop` on a running plan, as SQLAlchemy flushes it.
const PYTHON_STOP: &str = "UPDATE plans SET stop_requested = true,
        stop_requested_timestamp = now() AT TIME ZONE 'utc', state = 'stopped',
        progress_message = 'Stop requested by user.'
    WHERE plans.id = $1";

/// §9.8: the frontend's `/plan/retry`, one commit with the settle step of the same section.
const PYTHON_RETRY: [&str; 2] = [
    "UPDATE plans SET state = 'pending', stop_requested = false, stop_requested_timestamp = NULL,
        progress_percentage = 0, progress_message = '', steps_completed = 0, current_step = NULL,
        failure_reason = NULL, failed_step = NULL, error_message = NULL, recoverable = NULL,
        generated_report_html = NULL, run_zip_snapshot = NULL,
        last_seen_timestamp = now() AT TIME ZONE 'utc'
     WHERE plans.id = $1",
    "UPDATE credit_history SET source = 'usage_billing_settled'
     WHERE credit_history.source = 'usage_billing_progress' AND credit_history.external_id = $1",
];

/// §9.3: the Python worker's claim, inside a SAVEPOINT, then its UPDATE of the row it locked.
const PYTHON_CLAIM: [&str; 2] = [
    "SELECT plans.id FROM plans
     WHERE plans.state = 'pending' AND (plans.stop_requested IS false OR plans.stop_requested IS NULL)
     ORDER BY plans.timestamp_created ASC LIMIT 1 FOR UPDATE SKIP LOCKED",
    "UPDATE plans SET state = 'processing', progress_message = 'Picked up by server',
        progress_percentage = 0.0
     WHERE plans.id = $1",
];

/// §9.9: the MCP resume (no settle step), pending again with artifacts and progress kept.
const PYTHON_RESUME: &str = "UPDATE plans SET state = 'pending',
        parameters = '{\"pipeline_version\": 2, \"resume\": true, \"resume_count\": 1}'
    WHERE plans.id = $1";

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

async fn python(pool: &PgPool, sql: &'static str, plan: Uuid) {
    sqlx::query(sql).bind(plan).execute(pool).await.unwrap();
}

async fn python_text_key(pool: &PgPool, sql: &'static str, plan: Uuid) {
    sqlx::query(sql)
        .bind(plan.to_string())
        .execute(pool)
        .await
        .unwrap();
}

/// Ledger rows and their sum for `plan`, whatever their source.
async fn ledger(pool: &PgPool, plan: Uuid) -> (i64, Decimal) {
    let row = sqlx::query!(
        r#"SELECT count(*) AS "rows!", coalesce(sum(delta), 0) AS "sum!"
           FROM credit_history WHERE external_id = $1"#,
        plan.to_string()
    )
    .fetch_one(pool)
    .await
    .unwrap();
    (row.rows, row.sum)
}

/// A Rust worker claims the plan and bills one step of real work.
async fn rust_worker_starts(pool: &PgPool, user: Uuid) -> Attempt {
    let run = claim(pool, "rust-worker").await;
    plans::update_progress(
        pool,
        run,
        &Progress {
            percentage: d("10"),
            message: "step 1",
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let step = PlanUsage {
        user_id: user,
        attempt: run,
        api_key_id: None,
        cost: d("1"),
        succeeded: false,
    };
    credit_history::bill_usage_progress(&mut conn, &step)
        .await
        .unwrap();
    run
}

#[tokio::test]
async fn a_python_stop_retry_and_claim_take_the_run_from_the_rust_worker() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let user = user_with_credits(pool, "py-payer", d("100")).await;
    let plan = queue_plan(pool, &user.to_string(), "shared plan").await;
    let stale = rust_worker_starts(pool, user).await;

    // The Python frontend stops and retries the plan; a Python worker claims it.
    python(pool, PYTHON_STOP, plan).await;
    python(pool, PYTHON_RETRY[0], plan).await;
    python_text_key(pool, PYTHON_RETRY[1], plan).await;
    let mut tx = pool.begin().await?;
    let claimed: Uuid = sqlx::query_scalar(PYTHON_CLAIM[0])
        .fetch_one(&mut *tx)
        .await?;
    assert_eq!(claimed, plan);
    sqlx::query(PYTHON_CLAIM[1])
        .bind(plan)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    let before = ledger(pool, plan).await;

    // The Rust worker has not noticed: every write it sends is refused, none lands.
    stale_worker_sends_everything(pool, "rust-worker", user, stale).await?;

    let p = plans::get(pool, plan).await?;
    assert_eq!(
        p.state,
        Some(PlanState::Processing),
        "still the Python run's"
    );
    assert_eq!(p.progress_message.as_deref(), Some("Picked up by server"));
    assert_eq!(p.progress_percentage, Some(Decimal::ZERO));
    assert_eq!(plans::fetch_report_html(pool, plan).await?, None);
    assert_eq!(plans::fetch_zip_snapshot(pool, plan).await?, None);
    assert_eq!(ledger(pool, plan).await, before, "nothing billed");
    let finished = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM events
           WHERE event_type IN ('TASK_COMPLETED', 'TASK_FAILED')
             AND planexe_event_task_id(context) = $1"#,
        plan.to_string()
    )
    .fetch_one(pool)
    .await?;
    assert_eq!(finished, 0, "no finish event from the stale run");
    Ok(())
}

#[tokio::test]
async fn a_python_resume_takes_the_run_too_and_a_later_rust_claim_owns_it() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let user = user_with_credits(pool, "py-resumer", d("100")).await;
    let plan = queue_plan(pool, &user.to_string(), "resumed plan").await;
    let stale = rust_worker_starts(pool, user).await;

    python(pool, PYTHON_STOP, plan).await;
    python(pool, PYTHON_RESUME, plan).await;
    let before = ledger(pool, plan).await;
    stale_worker_sends_everything(pool, "rust-worker", user, stale).await?;
    assert_eq!(ledger(pool, plan).await, before, "nothing billed");

    let token: Option<Uuid> = sqlx::query_scalar("SELECT run_attempt FROM plans WHERE id = $1")
        .bind(plan)
        .fetch_one(pool)
        .await?;
    assert_eq!(token, None, "the database cleared the stale token");

    // The resume kept the stop request (the MCP resume does not clear it), so the user retries;
    // a Rust worker claims the plan: the trigger keeps its fresh token, and its writes land.
    python(pool, PYTHON_RETRY[0], plan).await;
    let current = claim(pool, "rust-worker-2").await;
    assert_eq!(current.plan_id, plan);
    plans::update_progress(
        pool,
        current,
        &Progress {
            percentage: d("60"),
            message: "resumed step",
            ..Default::default()
        },
    )
    .await?;
    plans::finish_completed(pool, current, None).await?;
    assert_eq!(
        plans::get(pool, plan).await?.state,
        Some(PlanState::Completed)
    );
    Ok(())
}
