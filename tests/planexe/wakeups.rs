//! Wake-ups: an idle worker learns of a new plan from `NOTIFY planexe_plan_pending` (sent by a
//! trigger, so plans queued by any writer count), and falls back to polling when notifications
//! are lost. Timings are measured in the benchmarks (BENCHMARKS.md); these tests only tell the
//! paths apart: with a poll interval of a minute, a claim within seconds can only come from a
//! wake-up.

use std::time::Duration;

use rust_decimal::Decimal;
use shared_db::Config;
use shared_db::planexe::plans::{self, ListenOn, Plan, Wake, Wakeups};
use shared_db::testing::TestDatabase;
use shared_db::worker::{Event, Pipeline, Step, Worker};
use sqlx::PgPool;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

/// Longer than any test waits: a wake-up that arrives is never the poll.
const NEVER: Duration = Duration::from_secs(60);
/// How long a test waits for a wake-up or a claim before it fails.
const BOUND: Duration = Duration::from_secs(10);

/// A plan queued the way a Python service does it: a plain INSERT, no shared-db call.
async fn python_enqueue(pool: &PgPool) -> anyhow::Result<Uuid> {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO plans (id, timestamp_created, state, prompt, progress_percentage,
                            progress_message, stop_requested, user_id)
         VALUES ($1, now() AT TIME ZONE 'utc', 'pending', 'queued by Python', 0.0,
                 'Awaiting server to start…', false, 'py-user')",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(id)
}

/// The server process ids of the sessions listening for plans in this database.
async fn listeners(pool: &PgPool) -> anyhow::Result<Vec<i32>> {
    Ok(sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity
         WHERE datname = current_database() AND query = 'LISTEN \"planexe_plan_pending\"'",
    )
    .fetch_all(pool)
    .await?)
}

async fn wait(w: &Wakeups, poll: Duration) -> Wake {
    tokio::time::timeout(BOUND, w.wait(poll))
        .await
        .expect("the wait returns within the test's bound")
}

#[tokio::test]
async fn a_plan_queued_by_any_writer_wakes_a_listener() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let w = Wakeups::spawn(ListenOn::Pool(pool.clone()));
    // The first wake-up says the listener is in place (and that the queue should be looked at).
    assert_eq!(wait(&w, NEVER).await, Wake::Reconnected);
    assert_eq!(listeners(pool).await?.len(), 1, "one listening session");

    // A plain INSERT, as Python writes it, wakes the listener.
    let plan = python_enqueue(pool).await?;
    assert_eq!(wait(&w, NEVER).await, Wake::Notified);

    // A plan inserted and rolled back wakes nobody.
    let mut tx = pool.begin().await?;
    python_enqueue_in(&mut tx).await?;
    tx.rollback().await?;
    assert_eq!(wait(&w, Duration::from_millis(300)).await, Wake::Poll);

    // Work on a plan that does not make it claimable wakes nobody either.
    let run = plans::claim_next(pool, "w")
        .await?
        .expect("the plan")
        .attempt;
    assert_eq!(run.plan_id, plan);
    plans::finish_failed(
        pool,
        run,
        &plans::Failure {
            reason: "worker_error",
            error_message: "boom",
            recoverable: true,
            ..Default::default()
        },
        None,
    )
    .await?;
    assert_eq!(wait(&w, Duration::from_millis(300)).await, Wake::Poll);

    // A plan put back in the queue (here by shared-db's retry) wakes it again.
    plans::retry(pool, plan).await?;
    assert_eq!(wait(&w, NEVER).await, Wake::Notified);

    // A thousand plans queued in one transaction wake it once (notifications are folded).
    sqlx::raw_sql(
        "INSERT INTO plans (id, timestamp_created, state, prompt, stop_requested)
         SELECT gen_random_uuid(), now() AT TIME ZONE 'utc', 'pending', 'bulk', false
         FROM generate_series(1, 1000)",
    )
    .execute(pool)
    .await?;
    assert_eq!(wait(&w, NEVER).await, Wake::Notified);
    assert_eq!(wait(&w, Duration::from_millis(300)).await, Wake::Poll);
    Ok(())
}

