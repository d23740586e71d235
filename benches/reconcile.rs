//! `cargo bench --bench reconcile`: the ledger check, incremental (the routine run) against the
//! full re-read, as the ledger grows. See BENCHMARKS.md ("Ledger check").
//!
//! One database (`shared_db_reconcile_<unix time>`) on the server of `DATABASE_URL` (else the
//! embedded cluster) grows through the ledger sizes of `RECONCILE_SIZES` (default
//! `200000,2000000`; add `20000000` for the 20M row, ~6 GB of disk and a long seed). The ledger
//! belongs to `RECONCILE_USERS` users (default 1,000, as in the growth benchmark), seeded
//! set-based in chunks of 1M rows, each user's balance set to its ledger sum. At each size:
//!
//! * **full**: `reconcile_full` (reads the whole ledger, rebuilds the checkpoint), 3 runs;
//! * **incremental**: 1 % new rows are written (like usage billing: ledger row and balance move
//!   in one statement), then `reconcile` (the routine run: checkpoint + the new rows), 3 times.
//!
//! pgbench runs the very same statements (from `.sqlx/`, in one transaction, as the library
//! does) in the same run: the full script once per shared-db run, the incremental one each time
//! after another 1 % of rows. Every run must find no drift. Knobs: `RECONCILE_SIZES`,
//! `RECONCILE_USERS`, `RECONCILE_KEEP_DB=1`, `BENCH_PGBENCH`.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use shared_db::planexe::credit_history;
use shared_db::{Config, Database};
use sqlx::AssertSqlSafe;

#[allow(dead_code)]
mod common;
use common::{Pgbench, Queries, Scratch, find_pgbench, for_pgbench};

const RUNS: usize = 3;
const CHUNK: i64 = 1_000_000;

fn main() -> anyhow::Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("the reconcile benchmark runs with `cargo bench --bench reconcile`");
        return Ok(());
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

fn env_list(key: &str, default: &str) -> anyhow::Result<Vec<i64>> {
    std::env::var(key)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| s.trim().parse().with_context(|| key.to_owned()))
        .collect()
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

async fn run() -> anyhow::Result<()> {
    let sizes = env_list("RECONCILE_SIZES", "200000,2000000")?;
    let users = env_list("RECONCILE_USERS", "1000")?[0];
    let pgbench_bin = match std::env::var_os("BENCH_PGBENCH") {
        Some(p) => p.into(),
        None => find_pgbench()?,
    };
    let base = Config::from_env()?;
    let scratch = Scratch::create(&base, "shared_db_reconcile").await?;
    let dir = std::env::temp_dir().join(&scratch.name);
    std::fs::create_dir_all(&dir)?;
    let pg = Pgbench {
        bin: &pgbench_bin,
        url: &scratch.url,
        dir: &dir,
        threads: 1,
    };
    let result = grow(&base, &scratch.url, &pg, &sizes, users).await;
    scratch.finish("RECONCILE_KEEP_DB").await?;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn exec(db: &Database, sql: &str) -> anyhow::Result<()> {
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(db.pool())
        .await?;
    Ok(())
}

/// `n` ledger rows spread over the users, with the balances moved by the same amounts, in one
/// statement (as the library's billing writes them).
async fn write_rows(db: &Database, n: i64, users: i64) -> anyhow::Result<()> {
    exec(
        db,
        &format!(
            "WITH l AS (
                 INSERT INTO credit_history (id, user_id, delta, reason, source, external_id,
                                             created_at)
                 SELECT gen_random_uuid(),
                        ('00000000-0000-0000-0000-' || lpad(to_hex(g % {users}), 12, '0'))::uuid,
                        -0.010000000, 'plan_usage_in_progress', 'usage_billing_progress',
                        'plan-' || (g / 20), now() AT TIME ZONE 'utc'
                 FROM generate_series(1, {n}) g
                 RETURNING user_id, delta),
             s AS (SELECT user_id, sum(delta) AS total FROM l GROUP BY user_id)
             UPDATE user_account u SET credits_balance = u.credits_balance + s.total
             FROM s WHERE u.id = s.user_id"
        ),
    )
    .await
}

