//! Exactly once after an unknown outcome: a proxy between the pool and PostgreSQL cuts the
//! connection right after the server acknowledged a COMMIT, so the work is committed but the client
//! sees a lost connection, and `tx::retry` runs the operation again.

use std::future::Future;

use rust_decimal::Decimal;
use shared_db::Error;
use shared_db::planexe::credit_history::{self, Charge, FinalBilling, PlanUsage};
use shared_db::planexe::payment_record::{self, NewPayment, PaymentOutcome};
use shared_db::planexe::user_account;
use shared_db::planexe::user_api_key::{self, ApiKeySecret, KeyOptions, RawApiKey};
use shared_db::testing::TestDatabase;
use shared_db::testing::proxy::FaultProxy;
use shared_db::tx::{self, RetryPolicy};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

use crate::user_with_credits;

/// A pool that reaches the test database through `proxy`.
async fn pool_through(proxy: &FaultProxy, db: &TestDatabase) -> anyhow::Result<PgPool> {
    Ok(PgPoolOptions::new()
        .max_connections(2)
        .connect_with(proxy.connect_options(db.connect_options()))
        .await?)
}

#[tokio::test]
async fn the_proxy_loses_the_commit_acknowledgement_of_a_committed_transaction()
-> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let proxy = FaultProxy::in_front_of(db.connect_options()).await?;
    let pool = pool_through(&proxy, &db).await?;

    proxy.drop_next_commit();
    let mut conn = pool.acquire().await?;
    let outcome = tx::transaction(&mut conn, async |tx| {
        sqlx::query!(
            "INSERT INTO workers (id, started_at, last_heartbeat_at) VALUES ('w', now(), now())"
        )
        .execute(&mut *tx)
        .await?;
        Ok::<_, shared_db::Error>(())
    })
    .await;
    drop(conn);

    let err = outcome.expect_err("the client must not hear of the commit");
    assert!(
        err.is_outcome_unknown() && !err.is_retryable(),
        "a lost connection leaves the outcome unknown: {err:?}"
    );
    assert_eq!(proxy.commits_dropped(), 1);
    let committed = sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM workers"#)
        .fetch_one(db.pool())
        .await?;
    assert_eq!(committed, 1, "the server committed all the same");

    // The proxy keeps serving: the next transaction through it commits and is heard.
    let mut conn = pool.acquire().await?;
    tx::transaction(&mut conn, async |tx| {
        sqlx::query!("DELETE FROM workers")
            .execute(&mut *tx)
            .await?;
        Ok::<_, shared_db::Error>(())
    })
    .await?;
    Ok(())
}

/// Runs `op` under `tx::retry` with the proxy armed: the first attempt's COMMIT reaches the server
/// but its acknowledgement is lost, the retry runs `op` again on a fresh connection.
async fn retried_after_a_lost_commit<T, F, Fut>(proxy: &FaultProxy, op: F) -> anyhow::Result<T>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = shared_db::Result<T>>,
{
    let dropped = proxy.commits_dropped();
    proxy.drop_next_commit();
    let out = tx::retry(RetryPolicy::idempotent(), op).await?;
    assert_eq!(
        proxy.commits_dropped(),
        dropped + 1,
        "the first commit went unheard"
    );
    Ok(out)
}

async fn ledger_rows(db: &TestDatabase, user: Uuid) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM credit_history WHERE user_id = $1"#,
        user
    )
    .fetch_one(db.pool())
    .await?)
}

