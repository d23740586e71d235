//! Ordering numbers: appended per shop (categories) and per (shop, category) (products), without
//! duplicates under concurrency, and swappable.

use std::sync::Arc;

use shared_db::shop::ListParams;
use shared_db::shop::categories::{self, CategoryFields, CategoryTranslationInput};
use shared_db::shop::products::{self, ProductFields, ProductTranslationInput};
use tokio::sync::Barrier;

use super::{ALPHA, BETA, assert_not_found, two_shops};

fn category(name: &str) -> CategoryFields {
    CategoryFields {
        translation: CategoryTranslationInput {
            main_name: name.into(),
            main_description: name.into(),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn product(name: &str, category: Option<uuid::Uuid>) -> ProductFields {
    ProductFields::new(
        category,
        ProductTranslationInput {
            main_name: name.into(),
            main_description: name.into(),
            main_description_short: name.into(),
            ..Default::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_get_distinct_consecutive_numbers() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let barrier = Arc::new(Barrier::new(16));
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let pool = t.pool().clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                let mut conn = pool.acquire().await?;
                barrier.wait().await;
                if i % 2 == 0 {
                    categories::create(&mut conn, ALPHA.shop, &category(&format!("c{i}")))
                        .await
                        .map(|c| ("category", c.item.order_number))
                } else {
                    products::create(
                        &mut conn,
                        ALPHA.shop,
                        &product(&format!("p{i}"), Some(ALPHA.category)),
                        1,
                    )
                    .await
                    .map(|p| ("product", p.item.order_number))
                }
            })
        })
        .collect();
    let mut category_numbers = Vec::new();
    let mut product_numbers = Vec::new();
    for task in tasks {
        match task.await?? {
            ("category", n) => category_numbers.push(n),
            (_, n) => product_numbers.push(n),
        }
    }
    category_numbers.sort();
    product_numbers.sort();
    // the fixture's category and product hold number 0
    assert_eq!(category_numbers, (1..=8).collect::<Vec<_>>());
    assert_eq!(product_numbers, (1..=8).collect::<Vec<_>>());
    // products are numbered per category: a product without one starts at 0
    let mut conn = t.pool().acquire().await?;
    let loose = products::create(&mut conn, ALPHA.shop, &product("loose", None), 1).await?;
    assert_eq!(loose.item.order_number, 0);
    Ok(())
}

#[tokio::test]
async fn categories_append_per_shop_and_swap() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    let mut ids = vec![ALPHA.category];
    for name in ["Shoes", "Hats"] {
        let new = categories::CategoryFields {
            translation: categories::CategoryTranslationInput {
                main_name: name.into(),
                main_description: name.into(),
                ..Default::default()
            },
            ..Default::default()
        };
        ids.push(
            categories::create(&mut conn, ALPHA.shop, &new)
                .await?
                .item
                .id,
        );
    }
    let numbers = |page: &shared_db::shop::ListPage<categories::CategoryWithTranslation>| {
        page.items
            .iter()
            .map(|c| (c.item.id, c.item.order_number))
            .collect::<Vec<_>>()
    };
    let p = ListParams::default().sort("order_number");
    let page = categories::list(&mut conn, ALPHA.shop, &p).await?;
    assert_eq!(numbers(&page), vec![(ids[0], 0), (ids[1], 1), (ids[2], 2)]);
    categories::swap_order(&mut *conn, ALPHA.shop, ids[0], ids[2]).await?;
    let page = categories::list(&mut conn, ALPHA.shop, &p).await?;
    assert_eq!(numbers(&page), vec![(ids[2], 0), (ids[1], 1), (ids[0], 2)]);
    // beta's numbering is its own
    let new = categories::CategoryFields {
        translation: categories::CategoryTranslationInput {
            main_name: "B".into(),
            main_description: "B".into(),
            ..Default::default()
        },
        ..Default::default()
    };
    assert_eq!(
        categories::create(&mut conn, BETA.shop, &new)
            .await?
            .item
            .order_number,
        1
    );
    Ok(())
}

#[tokio::test]
async fn products_swap_only_within_their_category() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    let second = products::create(
        &mut conn,
        ALPHA.shop,
        &product("second", Some(ALPHA.category)),
        1,
    )
    .await?;
    assert_eq!(second.item.order_number, 1);
    products::swap_order(&mut *conn, ALPHA.shop, ALPHA.product, second.item.id).await?;
    let first = products::get(&mut *conn, ALPHA.shop, ALPHA.product).await?;
    let second = products::get(&mut *conn, ALPHA.shop, second.item.id).await?;
    assert_eq!((first.item.order_number, second.item.order_number), (1, 0));
    // a product of another category (or none) is not a swap partner
    let loose = products::create(&mut conn, ALPHA.shop, &product("loose", None), 1).await?;
    assert_not_found(
        products::swap_order(&mut *conn, ALPHA.shop, ALPHA.product, loose.item.id).await,
    );
    // moving a product to another category appends it there
    let other = categories::create(&mut conn, ALPHA.shop, &category("Other")).await?;
    let moved = products::update(
        &mut conn,
        ALPHA.shop,
        loose.item.id,
        loose.item.version,
        &product("loose", Some(other.item.id)),
    )
    .await?;
    assert_eq!(moved.item.order_number, 0);
    let list = products::list(
        &mut conn,
        ALPHA.shop,
        &ListParams::default()
            .filter(format!("category_id:{}", ALPHA.category))
            .sort("order_number"),
    )
    .await?;
    assert_eq!(
        list.items
            .iter()
            .map(|p| p.item.order_number)
            .collect::<Vec<_>>(),
        [0, 1]
    );
    Ok(())
}
