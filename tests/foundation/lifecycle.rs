//! migrate / status / sync / health, and the CLI's exit codes.

use shared_db::schema::{self, Compatibility, SchemaStatus, SyncOutcome};
use shared_db::testing::TestDatabase;
use sqlx::{Connection, PgConnection};

use crate::migrator;

const V1: (i64, &str) = (1, "CREATE TABLE step_log (step int NOT NULL)");
// Slow on purpose, so concurrent migrators overlap while it runs.
const V2: (i64, &str) = (2, "SELECT pg_sleep(0.3); INSERT INTO step_log VALUES (2)");
const V3: (i64, &str) = (3, "INSERT INTO step_log VALUES (3)");

async fn connect(test_db: &TestDatabase) -> PgConnection {
    PgConnection::connect_with(test_db.connect_options())
        .await
        .expect("connect")
}

#[tokio::test]
async fn a_never_migrated_database_has_no_info_and_sync_creates_it() {
    let test_db = TestDatabase::empty().await.unwrap();
    let m = migrator(&[V1, V2, V3]);

    let status = schema::status(&m, test_db.pool()).await;
    assert!(matches!(status, SchemaStatus::NoInfo { .. }), "{status:?}");
    assert_eq!(status.exit_code(), 2);

    let mut conn = connect(&test_db).await;
    let outcome = schema::sync(&m, &mut conn).await.unwrap();
    assert_eq!(
        outcome,
        SyncOutcome::Created {
            applied: vec![1, 2, 3]
        }
    );

    let status = schema::status(&m, test_db.pool()).await;
    assert_eq!(status, SchemaStatus::UpToDate { version: Some(3) });
    assert_eq!(status.exit_code(), 0);

    let again = schema::sync(&m, &mut conn).await.unwrap();
    assert_eq!(again, SyncOutcome::AlreadyUpToDate);
}

#[tokio::test]
async fn an_unapplied_migration_is_an_available_upgrade_that_sync_applies() {
    let test_db = TestDatabase::with_migrator(&migrator(&[V1, V2]))
        .await
        .unwrap();
    let newer = migrator(&[V1, V2, V3]);

    let status = schema::status(&newer, test_db.pool()).await;
    match &status {
        SchemaStatus::UpgradeAvailable { pending } => {
            assert_eq!(
                pending.iter().map(|m| m.version).collect::<Vec<_>>(),
                vec![3]
            );
        }
        other => panic!("expected an upgrade, got {other:?}"),
    }
    assert_eq!(status.exit_code(), 1);

    let mut conn = connect(&test_db).await;
    let outcome = schema::sync(&newer, &mut conn).await.unwrap();
    assert_eq!(outcome, SyncOutcome::Upgraded { applied: vec![3] });
    let steps: Vec<i32> = sqlx::query_scalar("SELECT step FROM step_log ORDER BY step")
        .fetch_all(test_db.pool())
        .await
        .unwrap();
    assert_eq!(steps, vec![2, 3]);
}

#[tokio::test]
async fn a_tampered_checksum_is_divergence_and_migrate_refuses() {
    let m = migrator(&[V1, V2]);
    let test_db = TestDatabase::with_migrator(&m).await.unwrap();
    sqlx::query("UPDATE _sqlx_migrations SET checksum = '\\x00' WHERE version = 2")
        .execute(test_db.pool())
        .await
        .unwrap();

    let status = schema::status(&m, test_db.pool()).await;
    assert_eq!(
        status,
        SchemaStatus::Diverged {
            changed: vec![2],
            unknown: vec![],
            failed: vec![]
        }
    );
    assert_eq!(status.exit_code(), 3);

    let mut conn = connect(&test_db).await;
    let err = schema::sync(&m, &mut conn).await.unwrap_err();
    assert!(matches!(err, shared_db::Error::Migrate(_)), "{err:?}");
}

#[tokio::test]
async fn a_newer_version_is_ahead_ready_and_migrate_applies_nothing() {
    // A newer binary migrated the database to version 3; this one knows only 1 and 2.
    let test_db = TestDatabase::with_migrator(&migrator(&[V1, V2, V3]))
        .await
        .unwrap();
    let older = migrator(&[V1, V2]);

    let status = schema::status(&older, test_db.pool()).await;
    match &status {
        SchemaStatus::Ahead { version, newer } => {
            assert_eq!(*version, Some(2));
            assert_eq!(newer.len(), 1);
            assert_eq!(newer[0].version, 3);
            assert_eq!(
                newer[0].description, "step 3",
                "as the newer binary recorded it"
            );
        }
        other => panic!("expected ahead, got {other:?}"),
    }
    assert_eq!(status.exit_code(), 4);
    assert!(schema::health(&older, test_db.pool()).await.is_ready());

    let mut conn = connect(&test_db).await;
    let outcome = schema::sync(&older, &mut conn).await.unwrap();
    assert_eq!(outcome, SyncOutcome::Ahead { newer: vec![3] });
}

