//! The planexe sections of the demo on a SQLite file (`DATABASE_URL=sqlite://demo.db`): the
//! frontend signs Ada in, applies her payment once and issues an API key, the API server authenticates it and charges per
//! plan with idempotency keys, workers claim and complete the queue while one of them is lost and
//! reaped, and the closing invariants are checked. The shop stays PostgreSQL-only (README).
//! Like the PostgreSQL demo, it runs no SQL of its own.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use rust_decimal::Decimal;
use serde_json::json;
use shared_db::planexe::credit_history::Charge;
use shared_db::planexe::payment_record::{NewPayment, PaymentOutcome};
use shared_db::planexe::plans::{Attempt, NewPlan, Progress, ProgressAck};
use shared_db::planexe::user_account::OAuthProfile;
use shared_db::planexe::user_api_key::{ApiKeySecret, KeyOptions, RawApiKey};
use shared_db::planexe::{EventType, PlanState};
use shared_db::{Config, Error};
use shared_db_sqlite::Database;
use shared_db_sqlite::planexe::{
    credit_history, events, payment_record, plans, user_account, user_api_key, user_provider,
    workers,
};
use uuid::Uuid;

use super::{Checks, heading, short, sync_text};

const PLANS: usize = 6;

/// Entry point for a `sqlite:` URL.
pub(super) async fn run(
    config: &Config,
    run_id: &str,
    started: Instant,
) -> anyhow::Result<ExitCode> {
    let db = Database::connect(config)
        .await
        .context("cannot open the SQLite file")?;
    println!(
        "database: SQLite file {} (DATABASE_URL)",
        db.file().display()
    );
    let outcome = db.sync().await.context("migration failed")?;
    println!("migrations: {}", sync_text(&outcome));
    let mut conn = db.acquire().await?;
    let waiting = plans::count_pending(&mut conn).await?;
    drop(conn);
    if waiting > 0 {
        eprintln!(
            "the plan queue of this file already holds {waiting} pending plan(s) from elsewhere; \
             the demo's workers would process them. Use another file."
        );
        return Ok(ExitCode::from(2));
    }
    println!("(the shop sections need PostgreSQL and are skipped on SQLite; see the README)");

    let mut checks = Checks::default();
    let secret = ApiKeySecret::new(format!("demo-secret-{run_id}"));
    let (user, raw) = frontend(&db, run_id, &secret, &mut checks).await?;
    let plan_ids = api_server(&db, user, &raw, &secret, &mut checks).await?;
    workers_section(&db, &plan_ids, &mut checks).await?;
    closing(&db, user, &plan_ids, &raw, &secret, &mut checks).await?;

    let elapsed = started.elapsed();
    db.close().await;
    Ok(checks.finish(elapsed))
}

async fn frontend(
    db: &Database,
    run_id: &str,
    secret: &ApiKeySecret,
    checks: &mut Checks,
) -> anyhow::Result<(Uuid, RawApiKey)> {
    heading("frontend (web app)");
    let email = format!("ada+{run_id}@example.com");
    let provider_user_id = format!("google-{run_id}");
    let raw_profile = json!({ "sub": provider_user_id, "email": email });
    let profile = OAuthProfile {
        provider: "google",
        provider_user_id: &provider_user_id,
        email: Some(&email),
        name: Some("Ada Lovelace"),
        given_name: Some("Ada"),
        raw_profile: Some(&raw_profile),
        ..Default::default()
    };
    let mut conn = db.acquire().await?;
    let first = user_account::sign_in(&mut conn, &profile).await?;
    let second = user_account::sign_in(&mut conn, &profile).await?;
    println!(
        "Ada signs in with Google twice: user {} (created: {}, then {})",
        first.user.id, first.created, second.created
    );
    let links = user_provider::list_for_user(&mut conn, first.user.id).await?;
    checks.check(
        first.created && !second.created && first.user.id == second.user.id && links.len() == 1,
        format!(
            "one account, {} provider link(s) after two sign-ins",
            links.len()
        ),
    );
    let user = first.user.id;
    drop(conn);

    // The payment provider delivers the same webhook twice, concurrently, on two connections:
    // the second waits for the first's write lock and finds its payment.
    let payment_id = format!("pi_demo_{run_id}");
    let payload = json!({ "id": payment_id, "amount": 1000, "currency": "usd" });
    let payment = NewPayment {
        user_id: user,
        provider: "stripe",
        provider_payment_id: &payment_id,
        credits: Decimal::from(10),
        amount: 1000,
        currency: "usd",
        raw_payload: Some(&payload),
    };
    let (mut conn_a, mut conn_b) = (db.acquire().await?, db.acquire().await?);
    let (a, b) = tokio::join!(
        payment_record::apply(&mut conn_a, &payment),
        payment_record::apply(&mut conn_b, &payment)
    );
    drop((conn_a, conn_b));
    let outcomes = [a?, b?];
    let mut conn = db.acquire().await?;
    let balance = user_account::balance(&mut conn, user).await?;
    println!("Ada buys 10 credits; the payment webhook is delivered twice: balance {balance}");
    checks.check(
        outcomes[0] == outcomes[1]
            && matches!(outcomes[0], PaymentOutcome::Applied { .. })
            && balance == Decimal::from(10),
        "both deliveries answer the one outcome; credited once",
    );
    let raw = RawApiKey::generate()?;
    let issued = user_api_key::create(
        &mut conn,
        secret,
        user,
        &raw,
        Some("laptop"),
        KeyOptions::default(),
    )
    .await?;
    println!(
        "Ada creates an API key {}… (shown once; stored: its SHA-256 hash and prefix)",
        issued.key.key_prefix
    );
    checks.check(
        issued.key.key_plaintext.is_none() && issued.key.key_hash == raw.hash(secret),
        "the raw key is not stored, only its hash",
    );
    Ok((user, raw))
}

