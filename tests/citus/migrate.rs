//! Schema changes on a live cluster: after the shop is distributed, `migrate` on the coordinator
//! applies later migrations, and Citus carries them to every shard (a new column, an index built
//! concurrently).

use shared_db::MIGRATOR;
use shared_db::testing::{Backend, TestDatabase};
use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

/// The library's migrations plus two later ones, as a next release would ship them.
fn next_release() -> Migrator {
    let later = [
        (
            9001,
            "SET LOCAL lock_timeout = '5s';\n\
             ALTER TABLE shop.products ADD COLUMN gift_wrap boolean;",
        ),
        (
            9002,
            "-- no-transaction\n\
             CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_products_shop_id_gift_wrap\n\
                 ON shop.products (shop_id, gift_wrap);",
        ),
    ];
    let mut migrations: Vec<Migration> = MIGRATOR.iter().cloned().collect();
    for (version, sql) in later {
        migrations.push(Migration::new(
            version,
            format!("later {version}").into(),
            MigrationType::Simple,
            sql.into_sql_str(),
            sql.starts_with("-- no-transaction"),
        ));
    }
    Migrator::with_migrations(migrations)
}

/// `sql` run on every shard of shop.products (`%s` is the shard's name), answers collected.
async fn on_every_shard(conn: &mut sqlx::PgConnection, sql: &str) -> Vec<(bool, String)> {
    sqlx::query_as("SELECT success, result FROM run_command_on_shards('shop.products', $1)")
        .bind(sql)
        .fetch_all(conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_later_migration_adds_a_column_and_a_concurrent_index_to_every_shard()
-> anyhow::Result<()> {
    let db = TestDatabase::on(Backend::Citus).await?;
    let mut conn = db.pool().acquire().await?;
    let shards: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM citus_shards WHERE table_name = 'shop.products'::regclass",
    )
    .fetch_one(&mut *conn)
    .await?;
    assert!(shards > 1, "shop.products is distributed ({shards} shards)");

    shared_db::schema::migrate(&next_release(), &mut conn).await?;

    let columns = on_every_shard(
        &mut conn,
        "SELECT count(*) FROM pg_attribute WHERE attrelid = '%s'::regclass AND attname = 'gift_wrap'",
    )
    .await;
    assert_eq!(columns.len() as i64, shards);
    assert!(
        columns.iter().all(|(ok, n)| *ok && n == "1"),
        "the column is on every shard: {columns:?}"
    );
    let indexes = on_every_shard(
        &mut conn,
        "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
         WHERE i.indrelid = '%s'::regclass AND i.indisvalid
           AND c.relname LIKE 'ix_products_shop_id_gift_wrap%%'",
    )
    .await;
    assert!(
        indexes.iter().all(|(ok, n)| *ok && n == "1"),
        "a valid index on every shard: {indexes:?}"
    );

    // The column is in use at once, through the coordinator, on one shard.
    let alpha = super::shop::ALPHA;
    sqlx::raw_sql(include_str!("../fixtures/shop/two_shops.sql"))
        .execute(&mut *conn)
        .await?;
    let updated =
        sqlx::query("UPDATE shop.products SET gift_wrap = true WHERE shop_id = $1 AND id = $2")
            .bind(alpha.shop.get())
            .bind(alpha.product.get())
            .execute(&mut *conn)
            .await?;
    assert_eq!(updated.rows_affected(), 1);

    // And `migrate` again is a no-op: everything is recorded on the coordinator.
    shared_db::schema::migrate(&next_release(), &mut conn).await?;
    let recorded: i64 =
        sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE version >= 9001")
            .fetch_one(&mut *conn)
            .await?;
    assert_eq!(recorded, 2);
    Ok(())
}
