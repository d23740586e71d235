//! The schema lifecycle a service goes through, the same on both backends: `migrate`, `status`,
//! `sync` and `health` give the same [`SchemaStatus`] states, exit codes and [`SyncOutcome`]s
//! whether the database is new, behind this binary, ahead of it (a newer release migrated it),
//! migrated by several processes at once, or out of reach.
//!
//! Each backend is driven through its own `Database` (what a service holds), with its own
//! migrations: a story speaks of "this binary's migrations" ([`LifecycleBackend::known`]), not of
//! version numbers, since the two backends number theirs apart.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use shared_db::Result;
use shared_db::schema::{Compatibility, Health, MigrationInfo, SchemaStatus, SyncOutcome};
use shared_db::testing::TestDatabase;
use shared_db_sqlite::blocking::AnyBlockingDatabase;
use sqlx::migrate::Migrator;

use crate::backend::{Backend, Postgres, Sqlite, fresh_file};

/// The four lifecycle calls, as both backends' `Database` answer them (inherent methods of the
/// same names on [`shared_db::Database`] and [`shared_db_sqlite::Database`]).
pub trait Lifecycle: Clone + Send + Sync + 'static {
    fn status(&self) -> impl Future<Output = SchemaStatus> + Send;
    fn health(&self) -> impl Future<Output = Health> + Send;
    fn sync(&self) -> impl Future<Output = Result<SyncOutcome>> + Send;
    fn migrate(&self) -> impl Future<Output = Result<()>> + Send;
}

impl Lifecycle for shared_db::Database {
    async fn status(&self) -> SchemaStatus {
        shared_db::Database::status(self).await
    }
    async fn health(&self) -> Health {
        shared_db::Database::health(self).await
    }
    async fn sync(&self) -> Result<SyncOutcome> {
        shared_db::Database::sync(self).await
    }
    async fn migrate(&self) -> Result<()> {
        shared_db::Database::migrate(self).await
    }
}

impl Lifecycle for shared_db_sqlite::Database {
    async fn status(&self) -> SchemaStatus {
        shared_db_sqlite::Database::status(self).await
    }
    async fn health(&self) -> Health {
        shared_db_sqlite::Database::health(self).await
    }
    async fn sync(&self) -> Result<SyncOutcome> {
        shared_db_sqlite::Database::sync(self).await
    }
    async fn migrate(&self) -> Result<()> {
        shared_db_sqlite::Database::migrate(self).await
    }
}

/// What the lifecycle stories need of a backend beyond [`Backend`]: other databases in the
/// states a deployment meets, and a look at the migration ledger.
pub trait LifecycleBackend: Backend {
    type Db: Lifecycle;
    /// This story's database, as a service holds it.
    fn database(&self) -> Self::Db;
    /// The versions of this binary's migrations (the backend's own), oldest first.
    fn known(&self) -> Vec<i64>;
    /// Another database, one no migration ever ran on (SQLite: a file that did not exist).
    fn never_migrated(&self) -> impl Future<Output = Self> + Send;
    /// Another database, migrated by an older release: every migration of this binary but the
    /// newest `missing`.
    fn migrated_by_an_older_release(&self, missing: usize) -> impl Future<Output = Self> + Send;
    /// Records `version` as applied in the ledger, as a newer release does after running a
    /// migration this binary does not have.
    fn record_newer_migration(
        &self,
        version: i64,
        description: &str,
    ) -> impl Future<Output = ()> + Send;
    /// The migration ledger: (version, success) of every row, in version order.
    fn migration_ledger(&self) -> impl Future<Output = Vec<(i64, bool)>> + Send;
    /// The `DATABASE_URL` of this story's database, for another process.
    fn url(&self) -> String;
    /// [`Lifecycle::health`] of a handle on a migrated database, first while it is reachable,
    /// then after it went out of reach with the handle still open: on PostgreSQL the server
    /// stops answering (the TCP proxy in front of it goes away), on SQLite the file's
    /// directory disappears (an unmounted volume).
    fn health_before_and_after_losing_it(&self) -> impl Future<Output = (Health, Health)> + Send;
}

fn versions_of(migrator: &Migrator) -> Vec<i64> {
    migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| m.version)
        .collect()
}

/// `migrator` without its newest `missing` migrations: what an older release shipped.
fn older_release(migrator: &Migrator, missing: usize) -> Migrator {
    let ups: Vec<_> = migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .cloned()
        .collect();
    let keep = ups.len().checked_sub(missing).expect("enough migrations");
    Migrator::with_migrations(ups.into_iter().take(keep).collect())
}

