//! Databases and rows written by others: the legacy `taskstate` type name, the orphan
//! `import_pending` label, NULL stop flags, JSON `null`.

use shared_db::Error;
use shared_db::planexe::plans::{self, Failure};
use shared_db::planexe::{PageRequest, PlanState};
use shared_db::testing::TestDatabase;
use uuid::Uuid;

use crate::queue_plan;

const IMPORT_PENDING: &str = "00000000-0000-4000-8000-0000000000a1";
const NULL_FLAGS: &str = "00000000-0000-4000-8000-0000000000a2";
const SQL_NULLS: &str = "00000000-0000-4000-8000-0000000000a3";

#[tokio::test]
async fn an_unknown_enum_label_is_a_typed_error_not_a_panic() -> anyhow::Result<()> {
    let db =
        TestDatabase::with_fixture(include_str!("../fixtures/planexe/legacy_rows.sql")).await?;
    let id: Uuid = IMPORT_PENDING.parse()?;
    for result in [
        plans::get(db.pool(), id).await.map(drop),
        plans::status(db.pool(), id).await.map(drop),
        plans::list_by_user(db.pool(), "legacy-user", PageRequest::default())
            .await
            .map(drop),
    ] {
        match result {
            Err(Error::UnknownEnumLabel { type_name, value }) => {
                assert_eq!((type_name, value.as_str()), ("planstate", "import_pending"));
            }
            other => panic!("expected UnknownEnumLabel, got {other:?}"),
        }
    }
    // Transitions name the label too, and the queue works around the row.
    match plans::retry(db.pool(), id).await {
        Err(Error::InvalidTransition { from, .. }) => assert_eq!(from, "import_pending"),
        other => panic!("expected InvalidTransition, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn null_stop_flags_and_json_null_read_as_false_and_absent() -> anyhow::Result<()> {
    let db =
        TestDatabase::with_fixture(include_str!("../fixtures/planexe/legacy_rows.sql")).await?;
    let a = plans::get(db.pool(), NULL_FLAGS.parse()?).await?;
    assert!(!a.stop_requested);
    assert_eq!((a.parameters, a.run_activity_overview_json), (None, None));
    let b = plans::get(db.pool(), SQL_NULLS.parse()?).await?;
    assert_eq!((b.parameters, b.run_activity_overview_json), (None, None));
    // A pending plan with a NULL stop flag is claimable.
    let claimed = plans::claim_next(db.pool(), "w").await?.expect("claimable");
    assert_eq!(claimed.id, NULL_FLAGS.parse::<Uuid>()?);
    Ok(())
}

#[tokio::test]
async fn every_plan_operation_works_on_a_legacy_taskstate_database() -> anyhow::Result<()> {
    let db = TestDatabase::with_fixture(include_str!("../fixtures/planexe/legacy_taskstate.sql"))
        .await?;
    let pool = db.pool();
    let renamed = sqlx::query_scalar!(
        r#"SELECT format_type(atttypid, atttypmod) AS "t!" FROM pg_attribute
           WHERE attrelid = 'plans'::regclass AND attname = 'state'"#
    )
    .fetch_one(pool)
    .await?;
    assert_eq!(renamed, "taskstate");

    let id = queue_plan(pool, "old", "p").await;
    assert_eq!(
        plans::find_duplicate(
            pool,
            "old",
            "p",
            Some("baseline"),
            std::time::Duration::from_secs(60)
        )
        .await?,
        Some(id)
    );
    assert_eq!(
        plans::claim_next(pool, "w").await?.unwrap().state,
        Some(PlanState::Processing)
    );
    let f = Failure {
        reason: "generation_error",
        error_message: "x",
        ..Default::default()
    };
    assert_eq!(
        plans::finish_failed(pool, id, &f, None).await?,
        PlanState::Failed
    );
    plans::retry(pool, id).await?;
    plans::request_stop(pool, id).await?;
    plans::resume(pool, id).await?;
    plans::claim_next(pool, "w").await?;
    plans::finish_completed(pool, id, None).await?;
    assert_eq!(
        plans::status(pool, id).await?.state,
        Some(PlanState::Completed)
    );
    assert_eq!(
        plans::list_by_user(pool, "old", PageRequest::default())
            .await?
            .len(),
        1
    );
    assert!(
        plans::requeue_stale(pool, std::time::Duration::from_secs(60))
            .await?
            .is_empty()
    );
    Ok(())
}
