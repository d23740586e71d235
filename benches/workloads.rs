//! `cargo bench --bench workloads`: shared-db against the lean-client limit (`pgbench -M prepared`)
//! on the five workloads of issue 6, plus the 40 MB zip-snapshot memory check. See BENCHMARKS.md.
//!
//! The run creates its own database (`shared_db_bench_<unix time>`) on the server of
//! `DATABASE_URL` (else the embedded cluster), migrates it, seeds each workload with set-based SQL
//! (seeding only), drives the measured operations through shared-db's public API, drives the very
//! same SQL text (read from `.sqlx/`, which CI keeps equal to the compiled queries) through
//! `pgbench -M prepared` at the same concurrency, verifies the invariants and prints one table.
//! The database is dropped at the end (`BENCH_KEEP_DB=1` keeps it).
//!
//! Knobs (environment): `BENCH_POOLER_URL` (W2 and W4 once more through this PgBouncer, same
//! server), `BENCH_SECS` (timed phases of W2–W4, default 10), `BENCH_W5_ITERS`
//! (default 200), `BENCH_ONLY` (e.g. `w1,w5,mem`), `BENCH_EXPLAIN=1` (print EXPLAIN ANALYZE of
//! the hot queries), `BENCH_PGBENCH` (path of pgbench), `BENCH_PGBENCH_THREADS` (default 2), and
//! the usual `SHARED_DB_*` pool settings (e.g. `SHARED_DB_STATEMENT_CACHE_CAPACITY=0`). For
//! before/after figures: `BENCH_PING_EVERY_ACQUIRE=1` (the pool as it was: sqlx pings on every
//! acquire), `BENCH_W5_DROP_INDEX=1` (the catalog without index 0040), `BENCH_RUNTIME=current_thread`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use futures::future::BoxFuture;
use rust_decimal::Decimal;
use shared_db::planexe::credit_history::{self, Charge};
use shared_db::planexe::plans;
use shared_db::planexe::user_api_key::{self, ApiKeySecret, RawApiKey};
use shared_db::shop::{ShopId, products};
use shared_db::{Config, Database};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use uuid::Uuid;

// Not every benchmark uses every helper.
#[allow(dead_code)]
mod common;
use common::{Pgbench, Queries, Scratch, Xorshift, find_pgbench, for_pgbench, pct, with_database};

