//! Row-level reads of nonces, token metrics and feedback: by key, by plan, by user, in bounded
//! pages with a stable order.

use serde_json::json;
use shared_db::Error;
use shared_db::planexe::feedback_item::{self, NewFeedback};
use shared_db::planexe::token_metrics::{self, NewTokenMetric};
use shared_db::planexe::{PageRequest, nonces};
use shared_db::testing::TestDatabase;
use uuid::Uuid;

fn page(limit: i64, offset: i64) -> PageRequest {
    PageRequest { limit, offset }
}

#[tokio::test]
async fn nonces_are_read_by_key_and_paged_most_recent_first() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    for key in ["CREATE_a", "CREATE_b", "CREATE_c"] {
        nonces::consume(pool, key, Some(&json!({ "ip": key }))).await?;
    }
    nonces::consume(pool, "CREATE_a", None).await?; // a replay makes "a" the most recent

    let a = nonces::get(pool, "CREATE_a").await?;
    assert_eq!((a.request_count, a.context), (2, None));
    assert!(matches!(
        nonces::get(pool, "CREATE_never").await,
        Err(Error::NotFound)
    ));

    let keys = |rows: Vec<nonces::Nonce>| rows.into_iter().map(|n| n.nonce_key).collect::<Vec<_>>();
    let first = keys(nonces::list_recent(pool, page(2, 0)).await?);
    let second = keys(nonces::list_recent(pool, page(2, 2)).await?);
    assert_eq!(first[0], "CREATE_a");
    assert_eq!(first.len() + second.len(), 3);
    assert!(
        second.iter().all(|k| !first.contains(k)),
        "pages do not overlap"
    );

    sqlx::raw_sql(
        "INSERT INTO nonces (nonce_key, created_at, last_accessed_at, request_count)
         SELECT 'DEMO_' || g, now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc', 1
         FROM generate_series(1, 250) g",
    )
    .execute(pool)
    .await?;
    assert_eq!(
        nonces::list_recent(pool, page(10_000, 0)).await?.len(),
        200,
        "a page holds at most 200 rows"
    );
    Ok(())
}

#[tokio::test]
async fn token_metrics_are_paged_by_plan_and_by_user() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let (plan, other) = (Uuid::new_v4(), Uuid::new_v4());
    let mut ids = Vec::new();
    for (n, p) in [(1, plan), (2, plan), (3, other)] {
        let call = NewTokenMetric {
            llm_model: "model",
            plan_id: Some(p),
            user_id: Some("u1"),
            input_tokens: Some(n),
            success: true,
            raw_usage_data: Some(&json!({ "n": n })),
            ..Default::default()
        };
        ids.push(token_metrics::record(pool, &call).await?.id);
    }

    let of_plan = token_metrics::list_for_plan(pool, plan, PageRequest::default()).await?;
    assert_eq!(
        of_plan.iter().map(|m| m.id).collect::<Vec<_>>(),
        [ids[1], ids[0]],
        "newest first, only this plan's calls"
    );
    assert_eq!(of_plan[0].raw_usage_data, Some(json!({ "n": 2 }).into()));
    let of_user = token_metrics::list_for_user(pool, "u1", page(2, 0)).await?;
    let rest = token_metrics::list_for_user(pool, "u1", page(2, 2)).await?;
    assert_eq!(
        of_user
            .iter()
            .chain(&rest)
            .map(|m| m.id)
            .collect::<Vec<_>>(),
        [ids[2], ids[1], ids[0]]
    );
    assert!(
        token_metrics::list_for_user(pool, "nobody", PageRequest::default())
            .await?
            .is_empty()
    );
    Ok(())
}

#[tokio::test]
async fn feedback_is_listed_by_user_including_feedback_without_a_plan() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let plan = Uuid::new_v4();
    let on_plan = feedback_item::record(
        pool,
        &NewFeedback {
            category: "bug",
            message: "the plan stalled",
            plan_id: Some(plan),
            user_id: Some("u1"),
            ..Default::default()
        },
    )
    .await?;
    let general = feedback_item::record(
        pool,
        &NewFeedback {
            category: "general",
            message: "nice tool",
            user_id: Some("u1"),
            rating: Some(5),
            ..Default::default()
        },
    )
    .await?;

    let mine = feedback_item::list_for_user(pool, "u1", PageRequest::default()).await?;
    assert_eq!(mine.len(), 2);
    assert!(mine.contains(&general) && general.plan_id.is_none());
    assert_eq!(
        feedback_item::list_for_plan(pool, plan, PageRequest::default()).await?,
        [on_plan]
    );
    assert_eq!(
        feedback_item::list_for_user(pool, "u1", page(1, 1))
            .await?
            .len(),
        1
    );
    Ok(())
}