async fn api_server(
    db: &Database,
    user: Uuid,
    raw: &RawApiKey,
    secret: &ApiKeySecret,
    checks: &mut Checks,
) -> anyhow::Result<Vec<Uuid>> {
    heading("API server");
    let mut conn = db.acquire().await?;
    let who = user_api_key::authenticate(&mut conn, secret, raw)
        .await?
        .context("the new key does not authenticate")?;
    println!(
        "a request with Ada's key: user {}, balance {}",
        short(who.user_id),
        who.credits_balance
    );
    checks.check(who.user_id == user, "the key authenticates its owner");
    let mut ids = Vec::new();
    for i in 0..PLANS {
        let user_text = user.to_string();
        let new = NewPlan {
            prompt: &format!("Plan a bakery opening, variant {i}"),
            user_id: Some(&user_text),
            api_key_id: Some(who.api_key_id),
            ..Default::default()
        };
        let plan = plans::enqueue(&mut conn, &new).await?;
        let key = format!("plan-{}", plan.id);
        let charge = Charge {
            user_id: user,
            amount: Decimal::new(5, 1),
            reason: "plan_created_with_usage_cost",
            source: "api",
            external_id: Some(&plan.id.to_string()),
            api_key_id: Some(who.api_key_id),
            idempotency_key: Some(&key),
            ..Default::default()
        };
        let charged = credit_history::charge(&mut conn, &charge).await?;
        if i == 0 {
            // The client timed out and sends the request again.
            let again = credit_history::charge(&mut conn, &charge).await?;
            checks.check(
                again == charged,
                "a retried plan_create is charged once (same ledger entry)",
            );
        }
        println!(
            "plan {} queued, 0.5 credits charged, balance {}",
            short(plan.id),
            charged.new_balance
        );
        ids.push(plan.id);
    }
    Ok(ids)
}

