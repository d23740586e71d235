//! The old shop backend onto a Citus cluster: the importer runs on the coordinator before the
//! shop is distributed (its licence batch is one of the statements Citus refuses on distributed
//! tables, `routing::CROSS_SHOP`), and `distribute` then copies every imported row to its shard.
//! Imported shops then work through the library on the cluster.

use std::str::FromStr;

use rust_decimal::Decimal;
use shared_db::shop::distribute::distribute;
use shared_db::shop::import::{self, Options};
use shared_db::shop::orders::{self, OrderFields, OrderItem, OrderStatus};
use shared_db::shop::{Lang, ListParams, ProductId, ShopId, licenses, products};
use sqlx::Connection;
use uuid::Uuid;

/// Rows of the imported tables, by table name (global licences first).
async fn counts(conn: &mut sqlx::PgConnection) -> anyhow::Result<Vec<(String, i64)>> {
    Ok(sqlx::query_as(
        "SELECT 'products', count(*) FROM shop.products UNION ALL
         SELECT 'orders', count(*) FROM shop.orders UNION ALL
         SELECT 'licenses', count(*) FROM shop.licenses WHERE shop_id IS NOT NULL UNION ALL
         SELECT 'global_licenses', count(*) FROM shop.global_licenses ORDER BY 1",
    )
    .fetch_all(conn)
    .await?)
}

#[tokio::test]
async fn an_old_backend_imported_on_the_coordinator_is_distributed_with_every_row()
-> anyhow::Result<()> {
    let cluster = shared_db::testing::citus().await?;
    let name = format!("citus_import_{}", &Uuid::new_v4().simple().to_string()[..8]);
    cluster.ensure_database(&name).await?;
    let options = cluster.coordinator.connect_options(&name);
    let mut conn = sqlx::PgConnection::connect_with(&options).await?;
    shared_db::schema::migrate(&shared_db::MIGRATOR, &mut conn).await?;
    // The old backend's tables, in `public` of the same database (the importer's test fixture).
    sqlx::raw_sql(concat!(
        include_str!("../fixtures/shop_import/old_schema.sql"),
        include_str!("../fixtures/shop_import/old_rows.sql")
    ))
    .execute(&mut conn)
    .await?;

    let mut source = sqlx::PgConnection::connect_with(&options).await?;
    let report = import::run(&mut source, &mut conn, &Options::default()).await?;
    let imported_before = counts(&mut conn).await?;
    assert!(
        imported_before.iter().all(|(_, n)| *n > 0),
        "{imported_before:?}"
    );

    distribute(&mut conn).await?;
    // Every row went to the shards: the same counts, now read through the coordinator.
    let imported_after = counts(&mut conn).await?;
    assert_eq!(imported_after, imported_before, "{report:?}");
    let on_coordinator: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_dist_partition WHERE logicalrelid = 'shop.products'::regclass",
    )
    .fetch_one(&mut conn)
    .await?;
    assert_eq!(on_coordinator, 1, "products is a distributed table");

    // An imported shop works on the cluster: its catalog, an imported order, a new order that
    // continues its numbering, and the licences of no shop.
    let alpha = ShopId::new(Uuid::parse_str("a0000000-0000-0000-0000-000000000001")?);
    let shirt = ProductId::new(Uuid::parse_str("a0000000-0000-0000-0000-000000000041")?);
    let page = products::list(&mut conn, alpha, &ListParams::default()).await?;
    let names: Vec<_> = page.items.iter().map(|p| p.name(Lang::Main)).collect();
    assert_eq!(names, [Some("Blauw hemd"), Some("E-boek")]);
    let imported = orders::get(
        &mut conn,
        alpha,
        Uuid::parse_str("a0000000-0000-0000-0000-000000000081")?,
    )
    .await?;
    assert_eq!(imported.status, OrderStatus::Complete);
    let order = orders::create(
        &mut conn,
        alpha,
        &OrderFields {
            account_id: Some(Uuid::parse_str("a0000000-0000-0000-0000-000000000071")?),
            notes: None,
            items: vec![OrderItem {
                description: None,
                price: Decimal::from_str("19.99")?,
                product_id: shirt,
                product_name: "Blauw hemd".into(),
                quantity: 1,
            }],
            total: Some(Decimal::from_str("19.99")?),
        },
        None,
    )
    .await?;
    assert_eq!(order.customer_order_id, 3);
    let global = licenses::list_global(&mut conn, &ListParams::default()).await?;
    assert_eq!(global.total as i64, imported_after[0].1);

    source.close().await?;
    conn.close().await?;
    cluster.drop_database(&name).await?;
    Ok(())
}
