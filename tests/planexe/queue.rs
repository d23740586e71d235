//! The plan queue: FIFO claim, progress, finishing, stop/retry/resume rules, artifacts, reaper.

use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::json;
use shared_db::Error;
use shared_db::planexe::plans::{
    self, Artifacts, Attempt, Failure, Progress, ProgressAck, StopOutcome,
};
use shared_db::planexe::{EventType, PageRequest, PlanState, events, workers};
use shared_db::testing::TestDatabase;
use sqlx::PgPool;
use uuid::Uuid;

use crate::{claim, queue_plan};

#[tokio::test]
async fn a_plan_is_queued_with_its_event_and_claimed_oldest_first() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let first = queue_plan(pool, "alice", "first").await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = queue_plan(pool, "alice", "second").await;

    let pending = events::list_by_plan(pool, first, 10).await?;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].event_type, EventType::TaskPending);

    let claimed = plans::claim_next(pool, "w1").await?.expect("work").plan;
    assert_eq!(claimed.id, first);
    assert_eq!(claimed.state, Some(PlanState::Processing));
    assert_eq!(
        claimed.progress_message.as_deref(),
        Some("Picked up by server")
    );
    let worker = workers::list(pool, 200).await?;
    assert_eq!(worker[0].current_task_id, Some(first.to_string()));
    let evs = events::list_by_plan(pool, first, 10).await?;
    assert_eq!(
        evs.iter().map(|e| e.event_type).collect::<Vec<_>>(),
        [EventType::TaskPending, EventType::TaskProcessing]
    );

    assert_eq!(
        plans::claim_next(pool, "w2").await?.map(|c| c.plan.id),
        Some(second)
    );
    assert!(
        plans::claim_next(pool, "w3").await?.is_none(),
        "queue is empty"
    );
    Ok(())
}

#[tokio::test]
async fn a_stop_requested_plan_is_never_claimed() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let id = queue_plan(db.pool(), "alice", "p").await;
    assert_eq!(
        plans::request_stop(db.pool(), id).await?,
        StopOutcome::Stopped
    );
    assert!(plans::claim_next(db.pool(), "w").await?.is_none());
    assert_eq!(
        plans::status(db.pool(), id).await?.state,
        Some(PlanState::Stopped)
    );
    Ok(())
}

#[tokio::test]
async fn progress_is_truncated_to_the_column_width_and_stripped_of_nul_bytes() -> anyhow::Result<()>
{
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let id = queue_plan(pool, "alice", "p").await;
    let run = claim(pool, "w").await;
    let long = format!("a\0b{}", "é".repeat(300));
    let ack = plans::update_progress(
        pool,
        run,
        &Progress {
            percentage: Decimal::new(421234, 4),
            message: &long,
            steps_completed: Some(3),
            steps_total: Some(10),
            current_step: Some(&long),
        },
    )
    .await?;
    assert_eq!(ack, ProgressAck::Recorded);
    let s = plans::status(pool, id).await?;
    let msg = s.progress_message.unwrap();
    assert_eq!(msg.chars().count(), 128);
    assert!(msg.starts_with("abé"));
    assert_eq!(s.current_step.unwrap().chars().count(), 128);
    assert_eq!(s.progress_percentage, Some(Decimal::new(4212, 2)));
    assert!(s.last_progress_at.is_some());
    Ok(())
}

