//! Liveness: a claim starts the reaper's stall clock, and a worker heartbeats while a step runs,
//! so a healthy long step is never reaped.

use std::time::Duration;

use rust_decimal::Decimal;
use shared_db::planexe::plans::{self, Plan};
use shared_db::testing::TestDatabase;
use shared_db::worker::{Event, Pipeline, Step, Worker};
use tokio::sync::{mpsc, watch};

use crate::{claim, queue_plan};

#[tokio::test]
async fn a_claim_starts_the_stall_clock_so_a_plan_queued_long_ago_is_not_reaped_at_once()
-> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let plan = queue_plan(pool, "owner", "p").await;
    // Queued an hour ago (a long queue).
    sqlx::query!(
        "UPDATE plans SET timestamp_created = now() AT TIME ZONE 'utc' - interval '1 hour'
         WHERE id = $1",
        plan
    )
    .execute(pool)
    .await?;
    claim(pool, "w").await;
    let claimed = plans::get(pool, plan).await?;
    assert!(
        claimed.last_progress_at.is_some(),
        "the claim sets last_progress_at"
    );
    // Its worker misses a heartbeat: the plan has been running for seconds, not for an hour.
    sqlx::query!(
        "UPDATE workers SET last_heartbeat_at = now() AT TIME ZONE 'utc' - interval '20 minutes'"
    )
    .execute(pool)
    .await?;
    let reaped = plans::requeue_stale(pool, Duration::from_secs(10 * 60), 3).await?;
    assert!(reaped.requeued.is_empty(), "{reaped:?}");
    Ok(())
}

/// One step that takes `step` of wall time.
struct Slow {
    step: Duration,
}

impl Pipeline for Slow {
    type Error = std::convert::Infallible;
    fn steps(&self) -> &[&'static str] {
        &["Thinking hard"]
    }
    async fn run_step(&self, _plan: &Plan, _step: usize) -> Result<Step, Self::Error> {
        tokio::time::sleep(self.step).await;
        Ok(Step::Done { cost: Decimal::ONE })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_twice_as_long_as_the_reaper_threshold_completes_beside_a_reaping_worker()
-> anyhow::Result<()> {
    const THRESHOLD: Duration = Duration::from_secs(1);
    let db = TestDatabase::new().await?;
    let plan = queue_plan(db.pool(), "owner", "long").await;
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (stop_tx, stop) = watch::channel(false);

    let busy = Worker::new(
        db.db().clone(),
        "busy",
        Slow {
            step: THRESHOLD * 2 + Duration::from_millis(500),
        },
    )
    .idle_poll(Duration::from_millis(20))
    .heartbeat_every(THRESHOLD / 4)
    .events(events_tx.clone());
    let busy = tokio::spawn(busy.run(stop.clone()));
    // The reaping worker starts once the plan is claimed, and then reaps every 50 ms.
    loop {
        match events.recv().await {
            Some(Event::Claimed { .. }) => break,
            Some(_) => {}
            None => anyhow::bail!("the busy worker ended"),
        }
    }
    let reaper = Worker::new(
        db.db().clone(),
        "reaper",
        Slow {
            step: Duration::ZERO,
        },
    )
    .idle_poll(Duration::from_millis(50))
    .reaper(THRESHOLD)
    .events(events_tx);
    let reaper = tokio::spawn(reaper.run(stop));

    let mut seen = Vec::new();
    let outcome = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(event) = events.recv().await {
            seen.push(event.clone());
            match event {
                Event::Completed { plan: p, .. } if p == plan => return true,
                Event::Requeued { .. } | Event::Lost { .. } => return false,
                _ => {}
            }
        }
        false
    })
    .await?;
    stop_tx.send(true)?;
    busy.await??;
    reaper.await??;
    assert!(outcome, "the long step completed, not reaped: {seen:?}");
    let done = plans::get(db.pool(), plan).await?;
    assert_eq!(done.state, Some(shared_db::planexe::PlanState::Completed));
    assert_eq!(done.steps_completed, Some(1));
    Ok(())
}
