//! `cargo bench --bench growth`: does each hot planexe operation cost the same on a database of
//! 1,000 plans and on one of 1,000,000? See BENCHMARKS.md ("Growth").
//!
//! One database (`shared_db_growth_<unix time>`) on the server of `DATABASE_URL` (else the
//! embedded cluster) grows through the sizes of `GROWTH_SIZES`. At each size it holds, per plan,
//! 10 events, 20 credit_history rows and 5 token_metrics rows (seeded set-based, in chunks of
//! 25,000 plans), plus 1,000 plans of the user whose list is paged; 1,000 users with one API
//! key each; all plans finished except a pending queue
//! of 1 % (at least `2 × (GROWTH_ITERS + 5) + 10`, so both sides have plans to claim at small sizes).
//! Each operation then runs `GROWTH_ITERS` times on one held connection through shared-db's
//! public API, and the very same SQL (from `.sqlx/`) runs as many times through
//! `pgbench -M prepared` with one client, in the same run; both report p50/p99 latency and
//! throughput. At the largest size it prints `EXPLAIN (ANALYZE)` of every operation.
//!
//! Knobs: `GROWTH_SIZES` (default `1000,10000,100000,1000000`; e.g. `1000,10000,100000` on a
//! small disk: 1M plans take 9.1 GB, keep ~12 GB free), `GROWTH_ITERS` (default 300), `GROWTH_KEEP_DB=1`,
//! `BENCH_PGBENCH` (path of pgbench), `GROWTH_DROP_INDEXES=1` (before/after: without migrations
//! 0013, 0016 and 0017).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use futures::future::BoxFuture;
use rust_decimal::Decimal;
use shared_db::planexe::credit_history::{self, PlanUsage};
use shared_db::planexe::user_api_key::{self, ApiKeySecret, RawApiKey};
use shared_db::planexe::{PageRequest, events, plans};
use shared_db::{Config, Database};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use uuid::Uuid;

// Not every benchmark uses every helper.
#[allow(dead_code)]
mod common;
use common::{COLD_RUNS, Pgbench, Queries, Scratch, Xorshift, find_pgbench, for_pgbench, pct};

const SECRET: &str = "growth-secret";
const USERS: usize = 1_000;
/// User 1 owns 1,000 plans besides the sized ones (seeded with the first size): the user whose
/// list is paged.
const HEAVY_USER: &str = "00000000-0000-0000-0000-000000000001";
const PAGE_SIZE: i64 = 20;
const CHUNK: i64 = 25_000;
/// Rows sampled per operation and side (one pgbench script file each, picked uniformly).
const SAMPLE: usize = 16;
const API_KEY: Uuid = Uuid::from_u128(0x6b6579);

fn raw_key(u: usize) -> String {
    format!("pex_{u:032}")
}

fn main() -> anyhow::Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("the growth benchmark runs with `cargo bench --bench growth`");
        return Ok(());
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let sizes: Vec<i64> = std::env::var("GROWTH_SIZES")
        .unwrap_or_else(|_| "1000,10000,100000,1000000".into())
        .split(',')
        .map(|s| s.trim().parse().context("GROWTH_SIZES"))
        .collect::<anyhow::Result<_>>()?;
    let iters: usize = std::env::var("GROWTH_ITERS")
        .ok()
        .map_or(Ok(300), |v| v.parse())?;
    let pgbench_bin = match std::env::var_os("BENCH_PGBENCH") {
        Some(p) => p.into(),
        None => find_pgbench()?,
    };
    let base = Config::from_env()?;
    let scratch = Scratch::create(&base, "shared_db_growth").await?;
    let url = &scratch.url;
    let dir = std::env::temp_dir().join(&scratch.name);
    std::fs::create_dir_all(&dir)?;
    let pg = Pgbench {
        bin: &pgbench_bin,
        url,
        dir: &dir,
        threads: 1,
    };
    let result = grow(&base, url, &pg, &sizes, iters).await;
    scratch.finish("GROWTH_KEEP_DB").await?;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// One measured figure: latencies and throughput of one side at one size.
#[derive(Clone)]
struct Figure {
    p50: f64,
    p99: f64,
    per_sec: f64,
}

impl Figure {
    fn of(mut lat: Vec<Duration>, elapsed: Duration) -> Figure {
        lat.sort();
        Figure {
            p50: pct(&lat, 0.50),
            p99: pct(&lat, 0.99),
            per_sec: lat.len() as f64 / elapsed.as_secs_f64(),
        }
    }
}

