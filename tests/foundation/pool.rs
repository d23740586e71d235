//! The pool hands out working connections with one round trip per pooled statement: a
//! connection goes back to the pool without a ping, and only one in doubt (its statement failed
//! or was cancelled, it holds a transaction, it has been out of sqlx's pool for
//! `ping_idle_after`) goes back to sqlx to be checked. A connection cut while it sat idle for
//! `ping_idle_after` is noticed and replaced before use; one cut sooner costs at most the one
//! statement that finds it, and the retry runs on a new session.

use std::time::Duration;

use shared_db::testing::TestDatabase;
use shared_db::testing::proxy::FaultProxy;
use shared_db::{Config, Database, Error};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Acquire, Executor, PgExecutor};

async fn backend_pid(db: impl PgExecutor<'_>) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT pg_backend_pid() AS "pid!""#)
        .fetch_one(db)
        .await
}

/// Cuts the sessions `pids` from another connection, as a server restart or a firewall would.
async fn cut(test_db: &TestDatabase, pids: &[i32]) -> anyhow::Result<()> {
    for &pid in pids {
        let cut = sqlx::query_scalar!(r#"SELECT pg_terminate_backend($1) AS "cut!""#, pid)
            .fetch_one(test_db.pool())
            .await?;
        assert!(cut);
    }
    // the server ends the sessions asynchronously
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(())
}

#[tokio::test]
async fn a_connection_goes_back_to_the_pool_without_a_round_trip() -> anyhow::Result<()> {
    let test_db = TestDatabase::new().await?;
    let proxy = FaultProxy::in_front_of(test_db.connect_options()).await?;
    let db = Database::from_pool(
        PgPoolOptions::new()
            .max_connections(1)
            .connect_with(proxy.connect_options(test_db.connect_options()))
            .await?,
    );
    let first = backend_pid(db.pool()).await?; // prepares the statement on the session
    // Whatever a release would send has been sent after this pause.
    let settle = || tokio::time::sleep(Duration::from_millis(300));
    settle().await;

    // A statement on the pool: its own messages, and nothing when the connection goes back.
    let before = proxy.bytes_from_clients();
    let second = backend_pid(db.pool()).await?;
    let statement = proxy.bytes_from_clients() - before;
    settle().await;
    assert_eq!(proxy.bytes_from_clients() - before, statement);
    assert_eq!(
        second, first,
        "the same session, parked and handed out again"
    );
    assert_eq!(db.pool().num_parked(), 1);

    // The same for a connection held for several statements.
    let before = proxy.bytes_from_clients();
    let mut conn = db.acquire().await?;
    backend_pid(&mut *conn).await?;
    let statement = proxy.bytes_from_clients() - before;
    drop(conn);
    settle().await;
    assert_eq!(proxy.bytes_from_clients() - before, statement);

    // sqlx's own return path, for contrast: its ping is a `Sync` message (5 bytes).
    let before = proxy.bytes_from_clients();
    let mut conn = db.acquire().await?.into_sqlx();
    backend_pid(&mut *conn).await?;
    let statement = proxy.bytes_from_clients() - before;
    drop(conn);
    settle().await;
    assert_eq!(proxy.bytes_from_clients() - before, statement + 5);
    db.close().await;
    Ok(())
}

#[tokio::test]
async fn a_connection_cut_while_idle_is_replaced_before_it_is_handed_out() -> anyhow::Result<()> {
    let test_db = TestDatabase::new().await?;
    let mut config = Config::new(test_db.url());
    config.max_connections = 1;
    config.ping_idle_after = Duration::from_secs(1);
    let db = Database::connect(&config).await?;
    let first = backend_pid(db.pool()).await?;

    // Another session cuts the pooled connection while it waits idle.
    cut(&test_db, &[first]).await?;
    tokio::time::sleep(config.ping_idle_after).await;

    // The next statement runs, on a new session: the parked connection went back to sqlx,
    // whose ping found it dead.
    let second = backend_pid(db.pool()).await?;
    assert_ne!(first, second);

    // The same for a connection taken with `acquire`.
    cut(&test_db, &[second]).await?;
    tokio::time::sleep(config.ping_idle_after).await;
    let mut conn = db.acquire().await?;
    let third = backend_pid(&mut *conn).await?;
    assert_ne!(third, second);
    drop(conn);
    db.close().await;
    Ok(())
}

#[tokio::test]
async fn a_cut_found_by_one_statement_sends_every_parked_connection_to_be_checked()
-> anyhow::Result<()> {
    let test_db = TestDatabase::new().await?;
    let mut config = Config::new(test_db.url());
    config.max_connections = 4;
    let db = Database::connect(&config).await?;
    // Four sessions parked: four callers at once, then all released.
    let mut held = Vec::new();
    let mut pids = Vec::new();
    for _ in 0..4 {
        let mut conn = db.acquire().await?;
        pids.push(backend_pid(&mut *conn).await?);
        held.push(conn);
    }
    drop(held);
    assert_eq!(db.pool().num_parked(), 4);

    // All four are cut well within `ping_idle_after` (10 s): nothing has checked them since.
    cut(&test_db, &pids).await?;

    // The first statement finds its session gone: the connection was lost, so the caller
    // cannot know whether the statement ran (a read here; a write would be retried only if
    // idempotent, see `tx::retry`).
    let lost = Error::from(backend_pid(db.pool()).await.unwrap_err());
    assert!(lost.is_outcome_unknown(), "{lost:?}");
    // That was the only one: the other three went back to sqlx, which found them dead. The
    // retry and everything after run on new sessions.
    for _ in 0..8 {
        let pid = backend_pid(db.pool()).await?;
        assert!(!pids.contains(&pid));
    }
    db.close().await;
    Ok(())
}

#[tokio::test]
async fn a_caller_waiting_for_a_connection_gets_the_one_released_meanwhile() -> anyhow::Result<()> {
    let test_db = TestDatabase::new().await?;
    let mut config = Config::new(test_db.url());
    config.max_connections = 1;
    config.acquire_timeout = Duration::from_secs(5);
    let db = Database::connect(&config).await?;
    let mut holder = db.acquire().await?;
    let held = backend_pid(&mut *holder).await?;

    // A second caller waits: the pool's one connection is taken.
    let waiter = tokio::spawn({
        let db = db.clone();
        async move { backend_pid(db.pool()).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(db.pending_requests(), 1);

    // The holder is done. Its connection does not sit parked while the waiter waits on sqlx
    // (whose only permit it holds): it goes to the waiter at once.
    drop(holder);
    let got = tokio::time::timeout(Duration::from_secs(1), waiter).await???;
    assert_eq!(got, held);
    assert_eq!(db.pending_requests(), 0);
    db.close().await;
    Ok(())
}

#[tokio::test]
async fn a_connection_in_doubt_goes_back_to_sqlx_instead_of_to_the_next_caller()
-> anyhow::Result<()> {
    let test_db = TestDatabase::new().await?;
    let mut config = Config::new(test_db.url());
    config.max_connections = 2;
    let db = Database::connect(&config).await?;
    backend_pid(db.pool()).await?;
    assert_eq!(db.pool().num_parked(), 1, "a statement that went well");

    // A statement that failed.
    let failed = db.pool().execute("SELECT 1 / 0").await;
    assert!(failed.is_err());
    assert_eq!(db.pool().num_parked(), 0);
    backend_pid(db.pool()).await?;

    // A statement cancelled half-way (its future dropped).
    let cancelled = tokio::time::timeout(
        Duration::from_millis(100),
        db.pool().execute("SELECT pg_sleep(0.5)"),
    )
    .await;
    assert!(cancelled.is_err());
    assert_eq!(db.pool().num_parked(), 0);

    // A transaction dropped before its end (its rollback is queued, not yet sent).
    let mut conn = db.acquire().await?;
    {
        let mut tx = conn.begin().await?;
        backend_pid(&mut *tx).await?;
    }
    drop(conn);
    assert_eq!(db.pool().num_parked(), 0);

    // A transaction that committed leaves a connection fit for the next caller.
    db.transaction(async |tx| backend_pid(tx).await.map_err(Error::from))
        .await?;
    assert_eq!(db.pool().num_parked(), 1);
    // and the pool still serves
    backend_pid(db.pool()).await?;
    db.close().await;
    Ok(())
}

#[tokio::test]
async fn rows_stream_from_the_pool_and_a_stream_dropped_half_way_leaves_its_connection_in_doubt()
-> anyhow::Result<()> {
    use futures::{StreamExt, TryStreamExt};
    let test_db = TestDatabase::new().await?;
    let db = Database::connect(&Config::new(test_db.url())).await?;
    let numbers = || sqlx::query_scalar::<_, i32>("SELECT generate_series(1, 10000)");

    // Read to the end: every row, in order, and the connection is parked again.
    let all: Vec<i32> = numbers().fetch(db.pool()).try_collect().await?;
    assert_eq!(all, (1..=10_000).collect::<Vec<_>>());
    assert_eq!(db.pool().num_parked(), 1);

    // Dropped after ten rows: the rest of the result is still on its way, so the connection
    // goes back to sqlx (whose ping reads it off) rather than to the next caller.
    let first_ten: Vec<i32> = numbers().fetch(db.pool()).take(10).try_collect().await?;
    assert_eq!(first_ten, (1..=10).collect::<Vec<_>>());
    assert_eq!(db.pool().num_parked(), 0);
    backend_pid(db.pool()).await?;
    db.close().await;
    Ok(())
}
