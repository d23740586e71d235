//! `cargo bench --bench online_migration`: do the migrations apply to a big, busy planexe database
//! without stalling its writers? (issue 10, point 9; the figure goes to BENCHMARKS.md).
//!
//! 1. Creates its own database (`shared_db_online_<unix time>`) on the server of `DATABASE_URL`
//!    (else the embedded cluster) and brings it to the state of a live database migrated before:
//!    migrations up to `BENCH_BASE_VERSION` applied by sqlx's plain migrator. Default 6: the
//!    schema the running writers (this version of the library) need — run ownership (0004) and
//!    idempotency keys (0005–0006) — with 0003's expression index in place, as on live databases;
//!    `BENCH_BASE_VERSION=3` also applies 0004–0006 under load, where the claimers (which need
//!    0004's column) fail until it exists and only the enqueuers' stalls mean anything.
//! 2. Seeds set-based (`generate_series`): 1M plans (1% pending, the rest completed), 2M events
//!    carrying a `task_id`, 500k ledger rows, 100k feedback items; then `VACUUM ANALYZE`.
//! 3. Starts writers through the library's public API: `BENCH_ENQUEUERS` (default 2) loop on
//!    `plans::enqueue` (plan + event), `BENCH_CLAIMERS` (default 2) loop on `plans::claim_next` +
//!    `plans::finish_completed`. Each records the instant of every successful write.
//! 4. After `BENCH_WARMUP_SECS` (default 5) of baseline, applies every pending migration through
//!    `Database::sync` (the library's migrate: no statement timeout, bounded and retried lock
//!    waits), keeps writing `BENCH_TAIL_SECS` (default 5), stops.
//! 5. Prints the longest gap between two successive successful writes of one writer, in the
//!    baseline and overlapping the migration, with write and error counts.
//!
//! The database is dropped at the end (`BENCH_KEEP_DB=1` keeps it). Seeding takes a few minutes.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use shared_db::planexe::plans::{self, NewPlan};
use shared_db::schema::SyncOutcome;
use shared_db::{Config, Database, MIGRATOR};
use sqlx::migrate::Migrator;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

// Only the scratch database is used here; the pgbench helpers are for workloads and growth.
#[allow(dead_code)]
mod common;
use common::Scratch;

const SEED: &str = r#"
INSERT INTO plans (id, timestamp_created, state, prompt, user_id, stop_requested, parameters,
                   progress_percentage, progress_message, last_progress_at)
SELECT md5('plan' || g)::uuid, (now() AT TIME ZONE 'utc') - make_interval(secs => g),
       (CASE WHEN g % 100 = 0 THEN 'pending' ELSE 'completed' END)::planstate,
       'Plan ' || md5(g::text) || repeat(' lorem ipsum', 15), 'user-' || (g % 20000), false,
       json_build_object('pipeline_version', 2, 'model_profile', 'baseline'),
       CASE WHEN g % 100 = 0 THEN 0 ELSE 100 END, 'seeded',
       (now() AT TIME ZONE 'utc') - make_interval(secs => g)
FROM generate_series(1, 1000000) g;
INSERT INTO events ("timestamp", event_type, message, context)
SELECT (now() AT TIME ZONE 'utc') - make_interval(secs => g),
       (CASE WHEN g % 2 = 0 THEN 'TASK_PENDING' ELSE 'TASK_COMPLETED' END)::eventtype, 'seeded',
       json_build_object('task_id', md5('plan' || (g / 2))::uuid::text, 'user_id', 'user-' || (g % 20000))
FROM generate_series(1, 2000000) g;
INSERT INTO credit_history (id, user_id, delta, reason, source, external_id, created_at)
SELECT gen_random_uuid(), md5('user' || (g % 20000))::uuid, -0.01, 'seeded',
       (ARRAY['usage_billing_progress', 'usage_billing_settled', 'usage_billing', 'admin'])[1 + g % 4],
       md5('plan' || (g / 4))::uuid::text, now() AT TIME ZONE 'utc'
FROM generate_series(0, 499999) g;
INSERT INTO feedback_item (id, received_at, category, message, plan_id, user_id)
SELECT gen_random_uuid()::text, now() AT TIME ZONE 'utc', 'general', 'seeded',
       md5('plan' || g)::uuid::text, 'user-' || (g % 20000)
FROM generate_series(1, 100000) g;
"#;

/// What one writer saw: the instant of every successful write, and its failures.
struct Log {
    kind: &'static str,
    writes: Vec<Instant>,
    errors: Vec<String>,
}

impl Log {
    /// Longest gap between successive writes whose interval `[a, b]` satisfies `within`.
    fn max_gap(&self, within: impl Fn(Instant, Instant) -> bool) -> Duration {
        self.writes
            .windows(2)
            .filter(|w| within(w[0], w[1]))
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default()
    }
}