#[tokio::test]
async fn a_stop_request_reaches_the_worker_at_its_next_progress_report() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let id = queue_plan(pool, "alice", "p").await;
    let run = claim(pool, "w").await;
    plans::request_stop(pool, id).await?;
    let ack = plans::update_progress(
        pool,
        run,
        &Progress {
            message: "step",
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(
        ack,
        ProgressAck::Abort {
            state: Some(PlanState::Stopped),
            stop_requested: true
        }
    );
    // The worker ends the run; a failure while stopping keeps the plan stopped.
    let failure = Failure {
        reason: "generation_error",
        error_message: "aborted",
        ..Default::default()
    };
    assert_eq!(
        plans::finish_failed(pool, run, &failure, None).await?,
        PlanState::Stopped
    );
    let evs = events::list_by_plan(pool, id, 10).await?;
    assert_eq!(evs.last().unwrap().message, "Processing -> Stopped");
    assert!(
        workers::list(pool, 200).await?[0].current_task_id.is_none(),
        "worker released"
    );
    Ok(())
}

/// Puts a new plan into `state` through the regular operations; returns the attempt of its last
/// claim (for a pending plan, one that never owned it).
async fn plan_in(pool: &PgPool, state: PlanState) -> anyhow::Result<Attempt> {
    let id = queue_plan(pool, "matrix", "p").await;
    if state == PlanState::Pending {
        return Ok(Attempt {
            plan_id: id,
            token: Uuid::new_v4(),
        });
    }
    let run = claim(pool, "w").await;
    assert_eq!(run.plan_id, id, "the only pending plan");
    match state {
        PlanState::Processing | PlanState::Pending => {}
        PlanState::Completed => plans::finish_completed(pool, run, None).await?,
        PlanState::Failed => {
            let f = Failure {
                reason: "generation_error",
                error_message: "boom",
                ..Default::default()
            };
            plans::finish_failed(pool, run, &f, None).await?;
        }
        PlanState::Stopped => {
            plans::request_stop(pool, id).await?;
        }
        // Only another writer puts a plan there (tests/planexe/other_writers.rs).
        PlanState::Unknown(label) => panic!("no operation leads to `{label}`"),
    }
    assert_eq!(plans::status(pool, id).await?.state, Some(state));
    Ok(run)
}

#[tokio::test]
async fn every_illegal_state_transition_is_refused_and_changes_nothing() -> anyhow::Result<()> {
    use PlanState::*;
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    // (action, target reported in the error, states it is refused from)
    let illegal: &[(&str, &str, &[PlanState])] = &[
        ("complete", "completed", &[Completed, Failed, Stopped]),
        ("fail", "failed", &[Completed, Failed]),
        ("finish as stopped", "stopped", &[Completed, Failed]),
        ("stop", "stopped", &[Completed, Failed]),
        (
            "retry",
            "pending (retry)",
            &[Pending, Processing, Completed],
        ),
        (
            "resume",
            "pending (resume)",
            &[Pending, Processing, Completed],
        ),
    ];
    let mut refused = 0;
    for (action, target, states) in illegal {
        for &state in *states {
            let run = plan_in(pool, state).await?;
            let id = run.plan_id;
            let failure = Failure {
                reason: "internal_error",
                error_message: "x",
                ..Default::default()
            };
            let result = match *action {
                "complete" => plans::finish_completed(pool, run, None).await,
                "fail" => plans::finish_failed(pool, run, &failure, None)
                    .await
                    .map(drop),
                "finish as stopped" => plans::finish_stopped(pool, run, None).await,
                "stop" => plans::request_stop(pool, id).await.map(drop),
                "retry" => plans::retry(pool, id).await.map(drop),
                "resume" => plans::resume(pool, id).await.map(drop),
                _ => unreachable!(),
            };
            match result {
                Err(Error::InvalidTransition { from, to }) => {
                    assert_eq!(from, state.as_str());
                    assert_eq!(to, *target);
                }
                other => panic!("{action} from {state}: expected InvalidTransition, got {other:?}"),
            }
            assert_eq!(
                plans::status(pool, id).await?.state,
                Some(state),
                "{action} from {state}"
            );
            refused += 1;
            // Take a pending plan out of the queue so the next claim finds the next plan.
            if state == Pending {
                plans::request_stop(pool, id).await?;
            }
        }
    }
    assert_eq!(refused, 15);
    assert_eq!(
        plans::request_stop(pool, plan_in(pool, Stopped).await?.plan_id).await?,
        StopOutcome::AlreadyStopped
    );
    // A pending plan belongs to no run: a worker's finish is refused as superseded.
    let pending = plan_in(pool, Pending).await?;
    let failure = Failure::default();
    assert!(matches!(
        plans::finish_completed(pool, pending, None).await,
        Err(Error::Superseded { .. })
    ));
    assert!(matches!(
        plans::finish_failed(pool, pending, &failure, None).await,
        Err(Error::Superseded { .. })
    ));
    assert!(matches!(
        plans::finish_stopped(pool, pending, None).await,
        Err(Error::Superseded { .. })
    ));
    assert_eq!(
        plans::status(pool, pending.plan_id).await?.state,
        Some(Pending)
    );
    Ok(())
}

#[tokio::test]
async fn retry_starts_over_and_resume_continues_with_pipeline_version_two() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let run = plan_in(pool, PlanState::Failed).await?;
    let id = run.plan_id;
    plans::store_artifacts(
        pool,
        run,
        &Artifacts {
            report_html: Some("<html/>"),
            zip_snapshot: Some(&[1, 2, 3]),
            track_activity_jsonl: Some("{}\n"),
            track_activity_bytes: Some(3),
            activity_overview: Some(&json!({ "total_cost": 0.5 })),
        },
    )
    .await?;

    // Resume keeps the artifacts and counts resumes.
    let r = plans::resume(pool, id).await?;
    assert_eq!(r.from, PlanState::Failed);
    let p = plans::get(pool, id).await?;
    assert_eq!(p.state, Some(PlanState::Pending));
    assert!(p.has_generated_report_html && p.has_run_zip_snapshot);
    assert_eq!(p.parameters.as_ref().unwrap()["resume"], json!(true));
    assert_eq!(p.parameters.as_ref().unwrap()["resume_count"], json!(1));
    assert_eq!(p.failure_reason, None);

    // Fail it again, then retry: artifacts and diagnostics are cleared, JSON columns read as absent.
    let run = claim(pool, "w").await;
    assert_eq!(run.plan_id, id);
    let f = Failure {
        reason: "worker_error",
        error_message: "again",
        recoverable: true,
        ..Default::default()
    };
    plans::finish_failed(pool, run, &f, None).await?;
    plans::retry(pool, id).await?;
    let p = plans::get(pool, id).await?;
    assert_eq!(p.state, Some(PlanState::Pending));
    assert!(
        !p.has_generated_report_html && !p.has_run_zip_snapshot && !p.has_run_track_activity_jsonl
    );
    assert_eq!(
        p.run_activity_overview_json, None,
        "JSON null reads as absent"
    );
    assert_eq!(plans::fetch_report_html(pool, id).await?, None);

    // A plan from another pipeline version cannot be resumed.
    let old = plans::enqueue(
        pool,
        &plans::NewPlan {
            prompt: "old",
            parameters: Some(&json!({ "pipeline_version": 1 })),
            ..Default::default()
        },
    )
    .await?
    .id;
    plans::request_stop(pool, old).await?;
    assert!(matches!(
        plans::resume(pool, old).await,
        Err(Error::InvalidInput(_))
    ));
    Ok(())
}

