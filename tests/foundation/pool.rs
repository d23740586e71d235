//! The pool hands out working connections without pinging busy ones: a connection that was cut
//! while it sat idle for `ping_idle_after` is noticed by the ping and replaced before use.

use std::time::Duration;

use shared_db::testing::TestDatabase;
use shared_db::{Config, Database};

#[tokio::test]
async fn a_connection_cut_while_idle_is_replaced_before_it_is_handed_out() -> anyhow::Result<()> {
    let test_db = TestDatabase::new().await?;
    let mut config = Config::new(test_db.url());
    config.max_connections = 1;
    config.ping_idle_after = Duration::from_secs(1);
    let db = Database::connect(&config).await?;
    let first = sqlx::query_scalar!(r#"SELECT pg_backend_pid() AS "pid!""#)
        .fetch_one(db.pool())
        .await?;

    // Another session cuts the pooled connection while it waits idle, as a server restart or a
    // firewall would.
    let cut = sqlx::query_scalar!(r#"SELECT pg_terminate_backend($1) AS "cut!""#, first)
        .fetch_one(test_db.pool())
        .await?;
    assert!(cut);
    tokio::time::sleep(config.ping_idle_after + Duration::from_millis(500)).await;

    // The next statement runs, on a new session.
    let second = sqlx::query_scalar!(r#"SELECT pg_backend_pid() AS "pid!""#)
        .fetch_one(db.pool())
        .await?;
    assert_ne!(first, second);
    db.close().await;
    Ok(())
}
