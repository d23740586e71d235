//! Several OS processes on one SQLite file: the queue claim hands each plan to exactly one
//! worker process, and the credit ledger applies each idempotency key once, with the balance
//! equal to the ledger sum, while four processes claim, complete and charge at the same time.
//! No call of any process may fail: a lock wait must end in `busy_timeout`, never reach the
//! caller as "database is locked".
//!
//! The worker processes are this test binary itself, run with `--ignored --exact
//! worker_process` and the file named in the environment.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::{beside, fresh_file, open, wait_for};
use rust_decimal::Decimal;
use shared_db::planexe::credit_history::Charge;
use shared_db::planexe::plans::NewPlan;
use shared_db_sqlite::planexe::{credit_history, plans, user_account};
use uuid::Uuid;

const FILE: &str = "SHARED_DB_SQLITE_STORY_FILE";
const USER: &str = "SHARED_DB_SQLITE_STORY_USER";
const PROCESSES: usize = 4;
const PLANS: usize = 240;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_claim_each_plan_once_and_charge_each_key_once() {
    let path = fresh_file("queue");
    let db = open(&path, 2).await;
    db.migrate().await.unwrap();
    let mut conn = db.acquire().await.unwrap();
    let mut queued = HashSet::new();
    for i in 0..PLANS {
        let new = NewPlan {
            prompt: &format!("plan {i}"),
            ..Default::default()
        };
        queued.insert(plans::enqueue(&mut conn, &new).await.unwrap().id);
    }
    let user = user_account::create(&mut conn, None).await.unwrap();
    credit_history::grant(&mut conn, user, Decimal::from(1000), None, None)
        .await
        .unwrap();
    drop(conn);

    // Four worker processes, started together.
    let go = beside(&path, ".go");
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--ignored", "--exact", "worker_process", "--nocapture"])
                .env(FILE, &path)
                .env(USER, user.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    std::fs::write(&go, b"go").unwrap();

    let mut owner: HashMap<Uuid, usize> = HashMap::new();
    let mut per_process = Vec::new();
    for (n, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "worker process {n} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mine: Vec<Uuid> = stdout
            .lines()
            .filter_map(|l| l.strip_prefix("CLAIMED "))
            .map(|id| id.parse().unwrap())
            .collect();
        per_process.push(mine.len());
        for id in mine {
            if let Some(other) = owner.insert(id, n) {
                panic!("plan {id} claimed by processes {other} and {n}");
            }
        }
    }
    assert_eq!(
        owner.keys().copied().collect::<HashSet<_>>(),
        queued,
        "every plan claimed exactly once"
    );
    assert!(
        per_process.iter().filter(|n| **n > 0).count() > 1,
        "the processes worked side by side: {per_process:?}"
    );

    // Each plan was charged twice under one key (a retry): once in the ledger.
    let mut conn = db.acquire().await.unwrap();
    let (rows, sum) = credit_history::ledger_sum(&mut conn, user).await.unwrap();
    let expected = Decimal::from(1000) - Decimal::new(1, 2) * Decimal::from(PLANS as i64);
    assert_eq!(rows, PLANS as i64 + 1);
    assert_eq!(sum, expected);
    assert_eq!(
        user_account::balance(&mut conn, user).await.unwrap(),
        expected
    );
    assert_eq!(plans::count_pending(&mut conn).await.unwrap(), 0);
}

/// One worker process of the story above (run by it, never on its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of four_processes_claim_each_plan_once_and_charge_each_key_once"]
async fn worker_process() {
    let path = PathBuf::from(std::env::var(FILE).expect("run by the parent story"));
    let user: Uuid = std::env::var(USER).unwrap().parse().unwrap();
    wait_for(&beside(&path, ".go")).await;
    let db = open(&path, 2).await;
    let worker = format!("process-{}", std::process::id());
    let mut conn = db.acquire().await.unwrap();
    while let Some(claimed) = plans::claim_next(&mut conn, &worker).await.unwrap() {
        let key = format!("plan-{}", claimed.plan.id);
        let charge = Charge {
            user_id: user,
            amount: Decimal::new(1, 2),
            reason: "plan_created_with_usage_cost",
            source: "api",
            external_id: None,
            api_key_id: None,
            allow_negative: false,
            idempotency_key: Some(&key),
        };
        let first = credit_history::charge(&mut conn, &charge).await.unwrap();
        let retry = credit_history::charge(&mut conn, &charge).await.unwrap();
        assert_eq!(first, retry);
        plans::finish_completed(&mut conn, claimed.attempt, None)
            .await
            .unwrap();
        println!("CLAIMED {}", claimed.plan.id);
    }
}
