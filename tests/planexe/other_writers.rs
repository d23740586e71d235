//! Rows from a newer release or from another service never fail a read. A state or event type
//! this release does not know reads as `Unknown`, carrying its label, and is passed through but
//! never acted on. Every such row is inserted with raw SQL, as the other writer would.

use std::time::Duration;

use serde_json::json;
use shared_db::Error;
use shared_db::planexe::plans::{self, Attempt, Failure, Progress, ProgressAck};
use shared_db::planexe::{EventType, PageRequest, PlanState, events};
use shared_db::testing::TestDatabase;
use uuid::Uuid;

use crate::queue_plan;

const ARCHIVED: &str = "00000000-0000-4000-8000-0000000000e1";
/// The run attempt the archived plan was claimed with before a newer release archived it.
const ARCHIVED_RUN: &str = "00000000-0000-4000-8000-0000000000e2";

/// A newer release added the `archived` state and archived a plan it had been running, the
/// oldest of its owner's plans. `ADD VALUE` commits before the label can be used.
async fn archive_a_plan(db: &TestDatabase) -> anyhow::Result<()> {
    sqlx::raw_sql("ALTER TYPE planstate ADD VALUE 'archived'")
        .execute(db.pool())
        .await?;
    sqlx::raw_sql(
        r#"INSERT INTO plans (id, timestamp_created, state, prompt, user_id, stop_requested,
                              parameters, run_attempt)
           VALUES ('00000000-0000-4000-8000-0000000000e1',
                   (now() AT TIME ZONE 'utc') - interval '1 hour', 'archived', 'old news', 'ann',
                   false, '{"pipeline_version": 2, "model_profile": "baseline"}',
                   '00000000-0000-4000-8000-0000000000e2')"#,
    )
    .execute(db.pool())
    .await?;
    Ok(())
}

fn is_archived(state: Option<PlanState>) -> bool {
    matches!(state, Some(PlanState::Unknown(label)) if label == "archived")
}

/// The refused transition's origin, or a panic naming what came instead.
fn refused_from<T: std::fmt::Debug>(result: shared_db::Result<T>) -> String {
    match result {
        Err(Error::InvalidTransition { from, .. }) => from,
        other => panic!("expected InvalidTransition, got {other:?}"),
    }
}

#[tokio::test]
async fn a_plan_in_a_state_added_by_a_newer_release_is_listed_and_read_but_never_touched()
-> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let first = queue_plan(pool, "ann", "first").await;
    let second = queue_plan(pool, "ann", "second").await;
    archive_a_plan(&db).await?;
    let archived: Uuid = ARCHIVED.parse()?;

    // Ann's list holds all three plans; the archived one says what it is.
    let listed = plans::list_by_user(pool, "ann", PageRequest::default()).await?;
    assert_eq!(
        listed.iter().map(|p| p.id).collect::<Vec<_>>(),
        [second, first, archived]
    );
    assert!(is_archived(listed[2].state));
    assert_eq!(listed[2].state.unwrap().as_str(), "archived");
    assert_eq!(serde_json::to_value(listed[2].state)?, json!("archived"));
    let plan = plans::get(pool, archived).await?;
    assert!(is_archived(plan.state));
    assert_eq!(plan.prompt.as_deref(), Some("old news"));
    assert!(is_archived(plans::status(pool, archived).await?.state));

    // Workers take the two queued plans, never the archived one, although it is the oldest.
    let claimed = [
        plans::claim_next(pool, "w").await?.expect("a plan").plan.id,
        plans::claim_next(pool, "w").await?.expect("a plan").plan.id,
    ];
    assert_eq!(claimed, [first, second]);
    assert!(plans::claim_next(pool, "w").await?.is_none());
    assert_eq!(plans::count_pending(pool).await?, 0);
    let reaped = plans::requeue_stale(pool, Duration::ZERO, 3).await?;
    assert!(!reaped.requeued.contains(&archived) && !reaped.failed.contains(&archived));

    // Every transition refuses it and names the label, including the writes of the run that
    // still holds its attempt; progress tells that worker to drop the plan.
    assert_eq!(refused_from(plans::retry(pool, archived).await), "archived");
    assert_eq!(
        refused_from(plans::resume(pool, archived).await),
        "archived"
    );
    assert_eq!(
        refused_from(plans::request_stop(pool, archived).await),
        "archived"
    );
    let run = Attempt {
        plan_id: archived,
        token: ARCHIVED_RUN.parse()?,
    };
    assert_eq!(
        refused_from(plans::finish_completed(pool, run, None).await),
        "archived"
    );
    let failure = Failure {
        reason: "worker_error",
        error_message: "x",
        ..Default::default()
    };
    assert_eq!(
        refused_from(plans::finish_failed(pool, run, &failure, None).await),
        "archived"
    );
    assert_eq!(
        refused_from(plans::finish_stopped(pool, run, None).await),
        "archived"
    );
    let step = Progress {
        message: "step",
        ..Default::default()
    };
    match plans::update_progress(pool, run, &step).await? {
        ProgressAck::Abort {
            state,
            stop_requested: false,
        } => assert!(is_archived(state)),
        other => panic!("expected Abort, got {other:?}"),
    }

    // Nothing changed it.
    let after = plans::get(pool, archived).await?;
    assert_eq!(after, plan);
    Ok(())
}

