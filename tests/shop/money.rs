//! Money is `numeric(12,2)` and `Decimal`: exact cents, never negative, never NaN; migration 0041
//! converts the old doubles by a stated rule.

use rust_decimal::Decimal;
use shared_db::shop::orders::{self, OrderFields, OrderItem};
use shared_db::shop::products::{self, ProductFields, ProductTranslationInput};
use shared_db::testing::TestDatabase;
use shared_db::{Error, MIGRATOR};
use sqlx::migrate::Migrator;
use std::str::FromStr;

use super::{ALPHA, assert_invalid, two_shops};

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn socks(price: Option<Decimal>) -> ProductFields {
    let mut fields = ProductFields::new(
        Some(ALPHA.category),
        ProductTranslationInput {
            main_name: "Socks".into(),
            main_description: "Warm".into(),
            main_description_short: "Warm".into(),
            ..Default::default()
        },
    );
    fields.price = price;
    fields
}

#[tokio::test]
async fn migration_0041_rounds_old_doubles_to_cents_by_its_stated_rule() -> anyhow::Result<()> {
    // a database as it was before 0041: prices and totals in double precision
    let before = Migrator {
        migrations: MIGRATOR
            .iter()
            .filter(|m| m.version <= 40)
            .cloned()
            .collect(),
        ..Migrator::DEFAULT
    };
    let db = TestDatabase::empty().await?;
    before.run(db.pool()).await?;
    // the fixture is written for the current schema; before 0044 attribute values had no shop_id
    let fixture = include_str!("../fixtures/shop/two_shops.sql")
        .replace(
            "(id, shop_id, product_id, attribute_id",
            "(id, product_id, attribute_id",
        )
        .replace(
            "-000000000042', 'aaaaaaaa-0000-0000-0000-000000000001',",
            "-000000000042',",
        )
        .replace(
            "-000000000042', 'bbbbbbbb-0000-0000-0000-000000000001',",
            "-000000000042',",
        );
    // and before 0090 translations and attribute options had none either
    let fixture: String = fixture
        .lines()
        .map(|line| {
            let child = [
                "category_translations",
                "product_translations",
                "tag_translations",
                "attribute_translations",
                "attribute_options",
            ]
            .iter()
            .any(|t| line.starts_with(&format!("INSERT INTO shop.{t} (shop_id, ")));
            if !child {
                return format!("{line}\n");
            }
            let line = line.replacen("(shop_id, ", "(", 1);
            let (head, values) = line.split_once("VALUES (").expect("a VALUES list");
            let (_, rest) = values.split_once(", ").expect("a shop id first");
            format!("{head}VALUES ({rest}\n")
        })
        .collect();
    sqlx::raw_sql(sqlx::AssertSqlSafe(fixture))
        .execute(db.pool())
        .await?;
    // the doubles of the issue, a binary half (2.675 is 2.67499999… as a double) and the
    // non-finite values a double column could hold
    sqlx::raw_sql(
        r#"UPDATE shop.products SET price = 19.99::float8, discounted_price = 0.1::float8 + 0.2::float8,
               recurring_price_monthly = 1e-7::float8, recurring_price_yearly = 2.675::float8
           WHERE id = 'aaaaaaaa-0000-0000-0000-000000000020';
           UPDATE shop.products SET price = 'NaN', discounted_price = 'Infinity'
           WHERE id = 'bbbbbbbb-0000-0000-0000-000000000020';
           UPDATE shop.orders SET total = 0.1::float8 + 0.2::float8,
               order_info = '[{"description": null, "price": 0.30000000000000004, "product_id": "aaaaaaaa-0000-0000-0000-000000000020", "product_name": "alpha socks", "quantity": 1},
                              {"description": null, "price": 1e-7, "product_id": "aaaaaaaa-0000-0000-0000-000000000020", "product_name": "alpha socks", "quantity": 2}]'
           WHERE id = 'aaaaaaaa-0000-0000-0000-000000000060';"#,
    )
    .execute(db.pool())
    .await?;

    db.db().migrate().await?;

    let alpha = products::get(db.pool(), ALPHA.shop, ALPHA.product)
        .await?
        .item;
    assert_eq!(alpha.price, Some(dec("19.99")));
    assert_eq!(alpha.discounted_price, Some(dec("0.30")), "0.1 + 0.2");
    assert_eq!(alpha.recurring_price_monthly, Some(dec("0.00")), "1e-7");
    assert_eq!(
        alpha.recurring_price_yearly,
        Some(dec("2.68")),
        "15 digits, then half up"
    );
    let beta = products::get(db.pool(), super::BETA.shop, super::BETA.product)
        .await?
        .item;
    assert_eq!(
        (beta.price, beta.discounted_price),
        (None, None),
        "non-finite → NULL"
    );
    let order = orders::get(db.pool(), ALPHA.shop, ALPHA.order).await?;
    assert_eq!(order.total, Some(dec("0.30")));
    let prices: Vec<String> = order
        .order_info
        .0
        .iter()
        .map(|i| i.price.to_string())
        .collect();
    assert_eq!(prices, ["0.30", "0.00"]);
    // and the JSON now carries the money scale as text
    let raw: String = sqlx::query_scalar!(
        r#"SELECT order_info::text AS "t!" FROM shop.orders WHERE id = $1"#,
        ALPHA.order
    )
    .fetch_one(db.pool())
    .await?;
    assert!(raw.contains(r#""price": "0.30""#), "{raw}");
    Ok(())
}

#[tokio::test]
async fn prices_are_exact_cents_and_the_schema_refuses_negative_or_nan() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    let created = products::create(&mut conn, ALPHA.shop, &socks(Some(dec("19.9"))), 1).await?;
    assert_eq!(
        created.item.price.map(|p| p.to_string()).as_deref(),
        Some("19.90")
    );
    let read = products::get(&mut *conn, ALPHA.shop, created.item.id).await?;
    assert_eq!(read.item.price, Some(dec("19.90")));

    // more than two decimals, negative, or beyond numeric(12,2): refused before SQL
    for bad in ["0.001", "-0.01", "10000000000.00"] {
        assert_invalid(products::create(&mut conn, ALPHA.shop, &socks(Some(dec(bad))), 1).await);
    }
    // another writer cannot store a negative or NaN price either
    for bad in ["-1", "'NaN'"] {
        let r = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "UPDATE shop.products SET price = {bad} WHERE id = '{}'",
            ALPHA.product
        )))
        .execute(&mut *conn)
        .await;
        match r.map_err(Error::from) {
            Err(Error::Check { constraint }) => assert_eq!(constraint, "ck_products_money"),
            other => panic!("expected the money check for {bad}, got {other:?}"),
        }
    }
    let r = sqlx::raw_sql(
        "UPDATE shop.orders SET total = -5 WHERE shop_id = 'aaaaaaaa-0000-0000-0000-000000000001'",
    )
    .execute(&mut *conn)
    .await;
    assert!(
        matches!(r.map_err(Error::from), Err(Error::Check { constraint }) if constraint == "ck_orders_money")
    );

    // order items carry the same scale in their JSON
    let order = orders::create(
        &mut conn,
        ALPHA.shop,
        &OrderFields {
            items: vec![OrderItem {
                description: None,
                price: dec("4.5"),
                product_id: ALPHA.product,
                product_name: "alpha socks".into(),
                quantity: 2,
            }],
            total: Some(dec("9")),
            ..Default::default()
        },
        None,
    )
    .await?;
    assert_eq!(order.total.map(|t| t.to_string()).as_deref(), Some("9.00"));
    let raw: String = sqlx::query_scalar!(
        r#"SELECT order_info::text AS "t!" FROM shop.orders WHERE id = $1"#,
        order.id
    )
    .fetch_one(&mut *conn)
    .await?;
    assert!(raw.contains(r#""price": "4.50""#), "{raw}");
    Ok(())
}
