//! A rolling deploy on one shared database: release N (this binary, `MIGRATOR`) keeps serving
//! while release N+1 migrates; N restarts and rolls back on N+1's schema; a contract migration
//! of N+2 stops N with the release it needs. N+1 and N+2 are this binary's migrations plus the
//! steps below, so both migrators are built from one tree.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use shared_db::planexe::plans::{self, NewPlan};
use shared_db::planexe::{PageRequest, PlanState};
use shared_db::schema::{self, MigrateOptions, SchemaStatus, SyncOutcome};
use shared_db::testing::TestDatabase;
use shared_db::{Database, Error, MIGRATOR};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{Connection, PgConnection, SqlSafeStr};

/// N+1, expand: a nullable column N does not know, and its index, built concurrently.
const EXPAND: [(i64, &str, &str); 2] = [
    (
        9001,
        "planexe plans priority",
        "SET LOCAL lock_timeout = '5s';\nALTER TABLE plans ADD COLUMN IF NOT EXISTS priority integer;",
    ),
    (
        9002,
        "planexe plans priority index",
        "-- no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS ix_plans_priority ON plans (priority);",
    ),
];

/// N+2, contract: renames a column N reads. It declares that only binaries knowing 9003 run on
/// top of it, in the same transaction.
const CONTRACT: (i64, &str, &str) = (
    9003,
    "planexe plans rename progress message",
    "SET LOCAL lock_timeout = '5s';
     INSERT INTO _shared_db_contracts (version, requires_version, release, reason)
     VALUES (9003, 9003, 'planexe-services 2.0', 'renames plans.progress_message');
     ALTER TABLE plans RENAME COLUMN progress_message TO progress_text;",
);

/// This binary's migrations followed by `steps`.
fn release(steps: &[(i64, &'static str, &'static str)]) -> Migrator {
    let mut migrations: Vec<Migration> = MIGRATOR.iter().cloned().collect();
    migrations.extend(steps.iter().map(|&(version, description, sql)| {
        Migration::new(
            version,
            description.into(),
            MigrationType::Simple,
            sql.into_sql_str(),
            sql.starts_with("-- no-transaction"),
        )
    }));
    Migrator::with_migrations(migrations)
}

fn n_plus_1() -> Migrator {
    release(&EXPAND)
}

fn n_plus_2() -> Migrator {
    release(&[EXPAND[0], EXPAND[1], CONTRACT])
}

/// Runs `migrator` as another release's start-up would, on a session of its own.
async fn deploy(test_db: &TestDatabase, migrator: &Migrator) -> shared_db::Result<SyncOutcome> {
    let mut conn = PgConnection::connect_with(test_db.connect_options()).await?;
    schema::sync_with_options(migrator, &mut conn, &MigrateOptions::default()).await
}