async fn python_enqueue_in(conn: &mut sqlx::PgConnection) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO plans (id, timestamp_created, state, prompt, stop_requested)
         VALUES (gen_random_uuid(), now() AT TIME ZONE 'utc', 'pending', 'rolled back', false)",
    )
    .execute(conn)
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_listener_whose_connection_is_killed_reconnects_and_wakes_at_once() -> anyhow::Result<()>
{
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let w = Wakeups::spawn(ListenOn::Pool(pool.clone()));
    assert_eq!(wait(&w, NEVER).await, Wake::Reconnected);
    let before = listeners(pool).await?;
    assert_eq!(before.len(), 1);

    // The listening session dies (as in a failover or a server restart); a plan queued now
    // notifies nobody.
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(before[0])
        .fetch_one(pool)
        .await?;
    assert!(killed);
    python_enqueue(pool).await?;

    // The listener comes back on a new session and wakes the worker at once, so the plan is
    // looked for without waiting for the poll.
    assert_eq!(wait(&w, NEVER).await, Wake::Reconnected);
    let after = listeners(pool).await?;
    assert_eq!(after.len(), 1);
    assert_ne!(after, before, "a new session listens");

    // And notifications flow again.
    python_enqueue(pool).await?;
    assert_eq!(wait(&w, NEVER).await, Wake::Notified);
    Ok(())
}

/// One step, free.
struct Quick;

impl Pipeline for Quick {
    type Error = String;
    fn steps(&self) -> &[&'static str] {
        &["Only"]
    }
    async fn run_step(&self, _plan: &Plan, _step: usize) -> Result<Step, String> {
        Ok(Step::Done {
            cost: Decimal::ZERO,
        })
    }
}

/// Waits for the worker's claim of `plan`, failing after the bound.
async fn claimed(events: &mut mpsc::UnboundedReceiver<Event>, plan: Uuid) -> anyhow::Result<()> {
    tokio::time::timeout(BOUND, async {
        while let Some(event) = events.recv().await {
            if let Event::Claimed { plan: p, .. } = event
                && p == plan
            {
                return Ok(());
            }
        }
        anyhow::bail!("the worker ended")
    })
    .await
    .map_err(|_| anyhow::anyhow!("plan {plan} not claimed within {BOUND:?}"))?
}

/// Waits until `n` sessions listen in this database and the worker has had time to look at the
/// (empty) queue after its listener came up, so that it is idle.
async fn until_listening(pool: &PgPool, n: usize) -> anyhow::Result<()> {
    tokio::time::timeout(BOUND, async {
        while listeners(pool).await?.len() < n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::Ok(())
    })
    .await??;
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(())
}

#[tokio::test]
async fn an_idle_worker_claims_a_plan_queued_by_python_without_waiting_for_its_poll()
-> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (stop_tx, stop) = watch::channel(false);
    let worker = Worker::new(db.db().clone(), "idle", Quick)
        .idle_poll(NEVER)
        .events(events_tx);
    let running = tokio::spawn(worker.run(stop));
    until_listening(pool, 1).await?;

    let plan = python_enqueue(pool).await?;
    claimed(&mut events, plan).await?;

    stop_tx.send(true)?;
    running.await??;
    Ok(())
}

#[tokio::test]
async fn a_worker_whose_listener_connection_is_killed_still_claims_at_once() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (stop_tx, stop) = watch::channel(false);
    let worker = Worker::new(db.db().clone(), "idle", Quick)
        .idle_poll(NEVER)
        .events(events_tx);
    let running = tokio::spawn(worker.run(stop));
    until_listening(pool, 1).await?;

    // the notification of this plan is lost with the session; the reconnect finds the plan
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND query = 'LISTEN \"planexe_plan_pending\"'",
    )
    .execute(pool)
    .await?;
    let plan = python_enqueue(pool).await?;
    claimed(&mut events, plan).await?;

    stop_tx.send(true)?;
    running.await??;
    Ok(())
}

