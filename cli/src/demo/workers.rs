//! Workers: heartbeat, race, progress, billing, death, reaper.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rust_decimal::Decimal;
use shared_db::Database;
use shared_db::planexe::events;
use shared_db::planexe::plans::{self, NewPlan};
use shared_db::planexe::user_account::{self};
use shared_db::planexe::workers;
use tokio::sync::{Barrier, mpsc, watch};
use uuid::Uuid;

use shared_db::planexe::plans::Plan;
use shared_db::worker::{Event, Pipeline, Step, Worker};
use std::sync::atomic::{AtomicBool, Ordering};

use super::api_server::ApiServer;
use super::frontend::Frontend;
use super::{Checks, heading, short};

/// Plans in the worker section (the API server's one plus these).
const EXTRA_PLANS: usize = 4;
/// Pipeline steps each plan goes through.
const STEPS: [&str; 4] = ["Outline", "Research", "Drafting", "Review"];
/// Pause between pipeline steps (the "work").
const STEP_TIME: Duration = Duration::from_millis(120);
/// Heartbeat age after which the reaper treats a worker as dead.
const REAPER_THRESHOLD: Duration = Duration::from_secs(2);

/// The demo's pipeline: each step sleeps and costs 0.25 credits, completion costs 1 credit.
/// Worker 2 crashes during step 3 of its first plan.
struct DemoPipeline {
    crash_on_first_plan: AtomicBool,
}

impl Pipeline for DemoPipeline {
    type Error = std::convert::Infallible;

    fn steps(&self) -> &[&'static str] {
        &STEPS
    }

    async fn run_step(&self, _plan: &Plan, step: usize) -> Result<Step, Self::Error> {
        if step == 2 && self.crash_on_first_plan.swap(false, Ordering::SeqCst) {
            return Ok(Step::Abandon); // the process is gone: no finish, no heartbeat
        }
        tokio::time::sleep(STEP_TIME).await;
        Ok(Step::Done {
            cost: Decimal::new(25, 2),
        })
    }

    fn completion_fee(&self, _plan: &Plan) -> Decimal {
        Decimal::ONE
    }
}