struct Measured {
    op: &'static str,
    size: i64,
    ours: Figure,
    pgbench: Figure,
}

async fn grow(
    base: &Config,
    url: &str,
    pg: &Pgbench<'_>,
    sizes: &[i64],
    iters: usize,
) -> anyhow::Result<()> {
    let mut c = base.clone();
    c.database_url = Some(url.into());
    c.max_connections = 2;
    // seeding a chunk on a busy machine can outlast the pool's default statement timeout
    c.statement_timeout = None;
    let db = Database::connect(&c).await?;
    db.migrate().await?;
    if std::env::var("GROWTH_DROP_INDEXES").is_ok_and(|v| v == "1") {
        // before/after: the schema without the three indexes this benchmark led to
        exec(
            &db,
            "DROP INDEX ix_credit_history_external_id_source, ix_plans_processing_last_progress_at,
                        ix_plans_user_id_timestamp_created_desc",
        )
        .await?;
    }
    let queries = Queries::load()?;
    seed_users(&db).await?;
    eprintln!(
        "growth benchmark: {} CPU(s), {iters} iterations per operation and side, sizes {sizes:?}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut results = Vec::new();
    let mut seeded = 0;
    for (i, &size) in sizes.iter().enumerate() {
        let t = Instant::now();
        seed_plans(&db, seeded, size, iters).await?;
        seeded = size;
        let bytes: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
            .fetch_one(db.pool())
            .await?;
        eprintln!(
            "\n== {size} plans (seeded in {:.0} s; database {:.2} GB; load {})",
            t.elapsed().as_secs_f64(),
            bytes as f64 / 1e9,
            load_average()
        );
        let largest = i + 1 == sizes.len();
        results.extend(measure(&db, pg, &queries, size, iters, largest).await?);
    }
    report(&results);
    db.close().await;
    Ok(())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

async fn exec(db: &Database, sql: &str) -> anyhow::Result<()> {
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(db.pool())
        .await
        .with_context(|| sql.chars().take(160).collect::<String>())?;
    Ok(())
}

async fn seed_users(db: &Database) -> anyhow::Result<()> {
    exec(
        db,
        &format!(
            "INSERT INTO user_account (id, created_at, is_admin, free_plan_used, credits_balance)
             SELECT ('00000000-0000-0000-0000-' || lpad(u::text, 12, '0'))::uuid,
                    now() AT TIME ZONE 'utc', false, false, 0
             FROM generate_series(1, {USERS}) u;
             INSERT INTO user_api_key (id, user_id, key_hash, key_prefix, label, created_at)
             SELECT gen_random_uuid(), ('00000000-0000-0000-0000-' || lpad(u::text, 12, '0'))::uuid,
                    encode(sha256(convert_to('{SECRET}:pex_' || lpad(u::text, 32, '0'), 'UTF8')), 'hex'),
                    left('pex_' || lpad(u::text, 32, '0'), 10), 'growth', now() AT TIME ZONE 'utc'
             FROM generate_series(1, {USERS}) u;"
        ),
    )
    .await?;
    let auth = user_api_key::authenticate(
        db.pool(),
        &ApiKeySecret::new(SECRET),
        &RawApiKey::from_presented(raw_key(7)),
    )
    .await?;
    ensure!(auth.is_some(), "seeded key 7 does not authenticate");
    Ok(())
}

/// Plans `from+1 ..= to` with their events, ledger rows and token metrics, in chunks; then the
/// balances are set to the ledger sums, the pending queue topped up and the tables analysed.
async fn seed_plans(db: &Database, from: i64, to: i64, iters: usize) -> anyhow::Result<()> {
    let plan = "md5('growth-plan-' || g)::uuid";
    let owner = format!(
        "('00000000-0000-0000-0000-' || lpad((CASE WHEN g <= 0 THEN 1 ELSE 2 + g % {} END)::text, 12, '0'))",
        USERS - 1
    );
    let at = "(timestamp '2026-01-01' + g * interval '1 second')";
    // the list user's 1,000 plans (numbers -999..=0) come with the first size
    let mut lo = if from == 0 { -999 } else { from + 1 };
    while lo <= to {
        let hi = if lo < 0 { 0 } else { (lo + CHUNK - 1).min(to) };
        exec(
            db,
            &format!(
                "INSERT INTO plans (id, timestamp_created, state, prompt, progress_percentage,
                                    progress_message, last_seen_timestamp, stop_requested, user_id,
                                    parameters)
                 SELECT {plan}, {at}, 'completed', repeat('Plan a weekend trip ', 10) || g, 100,
                        'Completed', {at}, false, {owner},
                        json_build_object('model_profile', 'baseline', 'pipeline_version', 2)
                 FROM generate_series({lo}, {hi}) g;
                 INSERT INTO events (\"timestamp\", event_type, message, context)
                 SELECT {at} + e * interval '1 ms',
                        (CASE e WHEN 1 THEN 'TASK_PENDING' WHEN 2 THEN 'TASK_PROCESSING'
                                WHEN 10 THEN 'TASK_COMPLETED' ELSE 'GENERIC_EVENT' END)::eventtype,
                        'step ' || e, json_build_object('task_id', {plan}::text, 'step', e)
                 FROM generate_series({lo}, {hi}) g, generate_series(1, 10) e;
                 INSERT INTO credit_history (id, user_id, delta, reason, source, external_id,
                                             api_key_id, created_at)
                 SELECT gen_random_uuid(), {owner}::uuid,
                        CASE WHEN e < 20 THEN -0.01 ELSE -0.05 END,
                        CASE WHEN e < 20 THEN 'plan_usage_in_progress' ELSE 'plan_created_with_usage_cost' END,
                        CASE WHEN e < 20 THEN 'usage_billing_progress' ELSE 'usage_billing' END,
                        {plan}::text, NULL, {at} + e * interval '1 ms'
                 FROM generate_series({lo}, {hi}) g, generate_series(1, 20) e;
                 INSERT INTO token_metrics (\"timestamp\", llm_model, task_id, user_id, input_tokens,
                                            output_tokens, cost_usd, duration_seconds, success)
                 SELECT {at} + e * interval '1 ms', 'model-' || e, {plan}::text, {owner}, 1000, 200,
                        0.002, 1.5, true
                 FROM generate_series({lo}, {hi}) g, generate_series(1, 5) e;"
            ),
        )
        .await?;
        eprint!("\r   seeded {hi} plans ");
        lo = hi + 1;
    }
    // both sides claim `iters` plans after their cold runs
    let pending_target = (to / 100).max(2 * (iters + COLD_RUNS) as i64 + 10);
    ensure!(
        pending_target + 2 * SAMPLE as i64 <= to,
        "{to} plans cannot hold {pending_target} pending and {} sampled finished ones: \
         lower GROWTH_ITERS or raise the smallest size",
        2 * SAMPLE
    );
    exec(
        db,
        &format!(
            "UPDATE user_account u SET credits_balance = coalesce(s.total, 0)
             FROM (SELECT user_id, sum(delta) AS total FROM credit_history GROUP BY user_id) s
             WHERE s.user_id = u.id;
             UPDATE plans SET state = 'pending', progress_percentage = 0, progress_message = 'Queued'
             WHERE id IN (SELECT id FROM plans WHERE state = 'completed' AND user_id <> '{HEAVY_USER}'
                          ORDER BY timestamp_created DESC
                          LIMIT greatest(0, {pending_target}
                                            - (SELECT count(*) FROM plans WHERE state = 'pending')));
             UPDATE user_api_key SET last_used_at = NULL;"
        ),
    )
    .await?;
    exec(
        db,
        "VACUUM ANALYZE plans, events, credit_history, token_metrics, user_account, user_api_key",
    )
    .await?;
    Ok(())
}

/// One operation: what shared-db calls (given the iteration number) and the pgbench scripts.
struct Case {
    op: &'static str,
    ours: Op,
    scripts: Vec<String>,
    defines: Vec<(String, String)>,
    /// `(sql, literal parameters)` for EXPLAIN at the largest size.
    explain: (String, Vec<String>),
    iters: usize,
}

type Op = Arc<
    dyn for<'a> Fn(&'a mut PgConnection, usize) -> BoxFuture<'a, anyhow::Result<()>> + Send + Sync,
>;

async fn measure(
    db: &Database,
    pg: &Pgbench<'_>,
    q: &Queries,
    size: i64,
    iters: usize,
    explain: bool,
) -> anyhow::Result<Vec<Measured>> {
    let owners: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT id, user_id FROM plans WHERE state = 'completed' AND user_id <> $1 ORDER BY id",
    )
    .bind(HEAVY_USER)
    .fetch_all(db.pool())
    .await?;
    // two disjoint samples of finished plans, evenly spread: ours and pgbench's (billing writes)
    let sample = |offset: usize| -> Vec<(Uuid, Uuid)> {
        (0..SAMPLE)
            .map(|i| {
                let (id, owner) = &owners[(2 * i + offset) * owners.len() / (2 * SAMPLE)];
                (*id, Uuid::parse_str(owner).expect("owner uuid"))
            })
            .collect()
    };
    let (mine, theirs) = (Arc::new(sample(0)), Arc::new(sample(1)));
    // Billing is accepted only from the run that owns the plan, and its idempotency keys name the
    // run: give every sampled plan a run token of its own (its id).
    let sampled: Vec<Uuid> = mine
        .iter()
        .chain(theirs.iter())
        .map(|(id, _)| *id)
        .collect();
    sqlx::query("UPDATE plans SET run_attempt = id WHERE id = ANY($1)")
        .bind(&sampled)
        .execute(db.pool())
        .await?;
    let cases = cases(q, &mine, &theirs, iters)?;
    let mut out = Vec::new();
    let mut conn = db.acquire().await?;
    for case in cases {
        exec(db, "UPDATE user_api_key SET last_used_at = NULL").await?;
        // warm-up: the first calls on this connection prepare the statements and plan them
        for i in 0..COLD_RUNS {
            (case.ours)(&mut conn, case.iters + i).await?;
        }
        let mut lat = Vec::with_capacity(case.iters);
        let start = Instant::now();
        for i in 0..case.iters {
            let t = Instant::now();
            (case.ours)(&mut conn, i).await?;
            lat.push(t.elapsed());
        }
        let ours = Figure::of(lat, start.elapsed());
        exec(db, "UPDATE user_api_key SET last_used_at = NULL").await?;
        // pgbench warms each script file up on its own: time what follows each one's cold runs
        let total = case.iters + COLD_RUNS * case.scripts.len();
        let run = pg.run(
            case.op,
            &case.scripts,
            &case.defines,
            1,
            &["-t", &total.to_string()],
            true,
        )?;
        ensure!(
            run.transactions == total as u64 && run.warm.len() >= case.iters,
            "pgbench {}: {} transactions, {} warm",
            case.op,
            run.transactions,
            run.warm.len()
        );
        let busy: Duration = run.warm.iter().sum();
        let pgbench = Figure::of(run.warm, busy);
        eprintln!(
            "   {:<28} shared-db p50 {:>8.3} ms p99 {:>8.3} ms {:>7.0}/s | pgbench p50 {:>8.3} ms p99 {:>8.3} ms {:>7.0}/s",
            case.op, ours.p50, ours.p99, ours.per_sec, pgbench.p50, pgbench.p99, pgbench.per_sec
        );
        if explain {
            print_explain(&mut conn, case.op, &case.explain.0, &case.explain.1).await?;
        }
        out.push(Measured {
            op: case.op,
            size,
            ours,
            pgbench,
        });
    }
    Ok(out)
}

