//! Orders are safe to repeat after an unknown outcome: a create retried with its key returns the
//! order it placed, a completion retried by the same user returns the completed order, and stock
//! is taken once.

use std::sync::Arc;

use shared_db::shop::orders::{self, OrderFields, OrderStatus};
use shared_db::shop::products;
use shared_db::testing::TestDatabase;
use shared_db::testing::proxy::FaultProxy;
use shared_db::tx::{self, RetryPolicy};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::sync::Barrier;
use uuid::Uuid;

use super::{ALPHA, two_shops};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_create_repeated_with_its_key_places_one_order() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let key = Uuid::new_v4();
    let fields = OrderFields {
        account_id: Some(ALPHA.account),
        notes: Some("first try".into()),
        ..Default::default()
    };
    let mut conn = t.pool().acquire().await?;
    let first = orders::create(&mut conn, ALPHA.shop, &fields, Some(key)).await?;
    let again = orders::create(&mut conn, ALPHA.shop, &fields, Some(key)).await?;
    assert_eq!(
        (again.id, again.customer_order_id),
        (first.id, first.customer_order_id)
    );
    drop(conn);

    // racing repeats of another key: one order, and no number is lost to the losers
    let key = Uuid::new_v4();
    let barrier = Arc::new(Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (pool, barrier, fields) = (t.pool().clone(), barrier.clone(), fields.clone());
            tokio::spawn(async move {
                let mut conn = pool.acquire().await?;
                barrier.wait().await;
                orders::create(&mut conn, ALPHA.shop, &fields, Some(key)).await
            })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await??.id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "every repeat answered with the same order");
    let next = orders::create(&mut *t.pool().acquire().await?, ALPHA.shop, &fields, None).await?;
    assert_eq!(
        next.customer_order_id,
        first.customer_order_id + 2,
        "gap-free"
    );
    Ok(())
}

#[tokio::test]
async fn a_create_key_reused_with_another_order_is_refused_naming_the_field() -> anyhow::Result<()>
{
    let t = two_shops().await?;
    let key = Uuid::new_v4();
    let fields = OrderFields {
        account_id: Some(ALPHA.account),
        notes: Some("first try".into()),
        ..Default::default()
    };
    let mut conn = t.pool().acquire().await?;
    orders::create(&mut conn, ALPHA.shop, &fields, Some(key)).await?;
    let other_notes = OrderFields {
        notes: Some("something else".into()),
        ..fields.clone()
    };
    let other_total = OrderFields {
        total: Some("9.90".parse()?),
        ..fields.clone()
    };
    for (other, field) in [(other_notes, "notes"), (other_total, "total")] {
        match orders::create(&mut conn, ALPHA.shop, &other, Some(key)).await {
            Err(shared_db::Error::IdempotencyKeyReused { field: f }) => assert_eq!(f, field),
            got => panic!("{field}: expected IdempotencyKeyReused, got {got:?}"),
        }
    }
    let placed = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM shop.orders WHERE idempotency_key = $1"#,
        key
    )
    .fetch_one(t.pool())
    .await?;
    assert_eq!(placed, 1);
    Ok(())
}

#[tokio::test]
async fn a_completion_repeated_by_the_same_user_takes_stock_once() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    let first = orders::complete(&mut conn, ALPHA.shop, ALPHA.order, ALPHA.user).await?;
    let again = orders::complete(&mut conn, ALPHA.shop, ALPHA.order, ALPHA.user).await?;
    assert_eq!(again.status, OrderStatus::Complete);
    assert_eq!(again.completed_at, first.completed_at);
    let socks = products::get(&mut *conn, ALPHA.shop, ALPHA.product).await?;
    assert_eq!(socks.item.stock, 4, "five in the fixture, one taken once");
    Ok(())
}

/// A pool that reaches the test database through `proxy`.
async fn pool_through(proxy: &FaultProxy, db: &TestDatabase) -> anyhow::Result<PgPool> {
    Ok(PgPoolOptions::new()
        .max_connections(2)
        .connect_with(proxy.connect_options(db.connect_options()))
        .await?)
}

#[tokio::test]
async fn create_and_complete_retried_after_a_lost_commit_apply_once() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let proxy = FaultProxy::in_front_of(t.connect_options()).await?;
    let pool = pool_through(&proxy, &t).await?;
    let fields = OrderFields {
        items: vec![shared_db::shop::orders::OrderItem {
            description: None,
            price: rust_decimal::Decimal::TEN,
            product_id: ALPHA.product,
            product_name: "alpha socks".into(),
            quantity: 2,
        }],
        ..Default::default()
    };
    let key = Uuid::new_v4();

    // the first attempt of each operation commits on the server, and the client hears nothing
    let placed = tx::retry(RetryPolicy::idempotent(), async |attempt| {
        if attempt == 1 {
            proxy.drop_next_commit();
        }
        let mut conn = pool.acquire().await?;
        orders::create(&mut conn, ALPHA.shop, &fields, Some(key)).await
    })
    .await?;
    let completed = tx::retry(RetryPolicy::idempotent(), async |attempt| {
        if attempt == 1 {
            proxy.drop_next_commit();
        }
        let mut conn = pool.acquire().await?;
        orders::complete(&mut conn, ALPHA.shop, placed.id, ALPHA.user).await
    })
    .await?;
    assert_eq!(
        proxy.commits_dropped(),
        2,
        "both first attempts lost their COMMIT answer"
    );

    assert_eq!(completed.id, placed.id);
    assert_eq!(completed.status, OrderStatus::Complete);
    let orders_with_key = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM shop.orders WHERE idempotency_key = $1"#,
        key
    )
    .fetch_one(t.pool())
    .await?;
    assert_eq!(orders_with_key, 1, "one order placed");
    let socks = products::get(t.pool(), ALPHA.shop, ALPHA.product).await?;
    assert_eq!(socks.item.stock, 3, "five in the fixture, two taken once");
    Ok(())
}
