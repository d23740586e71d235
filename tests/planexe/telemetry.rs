//! Events, workers, nonces housekeeping, token metrics and feedback.

use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use shared_db::planexe::feedback_item::{self, NewFeedback};
use shared_db::planexe::token_metrics::{self, NewTokenMetric};
use shared_db::planexe::{EventType, PlanState, events, nonces, workers};
use shared_db::testing::TestDatabase;
use uuid::Uuid;

#[tokio::test]
async fn events_are_appended_and_polled() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let plan = Uuid::new_v4();
    let ctx = json!({ "task_id": plan.to_string(), "n": 1 });
    let first = events::append(pool, EventType::GenericEvent, "one", Some(&ctx)).await?;
    let second = events::append(
        pool,
        EventType::GenericError,
        "two\0",
        Some(&serde_json::Value::Null),
    )
    .await?;
    assert_eq!(first.context, Some(ctx.into()));
    assert_eq!(second.context, None, "JSON null reads as absent");
    assert_eq!(second.message, "two");
    assert_eq!(
        events::list_since(pool, first.id, 10).await?,
        vec![second.clone()]
    );
    assert_eq!(events::list_by_plan(pool, plan, 10).await?.len(), 1);
    assert_eq!(
        events::list_by_type(pool, EventType::GenericError, 10).await?,
        vec![second]
    );
    let now = Utc::now();
    let window = events::list_in_range(
        pool,
        now - chrono::Duration::minutes(1),
        now + chrono::Duration::minutes(1),
        10,
    )
    .await?;
    assert_eq!(window.len(), 2);
    assert!(
        (window[0].timestamp - now).num_seconds().abs() < 5,
        "timestamps are UTC"
    );
    Ok(())
}

#[tokio::test]
async fn heartbeats_upsert_and_old_nonces_are_purged() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let first = workers::heartbeat(pool, "w-1", None).await?;
    crate::queue_plan(pool, "alice", "p").await;
    let run = crate::claim(pool, "w-1").await;
    let busy = workers::heartbeat(pool, "w-1", Some(run)).await?;
    assert_eq!(busy.started_at, first.started_at);
    assert_eq!(busy.current_task_id, Some(run.plan_id.to_string()));
    assert!(
        workers::list_stale(pool, Duration::from_secs(60), 200)
            .await?
            .is_empty()
    );

    nonces::consume(pool, "DEMO_1", None).await?;
    assert_eq!(
        nonces::purge_older_than(pool, Duration::from_secs(3600)).await?,
        0
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        nonces::purge_older_than(pool, Duration::from_secs(1)).await?,
        1
    );
    assert!(nonces::consume(pool, "DEMO_1", None).await?.is_new);
    Ok(())
}

#[tokio::test]
async fn token_usage_and_feedback_are_recorded_and_aggregated() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let plan = Uuid::new_v4();
    for (model, tokens, ok) in [
        ("gpt-x", 100, true),
        ("gpt-x", 50, false),
        ("llama", 10, true),
    ] {
        token_metrics::record(
            pool,
            &NewTokenMetric {
                llm_model: model,
                plan_id: Some(plan),
                user_id: Some("u1"),
                input_tokens: Some(tokens),
                output_tokens: Some(tokens / 2),
                cost_usd: Some(0.25),
                success: ok,
                raw_usage_data: Some(&json!({ "tokens": tokens })),
                ..Default::default()
            },
        )
        .await?;
    }
    let by_plan = token_metrics::usage_for_plan(pool, plan)
        .await?
        .expect("usage");
    assert_eq!(
        (by_plan.calls, by_plan.failed_calls, by_plan.input_tokens),
        (3, 1, 160)
    );
    assert!((by_plan.cost_usd - 0.75).abs() < 1e-9);
    assert_eq!(
        token_metrics::usage_for_user(pool, "u1")
            .await?
            .unwrap()
            .output_tokens,
        80
    );
    let now = Utc::now();
    let by_model = token_metrics::usage_by_model(
        pool,
        now - chrono::Duration::hours(1),
        now + chrono::Duration::hours(1),
    )
    .await?;
    assert_eq!(
        by_model
            .iter()
            .map(|m| (m.key.as_str(), m.calls))
            .collect::<Vec<_>>(),
        [("gpt-x", 2), ("llama", 1)]
    );

    for rating in [Some(4), Some(2), None] {
        feedback_item::record(
            pool,
            &NewFeedback {
                category: "quality",
                message: "ok",
                plan_id: Some(plan),
                rating,
                user_id: Some("u1"),
                plan_state: Some(PlanState::Completed),
                ..Default::default()
            },
        )
        .await?;
    }
    let summary = feedback_item::summary_for_plan(pool, plan).await?;
    assert_eq!(
        (summary.count, summary.rated, summary.average_rating),
        (3, 2, Some(3.0))
    );
    assert_eq!(feedback_item::summary_for_user(pool, "u1").await?.count, 3);
    assert_eq!(
        feedback_item::list_for_plan(pool, plan, Default::default()).await?[0]
            .plan_state
            .as_deref(),
        Some("completed")
    );
    Ok(())
}
