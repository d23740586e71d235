//! Migrations on a live database: no statement timeout, bounded lock waits retried with
//! backoff, index builds that wait for old snapshots instead of failing, and a failed
//! concurrent index build cleaned up on the next run.

use std::time::Duration;

use shared_db::schema::{self, MigrateOptions, MigrationLocks, SyncOutcome};
use shared_db::testing::TestDatabase;
use shared_db::{Config, Error};
use sqlx::{Connection, PgConnection};

use crate::migrator;

const TABLE: (i64, &str) = (1, "CREATE TABLE busy (id int PRIMARY KEY, a int)");
const ALTER: (i64, &str) = (2, "ALTER TABLE busy ADD COLUMN b int");

async fn connect(test_db: &TestDatabase) -> PgConnection {
    PgConnection::connect_with(test_db.connect_options())
        .await
        .expect("connect")
}

/// A session in a transaction that holds a lock on `busy` until it commits.
async fn hold_a_lock_on_busy(test_db: &TestDatabase) -> PgConnection {
    let mut holder = connect(test_db).await;
    sqlx::raw_sql("BEGIN; LOCK TABLE busy IN ACCESS SHARE MODE")
        .execute(&mut holder)
        .await
        .unwrap();
    holder
}

const QUICK: MigrationLocks = MigrationLocks {
    timeout: Duration::from_millis(100),
    attempts: 50,
};