async fn workers_section(
    db: &Database,
    plan_ids: &[Uuid],
    checks: &mut Checks,
) -> anyhow::Result<()> {
    heading("workers");
    // A worker claims the oldest plan, then its machine dies.
    let mut conn = db.acquire().await?;
    let lost = plans::claim_next(&mut conn, "worker-lost")
        .await?
        .context("queue empty")?;
    println!(
        "worker-lost claims plan {} and goes silent",
        short(lost.plan.id)
    );
    drop(conn);

    // Three workers work the rest of the queue side by side.
    let tasks: Vec<_> = (1..=3)
        .map(|n| {
            let db = db.clone();
            tokio::spawn(async move {
                let mut conn = db.acquire().await?;
                let name = format!("worker-{n}");
                let mut done = Vec::new();
                while let Some(c) = plans::claim_next(&mut conn, &name).await? {
                    work(&mut conn, &name, c.attempt).await?;
                    done.push(c.plan.id);
                }
                anyhow::Ok((name, done))
            })
        })
        .collect();
    let mut completed = 0;
    for t in tasks {
        let (name, done) = t.await??;
        println!(
            "{name} completed {} plan(s): {}",
            done.len(),
            done.iter()
                .map(|id| short(*id))
                .collect::<Vec<_>>()
                .join(", ")
        );
        completed += done.len();
    }
    checks.check(
        completed == plan_ids.len() - 1,
        format!("{completed} plans completed by the live workers, none twice"),
    );

    // The reaper finds the silent worker's plan and puts it back in the queue.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut conn = db.acquire().await?;
    let reaped = plans::requeue_stale(&mut conn, Duration::from_secs(1), 3).await?;
    println!(
        "the reaper re-queues {:?}",
        reaped
            .requeued
            .iter()
            .map(|id| short(*id))
            .collect::<Vec<_>>()
    );
    checks.check(
        reaped.requeued == [lost.plan.id],
        "the lost worker's plan is re-queued",
    );
    let late = Progress {
        percentage: Decimal::from(50),
        message: "still here?",
        ..Default::default()
    };
    let refused = plans::update_progress(&mut conn, lost.attempt, &late).await;
    println!(
        "worker-lost wakes up and reports progress: {:?}",
        refused.as_ref().map(|_| ())
    );
    checks.check(
        matches!(refused, Err(Error::Superseded { .. })),
        "the lost worker's late write is refused (superseded), nothing written",
    );
    let retaken = plans::claim_next(&mut conn, "worker-1")
        .await?
        .context("requeued plan")?;
    work(&mut conn, "worker-1", retaken.attempt).await?;
    println!("worker-1 claims it again with a new attempt and completes it");
    Ok(())
}

/// A worker's run: two progress steps, a heartbeat, the report, completion.
async fn work(conn: &mut sqlx::SqliteConnection, worker: &str, run: Attempt) -> anyhow::Result<()> {
    for pct in [30, 80] {
        let step = Progress {
            percentage: Decimal::from(pct),
            message: "drafting",
            ..Default::default()
        };
        anyhow::ensure!(
            plans::update_progress(conn, run, &step).await? == ProgressAck::Recorded,
            "progress not recorded"
        );
        workers::heartbeat(conn, worker, Some(run)).await?;
    }
    plans::store_report_html(conn, run, "<html><body>The plan.</body></html>").await?;
    plans::finish_completed(conn, run, None).await?;
    Ok(())
}

async fn closing(
    db: &Database,
    user: Uuid,
    plan_ids: &[Uuid],
    raw: &RawApiKey,
    secret: &ApiKeySecret,
    checks: &mut Checks,
) -> anyhow::Result<()> {
    heading("closing");
    let mut conn = db.acquire().await?;
    let mut all_completed = true;
    let mut claims = 0;
    for id in plan_ids {
        let plan = plans::get(&mut conn, *id).await?;
        all_completed &= plan.state == Some(PlanState::Completed) && plan.has_generated_report_html;
        claims += events::list_by_plan(&mut conn, *id, 200)
            .await?
            .iter()
            .filter(|e| e.event_type == EventType::TaskProcessing)
            .count();
    }
    checks.check(
        all_completed,
        format!(
            "all {} plans completed with a report (read without loading it)",
            plan_ids.len()
        ),
    );
    checks.check(
        claims == plan_ids.len() + 1,
        format!(
            "{claims} claims for {} plans: one each, plus the re-queued one",
            plan_ids.len()
        ),
    );
    checks.check(
        plans::count_pending(&mut conn).await? == 0,
        "the queue is empty",
    );
    let balance = user_account::balance(&mut conn, user).await?;
    let (rows, sum) = credit_history::ledger_sum(&mut conn, user).await?;
    println!("Ada's balance {balance}, ledger: {rows} rows summing to {sum}");
    checks.check(
        balance == sum && balance == Decimal::from(7),
        "balance = ledger sum = 10 − 6 × 0.5, exact",
    );
    let key = user_api_key::authenticate(&mut conn, secret, raw)
        .await?
        .context("key")?;
    user_api_key::revoke(&mut conn, user, key.api_key_id).await?;
    checks.check(
        user_api_key::authenticate(&mut conn, secret, raw)
            .await?
            .is_none(),
        "a revoked key no longer authenticates",
    );
    Ok(())
}