conformance!(
    a_new_database_has_no_information_until_sync_creates_it_and_migrating_again_applies_nothing,
    a_database_a_newer_release_migrated_is_ahead_and_this_binary_still_serves_on_it,
    a_database_an_older_release_migrated_is_behind_until_sync_brings_it_up_to_date,
    concurrent_migrators_apply_each_migration_once,
    migrator_processes_started_together_apply_each_migration_once,
    a_database_out_of_reach_is_not_ready_and_says_there_is_no_information,
);

async fn a_new_database_has_no_information_until_sync_creates_it_and_migrating_again_applies_nothing<
    B: LifecycleBackend,
>(
    b: B,
) {
    let new = b.never_migrated().await;
    let db = new.database();
    let status = db.status().await;
    assert!(matches!(status, SchemaStatus::NoInfo { .. }), "{status:?}");
    assert_eq!(status.exit_code(), 2);
    let health = db.health().await;
    assert!(health.connected, "reachable, just never migrated");
    assert!(!health.is_ready(), "{health:?}");
    assert_eq!(health.schema.exit_code(), 2);

    let known = b.known();
    assert_eq!(
        db.sync().await.unwrap(),
        SyncOutcome::Created {
            applied: known.clone()
        }
    );
    let ledger = new.migration_ledger().await;

    // Every start of every replica migrates: the second time there is nothing to do.
    assert_eq!(db.sync().await.unwrap(), SyncOutcome::AlreadyUpToDate);
    db.migrate().await.unwrap();
    assert_eq!(
        new.migration_ledger().await,
        ledger,
        "nothing applied again"
    );
    let status = db.status().await;
    assert_eq!(
        status,
        SchemaStatus::UpToDate {
            version: known.last().copied()
        }
    );
    assert_eq!(status.exit_code(), 0);
    assert!(db.health().await.is_ready());
}

async fn a_database_a_newer_release_migrated_is_ahead_and_this_binary_still_serves_on_it<
    B: LifecycleBackend,
>(
    b: B,
) {
    let db = b.database();
    let newest = *b.known().last().unwrap();
    let theirs = newest + 1;
    b.record_newer_migration(theirs, "added by a newer release")
        .await;

    let status = db.status().await;
    assert_eq!(
        status,
        SchemaStatus::Ahead {
            version: Some(newest),
            newer: vec![MigrationInfo {
                version: theirs,
                description: "added by a newer release".into(),
            }],
        }
    );
    assert_eq!(status.exit_code(), 4);
    assert!(
        status.is_ready(),
        "an expand step keeps what this release uses"
    );
    let health = db.health().await;
    assert!(health.connected && health.is_ready(), "{health:?}");
    assert_eq!(health.schema, status, "the probe reports the same state");

    // A restart (or a rollback to this release) migrates at start-up: nothing to apply.
    let ledger = b.migration_ledger().await;
    assert_eq!(
        db.sync().await.unwrap(),
        SyncOutcome::Ahead {
            newer: vec![theirs]
        }
    );
    db.migrate().await.unwrap();
    assert_eq!(b.migration_ledger().await, ledger);

    // And it keeps serving.
    b.enqueue("queued while ahead", None).await.unwrap();
    assert_eq!(b.count_pending().await.unwrap(), 1);
}

async fn a_database_an_older_release_migrated_is_behind_until_sync_brings_it_up_to_date<
    B: LifecycleBackend,
>(
    b: B,
) {
    let known = b.known();
    let newest = *known.last().unwrap();
    let older = b.migrated_by_an_older_release(1).await;
    let db = older.database();

    let status = db.status().await;
    match &status {
        SchemaStatus::UpgradeAvailable { pending } => {
            let pending: Vec<_> = pending.iter().map(|m| m.version).collect();
            assert_eq!(pending, [newest]);
        }
        other => panic!("expected an upgrade, got {other:?}"),
    }
    assert_eq!(status.exit_code(), 1);
    let health = db.health().await;
    assert!(health.connected, "{health:?}");
    assert!(
        !health.is_ready(),
        "a binary does not serve on an older schema"
    );
    assert_eq!(health.schema, status);

    assert_eq!(
        db.sync().await.unwrap(),
        SyncOutcome::Upgraded {
            applied: vec![newest]
        }
    );
    let status = db.status().await;
    assert_eq!(
        status,
        SchemaStatus::UpToDate {
            version: Some(newest)
        }
    );
    assert_eq!(status.exit_code(), 0);
    assert!(db.health().await.is_ready());
    let ledger = older.migration_ledger().await;
    assert_eq!(ledger, known.iter().map(|&v| (v, true)).collect::<Vec<_>>());
    older
        .enqueue("queued after the upgrade", None)
        .await
        .unwrap();
}