// ---------------------------------------------------------------- counting allocator (memory row)

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let now = CURRENT.fetch_add(new_size - layout.size(), Ordering::Relaxed)
                    + (new_size - layout.size());
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f` and returns its output and the peak of live heap bytes above the level at the start.
async fn peak_during<T>(f: impl AsyncFnOnce() -> T) -> (T, usize) {
    let base = CURRENT.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let out = f().await;
    (out, PEAK.load(Ordering::SeqCst).saturating_sub(base))
}

// ---------------------------------------------------------------- settings

struct Settings {
    secs: u64,
    w5_iters: usize,
    only: Option<Vec<String>>,
    explain: bool,
    pgbench: PathBuf,
    pgbench_threads: u32,
}

impl Settings {
    fn from_env() -> anyhow::Result<Self> {
        let num = |k: &str, d: u64| -> anyhow::Result<u64> {
            std::env::var(k)
                .ok()
                .filter(|v| !v.is_empty())
                .map_or(Ok(d), |v| v.parse().with_context(|| format!("{k}={v:?}")))
        };
        Ok(Settings {
            secs: num("BENCH_SECS", 10)?,
            w5_iters: num("BENCH_W5_ITERS", 200)? as usize,
            only: std::env::var("BENCH_ONLY")
                .ok()
                .filter(|v| !v.is_empty())
                .map(|v| v.split(',').map(|s| s.trim().to_lowercase()).collect()),
            explain: std::env::var("BENCH_EXPLAIN").is_ok_and(|v| v == "1"),
            pgbench: match std::env::var_os("BENCH_PGBENCH") {
                Some(p) => PathBuf::from(p),
                None => find_pgbench()?,
            },
            pgbench_threads: num("BENCH_PGBENCH_THREADS", 2)? as u32,
        })
    }
    fn wants(&self, w: &str) -> bool {
        self.only.as_ref().is_none_or(|o| o.iter().any(|x| x == w))
    }
}

// ---------------------------------------------------------------- helpers

/// Runs seeding SQL; a trailing `VACUUM …` runs on its own (not in the batch's implicit
/// transaction).
async fn exec(db: &Database, sql: &str) -> anyhow::Result<()> {
    let (batch, vacuum) = match sql.find("VACUUM") {
        Some(i) => (&sql[..i], Some(&sql[i..])),
        None => (sql, None),
    };
    for part in [Some(batch), vacuum].into_iter().flatten() {
        if part.trim().is_empty() {
            continue;
        }
        sqlx::raw_sql(AssertSqlSafe(part.to_owned()))
            .execute(db.pool())
            .await
            .with_context(|| part.chars().take(120).collect::<String>())?;
    }
    Ok(())
}

async fn scalar(db: &Database, sql: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql.to_owned()))
        .fetch_one(db.pool())
        .await?)
}

/// A pool of `n` connections, all opened (and so excluded from the timing, as pgbench does).
async fn pool(base: &Config, url: &str, n: u32) -> anyhow::Result<Database> {
    let mut c = base.clone();
    c.database_url = Some(url.into());
    c.max_connections = n;
    c.min_connections = 0;
    let db = if std::env::var("BENCH_PING_EVERY_ACQUIRE").is_ok_and(|v| v == "1") {
        // the pool as shared-db built it before the benchmarks: sqlx's test_before_acquire
        Database::from_pool(
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(n)
                .test_before_acquire(true)
                .connect_with(c.connect_options_for(url)?)
                .await?,
        )
    } else {
        Database::connect(&c).await?
    };
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(db.acquire().await?);
    }
    drop(held);
    Ok(db)
}

/// One measured operation on a connection, with the client's random source.
type Op = Arc<
    dyn for<'a> Fn(&'a mut PgConnection, &'a mut Xorshift) -> BoxFuture<'a, anyhow::Result<()>>
        + Send
        + Sync,
>;

fn op<F>(f: F) -> Op
where
    F: for<'a> Fn(&'a mut PgConnection, &'a mut Xorshift) -> BoxFuture<'a, anyhow::Result<()>>
        + Send
        + Sync
        + 'static,
{
    Arc::new(f)
}

/// How a client gets its connection.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// From the pool for every operation, as a request handler passing `db.pool()` does (sqlx
    /// pings a connection when it goes back to the pool: one extra round trip per operation).
    Pooled,
    /// One connection acquired per client and kept, as pgbench keeps its connections.
    Held,
    /// Held, plus the round trip sqlx adds when a connection goes back to the pool (a ping,
    /// i.e. Sync → ReadyForQuery) after every operation: the pooled path without the pool.
    HeldPing,
}

/// Runs `clients` tasks calling `op` until `secs` have passed; returns operations per second and
/// the number of operations.
async fn timed(
    db: &Database,
    clients: usize,
    secs: u64,
    mode: Mode,
    op: Op,
) -> anyhow::Result<(f64, u64)> {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let op = op.clone();
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = Xorshift::new(c as u64 + 1);
            let mut n = 0u64;
            let mut held = match mode {
                Mode::Held | Mode::HeldPing => Some(db.acquire().await?),
                Mode::Pooled => None,
            };
            while Instant::now() < deadline {
                match held.as_mut() {
                    Some(conn) => {
                        op(conn, &mut rng).await?;
                        if mode == Mode::HeldPing {
                            conn.ping().await?;
                        }
                    }
                    None => op(&mut *db.acquire().await?, &mut rng).await?,
                }
                n += 1;
            }
            anyhow::Ok(n)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok((total as f64 / start.elapsed().as_secs_f64(), total))
}

// ---------------------------------------------------------------- report

struct Row {
    name: String,
    shared_db: String,
    pgbench: String,
    ratio: String,
    check: String,
}

fn row(name: &str, shared_db: String, pgbench: String, ratio: String, check: &str) -> Row {
    Row {
        name: name.to_owned(),
        shared_db,
        pgbench,
        ratio,
        check: check.to_owned(),
    }
}

fn print_table(rows: &[Row]) {
    let head = [
        "workload",
        "shared-db",
        "pgbench -M prepared",
        "ratio",
        "verified",
    ];
    let cells: Vec<[&str; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.name.as_str(),
                &r.shared_db,
                &r.pgbench,
                &r.ratio,
                &r.check,
            ]
        })
        .collect();
    let width = |i: usize| {
        cells
            .iter()
            .map(|c| c[i].chars().count())
            .chain([head[i].len()])
            .max()
            .unwrap_or(0)
    };
    let w: Vec<usize> = (0..5).map(width).collect();
    let line = |c: [&str; 5]| {
        let mut s = String::from("|");
        for i in 0..5 {
            s.push_str(&format!(" {:<w$} |", c[i], w = w[i]));
        }
        s
    };
    println!("{}", line(head));
    println!(
        "|{}",
        w.iter()
            .map(|n| format!("{}|", "-".repeat(n + 2)))
            .collect::<String>()
    );
    for c in cells {
        println!("{}", line(c));
    }
}

// ---------------------------------------------------------------- main

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`. Anything else (`cargo test --all-targets`, `--list`) must
    // not start a ten-minute benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("the workloads benchmark runs with `cargo bench --bench workloads`");
        return Ok(());
    }
    // BENCH_RUNTIME=current_thread: one client thread (pgbench runs -j 2 threads).
    let mut rt = if std::env::var("BENCH_RUNTIME").is_ok_and(|v| v == "current_thread") {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    rt.enable_all().build()?.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let _ = dotenvy::dotenv(); // optional; the library itself never reads .env
    let settings = Settings::from_env()?;
    let base = Config::from_env()?;
    // Its own database on the server of DATABASE_URL, else the embedded cluster (started if needed).
    let scratch = Scratch::create(&base, "shared_db_bench").await?;
    let url = &scratch.url;
    let dir = std::env::temp_dir().join(&scratch.name);
    std::fs::create_dir_all(&dir)?;
    let result = bench(&settings, &base, url, &dir).await;
    scratch.finish("BENCH_KEEP_DB").await?;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn bench(settings: &Settings, base: &Config, url: &str, dir: &Path) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let queries = Queries::load()?;
    let setup = pool(base, url, 2).await?;
    setup.migrate().await?;
    let pg = Pgbench {
        bin: &settings.pgbench,
        url,
        dir,
        threads: settings.pgbench_threads,
    };
    let server_version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(setup.pool())
        .await?;
    eprintln!(
        "shared-db benchmarks: PostgreSQL {server_version}, {} CPU(s), {}s timed phases, \
         test_before_acquire={}, statement_cache_capacity={}, runtime={}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        settings.secs,
        base.test_before_acquire,
        base.statement_cache_capacity,
        std::env::var("BENCH_RUNTIME").unwrap_or_else(|_| "multi_thread".into())
    );
    let mut rows = Vec::new();
    if settings.wants("w1") {
        rows.extend(w1(settings, base, url, &setup, &pg, &queries).await?);
    }
    if settings.wants("w1batch") {
        rows.extend(w1_batch(base, url, &setup, &pg, &queries).await?);
    }
    if settings.wants("wake") {
        rows.extend(wake_latency(base, url, &setup).await?);
    }
    if settings.wants("w2") {
        rows.extend(w2(settings, base, url, &setup, &pg, &queries).await?);
    }
    if settings.wants("w3") {
        rows.extend(w3(settings, base, url, &setup, &pg, &queries).await?);
    }
    if settings.wants("w4") {
        rows.extend(w4(settings, base, url, &setup, &pg, &queries).await?);
    }
    if settings.wants("w4pool") {
        rows.extend(w4_pooled_paths(settings, base, url, &setup, &pg, &queries).await?);
    }
    if settings.wants("w5") {
        rows.extend(w5(settings, base, url, &setup, &queries).await?);
    }
    if settings.wants("mem") {
        rows.extend(memory(base, url, &setup).await?);
    }
    println!();
    print_table(&rows);
    println!(
        "\n(total {:.0} s; PostgreSQL {server_version}; pgbench -j {}; shared-db on a {}-thread tokio runtime)",
        t0.elapsed().as_secs_f64(),
        settings.pgbench_threads,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    setup.close().await;
    Ok(())
}

// ---------------------------------------------------------------- W1 queue

const W1_PLANS: i64 = 20_000;
const W1_WORKERS: usize = 8;

async fn seed_queue(db: &Database, n: i64) -> anyhow::Result<()> {
    exec(db, "TRUNCATE plans, events, workers").await?;
    exec(
        db,
        &format!(
            "INSERT INTO plans (id, timestamp_created, state, prompt, progress_percentage,
                                progress_message, last_seen_timestamp, stop_requested, user_id,
                                parameters)
             SELECT gen_random_uuid(),
                    (now() AT TIME ZONE 'utc') - make_interval(secs => ({n} - g) / 1000.0),
                    'pending', repeat('Plan a weekend trip ', 10) || g, 0.0, 'Queued',
                    now() AT TIME ZONE 'utc', false, 'bench-user-' || (g % 100),
                    json_build_object('model_profile', 'baseline', 'speed_vs_detail', 'fast',
                                      'pipeline_version', 2)
             FROM generate_series(1, {n}) g;
             VACUUM ANALYZE plans, events, workers;"
        ),
    )
    .await
}

