//! Row-level reads of nonces, token metrics and feedback: by key, by plan, by user, in bounded
//! pages with a stable order.

use rust_decimal::Decimal;
use serde_json::json;
use shared_db::Error;
use shared_db::planexe::credit_history;
use shared_db::planexe::feedback_item::{self, NewFeedback};
use shared_db::planexe::plans;
use shared_db::planexe::token_metrics::{self, NewTokenMetric};
use shared_db::planexe::{Cursor, Keyset, PageRequest, nonces};
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

    let of_plan = token_metrics::list_for_plan(pool, plan, Default::default()).await?;
    assert_eq!(
        of_plan.iter().map(|m| m.id).collect::<Vec<_>>(),
        [ids[1], ids[0]],
        "newest first, only this plan's calls"
    );
    assert_eq!(of_plan[0].raw_usage_data, Some(json!({ "n": 2 }).into()));
    let of_user = token_metrics::list_for_user(pool, "u1", Keyset::first(2)).await?;
    let after = of_user.last().expect("a full page").cursor();
    let rest = token_metrics::list_for_user(pool, "u1", Keyset::after(2, after)).await?;
    assert_eq!(
        of_user
            .iter()
            .chain(&rest)
            .map(|m| m.id)
            .collect::<Vec<_>>(),
        [ids[2], ids[1], ids[0]]
    );
    assert!(
        token_metrics::list_for_user(pool, "nobody", Default::default())
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

    let mine = feedback_item::list_for_user(pool, "u1", Default::default()).await?;
    assert_eq!(mine.len(), 2);
    assert!(mine.contains(&general) && general.plan_id.is_none());
    assert_eq!(
        feedback_item::list_for_plan(pool, plan, Default::default()).await?,
        [on_plan]
    );
    assert_eq!(
        feedback_item::list_for_user(pool, "u1", Keyset::after(1, mine[0].cursor())).await?,
        [mine[1].clone()]
    );
    Ok(())
}

/// Pages of `limit` by keyset, to the end.
async fn all_keyset_pages<T, I: Clone, F, Fut>(
    limit: i64,
    cursor: impl Fn(&T) -> Cursor<I>,
    page: F,
) -> anyhow::Result<Vec<T>>
where
    F: Fn(Keyset<I>) -> Fut,
    Fut: std::future::Future<Output = shared_db::Result<Vec<T>>>,
{
    let mut rows = Vec::new();
    let mut next = Keyset::first(limit);
    loop {
        let got = page(next.clone()).await?;
        assert!(got.len() as i64 <= limit, "a page holds at most its limit");
        let Some(last) = got.last() else { break };
        next = Keyset::after(limit, cursor(last));
        rows.extend(got);
    }
    Ok(rows)
}

#[tokio::test]
async fn keyset_pages_walk_a_list_in_its_order_across_equal_times_and_missing_times()
-> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let user = crate::user_with_credits(pool, "heavy", Decimal::ZERO).await;
    // Seven plans and seven ledger rows: three share one time, two share another, two have none
    // (a writer that left the column NULL).
    for i in 0..7 {
        crate::queue_plan(pool, "heavy", &format!("p{i}")).await;
        credit_history::grant(&mut *pool.acquire().await?, user, Decimal::ONE, None, None).await?;
    }
    sqlx::raw_sql(
        "WITH ranked AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM plans
                         WHERE user_id = 'heavy')
         UPDATE plans t SET timestamp_created = CASE WHEN n <= 3 THEN timestamp '2026-01-01 10:00'
                                                     WHEN n <= 5 THEN timestamp '2026-01-02 10:00'
                                                     ELSE NULL END
         FROM ranked WHERE t.id = ranked.id;
         WITH ranked AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM credit_history)
         UPDATE credit_history t SET created_at = CASE WHEN n <= 3 THEN timestamp '2026-01-01 10:00'
                                                       WHEN n <= 5 THEN timestamp '2026-01-02 10:00'
                                                       ELSE NULL END
         FROM ranked WHERE t.id = ranked.id;",
    )
    .execute(pool)
    .await?;

    let everything = plans::list_by_user(
        pool,
        "heavy",
        PageRequest {
            limit: 200,
            offset: 0,
        },
    )
    .await?;
    assert_eq!(everything.len(), 7);
    for limit in [1, 2, 3, 7] {
        let paged = all_keyset_pages(
            limit,
            |p: &plans::PlanListItem| p.cursor(),
            |k| plans::list_by_user_keyset(pool, "heavy", k),
        )
        .await?;
        assert_eq!(paged, everything, "plans by keyset, pages of {limit}");
    }

    let ledger = all_keyset_pages(
        200,
        |e: &credit_history::CreditEntry| e.cursor(),
        |k| credit_history::list_for_user(pool, user, k),
    )
    .await?;
    assert_eq!(ledger.len(), 7);
    let order: Vec<_> = ledger.iter().map(|e| (e.created_at, e.id)).collect();
    let mut expected = order.clone();
    // newest first, rows without a time last, ties by id descending
    expected.sort_by(|a, b| match (a.0, b.0) {
        (Some(x), Some(y)) => y.cmp(&x).then(b.1.cmp(&a.1)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => b.1.cmp(&a.1),
    });
    assert_eq!(order, expected);
    for limit in [1, 2, 3] {
        let paged = all_keyset_pages(
            limit,
            |e: &credit_history::CreditEntry| e.cursor(),
            |k| credit_history::list_for_user(pool, user, k),
        )
        .await?;
        assert_eq!(paged, ledger, "ledger by keyset, pages of {limit}");
    }
    Ok(())
}
