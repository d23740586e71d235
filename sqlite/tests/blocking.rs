//! The SQLite blocking facade from plain synchronous code: no `#[tokio::test]`, no runtime of
//! ours. The same stories as the library's tests/blocking.rs, on a file.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use shared_db::planexe::PlanState;
use shared_db::planexe::plans::NewPlan;
use shared_db::schema::{SchemaStatus, SyncOutcome};
use shared_db::{Config, Error};
use shared_db_sqlite::blocking::{AnyBlockingDatabase, BlockingDatabase};
use shared_db_sqlite::planexe::{events, plans};

/// A path under the target directory where no file exists yet.
fn missing_file(name: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sqlite-blocking");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!(
        "{name}-{}-{}.db",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
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

fn plan(prompt: &str) -> NewPlan<'_> {
    NewPlan {
        prompt,
        user_id: Some("script"),
        ..Default::default()
    }
}

#[test]
fn a_script_creates_the_file_migrates_queues_a_plan_and_reads_it_without_async() {
    let path = missing_file("script");
    let db = BlockingDatabase::connect(&config(&path)).expect("connect creates the file");
    assert!(path.exists());

    let never_migrated = db.status();
    assert!(
        matches!(never_migrated, SchemaStatus::NoInfo { .. }),
        "{never_migrated:?}"
    );
    assert!(!db.health().is_ready(), "not ready before migrating");

    assert!(matches!(db.sync(), Ok(SyncOutcome::Created { .. })));
    db.migrate().expect("migrate again: nothing to do");
    assert_eq!(db.sync().expect("sync"), SyncOutcome::AlreadyUpToDate);
    assert!(matches!(db.status(), SchemaStatus::UpToDate { .. }));
    assert!(db.health().is_ready());

    let pending = |db: &BlockingDatabase| {
        db.run(async |conn| plans::count_pending(conn).await)
            .expect("count pending")
    };
    assert_eq!(pending(&db), 0);
    let queued = db
        .run(async |conn| plans::enqueue(conn, &plan("a plan queued from a cron script")).await)
        .expect("enqueue");
    let read = db
        .run(async |conn| plans::get(conn, queued.id).await)
        .expect("get");
    assert_eq!(read.state, Some(PlanState::Pending));
    assert_eq!(read.user_id.as_deref(), Some("script"));
    assert_eq!(pending(&db), 1);
}

#[test]
fn a_blocking_transaction_commits_together_or_not_at_all() {
    let path = missing_file("transaction");
    let db = BlockingDatabase::connect(&config(&path)).expect("connect");
    db.migrate().expect("migrate");

    let ids = db
        .transaction(async |tx| {
            let a = plans::enqueue(&mut *tx, &plan("first of two")).await?;
            let b = plans::enqueue(&mut *tx, &plan("second of two")).await?;
            Ok((a.id, b.id))
        })
        .expect("committed transaction");
    for id in [ids.0, ids.1] {
        db.run(async |conn| plans::get(conn, id).await)
            .expect("both plans committed");
    }

    let mut rolled_back = None;
    let failed = db.transaction(async |tx| {
        let a = plans::enqueue(&mut *tx, &plan("never committed")).await?;
        rolled_back = Some(a.id);
        Err::<(), _>(Error::invalid_input("the script changed its mind"))
    });
    assert!(matches!(failed, Err(Error::InvalidInput(_))), "{failed:?}");
    let id = rolled_back.expect("the first statement ran");
    let gone = db.run(async |conn| plans::get(conn, id).await);
    assert!(matches!(gone, Err(Error::NotFound)), "{gone:?}");
    // Nothing of it is left: not the plan, not its TASK_PENDING event, not in the queue.
    let its_events = db
        .run(async |conn| events::list_by_plan(conn, id, 10).await)
        .expect("events");
    assert!(its_events.is_empty(), "{its_events:?}");
    assert_eq!(
        db.run(async |conn| plans::count_pending(conn).await)
            .unwrap(),
        2
    );
}

#[test]
fn debug_of_a_blocking_database_names_the_file() {
    let path = missing_file("debug");
    let db = BlockingDatabase::connect(&config(&path)).expect("connect");
    let shown = format!("{db:?}");
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(shown.contains(name), "{shown}");
}

#[test]
fn urls_the_sqlite_facade_cannot_serve_are_refused_as_configuration_errors() {
    for url in ["sqlite::memory:", "postgres://localhost/app"] {
        let refused = BlockingDatabase::connect(&Config::new(url));
        assert!(
            matches!(refused, Err(Error::Config(_))),
            "{url}: {refused:?}"
        );
    }
}

/// A synchronous service's start-up, written once: connect to what `DATABASE_URL` names,
/// migrate, and be ready.
fn start(url: &str) -> AnyBlockingDatabase {
    let db = AnyBlockingDatabase::connect(&Config::new(url)).expect("connect");
    db.migrate().expect("migrate");
    assert!(matches!(db.status(), SchemaStatus::UpToDate { .. }));
    assert!(db.health().is_ready());
    db
}

#[test]
fn a_synchronous_service_swaps_backends_by_changing_the_url() {
    let path = missing_file("swap");
    let on_sqlite = start(&format!("sqlite://{}", path.display()));
    assert!(matches!(on_sqlite, AnyBlockingDatabase::Sqlite(_)));
    assert!(path.exists());

    // The same start-up on a PostgreSQL database of the test server.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let test_db = rt
        .block_on(shared_db::testing::TestDatabase::new())
        .expect("test database");
    let on_postgres = start(test_db.url());
    assert!(matches!(on_postgres, AnyBlockingDatabase::Postgres(_)));

    // Repository calls go through the backend's own facade.
    let AnyBlockingDatabase::Sqlite(db) = &on_sqlite else {
        unreachable!()
    };
    db.run(async |conn| plans::enqueue(conn, &plan("after the swap")).await)
        .expect("enqueue on SQLite");
    let AnyBlockingDatabase::Postgres(db) = &on_postgres else {
        unreachable!()
    };
    db.run(async |pool| shared_db::planexe::plans::enqueue(pool, &plan("after the swap")).await)
        .expect("enqueue on PostgreSQL");

    assert!(matches!(
        AnyBlockingDatabase::connect(&Config::default()),
        Err(Error::Config(_))
    ));
}
