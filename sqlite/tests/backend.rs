//! The SQLite backend on real files: the connection invariant on every pooled connection, the
//! schema lifecycle with the PostgreSQL states, and write transactions that wait for each other
//! instead of failing. Each story uses a file of its own under the target directory.

use std::path::PathBuf;
use std::time::Duration;

use shared_db::schema::{SchemaStatus, SyncOutcome};
use shared_db::{Config, Error};
use shared_db_sqlite::Database;
use sqlx::Connection;

/// A fresh file for one story (removed first if a previous run left it).
fn file(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sqlite-stories");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}-{}.db", std::process::id()));
    for suffix in ["", "-wal", "-shm", ".migrate-lock"] {
        let mut p = path.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
    path
}

fn config(path: &std::path::Path) -> Config {
    Config::new(format!("sqlite://{}", path.display()))
}

/// The four pragmas of the invariant, as one connection reports them.
async fn pragmas(conn: &mut sqlx::SqliteConnection) -> (String, i64, i64, i64) {
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    let fks: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    (journal, busy, fks, sync)
}

#[tokio::test]
async fn every_connection_keeps_the_invariant_after_the_pool_grows_and_recycles() {
    let path = file("invariant");
    let db = Database::connect(&Config {
        max_connections: 4,
        sqlite_busy_timeout: Duration::from_millis(1234),
        ..config(&path)
    })
    .await
    .unwrap();
    let expected = ("wal".to_owned(), 1234, 1, 1); // synchronous NORMAL = 1

    // The pool grows to four connections, held at once; each marks itself with a temp table.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut conn = db.acquire().await.unwrap();
        assert_eq!(pragmas(&mut conn).await, expected);
        sqlx::raw_sql("CREATE TEMP TABLE opened_first (x)")
            .execute(&mut *conn)
            .await
            .unwrap();
        held.push(conn);
    }
    assert_eq!(db.pool().size(), 4);
    // Each is retired on release (as a broken one or one past its lifetime would be)...
    for mut conn in held {
        conn.close_on_drop();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    // ...and the connections opened in their place carry the invariant too.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut conn = db.acquire().await.unwrap();
        let marked: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sqlite_temp_master WHERE name = 'opened_first'",
        )
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        assert_eq!(
            marked, 0,
            "a recycled connection, not one of the first four"
        );
        assert_eq!(pragmas(&mut conn).await, expected);
        held.push(conn);
    }
}

#[tokio::test]
async fn an_in_memory_database_is_refused_with_a_configuration_error() {
    for url in [
        "sqlite::memory:",
        "sqlite://:memory:",
        "sqlite:shared.db?mode=memory",
    ] {
        let err = Database::connect(&Config::new(url)).await.unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{url}: {err:?}");
        assert!(err.to_string().contains("in-memory"), "{err}");
    }
}

