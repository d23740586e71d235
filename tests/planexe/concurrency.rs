//! Concurrency claims, proven with many tasks on their own pooled connections (multi-thread runtime).

use std::collections::{HashMap, HashSet};

use rust_decimal::Decimal;
use shared_db::Error;
use shared_db::planexe::credit_history::{self, Charge};
use shared_db::planexe::payment_record::{self, NewPayment, PaymentOutcome};
use shared_db::planexe::user_account::{self, OAuthProfile};
use shared_db::planexe::user_api_key::{self, ApiKeySecret, KeyOptions, RawApiKey};
use shared_db::planexe::{nonces, plans, workers};
use shared_db::testing::TestDatabase;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::user_with_credits;

const WORKERS: usize = 16;
const PLANS: i64 = 2000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_workers_claim_two_thousand_plans_each_exactly_once() -> anyhow::Result<()> {
    let db = TestDatabase::with_fixture(include_str!("../fixtures/planexe/pending_plans_2000.sql"))
        .await?;
    let mut tasks = JoinSet::new();
    for w in 0..WORKERS {
        let pool = db.pool().clone();
        tasks.spawn(async move {
            let worker = format!("worker-{w}");
            let mut mine = Vec::new();
            while let Some(claimed) = plans::claim_next(&pool, &worker).await? {
                mine.push(claimed.plan.id);
            }
            Ok::<_, Error>((worker, mine))
        });
    }
    let mut all = Vec::new();
    let mut last_claim = HashMap::new();
    let mut busy_workers = 0;
    while let Some(joined) = tasks.join_next().await {
        let (worker, mine) = joined??;
        if !mine.is_empty() {
            busy_workers += 1;
            last_claim.insert(worker, *mine.last().unwrap());
        }
        all.extend(mine);
    }
    let distinct: HashSet<Uuid> = all.iter().copied().collect();
    assert_eq!(all.len() as i64, PLANS, "every plan claimed once");
    assert_eq!(distinct.len() as i64, PLANS, "no plan claimed twice");
    assert!(busy_workers > 1, "the claims really ran in parallel");

    let states = sqlx::query!(
        r#"SELECT count(*) FILTER (WHERE state = 'processing') AS "processing!",
                  count(*) FILTER (WHERE state = 'pending') AS "pending!",
                  count(*) AS "total!"
           FROM plans"#
    )
    .fetch_one(db.pool())
    .await?;
    assert_eq!(
        (states.processing, states.pending, states.total),
        (PLANS, 0, PLANS),
        "none lost"
    );
    let processing_events = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM events WHERE event_type = 'TASK_PROCESSING'"#
    )
    .fetch_one(db.pool())
    .await?;
    assert_eq!(processing_events, PLANS);
    for w in workers::list(db.pool(), 200).await? {
        assert_eq!(
            w.current_task_id,
            last_claim.get(&w.id).map(Uuid::to_string),
            "{}",
            w.id
        );
    }
    Ok(())
}

