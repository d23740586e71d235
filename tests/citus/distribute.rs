//! Distributing the migrated shop: every shop table becomes distributed by `shop_id` (all
//! co-located) or a reference table; a second call changes nothing.

use shared_db::shop::distribute::{DISTRIBUTED, REFERENCE, distribute};
use shared_db::testing::{Backend, TestDatabase};
use sqlx::Connection;

#[tokio::test]
async fn a_migrated_shop_is_distributed_by_shop_id_once() -> anyhow::Result<()> {
    // TestDatabase::on(Citus) migrates and distributes; distributing again does nothing.
    let db = TestDatabase::on(Backend::Citus).await?;
    let mut conn = db.pool().acquire().await?;
    let again = distribute(&mut conn).await?;
    assert!(again.unchanged(), "{again:?}");

    let tables: Vec<(String, String, String, i64)> = sqlx::query_as(
        "SELECT table_name::text, citus_table_type, coalesce(distribution_column, ''),
                colocation_id::bigint
         FROM citus_tables WHERE table_name::text LIKE 'shop.%' ORDER BY 1",
    )
    .fetch_all(&mut *conn)
    .await?;
    let kind = |name: &str| {
        tables
            .iter()
            .find(|t| t.0 == name)
            .map(|t| (t.1.as_str(), t.2.as_str(), t.3))
    };
    let colocation = kind(DISTRIBUTED[0]).expect("first table distributed").2;
    for table in DISTRIBUTED {
        assert_eq!(
            kind(table),
            Some(("distributed", "shop_id", colocation)),
            "{table} distributed by shop_id, co-located with {}",
            DISTRIBUTED[0]
        );
    }
    for table in REFERENCE {
        assert_eq!(kind(table).map(|k| k.0), Some("reference"), "{table}");
    }
    // Every table of the shop schema is one or the other: none left local.
    let shop_tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'shop' AND c.relkind IN ('r', 'p')",
    )
    .fetch_one(&mut *conn)
    .await?;
    assert_eq!(shop_tables as usize, DISTRIBUTED.len() + REFERENCE.len());
    assert_eq!(tables.len(), DISTRIBUTED.len() + REFERENCE.len());

    // The foreign keys survived the conversion: a translation of another shop's product is
    // refused on the cluster as on one server.
    let fks: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
         WHERE n.nspname = 'shop' AND c.contype = 'f'",
    )
    .fetch_one(&mut *conn)
    .await?;
    assert!(fks > 20, "{fks} foreign keys");
    Ok(())
}

#[tokio::test]
async fn distributing_a_plain_server_is_refused() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let mut conn = db.pool().acquire().await?;
    match distribute(&mut conn).await {
        Err(shared_db::Error::InvalidInput(msg)) => assert!(msg.contains("Citus"), "{msg}"),
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn a_shop_migrated_before_citus_came_is_distributed_with_the_functions_its_statements_call()
-> anyhow::Result<()> {
    use crate::shop::ALPHA;
    use shared_db::shop::accounts;
    // A database migrated on the coordinator while it was a plain server: the shop's functions
    // exist there only.
    let cluster = shared_db::testing::citus().await?;
    let name = format!(
        "citus_late_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    for node in std::iter::once(&cluster.coordinator).chain(&cluster.workers) {
        node.ensure_database(&name).await?;
    }
    let options = cluster.coordinator.connect_options(&name);
    let mut conn = sqlx::PgConnection::connect_with(&options).await?;
    shared_db::schema::migrate(&shared_db::MIGRATOR, &mut conn).await?;

    // Then Citus comes, and the shop is distributed.
    cluster.ensure_database(&name).await?;
    distribute(&mut conn).await?;
    let on_every_node: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM run_command_on_workers(
             $$SELECT to_regprocedure('shop.sha256_hex(text)') IS NOT NULL$$)
         WHERE success AND result = 't'",
    )
    .fetch_one(&mut conn)
    .await?;
    assert_eq!(on_every_node as usize, cluster.workers.len());

    // A statement that calls it runs on the shard of its shop.
    sqlx::raw_sql(include_str!("../fixtures/shop/two_shops.sql"))
        .execute(&mut conn)
        .await?;
    let anon = accounts::anonymise(&mut conn, ALPHA.shop, ALPHA.account).await?;
    assert_eq!(anon.name, anon.hash_name);
    assert_eq!(anon.name.map(|n| n.len()), Some(64));

    conn.close().await?;
    cluster.drop_database(&name).await?;
    Ok(())
}
