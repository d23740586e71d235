//! The ledger check: incremental by default (checkpointed per-user sums plus the rows written
//! since), the full re-read on request. What each one sees, and that rows committed out of order
//! are never skipped.

use rust_decimal::Decimal;
use shared_db::planexe::credit_history::{self, Charge, Drift, ReconcileScope};
use shared_db::testing::TestDatabase;
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

use crate::user_with_credits;

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

async fn spend(conn: &mut PgConnection, user: Uuid, amount: &str) -> anyhow::Result<()> {
    credit_history::charge(
        conn,
        &Charge {
            user_id: user,
            amount: d(amount),
            reason: "api_call",
            source: "test",
            ..Default::default()
        },
    )
    .await?;
    Ok(())
}

/// The checkpointed sums equal the ledger sums of the rows they cover, per user.
async fn checkpoint_matches_ledger(pool: &PgPool) -> anyhow::Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT NOT EXISTS (
             SELECT 1 FROM credit_reconcile_checkpoint c, credit_reconcile_watermark w
             WHERE c.ledger_sum <> (SELECT coalesce(sum(delta), 0) FROM credit_history h
                                    WHERE h.user_id = c.user_id
                                      AND (h.xact_id IS NULL OR h.xact_id < w.below)))",
    )
    .fetch_one(pool)
    .await?)
}

/// Runs the routine check (finding no drift) until every ledger row is below the watermark, i.e.
/// in the checkpoint. The watermark is a snapshot's xmin, which counts every transaction open on
/// the server (another test's, in another database): while one is open, the rows written since
/// are read again by each run instead of being checkpointed.
async fn until_all_checkpointed(conn: &mut PgConnection) -> anyhow::Result<()> {
    for _ in 0..400 {
        let drift = credit_history::reconcile(&mut *conn).await?;
        anyhow::ensure!(drift.is_empty(), "drift: {drift:?}");
        let folded: bool = sqlx::query_scalar(
            "SELECT NOT EXISTS (SELECT 1 FROM credit_history h, credit_reconcile_watermark w
                                WHERE h.xact_id >= w.below)",
        )
        .fetch_one(&mut *conn)
        .await?;
        if folded {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    anyhow::bail!("the watermark never passed the ledger's rows")
}

#[tokio::test]
async fn the_routine_check_adds_new_rows_to_the_checkpoint_and_agrees_with_the_full_one()
-> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let mut conn = pool.acquire().await?;
    let ann = user_with_credits(pool, "ann", d("100")).await;
    let bob = user_with_credits(pool, "bob", d("50")).await;
    spend(&mut conn, ann, "3.5").await?;

    // The first run has no checkpoint: it reads the whole ledger and sets one.
    assert!(credit_history::reconcile(&mut conn).await?.is_empty());
    assert!(checkpoint_matches_ledger(pool).await?);

    for _ in 0..3 {
        spend(&mut conn, ann, "1.25").await?;
        spend(&mut conn, bob, "2").await?;
        let carol = user_with_credits(pool, &format!("carol{}", Uuid::new_v4()), d("7")).await;
        spend(&mut conn, carol, "7").await?;
        assert!(credit_history::reconcile(&mut conn).await?.is_empty());
        assert!(checkpoint_matches_ledger(pool).await?);
    }
    until_all_checkpointed(&mut conn).await?;
    let sums: Vec<(Uuid, Decimal)> = sqlx::query_as(
        "SELECT user_id, ledger_sum FROM credit_reconcile_checkpoint WHERE user_id = ANY($1)
         ORDER BY user_id",
    )
    .bind(vec![ann, bob])
    .fetch_all(pool)
    .await?;
    let mut expected = vec![(ann, d("92.75")), (bob, d("44"))];
    expected.sort();
    assert_eq!(sums, expected);
    assert!(credit_history::reconcile_full(&mut conn).await?.is_empty());
    assert!(checkpoint_matches_ledger(pool).await?);
    Ok(())
}

#[tokio::test]
async fn a_balance_changed_without_a_ledger_row_is_found_by_the_routine_check() -> anyhow::Result<()>
{
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let mut conn = pool.acquire().await?;
    let ann = user_with_credits(pool, "ann", d("100")).await;
    let bob = user_with_credits(pool, "bob", d("10")).await;
    assert!(credit_history::reconcile(&mut conn).await?.is_empty());

    // After the checkpoint, ann's balance is raised without a ledger row; she has no new rows,
    // so only the balance tells.
    sqlx::query("UPDATE user_account SET credits_balance = credits_balance + 5 WHERE id = $1")
        .bind(ann)
        .execute(pool)
        .await?;
    let ann_drift = Drift {
        user_id: ann,
        balance: d("105"),
        ledger_sum: d("100"),
    };
    assert_eq!(
        credit_history::reconcile(&mut conn).await?,
        std::slice::from_ref(&ann_drift)
    );

    // A Python-style purchase that clamps: a +10 ledger row but the balance moved by 4.
    sqlx::query(
        "WITH l AS (INSERT INTO credit_history (id, user_id, delta, reason, source, created_at)
                    VALUES (gen_random_uuid(), $1, 10, 'credits_purchased', 'stripe',
                            now() AT TIME ZONE 'utc'))
         UPDATE user_account SET credits_balance = credits_balance + 4 WHERE id = $1",
    )
    .bind(bob)
    .execute(pool)
    .await?;
    let mut both = vec![
        ann_drift,
        Drift {
            user_id: bob,
            balance: d("14"),
            ledger_sum: d("20"),
        },
    ];
    both.sort_by_key(|x| x.user_id);
    assert_eq!(credit_history::reconcile(&mut conn).await?, both);
    assert_eq!(credit_history::reconcile_full(&mut conn).await?, both);
    Ok(())
}

