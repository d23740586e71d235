//! JSON as Python's `json.dumps` writes it: a prompt cut in the middle of an emoji leaves a lone
//! UTF-16 surrogate escape (`"\ud83d"`), which PostgreSQL's `json` type stores unchecked. Such rows
//! never break us: every `json` column reads back with U+FFFD in its place, Python can keep
//! inserting such events after our migrations, and the migrations apply to a database that already
//! holds them.

use serde_json::json;
use shared_db::MIGRATOR;
use shared_db::planexe::{
    events, nonces, payment_record, plans, token_metrics, user_account, user_provider,
};
use shared_db::testing::TestDatabase;
use sqlx::AssertSqlSafe;
use sqlx::migrate::Migrator;
use uuid::Uuid;

const PLAN: &str = "00000000-0000-4000-8000-0000000000f1";
const USER: &str = "00000000-0000-4000-8000-0000000000f2";

/// Rows in every planexe `json` column, inserted as the Python services do (SQL text with the
/// escapes `json.dumps(…, ensure_ascii=True)` produces for `"cut 😀"[:5]`).
const PYTHON_ROWS: &str = r#"
INSERT INTO plans (id, timestamp_created, state, prompt, user_id, stop_requested, parameters,
                   run_activity_overview_json)
VALUES ('00000000-0000-4000-8000-0000000000f1', now() AT TIME ZONE 'utc', 'completed', 'p',
        '00000000-0000-4000-8000-0000000000f2', false,
        '{"pipeline_version": 2, "prompt_head": "cut \ud83d"}', '{"note": "\udca9 x"}');
INSERT INTO events ("timestamp", event_type, message, context)
VALUES (now() AT TIME ZONE 'utc', 'TASK_COMPLETED', 'done',
        '{"task_id": "00000000-0000-4000-8000-0000000000f1", "prompt": "cut \ud83d"}');
INSERT INTO user_account (id, created_at, is_admin, free_plan_used, frontend_multi_user_config)
VALUES ('00000000-0000-4000-8000-0000000000f2', now() AT TIME ZONE 'utc', false, false,
        '{"title": "cut \ud83d"}');
INSERT INTO user_provider (id, user_id, provider, provider_user_id, raw_profile)
VALUES (gen_random_uuid(), '00000000-0000-4000-8000-0000000000f2', 'github', 'gh-f2',
        '{"bio": "cut \ud83d"}');
INSERT INTO payment_record (id, user_id, provider, provider_payment_id, credits, amount, currency,
                            status, raw_payload)
VALUES (gen_random_uuid(), '00000000-0000-4000-8000-0000000000f2', 'stripe', 'pi_f2', 1, 100,
        'usd', 'completed', '{"description": "cut \ud83d"}');
INSERT INTO nonces (nonce_key, created_at, last_accessed_at, request_count, context)
VALUES ('CREATE_f2', now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc', 1,
        '{"prompt": "cut \ud83d"}');
INSERT INTO token_metrics ("timestamp", llm_model, task_id, user_id, success, raw_usage_data)
VALUES (now() AT TIME ZONE 'utc', 'm', '00000000-0000-4000-8000-0000000000f1',
        '00000000-0000-4000-8000-0000000000f2', true, '{"model": "cut \ud83d"}');
"#;

/// A Python event insert whose context carries a lone surrogate next to the plan id.
const PYTHON_EVENT: &str = r#"
INSERT INTO events ("timestamp", event_type, message, context)
VALUES (now() AT TIME ZONE 'utc', 'GENERIC_EVENT', 'log',
        '{"task_id": "00000000-0000-4000-8000-0000000000f1", "line": "\ud83d"}'::json)"#;

/// Migrations up to and including 0003, applied by sqlx's own migrator: the state of a database
/// migrated before the guard and 0010–0012 existed.
fn migrator_through_0003() -> Migrator {
    Migrator::with_migrations(
        MIGRATOR
            .iter()
            .filter(|m| m.version <= 3)
            .cloned()
            .collect(),
    )
}

