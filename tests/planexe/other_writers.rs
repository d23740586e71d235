//! Rows from a newer release or from the Python services never fail a read. A state or event type
//! this release does not know reads as `Unknown`, carrying its label, and is passed through but
//! never acted on; `plans.parameters` that Python wrote with a lone surrogate or a `\u0000`
//! escape (which PostgreSQL refuses to de-escape) is read, found and resumed like any other.
//! Every such row is inserted with raw SQL, as the other writer would.

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

const CUT: &str = "00000000-0000-4000-8000-0000000000e3";
const NUL: &str = "00000000-0000-4000-8000-0000000000e4";
const OLD_PIPELINE: &str = "00000000-0000-4000-8000-0000000000e5";

/// Three plans of `py` queued by the Python MCP for one prompt, whose `parameters` hold what
/// `json.dumps` writes: a prompt head cut inside an emoji (a lone surrogate, beside a whole
/// emoji and a text that merely looks like an escape), a `\u0000`, and on an old pipeline.
const PYTHON_PLANS: &str = r#"
INSERT INTO plans (id, timestamp_created, state, prompt, user_id, stop_requested, parameters)
VALUES ('00000000-0000-4000-8000-0000000000e3', (now() AT TIME ZONE 'utc') - interval '2 minutes',
        'pending', 'a bakery', 'py', false,
        '{"model_profile": "baseline", "pipeline_version": 2, "resume_count": 3,
          "prompt_head": "cut \ud83d", "emoji": "\ud83d\ude00", "path": "C:\\ud83d"}'),
       ('00000000-0000-4000-8000-0000000000e4', (now() AT TIME ZONE 'utc') - interval '1 minute',
        'pending', 'a bakery', 'py', false,
        '{"model_profile": "premium", "pipeline_version": 2, "note": "nul \u0000 here"}'),
       ('00000000-0000-4000-8000-0000000000e5', (now() AT TIME ZONE 'utc') - interval '3 minutes',
        'pending', 'a bakery', 'py', false,
        '{"model_profile": "frontier", "pipeline_version": 1, "prompt_head": "cut \ud83d"}');
"#;

#[tokio::test]
async fn python_parameters_with_a_lone_surrogate_or_nul_are_read_found_and_resumed()
-> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    sqlx::raw_sql(PYTHON_PLANS).execute(pool).await?;
    let (cut, nul, old): (Uuid, Uuid, Uuid) = (CUT.parse()?, NUL.parse()?, OLD_PIPELINE.parse()?);

    // Read back, a lone surrogate as U+FFFD; listed; polled.
    assert_eq!(
        plans::get(pool, cut).await?.parameters,
        Some(
            json!({
                "model_profile": "baseline", "pipeline_version": 2, "resume_count": 3,
                "prompt_head": "cut \u{FFFD}", "emoji": "😀", "path": "C:\\ud83d",
            })
            .into()
        )
    );
    assert_eq!(
        plans::get(pool, nul).await?.parameters.unwrap()["note"],
        json!("nul \u{0} here")
    );
    let listed = plans::list_by_user(pool, "py", PageRequest::default()).await?;
    assert_eq!(
        listed.iter().map(|p| p.id).collect::<Vec<_>>(),
        [nul, cut, old]
    );
    assert_eq!(
        plans::status(pool, cut).await?.state,
        Some(PlanState::Pending)
    );

    // The same prompt submitted again is matched by its model profile, or not at all.
    let window = Duration::from_secs(600);
    let duplicate = |profile: Option<&'static str>| {
        plans::find_duplicate(pool, "py", "a bakery", profile, window)
    };
    assert_eq!(duplicate(Some("baseline")).await?, Some(cut));
    assert_eq!(duplicate(Some("premium")).await?, Some(nul));
    assert_eq!(duplicate(Some("frontier")).await?, Some(old));
    assert_eq!(duplicate(Some("custom")).await?, None);
    assert_eq!(duplicate(None).await?, None);
    assert_eq!(
        plans::find_duplicate(pool, "py", "a cafe", Some("baseline"), window).await?,
        None
    );

    // Stopped, then resumed: each keeps its other keys; the lone surrogate becomes U+FFFD (the
    // whole emoji and the escaped backslash stay as they were), the NUL goes.
    for id in [cut, nul, old] {
        plans::request_stop(pool, id).await?;
    }
    let resumed = plans::resume(pool, cut).await?;
    assert_eq!(resumed.from, PlanState::Stopped);
    assert_eq!(
        plans::get(pool, cut).await?.parameters,
        Some(
            json!({
                "model_profile": "baseline", "pipeline_version": 2, "resume": true,
                "resume_count": 4, "prompt_head": "cut \u{FFFD}", "emoji": "😀",
                "path": "C:\\ud83d",
            })
            .into()
        )
    );
    plans::resume(pool, nul).await?;
    assert_eq!(
        plans::get(pool, nul).await?.parameters,
        Some(
            json!({
                "model_profile": "premium", "pipeline_version": 2, "note": "nul  here",
                "resume": true, "resume_count": 1,
            })
            .into()
        )
    );
    assert_eq!(
        plans::status(pool, nul).await?.state,
        Some(PlanState::Pending)
    );

    // The pipeline version is still checked: the old plan is refused and left as it was.
    match plans::resume(pool, old).await {
        Err(Error::InvalidInput(message)) => assert!(message.contains("pipeline version 1")),
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    let left = plans::get(pool, old).await?;
    assert_eq!(left.state, Some(PlanState::Stopped));
    assert_eq!(
        left.parameters.unwrap()["prompt_head"],
        json!("cut \u{FFFD}")
    );

    // The resumed plans are queued again, and a duplicate lookup still finds them.
    assert_eq!(duplicate(Some("baseline")).await?, Some(cut));
    assert_eq!(duplicate(Some("premium")).await?, Some(nul));
    Ok(())
}
