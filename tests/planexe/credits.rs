//! Credits: charges refuse to overdraw, usage billing is incremental then final once per attempt,
//! retry settles the attempt, spend is reported per API key.

use rust_decimal::Decimal;
use shared_db::Error;
use shared_db::planexe::credit_history::{self, Charge, FinalBilling, PlanUsage};
use shared_db::planexe::plans::{self, Failure};
use shared_db::planexe::user_account;
use shared_db::testing::TestDatabase;
use uuid::Uuid;

use crate::{claim, queue_plan, user_with_credits};

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

#[tokio::test]
async fn a_charge_above_the_balance_is_refused_and_writes_nothing() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let user = user_with_credits(db.pool(), "frugal", d("1")).await;
    let charge = Charge {
        user_id: user,
        amount: d("2"),
        reason: "r",
        source: "s",
        ..Default::default()
    };
    match credit_history::charge(&mut *db.pool().acquire().await?, &charge).await {
        Err(Error::InsufficientCredits {
            balance, requested, ..
        }) => {
            assert_eq!((balance, requested), (d("1"), d("2")));
        }
        other => panic!("expected InsufficientCredits, got {other:?}"),
    }
    assert_eq!(
        credit_history::list_for_user(db.pool(), user, Default::default())
            .await?
            .len(),
        1
    );
    // Usage billing after the fact may go negative; the ledger still explains the balance.
    let after_the_fact = Charge {
        allow_negative: true,
        ..charge
    };
    let change = credit_history::charge(&mut *db.pool().acquire().await?, &after_the_fact).await?;
    assert_eq!(change.new_balance, d("-1"));
    assert!(
        credit_history::reconcile(&mut *db.pool().acquire().await?)
            .await?
            .is_empty()
    );
    // Amounts are rounded to 9 places; a missing user is NotFound.
    let grant = credit_history::grant(
        &mut *db.pool().acquire().await?,
        user,
        d("0.0000000015"),
        None,
        None,
    )
    .await?;
    assert_eq!(grant.delta, d("0.000000002"));
    assert!(matches!(
        credit_history::grant(
            &mut *db.pool().acquire().await?,
            Uuid::new_v4(),
            d("1"),
            None,
            None
        )
        .await,
        Err(Error::NotFound)
    ));
    Ok(())
}

#[tokio::test]
async fn usage_is_billed_incrementally_then_finally_once_per_attempt() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let user = user_with_credits(pool, "worker-billed", d("100")).await;
    let plan = queue_plan(pool, &user.to_string(), "p").await;
    let first_run = claim(pool, "w").await;
    let key = Uuid::new_v4();
    let mut conn = pool.acquire().await?;
    let usage = |attempt, cost: &str, succeeded| PlanUsage {
        user_id: user,
        attempt,
        api_key_id: Some(key),
        cost: d(cost),
        succeeded,
    };

    let progress = async |conn: &mut sqlx::PgConnection, attempt, cost| {
        credit_history::bill_usage_progress(conn, &usage(attempt, cost, false)).await
    };
    assert_eq!(progress(&mut conn, first_run, "1.0").await?, d("1"));
    assert_eq!(progress(&mut conn, first_run, "2.5").await?, d("1.5"));
    // The same report again (a retry after a lost answer) returns its first answer, charges nothing.
    assert_eq!(progress(&mut conn, first_run, "2.5").await?, d("1.5"));
    // Final: usage 2.5 + success fee 1.5 = 4, of which 2.5 is already charged. Repeated, the
    // same answer and no second charge.
    for _ in 0..2 {
        assert_eq!(
            credit_history::bill_usage_final(&mut conn, &usage(first_run, "4", true)).await?,
            FinalBilling::Charged { charged: d("1.5") }
        );
    }
    assert_eq!(
        user_account::get(pool, user).await?.credits_balance,
        d("96")
    );

    // The attempt failed after all; a retry settles it and the next attempt is billed afresh.
    let f = Failure {
        reason: "generation_error",
        error_message: "x",
        ..Default::default()
    };
    plans::finish_failed(pool, first_run, &f, None).await?;
    let retried = plans::retry(pool, plan).await?;
    assert_eq!(
        retried.settled_billing_rows, 3,
        "two progress rows and the final row"
    );
    let second_run = claim(pool, "w").await;
    assert_eq!(progress(&mut conn, second_run, "0.5").await?, d("0.5"));
    // The first run's worker no longer bills anything.
    assert!(matches!(
        progress(&mut conn, first_run, "9").await,
        Err(Error::Superseded { .. })
    ));
    assert_eq!(
        credit_history::bill_usage_final(&mut conn, &usage(second_run, "2", true)).await?,
        FinalBilling::Charged { charged: d("1.5") }
    );
    assert_eq!(
        user_account::get(pool, user).await?.credits_balance,
        d("94")
    );
    assert!(
        credit_history::reconcile(&mut *pool.acquire().await?)
            .await?
            .is_empty()
    );

    let spend = credit_history::spend_by_api_key(pool, &[key, Uuid::new_v4()]).await?;
    assert_eq!(spend.len(), 1);
    assert_eq!(spend[0].spent, d("6"));
    Ok(())
}

#[tokio::test]
async fn the_billing_user_is_the_plan_owner_or_else_the_first_admin() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let owner = user_with_credits(pool, "owner", Decimal::ZERO).await;
    assert_eq!(
        user_account::billing_user_for_plan(pool, Some(&owner.to_string())).await?,
        Some(owner)
    );
    assert_eq!(
        user_account::billing_user_for_plan(pool, Some("machai-123")).await?,
        None
    );
    let admin = user_account::ensure_admin(pool, "admin").await?;
    assert_eq!(
        user_account::billing_user_for_plan(pool, Some("machai-123")).await?,
        Some(admin.id)
    );
    assert_eq!(
        user_account::billing_user_for_plan(pool, None).await?,
        Some(admin.id)
    );
    Ok(())
}