#[tokio::test]
async fn an_unknown_version_between_known_ones_is_divergence() {
    // Version 2 is applied, but this binary jumps from 1 to 3: a removed file or two branches.
    let test_db = TestDatabase::with_migrator(&migrator(&[V1, V2, V3]))
        .await
        .unwrap();
    let forked = migrator(&[V1, V3]);

    let status = schema::status(&forked, test_db.pool()).await;
    assert_eq!(
        status,
        SchemaStatus::Diverged {
            changed: vec![],
            unknown: vec![2],
            failed: vec![]
        }
    );
    assert!(!schema::health(&forked, test_db.pool()).await.is_ready());
}

#[tokio::test]
async fn a_newer_version_on_top_of_a_missing_one_of_ours_is_divergence() {
    // The database has 1 and 3, this binary 1, 2 (never applied there) — not a window, a fork.
    let test_db = TestDatabase::with_migrator(&migrator(&[V1, V3]))
        .await
        .unwrap();
    let status = schema::status(&migrator(&[V1, V2]), test_db.pool()).await;
    assert_eq!(
        status,
        SchemaStatus::Diverged {
            changed: vec![],
            unknown: vec![3],
            failed: vec![]
        }
    );
}

#[tokio::test]
async fn strict_mode_treats_a_newer_version_as_divergence() {
    let test_db = TestDatabase::with_migrator(&migrator(&[V1, V2, V3]))
        .await
        .unwrap();
    let older = migrator(&[V1, V2]);

    let status = schema::status_with(&older, test_db.pool(), Compatibility::Strict).await;
    assert_eq!(
        status,
        SchemaStatus::Diverged {
            changed: vec![],
            unknown: vec![3],
            failed: vec![]
        }
    );
    let health = schema::health_with(&older, test_db.pool(), Compatibility::Strict).await;
    assert!(!health.is_ready());

    let mut conn = connect(&test_db).await;
    let strict = schema::MigrateOptions {
        compatibility: Compatibility::Strict,
        ..Default::default()
    };
    let err = schema::sync_with_options(&older, &mut conn, &strict)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            shared_db::Error::Migrate(sqlx::migrate::MigrateError::VersionMissing(3))
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_unreachable_server_has_no_info_and_is_not_ready() {
    // Bind a port, then close it: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_secs(2))
        .connect_lazy_with(
            sqlx::postgres::PgConnectOptions::new_without_pgpass()
                .host("127.0.0.1")
                .port(port)
                .username("nobody"),
        );
    let m = migrator(&[V1]);

    let status = schema::status(&m, &pool).await;
    assert!(
        matches!(status, SchemaStatus::NoInfo { ref reason } if reason.contains("unreachable")),
        "{status:?}"
    );
    let health = schema::health(&m, &pool).await;
    assert!(!health.connected);
    assert!(!health.is_ready());
}

#[tokio::test]
async fn health_is_ready_on_an_up_to_date_database() {
    let m = migrator(&[V1]);
    let test_db = TestDatabase::with_migrator(&m).await.unwrap();
    let health = schema::health(&m, test_db.pool()).await;
    assert!(health.connected);
    assert!(health.is_ready(), "{health:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_replicas_migrating_at_once_apply_each_migration_exactly_once() {
    let test_db = TestDatabase::empty().await.unwrap();
    let m = std::sync::Arc::new(migrator(&[V1, V2, V3]));

    let replicas: Vec<_> = (0..10)
        .map(|_| {
            let m = m.clone();
            let options = test_db.connect_options().clone();
            tokio::spawn(async move {
                let mut conn = PgConnection::connect_with(&options).await.unwrap();
                schema::sync(&m, &mut conn).await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for r in replicas {
        outcomes.push(r.await.unwrap().expect("every replica's migrate succeeds"));
    }

    let created = outcomes
        .iter()
        .filter(|o| matches!(o, SyncOutcome::Created { .. }))
        .count();
    let idle = outcomes
        .iter()
        .filter(|o| **o == SyncOutcome::AlreadyUpToDate)
        .count();
    assert_eq!(
        (created, idle),
        (1, 9),
        "one replica applies, the others find it done: {outcomes:?}"
    );
    let steps: Vec<i32> = sqlx::query_scalar("SELECT step FROM step_log ORDER BY step")
        .fetch_all(test_db.pool())
        .await
        .unwrap();
    assert_eq!(steps, vec![2, 3], "each migration ran exactly once");
}
