//! Usage billing from several OS processes on one SQLite file: four processes report the same
//! usage of the same plan attempts at the same time (what a worker that retries every report
//! after an unknown outcome looks like to the database). Every attempt is billed exactly once per
//! report, the final bill takes only the rest of the cost, every process hears the same answers,
//! and the balance equals the ledger sum. No call of any process may fail.
//!
//! The billing processes are this test binary itself, run with `--ignored --exact
//! billing_process` and the file named in the environment.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::{beside, fresh_file, open, wait_for};
use rust_decimal::Decimal;
use shared_db::planexe::credit_history::{FinalBilling, PlanUsage};
use shared_db::planexe::plans::{Attempt, NewPlan};
use shared_db_sqlite::planexe::{credit_history, plans, user_account};
use uuid::Uuid;

const FILE: &str = "SHARED_DB_SQLITE_BILLING_FILE";
const USER: &str = "SHARED_DB_SQLITE_BILLING_USER";
const RUNS: &str = "SHARED_DB_SQLITE_BILLING_RUNS";
const PROCESSES: usize = 4;
const ATTEMPTS: usize = 30;
/// The cumulative cost each process reports after each step, then the final cost.
const STEPS: [i64; 3] = [1, 2, 3];
const FINAL: i64 = 4;

fn usage(user: Uuid, attempt: Attempt, cost: i64, succeeded: bool) -> PlanUsage {
    PlanUsage {
        user_id: user,
        attempt,
        api_key_id: None,
        cost: Decimal::from(cost),
        succeeded,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_repeating_every_usage_report_bill_each_attempt_once() {
    let path = fresh_file("billing");
    let db = open(&path, 2).await;
    db.migrate().await.unwrap();
    let mut conn = db.acquire().await.unwrap();
    let user = user_account::create(&mut conn, None).await.unwrap();
    credit_history::grant(&mut conn, user, Decimal::from(1000), None, None)
        .await
        .unwrap();
    let mut attempts = Vec::new();
    for i in 0..ATTEMPTS {
        let new = NewPlan {
            prompt: &format!("billed {i}"),
            ..Default::default()
        };
        plans::enqueue(&mut conn, &new).await.unwrap();
        let claimed = plans::claim_next(&mut conn, "parent")
            .await
            .unwrap()
            .unwrap();
        attempts.push(claimed.attempt);
    }
    drop(conn);
    let mut runs = path.clone().into_os_string();
    runs.push(".runs");
    std::fs::write(&runs, serde_json::to_vec(&attempts).unwrap()).unwrap();

    // Four billing processes, started together.
    let go = beside(&path, ".go");
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--ignored", "--exact", "billing_process", "--nocapture"])
                .env(FILE, &path)
                .env(USER, user.to_string())
                .env(RUNS, &runs)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    std::fs::write(&go, b"go").unwrap();

    // Every process heard the same answer to every report.
    let mut answers: Option<Vec<String>> = None;
    for (n, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "billing process {n} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mine: Vec<String> = stdout
            .lines()
            .filter(|l| l.starts_with("BILLED "))
            .map(str::to_owned)
            .collect();
        assert_eq!(mine.len(), ATTEMPTS * (STEPS.len() + 1), "process {n}");
        match &answers {
            None => answers = Some(mine),
            Some(first) => assert_eq!(&mine, first, "process {n} heard other answers"),
        }
    }
    // Each step charged what was new, the final bill the rest: 1 each, once, with the nine
    // places PostgreSQL answers.
    for line in answers.unwrap() {
        assert!(
            line.ends_with(" 1.000000000") || line.ends_with(" Charged { charged: 1.000000000 }"),
            "{line}"
        );
    }

    // Once per report and attempt in the ledger, and the balance is its sum.
    let mut conn = db.acquire().await.unwrap();
    let (rows, sum) = credit_history::ledger_sum(&mut conn, user).await.unwrap();
    let per_attempt = STEPS.len() + 1;
    assert_eq!(rows, 1 + (ATTEMPTS * per_attempt) as i64);
    let expected = Decimal::from(1000 - FINAL * ATTEMPTS as i64);
    assert_eq!(sum, expected);
    assert_eq!(
        user_account::balance(&mut conn, user).await.unwrap(),
        expected
    );
}

/// One billing process of the story above (run by it, never on its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of four_processes_repeating_every_usage_report_bill_each_attempt_once"]
async fn billing_process() {
    let path = PathBuf::from(std::env::var(FILE).expect("run by the parent story"));
    let user: Uuid = std::env::var(USER).unwrap().parse().unwrap();
    let attempts: Vec<Attempt> =
        serde_json::from_slice(&std::fs::read(std::env::var(RUNS).unwrap()).unwrap()).unwrap();
    wait_for(&beside(&path, ".go")).await;
    let db = open(&path, 2).await;
    let mut conn = db.acquire().await.unwrap();
    for attempt in attempts {
        for cost in STEPS {
            let u = usage(user, attempt, cost, false);
            let charged = credit_history::bill_usage_progress(&mut conn, &u)
                .await
                .unwrap();
            println!("BILLED {} progress {cost}: {charged}", attempt.plan_id);
        }
        let u = usage(user, attempt, FINAL, true);
        let outcome = credit_history::bill_usage_final(&mut conn, &u)
            .await
            .unwrap();
        assert!(
            matches!(outcome, FinalBilling::Charged { .. }),
            "{outcome:?}"
        );
        println!("BILLED {} final: {outcome:?}", attempt.plan_id);
    }
}