/// `expected` plans completed, each claimed exactly once (one `TASK_PROCESSING` event per plan,
/// built server-side) and `expected` completion events. `distinct_completions`: the completion
/// events name `expected` distinct plans too (pgbench sends one constant event context).
async fn verify_queue(
    db: &Database,
    expected: i64,
    distinct_completions: bool,
) -> anyhow::Result<()> {
    let completed = scalar(db, "SELECT count(*) FROM plans WHERE state = 'completed'").await?;
    let count = |event: &str, distinct: bool| {
        let sql = format!(
            "SELECT count({}) FROM events WHERE event_type = '{event}'",
            if distinct {
                "DISTINCT context->>'task_id'"
            } else {
                "*"
            }
        );
        async move { scalar(db, &sql).await }
    };
    let claims = count("TASK_PROCESSING", false).await?;
    let claimed = count("TASK_PROCESSING", true).await?;
    let completions = count("TASK_COMPLETED", false).await?;
    let completed_plans = if distinct_completions {
        count("TASK_COMPLETED", true).await?
    } else {
        expected
    };
    ensure!(
        completed == expected
            && claims == expected
            && claimed == expected
            && completions == expected
            && completed_plans == expected,
        "W1: {completed} completed; {claims} claims of {claimed} plans; {completions} completion \
         events of {completed_plans} plans; expected {expected}"
    );
    Ok(())
}

async fn w1(
    s: &Settings,
    base: &Config,
    url: &str,
    setup: &Database,
    pg: &Pgbench<'_>,
    q: &Queries,
) -> anyhow::Result<Vec<Row>> {
    let _ = s;
    // shared-db: 8 workers drain 20,000 plans: claim_next (claim + processing), finish_completed;
    // once with a pooled connection per statement, once with a connection held per worker.
    let mut ours = Vec::new();
    for mode in [Mode::Pooled, Mode::Held] {
        seed_queue(setup, W1_PLANS).await?;
        let db = pool(base, url, W1_WORKERS as u32).await?;
        let start = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..W1_WORKERS {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                let worker = w.to_string();
                let mut done = Vec::new();
                if mode == Mode::Held {
                    let mut conn = db.acquire().await?;
                    while let Some(claimed) = plans::claim_next(&mut *conn, &worker).await? {
                        plans::finish_completed(&mut *conn, claimed.attempt, None).await?;
                        done.push(claimed.plan.id);
                    }
                } else {
                    while let Some(claimed) = plans::claim_next(db.pool(), &worker).await? {
                        plans::finish_completed(db.pool(), claimed.attempt, None).await?;
                        done.push(claimed.plan.id);
                    }
                }
                anyhow::Ok(done)
            }));
        }
        let mut seen = HashSet::new();
        for t in tasks {
            for id in t.await?? {
                ensure!(seen.insert(id), "W1: plan {id} completed twice");
            }
        }
        ours.push(seen.len() as f64 / start.elapsed().as_secs_f64());
        ensure!(
            seen.len() as i64 == W1_PLANS,
            "W1: drained {} plans",
            seen.len()
        );
        verify_queue(setup, W1_PLANS, true).await?;
        db.close().await;
    }

    let tps = w1_pgbench(setup, pg, q).await?;
    Ok(pair(
        "W1 queue drain, 8 workers (plans/s)",
        &ours,
        tps,
        "20,000 completed once each",
    ))
}

/// pgbench on W1: the same two statements per transaction, 2,500 transactions per client on a
/// queue with 200 spare plans (so a tail claim never finds only locked rows and aborts its
/// client). Returns its plans/s.
async fn w1_pgbench(setup: &Database, pg: &Pgbench<'_>, q: &Queries) -> anyhow::Result<f64> {
    let claim = q.find("claim_next", |s| {
        s.contains("FOR UPDATE SKIP LOCKED)")
            && s.contains("'TASK_PROCESSING'")
            && !s.contains("unnest(")
    })?;
    let finish = q.find("finish_completed", |s| {
        s.contains("'Processing -> Completed'") && !s.contains("unnest(")
    })?;
    seed_queue(setup, W1_PLANS + 200).await?;
    let script = format!(
        "{}\n\\gset\n{};\n",
        for_pgbench(claim, &["client_id", "run"]),
        for_pgbench(finish, &["id", "ctx", "run"])
    );
    let ctx = format!(r#"{{"task_id": "{}"}}"#, Uuid::nil());
    let per_client = (W1_PLANS as usize / W1_WORKERS).to_string();
    let run = pg.run(
        "w1",
        &[script],
        // One run token for every claim: the statements do the same work as with fresh ones.
        &[("ctx".into(), ctx), ("run".into(), Uuid::nil().to_string())],
        W1_WORKERS as u32,
        &["-t", &per_client],
        false,
    )?;
    verify_queue(setup, W1_PLANS, false).await?;
    Ok(run.tps)
}

// ---------------------------------------------------------------- W1 with batches

/// Plans per `claim_next_batch` / `finish_completed_batch` in the batch W1.
const W1_BATCH: usize = 50;

/// W1 with batches: the same 8 workers drain the same 20,000 plans with `claim_next_batch(50)`
/// and `finish_completed_batch` (2 statements per 50 plans instead of per plan). pgbench has no
/// counterpart for a batch (its `\gset` keeps one row, so a script cannot carry a batch's ids
/// from the claim to the finish); the row compares with pgbench's single-plan W1 of the same
/// run, the lean-client limit of the single-plan protocol.
async fn w1_batch(
    base: &Config,
    url: &str,
    setup: &Database,
    pg: &Pgbench<'_>,
    q: &Queries,
) -> anyhow::Result<Vec<Row>> {
    let mut ours = Vec::new();
    for mode in [Mode::Pooled, Mode::Held] {
        seed_queue(setup, W1_PLANS).await?;
        let db = pool(base, url, W1_WORKERS as u32).await?;
        let start = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..W1_WORKERS {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                let worker = w.to_string();
                let mut done = Vec::new();
                let mut held = match mode {
                    Mode::Held => Some(db.acquire().await?),
                    _ => None,
                };
                loop {
                    let batch = match held.as_mut() {
                        Some(conn) => {
                            plans::claim_next_batch(&mut **conn, &worker, W1_BATCH).await?
                        }
                        None => plans::claim_next_batch(db.pool(), &worker, W1_BATCH).await?,
                    };
                    if batch.is_empty() {
                        break;
                    }
                    let runs: Vec<plans::Completion> = batch
                        .iter()
                        .map(|c| plans::Completion {
                            attempt: c.attempt,
                            event_context: None,
                        })
                        .collect();
                    let outcomes = match held.as_mut() {
                        Some(conn) => plans::finish_completed_batch(&mut **conn, &runs).await?,
                        None => plans::finish_completed_batch(db.pool(), &runs).await?,
                    };
                    for (id, outcome) in outcomes {
                        ensure!(
                            outcome == plans::FinishOutcome::Completed,
                            "W1 batch: plan {id}: {outcome:?}"
                        );
                        done.push(id);
                    }
                }
                anyhow::Ok(done)
            }));
        }
        let mut seen = HashSet::new();
        for t in tasks {
            for id in t.await?? {
                ensure!(seen.insert(id), "W1 batch: plan {id} completed twice");
            }
        }
        ours.push(seen.len() as f64 / start.elapsed().as_secs_f64());
        ensure!(
            seen.len() as i64 == W1_PLANS,
            "W1 batch: drained {} plans",
            seen.len()
        );
        verify_queue(setup, W1_PLANS, true).await?;
        db.close().await;
    }
    let tps = w1_pgbench(setup, pg, q).await?;
    Ok(pair(
        "W1 batch drain (50 per claim/finish), 8 workers (plans/s) vs pgbench single-plan",
        &ours,
        tps,
        "20,000 completed once each",
    ))
}

