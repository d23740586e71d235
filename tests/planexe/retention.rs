//! Retention: old events, idle nonces and old token metrics are deleted in bounded batches beside
//! live writers; the ledger never is.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::json;
use shared_db::planexe::retention::{self, Table};
use shared_db::planexe::token_metrics::{self, NewTokenMetric};
use shared_db::planexe::{EventType, events, nonces};
use shared_db::testing::TestDatabase;
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};

const DAY: Duration = Duration::from_secs(86_400);

/// `n` rows in each of events, nonces and token_metrics, stamped `days` days ago.
async fn seed_aged(pool: &PgPool, n: i32, days: i32, tag: &str) -> anyhow::Result<()> {
    sqlx::raw_sql(AssertSqlSafe(format!(
        "INSERT INTO events (\"timestamp\", event_type, message, context)
           SELECT now() AT TIME ZONE 'utc' - interval '{days} days', 'GENERIC_EVENT', 'aged', NULL
           FROM generate_series(1, {n});
         INSERT INTO nonces (nonce_key, created_at, last_accessed_at, request_count)
           SELECT '{tag}_' || i, now() AT TIME ZONE 'utc' - interval '{days} days',
                  now() AT TIME ZONE 'utc' - interval '{days} days', 1
           FROM generate_series(1, {n}) i;
         INSERT INTO token_metrics (\"timestamp\", llm_model, success)
           SELECT now() AT TIME ZONE 'utc' - interval '{days} days', 'm', true
           FROM generate_series(1, {n});"
    )))
    .execute(pool)
    .await?;
    Ok(())
}

async fn count(pool: &PgPool, table: &str) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(pool)
            .await?,
    )
}

#[tokio::test]
async fn purge_deletes_old_rows_in_batches_and_keeps_recent_ones_and_the_ledger()
-> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    seed_aged(pool, 25, 100, "OLD").await?;
    seed_aged(pool, 3, 10, "RECENT").await?;
    // an old nonce replayed just now counts as in use
    nonces::consume(pool, "OLD_1", None).await?;
    let user = super::user_with_credits(pool, "ledger-keeper", Decimal::from(5)).await;
    sqlx::query("UPDATE credit_history SET created_at = created_at - interval '1000 days'")
        .execute(pool)
        .await?;

    let mut conn = pool.acquire().await?;
    let mut seen = Vec::new();
    let events = retention::purge(&mut conn, Table::Events, 90 * DAY, 10, |p| {
        seen.push(p.deleted)
    })
    .await?;
    assert_eq!(events.deleted, 25);
    assert_eq!(seen, vec![10, 20, 25], "progress after every batch of 10");
    let nonces_gone = retention::purge(&mut conn, Table::Nonces, 90 * DAY, 10, |_| {}).await?;
    assert_eq!(nonces_gone.deleted, 24, "OLD_1 was used just now and stays");
    let metrics_gone =
        retention::purge(&mut conn, Table::TokenMetrics, 90 * DAY, 1000, |_| {}).await?;
    assert_eq!((metrics_gone.deleted, metrics_gone.batches), (25, 1));

    assert_eq!(count(pool, "events").await?, 3);
    assert_eq!(count(pool, "nonces").await?, 4);
    assert_eq!(count(pool, "token_metrics").await?, 3);
    let ledger: Decimal =
        sqlx::query_scalar("SELECT coalesce(sum(delta), 0) FROM credit_history WHERE user_id = $1")
            .bind(user)
            .fetch_one(pool)
            .await?;
    assert_eq!(ledger, Decimal::from(5), "the ledger is never purged");

    let refused = retention::purge(&mut conn, Table::Events, DAY, 0, |_| {}).await;
    assert!(matches!(refused, Err(shared_db::Error::InvalidInput(_))));
    Ok(())
}

/// Writers with a short `lock_timeout` replay old nonces (rows the purge is deleting), append
/// events and record token metrics while the purge runs. Any wait longer than the lock timeout
/// would fail the writer; batches hold their locks for milliseconds, so none does. The control at
/// the end shows the same writer *does* fail when the purge's locks are held past one batch.
#[tokio::test]
async fn a_purge_beside_writers_never_blocks_them_longer_than_one_batch() -> anyhow::Result<()> {
    const OLD: i32 = 40_000;
    const WRITER_LOCK_TIMEOUT: &str = "1s";
    let db = TestDatabase::new().await?;
    let pool = db.pool().clone();
    seed_aged(&pool, OLD, 100, "OLD").await?;

    let purging = Arc::new(AtomicBool::new(true));
    let writes = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let mut conn = PgConnection::connect_with(db.connect_options()).await?;
        sqlx::query(AssertSqlSafe(format!(
            "SET lock_timeout = '{WRITER_LOCK_TIMEOUT}'"
        )))
        .execute(&mut conn)
        .await?;
        let (purging, writes) = (purging.clone(), writes.clone());
        writers.push(tokio::spawn(async move {
            let mut i = w;
            while purging.load(Ordering::Relaxed) {
                i = (i * 7919 + 13) % OLD as u64;
                let key = format!("OLD_{}", i + 1);
                nonces::consume(&mut conn, &key, None).await?;
                events::append(&mut conn, EventType::GenericEvent, "live", None).await?;
                token_metrics::record(
                    &mut conn,
                    &NewTokenMetric {
                        llm_model: "live",
                        ..Default::default()
                    },
                )
                .await?;
                writes.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }

    let mut conn = pool.acquire().await?;
    let mut total = 0;
    for table in [Table::Nonces, Table::Events, Table::TokenMetrics] {
        total += retention::purge(&mut conn, table, 90 * DAY, 500, |_| {})
            .await?
            .deleted;
    }
    let writes_during_purge = writes.load(Ordering::Relaxed);
    purging.store(false, Ordering::Relaxed);
    for writer in writers {
        writer
            .await?
            .expect("no writer waited past its lock_timeout");
    }
    assert!(writes_during_purge > 0, "the writers ran beside the purge");
    assert!(total >= 3 * OLD as u64 - writes_during_purge - 8);
    let old_left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE \"timestamp\" < now() AT TIME ZONE 'utc' - interval '90 days'",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(old_left, 0);

    // Control: the same purge inside a transaction held open keeps its row locks past the batch;
    // a writer replaying one of those nonces then fails on its lock_timeout.
    seed_aged(&pool, 100, 100, "HELD").await?;
    let mut holder = pool.begin().await?;
    retention::purge(&mut holder, Table::Nonces, 90 * DAY, 500, |_| {}).await?;
    let mut writer = PgConnection::connect_with(db.connect_options()).await?;
    sqlx::query(AssertSqlSafe(format!(
        "SET lock_timeout = '{WRITER_LOCK_TIMEOUT}'"
    )))
    .execute(&mut writer)
    .await?;
    let blocked = nonces::consume(&mut writer, "HELD_1", Some(&json!({}))).await;
    assert!(
        matches!(&blocked, Err(e) if e.to_string().contains("lock timeout")),
        "a lock held past the batch trips the writer's lock_timeout: {blocked:?}"
    );
    holder.rollback().await?;
    Ok(())
}
