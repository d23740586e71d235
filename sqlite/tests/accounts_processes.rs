//! Several OS processes on one SQLite file, doing what a multi-worker frontend does with
//! accounts: four processes sign in the same new identities at once, claim one user's free plan
//! at once, and apply the same payments at once (a webhook and a success page in different
//! workers). Each identity becomes one user, the free plan is used once, each payment is credited
//! once (every process gets the first outcome), and the balance equals the ledger sum. No call of
//! any process may fail: a lock wait ends in `busy_timeout`, never as "database is locked".
//!
//! The processes are this test binary itself, run with `--ignored --exact account_process` and
//! the file named in the environment.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::{beside, fresh_file, open, wait_for};
use rust_decimal::Decimal;
use shared_db::planexe::payment_record::{NewPayment, PaymentOutcome};
use shared_db::planexe::user_account::OAuthProfile;
use shared_db_sqlite::planexe::{credit_history, payment_record, user_account, user_provider};
use uuid::Uuid;

const FILE: &str = "SHARED_DB_SQLITE_ACCOUNTS_FILE";
const USER: &str = "SHARED_DB_SQLITE_ACCOUNTS_USER";
const PROCESSES: usize = 4;
const IDENTITIES: usize = 200;
const PAYMENTS: usize = 200;
/// Credits per payment: nine decimal places, so any loss of exactness shows in the sum.
const CREDITS: Decimal = Decimal::from_parts(1_234_567_891, 0, 0, false, 9);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_make_one_user_per_identity_and_credit_each_payment_once() {
    let path = fresh_file("accounts");
    let db = open(&path, 2).await;
    db.migrate().await.unwrap();
    let mut conn = db.acquire().await.unwrap();
    let payer = user_account::create(&mut conn, Some("payer@example.com"))
        .await
        .unwrap();
    drop(conn);

    let go = beside(&path, ".go");
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--ignored", "--exact", "account_process", "--nocapture"])
                .env(FILE, &path)
                .env(USER, payer.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    std::fs::write(&go, b"go").unwrap();

    let mut users: HashMap<String, HashSet<Uuid>> = HashMap::new();
    let mut created: HashMap<String, usize> = HashMap::new();
    let mut free_plan_winners = 0;
    let mut made_by_process = Vec::new();
    let mut outcomes: HashMap<String, HashSet<(Uuid, Decimal)>> = HashMap::new();
    for (n, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "process {n} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut made = 0;
        for line in stdout.lines() {
            let words: Vec<&str> = line.split(' ').collect();
            match words.as_slice() {
                ["SIGNIN", identity, user, was_created] => {
                    users
                        .entry(identity.to_string())
                        .or_default()
                        .insert(user.parse().unwrap());
                    let first = usize::from(*was_created == "true");
                    *created.entry(identity.to_string()).or_default() += first;
                    made += first;
                }
                ["FREE", won] => free_plan_winners += usize::from(*won == "true"),
                // Compared as values: a replay reads the balance back without trailing zeros.
                ["PAID", id, payment, balance] => {
                    outcomes
                        .entry(id.to_string())
                        .or_default()
                        .insert((payment.parse().unwrap(), balance.parse().unwrap()));
                }
                _ => {}
            }
        }
        made_by_process.push(made);
    }
    assert!(
        made_by_process.iter().filter(|n| **n > 0).count() > 1,
        "the processes signed in side by side: {made_by_process:?}"
    );

    // Every identity: one user, made by exactly one process, and one link.
    assert_eq!(users.len(), IDENTITIES);
    let mut conn = db.acquire().await.unwrap();
    for (identity, ids) in &users {
        assert_eq!(ids.len(), 1, "{identity}: {ids:?}");
        assert_eq!(created[identity], 1, "{identity} created once");
        let user = *ids.iter().next().unwrap();
        assert_eq!(
            user_provider::list_for_user(&mut conn, user)
                .await
                .unwrap()
                .len(),
            1
        );
    }
    assert_eq!(free_plan_winners, 1, "the free plan was used once");

    // Every payment: one outcome, whichever process asked; credited once, exactly.
    assert_eq!(outcomes.len(), PAYMENTS);
    for (id, answers) in &outcomes {
        assert_eq!(answers.len(), 1, "{id}: {answers:?}");
    }
    let expected = CREDITS * Decimal::from(PAYMENTS as i64);
    assert_eq!(
        credit_history::ledger_sum(&mut conn, payer).await.unwrap(),
        (PAYMENTS as i64, expected)
    );
    assert_eq!(
        user_account::balance(&mut conn, payer).await.unwrap(),
        expected
    );
}

/// One process of the story above (run by it, never on its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of four_processes_make_one_user_per_identity_and_credit_each_payment_once"]
async fn account_process() {
    let path = PathBuf::from(std::env::var(FILE).expect("run by the parent story"));
    let payer: Uuid = std::env::var(USER).unwrap().parse().unwrap();
    wait_for(&beside(&path, ".go")).await;
    let db = open(&path, 2).await;
    let mut conn = db.acquire().await.unwrap();
    let me = std::process::id();
    for i in 0..IDENTITIES.max(PAYMENTS) {
        if i < IDENTITIES {
            let identity = format!("github-{i}");
            let profile = OAuthProfile {
                provider: "github",
                provider_user_id: &identity,
                name: Some(&format!("signed in by {me}")),
                ..Default::default()
            };
            let s = user_account::sign_in(&mut conn, &profile).await.unwrap();
            println!("SIGNIN {identity} {} {}", s.user.id, s.created);
        }
        if i == IDENTITIES / 2 {
            let won = user_account::claim_free_plan(&mut conn, payer, &format!("plan-{me}"))
                .await
                .unwrap();
            println!("FREE {won}");
        }
        if i < PAYMENTS {
            let id = format!("cs_{i}");
            let payment = NewPayment {
                user_id: payer,
                provider: "stripe",
                provider_payment_id: &id,
                credits: CREDITS,
                amount: 500,
                currency: "usd",
                raw_payload: None,
            };
            match payment_record::apply(&mut conn, &payment).await.unwrap() {
                PaymentOutcome::Applied {
                    payment_id,
                    new_balance,
                } => println!("PAID {id} {payment_id} {new_balance}"),
                other => panic!("{other:?}"),
            }
        }
    }
}