#[tokio::test]
async fn every_json_column_reads_a_lone_surrogate_as_a_replacement_character() -> anyhow::Result<()>
{
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    sqlx::raw_sql(PYTHON_ROWS).execute(pool).await?;
    let (plan, user): (Uuid, Uuid) = (PLAN.parse()?, USER.parse()?);

    let p = plans::get(pool, plan).await?;
    assert_eq!(
        p.parameters,
        Some(json!({ "pipeline_version": 2, "prompt_head": "cut \u{FFFD}" }).into())
    );
    assert_eq!(
        p.run_activity_overview_json,
        Some(json!({ "note": "\u{FFFD} x" }).into())
    );
    let by_plan = events::list_by_plan(pool, plan, 10).await?;
    assert_eq!(
        by_plan[0].context,
        Some(json!({ "task_id": PLAN, "prompt": "cut \u{FFFD}" }).into())
    );
    assert_eq!(events::list_since(pool, 0, 10).await?.len(), 1);
    assert_eq!(
        user_account::get(pool, user)
            .await?
            .frontend_multi_user_config,
        Some(json!({ "title": "cut \u{FFFD}" }).into())
    );
    assert_eq!(
        user_provider::list_for_user(pool, user).await?[0].raw_profile,
        Some(json!({ "bio": "cut \u{FFFD}" }).into())
    );
    assert_eq!(
        payment_record::list_for_user(pool, user, Default::default()).await?[0].raw_payload,
        Some(json!({ "description": "cut \u{FFFD}" }).into())
    );
    assert_eq!(
        nonces::get(pool, "CREATE_f2").await?.context,
        Some(json!({ "prompt": "cut \u{FFFD}" }).into())
    );
    assert_eq!(
        token_metrics::list_for_plan(pool, plan, Default::default()).await?[0].raw_usage_data,
        Some(json!({ "model": "cut \u{FFFD}" }).into())
    );
    Ok(())
}

#[tokio::test]
async fn python_can_insert_such_events_after_our_migrations_but_not_under_0003s_index()
-> anyhow::Result<()> {
    // A database migrated before this fix: 0003's expression index refuses the insert.
    let db = TestDatabase::empty().await?;
    migrator_through_0003().run(db.pool()).await?;
    let refused = sqlx::raw_sql(PYTHON_EVENT).execute(db.pool()).await;
    let message = refused.expect_err("0003's index raises").to_string();
    assert!(
        message.contains("invalid input syntax for type json"),
        "{message}"
    );

    // Migrating the rest drops that index and builds the tolerant one.
    db.db().migrate().await?;
    sqlx::raw_sql(PYTHON_EVENT).execute(db.pool()).await?;
    let found = events::list_by_plan(db.pool(), PLAN.parse()?, 10).await?;
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].context.as_ref().unwrap()["line"],
        json!("\u{FFFD}")
    );
    assert_eq!(index_names(&db).await?, ["ix_events_task_id"]);

    // A database migrated from scratch accepts it as well.
    let fresh = TestDatabase::new().await?;
    sqlx::raw_sql(PYTHON_EVENT).execute(fresh.pool()).await?;
    assert_eq!(index_names(&fresh).await?, ["ix_events_task_id"]);
    Ok(())
}

#[tokio::test]
async fn a_python_database_holding_such_rows_migrates() -> anyhow::Result<()> {
    let legacy = || async {
        let db = TestDatabase::empty().await?;
        sqlx::raw_sql(include_str!(
            "../fixtures/planexe/python_legacy_database.sql"
        ))
        .execute(db.pool())
        .await?;
        sqlx::raw_sql(PYTHON_EVENT).execute(db.pool()).await?;
        anyhow::Ok(db)
    };

    // sqlx's plain migrator (no guard) fails at 0003 on such a database.
    let plain = legacy().await?;
    let failed = migrator_through_0003().run(plain.pool()).await;
    let message = failed.expect_err("0003 cannot index the row").to_string();
    assert!(
        message.contains("invalid input syntax for type json"),
        "{message}"
    );

    // The library's migrate applies every migration, and the row is served by the new index.
    // Index builds are made parallel even on this small table, as they are on a big live one.
    let db = legacy().await?;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "ALTER DATABASE \"{}\" SET min_parallel_table_scan_size = 0",
        db.name()
    )))
    .execute(db.pool())
    .await?;
    db.db().migrate().await?;
    let applied =
        sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM _sqlx_migrations WHERE success"#)
            .fetch_one(db.pool())
            .await?;
    assert_eq!(applied, MIGRATOR.iter().count() as i64);
    let found = events::list_by_plan(db.pool(), PLAN.parse()?, 10).await?;
    assert_eq!(
        found[0].context.as_ref().unwrap()["line"],
        json!("\u{FFFD}")
    );
    assert_eq!(index_names(&db).await?, ["ix_events_task_id"]);
    let invalid =
        sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM pg_index WHERE NOT indisvalid"#)
            .fetch_one(db.pool())
            .await?;
    assert_eq!(invalid, 0, "no concurrent build left an invalid index");
    Ok(())
}

/// The task-id indexes on `events`: 0003's `ix_events_context_task_id` must be gone.
async fn index_names(db: &TestDatabase) -> anyhow::Result<Vec<String>> {
    Ok(sqlx::query_scalar!(
        r#"SELECT indexname AS "n!" FROM pg_indexes
           WHERE tablename = 'events' AND indexname LIKE '%task_id%' ORDER BY 1"#
    )
    .fetch_all(db.pool())
    .await?)
}