#[tokio::test]
async fn a_migration_behind_a_held_lock_times_out_and_gives_up_after_its_attempts() {
    let test_db = TestDatabase::empty().await.unwrap();
    let mut conn = connect(&test_db).await;
    schema::sync(&migrator(&[TABLE]), &mut conn).await.unwrap();
    let _holder = hold_a_lock_on_busy(&test_db).await;

    let once = MigrationLocks {
        attempts: 2,
        ..QUICK
    };
    let err = schema::sync_with(&migrator(&[TABLE, ALTER]), &mut conn, once)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::LockTimeout { .. }), "{err:?}");
    assert!(err.to_string().contains("after 2 attempts"), "{err}");
    // Nothing of the migration was applied or recorded.
    let recorded: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations")
        .fetch_all(test_db.pool())
        .await
        .unwrap();
    assert_eq!(recorded, vec![1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_behind_a_held_lock_backs_off_and_applies_once_the_lock_is_released() {
    let test_db = TestDatabase::empty().await.unwrap();
    let mut conn = connect(&test_db).await;
    schema::sync(&migrator(&[TABLE]), &mut conn).await.unwrap();
    let mut holder = hold_a_lock_on_busy(&test_db).await;

    let migrating = tokio::spawn(async move {
        let outcome = schema::sync_with(&migrator(&[TABLE, ALTER]), &mut conn, QUICK).await;
        (outcome, conn)
    });
    // Meanwhile other sessions keep reading the table: the migration is not queued in front
    // of them for longer than one lock timeout at a time.
    for _ in 0..5 {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM busy")
            .fetch_one(test_db.pool())
            .await
            .unwrap();
        assert_eq!(n, 0);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(!migrating.is_finished(), "still waiting for the lock");
    sqlx::raw_sql("COMMIT").execute(&mut holder).await.unwrap();

    let (outcome, mut conn) = migrating.await.unwrap();
    assert_eq!(outcome.unwrap(), SyncOutcome::Upgraded { applied: vec![2] });
    sqlx::query("INSERT INTO busy (id, a, b) VALUES (1, 1, 1)")
        .execute(&mut conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_migration_runs_without_the_pools_statement_timeout() {
    let test_db = TestDatabase::empty().await.unwrap();
    let mut config = Config::new(test_db.url());
    config.statement_timeout = Some(Duration::from_millis(100));
    let options = config.connect_options_for(test_db.url()).unwrap();
    let mut conn = PgConnection::connect_with(&options).await.unwrap();

    let slow = (
        1,
        "SELECT pg_sleep(0.5); CREATE TABLE after_a_long_step (id int)",
    );
    schema::sync(&migrator(&[slow]), &mut conn)
        .await
        .expect("no statement timeout while migrating");
    let setting: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        setting, "100ms",
        "the session's own timeout is back afterwards"
    );
}

#[tokio::test]
async fn a_failed_concurrent_index_build_is_dropped_and_rebuilt_on_the_next_run() {
    let test_db = TestDatabase::empty().await.unwrap();
    let mut conn = connect(&test_db).await;
    schema::sync(&migrator(&[TABLE]), &mut conn).await.unwrap();
    sqlx::raw_sql("INSERT INTO busy VALUES (1, 7), (2, 7)")
        .execute(&mut conn)
        .await
        .unwrap();
    let index = (
        2,
        "-- no-transaction\nCREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS ux_busy_a ON busy (a)",
    );
    let m = migrator(&[TABLE, index]);

    let err = schema::sync(&m, &mut conn).await.unwrap_err();
    assert!(matches!(err, Error::Migrate(_)), "{err:?}");
    let valid = async |conn: &mut PgConnection| -> Option<bool> {
        sqlx::query_scalar(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('ux_busy_a')",
        )
        .fetch_optional(conn)
        .await
        .unwrap()
    };
    assert_eq!(
        valid(&mut conn).await,
        Some(false),
        "the failed build left it"
    );

    sqlx::raw_sql("UPDATE busy SET a = 8 WHERE id = 2")
        .execute(&mut conn)
        .await
        .unwrap();
    let outcome = schema::sync(&m, &mut conn).await.unwrap();
    assert_eq!(outcome, SyncOutcome::Upgraded { applied: vec![2] });
    assert_eq!(valid(&mut conn).await, Some(true), "rebuilt, not skipped");
}

/// A session in a `REPEATABLE READ` transaction that has taken its snapshot (a `pg_dump`, a
/// report, a Python session idle in a transaction during an LLM call), named `application`.
async fn hold_a_snapshot(test_db: &TestDatabase, application: &str) -> PgConnection {
    let options = test_db
        .connect_options()
        .clone()
        .application_name(application);
    let mut holder = PgConnection::connect_with(&options).await.unwrap();
    sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM busy")
        .execute(&mut holder)
        .await
        .unwrap();
    holder
}

/// What the migration logged, captured for the story's assertions.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Lock bounds of 200 ms, reports every 300 ms, from a second session to `test_db`.
fn impatient(test_db: &TestDatabase) -> MigrateOptions {
    MigrateOptions {
        locks: MigrationLocks {
            timeout: Duration::from_millis(200),
            attempts: 1,
        },
        observer: Some(test_db.connect_options().clone()),
        report_waits_every: Some(Duration::from_millis(300)),
        ..MigrateOptions::default()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn an_index_build_waits_for_an_old_snapshot_past_the_lock_bound_and_says_who_it_waits_for() {
    let test_db = TestDatabase::empty().await.unwrap();
    let mut conn = connect(&test_db).await;
    schema::sync(&migrator(&[TABLE]), &mut conn).await.unwrap();
    let index = (
        2,
        "-- no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS ix_busy_a ON busy (a)",
    );

    // A nightly report holds its snapshot for 2 s, ten times the migration's lock bound.
    let mut report = hold_a_snapshot(&test_db, "nightly-report").await;
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        sqlx::raw_sql("COMMIT").execute(&mut report).await.unwrap();
    });

    let log = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer({
            let log = log.clone();
            move || log.clone()
        })
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let started = std::time::Instant::now();
    let outcome =
        schema::sync_with_options(&migrator(&[TABLE, index]), &mut conn, &impatient(&test_db))
            .await
            .expect("the build waits for the snapshot instead of timing out");
    let waited = started.elapsed();
    release.await.unwrap();

    assert_eq!(outcome, SyncOutcome::Upgraded { applied: vec![2] });
    assert!(
        waited >= Duration::from_millis(1500),
        "it waited for the report: {waited:?}"
    );
    let valid: bool = sqlx::query_scalar(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('ix_busy_a')",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(valid, "one valid index, built once");
    let text = log.text();
    assert!(
        text.contains("index build waits for an older transaction")
            && text.contains("blocker_application=nightly-report"),
        "the wait was reported with the blocking session: {text}"
    );

    // Transactional DDL keeps its bound: behind a held lock it still gives up.
    let _holder = hold_a_lock_on_busy(&test_db).await;
    let err = schema::sync_with_options(
        &migrator(&[TABLE, index, (3, "ALTER TABLE busy ADD COLUMN c int")]),
        &mut conn,
        &impatient(&test_db),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::LockTimeout { .. }), "{err:?}");
}

#[tokio::test]
async fn the_0003_placeholder_waits_for_an_old_snapshot_too() {
    // A database at planexe 0002 (an adopted Python database, say), with a long report running.
    let through = |last: i64| {
        sqlx::migrate::Migrator::with_migrations(
            shared_db::MIGRATOR
                .iter()
                .filter(|m| m.version <= last)
                .cloned()
                .collect(),
        )
    };
    let test_db = TestDatabase::with_migrator(&through(2)).await.unwrap();
    let options = test_db
        .connect_options()
        .clone()
        .application_name("long-report");
    let mut report = PgConnection::connect_with(&options).await.unwrap();
    sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM events")
        .execute(&mut report)
        .await
        .unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        sqlx::raw_sql("COMMIT").execute(&mut report).await.unwrap();
    });

    let mut conn = connect(&test_db).await;
    let outcome = schema::sync_with_options(&through(3), &mut conn, &impatient(&test_db))
        .await
        .expect("the placeholder build waits instead of timing out");
    release.await.unwrap();
    assert_eq!(outcome, SyncOutcome::Upgraded { applied: vec![3] });
}
