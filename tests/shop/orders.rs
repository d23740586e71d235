//! Orders: numbers per shop without races or gaps; completion takes stock under locks and never
//! below zero; status moves only pending → complete | cancelled.

use std::sync::Arc;

use rust_decimal::Decimal;
use shared_db::Error;
use shared_db::shop::ProductId;
use shared_db::shop::orders::{self, OrderFields, OrderItem, OrderStatus};
use shared_db::shop::products::{self, ProductFields, ProductTranslationInput};
use sqlx::PgConnection;
use tokio::sync::Barrier;
use uuid::Uuid;

use super::{ALPHA, BETA, assert_not_found, two_shops};

async fn product_with_stock(conn: &mut PgConnection, stock: i32) -> anyhow::Result<ProductId> {
    let new = ProductFields::new(
        Some(ALPHA.category),
        ProductTranslationInput {
            main_name: "Last one".into(),
            main_description: "Only a few left".into(),
            main_description_short: "Few".into(),
            ..Default::default()
        },
    );
    Ok(products::create(conn, ALPHA.shop, &new, stock)
        .await?
        .item
        .id)
}

fn order_of(product_id: ProductId, quantity: i32) -> OrderFields {
    OrderFields {
        account_id: Some(ALPHA.account),
        notes: None,
        items: vec![OrderItem {
            description: None,
            price: Decimal::new(1000, 2),
            product_id,
            product_name: "Last one".into(),
            quantity,
        }],
        total: Some(Decimal::new(1000, 2) * Decimal::from(quantity)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_completions_race_for_the_last_item() -> anyhow::Result<()> {
    let t = two_shops().await?;
    // several rounds, so the race is really run, not won by accident of scheduling
    for _ in 0..5 {
        let mut conn = t.pool().acquire().await?;
        let product = product_with_stock(&mut conn, 1).await?;
        let first = orders::create(&mut conn, ALPHA.shop, &order_of(product, 1), None).await?;
        let second = orders::create(&mut conn, ALPHA.shop, &order_of(product, 1), None).await?;
        drop(conn);

        let barrier = Arc::new(Barrier::new(2));
        let tasks = [first.id, second.id].map(|order| {
            let pool = t.pool().clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                let mut conn = pool.acquire().await?;
                barrier.wait().await;
                orders::complete(&mut conn, ALPHA.shop, order, ALPHA.user).await
            })
        });
        let mut ok = 0;
        let mut short = 0;
        for task in tasks {
            match task.await? {
                Ok(order) => {
                    assert_eq!(order.status, OrderStatus::Complete);
                    assert_eq!(order.completed_by, Some(ALPHA.user));
                    assert!(order.completed_at.is_some());
                    ok += 1;
                }
                Err(Error::InsufficientStock {
                    product_id,
                    requested,
                    available,
                }) => {
                    assert_eq!((product_id, requested, available), (product.get(), 1, 0));
                    short += 1;
                }
                Err(other) => panic!("unexpected error {other:?}"),
            }
        }
        assert_eq!((ok, short), (1, 1));
        let mut conn = t.pool().acquire().await?;
        assert_eq!(
            products::get(&mut *conn, ALPHA.shop, product)
                .await?
                .item
                .stock,
            0
        );
        // the refused order is untouched and still pending
        let mut pending = 0;
        for id in [first.id, second.id] {
            if orders::get(&mut *conn, ALPHA.shop, id).await?.status == OrderStatus::Pending {
                pending += 1;
            }
        }
        assert_eq!(pending, 1);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_orders_get_unique_gap_free_numbers() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let barrier = Arc::new(Barrier::new(20));
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let pool = t.pool().clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                let mut conn = pool.acquire().await?;
                barrier.wait().await;
                // every fourth order names beta's customer: refused, and its number given back
                let account = if i % 4 == 3 {
                    BETA.account
                } else {
                    ALPHA.account
                };
                let new = OrderFields {
                    account_id: Some(account),
                    ..Default::default()
                };
                orders::create(&mut conn, ALPHA.shop, &new, None).await
            })
        })
        .collect();
    let mut numbers = Vec::new();
    let mut refused = 0;
    for task in tasks {
        match task.await? {
            Ok(order) => numbers.push(order.customer_order_id),
            Err(Error::NotFound) => refused += 1,
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!(refused, 5);
    numbers.sort();
    // the fixture's order is number 1
    assert_eq!(numbers, (2..=16).collect::<Vec<_>>());
    // beta's numbering is its own
    let mut conn = t.pool().acquire().await?;
    let beta = orders::create(&mut conn, BETA.shop, &Default::default(), None).await?;
    assert_eq!(beta.customer_order_id, 2);
    Ok(())
}

#[tokio::test]
async fn completion_takes_all_stock_or_none() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    let plenty = product_with_stock(&mut conn, 10).await?;
    let scarce = product_with_stock(&mut conn, 1).await?;
    let mut new = order_of(plenty, 4);
    new.items.extend(order_of(scarce, 2).items);
    // the same product twice in one order counts once, summed
    new.items.extend(order_of(plenty, 1).items);
    let order = orders::create(&mut conn, ALPHA.shop, &new, None).await?;
    match orders::complete(&mut conn, ALPHA.shop, order.id, ALPHA.user).await {
        Err(Error::InsufficientStock {
            product_id,
            requested: 2,
            available: 1,
        }) => {
            assert_eq!(product_id, scarce.get())
        }
        other => panic!("expected InsufficientStock, got {other:?}"),
    }
    // nothing was taken, the order is still pending
    assert_eq!(
        products::get(&mut *conn, ALPHA.shop, plenty)
            .await?
            .item
            .stock,
        10
    );
    assert_eq!(
        orders::get(&mut *conn, ALPHA.shop, order.id).await?.status,
        OrderStatus::Pending
    );

    let mut both = order_of(plenty, 4);
    both.items.extend(order_of(plenty, 1).items);
    let ok = orders::create(&mut conn, ALPHA.shop, &both, None).await?;
    let done = orders::complete(&mut conn, ALPHA.shop, ok.id, ALPHA.user).await?;
    assert_eq!(done.order_info.0.len(), 2);
    assert_eq!(
        products::get(&mut *conn, ALPHA.shop, plenty)
            .await?
            .item
            .stock,
        5
    );
    Ok(())
}

