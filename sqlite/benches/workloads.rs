//! `cargo bench -p shared-db-sqlite --bench workloads` (BENCHMARKS.md, "SQLite"): the queue
//! (claim + complete, 8 workers), API-key authentication and a credit charge (16 clients each) on
//! SQLite through shared-db-sqlite, the same SQL through Python's sqlite3 driver with the same
//! pragmas (`sqlite3_workloads.py`, reading the SQL from `sqlite/.sqlx`), and the same calls on
//! the PostgreSQL backend (shared-db on a fresh database of the embedded cluster), in one run on
//! one machine. Every client holds one connection. Seeding uses the library's own calls.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use shared_db::Config;
use shared_db::planexe as pg;
use shared_db::planexe::credit_history::Charge;
use shared_db::planexe::plans::NewPlan;
use shared_db::planexe::user_api_key::{ApiKeySecret, KeyOptions, RawApiKey};
use shared_db_sqlite::planexe as lite;
use uuid::Uuid;

const PLANS: usize = 4_000;
const KEY_USERS: usize = 1_000;
const CHARGE_USERS: usize = 100;
const WORKERS: usize = 8;
const CLIENTS: usize = 16;
const PHASE: Duration = Duration::from_secs(5);

fn secret() -> ApiKeySecret {
    ApiKeySecret::new("bench-secret")
}

/// A small xorshift; the benchmark needs spread, not quality.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn fresh_file(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/sqlite-bench");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.db"));
    for suffix in ["", "-wal", "-shm", ".migrate-lock", ".keys"] {
        let mut p = path.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
    path
}

async fn open(path: &Path) -> shared_db_sqlite::Database {
    shared_db_sqlite::Database::connect(&Config {
        max_connections: CLIENTS as u32 + 1,
        sqlite_busy_timeout: Duration::from_secs(30),
        ..Config::new(format!("sqlite://{}", path.display()))
    })
    .await
    .unwrap()
}

/// What a SQLite file is seeded with for one workload.
struct Seeded {
    db: shared_db_sqlite::Database,
    keys: Vec<RawApiKey>,
    users: Vec<Uuid>,
}

async fn seed_sqlite(path: &Path, workload: &str) -> Seeded {
    let db = open(path).await;
    db.migrate().await.unwrap();
    let mut tx = db.begin().await.unwrap();
    let (mut keys, mut users) = (Vec::new(), Vec::new());
    match workload {
        "w1" => {
            for i in 0..PLANS {
                let prompt = format!("{i} {}", "Plan a bakery opening in Lisbon. ".repeat(7));
                let params = serde_json::json!({"model_profile": "baseline", "speed_vs_detail": "fast_but_skip_details"});
                let new = NewPlan {
                    prompt: &prompt,
                    parameters: Some(&params),
                    ..Default::default()
                };
                lite::plans::enqueue(&mut tx, &new).await.unwrap();
            }
        }
        "w2" => {
            for _ in 0..KEY_USERS {
                let user = lite::user_account::create(&mut tx, None).await.unwrap();
                for _ in 0..2 {
                    let raw = RawApiKey::generate().unwrap();
                    lite::user_api_key::create(
                        &mut tx,
                        &secret(),
                        user,
                        &raw,
                        None,
                        KeyOptions::default(),
                    )
                    .await
                    .unwrap();
                    keys.push(raw);
                }
            }
        }
        _ => {
            for _ in 0..CHARGE_USERS {
                let user = lite::user_account::create(&mut tx, None).await.unwrap();
                lite::credit_history::grant(&mut tx, user, Decimal::from(100_000), None, None)
                    .await
                    .unwrap();
                users.push(user);
            }
        }
    }
    tx.commit().await.unwrap();
    Seeded { db, keys, users }
}

fn usage(user: Uuid) -> Charge<'static> {
    Charge {
        user_id: user,
        amount: Decimal::new(1, 2),
        reason: "plan_usage_in_progress",
        source: "usage_billing_progress",
        allow_negative: true,
        ..Default::default()
    }
}