/// One unit of release N's work: queue a plan, claim one, finish it, read it back.
async fn serve_once(db: &Database, worker: &str) -> shared_db::Result<()> {
    let pool = db.pool();
    plans::enqueue(
        pool,
        &NewPlan {
            prompt: "served by release N",
            user_id: Some("rolling-user"),
            ..Default::default()
        },
    )
    .await?;
    if let Some(claimed) = plans::claim_next(pool, worker).await? {
        plans::finish_completed(pool, claimed.attempt, None).await?;
        let plan = plans::get(pool, claimed.attempt.plan_id).await?;
        assert_eq!(plan.state, Some(PlanState::Completed));
    }
    plans::list_by_user(pool, "rolling-user", PageRequest::default()).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn release_n_keeps_serving_while_n_plus_1_migrates_and_restarts_on_its_schema() {
    let test_db = TestDatabase::new().await.unwrap();
    let n = test_db.db().clone();
    assert_eq!(n.sync().await.unwrap(), SyncOutcome::AlreadyUpToDate);

    // Release N serves: two workers, and a readiness probe polled the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for worker in ["n-worker-1", "n-worker-2"] {
        let (db, stop, served) = (n.clone(), stop.clone(), served.clone());
        tasks.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match serve_once(&db, worker).await {
                    Ok(()) => served.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        errors.push(format!("{worker}: {e}"));
                        0
                    }
                };
            }
            errors
        }));
    }
    let probe = {
        let (db, stop) = (n.clone(), stop.clone());
        tokio::spawn(async move {
            let mut not_ready = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let health = db.health().await;
                if !health.is_ready() {
                    not_ready.push(format!("{:?}", health.schema));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            not_ready
        })
    };

    // N+1's first pod migrates while N serves.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let outcome = deploy(&test_db, &n_plus_1()).await.unwrap();
    assert_eq!(
        outcome,
        SyncOutcome::Upgraded {
            applied: vec![9001, 9002]
        }
    );
    let during = served.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);

    let mut errors = Vec::new();
    for t in tasks {
        errors.extend(t.await.unwrap());
    }
    assert_eq!(errors, Vec::<String>::new(), "release N never failed");
    assert!(
        served.load(Ordering::Relaxed) > during && during > 0,
        "release N served before and after the migration"
    );
    assert_eq!(
        probe.await.unwrap(),
        Vec::<String>::new(),
        "release N stayed ready throughout"
    );

    // An N pod restarts (OOM, node drain) on N+1's schema: it boots, applies nothing, is ready.
    let restarted = Database::connect(&shared_db::Config::new(test_db.url()))
        .await
        .unwrap();
    restarted.migrate().await.unwrap();
    assert_eq!(
        restarted.sync().await.unwrap(),
        SyncOutcome::Ahead {
            newer: vec![9001, 9002]
        }
    );
    let status = restarted.status().await;
    assert!(
        matches!(&status, SchemaStatus::Ahead { newer, .. } if newer.len() == 2),
        "{status:?}"
    );
    assert_eq!(status.exit_code(), 4);
    assert!(restarted.health().await.is_ready());
    serve_once(&restarted, "n-worker-restarted").await.unwrap();
}

#[tokio::test]
async fn rolling_back_to_release_n_works_on_the_schema_n_plus_1_left() {
    let test_db = TestDatabase::new().await.unwrap();
    deploy(&test_db, &n_plus_1()).await.unwrap();

    // N+1 served for a while and wrote what only it knows about.
    sqlx::raw_sql(
        "INSERT INTO plans (id, timestamp_created, state, prompt, user_id, stop_requested, priority)
         VALUES (gen_random_uuid(), now() AT TIME ZONE 'utc', 'pending', 'queued by N+1',
                 'rolling-user', false, 7)",
    )
    .execute(test_db.pool())
    .await
    .unwrap();

    // N+1 turns out bad; N is deployed again. Its start-up migrate applies nothing.
    let n = test_db.db();
    assert_eq!(
        n.sync().await.unwrap(),
        SyncOutcome::Ahead {
            newer: vec![9001, 9002]
        }
    );
    assert!(n.health().await.is_ready());

    // N reads N+1's rows (explicit column lists: the new column is not in them), works them,
    // and writes its own.
    let listed = plans::list_by_user(n.pool(), "rolling-user", PageRequest::default())
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    let claimed = plans::claim_next(n.pool(), "n-after-rollback")
        .await
        .unwrap()
        .expect("N claims the plan N+1 queued");
    assert_eq!(claimed.plan.prompt.as_deref(), Some("queued by N+1"));
    plans::finish_completed(n.pool(), claimed.attempt, None)
        .await
        .unwrap();
    serve_once(n, "n-after-rollback").await.unwrap();

    // Rolling forward again: N+1 finds its own migrations applied.
    assert_eq!(
        deploy(&test_db, &n_plus_1()).await.unwrap(),
        SyncOutcome::AlreadyUpToDate
    );
}

