//! Exactly once after an unknown outcome: a proxy between the pool and PostgreSQL cuts the
//! connection right after the server acknowledged a COMMIT, so the work is committed but the client
//! sees a lost connection, and `tx::retry` runs the operation again.

use shared_db::testing::TestDatabase;
use shared_db::testing::proxy::FaultProxy;
use shared_db::tx;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

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
        err.is_retryable(),
        "a lost connection is retryable: {err:?}"
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