fn env_num(key: &str, default: u64) -> anyhow::Result<u64> {
    std::env::var(key)
        .ok()
        .filter(|v| !v.is_empty())
        .map_or(Ok(default), |v| {
            v.parse().with_context(|| format!("{key}={v:?}"))
        })
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` must not start a long run.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!(
            "the online migration benchmark runs with `cargo bench --bench online_migration`"
        );
        return Ok(());
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let _ = dotenvy::dotenv(); // optional; the library itself never reads .env
    let base = Config::from_env()?;
    let scratch = Scratch::create(&base, "shared_db_online").await?;
    let result = bench(&base, &scratch.url).await;
    scratch.finish("BENCH_KEEP_DB").await?;
    result
}

async fn bench(base: &Config, url: &str) -> anyhow::Result<()> {
    let options = PgConnectOptions::from_str(url)?;
    let enqueuers = env_num("BENCH_ENQUEUERS", 2)? as usize;
    let claimers = env_num("BENCH_CLAIMERS", 2)? as usize;
    let warmup = Duration::from_secs(env_num("BENCH_WARMUP_SECS", 5)?);
    let tail = Duration::from_secs(env_num("BENCH_TAIL_SECS", 5)?);

    // A plain connection (no pool session settings, so no statement timeout) for setup.
    let mut setup = PgConnection::connect_with(&options).await?;
    let base_version = env_num("BENCH_BASE_VERSION", 6)?;
    let through_base = Migrator::with_migrations(
        MIGRATOR
            .iter()
            .filter(|m| m.version <= base_version as i64)
            .cloned()
            .collect(),
    );
    through_base.run(&mut setup).await?;
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&mut setup)
        .await?;
    eprintln!(
        "online migration: PostgreSQL {version}, {} CPU(s); seeding 1M plans, 2M events, 500k ledger \
         rows, 100k feedback items at version {base_version} …",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let t = Instant::now();
    sqlx::raw_sql(SEED).execute(&mut setup).await?;
    sqlx::raw_sql("VACUUM ANALYZE").execute(&mut setup).await?;
    eprintln!("seeded in {:.1} s", t.elapsed().as_secs_f64());
    setup.close().await?;

    let mut config = base.clone();
    config.database_url = Some(url.into());
    config.max_connections = (enqueuers + claimers + 2) as u32;
    config.min_connections = 0;
    let db = Database::connect(&config).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for i in 0..enqueuers {
        let (db, stop) = (db.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut log = Log {
                kind: "enqueue",
                writes: Vec::new(),
                errors: Vec::new(),
            };
            let params = json!({ "pipeline_version": 2, "model_profile": "baseline" });
            let user = format!("bench-{i}");
            while !stop.load(Ordering::Relaxed) {
                let new = NewPlan {
                    prompt: "a plan written while the schema changes",
                    user_id: Some(&user),
                    parameters: Some(&params),
                    ..Default::default()
                };
                match plans::enqueue(db.pool(), &new).await {
                    Ok(_) => log.writes.push(Instant::now()),
                    Err(e) => log.errors.push(e.to_string()),
                }
            }
            log
        }));
    }
    for i in 0..claimers {
        let (db, stop) = (db.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut log = Log {
                kind: "claim+finish",
                writes: Vec::new(),
                errors: Vec::new(),
            };
            let worker = format!("bench-worker-{i}");
            while !stop.load(Ordering::Relaxed) {
                let claimed = match plans::claim_next(db.pool(), &worker).await {
                    Ok(Some(plan)) => plan,
                    Ok(None) => continue,
                    Err(e) => {
                        log.errors.push(e.to_string());
                        continue;
                    }
                };
                log.writes.push(Instant::now());
                match plans::finish_completed(db.pool(), claimed.attempt, None).await {
                    Ok(_) => log.writes.push(Instant::now()),
                    Err(e) => log.errors.push(e.to_string()),
                }
            }
            log
        }));
    }

    let started = Instant::now();
    tokio::time::sleep(warmup).await;
    let m_start = Instant::now();
    let outcome = db.sync().await;
    let m_end = Instant::now();
    tokio::time::sleep(tail).await;
    stop.store(true, Ordering::Relaxed);
    let mut logs = Vec::new();
    for w in writers {
        logs.push(w.await?);
    }
    match &outcome {
        Ok(SyncOutcome::Upgraded { applied } | SyncOutcome::Created { applied }) => println!(
            "\nmigrations applied under load: {applied:?} in {:.2} s",
            (m_end - m_start).as_secs_f64()
        ),
        Ok(SyncOutcome::AlreadyUpToDate | SyncOutcome::Ahead { .. }) => {
            println!("\nno migration was pending")
        }
        Err(e) => println!(
            "\nMIGRATION FAILED after {:.2} s: {e:?}",
            (m_end - m_start).as_secs_f64()
        ),
    }
    println!(
        "| writer | writes | errors | longest stall, baseline | longest stall, overlapping the migration |"
    );
    println!("| --- | ---: | ---: | ---: | ---: |");
    let (mut worst_base, mut worst_mig) = (Duration::ZERO, Duration::ZERO);
    for log in &logs {
        let baseline = log.max_gap(|_, b| b <= m_start && b >= started);
        let during = log.max_gap(|a, b| b > m_start && a < m_end);
        worst_base = worst_base.max(baseline);
        worst_mig = worst_mig.max(during);
        println!(
            "| {} | {} | {} | {:.1} ms | {:.1} ms |",
            log.kind,
            log.writes.len(),
            log.errors.len(),
            baseline.as_secs_f64() * 1e3,
            during.as_secs_f64() * 1e3
        );
        for e in log.errors.iter().take(3) {
            println!("  error: {e}");
        }
    }
    println!(
        "longest writer stall: {:.1} ms while migrating (baseline {:.1} ms); target < 1000 ms: {}",
        worst_mig.as_secs_f64() * 1e3,
        worst_base.as_secs_f64() * 1e3,
        if worst_mig < Duration::from_secs(1) {
            "met"
        } else {
            "MISSED"
        }
    );
    outcome.map(drop).context("migration failed under load")
}