#[tokio::test]
async fn a_contract_migration_stops_release_n_with_the_release_it_needs() {
    let test_db = TestDatabase::new().await.unwrap();
    deploy(&test_db, &n_plus_1()).await.unwrap();
    assert_eq!(
        deploy(&test_db, &n_plus_2()).await.unwrap(),
        SyncOutcome::Upgraded {
            applied: vec![9003]
        }
    );

    // Release N: not ready, and says which release to deploy instead of serving half-broken.
    let n = test_db.db();
    let status = n.status().await;
    assert_eq!(
        status,
        SchemaStatus::Incompatible {
            contract: 9003,
            requires_version: 9003,
            release: "planexe-services 2.0".into(),
            reason: "renames plans.progress_message".into(),
        }
    );
    assert_eq!(status.exit_code(), 5);
    assert!(!n.health().await.is_ready());
    let err = n.migrate().await.unwrap_err();
    assert!(matches!(err, Error::SchemaIncompatible { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("deploy planexe-services 2.0 or newer")
            && message.contains("migration 9003"),
        "{message}"
    );

    // Release N+1 knows 9001–9002 but not 9003: incompatible too.
    let n1 = schema::status(&n_plus_1(), test_db.pool()).await;
    assert!(
        matches!(n1, SchemaStatus::Incompatible { contract: 9003, .. }),
        "{n1:?}"
    );
    // N+2 is up to date.
    assert_eq!(
        schema::status(&n_plus_2(), test_db.pool()).await,
        SchemaStatus::UpToDate {
            version: Some(9003)
        }
    );

    // What readiness protected N from: its reads name the renamed column.
    let plan = plans::enqueue(
        test_db.pool(),
        &NewPlan {
            prompt: "after the contract",
            ..Default::default()
        },
    )
    .await;
    assert!(plan.is_err(), "release N's SQL no longer fits the schema");
}

/// Migration 0115 moved global licences (no shop) to `shop.global_licenses`. Releases before it
/// keep them in `shop.licenses` with `shop_id` NULL, and run beside this one until the contract
/// step: whichever side writes, both see the same licence.
#[tokio::test]
async fn global_licences_written_by_an_older_release_or_by_this_one_are_the_same_rows()
-> anyhow::Result<()> {
    use shared_db::shop::licenses::{self, LicenseFields};
    let test_db = TestDatabase::new().await?;
    let pool = test_db.pool();
    let fields = |name: &str, seats: i32| LicenseFields {
        name: name.to_owned(),
        is_recurring: false,
        start_date: None,
        end_date: None,
        improviser_user: uuid::Uuid::new_v4(),
        seats,
        order_id: None,
    };
    // What the older release reads: the licence of no shop in shop.licenses.
    let older_reads = |id: uuid::Uuid| {
        sqlx::query_as::<_, (String, i32)>(
            "SELECT name, seats FROM shop.licenses WHERE id = $1 AND shop_id IS NULL",
        )
        .bind(id)
        .fetch_optional(pool)
    };

    // The older release grants one; this release finds it, and its changes reach the older one.
    let old_id: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO shop.licenses (name, is_recurring, improviser_user, seats)
         VALUES ('granted by N-1', true, gen_random_uuid(), 3) RETURNING id",
    )
    .fetch_one(pool)
    .await?;
    let seen = licenses::get_global(pool, old_id).await?;
    assert_eq!(
        (seen.name.as_str(), seen.seats, seen.shop_id),
        ("granted by N-1", 3, None)
    );
    licenses::update_global(pool, old_id, &fields("renamed by N", 4)).await?;
    assert_eq!(
        older_reads(old_id).await?,
        Some(("renamed by N".to_owned(), 4))
    );

    // This release grants one; the older release reads it, edits it, and deletes it.
    let new = licenses::create_global(pool, &fields("granted by N", 2)).await?;
    assert_eq!(
        older_reads(new.id).await?,
        Some(("granted by N".to_owned(), 2))
    );
    sqlx::query("UPDATE shop.licenses SET seats = 9 WHERE id = $1 AND shop_id IS NULL")
        .bind(new.id)
        .execute(pool)
        .await?;
    assert_eq!(licenses::get_global(pool, new.id).await?.seats, 9);
    sqlx::query("DELETE FROM shop.licenses WHERE id = $1 AND shop_id IS NULL")
        .bind(new.id)
        .execute(pool)
        .await?;
    assert!(matches!(
        licenses::get_global(pool, new.id).await,
        Err(Error::NotFound)
    ));

    // A delete by this release is gone for the older one too; the shops' licences stay apart.
    licenses::delete_global(pool, old_id).await?;
    assert_eq!(older_reads(old_id).await?, None);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM shop.global_licenses")
        .fetch_one(pool)
        .await?;
    assert_eq!(rows, 0);
    Ok(())
}
