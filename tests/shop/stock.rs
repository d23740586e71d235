//! Stock moves only by delta: an admin's edit never writes it, `adjust_stock` is atomic and never
//! goes below zero, and edits of products, categories and shops are versioned.

use std::sync::Arc;

use shared_db::Error;
use shared_db::shop::categories::{self, CategoryFields, CategoryTranslationInput};
use shared_db::shop::orders::{self, OrderFields, OrderItem};
use shared_db::shop::products::{self, ProductFields, ProductTranslationInput};
use shared_db::shop::{ProductId, STALE_VERSION, shops};
use tokio::sync::Barrier;

use super::{ALPHA, assert_conflict, assert_invalid, assert_not_found, two_shops};

fn fields(name: &str) -> ProductFields {
    ProductFields::new(
        Some(ALPHA.category),
        ProductTranslationInput {
            main_name: name.into(),
            main_description: format!("About {name}"),
            main_description_short: name.into(),
            ..Default::default()
        },
    )
}

fn one_of(product_id: ProductId) -> OrderFields {
    OrderFields {
        items: vec![OrderItem {
            description: None,
            price: rust_decimal::Decimal::ONE,
            product_id,
            product_name: "Poster".into(),
            quantity: 1,
        }],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_admin_edit_from_a_stale_read_racing_completions_loses_no_decrement()
-> anyhow::Result<()> {
    let t = two_shops().await?;
    for round in 0..3 {
        let mut conn = t.pool().acquire().await?;
        let poster = products::create(&mut conn, ALPHA.shop, &fields("Poster"), 50).await?;
        // the admin opens the edit form now: stock 50, this version
        let form = products::get(&mut *conn, ALPHA.shop, poster.item.id).await?;
        let mut placed = Vec::new();
        for _ in 0..10 {
            placed.push(
                orders::create(&mut conn, ALPHA.shop, &one_of(poster.item.id), None)
                    .await?
                    .id,
            );
        }
        drop(conn);

        let barrier = Arc::new(Barrier::new(placed.len() + 1));
        let mut tasks = Vec::new();
        for order in placed {
            let (pool, barrier) = (t.pool().clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                let mut conn = pool.acquire().await?;
                barrier.wait().await;
                orders::complete(&mut conn, ALPHA.shop, order, ALPHA.user)
                    .await
                    .map(|_| ())
            }));
        }
        let (pool, barrier) = (t.pool().clone(), barrier.clone());
        let edit = tokio::spawn(async move {
            let mut conn = pool.acquire().await?;
            barrier.wait().await;
            let mut renamed = fields(&format!("Signed poster {round}"));
            renamed.featured = true;
            products::update(
                &mut conn,
                ALPHA.shop,
                form.item.id,
                form.item.version,
                &renamed,
            )
            .await
            .map(|_| ())
        });
        for task in tasks {
            task.await??;
        }
        edit.await??;

        let after = products::get(t.pool(), ALPHA.shop, poster.item.id).await?;
        assert_eq!(after.item.stock, 40, "ten sales, none undone by the edit");
        assert!(after.item.featured, "the edit landed too");
        assert_eq!(after.item.version, form.item.version + 1);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn adjust_stock_is_atomic_and_never_below_zero() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    let mug = products::create(&mut conn, ALPHA.shop, &fields("Mug"), 10)
        .await?
        .item
        .id;
    assert_eq!(
        products::adjust_stock(&mut *conn, ALPHA.shop, mug, 5).await?,
        15
    );
    assert_eq!(
        products::adjust_stock(&mut *conn, ALPHA.shop, mug, -5).await?,
        10
    );
    drop(conn);

    // twenty buyers take one each from ten: exactly ten succeed
    let barrier = Arc::new(Barrier::new(20));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (pool, barrier) = (t.pool().clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                products::adjust_stock(&pool, ALPHA.shop, mug, -1).await
            })
        })
        .collect();
    let (mut ok, mut short) = (0, 0);
    for task in tasks {
        match task.await? {
            Ok(_) => ok += 1,
            // `available` is the stock when refused, not what the statement saw before it
            // waited behind the other buyers
            Err(Error::InsufficientStock {
                requested: 1,
                available: 0,
                ..
            }) => short += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((ok, short), (10, 10));
    let mut conn = t.pool().acquire().await?;
    assert_eq!(
        products::get(&mut *conn, ALPHA.shop, mug).await?.item.stock,
        0
    );
    // below zero, past i32::MAX, or another shop's product: refused, nothing changed
    match products::adjust_stock(&mut *conn, ALPHA.shop, mug, -1).await {
        Err(Error::InsufficientStock { available: 0, .. }) => {}
        other => panic!("expected InsufficientStock, got {other:?}"),
    }
    products::adjust_stock(&mut *conn, ALPHA.shop, mug, i32::MAX).await?;
    assert_invalid(products::adjust_stock(&mut *conn, ALPHA.shop, mug, 1).await);
    assert_not_found(products::adjust_stock(&mut *conn, super::BETA.shop, mug, 1).await);
    Ok(())
}

#[tokio::test]
async fn a_stale_version_is_a_conflict_that_changes_nothing() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;

    // products
    let read = products::get(&mut *conn, ALPHA.shop, ALPHA.product).await?;
    products::update(
        &mut conn,
        ALPHA.shop,
        ALPHA.product,
        read.item.version,
        &fields("First"),
    )
    .await?;
    assert_conflict(
        products::update(
            &mut conn,
            ALPHA.shop,
            ALPHA.product,
            read.item.version,
            &fields("Second"),
        )
        .await,
        STALE_VERSION,
    );
    let now = products::get(&mut *conn, ALPHA.shop, ALPHA.product).await?;
    assert_eq!(now.name(shared_db::shop::Lang::Main), Some("First"));

    // categories
    let cat = categories::get(&mut *conn, ALPHA.shop, ALPHA.category).await?;
    let cat_fields = |name: &str| CategoryFields {
        translation: CategoryTranslationInput {
            main_name: name.into(),
            main_description: "All".into(),
            ..Default::default()
        },
        ..Default::default()
    };
    categories::update(
        &mut conn,
        ALPHA.shop,
        ALPHA.category,
        cat.item.version,
        &cat_fields("A"),
    )
    .await?;
    assert_conflict(
        categories::update(
            &mut conn,
            ALPHA.shop,
            ALPHA.category,
            cat.item.version,
            &cat_fields("B"),
        )
        .await,
        STALE_VERSION,
    );
    assert_eq!(
        categories::get(&mut *conn, ALPHA.shop, ALPHA.category)
            .await?
            .name(shared_db::shop::Lang::Main),
        Some("A")
    );

    // shops
    let shop = shops::get(&mut *conn, ALPHA.shop).await?;
    let mut renamed = shops::ShopFields::named("alpha renamed");
    shops::update(&mut conn, ALPHA.shop, shop.version, &renamed).await?;
    renamed.name = "alpha again".into();
    assert_conflict(
        shops::update(&mut conn, ALPHA.shop, shop.version, &renamed).await,
        STALE_VERSION,
    );
    assert_eq!(
        shops::get(&mut *conn, ALPHA.shop).await?.name,
        "alpha renamed"
    );
    // a missing row is still NotFound, not a conflict
    assert_not_found(
        products::update(&mut conn, super::BETA.shop, ALPHA.product, 1, &fields("x")).await,
    );
    Ok(())
}