// ---------------------------------------------------------------- wake-up latency

/// Idle workers in the wake-up workload.
const WAKE_WORKERS: usize = 4;

/// Enqueue-to-claim latency with idle workers at low load: 4 workers wait on an empty queue
/// (the [`shared_db::worker::Worker`] idle loop: `claim_next`, then `Wakeups::wait(poll)`), one
/// producer enqueues a plan every 10–30 ms (`BENCH_WAKE_PLANS` plans, default 300), each worker
/// finishes what it claims. The latency runs from just before `enqueue` is called to the return
/// of the `claim_next` that took the plan (so it includes the enqueue round trip). Once with
/// wake-ups (poll every 2 s as the fallback, the worker's default) and once polling only (every
/// 2 s, and every 100 ms). No pgbench counterpart (pgbench cannot LISTEN).
async fn wake_latency(base: &Config, url: &str, setup: &Database) -> anyhow::Result<Vec<Row>> {
    let plans_n: usize = std::env::var("BENCH_WAKE_PLANS")
        .ok()
        .map_or(Ok(300), |v| v.parse())?;
    let mut rows = Vec::new();
    for (name, notify, poll) in [
        (
            "wake-up (NOTIFY), poll 2 s fallback",
            true,
            Duration::from_secs(2),
        ),
        ("poll only, every 100 ms", false, Duration::from_millis(100)),
        ("poll only, every 2 s", false, Duration::from_secs(2)),
    ] {
        exec(setup, "TRUNCATE plans, events, workers").await?;
        let db = pool(base, url, (WAKE_WORKERS + 2) as u32).await?;
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let claims = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for w in 0..WAKE_WORKERS {
            let db = db.clone();
            let mut stop = stop.clone();
            let claims = Arc::clone(&claims);
            tasks.push(tokio::spawn(async move {
                let wakeups = notify.then(|| {
                    plans::Wakeups::spawn(plans::ListenOn::Pool(db.pool().sqlx().clone()))
                });
                let worker = format!("idle-{w}");
                while !*stop.borrow() {
                    match plans::claim_next(db.pool(), &worker).await? {
                        Some(c) => {
                            claims.lock().unwrap().push((c.plan.id, Instant::now()));
                            plans::finish_completed(db.pool(), c.attempt, None).await?;
                        }
                        None => {
                            let idle = async {
                                match &wakeups {
                                    Some(w) => {
                                        w.wait(poll).await;
                                    }
                                    None => tokio::time::sleep(poll).await,
                                }
                            };
                            tokio::select! {
                                _ = idle => {}
                                _ = stop.changed() => {}
                            }
                        }
                    }
                }
                anyhow::Ok(())
            }));
        }
        // let the listeners come up and the workers go idle
        tokio::time::sleep(Duration::from_millis(500)).await;
        let load_before = loadavg();
        let mut rng = Xorshift::new(7);
        let mut sent = Vec::new();
        for i in 0..plans_n {
            tokio::time::sleep(Duration::from_millis(10 + rng.below(21) as u64)).await;
            let t0 = Instant::now();
            let id = plans::enqueue(
                db.pool(),
                &plans::NewPlan {
                    prompt: &format!("wake {i}"),
                    ..Default::default()
                },
            )
            .await?
            .id;
            sent.push((id, t0));
        }
        // every plan claimed (the poll bounds the wait)
        let deadline = Instant::now() + poll * 3 + Duration::from_secs(5);
        while claims.lock().unwrap().len() < plans_n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop_tx.send(true)?;
        for t in tasks {
            t.await??;
        }
        let claimed: std::collections::HashMap<Uuid, Instant> =
            claims.lock().unwrap().iter().copied().collect();
        ensure!(
            claimed.len() == plans_n,
            "wake-up: {} of {plans_n} plans claimed",
            claimed.len()
        );
        let mut lat: Vec<Duration> = sent
            .iter()
            .map(|(id, t0)| claimed[id].saturating_duration_since(*t0))
            .collect();
        lat.sort();
        rows.push(row(
            &format!("enqueue→claim, {WAKE_WORKERS} idle workers, 1 plan / 10–30 ms: {name} (ms p50 / p99 / max)"),
            format!(
                "{:.2} / {:.2} / {:.2}",
                pct(&lat, 0.5),
                pct(&lat, 0.99),
                pct(&lat, 1.0)
            ),
            "—".into(),
            "—".into(),
            &format!("{plans_n} claimed once each; load {load_before} → {}", loadavg()),
        ));
        db.close().await;
    }
    Ok(rows)
}

/// The 1/5/15-minute load averages.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The pooled and held rows of a workload against one pgbench figure.
fn pair(name: &str, ours: &[f64], pgbench: f64, check: &str) -> Vec<Row> {
    ["pooled", "held conn"]
        .iter()
        .zip(ours)
        .map(|(mode, v)| {
            row(
                &format!("{name}, {mode}"),
                format!("{v:.0}"),
                format!("{pgbench:.0}"),
                format!("{:.2}", v / pgbench),
                check,
            )
        })
        .collect()
}

