//! A PlanExe-style queue worker on shared-db (feature `worker`): the service supplies the
//! pipeline, [`shared_db::worker::Worker`] does the heartbeats, claims, progress, billing and
//! finishing, and a Ctrl-C stops it gracefully (the plan in hand is finished first; a worker
//! killed outright is handled by the reaper, which this worker runs too).
//!
//! ```sh
//! cargo run --example worker                     # DATABASE_URL (or .env), else the embedded cluster
//! WORKER_ID=worker-7 cargo run --example worker
//! ```
//!
//! Plans to work on: `cargo run --example service` and `POST /plans`, or `cargo run -- demo`.
//! The "pipeline" here just sleeps; replace `run_step` with real work.

use std::convert::Infallible;
use std::time::Duration;

use rust_decimal::Decimal;
use shared_db::planexe::plans::Plan;
use shared_db::worker::{Pipeline, Step, Worker};
use shared_db::{Config, Database};
use tokio::sync::watch;

/// Plans whose worker has been silent this long go back to the queue.
const REAPER_THRESHOLD: Duration = Duration::from_secs(120);

/// Three steps of half a second, 0.10 credits each.
struct Sleepy;

impl Pipeline for Sleepy {
    type Error = Infallible;

    fn steps(&self) -> &[&'static str] {
        &["Outline", "Drafting", "Review"]
    }

    async fn run_step(&self, plan: &Plan, step: usize) -> Result<Step, Infallible> {
        tracing::debug!(plan = %plan.id, step, "working");
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok(Step::Done {
            cost: Decimal::new(10, 2),
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = dotenvy::dotenv(); // optional
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .init();
    let worker_id = std::env::var("WORKER_ID")
        .unwrap_or_else(|_| format!("example-worker-{}", std::process::id()));
    let db = Database::connect_or_embedded(&Config::from_env()?).await?;
    db.migrate().await?;

    // Ctrl-C flips the flag; the loop notices between plans.
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("Ctrl-C: finishing the current plan, then stopping");
        let _ = stop_tx.send(true);
    });

    tracing::info!(%worker_id, "worker started");
    Worker::new(db.clone(), worker_id.clone(), Sleepy)
        .reaper(REAPER_THRESHOLD)
        .run(stop)
        .await?;
    tracing::info!(%worker_id, "worker stopped");
    db.close().await;
    Ok(())
}