async fn grow(
    base: &Config,
    url: &str,
    pg: &Pgbench<'_>,
    sizes: &[i64],
    users: i64,
) -> anyhow::Result<()> {
    let mut c = base.clone();
    c.database_url = Some(url.into());
    c.max_connections = 2;
    c.statement_timeout = None;
    let db = Database::connect(&c).await?;
    db.migrate().await?;
    exec(
        &db,
        &format!(
            "INSERT INTO user_account (id, name, is_admin, free_plan_used, credits_balance,
                                       created_at, updated_at)
             SELECT ('00000000-0000-0000-0000-' || lpad(to_hex(g), 12, '0'))::uuid,
                    'user ' || g, false, false, 1000000, now() AT TIME ZONE 'utc',
                    now() AT TIME ZONE 'utc'
             FROM generate_series(0, {users} - 1) g;
             -- the opening balance has its ledger row (a grant), so balance = ledger sum
             INSERT INTO credit_history (id, user_id, delta, reason, source, created_at)
             SELECT gen_random_uuid(), id, 1000000, 'admin_grant', 'admin',
                    now() AT TIME ZONE 'utc'
             FROM user_account"
        ),
    )
    .await?;

    let q = Queries::load()?;
    let lock = q.find("reconcile lock", |s| {
        s.contains("INSERT INTO credit_reconcile_watermark")
    })?;
    let clear = q.find("reconcile clear", |s| {
        s.starts_with("DELETE FROM credit_reconcile_checkpoint")
    })?;
    let full = q.find("reconcile full", |s| {
        s.contains("\"ledger_sum!\"") && s.contains("full_at = now()")
    })?;
    let incremental = q.find("reconcile incremental", |s| {
        s.contains("\"ledger_sum!\"") && s.contains("h.xact_id >= wm.below")
    })?;
    let script = |stmts: &[&str]| {
        let mut s = String::from("BEGIN;\n");
        for st in stmts {
            s.push_str(&for_pgbench(st, &[]));
            s.push_str(";\n");
        }
        s.push_str("COMMIT;\n");
        s
    };
    let full_script = script(&[lock, clear, full]);
    let incremental_script = script(&[lock, incremental]);

    println!(
        "| ledger rows | users | check | shared-db median (s) | runs (s) | pgbench median (s) | load before → after |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut have = 0;
    for &size in sizes {
        let t = Instant::now();
        while have < size {
            let n = CHUNK.min(size - have);
            write_rows(&db, n, users).await?;
            have += n;
        }
        exec(&db, "VACUUM ANALYZE credit_history, user_account").await?;
        eprintln!(
            "seeded {size} ledger rows in {:.0} s",
            t.elapsed().as_secs_f64()
        );
        let mut conn = db.acquire().await?;

        // full: ours, then pgbench, alternating
        let before = load();
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..RUNS {
            let t = Instant::now();
            let drift = credit_history::reconcile_full(&mut conn).await?;
            ours.push(t.elapsed());
            ensure!(drift.is_empty(), "full: {} users drift", drift.len());
            let run = pg.run(
                "full",
                std::slice::from_ref(&full_script),
                &[],
                1,
                &["-t", "1"],
                true,
            )?;
            theirs.extend(run.latencies);
        }
        report(size, users, "full", &ours, &theirs, &before);

        // incremental: 1 % new rows before each run (of either side)
        let new_rows = (size / 100).max(1);
        let before = load();
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..RUNS {
            write_rows(&db, new_rows, users).await?;
            have += new_rows;
            let t = Instant::now();
            let drift = credit_history::reconcile(&mut conn).await?;
            ours.push(t.elapsed());
            ensure!(drift.is_empty(), "incremental: {} users drift", drift.len());
            write_rows(&db, new_rows, users).await?;
            have += new_rows;
            let run = pg.run(
                "incremental",
                std::slice::from_ref(&incremental_script),
                &[],
                1,
                &["-t", "1"],
                true,
            )?;
            theirs.extend(run.latencies);
        }
        report(
            size,
            users,
            "incremental (1 % new)",
            &ours,
            &theirs,
            &before,
        );
        // the checkpoint the routine runs kept agrees with the ledger
        let drift = credit_history::reconcile_full(&mut conn).await?;
        ensure!(
            drift.is_empty(),
            "after the runs: {} users drift",
            drift.len()
        );
    }
    Ok(())
}

fn report(
    size: i64,
    users: i64,
    check: &str,
    ours: &[Duration],
    theirs: &[Duration],
    before: &str,
) {
    let median = |v: &[Duration]| {
        let mut v = v.to_vec();
        v.sort();
        v.get(v.len() / 2).map_or(f64::NAN, Duration::as_secs_f64)
    };
    let runs: Vec<String> = ours
        .iter()
        .map(|d| format!("{:.3}", d.as_secs_f64()))
        .collect();
    println!(
        "| {size} | {users} | {check} | {:.3} | {} | {:.3} | {before} → {} |",
        median(ours),
        runs.join(", "),
        median(theirs),
        load()
    );
}
