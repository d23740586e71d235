//! The replay contract (see `shared_db::planexe`) for every keyed write: the same key with the
//! same request answers the first outcome, also while the first is still in flight; the same key
//! with another request is `IdempotencyKeyReused` naming the field; keys are scoped to their user;
//! an overlong key is refused, never cut.

use std::time::Duration;

use rust_decimal::Decimal;
use shared_db::Error;
use shared_db::planexe::credit_history::{self, BalanceChange, Charge, PlanUsage};
use shared_db::planexe::payment_record::{self, NewPayment, PaymentOutcome};
use shared_db::planexe::user_account;
use shared_db::planexe::user_api_key::{self, ApiKeySecret, KeyOptions, RawApiKey};
use shared_db::testing::TestDatabase;
use sqlx::{Connection, PgPool};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::user_with_credits;

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

async fn ledger_rows(pool: &PgPool, user: Uuid) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM credit_history WHERE user_id = $1"#,
        user
    )
    .fetch_one(pool)
    .await?)
}

async fn balance(pool: &PgPool, user: Uuid) -> anyhow::Result<Decimal> {
    Ok(user_account::get(pool, user).await?.credits_balance)
}

/// Waits until `n` sessions of this database wait for a lock (the requests under test are then
/// blocked behind the test's lock, both in flight at once).
async fn until_waiting_for_locks(pool: &PgPool, n: i64) -> anyhow::Result<()> {
    for _ in 0..500 {
        let waiting = sqlx::query_scalar!(
            r#"SELECT count(*) AS "n!" FROM pg_stat_activity
               WHERE datname = current_database() AND wait_event_type = 'Lock'"#
        )
        .fetch_one(pool)
        .await?;
        if waiting >= n {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    anyhow::bail!("{n} sessions never waited for a lock")
}

fn keyed_charge(user: Uuid, amount: &str, key: &'static str) -> Charge<'static> {
    Charge {
        user_id: user,
        amount: d(amount),
        reason: "api_call",
        source: "api",
        external_id: Some("req"),
        idempotency_key: Some(key),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_duplicate_charge_in_flight_waits_for_the_first_and_answers_its_entry()
-> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let user = user_with_credits(pool, "payer", d("10")).await;

    // Hold the user's row lock, as a concurrent request of the user would.
    let mut holder = pool.acquire().await?;
    let mut lock = holder.begin().await?;
    sqlx::query!("SELECT id FROM user_account WHERE id = $1 FOR UPDATE", user)
        .fetch_one(&mut *lock)
        .await?;

    // The original and its retry (a client timeout, tx::retry after a cut connection).
    let mut calls = JoinSet::new();
    for _ in 0..2 {
        let pool = pool.clone();
        calls.spawn(async move {
            credit_history::charge(
                &mut *pool.acquire().await?,
                &keyed_charge(user, "3", "request-7f3a"),
            )
            .await
        });
    }
    until_waiting_for_locks(pool, 2).await?;
    lock.rollback().await?;

    let mut answers: Vec<BalanceChange> = Vec::new();
    while let Some(joined) = calls.join_next().await {
        answers.push(joined?.map_err(|e| anyhow::anyhow!("a duplicate got {e:?}"))?);
    }
    assert_eq!(answers[0], answers[1], "both answer the one charge");
    assert_eq!(answers[0].new_balance, d("7"));
    assert_eq!(
        ledger_rows(pool, user).await?,
        2,
        "the grant and one charge"
    );
    assert_eq!(balance(pool, user).await?, d("7"), "charged once");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_duplicate_grant_in_flight_waits_for_the_first_and_answers_its_entry()
-> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let user = user_with_credits(pool, "grantee", Decimal::ZERO).await;

    let mut holder = pool.acquire().await?;
    let mut lock = holder.begin().await?;
    sqlx::query!("SELECT id FROM user_account WHERE id = $1 FOR UPDATE", user)
        .fetch_one(&mut *lock)
        .await?;
    let mut calls = JoinSet::new();
    for _ in 0..2 {
        let pool = pool.clone();
        calls.spawn(async move {
            credit_history::grant(
                &mut *pool.acquire().await?,
                user,
                d("25"),
                None,
                Some("ticket-42"),
            )
            .await
        });
    }
    until_waiting_for_locks(pool, 2).await?;
    lock.rollback().await?;

    let mut answers = Vec::new();
    while let Some(joined) = calls.join_next().await {
        answers.push(joined?.map_err(|e| anyhow::anyhow!("a duplicate got {e:?}"))?);
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(ledger_rows(pool, user).await?, 1);
    assert_eq!(balance(pool, user).await?, d("25"), "granted once");
    Ok(())
}

#[tokio::test]
async fn a_key_reused_with_another_request_is_refused_naming_the_field() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let user = user_with_credits(pool, "payer", d("10")).await;
    let first =
        credit_history::charge(&mut *pool.acquire().await?, &keyed_charge(user, "3", "k1")).await?;
    let again =
        credit_history::charge(&mut *pool.acquire().await?, &keyed_charge(user, "3", "k1")).await?;
    assert_eq!(first, again, "the same request: the first outcome");

    let cases: [(Charge, &str); 4] = [
        (keyed_charge(user, "4", "k1"), "amount"),
        (
            Charge {
                source: "mcp",
                ..keyed_charge(user, "3", "k1")
            },
            "source",
        ),
        (
            Charge {
                external_id: Some("other"),
                ..keyed_charge(user, "3", "k1")
            },
            "external id",
        ),
        (
            Charge {
                api_key_id: Some(Uuid::new_v4()),
                ..keyed_charge(user, "3", "k1")
            },
            "api key",
        ),
    ];
    for (charge, expected) in cases {
        match credit_history::charge(&mut *pool.acquire().await?, &charge).await {
            Err(Error::IdempotencyKeyReused { field }) => assert_eq!(field, expected),
            other => panic!("{expected}: expected IdempotencyKeyReused, got {other:?}"),
        }
    }
    credit_history::grant(
        &mut *pool.acquire().await?,
        user,
        d("5"),
        Some("promo"),
        Some("g1"),
    )
    .await?;
    assert!(matches!(
        credit_history::grant(
            &mut *pool.acquire().await?,
            user,
            d("6"),
            Some("promo"),
            Some("g1")
        )
        .await,
        Err(Error::IdempotencyKeyReused { field: "amount" })
    ));
    assert!(matches!(
        credit_history::grant(
            &mut *pool.acquire().await?,
            user,
            d("5"),
            Some("refund"),
            Some("g1")
        )
        .await,
        Err(Error::IdempotencyKeyReused { field: "reason" })
    ));
    assert_eq!(ledger_rows(pool, user).await?, 3, "grant, charge, grant");
    assert_eq!(balance(pool, user).await?, d("12"));
    Ok(())
}

#[tokio::test]
async fn keys_are_scoped_to_their_user() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let alice = user_with_credits(pool, "alice", d("10")).await;
    let bob = user_with_credits(pool, "bob", d("10")).await;
    let a = credit_history::charge(
        &mut *pool.acquire().await?,
        &keyed_charge(alice, "3", "order-1"),
    )
    .await?;
    // Bob's equal key is his own: charged, and nothing about Alice's use of it is revealed.
    let b = credit_history::charge(
        &mut *pool.acquire().await?,
        &keyed_charge(bob, "4", "order-1"),
    )
    .await?;
    assert_ne!(a.entry_id, b.entry_id);
    assert_eq!((a.new_balance, b.new_balance), (d("7"), d("6")));
    let g = credit_history::grant(
        &mut *pool.acquire().await?,
        bob,
        d("1"),
        None,
        Some("order-1"),
    )
    .await;
    assert!(
        matches!(g, Err(Error::IdempotencyKeyReused { field: "amount" })),
        "a key is one per user across charge and grant: {g:?}"
    );
    assert_eq!(balance(pool, alice).await?, d("7"));
    assert_eq!(balance(pool, bob).await?, d("6"));
    Ok(())
}

#[tokio::test]
async fn an_overlong_idempotency_key_is_refused_naming_the_field_and_never_cut()
-> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let user = user_with_credits(pool, "payer", d("10")).await;
    let longest = "k".repeat(credit_history::MAX_IDEMPOTENCY_KEY_CHARS);
    let too_long = format!("{longest}x");
    let ok = Charge {
        idempotency_key: Some(&longest),
        ..keyed_charge(user, "1", "unused")
    };
    credit_history::charge(&mut *pool.acquire().await?, &ok).await?;
    let refused = Charge {
        idempotency_key: Some(&too_long),
        ..keyed_charge(user, "1", "unused")
    };
    match credit_history::charge(&mut *pool.acquire().await?, &refused).await {
        Err(Error::InvalidInput(msg)) => assert!(msg.contains("idempotency key"), "{msg}"),
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    assert!(matches!(
        credit_history::grant(
            &mut *pool.acquire().await?,
            user,
            d("1"),
            None,
            Some(&too_long)
        )
        .await,
        Err(Error::InvalidInput(_))
    ));
    assert_eq!(
        ledger_rows(pool, user).await?,
        2,
        "the grant and one charge"
    );
    Ok(())
}

fn payment<'a>(user: Uuid, id: &'a str, credits: &str, amount: i32) -> NewPayment<'a> {
    NewPayment {
        user_id: user,
        provider: "stripe",
        provider_payment_id: id,
        credits: d(credits),
        amount,
        currency: "usd",
        raw_payload: None,
    }
}

#[tokio::test]
async fn a_repeated_payment_answers_the_original_outcome() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let user = user_with_credits(pool, "buyer", Decimal::ZERO).await;
    let first = payment_record::apply(
        &mut *pool.acquire().await?,
        &payment(user, "cs_1", "50", 5000),
    )
    .await?;
    let PaymentOutcome::Applied { new_balance, .. } = first else {
        panic!("applied: {first:?}");
    };
    assert_eq!(new_balance, d("50"));
    // The balance moves on; a later delivery still answers the first outcome.
    credit_history::grant(&mut *pool.acquire().await?, user, d("5"), None, None).await?;
    let again = payment_record::apply(
        &mut *pool.acquire().await?,
        &payment(user, "cs_1", "50", 5000),
    )
    .await?;
    assert_eq!(again, first);
    assert_eq!(balance(pool, user).await?, d("55"), "credited once");

    // The payment id with another request: refused naming the field, nothing written.
    let other = user_with_credits(pool, "other", Decimal::ZERO).await;
    for (p, field) in [
        (payment(other, "cs_1", "50", 5000), "user"),
        (payment(user, "cs_1", "60", 5000), "credits"),
        (payment(user, "cs_1", "50", 6000), "amount"),
    ] {
        match payment_record::apply(&mut *pool.acquire().await?, &p).await {
            Err(Error::IdempotencyKeyReused { field: f }) => assert_eq!(f, field),
            other => panic!("{field}: expected IdempotencyKeyReused, got {other:?}"),
        }
    }
    assert_eq!(balance(pool, user).await?, d("55"));
    assert_eq!(balance(pool, other).await?, Decimal::ZERO);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_duplicate_payment_in_flight_waits_for_the_first_and_answers_its_outcome()
-> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let user = user_with_credits(pool, "buyer", Decimal::ZERO).await;
    let mut holder = pool.acquire().await?;
    let mut lock = holder.begin().await?;
    sqlx::query!("SELECT id FROM user_account WHERE id = $1 FOR UPDATE", user)
        .fetch_one(&mut *lock)
        .await?;
    let mut calls = JoinSet::new();
    for _ in 0..2 {
        let pool = pool.clone();
        calls.spawn(async move {
            payment_record::apply(
                &mut *pool.acquire().await?,
                &payment(user, "cs_webhook", "25", 2500),
            )
            .await
        });
    }
    until_waiting_for_locks(pool, 2).await?;
    lock.rollback().await?;
    let mut answers = Vec::new();
    while let Some(joined) = calls.join_next().await {
        answers.push(joined??);
    }
    assert_eq!(answers[0], answers[1], "{answers:?}");
    assert!(
        matches!(answers[0], PaymentOutcome::Applied { new_balance, .. } if new_balance == d("25"))
    );
    assert_eq!(balance(pool, user).await?, d("25"));
    Ok(())
}

