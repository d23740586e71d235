//! Server-side timeouts reach the caller as their own variants: a statement that runs too long,
//! a lock that is not granted in time, a session left idle inside a transaction.

use std::time::Duration;

use shared_db::testing::TestDatabase;
use shared_db::{Config, Database, Error};
use sqlx::{Connection, PgConnection};

use crate::constraints_migrator;

async fn connect(test_db: &TestDatabase, tune: impl FnOnce(&mut Config)) -> Database {
    let mut config = Config::new(test_db.url());
    tune(&mut config);
    Database::connect(&config).await.expect("connect")
}

#[tokio::test]
async fn a_statement_over_the_statement_timeout_is_a_statement_timeout() {
    let test_db = TestDatabase::new().await.unwrap();
    let db = connect(&test_db, |c| {
        c.statement_timeout = Some(Duration::from_millis(100))
    })
    .await;

    let err: Error = sqlx::query("SELECT pg_sleep(5)")
        .execute(db.pool())
        .await
        .unwrap_err()
        .into();
    assert!(matches!(err, Error::StatementTimeout { .. }), "{err:?}");
    assert_eq!(err.sqlstate().as_deref(), Some("57014"));
    assert!(
        !err.is_retryable(),
        "the same statement would time out again"
    );
    db.close().await;
}

#[tokio::test]
async fn a_row_lock_held_past_the_lock_timeout_is_a_retryable_lock_timeout() {
    let test_db = TestDatabase::with_migrator(&constraints_migrator())
        .await
        .unwrap();
    let mut holder = PgConnection::connect_with(test_db.connect_options())
        .await
        .unwrap();
    let mut waiter = PgConnection::connect_with(test_db.connect_options())
        .await
        .unwrap();
    sqlx::raw_sql("BEGIN; SELECT value FROM counter WHERE id = 1 FOR UPDATE")
        .execute(&mut holder)
        .await
        .unwrap();
    sqlx::raw_sql("SET lock_timeout = '100ms'")
        .execute(&mut waiter)
        .await
        .unwrap();

    let err: Error = sqlx::query("UPDATE counter SET value = value + 1 WHERE id = 1")
        .execute(&mut waiter)
        .await
        .unwrap_err()
        .into();
    assert!(matches!(err, Error::LockTimeout { .. }), "{err:?}");
    assert_eq!(err.sqlstate().as_deref(), Some("55P03"));
    assert!(err.is_retryable());

    // Once the lock is released, the same statement goes through.
    sqlx::raw_sql("COMMIT").execute(&mut holder).await.unwrap();
    sqlx::query("UPDATE counter SET value = value + 1 WHERE id = 1")
        .execute(&mut waiter)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_session_idle_in_a_transaction_past_the_knob_is_ended_by_the_server() {
    let test_db = TestDatabase::new().await.unwrap();
    let db = connect(&test_db, |c| {
        c.idle_in_transaction_timeout = Some(Duration::from_millis(200))
    })
    .await;
    let setting: String = sqlx::query_scalar("SHOW idle_in_transaction_session_timeout")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(setting, "200ms");

    let mut tx = db.begin().await.unwrap();
    sqlx::query("SELECT 1").execute(&mut *tx).await.unwrap();
    // A wide margin: the server ends the session after 200 ms idle; we look after 2 s.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let err: Error = sqlx::query("SELECT 1")
        .execute(&mut *tx)
        .await
        .unwrap_err()
        .into();
    assert_eq!(err.sqlstate().as_deref(), Some("25P03"), "{err:?}");
    assert!(
        err.is_retryable(),
        "the server rolled the transaction back: {err:?}"
    );
    drop(tx);
    db.close().await;
}