/// With `BENCH_POOLER_URL` (a PgBouncer in front of the same server, e.g. from `.ci/pgbouncer`):
/// the same operation, pooled, with the pool connecting through the pooler; compared with the
/// same pgbench run as the direct rows.
async fn through_pooler(
    s: &Settings,
    base: &Config,
    url: &str,
    name: &str,
    op: Op,
    pgbench_tps: f64,
    check: &str,
) -> anyhow::Result<Vec<Row>> {
    let Ok(pooler) = std::env::var("BENCH_POOLER_URL") else {
        return Ok(Vec::new());
    };
    let database = url
        .split('?')
        .next()
        .and_then(|u| u.rsplit('/').next())
        .context("database name")?;
    let db = pool(base, &with_database(&pooler, database), 16).await?;
    let (v, _) = timed(&db, 16, s.secs, Mode::Pooled, op).await?;
    db.close().await;
    Ok(vec![row(
        &format!("{name}, pooled, via PgBouncer (transaction mode)"),
        format!("{v:.0}"),
        format!("{pgbench_tps:.0}"),
        format!("{:.2}", v / pgbench_tps),
        check,
    )])
}

// ---------------------------------------------------------------- W2 API-key authentication

const SECRET: &str = "bench-secret";
/// pgbench picks one script per transaction; 128 is its limit, so it draws from 128 of the keys.
const PGBENCH_SCRIPTS: usize = 128;

fn raw_key(k: usize) -> String {
    format!("pex_{k:032}")
}

async fn w2(
    s: &Settings,
    base: &Config,
    url: &str,
    setup: &Database,
    pg: &Pgbench<'_>,
    q: &Queries,
) -> anyhow::Result<Vec<Row>> {
    exec(
        setup,
        &format!(
            "TRUNCATE user_account, user_api_key;
             INSERT INTO user_account (id, created_at, is_admin, free_plan_used, credits_balance)
             SELECT ('00000000-0000-0000-0000-' || lpad(g::text, 12, '0'))::uuid,
                    now() AT TIME ZONE 'utc', false, false, 100
             FROM generate_series(1, 1000) g;
             INSERT INTO user_api_key (id, user_id, key_hash, key_prefix, label, created_at)
             SELECT gen_random_uuid(),
                    ('00000000-0000-0000-0000-' || lpad((k / 2 + 1)::text, 12, '0'))::uuid,
                    encode(sha256(convert_to('{SECRET}:pex_' || lpad(k::text, 32, '0'), 'UTF8')), 'hex'),
                    left('pex_' || lpad(k::text, 32, '0'), 10), 'bench', now() AT TIME ZONE 'utc'
             FROM generate_series(0, 1999) k;
             VACUUM ANALYZE user_account, user_api_key;"
        ),
    )
    .await?;
    let secret = ApiKeySecret::new(SECRET);
    // check the seeding matches the library's key format
    ensure!(
        user_api_key::authenticate(
            setup.pool(),
            &secret,
            &RawApiKey::from_presented(raw_key(7))
        )
        .await?
        .is_some(),
        "W2 seed: key 7 does not authenticate"
    );
    exec(setup, "UPDATE user_api_key SET last_used_at = NULL").await?;

    let db = pool(base, url, 16).await?;
    let keys: Arc<Vec<RawApiKey>> = Arc::new(
        (0..2000)
            .map(|k| RawApiKey::from_presented(raw_key(k)))
            .collect(),
    );
    let shared_secret = Arc::new(secret.clone());
    let authenticate = op(move |conn, rng| {
        let keys = keys.clone();
        let secret = shared_secret.clone();
        let i = rng.below(keys.len());
        Box::pin(async move {
            let auth = user_api_key::authenticate(&mut *conn, &secret, &keys[i]).await?;
            ensure!(auth.is_some(), "W2: a seeded key did not authenticate");
            Ok(())
        })
    });
    let mut ours = Vec::new();
    for mode in [Mode::Pooled, Mode::Held] {
        exec(setup, "UPDATE user_api_key SET last_used_at = NULL").await?;
        ours.push(timed(&db, 16, s.secs, mode, authenticate.clone()).await?.0);
    }
    db.close().await;

    let sql = q.find("authenticate", |s| s.contains("touch AS ("))?;
    exec(setup, "UPDATE user_api_key SET last_used_at = NULL").await?;
    let mut scripts = Vec::new();
    let mut defines = vec![("granularity".to_owned(), "60".to_owned())];
    for i in 0..PGBENCH_SCRIPTS {
        let k = i * 2000 / PGBENCH_SCRIPTS;
        let var = format!("h{i}");
        scripts.push(format!("{};\n", for_pgbench(sql, &[&var, "granularity"])));
        defines.push((
            var,
            RawApiKey::from_presented(raw_key(k))
                .hash(&secret)
                .to_owned(),
        ));
    }
    let secs = s.secs.to_string();
    let run = pg.run("w2", &scripts, &defines, 16, &["-T", &secs], false)?;
    let name = "W2 API-key auth, 16 clients (ops/s)";
    let check = "every key authenticated";
    let mut rows = pair(name, &ours, run.tps, check);
    exec(setup, "UPDATE user_api_key SET last_used_at = NULL").await?;
    rows.extend(through_pooler(s, base, url, name, authenticate, run.tps, check).await?);
    Ok(rows)
}

// ---------------------------------------------------------------- W3 credit charge

const W3_PLAN: &str = "00000000-0000-0000-0000-000000003333";
const W3_KEY: Uuid = Uuid::from_u128(0x4444);

fn w3_user(i: usize) -> Uuid {
    Uuid::from_u128(0x3000_0000_0000_0000_0000_0000_0000_0000 | (i as u128 + 1))
}

async fn seed_w3(db: &Database) -> anyhow::Result<()> {
    exec(
        db,
        "TRUNCATE user_account, credit_history;
         INSERT INTO user_account (id, created_at, is_admin, free_plan_used, credits_balance)
         SELECT ('30000000-0000-0000-0000-' || lpad(to_hex(g), 12, '0'))::uuid,
                now() AT TIME ZONE 'utc', false, false, 1000000
         FROM generate_series(1, 100) g;
         VACUUM ANALYZE user_account, credit_history;",
    )
    .await
}