#[tokio::test]
async fn artifacts_are_stored_and_fetched_by_dedicated_functions() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let id = queue_plan(pool, "alice", "p").await;
    let run = claim(pool, "w").await;
    let zip = vec![7u8; 3 * 1024 * 1024];
    plans::store_zip_snapshot(pool, run, &zip).await?;
    plans::store_artifacts(
        pool,
        run,
        &Artifacts {
            report_html: Some("<h1>report</h1>"),
            zip_snapshot: Some(&zip),
            track_activity_jsonl: Some("{\"a\":1}\n"),
            track_activity_bytes: Some(8),
            activity_overview: Some(&json!({ "total_cost": 1.25 })),
        },
    )
    .await?;
    assert_eq!(plans::fetch_zip_snapshot(pool, id).await?, Some(zip));
    assert_eq!(
        plans::fetch_report_html(pool, id).await?.as_deref(),
        Some("<h1>report</h1>")
    );
    assert_eq!(
        plans::fetch_track_activity_jsonl(pool, id)
            .await?
            .as_deref(),
        Some("{\"a\":1}\n")
    );
    let p = plans::get(pool, id).await?;
    assert_eq!(p.run_artifact_layout_version, Some(2));
    assert_eq!(
        p.run_activity_overview_json,
        Some(json!({ "total_cost": 1.25 }).into())
    );
    // `json` keeps the text we sent (bound as text, not re-serialised through jsonb).
    let stored = sqlx::query_scalar!(
        r#"SELECT run_activity_overview_json::text AS "t!" FROM plans WHERE id = $1"#,
        id
    )
    .fetch_one(pool)
    .await?;
    assert_eq!(stored, r#"{"total_cost":1.25}"#);
    assert!(matches!(
        plans::fetch_zip_snapshot(pool, Uuid::new_v4()).await,
        Err(Error::NotFound)
    ));
    Ok(())
}