#[tokio::test]
async fn a_charge_retried_after_a_lost_commit_returns_the_first_outcome_and_charges_once()
-> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let user = user_with_credits(db.pool(), "payer", Decimal::new(10, 0)).await;
    let proxy = FaultProxy::in_front_of(db.connect_options()).await?;
    let pool = pool_through(&proxy, &db).await?;
    let charge = Charge {
        user_id: user,
        amount: Decimal::new(3, 0),
        reason: "api_call",
        source: "api",
        idempotency_key: Some("request-7f3a"),
        ..Default::default()
    };

    let (pool, charge) = (&pool, &charge);
    let change = retried_after_a_lost_commit(&proxy, move |_| async move {
        let mut conn = pool.acquire().await?;
        tx::transaction(&mut conn, async |tx| {
            credit_history::charge(tx, charge).await
        })
        .await
    })
    .await?;

    assert_eq!(change.delta, Decimal::new(-3, 0));
    assert_eq!(change.new_balance, Decimal::new(7, 0), "the first outcome");
    assert_eq!(ledger_rows(&db, user).await?, 2, "the grant and one charge");
    let entry = sqlx::query_scalar!(
        r#"SELECT id FROM credit_history WHERE user_id = $1 AND source = 'api'"#,
        user
    )
    .fetch_one(db.pool())
    .await?;
    assert_eq!(change.entry_id, entry);
    assert_eq!(
        user_account::get(db.pool(), user).await?.credits_balance,
        Decimal::new(7, 0)
    );
    // The key names this charge: used for another amount it is refused, nothing written.
    let other = Charge {
        amount: Decimal::new(4, 0),
        ..charge.clone()
    };
    assert!(matches!(
        credit_history::charge(&mut *db.pool().acquire().await?, &other).await,
        Err(Error::IdempotencyKeyReused { field: "amount" })
    ));
    assert_eq!(ledger_rows(&db, user).await?, 2);
    Ok(())
}

#[tokio::test]
async fn a_grant_retried_after_a_lost_commit_returns_the_first_outcome_and_grants_once()
-> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let user = user_with_credits(db.pool(), "grantee", Decimal::ZERO).await;
    let proxy = FaultProxy::in_front_of(db.connect_options()).await?;
    let pool = pool_through(&proxy, &db).await?;

    let pool = &pool;
    let change = retried_after_a_lost_commit(&proxy, move |_| async move {
        let mut conn = pool.acquire().await?;
        tx::transaction(&mut conn, async |tx| {
            credit_history::grant(tx, user, Decimal::new(25, 0), None, Some("ticket-42")).await
        })
        .await
    })
    .await?;

    assert_eq!(change.new_balance, Decimal::new(25, 0));
    assert_eq!(ledger_rows(&db, user).await?, 1);
    assert_eq!(
        user_account::get(db.pool(), user).await?.credits_balance,
        Decimal::new(25, 0)
    );
    Ok(())
}

#[tokio::test]
async fn usage_billing_retried_after_a_lost_commit_bills_once() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let user = user_with_credits(db.pool(), "payer", Decimal::new(10, 0)).await;
    crate::queue_plan(db.pool(), &user.to_string(), "p").await;
    let run = crate::claim(db.pool(), "w").await;
    let proxy = FaultProxy::in_front_of(db.connect_options()).await?;
    let pool = pool_through(&proxy, &db).await?;
    let usage = |cost, succeeded| PlanUsage {
        user_id: user,
        attempt: run,
        api_key_id: None,
        cost,
        succeeded,
    };

    let step = usage(Decimal::new(15, 1), false);
    let (pool, step) = (&pool, &step);
    let charged = retried_after_a_lost_commit(&proxy, move |_| async move {
        let mut conn = pool.acquire().await?;
        credit_history::bill_usage_progress(&mut conn, step).await
    })
    .await?;
    assert_eq!(charged, Decimal::new(15, 1), "the first answer");

    let fin = usage(Decimal::new(4, 0), true);
    let fin = &fin;
    let billed = retried_after_a_lost_commit(&proxy, move |_| async move {
        let mut conn = pool.acquire().await?;
        credit_history::bill_usage_final(&mut conn, fin).await
    })
    .await?;
    assert_eq!(
        billed,
        FinalBilling::Charged {
            charged: Decimal::new(25, 1)
        },
        "the first answer, not AlreadyBilled"
    );

    assert_eq!(
        ledger_rows(&db, user).await?,
        3,
        "grant, one step, one final"
    );
    assert_eq!(
        user_account::get(db.pool(), user).await?.credits_balance,
        Decimal::new(6, 0)
    );
    assert!(
        credit_history::reconcile(&mut *db.pool().acquire().await?)
            .await?
            .is_empty()
    );
    Ok(())
}

