//! Databases and rows written by others: the legacy `taskstate` type name, the orphan
//! `import_pending` label (read as `PlanState::Unknown`), NULL stop flags, JSON `null`.

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
async fn the_orphan_import_pending_label_reads_as_unknown_and_the_plan_is_left_alone()
-> anyhow::Result<()> {
    let db =
        TestDatabase::with_fixture(include_str!("../fixtures/planexe/legacy_rows.sql")).await?;
    let id: Uuid = IMPORT_PENDING.parse()?;
    let import_pending = |state: Option<PlanState>| match state {
        Some(PlanState::Unknown(label)) => label.as_str() == "import_pending",
        _ => false,
    };

    // Every read returns the row, its state carrying the label as stored.
    assert!(import_pending(plans::get(db.pool(), id).await?.state));
    assert!(import_pending(plans::status(db.pool(), id).await?.state));
    let listed = plans::list_by_user(db.pool(), "legacy-user", PageRequest::default()).await?;
    assert_eq!(listed.len(), 3, "the other rows are listed too");
    let row = listed.iter().find(|p| p.id == id).expect("listed");
    assert!(import_pending(row.state));
    assert_eq!(row.state.unwrap().as_str(), "import_pending");

    // Transitions name the label, and the queue works around the row.
    match plans::retry(db.pool(), id).await {
        Err(Error::InvalidTransition { from, .. }) => assert_eq!(from, "import_pending"),
        other => panic!("expected InvalidTransition, got {other:?}"),
    }
    let claimed = plans::claim_next(db.pool(), "w")
        .await?
        .expect("the pending plan");
    assert_eq!(claimed.plan.id, NULL_FLAGS.parse::<Uuid>()?);
    assert!(plans::claim_next(db.pool(), "w").await?.is_none());
    assert!(import_pending(plans::get(db.pool(), id).await?.state));

    // As input, the label is still refused: callers name the states this release knows.
    assert!(matches!(
        "import_pending".parse::<PlanState>(),
        Err(Error::UnknownEnumLabel {
            type_name: "planstate",
            ..
        })
    ));
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
    assert_eq!(claimed.plan.id, NULL_FLAGS.parse::<Uuid>()?);
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
    let claimed = plans::claim_next(pool, "w").await?.unwrap();
    assert_eq!(claimed.plan.state, Some(PlanState::Processing));
    let f = Failure {
        reason: "generation_error",
        error_message: "x",
        ..Default::default()
    };
    assert_eq!(
        plans::finish_failed(pool, claimed.attempt, &f, None).await?,
        PlanState::Failed
    );
    plans::retry(pool, id).await?;
    plans::request_stop(pool, id).await?;
    plans::resume(pool, id).await?;
    let run = crate::claim(pool, "w").await;
    plans::finish_completed(pool, run, None).await?;
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
    assert_eq!(
        plans::requeue_stale(pool, std::time::Duration::from_secs(60), 3).await?,
        plans::Reaped::default()
    );
    Ok(())
}