/// Runs `clients` copies of `op` (each with its own held connection and counter) until the
/// phase ends or `op` says it is done; ops per second.
async fn drive<C, F>(clients: usize, mut connect: impl FnMut() -> C, op: F) -> f64
where
    C: std::future::Future + Send + 'static,
    C::Output: Send + 'static,
    F: Fn(C::Output, Instant) -> tokio::task::JoinHandle<u64>,
{
    let mut conns = Vec::new();
    for _ in 0..clients {
        conns.push(tokio::spawn(connect()).await.unwrap());
    }
    let started = Instant::now();
    let stop = started + PHASE;
    let tasks: Vec<_> = conns.into_iter().map(|c| op(c, stop)).collect();
    let mut n = 0;
    for t in tasks {
        n += t.await.unwrap();
    }
    n as f64 / started.elapsed().as_secs_f64()
}

async fn sqlite_side(workload: &str) -> (f64, String) {
    let path = fresh_file(&format!("rust-{workload}"));
    let s = seed_sqlite(&path, workload).await;
    let keys = Arc::new(s.keys);
    let users = Arc::new(s.users);
    let db = s.db.clone();
    let seed = AtomicU64::new(1);
    let rate = drive(
        if workload == "w1" { WORKERS } else { CLIENTS },
        || {
            let db = db.clone();
            async move { db.acquire().await.unwrap() }
        },
        |mut conn, stop| {
            let (keys, users, w) = (keys.clone(), users.clone(), workload.to_owned());
            let mut rng = Rng(seed.fetch_add(0x9E37_79B9, Ordering::Relaxed) | 1);
            tokio::spawn(async move {
                let mut n = 0;
                match w.as_str() {
                    "w1" => {
                        while let Some(c) =
                            lite::plans::claim_next(&mut conn, "worker").await.unwrap()
                        {
                            lite::plans::finish_completed(&mut conn, c.attempt, None)
                                .await
                                .unwrap();
                            n += 1;
                        }
                    }
                    "w2" => {
                        while Instant::now() < stop {
                            let key = &keys[rng.below(keys.len())];
                            lite::user_api_key::authenticate(&mut conn, &secret(), key)
                                .await
                                .unwrap()
                                .expect("authenticated");
                            n += 1;
                        }
                    }
                    _ => {
                        while Instant::now() < stop {
                            let user = users[rng.below(users.len())];
                            lite::credit_history::charge(&mut conn, &usage(user))
                                .await
                                .unwrap();
                            n += 1;
                        }
                    }
                }
                n
            })
        },
    )
    .await;
    let mut conn = db.acquire().await.unwrap();
    let verified = match workload {
        "w1" => {
            assert_eq!(lite::plans::count_pending(&mut conn).await.unwrap(), 0);
            format!("{PLANS} completed once each")
        }
        "w2" => "every key authenticated".into(),
        _ => {
            for u in users.iter() {
                let (_, sum) = lite::credit_history::ledger_sum(&mut conn, *u)
                    .await
                    .unwrap();
                assert_eq!(
                    lite::user_account::balance(&mut conn, *u).await.unwrap(),
                    sum
                );
            }
            "balance = ledger sum, every user".into()
        }
    };
    (rate, verified)
}

fn python_side(workload: &str) -> f64 {
    let path = fresh_file(&format!("python-{workload}"));
    let rt = tokio::runtime::Handle::current();
    let s = tokio::task::block_in_place(|| rt.block_on(seed_sqlite(&path, workload)));
    let mut extra = path.clone().into_os_string();
    extra.push(".keys");
    let lines: Vec<String> = match workload {
        "w2" => s.keys.iter().map(|k| k.hash(&secret())).collect(),
        "w3" => s.users.iter().map(|u| lite::hex(*u)).collect(),
        _ => vec![],
    };
    std::fs::write(&extra, lines.join("\n")).unwrap();
    tokio::task::block_in_place(|| rt.block_on(s.db.close()));
    let clients = if workload == "w1" { WORKERS } else { CLIENTS };
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/benches/sqlite3_workloads.py"
        ))
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/.sqlx"))
        .arg(&path)
        .arg(workload)
        .arg(clients.to_string())
        .arg(PHASE.as_secs_f64().to_string())
        .arg(&extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["ops"].as_f64().unwrap() / v["seconds"].as_f64().unwrap()
}

