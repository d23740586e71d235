//! Python and Rust on one SQLite file at the same time: a Python process configured the way the
//! PlanExe services configure SQLAlchemy (WAL and `busy_timeout` at connect; the models'
//! `UUIDType`, `Enum`, `JSON`, `Numeric(18, 9)`, `DateTime`) queues plans and charges credits
//! while Rust services queue plans, charge with idempotency keys, and claim and complete every
//! plan of both. No write of either side is lost, no "database is locked" reaches either side's
//! caller (both sides stop at the first error), and each side reads the other's rows exactly.
//!
//! The Python packages come from `.ci/python-sqlite` (pinned, in a virtualenv under
//! `target/tools`; `.ci/run` installs it, and this test does when it is missing).

mod common;

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{fresh_file, open, python};
use rust_decimal::Decimal;
use shared_db::planexe::PlanState;
use shared_db::planexe::credit_history::Charge;
use shared_db::planexe::plans::NewPlan;
use shared_db_sqlite::planexe::{credit_history, plans, user_account};
use uuid::Uuid;

const EACH: usize = 150;

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn python_and_rust_write_one_file_at_once_and_read_each_others_rows_exactly() {
    let python = python();
    let path = fresh_file("shared");
    let db = open(&path, 4).await;
    db.migrate().await.unwrap();
    let user = {
        let mut conn = db.acquire().await.unwrap();
        let user = user_account::create(&mut conn, None).await.unwrap();
        credit_history::grant(&mut conn, user, Decimal::from(1000), None, None)
            .await
            .unwrap();
        user
    };

    // The Python service starts writing...
    let py = Command::new(&python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/planexe_writer.py"
        ))
        .arg(&path)
        .arg(user.to_string())
        .arg(EACH.to_string())
        .arg(EACH.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let python_done = Arc::new(AtomicBool::new(false));
    // Both sides write at the same time: the Rust side starts when the Python one is connected.
    let mut ready = path.clone().into_os_string();
    ready.push(".python-ready");
    let waiting = std::time::Instant::now();
    while !std::path::Path::new(&ready).exists() {
        assert!(
            waiting.elapsed() < Duration::from_secs(60),
            "Python never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // ...while the Rust API server queues plans and charges for them...
    let api = {
        let db = db.clone();
        tokio::spawn(async move {
            let mut conn = db.acquire().await.unwrap();
            for i in 0..EACH {
                let params = serde_json::json!({ "from": "rust", "n": i });
                let new = NewPlan {
                    prompt: &format!("rust plan {i} é漢"),
                    user_id: Some("rust"),
                    parameters: Some(&params),
                    ..Default::default()
                };
                let plan = plans::enqueue(&mut conn, &new).await.unwrap();
                let key = format!("plan-{}", plan.id);
                let charge = Charge {
                    user_id: user,
                    amount: d("0.5"),
                    reason: "plan_created_with_usage_cost",
                    source: "api",
                    external_id: Some(&plan.id.to_string()),
                    idempotency_key: Some(&key),
                    ..Default::default()
                };
                credit_history::charge(&mut conn, &charge).await.unwrap();
            }
        })
    };
    // ...and a Rust worker claims and completes every plan, whoever queued it.
    let worker = {
        let db = db.clone();
        let python_done = python_done.clone();
        tokio::spawn(async move {
            let mut conn = db.acquire().await.unwrap();
            let mut claimed = Vec::new();
            loop {
                match plans::claim_next(&mut conn, "rust-worker").await.unwrap() {
                    Some(c) => {
                        plans::finish_completed(&mut conn, c.attempt, None)
                            .await
                            .unwrap();
                        claimed.push(c.plan);
                    }
                    None if python_done.load(Ordering::SeqCst) && claimed.len() >= 2 * EACH => {
                        break;
                    }
                    None => tokio::time::sleep(Duration::from_millis(2)).await,
                }
            }
            claimed
        })
    };

    api.await.unwrap();
    let mut rust_done = path.clone().into_os_string();
    rust_done.push(".rust-done");
    std::fs::write(&rust_done, b"done").unwrap();
    let out = tokio::task::spawn_blocking(move || py.wait_with_output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the Python service failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    python_done.store(true, Ordering::SeqCst);
    let claimed = tokio::time::timeout(Duration::from_secs(60), worker)
        .await
        .expect("the worker drained the queue")
        .unwrap();

    // Rust read Python's plans exactly: ids, enum names, text, JSON.
    let from_python: Vec<_> = claimed
        .iter()
        .filter(|p| p.user_id.as_deref() == Some("python"))
        .collect();
    assert_eq!(
        from_python.len(),
        EACH,
        "every Python plan was queued and claimed"
    );
    for p in &from_python {
        let n = p.parameters.as_ref().expect("parameters")["n"]
            .as_u64()
            .unwrap();
        assert_eq!(
            p.prompt.as_deref(),
            Some(format!("python plan {n} é漢").as_str())
        );
        assert_eq!(
            p.parameters.as_ref().unwrap().0,
            serde_json::json!({ "from": "python", "n": n })
        );
        assert!(p.timestamp_created.is_some() && p.last_seen_timestamp.is_some());
        assert_eq!(p.progress_percentage, Some(Decimal::ZERO));
    }
    let ids: HashSet<Uuid> = claimed.iter().map(|p| p.id).collect();
    assert_eq!(ids.len(), 2 * EACH, "each plan claimed once");
    let mut conn = db.acquire().await.unwrap();
    for id in &ids {
        assert_eq!(
            plans::get(&mut conn, *id).await.unwrap().state,
            Some(PlanState::Completed)
        );
    }

    // Python read Rust's rows exactly, and both see one balance that is the ledger sum.
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("a summary line")).unwrap();
    let expected = Decimal::from(1000)
        - d("0.25") * Decimal::from(EACH as i64)
        - d("0.5") * Decimal::from(EACH as i64);
    assert_eq!(summary["rust_plans"], EACH, "{summary}");
    assert_eq!(summary["rust_plans_exact"], EACH, "{summary}");
    assert_eq!(summary["rust_charges"], EACH, "{summary}");
    assert_eq!(summary["rust_charges_exact"], EACH, "{summary}");
    // Python read the balance and the ledger at its end; the Rust charges all came before it.
    assert_eq!(
        d(summary["balance"].as_str().unwrap()),
        expected,
        "{summary}"
    );
    assert_eq!(
        d(summary["ledger_sum"].as_str().unwrap()),
        expected,
        "{summary}"
    );
    let (rows, sum) = credit_history::ledger_sum(&mut conn, user).await.unwrap();
    assert_eq!(rows, 1 + 2 * EACH as i64, "no ledger row lost");
    assert_eq!(sum, expected);
    assert_eq!(
        user_account::balance(&mut conn, user).await.unwrap(),
        expected
    );
}