/// balance == 1,000,000 + ledger sum for every user; returns the number of ledger rows.
async fn verify_w3(db: &Database) -> anyhow::Result<i64> {
    let drift = scalar(
        db,
        "SELECT count(*) FROM user_account u
         WHERE credits_balance <> 1000000
               + coalesce((SELECT sum(delta) FROM credit_history c WHERE c.user_id = u.id), 0)",
    )
    .await?;
    ensure!(
        drift == 0,
        "W3: {drift} users' balance != 1,000,000 + ledger sum"
    );
    scalar(db, "SELECT count(*) FROM credit_history").await
}

async fn w3(
    s: &Settings,
    base: &Config,
    url: &str,
    setup: &Database,
    pg: &Pgbench<'_>,
    q: &Queries,
) -> anyhow::Result<Vec<Row>> {
    seed_w3(setup).await?;
    ensure!(
        scalar(
            setup,
            &format!(
                "SELECT count(*) FROM user_account WHERE id = '{}'",
                w3_user(99)
            )
        )
        .await?
            == 1
    );
    let db = pool(base, url, 16).await?;
    let charge = op(move |conn, rng| {
        let user = w3_user(rng.below(100));
        Box::pin(async move {
            credit_history::charge(
                &mut *conn,
                &Charge {
                    user_id: user,
                    amount: Decimal::new(1, 2),
                    reason: "plan_usage_in_progress",
                    source: credit_history::SOURCE_USAGE_PROGRESS,
                    external_id: Some(W3_PLAN),
                    api_key_id: Some(W3_KEY),
                    allow_negative: true,
                    idempotency_key: None,
                },
            )
            .await?;
            Ok(())
        })
    });
    let mut ours = Vec::new();
    for mode in [Mode::Pooled, Mode::Held] {
        seed_w3(setup).await?;
        let (rate, n) = timed(&db, 16, s.secs, mode, charge.clone()).await?;
        let rows = verify_w3(setup).await?;
        ensure!(rows == n as i64, "W3: {n} charges but {rows} ledger rows");
        ours.push(rate);
    }
    db.close().await;

    // No idempotency key ($8 NULL) and the numeric(18,9) bound ($9) as literals: pgbench variables
    // cannot be NULL.
    let sql = q
        .find("charge", |s| s.contains("credits_balance - $2"))?
        .replace("$9", "999999999.999999999")
        .replace("$8", "NULL::text");
    let sql = sql.as_str();
    seed_w3(setup).await?;
    let vars = ["u", "amount", "reason", "source", "ext", "key", "neg"];
    let mut scripts = Vec::new();
    let mut defines: Vec<(String, String)> = vec![
        ("amount".into(), "0.01".into()),
        ("reason".into(), "plan_usage_in_progress".into()),
        (
            "source".into(),
            credit_history::SOURCE_USAGE_PROGRESS.into(),
        ),
        ("ext".into(), W3_PLAN.into()),
        ("key".into(), W3_KEY.to_string()),
        ("neg".into(), "true".into()),
    ];
    for i in 0..100 {
        let u = format!("u{i}");
        let mut v = vars;
        v[0] = &u;
        scripts.push(format!("{};\n", for_pgbench(sql, &v)));
        defines.push((u.clone(), w3_user(i).to_string()));
    }
    let secs = s.secs.to_string();
    let run = pg.run("w3", &scripts, &defines, 16, &["-T", &secs], false)?;
    let rows = verify_w3(setup).await?;
    ensure!(
        rows == run.transactions as i64,
        "W3 pgbench: {} charges but {rows} ledger rows",
        run.transactions
    );
    Ok(pair(
        "W3 credit charge, 16 clients (charges/s)",
        &ours,
        run.tps,
        "balance = 1,000,000 + ledger sum",
    ))
}

// ---------------------------------------------------------------- W4 plan status

/// W4's plans: a seeded queue of 20k, their ids in order.
async fn status_ids(setup: &Database) -> anyhow::Result<Arc<Vec<Uuid>>> {
    seed_queue(setup, 20_000).await?;
    let ids: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM plans ORDER BY id")
        .fetch_all(setup.pool())
        .await?;
    Ok(Arc::new(ids))
}

/// W4's operation: `plans::status` of a random one of `ids`.
fn status_op(ids: &Arc<Vec<Uuid>>) -> Op {
    let ids = ids.clone();
    op(move |conn, rng| {
        let id = ids[rng.below(ids.len())];
        Box::pin(async move {
            plans::status(&mut *conn, id).await?;
            Ok(())
        })
    })
}

/// pgbench scripts and the `-D` variables they read.
struct Scripts {
    scripts: Vec<String>,
    defines: Vec<(String, String)>,
}

/// W4 for pgbench: the same status query, `PGBENCH_SCRIPTS` scripts over ids spread across `ids`.
fn status_scripts(q: &Queries, ids: &[Uuid]) -> anyhow::Result<Scripts> {
    let sql = q.find("status", |s| {
        s.starts_with("SELECT id, state, progress_percentage, progress_message")
    })?;
    let mut scripts = Vec::new();
    let mut defines = Vec::new();
    for i in 0..PGBENCH_SCRIPTS {
        let var = format!("i{i}");
        scripts.push(format!("{};\n", for_pgbench(sql, &[&var])));
        defines.push((var, ids[i * ids.len() / PGBENCH_SCRIPTS].to_string()));
    }
    Ok(Scripts { scripts, defines })
}

async fn w4(
    s: &Settings,
    base: &Config,
    url: &str,
    setup: &Database,
    pg: &Pgbench<'_>,
    q: &Queries,
) -> anyhow::Result<Vec<Row>> {
    let ids = status_ids(setup).await?;
    let db = pool(base, url, 16).await?;
    let status = status_op(&ids);
    let mut ours = Vec::new();
    for mode in [Mode::Pooled, Mode::Held] {
        ours.push(timed(&db, 16, s.secs, mode, status.clone()).await?.0);
    }
    db.close().await;

    let Scripts { scripts, defines } = status_scripts(q, &ids)?;
    let secs = s.secs.to_string();
    let run = pg.run("w4", &scripts, &defines, 16, &["-T", &secs], false)?;
    let name = "W4 plan status, 16 clients (reads/s)";
    let check = "every read found its plan";
    let mut rows = pair(name, &ours, run.tps, check);
    rows.extend(through_pooler(s, base, url, name, status, run.tps, check).await?);
    Ok(rows)
}