#[tokio::test]
async fn a_negative_payment_amount_is_refused_and_nothing_is_written() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let user = user_with_credits(pool, "buyer", Decimal::ZERO).await;
    match payment_record::apply(
        &mut *pool.acquire().await?,
        &payment(user, "cs_neg", "5", -500),
    )
    .await
    {
        Err(Error::InvalidInput(msg)) => assert!(msg.contains("amount"), "{msg}"),
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    let stored = sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM payment_record"#)
        .fetch_one(pool)
        .await?;
    assert_eq!((stored, balance(pool, user).await?), (0, Decimal::ZERO));
    Ok(())
}

#[tokio::test]
async fn an_api_key_created_again_with_another_label_is_refused_naming_it() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let user = user_with_credits(pool, "keyholder", Decimal::ZERO).await;
    let secret = ApiKeySecret::new("s3cret");
    let raw = RawApiKey::generate()?;
    let mut conn = pool.acquire().await?;
    let first = user_api_key::create(
        &mut conn,
        &secret,
        user,
        &raw,
        Some("laptop"),
        KeyOptions::default(),
    )
    .await?;
    let again = user_api_key::create(
        &mut conn,
        &secret,
        user,
        &raw,
        Some("laptop"),
        KeyOptions::default(),
    )
    .await?;
    assert_eq!(first.key, again.key, "the same request: the same key");
    assert!(matches!(
        user_api_key::create(
            &mut conn,
            &secret,
            user,
            &raw,
            Some("phone"),
            KeyOptions::default()
        )
        .await,
        Err(Error::IdempotencyKeyReused { field: "label" })
    ));
    assert_eq!(
        user_api_key::list_for_user(pool, user, Default::default())
            .await?
            .len(),
        1
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_duplicate_free_plan_claim_in_flight_waits_and_answers_true_too() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let user = user_with_credits(pool, "newcomer", Decimal::ZERO).await;
    let mut holder = pool.acquire().await?;
    let mut lock = holder.begin().await?;
    sqlx::query!("SELECT id FROM user_account WHERE id = $1 FOR UPDATE", user)
        .fetch_one(&mut *lock)
        .await?;
    let mut calls = JoinSet::new();
    for key in ["run-1", "run-1", "run-2"] {
        let pool = pool.clone();
        calls.spawn(async move { (key, user_account::claim_free_plan(&pool, user, key).await) });
    }
    until_waiting_for_locks(pool, 3).await?;
    lock.rollback().await?;
    let mut used = Vec::new();
    while let Some(joined) = calls.join_next().await {
        let (key, answer) = joined?;
        if answer? {
            used.push(key);
        }
    }
    used.sort();
    assert!(
        used == ["run-1", "run-1"] || used == ["run-2"],
        "one request used the free plan, and its duplicate is told so: {used:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_final_billing_repeated_with_another_cost_is_refused_naming_it() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let user = user_with_credits(pool, "payer", d("10")).await;
    crate::queue_plan(pool, &user.to_string(), "p").await;
    let run = crate::claim(pool, "w").await;
    let usage = |cost: &str, succeeded| PlanUsage {
        user_id: user,
        attempt: run,
        api_key_id: None,
        cost: d(cost),
        succeeded,
    };
    let mut conn = pool.acquire().await?;
    let first = credit_history::bill_usage_final(&mut conn, &usage("4", true)).await?;
    assert_eq!(
        credit_history::bill_usage_final(&mut conn, &usage("4", true)).await?,
        first,
        "the same report: the first outcome"
    );
    assert!(matches!(
        credit_history::bill_usage_final(&mut conn, &usage("5", true)).await,
        Err(Error::IdempotencyKeyReused { field: "cost" })
    ));
    assert!(matches!(
        credit_history::bill_usage_final(&mut conn, &usage("4", false)).await,
        Err(Error::IdempotencyKeyReused { field: "succeeded" })
    ));
    assert_eq!(balance(pool, user).await?, d("6"), "billed once");
    Ok(())
}

#[tokio::test]
async fn a_retry_on_a_newer_pod_finds_the_charge_an_older_release_recorded() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let alice = user_with_credits(pool, "alice", d("10")).await;
    let bob = user_with_credits(pool, "bob", d("10")).await;
    // During a rolling deploy the first request reached a pod of the previous release, which
    // stored its key globally as `caller:<key>` and moved the balance in the same transaction.
    let first: Uuid = sqlx::query_scalar!(
        r#"WITH l AS (
               INSERT INTO credit_history (id, user_id, delta, reason, source, external_id,
                                           created_at, idempotency_key, balance_after)
               VALUES (gen_random_uuid(), $1, -3, 'api_call', 'api', 'req',
                       now() AT TIME ZONE 'utc', 'caller:order-7', 7)
               RETURNING id),
           u AS (UPDATE user_account SET credits_balance = credits_balance - 3 WHERE id = $1)
           SELECT id AS "id!" FROM l"#,
        alice
    )
    .fetch_one(pool)
    .await?;

    // Its retry reaches a pod of this release: the first outcome, nothing charged again.
    let rows = ledger_rows(pool, alice).await?;
    let retried = credit_history::charge(
        &mut *pool.acquire().await?,
        &keyed_charge(alice, "3", "order-7"),
    )
    .await?;
    assert_eq!(retried.entry_id, first);
    assert_eq!(balance(pool, alice).await?, d("7"));
    assert_eq!(
        ledger_rows(pool, alice).await?,
        rows,
        "no second ledger row"
    );
    // The same key with another amount is still named as reused.
    let other = credit_history::charge(
        &mut *pool.acquire().await?,
        &keyed_charge(alice, "4", "order-7"),
    )
    .await;
    assert!(
        matches!(other, Err(Error::IdempotencyKeyReused { field: "amount" })),
        "{other:?}"
    );
    // Another user's equal key is not Alice's old row: charged, nothing revealed.
    let b = credit_history::charge(
        &mut *pool.acquire().await?,
        &keyed_charge(bob, "3", "order-7"),
    )
    .await?;
    assert_ne!(b.entry_id, first);
    assert_eq!(balance(pool, bob).await?, d("7"));
    Ok(())
}
