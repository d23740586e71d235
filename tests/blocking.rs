//! The blocking facade from plain synchronous code: no `#[tokio::test]`, no runtime of ours
//! while the facade is in use.

use shared_db::blocking::BlockingDatabase;
use shared_db::planexe::PlanState;
use shared_db::planexe::plans::{self, NewPlan};
use shared_db::schema::SchemaStatus;
use shared_db::testing::TestDatabase;
use shared_db::{Config, Error};

/// A freshly migrated database, created on a throwaway runtime (the test harness is async).
/// The runtime is kept so the harness can drop the database when the test ends.
fn test_database() -> (tokio::runtime::Runtime, TestDatabase) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let db = rt.block_on(TestDatabase::new()).expect("test database");
    (rt, db)
}

#[test]
fn a_script_migrates_queues_a_plan_and_reads_its_status_without_async() {
    let (_rt, test_db) = test_database();
    let db = BlockingDatabase::connect(&Config::new(test_db.url())).expect("connect");

    db.migrate().expect("migrate (already up to date)");
    assert!(matches!(db.status(), SchemaStatus::UpToDate { .. }));
    assert!(db.health().is_ready());

    let pending = |db: &BlockingDatabase| {
        db.run(async |pool| plans::count_pending(pool).await)
            .expect("count pending")
    };
    assert_eq!(pending(&db), 0);
    let queued = db
        .run(async |pool| {
            plans::enqueue(
                pool,
                &NewPlan {
                    prompt: "a plan queued from a cron script",
                    user_id: Some("script"),
                    ..Default::default()
                },
            )
            .await
        })
        .expect("enqueue");
    let status = db
        .run(async |pool| plans::status(pool, queued.id).await)
        .expect("status");
    assert_eq!(status.state, Some(PlanState::Pending));
    assert_eq!(pending(&db), 1);
}

#[test]
fn a_blocking_transaction_commits_together_or_not_at_all() {
    let (_rt, test_db) = test_database();
    let db = BlockingDatabase::connect(&Config::new(test_db.url())).expect("connect");
    let new = |prompt| NewPlan {
        prompt,
        user_id: Some("script"),
        ..Default::default()
    };

    let ids = db
        .transaction(async |tx| {
            let a = plans::enqueue(&mut *tx, &new("first of two")).await?;
            let b = plans::enqueue(&mut *tx, &new("second of two")).await?;
            Ok((a.id, b.id))
        })
        .expect("committed transaction");
    for id in [ids.0, ids.1] {
        db.run(async |pool| plans::status(pool, id).await)
            .expect("both plans committed");
    }

    let mut rolled_back = None;
    let failed = db.transaction(async |tx| {
        let a = plans::enqueue(&mut *tx, &new("never committed")).await?;
        rolled_back = Some(a.id);
        Err::<(), _>(Error::invalid_input("the script changed its mind"))
    });
    assert!(matches!(failed, Err(Error::InvalidInput(_))), "{failed:?}");
    let id = rolled_back.expect("the first statement ran");
    let gone = db.run(async |pool| plans::status(pool, id).await);
    assert!(matches!(gone, Err(Error::NotFound)), "{gone:?}");
}

#[test]
fn debug_of_a_blocking_database_shows_no_password() {
    let (_rt, test_db) = test_database();
    let mut config = Config::new(test_db.url());
    config.migration_url = Some(test_db.url().into());
    let db = BlockingDatabase::connect(&config).expect("connect");
    let shown = format!("{db:?}");
    let password = test_db
        .url()
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, pw)| pw.to_owned())
        .expect("the test URL has a password");
    assert!(!shown.contains(&password), "{shown}");
    assert!(shown.contains(test_db.name()), "{shown}");
}