/// The pooled round trip on W4, every option in one run against one pgbench figure: pool sizes
/// below, at and above the client count; a connection held per client (what per-request reuse
/// gives a request of several statements); and a held connection that pings after every
/// operation, which is exactly the round trip sqlx's pool adds on release.
async fn w4_pooled_paths(
    s: &Settings,
    base: &Config,
    url: &str,
    setup: &Database,
    pg: &Pgbench<'_>,
    q: &Queries,
) -> anyhow::Result<Vec<Row>> {
    const CLIENTS: usize = 16;
    let ids = status_ids(setup).await?;
    let status = status_op(&ids);
    let Scripts { scripts, defines } = status_scripts(q, &ids)?;
    let secs = s.secs.to_string();
    let pgbench = pg
        .run(
            "w4pool",
            &scripts,
            &defines,
            CLIENTS as u32,
            &["-T", &secs],
            false,
        )?
        .tps;
    let mut rows = Vec::new();
    let variants: [(&str, u32, Mode); 7] = [
        ("pooled, pool = 4", 4, Mode::Pooled),
        ("pooled, pool = 8", 8, Mode::Pooled),
        ("pooled, pool = 16 (= clients)", 16, Mode::Pooled),
        ("pooled, pool = 32", 32, Mode::Pooled),
        ("held conn per client", 16, Mode::Held),
        ("held conn + ping per op", 16, Mode::HeldPing),
        ("pooled, pool = 16, again", 16, Mode::Pooled),
    ];
    for (name, size, mode) in variants {
        let db = pool(base, url, size).await?;
        let (ops, _) = timed(&db, CLIENTS, s.secs, mode, status.clone()).await?;
        db.close().await;
        rows.push(row(
            &format!("W4 16 clients, {name} (reads/s)"),
            format!("{ops:.0}"),
            format!("{pgbench:.0}"),
            format!("{:.2}", ops / pgbench),
            "every read found its plan",
        ));
    }
    Ok(rows)
}

// ---------------------------------------------------------------- W5 catalog page

const W5_SHOP: &str = "50000000-0000-0000-0000-000000000001";

async fn w5(
    s: &Settings,
    base: &Config,
    url: &str,
    setup: &Database,
    q: &Queries,
) -> anyhow::Result<Vec<Row>> {
    exec(
        setup,
        &format!(
            "INSERT INTO shop.shops (id, name) VALUES ('{W5_SHOP}', 'bench shop');
             INSERT INTO shop.categories (id, shop_id, order_number)
             SELECT ('50000000-0000-0000-0001-' || lpad(g::text, 12, '0'))::uuid, '{W5_SHOP}', g
             FROM generate_series(0, 9) g;
             INSERT INTO shop.tags (id, shop_id, name)
             SELECT ('50000000-0000-0000-0002-' || lpad(g::text, 12, '0'))::uuid, '{W5_SHOP}', 'tag-' || g
             FROM generate_series(0, 99) g;
             INSERT INTO shop.tag_translations (shop_id, tag_id, main_name)
             SELECT shop_id, id, 'Tag ' || name FROM shop.tags WHERE shop_id = '{W5_SHOP}';
             -- 10 categories, order numbers restart in each: (order_number, id) has ties to break
             INSERT INTO shop.products (id, shop_id, category_id, price, order_number)
             SELECT gen_random_uuid(), '{W5_SHOP}',
                    ('50000000-0000-0000-0001-' || lpad((g % 10)::text, 12, '0'))::uuid,
                    (g % 997) + 0.99, g / 10
             FROM generate_series(0, 99999) g;
             INSERT INTO shop.product_translations (shop_id, product_id, main_name,
                                                    main_description, main_description_short)
             SELECT shop_id, id, 'Product ' || order_number || '/' || category_id, 'A fine product', 'Fine'
             FROM shop.products WHERE shop_id = '{W5_SHOP}';
             INSERT INTO shop.products_to_tags (shop_id, product_id, tag_id)
             SELECT '{W5_SHOP}', p.id,
                    ('50000000-0000-0000-0002-'
                     || lpad(((p.order_number * 7 + j * 31 + p.price::int) % 100)::text, 12, '0'))::uuid
             FROM shop.products p, generate_series(0, 2) j WHERE p.shop_id = '{W5_SHOP}';
             VACUUM ANALYZE shop.products, shop.product_translations, shop.products_to_tags,
                            shop.tags, shop.tag_translations;"
        ),
    )
    .await?;
    if std::env::var("BENCH_W5_DROP_INDEX").is_ok_and(|v| v == "1") {
        // the catalog as it was before migration 0040
        exec(setup, "DROP INDEX shop.ix_products_shop_id_order_number_id").await?;
    }
    let shop = ShopId::new(Uuid::parse_str(W5_SHOP)?);
    let db = pool(base, url, 1).await?;
    let mut conn = db.acquire().await?;
    // The keyset cursor of the page at offset 50,000: walk 100 pages of 500 (the largest page).
    let mut cursor = None;
    let mut last = None;
    for _ in 0..100 {
        let walk = products::catalog_page_after(&mut *conn, shop, cursor.as_ref(), 500).await?;
        last = walk.items.last().map(|e| (e.order_number, e.id.get()));
        cursor = Some(
            walk.next
                .context("W5: the walk ended before 50,000 products")?,
        );
    }
    let cursor = cursor.context("W5: no cursor")?;
    let last = last.context("W5: empty walk")?;
    let deep = products::catalog_page(&mut *conn, shop, 50_000, 50).await?;
    let keyset = products::catalog_page_after(&mut *conn, shop, Some(&cursor), 50).await?;
    ensure!(
        deep.len() == 50 && keyset.items == deep,
        "W5: the keyset page differs from the offset page"
    );
    ensure!(
        deep.iter()
            .all(|e| e.tag_names.len() == 3 && e.main_name.is_some()),
        "W5: a product lacks its name or tags"
    );
    let mut out = Vec::new();
    let mut p50_first = 0.0;
    for (label, skip, after) in [
        ("W5 page @ offset 0 (ms p50 / p95)", 0, None),
        ("W5 page @ offset 50,000 (ms p50 / p95)", 50_000, None),
        ("W5 keyset page @ 50,000 (ms p50 / p95)", 0, Some(&cursor)),
    ] {
        let mut lat = Vec::with_capacity(s.w5_iters);
        for _ in 0..s.w5_iters {
            let t = Instant::now();
            let n = match after {
                None => products::catalog_page(&mut *conn, shop, skip, 50)
                    .await?
                    .len(),
                Some(c) => products::catalog_page_after(&mut *conn, shop, Some(c), 50)
                    .await?
                    .items
                    .len(),
            };
            lat.push(t.elapsed());
            ensure!(n == 50, "W5: page of {n}");
        }
        lat.sort();
        let (p50, p95) = (pct(&lat, 0.5), pct(&lat, 0.95));
        if skip == 0 && after.is_none() {
            p50_first = p50;
        }
        out.push(row(
            label,
            format!("{p50:.2} / {p95:.2}"),
            "-".into(),
            format!("{:.2}× offset 0", p50 / p50_first),
            "50 rows, 3 tags each; keyset = offset page",
        ));
    }
    drop(conn);
    if s.explain {
        explain(setup, q, shop.get(), last).await?;
    }
    db.close().await;
    Ok(out)
}