/// Workers: heartbeat, race, progress, billing, death, reaper.
pub(super) async fn run(
    db: &Database,
    fe: &Frontend,
    api: &ApiServer,
    checks: &mut Checks,
) -> anyhow::Result<Vec<Uuid>> {
    heading("workers");
    let user = fe.user_id.to_string();
    let mut plan_ids = vec![api.plan_id];
    let topics = [
        "a bakery in Lisbon",
        "a bike repair subscription",
        "a board-game café",
        "a language-exchange app",
    ];
    for topic in topics.iter().take(EXTRA_PLANS) {
        let prompt = format!("A business plan for {topic}");
        let q = plans::enqueue(
            db.pool(),
            &NewPlan {
                prompt: &prompt,
                user_id: Some(&user),
                api_key_id: Some(fe.api_key_id),
                ..Default::default()
            },
        )
        .await?;
        plan_ids.push(q.id);
    }
    println!(
        "{} plans pending ({}); 3 workers start",
        plan_ids.len(),
        plan_ids
            .iter()
            .map(|p| short(*p))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let balance_before = user_account::get(db.pool(), fe.user_id)
        .await?
        .credits_balance;

    let (note_tx, mut note_rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let barrier = Arc::new(Barrier::new(3));
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 1..=3 {
        let id = format!("demo-worker-{n}");
        workers::heartbeat(db.pool(), &id, None).await?;
        let pipeline = DemoPipeline {
            crash_on_first_plan: AtomicBool::new(n == 2),
        };
        let worker = Worker::new(db.clone(), id, pipeline)
            .idle_poll(Duration::from_millis(100))
            .events(note_tx.clone());
        let (barrier, stop) = (barrier.clone(), stop_rx.clone());
        tasks.spawn(async move {
            barrier.wait().await; // all three claim at the same moment
            worker.run(stop).await
        });
    }
    drop(note_tx);

    // Supervisor: follow the workers, run the reaper, stop the workers when every plan is done.
    let at = || t0.elapsed().as_secs_f64();
    let mut claims: Vec<(String, Uuid)> = Vec::new();
    let mut finished: BTreeMap<Uuid, String> = BTreeMap::new();
    let mut reaped: Vec<Uuid> = Vec::new();
    let mut died: Option<Uuid> = None;
    let mut reaper = tokio::time::interval(Duration::from_millis(250));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !plan_ids.iter().all(|p| finished.contains_key(p)) {
        if Instant::now() > deadline {
            bail!("workers did not finish the queue within 30 s");
        }
        tokio::select! {
            note = note_rx.recv() => match note {
                Some(Event::Claimed { worker, plan }) => {
                    println!("  {:>5.2}s {worker} claimed plan {}", at(), short(plan));
                    claims.push((worker, plan));
                }
                Some(Event::Progress { worker, plan, done, of, cost }) if plan == api.plan_id => {
                    println!(
                        "  {:>5.2}s {worker} progress {}: step {done}/{of} {:<9} {:>3}%  (billed so far {cost})",
                        at(),
                        short(plan),
                        STEPS[done - 1],
                        done * 100 / of
                    );
                }
                Some(Event::Completed { worker, plan, billed }) => {
                    println!(
                        "  {:>5.2}s {worker} completed plan {} (billed {billed} credits)",
                        at(),
                        short(plan)
                    );
                    finished.insert(plan, worker);
                }
                Some(Event::Abandoned { worker, plan, step }) => {
                    println!(
                        "  {:>5.2}s {worker} crashed during step {step} of plan {} (no more heartbeats)",
                        at(),
                        short(plan)
                    );
                    died = Some(plan);
                }
                Some(Event::Stopped { plan, .. } | Event::Lost { plan, .. } | Event::Failed { plan, .. }) => {
                    bail!("plan {} did not complete", short(plan));
                }
                Some(_) => {}
                None => bail!("every worker stopped before the queue was done"),
            },
            _ = reaper.tick() => {
                let reaped_now = plans::requeue_stale(
                    db.pool(),
                    REAPER_THRESHOLD,
                    shared_db::worker::REAPER_MAX_REQUEUES,
                )
                .await?;
                for id in reaped_now.requeued {
                    println!(
                        "  {:>5.2}s reaper: plan {} held by a worker silent for > {}s → re-queued",
                        at(),
                        short(id),
                        REAPER_THRESHOLD.as_secs()
                    );
                    reaped.push(id);
                }
            }
        }
    }
    let _ = stop_tx.send(true);
    while let Some(joined) = tasks.join_next().await {
        joined.context("worker task panicked")??;
    }
    println!(
        "queue drained in {:.1} s; workers shut down gracefully",
        t0.elapsed().as_secs_f64()
    );

    let first_round: Vec<Uuid> = claims.iter().take(3).map(|(_, p)| *p).collect();
    let mut distinct = first_round.clone();
    distinct.sort();
    distinct.dedup();
    checks.check(
        distinct.len() == 3,
        "the three workers' simultaneous first claims got three different plans",
    );
    let rescued_by = died.and_then(|p| finished.get(&p));
    checks.check(
        died.is_some_and(|p| reaped.contains(&p)) && rescued_by.is_some(),
        format!(
            "the dead worker's plan was re-queued by the reaper and finished by {}",
            rescued_by.map(String::as_str).unwrap_or("nobody")
        ),
    );
    let balance_after = user_account::get(db.pool(), fe.user_id)
        .await?
        .credits_balance;
    println!(
        "Ada's balance: {balance_before} → {balance_after} credits (usage billing, incl. the crashed attempt's steps)"
    );

    let showcase = died.unwrap_or(api.plan_id);
    println!(
        "events timeline of plan {} (the re-queued one):",
        short(showcase)
    );
    let timeline = events::list_by_plan(db.pool(), showcase, 50).await?;
    let origin = timeline.first().map(|e| e.timestamp);
    for e in &timeline {
        let at = origin
            .map(|o| (e.timestamp - o).num_milliseconds() as f64 / 1000.0)
            .unwrap_or(0.0);
        let worker = e
            .context
            .as_ref()
            .and_then(|c| c.get("worker_id"))
            .and_then(|w| w.as_str())
            .map(|w| format!(" [{w}]"))
            .unwrap_or_default();
        println!(
            "  +{at:>5.2}s {:<16} {}{worker}",
            e.event_type.as_str(),
            e.message
        );
    }
    let status = plans::status(db.pool(), api.plan_id).await?;
    println!(
        "API client polls plan {} (\"{}\"): {} {}%",
        short(api.plan_id),
        api.prompt,
        status.state.as_ref().map_or("?", |s| s.as_str()),
        status.progress_percentage.unwrap_or_default()
    );
    Ok(plan_ids)
}
