//! The Citus test cluster: built from the vendored tarball when missing, three nodes started,
//! registered and talking to each other.

use shared_db::embedded::citus::CitusCluster;
use sqlx::{Connection, PgConnection};

#[tokio::test]
async fn a_coordinator_and_two_workers_start_register_and_hold_shards() {
    let cluster = tokio::task::spawn_blocking(CitusCluster::default_location)
        .await
        .unwrap()
        .expect("Citus built (or found in target/tools)");
    let running = cluster.ensure_running().await.expect("three nodes running");
    assert_eq!(running.workers.len(), 2);
    let database = format!("citus_cluster_{}", uuid::Uuid::new_v4().simple());
    running.ensure_database(&database).await.unwrap();
    // Twice: registering is idempotent.
    running.ensure_database(&database).await.unwrap();

    let mut conn = PgConnection::connect_with(&running.coordinator.connect_options(&database))
        .await
        .unwrap();
    let version: String =
        sqlx::query_scalar("SELECT extversion FROM pg_extension WHERE extname = 'citus'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(version, "13.2-1");
    let workers: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_dist_node WHERE shouldhaveshards AND isactive")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(workers, 2, "both workers registered and active");
    // Every node reaches every node (the coordinator's connections authenticate with the
    // shared password in pg_dist_authinfo).
    let unhealthy: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM citus_check_cluster_node_health() WHERE NOT result",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(unhealthy, 0);
    let pairs: i64 = sqlx::query_scalar("SELECT count(*) FROM citus_check_cluster_node_health()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(pairs, 9, "3 nodes × 3 nodes");

    // A distributed table's shards land on both workers, and rows come back through the
    // coordinator.
    sqlx::raw_sql(
        "CREATE TABLE t (shop_id uuid, id uuid, PRIMARY KEY (shop_id, id));
         SELECT create_distributed_table('t', 'shop_id');
         INSERT INTO t SELECT gen_random_uuid(), gen_random_uuid() FROM generate_series(1, 100);",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let nodes_with_shards: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT nodeport) FROM citus_shards WHERE table_name = 't'::regclass",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(nodes_with_shards, 2);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows, 100);
    conn.close().await.unwrap();
    running.drop_database(&database).await.unwrap();
}
