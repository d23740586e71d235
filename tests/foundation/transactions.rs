//! Transactions commit on Ok, roll back on Err; nesting is a savepoint; retries are bounded.

use std::sync::atomic::{AtomicU32, Ordering};

use shared_db::Error;
use shared_db::testing::TestDatabase;
use shared_db::tx::{self, Isolation, RetryPolicy};
use sqlx::{Connection, PgConnection};

use crate::constraints_migrator;

async fn insert_author(conn: &mut PgConnection, id: i32) -> Result<(), Error> {
    sqlx::query("INSERT INTO author (id, email) VALUES ($1, $2)")
        .bind(id)
        .bind(format!("a{id}@example.org"))
        .execute(conn)
        .await?;
    Ok(())
}

async fn author_ids(test_db: &TestDatabase) -> Vec<i32> {
    sqlx::query_scalar("SELECT id FROM author ORDER BY id")
        .fetch_all(test_db.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn ok_commits_and_err_rolls_back() {
    let test_db = TestDatabase::with_migrator(&constraints_migrator())
        .await
        .unwrap();
    let mut conn = test_db.db().acquire().await.unwrap();

    tx::transaction(&mut conn, async |tx| insert_author(tx, 1).await)
        .await
        .unwrap();
    let failed: Result<(), Error> = tx::transaction(&mut conn, async |tx| {
        insert_author(tx, 2).await?;
        Err(Error::invalid_input("changed my mind"))
    })
    .await;
    assert!(matches!(failed, Err(Error::InvalidInput(_))));

    assert_eq!(author_ids(&test_db).await, vec![1]);
}

#[tokio::test]
async fn an_inner_failure_rolls_back_only_the_savepoint_and_the_outer_work_survives() {
    let test_db = TestDatabase::with_migrator(&constraints_migrator())
        .await
        .unwrap();
    let mut conn = test_db.db().acquire().await.unwrap();

    tx::transaction(&mut conn, async |outer| {
        insert_author(outer, 1).await?;
        let inner: Result<(), Error> = tx::transaction(outer, async |inner| {
            insert_author(inner, 2).await?;
            insert_author(inner, 1).await // duplicate key: fails the savepoint
        })
        .await;
        assert!(matches!(inner, Err(Error::Conflict { .. })), "{inner:?}");
        // The outer transaction is still usable after the savepoint rolled back.
        insert_author(outer, 3).await?;
        Ok::<_, Error>(())
    })
    .await
    .unwrap();

    assert_eq!(author_ids(&test_db).await, vec![1, 3]);
}

#[tokio::test]
async fn an_outer_failure_undoes_committed_savepoints_too() {
    let test_db = TestDatabase::with_migrator(&constraints_migrator())
        .await
        .unwrap();
    let mut conn = test_db.db().acquire().await.unwrap();

    let result: Result<(), Error> = tx::transaction(&mut conn, async |outer| {
        tx::transaction(outer, async |inner| insert_author(inner, 1).await).await?;
        Err(Error::NotFound)
    })
    .await;
    assert!(matches!(result, Err(Error::NotFound)));
    assert_eq!(author_ids(&test_db).await, Vec::<i32>::new());
}

#[tokio::test]
async fn isolation_level_applies_at_top_level_and_is_refused_when_nested() {
    let test_db = TestDatabase::with_migrator(&constraints_migrator())
        .await
        .unwrap();
    let mut conn = test_db.db().acquire().await.unwrap();

    let level: String = tx::transaction_with(&mut conn, Isolation::Serializable, async |tx| {
        let nested =
            tx::transaction_with(tx, Isolation::ReadCommitted, async |_| Ok::<_, Error>(())).await;
        assert!(matches!(nested, Err(Error::InvalidInput(_))), "{nested:?}");
        Ok::<_, Error>(
            sqlx::query_scalar("SELECT current_setting('transaction_isolation')")
                .fetch_one(&mut *tx)
                .await?,
        )
    })
    .await
    .unwrap();
    assert_eq!(level, "serializable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_run_inside_spawned_tasks() {
    // The closure-taking API must produce Send futures, or services could not spawn them.
    let test_db = TestDatabase::with_migrator(&constraints_migrator())
        .await
        .unwrap();
    let db = test_db.db().clone();
    let handle =
        tokio::spawn(async move { db.transaction(async |tx| insert_author(tx, 7).await).await });
    handle.await.unwrap().unwrap();
    assert_eq!(author_ids(&test_db).await, vec![7]);
}

/// Produces a real serialization failure (SQLSTATE 40001): a repeatable-read transaction
/// updates a row that another transaction changed after the first one's snapshot was taken.
async fn lose_a_serialization_race(test_db: &TestDatabase) -> Result<(), Error> {
    let mut victim = PgConnection::connect_with(test_db.connect_options()).await?;
    let mut winner = PgConnection::connect_with(test_db.connect_options()).await?;
    tx::transaction_with(&mut victim, Isolation::RepeatableRead, async |tx| {
        let _: i32 = sqlx::query_scalar("SELECT value FROM counter WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query("UPDATE counter SET value = value + 100 WHERE id = 1")
            .execute(&mut winner)
            .await?;
        sqlx::query("UPDATE counter SET value = value + 1 WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        Ok(())
    })
    .await
}

async fn increment(test_db: &TestDatabase) -> Result<(), Error> {
    sqlx::query("UPDATE counter SET value = value + 1 WHERE id = 1")
        .execute(test_db.pool())
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_serialization_failure_is_retryable_and_retry_recovers_from_it() {
    let test_db = TestDatabase::with_migrator(&constraints_migrator())
        .await
        .unwrap();
    let err = lose_a_serialization_race(&test_db).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(err.sqlstate().as_deref(), Some("40001"));

    let attempts = AtomicU32::new(0);
    let (attempts, test_db) = (&attempts, &test_db);
    tx::retry(RetryPolicy::default(), |attempt| async move {
        attempts.fetch_add(1, Ordering::SeqCst);
        if attempt == 1 {
            lose_a_serialization_race(test_db).await
        } else {
            increment(test_db).await
        }
    })
    .await
    .expect("the second attempt succeeds");
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn retry_gives_up_after_the_bound_and_never_retries_a_permanent_error() {
    let test_db = TestDatabase::with_migrator(&constraints_migrator())
        .await
        .unwrap();
    let policy = RetryPolicy {
        max_attempts: 3,
        ..RetryPolicy::default()
    };

    let attempts = &AtomicU32::new(0);
    let test_db = &test_db;
    let err = tx::retry(policy, |_| async move {
        attempts.fetch_add(1, Ordering::SeqCst);
        lose_a_serialization_race(test_db).await
    })
    .await
    .unwrap_err();
    assert!(err.is_retryable());
    assert_eq!(attempts.load(Ordering::SeqCst), 3);

    let attempts = &AtomicU32::new(0);
    let err = tx::retry(policy, |_| async move {
        attempts.fetch_add(1, Ordering::SeqCst);
        let mut conn = test_db.db().acquire().await?;
        insert_author(&mut conn, 1).await?;
        insert_author(&mut conn, 1).await
    })
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }));
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        1,
        "a unique violation is not retried"
    );
}

/// A statement on a connection that another session cut: the client cannot know whether the
/// server ran it.
async fn run_on_a_cut_connection(test_db: &TestDatabase) -> Result<(), Error> {
    let mut doomed = PgConnection::connect_with(test_db.connect_options()).await?;
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut doomed)
        .await?;
    let _: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(test_db.pool())
        .await?;
    sqlx::query("UPDATE counter SET value = value + 1 WHERE id = 1")
        .execute(&mut doomed)
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_lost_connection_has_an_unknown_outcome_and_is_repeated_only_for_idempotent_work() {
    let test_db = TestDatabase::with_migrator(&constraints_migrator())
        .await
        .unwrap();
    let err = run_on_a_cut_connection(&test_db).await.unwrap_err();
    assert!(err.is_outcome_unknown(), "{err:?}");
    assert!(!err.is_retryable(), "{err:?}");

    let test_db = &test_db;
    let attempts = &AtomicU32::new(0);
    let attempt = |n: u32| async move {
        attempts.fetch_add(1, Ordering::SeqCst);
        if n == 1 {
            run_on_a_cut_connection(test_db).await
        } else {
            increment(test_db).await
        }
    };
    let not_repeated = tx::retry(RetryPolicy::default(), attempt).await;
    assert!(not_repeated.unwrap_err().is_outcome_unknown());
    assert_eq!(attempts.swap(0, Ordering::SeqCst), 1);

    tx::retry(RetryPolicy::idempotent(), attempt)
        .await
        .expect("the second attempt succeeds");
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_and_transaction_run_inside_spawned_tasks() {
    // What an axum handler or a background job does: the whole retried unit of work is one
    // spawned future, so it must be Send.
    let test_db = TestDatabase::with_migrator(&constraints_migrator())
        .await
        .unwrap();
    let db = test_db.db().clone();
    let retried = tokio::spawn(async move {
        let db = &db;
        tx::retry(RetryPolicy::default(), |attempt| async move {
            let mut conn = db.acquire().await?;
            tx::transaction(&mut conn, async |tx| {
                insert_author(tx, 10 + attempt as i32).await?;
                insert_author(tx, 20).await
            })
            .await
        })
        .await
    });
    retried.await.unwrap().unwrap();

    let mut conn = test_db.db().acquire().await.unwrap();
    let spawned = tokio::spawn(async move {
        let id = 30;
        let id = &id; // a borrowed capture, as repository functions have
        tx::transaction(&mut conn, async |tx| insert_author(tx, *id).await).await
    });
    spawned.await.unwrap().unwrap();
    assert_eq!(author_ids(&test_db).await, vec![11, 20, 30]);
}