#[tokio::test]
async fn a_payment_retried_after_a_lost_commit_is_credited_once() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let user = user_with_credits(db.pool(), "buyer", Decimal::ZERO).await;
    let proxy = FaultProxy::in_front_of(db.connect_options()).await?;
    let pool = pool_through(&proxy, &db).await?;
    let payment = NewPayment {
        user_id: user,
        provider: "stripe",
        provider_payment_id: "cs_test_lost_commit",
        credits: Decimal::new(50, 0),
        amount: 500,
        currency: "usd",
        raw_payload: None,
    };

    let (pool, payment) = (&pool, &payment);
    let outcome = retried_after_a_lost_commit(&proxy, move |_| async move {
        let mut conn = pool.acquire().await?;
        tx::transaction(&mut conn, async |tx| {
            payment_record::apply(tx, payment).await
        })
        .await
    })
    .await?;

    // The repeat answers the first, unheard commit's outcome: its payment row and balance.
    let record =
        payment_record::get_by_provider_id(db.pool(), "stripe", "cs_test_lost_commit").await?;
    assert_eq!(
        outcome,
        PaymentOutcome::Applied {
            payment_id: record.id,
            new_balance: Decimal::new(50, 0)
        }
    );
    assert_eq!(ledger_rows(&db, user).await?, 1);
    assert_eq!(
        payment_record::list_for_user(db.pool(), user, Default::default())
            .await?
            .len(),
        1
    );
    assert_eq!(
        user_account::get(db.pool(), user).await?.credits_balance,
        Decimal::new(50, 0)
    );
    Ok(())
}

#[tokio::test]
async fn an_api_key_created_again_after_a_lost_commit_is_the_same_single_key() -> anyhow::Result<()>
{
    let db = TestDatabase::new().await?;
    let user = user_with_credits(db.pool(), "keyholder", Decimal::ZERO).await;
    let proxy = FaultProxy::in_front_of(db.connect_options()).await?;
    let pool = pool_through(&proxy, &db).await?;
    let secret = ApiKeySecret::new("s3cret");
    // Generated once, outside the retry: the key itself is the idempotency key.
    let raw = RawApiKey::generate()?;

    let (pool, secret, raw) = (&pool, &secret, &raw);
    let issued = retried_after_a_lost_commit(&proxy, move |_| async move {
        let mut conn = pool.acquire().await?;
        user_api_key::create(
            &mut conn,
            secret,
            user,
            raw,
            Some("laptop"),
            KeyOptions::default(),
        )
        .await
    })
    .await?;

    assert_eq!(&issued.raw, raw);
    let keys = user_api_key::list_for_user(db.pool(), user, Default::default()).await?;
    assert_eq!(keys.len(), 1, "one key");
    assert_eq!(issued.key.id, keys[0].id);
    assert!(
        user_api_key::authenticate(db.pool(), secret, raw)
            .await?
            .is_some()
    );
    Ok(())
}

#[tokio::test]
async fn a_free_plan_claim_retried_after_a_lost_commit_answers_true_once() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let user = user_with_credits(db.pool(), "newcomer", Decimal::ZERO).await;
    let proxy = FaultProxy::in_front_of(db.connect_options()).await?;
    let pool = pool_through(&proxy, &db).await?;

    let pool = &pool;
    let used = retried_after_a_lost_commit(&proxy, move |_| async move {
        let mut conn = pool.acquire().await?;
        tx::transaction(&mut conn, async |tx| {
            user_account::claim_free_plan(tx, user, "run-request-1").await
        })
        .await
    })
    .await?;

    // The retry learns that its own first, unheard commit used the free plan: the caller does
    // not charge for this plan.
    assert!(
        used,
        "the request that used the free plan is told so on its retry"
    );
    assert!(user_account::get(db.pool(), user).await?.free_plan_used);
    // Any other request learns the free plan is gone.
    assert!(!user_account::claim_free_plan(db.pool(), user, "run-request-2").await?);
    assert!(user_account::claim_free_plan(db.pool(), user, "run-request-1").await?);
    Ok(())
}