#[tokio::test]
async fn a_big_snapshot_is_stored_and_fetched_in_slices_and_comes_back_whole() -> anyhow::Result<()>
{
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let id = queue_plan(pool, "alice", "p").await;
    let run = claim(pool, "w").await;
    let mut conn = pool.acquire().await?;
    assert_eq!(
        plans::fetch_zip_snapshot_chunked(&mut conn, id).await?,
        None
    );
    // two full slices and a partial third, every byte distinct from its neighbours
    let zip: Vec<u8> = (0..2 * plans::ZIP_CHUNK_BYTES as usize + 12_345)
        .map(|i| (i % 251) as u8)
        .collect();
    plans::store_zip_snapshot_chunked(&mut conn, run, &zip).await?;
    assert_eq!(
        plans::fetch_zip_snapshot(pool, id).await?,
        Some(zip.clone())
    );
    assert_eq!(
        plans::fetch_zip_snapshot_chunked(&mut conn, id).await?,
        Some(zip.clone())
    );
    let leftover = sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM pg_largeobject_metadata"#)
        .fetch_one(pool)
        .await?;
    assert_eq!(leftover, 0, "the staging large object is unlinked");
    // an exact multiple of the slice size
    let exact = vec![9u8; plans::ZIP_CHUNK_BYTES as usize];
    plans::store_zip_snapshot(pool, run, &exact).await?;
    assert_eq!(
        plans::fetch_zip_snapshot_chunked(&mut conn, id).await?,
        Some(exact)
    );
    assert!(matches!(
        plans::fetch_zip_snapshot_chunked(&mut conn, Uuid::new_v4()).await,
        Err(Error::NotFound)
    ));
    assert!(matches!(
        plans::store_zip_snapshot_chunked(
            &mut conn,
            Attempt {
                plan_id: Uuid::new_v4(),
                token: run.token
            },
            &[1, 2, 3]
        )
        .await,
        Err(Error::NotFound)
    ));
    // an empty zip is stored as an empty value, not as no snapshot
    plans::store_zip_snapshot_chunked(&mut conn, run, &[]).await?;
    assert_eq!(plans::fetch_zip_snapshot(pool, id).await?, Some(vec![]));
    Ok(())
}

#[tokio::test]
async fn a_user_lists_their_plans_newest_first_with_a_prompt_preview() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let long = "x".repeat(1000);
    let mut ids = vec![];
    for _ in 0..5 {
        ids.push(queue_plan(pool, "bob", &long).await);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    queue_plan(pool, "carol", "other").await;
    let page1 = plans::list_by_user(
        pool,
        "bob",
        PageRequest {
            limit: 3,
            offset: 0,
        },
    )
    .await?;
    let page2 = plans::list_by_user(
        pool,
        "bob",
        PageRequest {
            limit: 3,
            offset: 3,
        },
    )
    .await?;
    let listed: Vec<Uuid> = page1.iter().chain(&page2).map(|p| p.id).collect();
    ids.reverse();
    assert_eq!(listed, ids);
    assert_eq!(page1[0].prompt_preview.as_ref().unwrap().len(), 240);
    Ok(())
}

#[tokio::test]
async fn a_duplicate_submission_finds_the_plan_already_queued() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let id = queue_plan(pool, "dave", "same prompt").await;
    let window = Duration::from_secs(600);
    let dup = plans::find_duplicate(pool, "dave", "same prompt", Some("baseline"), window).await?;
    assert_eq!(dup, Some(id));
    assert_eq!(
        plans::find_duplicate(pool, "dave", "same prompt", Some("premium"), window).await?,
        None
    );
    assert_eq!(
        plans::find_duplicate(pool, "erin", "same prompt", Some("baseline"), window).await?,
        None
    );
    plans::request_stop(pool, id).await?;
    assert_eq!(
        plans::find_duplicate(pool, "dave", "same prompt", Some("baseline"), window).await?,
        None
    );
    Ok(())
}

