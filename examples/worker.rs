//! A PlanExe-style queue worker on shared-db: heartbeat, claim, progress, finish, and a graceful
//! shutdown on Ctrl-C (the plan in hand is finished first; a worker killed outright is handled
//! by the reaper, `plans::requeue_stale`, which any process may run).
//!
//! ```sh
//! cargo run --example worker                     # DATABASE_URL, or the embedded cluster
//! WORKER_ID=worker-7 cargo run --example worker
//! ```
//!
//! Plans to work on: `cargo run --example service --features axum` and `POST /plans`, or
//! `cargo run -- demo`. The "pipeline" here just sleeps; replace `run_step` with real work.

use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::json;
use shared_db::planexe::credit_history::{self, PlanUsage};
use shared_db::planexe::plans::{self, Attempt, Failure, Plan, Progress, ProgressAck};
use shared_db::planexe::{user_account, workers};
use shared_db::{Database, Error};
use tokio::sync::watch;

const STEPS: [&str; 3] = ["Outline", "Drafting", "Review"];
const IDLE_POLL: Duration = Duration::from_secs(2);
const REAPER_THRESHOLD: Duration = Duration::from_secs(120);
const REAPER_MAX_REQUEUES: u32 = 3;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .init();
    let worker_id = std::env::var("WORKER_ID")
        .unwrap_or_else(|_| format!("example-worker-{}", std::process::id()));
    let db = Database::from_env().await?;
    db.migrate().await?;

    // Ctrl-C flips the flag; the loop notices between plans and between steps.
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("Ctrl-C: finishing the current plan, then stopping");
        let _ = stop_tx.send(true);
    });

    tracing::info!(%worker_id, "worker started");
    work(&db, &worker_id, stop).await?;
    workers::heartbeat(db.pool(), &worker_id, None).await?;
    tracing::info!(%worker_id, "worker stopped");
    db.close().await;
    Ok(())
}

/// The queue loop.
async fn work(
    db: &Database,
    worker_id: &str,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    while !*stop.borrow() {
        // Plans whose worker died (no heartbeat, no progress) go back to the queue.
        let reaped = plans::requeue_stale(db.pool(), REAPER_THRESHOLD, REAPER_MAX_REQUEUES).await?;
        for id in reaped.requeued {
            tracing::warn!(plan = %id, "re-queued a plan whose worker was lost");
        }
        for id in reaped.failed {
            tracing::error!(plan = %id, "failed a plan that lost its worker too often");
        }
        // Claiming also records the heartbeat and the plan as our current task.
        let Some(claimed) = plans::claim_next(db.pool(), worker_id).await? else {
            workers::heartbeat(db.pool(), worker_id, None).await?;
            tokio::select! {
                _ = tokio::time::sleep(IDLE_POLL) => {}
                _ = stop.changed() => {}
            }
            continue;
        };
        let (plan, run) = (&claimed.plan, claimed.attempt);
        tracing::info!(plan = %plan.id, "claimed");
        if let Err(e) = process(db, worker_id, plan, run).await {
            if let Some(Error::Superseded { .. }) = e.downcast_ref::<Error>() {
                // Stopped and retried, or re-queued by the reaper: another run owns the plan now.
                tracing::warn!(plan = %plan.id, "run taken away; dropping it");
                continue;
            }
            tracing::error!(plan = %plan.id, error = %e, "plan failed");
            plans::finish_failed(
                db.pool(),
                run,
                &Failure {
                    reason: "worker_error",
                    failed_step: None,
                    error_message: &e.to_string(),
                    recoverable: true,
                },
                None,
            )
            .await?;
        }
    }
    Ok(())
}

/// Runs one plan: a heartbeat and a progress report per step, incremental usage billing, then
/// final billing and completion. Stops early if the plan was stopped meanwhile.
async fn process(db: &Database, worker_id: &str, plan: &Plan, run: Attempt) -> anyhow::Result<()> {
    let payer = user_account::billing_user_for_plan(db.pool(), plan.user_id.as_deref()).await?;
    let api_key_id = plan.api_key_id.as_deref().and_then(|k| k.parse().ok());
    let mut cost = Decimal::ZERO;
    for (i, step) in STEPS.iter().enumerate() {
        run_step(step).await;
        cost += Decimal::new(10, 2);
        workers::heartbeat(db.pool(), worker_id, Some(run)).await?;
        let done = i as i32 + 1;
        let ack = plans::update_progress(
            db.pool(),
            run,
            &Progress {
                percentage: Decimal::from(done * 100) / Decimal::from(STEPS.len() as i32),
                message: step,
                steps_completed: Some(done),
                steps_total: Some(STEPS.len() as i32),
                current_step: Some(step),
            },
        )
        .await?;
        if let ProgressAck::Abort {
            stop_requested: true,
            ..
        } = ack
        {
            tracing::info!(plan = %plan.id, "stop requested");
            plans::finish_stopped(db.pool(), run, None).await?;
            return Ok(());
        }
        if let Some(user_id) = payer {
            let mut conn = db.acquire().await?;
            let usage = PlanUsage {
                user_id,
                attempt: run,
                api_key_id,
                cost,
                succeeded: false,
            };
            credit_history::bill_usage_progress(&mut conn, &usage).await?;
        }
        tracing::info!(plan = %plan.id, step, done, "progress");
    }
    if let Some(user_id) = payer {
        let mut conn = db.acquire().await?;
        let usage = PlanUsage {
            user_id,
            attempt: run,
            api_key_id,
            cost,
            succeeded: true,
        };
        credit_history::bill_usage_final(&mut conn, &usage).await?;
    }
    plans::finish_completed(
        db.pool(),
        run,
        Some(&json!({ "usage_cost": cost.to_string() })),
    )
    .await?;
    tracing::info!(plan = %plan.id, "completed");
    Ok(())
}

/// Stand-in for a pipeline step.
async fn run_step(step: &str) {
    tracing::debug!(step, "working");
    tokio::time::sleep(Duration::from_millis(500)).await;
}