fn cases(
    q: &Queries,
    mine: &Arc<Vec<(Uuid, Uuid)>>,
    theirs: &Arc<Vec<(Uuid, Uuid)>>,
    iters: usize,
) -> anyhow::Result<Vec<Case>> {
    let secret = Arc::new(ApiKeySecret::new(SECRET));
    let per_script = |sql: &str, vars: &[&str], values: &dyn Fn(usize) -> Vec<String>| {
        let mut scripts = Vec::new();
        let mut defines = Vec::new();
        for i in 0..SAMPLE {
            let names: Vec<String> = vars.iter().map(|v| format!("{v}{i}")).collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            scripts.push(format!("{};\n", for_pgbench(sql, &refs)));
            defines.extend(names.into_iter().zip(values(i)));
        }
        (scripts, defines)
    };
    let lit = |v: &[String]| v.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>();
    let mut cases = Vec::new();

    // claim_next + finish_completed: two autocommit statements per plan, as W1
    let claim = q.find("claim_next", |s| {
        s.contains("FOR UPDATE SKIP LOCKED)")
            && s.contains("'TASK_PROCESSING'")
            && !s.contains("unnest(")
    })?;
    let finish = q.find("finish_completed", |s| {
        s.contains("'Processing -> Completed'") && !s.contains("unnest(")
    })?;
    cases.push(Case {
        op: "claim_next + finish_completed",
        ours: op(|conn, _| {
            Box::pin(async move {
                let plan = plans::claim_next(&mut *conn, "growth-worker")
                    .await?
                    .context("the queue ran dry")?;
                plans::finish_completed(&mut *conn, plan.attempt, None).await?;
                Ok(())
            })
        }),
        scripts: vec![format!(
            "{}\n\\gset\n{};\n",
            for_pgbench(claim, &["client_id", "tok"]),
            for_pgbench(finish, &["id", "ctx", "tok"])
        )],
        defines: vec![
            ("ctx".into(), format!(r#"{{"task_id": "{}"}}"#, Uuid::nil())),
            ("tok".into(), Uuid::from_u128(0x0b5e).to_string()),
        ],
        explain: (
            claim.to_owned(),
            lit(&["growth-explain".into(), Uuid::nil().to_string()]),
        ),
        iters,
    });

    let status = q.find("status", |s| {
        s.starts_with("SELECT id, state, progress_percentage, progress_message")
    })?;
    let (scripts, defines) = per_script(status, &["i"], &|i| vec![mine[i].0.to_string()]);
    cases.push(Case {
        op: "status",
        ours: op({
            let mine = mine.clone();
            move |conn, i| {
                let id = mine[i % SAMPLE].0;
                Box::pin(async move {
                    plans::status(&mut *conn, id).await?;
                    Ok(())
                })
            }
        }),
        scripts,
        defines,
        explain: (status.to_owned(), lit(&[mine[0].0.to_string()])),
        iters,
    });

    let list = q.find("list_by_user", |s| {
        s.contains("FROM plans WHERE user_id = $1") && s.contains("OFFSET")
    })?;
    for (op_name, page) in [("list_by_user page 1", 0i64), ("list_by_user page 50", 49)] {
        let offset = page * PAGE_SIZE;
        cases.push(Case {
            op: op_name,
            ours: op(move |conn, _| {
                Box::pin(async move {
                    let rows = plans::list_by_user(
                        &mut *conn,
                        HEAVY_USER,
                        PageRequest {
                            limit: PAGE_SIZE,
                            offset,
                        },
                    )
                    .await?;
                    ensure!(rows.len() == PAGE_SIZE as usize, "short page");
                    Ok(())
                })
            }),
            scripts: vec![format!(
                "{};\n",
                for_pgbench(list, &["u", "preview", "limit", "offset"])
            )],
            defines: vec![
                ("u".into(), HEAVY_USER.into()),
                ("preview".into(), "240".into()),
                ("limit".into(), PAGE_SIZE.to_string()),
                ("offset".into(), offset.to_string()),
            ],
            explain: (
                list.to_owned(),
                lit(&[
                    HEAVY_USER.into(),
                    "240".into(),
                    PAGE_SIZE.to_string(),
                    offset.to_string(),
                ]),
            ),
            iters,
        });
    }

    let by_plan = q.find("events::list_by_plan", |s| {
        s.contains("FROM events WHERE planexe_event_task_id(context) = $1::uuid::text")
    })?;
    let (scripts, defines) = per_script(by_plan, &["p", "n"], &|i| {
        vec![mine[i].0.to_string(), "100".into()]
    });
    cases.push(Case {
        op: "events by plan",
        ours: op({
            let mine = mine.clone();
            move |conn, i| {
                let id = mine[i % SAMPLE].0;
                Box::pin(async move {
                    let rows = events::list_by_plan(&mut *conn, id, 100).await?;
                    ensure!(rows.len() >= 10, "events missing");
                    Ok(())
                })
            }
        }),
        scripts,
        defines,
        explain: (
            by_plan.to_owned(),
            lit(&[mine[0].0.to_string(), "100".into()]),
        ),
        iters,
    });

    // billing: BEGIN; lock the user; lock the plan's run; one statement; COMMIT (what
    // tx::transaction sends). Each sampled plan's run token is its own id (see `measure`).
    let lock = q.find("lock_user", |s| {
        s.starts_with("SELECT id FROM user_account WHERE id = $1 FOR UPDATE")
    })?;
    let run = q.find("lock_run", |s| {
        s.starts_with("SELECT run_attempt FROM plans WHERE id = $1 FOR SHARE")
    })?;
    let progress = q.find("bill_usage_progress", |s| {
        s.contains("'plan_usage_in_progress'") && s.contains("idempotency_key = $5")
    })?;
    let fin = q.find("bill_usage_final", |s| {
        s.contains("ON CONFLICT (external_id) WHERE source = 'usage_billing' DO NOTHING")
    })?;
    for (op_name, sql, is_final) in [
        ("bill_usage_progress", progress, false),
        ("bill_usage_final", fin, true),
    ] {
        // the idempotency key is unique per call on both sides (ours: attempt and cost)
        let vars: &[&str] = if is_final {
            &["u", "p", "cost", "k", "reason", "ik"]
        } else {
            &["u", "p", "cost", "k", "ik"]
        };
        let mut scripts = Vec::new();
        let mut defines = vec![("k".to_owned(), API_KEY.to_string())];
        if is_final {
            defines.push(("reason".into(), "plan_created_with_usage_cost".into()));
        }
        for (i, (plan, owner)) in theirs.iter().enumerate() {
            let (u, p) = (format!("u{i}"), format!("p{i}"));
            let mut names: Vec<&str> = vec![&u, &p];
            names.extend(&vars[2..]);
            scripts.push(format!(
                "\\set cost random(1, 1000)\n\\set ik random(1, 1000000000000)\n\
                 BEGIN;\n{};\n{};\n{};\nCOMMIT;\n",
                for_pgbench(lock, &[&u]),
                for_pgbench(run, &[&p]),
                for_pgbench(sql, &names)
            ));
            defines.push((u.clone(), owner.to_string()));
            defines.push((p.clone(), plan.to_string()));
        }
        let mine = mine.clone();
        let mut explain_args = vec![
            mine[0].1.to_string(),
            mine[0].0.to_string(),
            "500".into(),
            API_KEY.to_string(),
        ];
        if is_final {
            explain_args.push("plan_created_with_usage_cost".into());
        }
        explain_args.push("explain-key".into());
        cases.push(Case {
            op: op_name,
            ours: op(move |conn, i| {
                let (plan_id, user_id) = mine[(i * 7919) % SAMPLE];
                let mut rng = Xorshift::new(i as u64 + 1);
                let usage = PlanUsage {
                    user_id,
                    attempt: plans::Attempt {
                        plan_id,
                        token: plan_id,
                    },
                    api_key_id: Some(API_KEY),
                    cost: Decimal::from(rng.below(1000) + 1),
                    succeeded: true,
                };
                Box::pin(async move {
                    if is_final {
                        credit_history::bill_usage_final(&mut *conn, &usage).await?;
                    } else {
                        credit_history::bill_usage_progress(&mut *conn, &usage).await?;
                    }
                    Ok(())
                })
            }),
            scripts,
            defines,
            explain: (sql.to_owned(), lit(&explain_args)),
            iters,
        });
    }

    let auth = q.find("authenticate", |s| s.contains("touch AS ("))?;
    let keys: Vec<usize> = (0..SAMPLE).map(|i| 1 + i * USERS / SAMPLE).collect();
    let mut scripts = Vec::new();
    let mut defines = vec![("granularity".to_owned(), "60".to_owned())];
    for (i, k) in keys.iter().enumerate() {
        let var = format!("h{i}");
        scripts.push(format!("{};\n", for_pgbench(auth, &[&var, "granularity"])));
        defines.push((var, RawApiKey::from_presented(raw_key(*k)).hash(&secret)));
    }
    let explain_hash = RawApiKey::from_presented(raw_key(keys[0])).hash(&secret);
    cases.push(Case {
        op: "authenticate",
        ours: op({
            let secret = secret.clone();
            let keys = keys.clone();
            move |conn, i| {
                let secret = secret.clone();
                let raw = RawApiKey::from_presented(raw_key(keys[i % SAMPLE]));
                Box::pin(async move {
                    let found = user_api_key::authenticate(&mut *conn, &secret, &raw).await?;
                    ensure!(found.is_some(), "a seeded key did not authenticate");
                    Ok(())
                })
            }
        }),
        scripts,
        defines,
        explain: (auth.to_owned(), lit(&[explain_hash, "60".into()])),
        iters,
    });

    let reaper = q.find("requeue_stale", |s| s.contains("'Re-queued: worker lost'"))?;
    cases.push(Case {
        op: "reaper pass",
        ours: op(|conn, _| {
            Box::pin(async move {
                plans::requeue_stale(&mut *conn, Duration::from_secs(3600), 3).await?;
                Ok(())
            })
        }),
        scripts: vec![format!("{};\n", for_pgbench(reaper, &["t", "reaps"]))],
        defines: vec![("t".into(), "3600".into()), ("reaps".into(), "3".into())],
        explain: (reaper.to_owned(), lit(&["3600".into(), "3".into()])),
        iters,
    });

    // the full check (the incremental one reads only new rows: benches/reconcile.rs), as the
    // library runs it: watermark lock, checkpoint cleared, whole ledger summed, in one transaction
    let lock = q.find("reconcile lock", |s| {
        s.contains("INSERT INTO credit_reconcile_watermark")
    })?;
    let clear = q.find("reconcile clear", |s| {
        s.starts_with("DELETE FROM credit_reconcile_checkpoint")
    })?;
    let reconcile = q.find("reconcile", |s| {
        s.contains("AS \"ledger_sum!\"") && s.contains("full_at = now()")
    })?;
    cases.push(Case {
        op: "reconcile (offline)",
        ours: op(|conn, _| {
            Box::pin(async move {
                let drift = credit_history::reconcile_full(&mut *conn).await?;
                ensure!(
                    drift.is_empty(),
                    "balance != ledger for {} users",
                    drift.len()
                );
                Ok(())
            })
        }),
        scripts: vec![format!(
            "BEGIN;\n{};\n{};\n{};\nCOMMIT;\n",
            for_pgbench(lock, &[]),
            for_pgbench(clear, &[]),
            for_pgbench(reconcile, &[])
        )],
        defines: vec![],
        explain: (reconcile.to_owned(), vec![]),
        iters: 3,
    });
    Ok(cases)
}

fn op<F>(f: F) -> Op
where
    F: for<'a> Fn(&'a mut PgConnection, usize) -> BoxFuture<'a, anyhow::Result<()>>
        + Send
        + Sync
        + 'static,
{
    Arc::new(f)
}

/// `EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF)` of `sql` with `$n` replaced by the literals, in a
/// transaction that is rolled back (some of the statements write).
async fn print_explain(
    conn: &mut PgConnection,
    op: &str,
    sql: &str,
    literals: &[String],
) -> anyhow::Result<()> {
    let mut text = sql.to_owned();
    for (i, l) in literals.iter().enumerate().rev() {
        text = text.replace(&format!("${}", i + 1), l);
    }
    let mut tx = conn.begin().await?;
    let rows: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
        "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) {text}"
    )))
    .fetch_all(&mut *tx)
    .await?;
    tx.rollback().await?;
    println!("\n-- EXPLAIN {op}\n{}", rows.join("\n"));
    Ok(())
}