/// A tiny deterministic generator, so the mix of operations is reproducible.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[derive(Default, Debug)]
struct Tally {
    expected: HashMap<Uuid, Decimal>,
    refused: u32,
    ops: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_charges_grants_and_purchases_keep_balance_equal_to_ledger() -> anyhow::Result<()>
{
    const USERS: usize = 4;
    const TASKS: u64 = 32;
    const OPS_PER_TASK: u32 = 40;
    let db = TestDatabase::new().await?;
    let mut users = Vec::new();
    for u in 0..USERS {
        users.push(user_with_credits(db.pool(), &format!("spender-{u}"), Decimal::new(5, 0)).await);
    }
    let mut tasks = JoinSet::new();
    for t in 0..TASKS {
        let pool = db.pool().clone();
        let users = users.clone();
        tasks.spawn(async move {
            let mut rng = Lcg(t + 1);
            let mut tally = Tally::default();
            for op in 0..OPS_PER_TASK {
                let user = users[rng.next(users.len() as u64) as usize];
                let delta = match rng.next(10) {
                    // Charges dominate, so balances hit zero and refusals happen.
                    0..=5 => {
                        let amount = Decimal::new(1_333_333_333, 9);
                        let charge = Charge {
                            user_id: user,
                            amount,
                            reason: "test_charge",
                            source: "test",
                            ..Default::default()
                        };
                        match credit_history::charge(&mut *pool.acquire().await?, &charge).await {
                            Ok(change) => {
                                assert!(change.new_balance >= Decimal::ZERO);
                                -amount
                            }
                            Err(Error::InsufficientCredits { .. }) => {
                                tally.refused += 1;
                                Decimal::ZERO
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    6..=7 => {
                        credit_history::grant(
                            &mut *pool.acquire().await?,
                            user,
                            Decimal::ONE,
                            Some("test_grant"),
                            None,
                        )
                        .await?;
                        Decimal::ONE
                    }
                    _ => {
                        let pid = format!("cs_{t}_{op}");
                        let outcome = payment_record::apply(
                            &mut *pool.acquire().await?,
                            &NewPayment {
                                user_id: user,
                                provider: "stripe",
                                provider_payment_id: &pid,
                                credits: Decimal::new(75, 2),
                                amount: 75,
                                currency: "usd",
                                raw_payload: None,
                            },
                        )
                        .await?;
                        assert!(matches!(outcome, PaymentOutcome::Applied { .. }));
                        Decimal::new(75, 2)
                    }
                };
                *tally.expected.entry(user).or_default() += delta;
                tally.ops += 1;
            }
            Ok::<_, Error>(tally)
        });
    }
    let mut expected: HashMap<Uuid, Decimal> =
        users.iter().map(|u| (*u, Decimal::new(5, 0))).collect();
    let (mut refused, mut ops) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        let tally = joined??;
        refused += tally.refused;
        ops += tally.ops;
        for (u, d) in tally.expected {
            *expected.get_mut(&u).unwrap() += d;
        }
    }
    assert_eq!(ops, TASKS as u32 * OPS_PER_TASK);
    assert!(
        refused > 0,
        "some charges hit an empty balance and were refused"
    );

    assert_eq!(
        credit_history::reconcile(&mut *db.pool().acquire().await?).await?,
        vec![],
        "balance == SUM(delta)"
    );
    for user in users {
        let balance = user_account::get(db.pool(), user).await?.credits_balance;
        assert!(balance >= Decimal::ZERO, "charge never overdraws");
        assert_eq!(balance, expected[&user], "no update lost");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_payment_delivered_ten_times_concurrently_credits_once() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let user = user_with_credits(db.pool(), "buyer", Decimal::ZERO).await;
    let mut tasks = JoinSet::new();
    for _ in 0..10 {
        let pool = db.pool().clone();
        tasks.spawn(async move {
            payment_record::apply(
                &mut *pool.acquire().await?,
                &NewPayment {
                    user_id: user,
                    provider: "stripe",
                    provider_payment_id: "cs_live_same",
                    credits: Decimal::new(25, 0),
                    amount: 2500,
                    currency: "usd",
                    raw_payload: Some(&serde_json::json!({ "id": "cs_live_same" })),
                },
            )
            .await
        });
    }
    // Every delivery answers the one outcome: the same payment row and balance.
    let mut outcomes = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        outcomes.push(joined??);
    }
    let first = outcomes[0].clone();
    assert!(matches!(
        first,
        PaymentOutcome::Applied { new_balance, .. } if new_balance == Decimal::new(25, 0)
    ));
    assert!(outcomes.iter().all(|o| *o == first), "{outcomes:?}");
    let records = sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM payment_record"#)
        .fetch_one(db.pool())
        .await?;
    let ledger = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM credit_history WHERE external_id = 'cs_live_same'"#
    )
    .fetch_one(db.pool())
    .await?;
    assert_eq!((records, ledger), (1, 1));
    assert_eq!(
        user_account::get(db.pool(), user).await?.credits_balance,
        Decimal::new(25, 0)
    );
    // Delivered again later: still the first outcome.
    let again = payment_record::apply(
        &mut *db.pool().acquire().await?,
        &NewPayment {
            user_id: user,
            provider: "stripe",
            provider_payment_id: "cs_live_same",
            credits: Decimal::new(25, 0),
            amount: 2500,
            currency: "usd",
            raw_payload: None,
        },
    )
    .await?;
    assert_eq!(again, first);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_nonce_consumed_concurrently_is_new_exactly_once() -> anyhow::Result<()> {
    const CALLERS: usize = 20;
    let db = TestDatabase::new().await?;
    let mut tasks = JoinSet::new();
    for i in 0..CALLERS {
        let pool = db.pool().clone();
        tasks.spawn(async move {
            let ctx = serde_json::json!({ "user_agent": format!("caller-{i}") });
            nonces::consume(
                &pool,
                "CREATE_5f0c6a8e-0000-4000-8000-000000000001",
                Some(&ctx),
            )
            .await
        });
    }
    let mut new = 0;
    let mut counts = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let used = joined??;
        new += used.is_new as usize;
        counts.push(used.nonce.request_count);
    }
    assert_eq!(new, 1, "exactly one caller saw the nonce as new");
    counts.sort();
    assert_eq!(counts, (1..=CALLERS as i32).collect::<Vec<_>>());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_key_creation_never_exceeds_ten_active_keys() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let user = user_with_credits(db.pool(), "keymaker", Decimal::ZERO).await;
    let secret = ApiKeySecret::new("s3cret");
    let mut tasks = JoinSet::new();
    for i in 0..20 {
        let pool = db.pool().clone();
        let secret = secret.clone();
        tasks.spawn(async move {
            let mut conn = pool.acquire().await?;
            let label = format!("key {i}");
            user_api_key::create(
                &mut conn,
                &secret,
                user,
                &RawApiKey::generate()?,
                Some(&label),
                KeyOptions::default(),
            )
            .await
        });
    }
    let (mut ok, mut refused) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        match joined? {
            Ok(_) => ok += 1,
            Err(Error::TooManyApiKeys { limit: 10, .. }) => refused += 1,
            Err(e) => return Err(e.into()),
        }
    }
    assert_eq!((ok, refused), (10, 10));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_sign_ins_create_one_user_and_one_link() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let mut tasks = JoinSet::new();
    for _ in 0..16 {
        let pool = db.pool().clone();
        tasks.spawn(async move {
            user_account::sign_in(
                &pool,
                &OAuthProfile {
                    provider: "google",
                    provider_user_id: "sub-123",
                    email: Some("ann@example.com"),
                    name: Some("Ann"),
                    ..Default::default()
                },
            )
            .await
        });
    }
    let mut ids = HashSet::new();
    let mut created = 0;
    while let Some(joined) = tasks.join_next().await {
        let s = joined??;
        ids.insert(s.user.id);
        created += s.created as usize;
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(created, 1);
    let (users, links) = sqlx::query!(
        r#"SELECT (SELECT count(*) FROM user_account) AS "users!",
                  (SELECT count(*) FROM user_provider) AS "links!""#
    )
    .fetch_one(db.pool())
    .await
    .map(|r| (r.users, r.links))?;
    assert_eq!((users, links), (1, 1));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_final_billing_of_one_attempt_charges_once() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let user = user_with_credits(db.pool(), "payer", Decimal::new(10, 0)).await;
    crate::queue_plan(db.pool(), &user.to_string(), "p").await;
    let run = crate::claim(db.pool(), "w").await;
    let mut tasks = JoinSet::new();
    for _ in 0..8 {
        let pool = db.pool().clone();
        tasks.spawn(async move {
            let mut conn = pool.acquire().await?;
            credit_history::bill_usage_final(
                &mut conn,
                &credit_history::PlanUsage {
                    user_id: user,
                    attempt: run,
                    api_key_id: None,
                    cost: Decimal::new(3, 0),
                    succeeded: true,
                },
            )
            .await
        });
    }
    // Every call is a repeat of the same request: all report the one charge.
    while let Some(joined) = tasks.join_next().await {
        assert_eq!(
            joined??,
            credit_history::FinalBilling::Charged {
                charged: Decimal::new(3, 0)
            }
        );
    }
    let final_rows = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM credit_history WHERE source = 'usage_billing'"#
    )
    .fetch_one(db.pool())
    .await?;
    assert_eq!(final_rows, 1);
    assert_eq!(
        user_account::get(db.pool(), user).await?.credits_balance,
        Decimal::new(7, 0)
    );
    assert!(
        credit_history::reconcile(&mut *db.pool().acquire().await?)
            .await?
            .is_empty()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_free_plan_is_used_once_under_concurrent_requests() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let user = user_with_credits(db.pool(), "freebie", Decimal::ZERO).await;
    let mut tasks = JoinSet::new();
    for i in 0..12 {
        let pool = db.pool().clone();
        tasks.spawn(async move {
            user_account::claim_free_plan(&pool, user, &format!("request-{i}")).await
        });
    }
    let mut used = 0;
    while let Some(joined) = tasks.join_next().await {
        used += joined?? as usize;
    }
    assert_eq!(used, 1);
    assert!(user_account::get(db.pool(), user).await?.free_plan_used);
    Ok(())
}
