//! Python and Rust accounts on one SQLite file at the same time: a Python process configured as
//! the PlanExe frontend configures SQLAlchemy signs users in its way (the user row, commit, the
//! provider link, commit) and records purchases its way, while Rust signs other users in and
//! applies other payments through shared-db. Then each side reads the other's rows exactly: the
//! Python side through its models, the Rust side by signing the Python users in again (it finds
//! their users, it makes none) and by replaying the Python payments (duplicates, credited
//! nothing). The balance is the ledger sum for both.
//!
//! The Python packages come from `.ci/python-sqlite`, as for `python.rs`.

mod common;

use common::{fresh_file, open, python};
use std::process::{Command, Stdio};
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::json;
use shared_db::planexe::payment_record::{NewPayment, PaymentOutcome};
use shared_db::planexe::user_account::OAuthProfile;
use shared_db_sqlite::planexe::{credit_history, payment_record, user_account, user_provider};

const EACH: usize = 60;

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn python_and_rust_sign_in_and_buy_on_one_file_and_read_each_others_accounts() {
    let python = python();
    let path = fresh_file("accounts");
    let db = open(&path, 4).await;
    db.migrate().await.unwrap();
    let payer = {
        let mut conn = db.acquire().await.unwrap();
        user_account::create(&mut conn, Some("payer@example.com"))
            .await
            .unwrap()
    };

    let py = Command::new(&python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/accounts_writer.py"
        ))
        .arg(&path)
        .arg(payer.to_string())
        .arg(EACH.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
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

    // While Python signs its users in and records its purchases, Rust does the same with others.
    let mut conn = db.acquire().await.unwrap();
    for i in 0..EACH {
        let identity = format!("rust-{i}");
        let raw = json!({ "login": identity });
        let profile = OAuthProfile {
            provider: "github",
            provider_user_id: &identity,
            email: Some(&format!("rust{i}@example.com")),
            name: Some(&format!("Rust {i}")),
            raw_profile: Some(&raw),
            ..Default::default()
        };
        assert!(
            user_account::sign_in(&mut conn, &profile)
                .await
                .unwrap()
                .created
        );
        let id = format!("rust_pay_{i}");
        let payload = json!({ "id": id });
        let payment = NewPayment {
            user_id: payer,
            provider: "stripe",
            provider_payment_id: &id,
            credits: d("0.5"),
            amount: 400,
            currency: "usd",
            raw_payload: Some(&payload),
        };
        let outcome = payment_record::apply(&mut conn, &payment).await.unwrap();
        assert!(
            matches!(outcome, PaymentOutcome::Applied { .. }),
            "{outcome:?}"
        );
    }
    let mut rust_done = path.clone().into_os_string();
    rust_done.push(".rust-done");
    std::fs::write(&rust_done, b"done").unwrap();
    let out = tokio::task::spawn_blocking(move || py.wait_with_output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the Python frontend failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Python read Rust's users, links and payments exactly.
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("a summary line")).unwrap();
    assert_eq!(summary["rust_links"], EACH, "{summary}");
    assert_eq!(summary["rust_linked_users_exact"], EACH, "{summary}");
    assert_eq!(summary["rust_payments"], EACH, "{summary}");
    assert_eq!(summary["rust_payments_exact"], EACH, "{summary}");
    assert_eq!(summary["rust_purchase_rows_exact"], EACH, "{summary}");
    let expected = (d("0.125") + d("0.5")) * Decimal::from(EACH as i64);
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

    // Rust reads Python's: signing a Python user in again finds that user and makes none.
    for i in 0..EACH {
        let identity = format!("py-{i}");
        let link = user_provider::get_by_identity(&mut conn, "github", &identity)
            .await
            .unwrap();
        assert_eq!(
            link.raw_profile.as_deref(),
            Some(&json!({ "login": identity }))
        );
        let profile = OAuthProfile {
            provider: "github",
            provider_user_id: &identity,
            ..Default::default()
        };
        let again = user_account::sign_in(&mut conn, &profile).await.unwrap();
        assert!(!again.created, "{identity}");
        assert_eq!(again.user.id, link.user_id);
        assert_eq!(
            again.user.email.as_deref(),
            Some(format!("py{i}@example.com").as_str())
        );
        assert_eq!(again.user.name.as_deref(), Some(format!("Py {i}").as_str()));
        assert!(!again.user.is_admin && !again.user.free_plan_used);
        assert_eq!(
            user_provider::list_for_user(&mut conn, link.user_id)
                .await
                .unwrap()
                .len(),
            1
        );
    }

    // ...and a Python purchase delivered again through Rust is a duplicate: nothing credited.
    for i in 0..EACH {
        let id = format!("py_pay_{i}");
        let record = payment_record::get_by_provider_id(&mut conn, "stripe", &id)
            .await
            .unwrap();
        assert_eq!(record.user_id, payer);
        assert_eq!(record.credits, d("0.125"));
        assert_eq!(record.amount, 100);
        assert_eq!(record.status, "completed");
        assert_eq!(record.raw_payload.as_deref(), Some(&json!({ "id": id })));
        assert!(record.created_at.is_some());
        let payment = NewPayment {
            user_id: payer,
            provider: "stripe",
            provider_payment_id: &id,
            credits: d("0.125"),
            amount: 100,
            currency: "usd",
            raw_payload: None,
        };
        assert_eq!(
            payment_record::apply(&mut conn, &payment).await.unwrap(),
            PaymentOutcome::Duplicate {
                payment_id: record.id
            }
        );
    }
    let (rows, sum) = credit_history::ledger_sum(&mut conn, payer).await.unwrap();
    assert_eq!(
        rows,
        2 * EACH as i64,
        "no ledger row lost, none added by a replay"
    );
    assert_eq!(sum, expected);
    assert_eq!(
        user_account::balance(&mut conn, payer).await.unwrap(),
        expected
    );
}