#[tokio::test]
async fn a_worker_that_never_hears_a_notification_finds_plans_by_its_poll() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    // The listener connects fine but hears nothing, as behind a transaction-mode pooler: here
    // it listens in another database, where this database's notifications never arrive.
    let elsewhere = TestDatabase::new().await?;
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (stop_tx, stop) = watch::channel(false);
    let worker = Worker::new(db.db().clone(), "deaf", Quick)
        .idle_poll(Duration::from_millis(200))
        .listen_on(elsewhere.connect_options().clone())
        .events(events_tx);
    let running = tokio::spawn(worker.run(stop));
    until_listening(elsewhere.pool(), 1).await?;

    let plan = python_enqueue(db.pool()).await?;
    claimed(&mut events, plan).await?;

    // Without any listener at all, polling alone finds plans too.
    stop_tx.send(true)?;
    running.await??;
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (stop_tx, stop) = watch::channel(false);
    let worker = Worker::new(db.db().clone(), "poller", Quick)
        .idle_poll(Duration::from_millis(200))
        .poll_only()
        .events(events_tx);
    let running = tokio::spawn(worker.run(stop));
    let plan = python_enqueue(db.pool()).await?;
    claimed(&mut events, plan).await?;
    assert!(listeners(db.pool()).await?.is_empty(), "nobody listens");
    stop_tx.send(true)?;
    running.await??;
    Ok(())
}

/// A `Database` for `db`'s URL with `config`'s other settings (`Config::connect`, not the test
/// harness's bare pool, so the listener rules of the configuration apply).
async fn connect_with(db: &TestDatabase, config: Config) -> anyhow::Result<shared_db::Database> {
    Ok(shared_db::Database::connect(&Config {
        database_url: Some(db.url().into()),
        max_connections: 4,
        ..config
    })
    .await?)
}

#[tokio::test]
async fn behind_a_transaction_pooler_a_worker_polls_instead_of_listening() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    // Declared behind a transaction pooler: a LISTEN through that pool would stay on a server
    // connection other clients then share.
    let pooled = connect_with(
        &db,
        Config {
            transaction_pooler: true,
            ..Config::default()
        },
    )
    .await?;
    assert!(pooled.wakeups().is_none(), "no listener through the pooler");

    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (stop_tx, stop) = watch::channel(false);
    let worker = Worker::new(pooled.clone(), "polling", Quick)
        .idle_poll(Duration::from_millis(100))
        .events(events_tx);
    let running = tokio::spawn(worker.run(stop));
    let plan = python_enqueue(db.pool()).await?;
    claimed(&mut events, plan).await?;
    assert!(
        listeners(db.pool()).await?.is_empty(),
        "the worker found its plan by polling, with no LISTEN anywhere"
    );
    stop_tx.send(true)?;
    running.await??;
    Ok(())
}

#[tokio::test]
async fn a_listen_url_gives_a_pooled_worker_its_wake_ups_back() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pooled = connect_with(
        &db,
        Config {
            transaction_pooler: true,
            listen_url: Some(db.url().into()),
            ..Config::default()
        },
    )
    .await?;
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (stop_tx, stop) = watch::channel(false);
    let worker = Worker::new(pooled, "listening", Quick)
        .idle_poll(NEVER)
        .events(events_tx);
    let running = tokio::spawn(worker.run(stop));
    until_listening(db.pool(), 1).await?;

    // With a poll of a minute, a claim within the bound can only come from the wake-up.
    let plan = python_enqueue(db.pool()).await?;
    claimed(&mut events, plan).await?;
    stop_tx.send(true)?;
    running.await??;
    Ok(())
}