async fn concurrent_migrators_apply_each_migration_once<B: LifecycleBackend>(b: B) {
    // Six replicas start at once on a new database, each migrating at start-up. Each sync runs
    // on a session of its own (PostgreSQL: a dedicated connection; SQLite: a pooled connection
    // and its own open of the lock file).
    let new = b.never_migrated().await;
    let db = new.database();
    let replicas: Vec<_> = (0..6)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move { db.sync().await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for r in replicas {
        outcomes.push(r.await.unwrap().expect("no migrator fails"));
    }
    let known = b.known();
    let created: Vec<_> = outcomes
        .iter()
        .filter(|o| matches!(o, SyncOutcome::Created { .. }))
        .collect();
    assert_eq!(
        created,
        [&SyncOutcome::Created {
            applied: known.clone()
        }],
        "one replica applied everything: {outcomes:?}"
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == SyncOutcome::AlreadyUpToDate)
            .count(),
        5,
        "the others found nothing left: {outcomes:?}"
    );
    assert_eq!(
        new.migration_ledger().await,
        known.iter().map(|&v| (v, true)).collect::<Vec<_>>(),
        "each migration recorded once, each successful"
    );
    assert!(matches!(db.status().await, SchemaStatus::UpToDate { .. }));
}

/// The environment of [`migrator_process`]: the database's URL, and a file whose appearance
/// is the signal to start.
const MIGRATE_URL: &str = "SHARED_DB_CONFORMANCE_MIGRATE_URL";
const MIGRATE_GO: &str = "SHARED_DB_CONFORMANCE_MIGRATE_GO";

async fn migrator_processes_started_together_apply_each_migration_once<B: LifecycleBackend>(b: B) {
    // Four replicas as OS processes (this test binary, running `migrator_process`), started
    // at one signal, each syncing at start-up through the URL alone.
    let new = b.never_migrated().await;
    static N: AtomicU64 = AtomicU64::new(0);
    let go = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "migrate-go-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&go);
    let children: Vec<_> = (0..4)
        .map(|_| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--ignored",
                    "--exact",
                    "lifecycle::migrator_process",
                    "--nocapture",
                ])
                .env(MIGRATE_URL, new.url())
                .env(MIGRATE_GO, &go)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    std::fs::write(&go, b"go").unwrap();
    let outputs = tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let _ = std::fs::remove_file(&go);

    let mut outcomes = Vec::new();
    for (n, out) in outputs.iter().enumerate() {
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "migrator process {n} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let outcome = stdout
            .lines()
            .find_map(|l| l.strip_prefix("OUTCOME "))
            .unwrap_or_else(|| panic!("process {n} said no outcome:\n{stdout}"));
        outcomes.push(outcome.to_owned());
    }
    let known = b.known();
    let created = serde_json::to_string(&SyncOutcome::Created {
        applied: known.clone(),
    })
    .unwrap();
    let nothing = serde_json::to_string(&SyncOutcome::AlreadyUpToDate).unwrap();
    assert_eq!(
        outcomes.iter().filter(|o| **o == created).count(),
        1,
        "one process applied everything: {outcomes:?}"
    );
    assert_eq!(
        outcomes.iter().filter(|o| **o == nothing).count(),
        3,
        "the others found nothing left: {outcomes:?}"
    );
    assert_eq!(
        new.migration_ledger().await,
        known.iter().map(|&v| (v, true)).collect::<Vec<_>>()
    );
}

/// One replica of the story above (run by it, never on its own): waits for the signal, syncs
/// the database `DATABASE_URL`-style through [`AnyBlockingDatabase`] (the URL picks the
/// backend), and prints the outcome.
#[test]
#[ignore = "a child process of migrator_processes_started_together_apply_each_migration_once"]
fn migrator_process() {
    let url = std::env::var(MIGRATE_URL).expect("run by the story, which names the database");
    let go = PathBuf::from(std::env::var_os(MIGRATE_GO).expect("and the start signal"));
    let db = AnyBlockingDatabase::connect(&shared_db::Config::new(url)).expect("connect");
    while !go.exists() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let outcome = db.sync().expect("sync");
    println!("OUTCOME {}", serde_json::to_string(&outcome).unwrap());
}

async fn a_database_out_of_reach_is_not_ready_and_says_there_is_no_information<
    B: LifecycleBackend,