#[tokio::test]
async fn an_edit_of_checkpointed_history_is_found_only_by_the_full_check() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let mut conn = pool.acquire().await?;
    let ann = user_with_credits(pool, "ann", d("100")).await;
    spend(&mut conn, ann, "30").await?;
    until_all_checkpointed(&mut conn).await?;

    // An old ledger row is edited after it was checkpointed; the balance stays.
    sqlx::query("UPDATE credit_history SET delta = -20 WHERE user_id = $1 AND delta = -30")
        .bind(ann)
        .execute(pool)
        .await?;
    // The routine check trusts the checkpoint and does not read that row again ...
    assert!(
        credit_history::reconcile_with(&mut conn, ReconcileScope::Incremental)
            .await?
            .is_empty()
    );
    // ... the full check reads it and finds the drift, and rebuilds the checkpoint from the
    // ledger as it is, so the routine check reports it from then on too.
    let drift = [Drift {
        user_id: ann,
        balance: d("70"),
        ledger_sum: d("80"),
    }];
    assert_eq!(credit_history::reconcile_full(&mut conn).await?, drift);
    assert_eq!(credit_history::reconcile(&mut conn).await?, drift);
    Ok(())
}

#[tokio::test]
async fn a_row_committed_after_a_later_one_is_not_skipped() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let mut checker = pool.acquire().await?;
    let ann = user_with_credits(pool, "ann", d("100")).await;
    let bob = user_with_credits(pool, "bob", d("100")).await;
    assert!(credit_history::reconcile(&mut checker).await?.is_empty());

    // Writer A starts first: its row has the older transaction id and the older created_at ...
    let mut a = PgConnection::connect_with(db.connect_options()).await?;
    let mut tx_a = a.begin().await?;
    spend(&mut tx_a, ann, "11").await?;
    // ... writer B starts later and commits first.
    let mut b = pool.acquire().await?;
    spend(&mut b, bob, "5").await?;

    // A check while A is open sees B's row and neither A's row nor A's balance change.
    assert!(credit_history::reconcile(&mut checker).await?.is_empty());
    assert!(checkpoint_matches_ledger(pool).await?);
    // A commits after the check: a watermark taken from row ids or times would now be past
    // A's row and never read it, and ann would drift by 11 for ever.
    tx_a.commit().await?;
    for _ in 0..3 {
        assert!(credit_history::reconcile(&mut checker).await?.is_empty());
        assert!(checkpoint_matches_ledger(pool).await?);
    }
    until_all_checkpointed(&mut checker).await?;
    let ann_sum: Decimal =
        sqlx::query_scalar("SELECT ledger_sum FROM credit_reconcile_checkpoint WHERE user_id = $1")
            .bind(ann)
            .fetch_one(pool)
            .await?;
    assert_eq!(ann_sum, d("89"), "A's row is in the checkpoint");
    assert!(
        credit_history::reconcile_full(&mut checker)
            .await?
            .is_empty()
    );
    Ok(())
}

#[tokio::test]
async fn concurrent_checks_and_writers_never_report_a_false_drift() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let users = [
        user_with_credits(pool, "u1", d("1000")).await,
        user_with_credits(pool, "u2", d("1000")).await,
    ];
    let mut writers = Vec::new();
    for w in 0..4 {
        let pool = pool.clone();
        writers.push(tokio::spawn(async move {
            let mut conn = pool.acquire().await?;
            for i in 0..40 {
                // transactions of different lengths, so they commit out of order
                let mut tx = conn.begin().await?;
                spend(&mut tx, users[(w + i) % 2], "0.5").await?;
                tokio::time::sleep(std::time::Duration::from_millis(((w * 7 + i) % 5) as u64))
                    .await;
                tx.commit().await?;
            }
            anyhow::Ok(())
        }));
    }
    let mut checks = Vec::new();
    for _ in 0..2 {
        let pool = pool.clone();
        checks.push(tokio::spawn(async move {
            let mut conn = pool.acquire().await?;
            for _ in 0..30 {
                let drift = credit_history::reconcile(&mut conn).await?;
                anyhow::ensure!(drift.is_empty(), "false drift: {drift:?}");
            }
            anyhow::Ok(())
        }));
    }
    for t in writers.into_iter().chain(checks) {
        t.await??;
    }
    let mut conn = pool.acquire().await?;
    assert!(credit_history::reconcile(&mut conn).await?.is_empty());
    assert!(checkpoint_matches_ledger(pool).await?);
    assert!(credit_history::reconcile_full(&mut conn).await?.is_empty());
    Ok(())
}