#[tokio::test]
async fn an_event_type_added_by_a_newer_release_is_read_and_passed_through() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let plan = queue_plan(pool, "ann", "p").await;
    sqlx::raw_sql("ALTER TYPE eventtype ADD VALUE 'TASK_ARCHIVED'")
        .execute(pool)
        .await?;
    sqlx::query(
        r#"INSERT INTO events ("timestamp", event_type, message, context)
           VALUES (now() AT TIME ZONE 'utc', 'TASK_ARCHIVED', 'Completed -> Archived',
                   json_build_object('task_id', $1::uuid::text))"#,
    )
    .bind(plan)
    .execute(pool)
    .await?;

    // Every event read returns it beside the known ones (the enqueue's TASK_PENDING).
    let timeline = events::list_by_plan(pool, plan, 10).await?;
    assert_eq!(timeline.len(), 2);
    assert_eq!(timeline[0].event_type, EventType::TaskPending);
    let archived = timeline[1].event_type;
    assert!(matches!(archived, EventType::Unknown(label) if label == "TASK_ARCHIVED"));
    assert_eq!(archived.to_string(), "TASK_ARCHIVED");
    assert_eq!(events::list_since(pool, 0, 10).await?, timeline);
    let far = chrono::Duration::days(1);
    let now = chrono::Utc::now();
    assert_eq!(
        events::list_in_range(pool, now - far, now + far, 10).await?,
        timeline
    );

    // Passed through: written back with the label it carries, and looked up by it.
    let copy = events::append(pool, archived, "copied", Some(&json!({ "copy": true }))).await?;
    assert_eq!(copy.event_type, archived);
    let by_type = events::list_by_type(pool, archived, 10).await?;
    assert_eq!(
        by_type.iter().map(|e| e.id).collect::<Vec<_>>(),
        [copy.id, timeline[1].id]
    );
    assert_eq!(serde_json::to_value(archived)?, json!("TASK_ARCHIVED"));

    // As input, an unknown label is refused.
    assert!(matches!(
        "TASK_ARCHIVED".parse::<EventType>(),
        Err(Error::UnknownEnumLabel {
            type_name: "eventtype",
            ..
        })
    ));
    assert!(serde_json::from_value::<EventType>(json!("TASK_ARCHIVED")).is_err());
    assert_eq!(
        serde_json::from_value::<EventType>(json!("TASK_PENDING"))?,
        EventType::TaskPending
    );
    Ok(())
}