/// Per operation: cost at each size, and the largest size against the smallest.
fn report(results: &[Measured]) {
    println!("\n## growth results (p50 / p99 in ms; throughput per second, one client)\n");
    let mut ops: Vec<&str> = Vec::new();
    for m in results {
        if !ops.contains(&m.op) {
            ops.push(m.op);
        }
    }
    for op in ops {
        println!("### {op}\n");
        println!(
            "| plans | shared-db p50 / p99 | shared-db ops/s | pgbench p50 / p99 | pgbench tps | ratio (tps) |"
        );
        println!("| --- | --- | --- | --- | --- | --- |");
        let rows: Vec<&Measured> = results.iter().filter(|m| m.op == op).collect();
        for m in &rows {
            println!(
                "| {} | {:.3} / {:.3} | {:.0} | {:.3} / {:.3} | {:.0} | {:.2} |",
                m.size,
                m.ours.p50,
                m.ours.p99,
                m.ours.per_sec,
                m.pgbench.p50,
                m.pgbench.p99,
                m.pgbench.per_sec,
                m.ours.per_sec / m.pgbench.per_sec
            );
        }
        if let (Some(first), Some(last)) = (rows.first(), rows.last()) {
            println!(
                "\n{} plans vs {}: shared-db p50 {:.2}×, pgbench p50 {:.2}×\n",
                last.size,
                first.size,
                last.ours.p50 / first.ours.p50,
                last.pgbench.p50 / first.pgbench.p50
            );
        }
    }
}