#[tokio::test]
async fn status_moves_only_from_pending() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    let completed = orders::complete(&mut conn, ALPHA.shop, ALPHA.order, ALPHA.user).await?;
    assert_eq!(completed.status, OrderStatus::Complete);
    // the fixture's order took one of the socks' five
    assert_eq!(
        products::get(&mut *conn, ALPHA.shop, ALPHA.product)
            .await?
            .item
            .stock,
        4
    );
    // completing again as the same user answers with the completed order and takes nothing
    let again = orders::complete(&mut conn, ALPHA.shop, ALPHA.order, ALPHA.user).await?;
    assert_eq!(again.completed_at, completed.completed_at);
    assert_eq!(
        products::get(&mut *conn, ALPHA.shop, ALPHA.product)
            .await?
            .item
            .stock,
        4
    );
    for r in [
        orders::complete(&mut conn, ALPHA.shop, ALPHA.order, Uuid::new_v4()).await,
        orders::cancel(&mut conn, ALPHA.shop, ALPHA.order).await,
        orders::update(&mut conn, ALPHA.shop, ALPHA.order, &Default::default()).await,
    ] {
        assert!(matches!(r, Err(Error::InvalidTransition { .. })), "{r:?}");
    }
    let cancelled = orders::cancel(&mut conn, BETA.shop, BETA.order).await?;
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    assert!(cancelled.completed_at.is_none());
    assert!(matches!(
        orders::complete(&mut conn, BETA.shop, BETA.order, BETA.user).await,
        Err(Error::InvalidTransition { .. })
    ));
    assert_eq!(
        products::get(&mut *conn, BETA.shop, BETA.product)
            .await?
            .item
            .stock,
        5
    );
    // completing needs a member of the shop: an unknown user, or beta's admin, is not one
    let pending = orders::create(&mut conn, ALPHA.shop, &Default::default(), None).await?;
    assert_not_found(orders::complete(&mut conn, ALPHA.shop, pending.id, Uuid::new_v4()).await);
    assert_not_found(orders::complete(&mut conn, ALPHA.shop, pending.id, BETA.user).await);
    Ok(())
}

#[tokio::test]
async fn order_items_round_trip_as_typed_json() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    let fixture = orders::get(&mut *conn, ALPHA.shop, ALPHA.order).await?;
    assert_eq!(fixture.order_info.0[0].product_name, "alpha socks");
    assert_eq!(fixture.order_info.0[0].quantity, 1);
    let new = order_of(ALPHA.product, 3);
    let created = orders::create(&mut conn, ALPHA.shop, &new, None).await?;
    assert_eq!(created.order_info.0, new.items);
    let found =
        orders::get_by_customer_order_id(&mut *conn, ALPHA.shop, created.customer_order_id).await?;
    assert_eq!(found.id, created.id);
    // quantities must be positive
    assert!(matches!(
        orders::create(&mut conn, ALPHA.shop, &order_of(ALPHA.product, 0), None).await,
        Err(Error::InvalidInput(_))
    ));
    Ok(())
}

#[tokio::test]
async fn malformed_items_from_another_service_are_an_error_not_a_panic() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    sqlx::query!(
        r#"UPDATE shop.orders SET order_info = '[{"product_id": "not a uuid", "quantity": "lots"}]'
           WHERE id = $1"#,
        ALPHA.order
    )
    .execute(&mut *conn)
    .await?;
    assert!(matches!(
        orders::get(&mut *conn, ALPHA.shop, ALPHA.order).await,
        Err(Error::Database(_))
    ));
    assert!(matches!(
        orders::complete(&mut conn, ALPHA.shop, ALPHA.order, ALPHA.user).await,
        Err(Error::Database(_))
    ));
    // nothing was taken
    assert_eq!(
        products::get(&mut *conn, ALPHA.shop, ALPHA.product)
            .await?
            .item
            .stock,
        5
    );
    Ok(())
}