>(
    b: B,
) {
    let (before, after) = b.health_before_and_after_losing_it().await;
    assert!(before.connected && before.is_ready(), "{before:?}");
    assert!(!after.connected, "{after:?}");
    assert!(!after.is_ready());
    assert!(
        matches!(after.schema, SchemaStatus::NoInfo { .. }),
        "{after:?}"
    );
    assert_eq!(after.schema.exit_code(), 2);
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

impl LifecycleBackend for Postgres {
    type Db = shared_db::Database;

    fn database(&self) -> shared_db::Database {
        self.0.db().clone()
    }
    fn known(&self) -> Vec<i64> {
        versions_of(&shared_db::MIGRATOR)
    }
    async fn never_migrated(&self) -> Self {
        Postgres(Arc::new(TestDatabase::empty().await.unwrap()))
    }
    async fn migrated_by_an_older_release(&self, missing: usize) -> Self {
        let older = older_release(&shared_db::MIGRATOR, missing);
        Postgres(Arc::new(TestDatabase::with_migrator(&older).await.unwrap()))
    }
    async fn record_newer_migration(&self, version: i64, description: &str) {
        // Raw test-only SQL: the ledger row a newer binary's sqlx writes (sha-384 checksum).
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
             VALUES ($1, $2, true, $3, 1)",
        )
        .bind(version)
        .bind(description)
        .bind(vec![7u8; 48])
        .execute(self.0.pool())
        .await
        .unwrap();
    }
    async fn migration_ledger(&self) -> Vec<(i64, bool)> {
        sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(self.0.pool())
            .await
            .unwrap()
    }
    fn url(&self) -> String {
        self.0.url().to_owned()
    }
    async fn health_before_and_after_losing_it(&self) -> (Health, Health) {
        use shared_db::testing::proxy::FaultProxy;
        let proxy = FaultProxy::in_front_of(self.0.connect_options())
            .await
            .unwrap();
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(2))
            .connect_with(proxy.connect_options(self.0.connect_options()))
            .await
            .unwrap();
        let db = shared_db::Database::from_pool(pool);
        let before = db.health().await;
        drop(proxy); // stops listening and closes every proxied connection
        // The proxy's tasks end on their next poll; until then a probe may still get through.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let after = loop {
            let health = db.health().await;
            if !health.connected || std::time::Instant::now() > deadline {
                break health;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        (before, after)
    }
}

// ---------------------------------------------------------------------------------------------
// SQLite

impl LifecycleBackend for Sqlite {
    type Db = shared_db_sqlite::Database;

    fn database(&self) -> shared_db_sqlite::Database {
        self.db.clone()
    }
    fn known(&self) -> Vec<i64> {
        versions_of(&shared_db_sqlite::MIGRATOR)
    }
    async fn never_migrated(&self) -> Self {
        let path = fresh_file("never-migrated");
        assert!(!path.exists());
        Sqlite::open(&path, 8).await
    }
    async fn migrated_by_an_older_release(&self, missing: usize) -> Self {
        let older = older_release(&shared_db_sqlite::MIGRATOR, missing);
        let s = Sqlite::open(&fresh_file("older-release"), 8).await;
        let mut conn = s.db.acquire().await.unwrap();
        shared_db_sqlite::schema::sync(&older, &mut conn, s.db.file(), Compatibility::Window)
            .await
            .unwrap();
        drop(conn);
        s
    }
    async fn record_newer_migration(&self, version: i64, description: &str) {
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
             VALUES (?1, ?2, 1, ?3, 1)",
        )
        .bind(version)
        .bind(description)
        .bind(vec![7u8; 48])
        .execute(self.db.pool())
        .await
        .unwrap();
    }
    async fn migration_ledger(&self) -> Vec<(i64, bool)> {
        sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(self.db.pool())
            .await
            .unwrap()
    }
    fn url(&self) -> String {
        format!("sqlite://{}", self.db.file().display())
    }
    async fn health_before_and_after_losing_it(&self) -> (Health, Health) {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("sqlite-conformance")
            .join(format!(
                "volume-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // One connection at most, none kept open: a connection lives 50 ms, so after a pause
        // the pool holds none and the next probe has to open the file again.
        let config = shared_db::Config {
            max_connections: 1,
            min_connections: 0,
            max_lifetime: Some(Duration::from_millis(50)),
            acquire_timeout: Duration::from_secs(2),
            ..shared_db::Config::new(format!("sqlite://{}", dir.join("app.db").display()))
        };
        let db = shared_db_sqlite::Database::connect(&config).await.unwrap();
        db.migrate().await.unwrap();
        let before = db.health().await;
        // The pool's reaper closes the connection once it is past its lifetime.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while db.pool().size() > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(db.pool().size(), 0, "the pool let its connection go");
        std::fs::remove_dir_all(&dir).unwrap();
        let after = db.health().await;
        (before, after)
    }
}
