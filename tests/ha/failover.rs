//! Workers claim, charge and complete plans through a multi-host URL while the primary of a
//! pg_auto_failover formation is killed; the monitor promotes the secondary and the same
//! process carries on.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use shared_db::planexe::PlanState;
use shared_db::planexe::credit_history::{self, Charge};
use shared_db::planexe::plans::{self, NewPlan};
use shared_db::planexe::user_account::{self, OAuthProfile};
use shared_db::{Config, Database};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::servers::Formation;

const PLANS: usize = 300;
const WORKERS: usize = 4;
const SOURCE: &str = "ha_failover_test";

/// What the workers were told succeeded, and when.
#[derive(Default)]
struct Acks {
    /// plan id → (ledger entry id, when the commit returned).
    completed: HashMap<Uuid, (Uuid, Instant)>,
    /// Errors the workers saw and retried, by kind.
    retried: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_carry_on_through_a_primary_crash() -> anyhow::Result<()> {
    let mut formation = Formation::start("shared").await?;

    // Schema and a queue on the primary.
    let direct = Database::connect(&Config::new(formation.node_url(0, "shared"))).await?;
    direct.migrate().await?;
    let user = user_account::sign_in(
        direct.pool(),
        &OAuthProfile {
            provider: "github",
            provider_user_id: "ha",
            name: Some("ha"),
            ..Default::default()
        },
    )
    .await?
    .user
    .id;
    let initial = Decimal::from(1_000_000);
    credit_history::grant(
        &mut *direct.pool().acquire().await?,
        user,
        initial,
        None,
        None,
    )
    .await?;
    for i in 0..PLANS {
        plans::enqueue(
            direct.pool(),
            &NewPlan {
                prompt: &format!("plan {i}"),
                user_id: Some(&user.to_string()),
                ..Default::default()
            },
        )
        .await?;
    }
    direct.close().await;

    // The service under test: one process, one multi-host URL.
    let mut config = Config::new(formation.multi_host_url("shared", "read-write"));
    config.acquire_timeout = Duration::from_secs(2);
    config.connect_timeout = Duration::from_secs(10);
    config.failover_check_interval = Duration::from_millis(250);
    config.max_connections = 8;
    let db = Database::connect(&config).await?;
    let node1 = format!("127.0.0.1:{}", formation.ports[0]);
    let node2 = format!("127.0.0.1:{}", formation.ports[1]);
    assert_eq!(db.serving_host().as_deref(), Some(node1.as_str()));

    let acks = Arc::new(Mutex::new(Acks::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        workers.push(tokio::spawn(work(
            db.clone(),
            format!("worker-{w}"),
            user,
            acks.clone(),
            stop.clone(),
        )));
    }

    // Let them get going, then crash the primary.
    wait_until(Duration::from_secs(60), async || {
        acks.lock().await.completed.len() >= 40
    })
    .await?;
    formation.crash_node1()?;
    let killed_at = Instant::now();
    let before_kill = acks.lock().await.completed.len();

    // Carry on until the queue is drained (or give up and fail).
    let drained = wait_until(Duration::from_secs(120), async || {
        acks.lock().await.completed.len() >= PLANS - WORKERS
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await??;
    }
    drained?;

    let acks = acks.lock().await;
    let first_write_after = acks
        .completed
        .values()
        .map(|(_, at)| *at)
        .filter(|at| *at > killed_at)
        .min()
        .expect("a write after the crash")
        - killed_at;
    println!(
        "failover: primary killed after {before_kill} completions; first successful write {:.2} s \
         after the kill; {} completions acknowledged; {} retried errors: {:?}",
        first_write_after.as_secs_f64(),
        acks.completed.len(),
        acks.retried.len(),
        summarize(&acks.retried),
    );
    assert_eq!(db.serving_host().as_deref(), Some(node2.as_str()));

    // Nothing acknowledged is lost, nothing happened twice: read the new primary directly.
    let check = Database::connect(&Config::new(formation.node_url(1, "shared"))).await?;
    let charged = sqlx::query!(
        r#"SELECT external_id AS "plan!", count(*) AS "n!", array_agg(id) AS "entries!"
           FROM credit_history WHERE source = $1 GROUP BY external_id"#,
        SOURCE
    )
    .fetch_all(check.pool())
    .await?;
    assert!(charged.iter().all(|c| c.n == 1), "a plan was charged twice");
    let entries: HashSet<Uuid> = charged.iter().flat_map(|c| c.entries.clone()).collect();
    let completed_events = sqlx::query!(
        r#"SELECT context->>'task_id' AS "plan!", count(*) AS "n!" FROM events
           WHERE event_type = 'TASK_COMPLETED' GROUP BY 1"#
    )
    .fetch_all(check.pool())
    .await?;
    assert!(
        completed_events.iter().all(|e| e.n == 1),
        "a plan was completed twice"
    );
    for (plan, (entry, _)) in &acks.completed {
        assert!(
            entries.contains(entry),
            "acknowledged charge for plan {plan} lost"
        );
        assert_eq!(
            plans::status(check.pool(), *plan).await?.state,
            Some(PlanState::Completed),
            "acknowledged completion of plan {plan} lost"
        );
    }
    let balance = user_account::get(check.pool(), user).await?.credits_balance;
    assert_eq!(
        balance,
        initial - Decimal::from(entries.len()),
        "the balance must equal the ledger"
    );
    check.close().await;
    Ok(())
}

/// One worker: claim, then charge and complete in one transaction. An error with an unknown
/// outcome is resolved by reading the plan's state before trying again, so nothing is applied
/// twice.
async fn work(
    db: Database,
    worker: String,
    user: Uuid,
    acks: Arc<Mutex<Acks>>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    while !stop.load(Ordering::Relaxed) {
        let plan = match plans::claim_next(db.pool(), &worker).await {
            Ok(Some(plan)) => plan,
            Ok(None) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            // A claim whose outcome is unknown may have left the plan `processing` with nobody
            // on it: not acknowledged, so not counted.
            Err(e) if e.is_retryable() || e.is_outcome_unknown() => {
                acks.lock().await.retried.push(kind(&e));
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let plan_id = plan.attempt.plan_id;
        let id = plan_id.to_string();
        loop {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let attempt = async {
                let mut tx = db.begin().await?;
                let change = credit_history::charge(
                    &mut tx,
                    &Charge {
                        user_id: user,
                        amount: Decimal::ONE,
                        reason: "plan_completed",
                        source: SOURCE,
                        external_id: Some(&id),
                        ..Default::default()
                    },
                )
                .await?;
                plans::finish_completed(&mut *tx, plan.attempt, None).await?;
                tx.commit().await?;
                Ok::<_, shared_db::Error>(change.entry_id)
            };
            match attempt.await {
                Ok(entry) => {
                    acks.lock()
                        .await
                        .completed
                        .insert(plan_id, (entry, Instant::now()));
                    break;
                }
                // An earlier attempt whose outcome was unknown did commit; this one rolled back
                // (charge included), so nothing was applied twice.
                Err(shared_db::Error::InvalidTransition { from, .. }) if from == "completed" => {
                    break;
                }
                Err(e) if e.is_retryable() || e.is_outcome_unknown() => {
                    acks.lock().await.retried.push(kind(&e));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    // Unknown outcome: if the commit did land, the plan is completed already.
                    match plans::status(db.pool(), plan_id).await {
                        Ok(s) if s.state == Some(PlanState::Completed) => break,
                        _ => continue,
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

fn kind(e: &shared_db::Error) -> String {
    match e.sqlstate() {
        Some(code) => format!("SQLSTATE {code}"),
        None => match e {
            shared_db::Error::PoolTimeout => "pool timeout".into(),
            shared_db::Error::Database(sqlx::Error::Io(_)) => "I/O".into(),
            other => other.to_string(),
        },
    }
}

fn summarize(kinds: &[String]) -> HashMap<&str, usize> {
    let mut counts = HashMap::new();
    for k in kinds {
        *counts.entry(k.as_str()).or_default() += 1;
    }
    counts
}

async fn wait_until(within: Duration, mut done: impl AsyncFnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while !done().await {
        if Instant::now() > deadline {
            anyhow::bail!("not done within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