#[tokio::test]
async fn the_lifecycle_answers_with_the_postgresql_states_and_exit_codes() {
    let path = file("lifecycle");
    let db = Database::connect(&config(&path)).await.unwrap();

    let status = db.status().await;
    assert!(matches!(status, SchemaStatus::NoInfo { .. }), "{status:?}");
    assert_eq!(status.exit_code(), 2);
    assert!(!db.health().await.is_ready());

    // every migration this binary carries, in order
    let versions: Vec<i64> = shared_db_sqlite::MIGRATOR
        .iter()
        .map(|m| m.version)
        .collect();
    let created = db.sync().await.unwrap();
    assert!(
        matches!(created, SyncOutcome::Created { ref applied } if applied == &versions),
        "{created:?}"
    );
    assert_eq!(
        db.status().await,
        SchemaStatus::UpToDate {
            version: versions.last().copied()
        }
    );
    assert!(db.health().await.is_ready());
    assert_eq!(db.sync().await.unwrap(), SyncOutcome::AlreadyUpToDate);

    // A newer release migrated the file: ahead, ready, nothing applied.
    sqlx::raw_sql(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (9000, 'newer release', true, x'00', 0)",
    )
    .execute(db.pool())
    .await
    .unwrap();
    let status = db.status().await;
    assert!(
        matches!(status, SchemaStatus::Ahead { ref newer, .. } if newer[0].version == 9000),
        "{status:?}"
    );
    assert_eq!(status.exit_code(), 4);
    assert!(db.health().await.is_ready());
    assert_eq!(
        db.sync().await.unwrap(),
        SyncOutcome::Ahead { newer: vec![9000] }
    );

    // ...then a contract migration that needs it: incompatible, naming the release.
    sqlx::raw_sql(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (9001, 'contract', true, x'00', 0);
         INSERT INTO _shared_db_contracts (version, requires_version, release, reason)
         VALUES (9001, 9000, 'shared-db 0.9', 'drops a column')",
    )
    .execute(db.pool())
    .await
    .unwrap();
    let status = db.status().await;
    assert_eq!(status.exit_code(), 5, "{status:?}");
    let err = db.migrate().await.unwrap_err();
    assert!(
        err.to_string().contains("deploy shared-db 0.9 or newer"),
        "{err}"
    );

    // An edited migration: diverged.
    sqlx::raw_sql(
        "DELETE FROM _sqlx_migrations WHERE version >= 9000;
         UPDATE _sqlx_migrations SET checksum = x'00' WHERE version = 1",
    )
    .execute(db.pool())
    .await
    .unwrap();
    assert_eq!(db.status().await.exit_code(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn write_transactions_begin_immediate_and_wait_for_each_other_instead_of_failing() {
    let path = file("writers");
    let db = Database::connect(&Config {
        max_connections: 8,
        ..config(&path)
    })
    .await
    .unwrap();
    sqlx::raw_sql("CREATE TABLE counter (n INTEGER NOT NULL); INSERT INTO counter VALUES (0)")
        .execute(db.pool())
        .await
        .unwrap();

    // Eight writers read the counter, then write it back incremented, 25 times each.
    let run = |immediate: bool| {
        let db = db.clone();
        async move {
            let mut failures = Vec::new();
            let writers: Vec<_> = (0..8)
                .map(|_| {
                    let db = db.clone();
                    tokio::spawn(async move {
                        let mut errors = Vec::new();
                        for _ in 0..25 {
                            let attempt = async {
                                let mut tx = if immediate {
                                    db.begin().await?
                                } else {
                                    // what a plain `pool.begin()` does: BEGIN DEFERRED
                                    db.pool()
                                        .begin()
                                        .await
                                        .map_err(shared_db_sqlite::error::from_sqlx)?
                                };
                                let n: i64 = sqlx::query_scalar("SELECT n FROM counter")
                                    .fetch_one(&mut *tx)
                                    .await
                                    .map_err(shared_db_sqlite::error::from_sqlx)?;
                                tokio::task::yield_now().await;
                                sqlx::query("UPDATE counter SET n = ?1")
                                    .bind(n + 1)
                                    .execute(&mut *tx)
                                    .await
                                    .map_err(shared_db_sqlite::error::from_sqlx)?;
                                tx.commit()
                                    .await
                                    .map_err(shared_db_sqlite::error::from_sqlx)
                            };
                            if let Err(e) = attempt.await {
                                errors.push(e);
                            }
                        }
                        errors
                    })
                })
                .collect();
            for w in writers {
                failures.extend(w.await.unwrap());
            }
            failures
        }
    };

    let failures = run(true).await;
    assert!(failures.is_empty(), "BEGIN IMMEDIATE: {failures:?}");
    let n: i64 = sqlx::query_scalar("SELECT n FROM counter")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(n, 200, "no increment lost");

    // The control: deferred transactions that read first fail with SQLITE_BUSY (snapshot),
    // typed as a retryable lock timeout. This is what BEGIN IMMEDIATE prevents.
    let failures = run(false).await;
    assert!(!failures.is_empty(), "deferred transactions collide");
    assert!(
        failures
            .iter()
            .all(|e| matches!(e, Error::LockTimeout { .. }) && e.is_retryable()),
        "{failures:?}"
    );
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT n FROM counter")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        n,
        200 + 200 - failures.len() as i64,
        "each failed one changed nothing"
    );
}