#[tokio::test]
async fn the_reaper_requeues_a_dead_workers_plan_and_not_a_live_ones() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let dead_plan = queue_plan(pool, "alice", "dead").await;
    let live_plan = queue_plan(pool, "alice", "live").await;
    let dead_run = claim(pool, "dead-worker").await;
    let live_run = claim(pool, "live-worker").await;
    assert_eq!((dead_run.plan_id, live_run.plan_id), (dead_plan, live_plan));

    // Wide margins (dead ≥ 2.5 s old, live fresh) against a threshold of 1.5 s, so a slow CI
    // machine cannot blur the two.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // Only the live worker keeps beating (and reporting progress).
    workers::heartbeat(pool, "live-worker", Some(live_run)).await?;

    let stale = workers::list_stale(pool, Duration::from_millis(1500), 200).await?;
    assert_eq!(
        stale.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(),
        ["dead-worker"]
    );

    let reaped = plans::requeue_stale(pool, Duration::from_millis(1500), 3).await?;
    assert_eq!(reaped.requeued, [dead_plan]);
    assert!(reaped.failed.is_empty());
    assert_eq!(
        plans::status(pool, dead_plan).await?.state,
        Some(PlanState::Pending)
    );
    assert_eq!(
        plans::status(pool, live_plan).await?.state,
        Some(PlanState::Processing)
    );
    let dead = workers::list(pool, 200)
        .await?
        .into_iter()
        .find(|w| w.id == "dead-worker")
        .unwrap();
    assert_eq!(dead.current_task_id, None);

    // Nothing left to reap; the re-queued plan is claimable again.
    assert_eq!(
        plans::requeue_stale(pool, Duration::from_millis(1500), 3).await?,
        plans::Reaped::default()
    );
    assert_eq!(
        plans::claim_next(pool, "fresh-worker")
            .await?
            .map(|c| c.plan.id),
        Some(dead_plan)
    );
    Ok(())
}

/// One free step.
struct OneStep;

impl shared_db::worker::Pipeline for OneStep {
    type Error = String;
    fn steps(&self) -> &[&'static str] {
        &["Only"]
    }
    async fn run_step(
        &self,
        _plan: &shared_db::planexe::plans::Plan,
        _step: usize,
    ) -> Result<shared_db::worker::Step, String> {
        Ok(shared_db::worker::Step::Done {
            cost: Decimal::ZERO,
        })
    }
}

/// CI runs this module through PgBouncer in transaction mode too, with the configuration a
/// service uses there (`SHARED_DB_TRANSACTION_POOLER=true`). A worker that listened through
/// that pooler would leave its `LISTEN` on a server connection that the other clients' statements
/// then run on, and they would fail on its notifications.
#[tokio::test]
async fn a_worker_on_the_services_pool_leaves_every_other_statement_working() -> anyhow::Result<()>
{
    use shared_db::worker::{Event, Worker};
    let db = TestDatabase::new().await?;
    let service = shared_db::Database::connect(&shared_db::Config {
        database_url: Some(db.url().into()),
        max_connections: 4,
        ..shared_db::Config::from_env()?
    })
    .await?;
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let worker = Worker::new(service.clone(), "shared-pool", OneStep)
        .idle_poll(Duration::from_millis(50))
        .events(events_tx);
    let running = tokio::spawn(worker.run(stop));

    // Plans arrive one by one, each followed by other statements on the same pool.
    let mut queued = Vec::new();
    for i in 0..20 {
        queued.push(queue_plan(service.pool(), "alice", &format!("plan {i}")).await);
        for _ in 0..10 {
            let pending = plans::list_by_user(service.pool(), "alice", PageRequest::default())
                .await?
                .len();
            assert!(pending <= queued.len());
        }
    }
    let mut completed = 0;
    tokio::time::timeout(Duration::from_secs(30), async {
        while completed < queued.len() {
            match events.recv().await {
                Some(Event::Completed { .. }) => completed += 1,
                Some(_) => {}
                None => anyhow::bail!("the worker ended"),
            }
        }
        anyhow::Ok(())
    })
    .await
    .map_err(|_| anyhow::anyhow!("{completed} of {} plans completed", queued.len()))??;
    stop_tx.send(true)?;
    running.await??;
    Ok(())
}