// ---------------------------------------------------------------- memory

/// Peak heap above what was live before each call (the caller's 40 MB input is not counted).
async fn memory(base: &Config, url: &str, setup: &Database) -> anyhow::Result<Vec<Row>> {
    const SIZE: usize = 40 * 1024 * 1024;
    let db = pool(base, url, 1).await?;
    let id = plans::enqueue(
        db.pool(),
        &plans::NewPlan {
            prompt: "memory",
            ..Default::default()
        },
    )
    .await?
    .id;
    // The snapshot writes need the run's attempt; stamp one as a claim would.
    let run = plans::Attempt {
        plan_id: id,
        token: Uuid::new_v4(),
    };
    sqlx::query("UPDATE plans SET run_attempt = $2 WHERE id = $1")
        .bind(run.plan_id)
        .bind(run.token)
        .execute(db.pool())
        .await?;
    // incompressible-looking bytes, as a zip is
    let mut rng = Xorshift::new(42);
    let zip: Vec<u8> = (0..SIZE).map(|_| rng.below(256) as u8).collect();
    let (r, store_peak) =
        peak_during(async || plans::store_zip_snapshot(db.pool(), run, &zip).await).await;
    r?;
    let (r, fetch_peak) =
        peak_during(async || plans::fetch_zip_snapshot(db.pool(), id).await).await;
    let fetched = r?.context("no snapshot")?;
    ensure!(fetched == zip, "memory: the snapshot came back different");
    drop(fetched);
    // a fresh connection: sqlx keeps its buffers' capacity, which would hide the chunked cost
    let fresh = pool(base, url, 1).await?;
    let mut conn = fresh.acquire().await?;
    let (r, chunked_store_peak) =
        peak_during(async || plans::store_zip_snapshot_chunked(&mut conn, run, &zip).await).await;
    r?;
    let (r, chunked_peak) =
        peak_during(async || plans::fetch_zip_snapshot_chunked(&mut conn, id).await).await;
    let fetched = r?.context("no snapshot")?;
    ensure!(
        fetched == zip,
        "memory: the chunked snapshot came back different"
    );
    drop(fetched);
    drop(conn);
    fresh.close().await;
    db.close().await;
    let _ = setup;
    Ok([
        ("store_zip_snapshot peak heap", store_peak),
        ("fetch_zip_snapshot peak heap", fetch_peak),
        ("store_zip_snapshot_chunked peak", chunked_store_peak),
        ("fetch_zip_snapshot_chunked peak", chunked_peak),
    ]
    .into_iter()
    .map(|(what, peak)| {
        row(
            &format!("40 MB zip: {what}"),
            format!("{:.1} MB", peak as f64 / (1024.0 * 1024.0)),
            "-".into(),
            format!("{:.2}× size", peak as f64 / SIZE as f64),
            "bytes round-trip equal",
        )
    })
    .collect())
}

// ---------------------------------------------------------------- EXPLAIN

async fn explain(
    db: &Database,
    q: &Queries,
    shop: Uuid,
    (order_number, id): (i32, Uuid),
) -> anyhow::Result<()> {
    let plan_id: Uuid = sqlx::query_scalar("SELECT id FROM plans LIMIT 1")
        .fetch_optional(db.pool())
        .await?
        .unwrap_or_default();
    let hash = RawApiKey::from_presented(raw_key(7)).hash(&ApiKeySecret::new(SECRET));
    // Seed a small pending queue so the claim has something to claim (rolled back below).
    let mut tx = db.begin().await?;
    sqlx::raw_sql(
        "UPDATE plans SET state = 'pending' WHERE id IN (SELECT id FROM plans ORDER BY timestamp_created LIMIT 100)",
    )
    .execute(&mut *tx)
    .await?;
    let items: Vec<(&str, String, Vec<Bind>)> = vec![
        (
            "W1 claim_next",
            q.find("claim", |s| {
                s.contains("FOR UPDATE SKIP LOCKED)")
                    && s.contains("'TASK_PROCESSING'")
                    && !s.contains("unnest(")
            })?
            .to_owned(),
            vec![Bind::Text("explain".into()), Bind::Uuid(Uuid::nil())],
        ),
        (
            "W2 authenticate",
            q.find("auth", |s| s.contains("touch AS ("))?.to_owned(),
            vec![Bind::Text(hash), Bind::F64(60.0)],
        ),
        (
            "W4 status",
            q.find("status", |s| {
                s.starts_with("SELECT id, state, progress_percentage, progress_message")
            })?
            .to_owned(),
            vec![Bind::Uuid(plan_id)],
        ),
        (
            "W5 catalog_page offset 50,000",
            q.find("catalog offset", |s| {
                s.contains("LIMIT $2 OFFSET $3)") && s.contains("shop.products_to_tags pt")
            })?
            .to_owned(),
            vec![Bind::Uuid(shop), Bind::I64(50), Bind::I64(50_000)],
        ),
        (
            "W5 catalog_page_after (keyset @ 50,000)",
            q.find("catalog keyset", |s| {
                s.contains("(order_number, id) > ($2, $3)")
            })?
            .to_owned(),
            vec![
                Bind::Uuid(shop),
                Bind::I32(order_number),
                Bind::Uuid(id),
                Bind::I64(51),
            ],
        ),
    ];
    for (label, sql, binds) in items {
        let text = format!("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) {sql}");
        let mut query = sqlx::query_scalar::<_, String>(AssertSqlSafe(text));
        for b in binds {
            query = match b {
                Bind::Text(v) => query.bind(v),
                Bind::F64(v) => query.bind(v),
                Bind::Uuid(v) => query.bind(v),
                Bind::I64(v) => query.bind(v),
                Bind::I32(v) => query.bind(v),
            };
        }
        let lines = query.fetch_all(&mut *tx).await?;
        println!("\n-- EXPLAIN {label}\n{}", lines.join("\n"));
    }
    tx.rollback().await?;
    Ok(())
}

enum Bind {
    Text(String),
    F64(f64),
    Uuid(Uuid),
    I64(i64),
    I32(i32),
}
