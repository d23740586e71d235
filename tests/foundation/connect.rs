//! Connecting: no URL is a configuration error, never some other database; a server that does
//! not answer and a pool that stays busy are timeouts of their own, safe to retry.

use std::time::Duration;

use shared_db::testing::TestDatabase;
use shared_db::{Config, Database, Error};

#[tokio::test]
async fn without_a_url_connect_fails_with_a_configuration_error_naming_database_url() {
    let config = Config::from_lookup(|_| None).expect("defaults");
    let err = Database::connect(&config).await.unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert!(err.to_string().contains("DATABASE_URL"), "{err}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_server_that_never_answers_is_a_connect_timeout_with_the_password_hidden() {
    // A socket that accepts connections (the kernel's backlog) and never speaks.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let mut config = Config::new(format!("postgres://app:hunter2@127.0.0.1:{port}/db"));
    config.connect_timeout = Duration::from_millis(300);

    let err = Database::connect(&config).await.unwrap_err();
    assert!(
        matches!(&err, Error::ConnectTimeout { timeout, .. } if *timeout == config.connect_timeout),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert!(!err.to_string().contains("hunter2"), "{err}");
    drop(silent);
}

#[tokio::test]
async fn a_pool_that_stays_busy_is_a_pool_timeout() -> anyhow::Result<()> {
    let test_db = TestDatabase::new().await?;
    let mut config = Config::new(test_db.url());
    config.max_connections = 1;
    // Wide enough for a debug build to open a connection (SCRAM authentication is slow).
    config.acquire_timeout = Duration::from_secs(2);
    let db = Database::connect(&config).await?;

    let held = db.acquire().await?;
    let err = db.acquire().await.unwrap_err();
    assert!(matches!(err, Error::PoolTimeout), "{err:?}");
    assert!(err.is_retryable(), "nothing was sent");
    drop(held);
    db.close().await;
    Ok(())
}