async fn postgres_side(workload: &str) -> f64 {
    let t = Arc::new(shared_db::testing::TestDatabase::new().await.unwrap());
    let (mut keys, mut users) = (Vec::new(), Vec::new());
    match workload {
        "w1" => {
            for i in 0..PLANS {
                let prompt = format!("{i} {}", "Plan a bakery opening in Lisbon. ".repeat(7));
                let params = serde_json::json!({"model_profile": "baseline", "speed_vs_detail": "fast_but_skip_details"});
                let new = NewPlan {
                    prompt: &prompt,
                    parameters: Some(&params),
                    ..Default::default()
                };
                pg::plans::enqueue(t.pool(), &new).await.unwrap();
            }
        }
        "w2" => {
            for i in 0..KEY_USERS {
                let name = format!("bench-{i}");
                let profile = pg::user_account::OAuthProfile {
                    provider: "github",
                    provider_user_id: &name,
                    ..Default::default()
                };
                let user = pg::user_account::sign_in(t.pool(), &profile)
                    .await
                    .unwrap()
                    .user
                    .id;
                let mut c = t.db().acquire().await.unwrap();
                for _ in 0..2 {
                    let raw = RawApiKey::generate().unwrap();
                    pg::user_api_key::create(
                        &mut c,
                        &secret(),
                        user,
                        &raw,
                        None,
                        KeyOptions::default(),
                    )
                    .await
                    .unwrap();
                    keys.push(raw);
                }
            }
        }
        _ => {
            for i in 0..CHARGE_USERS {
                let name = format!("bench-{i}");
                let profile = pg::user_account::OAuthProfile {
                    provider: "github",
                    provider_user_id: &name,
                    ..Default::default()
                };
                let user = pg::user_account::sign_in(t.pool(), &profile)
                    .await
                    .unwrap()
                    .user
                    .id;
                let mut c = t.db().acquire().await.unwrap();
                pg::credit_history::grant(&mut c, user, Decimal::from(100_000), None, None)
                    .await
                    .unwrap();
                users.push(user);
            }
        }
    }
    let keys = Arc::new(keys);
    let users = Arc::new(users);
    let seed = AtomicU64::new(1);
    let db = t.db().clone();
    drive(
        if workload == "w1" { WORKERS } else { CLIENTS },
        || {
            let db = db.clone();
            async move { db.acquire().await.unwrap() }
        },
        |mut conn, stop| {
            let (keys, users, w) = (keys.clone(), users.clone(), workload.to_owned());
            let mut rng = Rng(seed.fetch_add(0x9E37_79B9, Ordering::Relaxed) | 1);
            tokio::spawn(async move {
                let mut n = 0;
                match w.as_str() {
                    "w1" => {
                        while let Some(c) =
                            pg::plans::claim_next(&mut *conn, "worker").await.unwrap()
                        {
                            pg::plans::finish_completed(&mut *conn, c.attempt, None)
                                .await
                                .unwrap();
                            n += 1;
                        }
                    }
                    "w2" => {
                        while Instant::now() < stop {
                            let key = &keys[rng.below(keys.len())];
                            pg::user_api_key::authenticate(&mut *conn, &secret(), key)
                                .await
                                .unwrap()
                                .expect("authenticated");
                            n += 1;
                        }
                    }
                    _ => {
                        while Instant::now() < stop {
                            let user = users[rng.below(users.len())];
                            pg::credit_history::charge(&mut conn, &usage(user))
                                .await
                                .unwrap();
                            n += 1;
                        }
                    }
                }
                n
            })
        },
    )
    .await
}

async fn run() {
    println!(
        "SQLite workloads: {PLANS} plans / {WORKERS} workers; {KEY_USERS}×2 keys and {CHARGE_USERS} users / {CLIENTS} clients, {} s phases; held connections; load average before: {}",
        PHASE.as_secs(),
        loadavg()
    );
    println!(
        "| workload | shared-db-sqlite | Python sqlite3, same SQL | shared-db on PostgreSQL | verified |"
    );
    println!("|---|---|---|---|---|");
    for (w, name) in [
        (
            "w1",
            "W1 queue drain, claim + complete, 8 workers (plans/s)",
        ),
        ("w2", "W2 API-key auth, 16 clients (ops/s)"),
        ("w3", "W3 credit charge, 16 clients (charges/s)"),
    ] {
        let (rust, verified) = sqlite_side(w).await;
        let python = python_side(w);
        let postgres = postgres_side(w).await;
        println!("| {name} | {rust:.0} | {python:.0} | {postgres:.0} | {verified} |");
    }
    println!("load average after: {}", loadavg());
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!(
            "the SQLite workloads run with `cargo bench -p shared-db-sqlite --bench workloads`"
        );
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}
