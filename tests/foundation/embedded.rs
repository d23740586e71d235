//! The embedded cluster: created on demand, reused when running, stopped on request.

use shared_db::embedded::Cluster;
use sqlx::{Connection, PgConnection};

#[tokio::test]
async fn a_cluster_is_created_started_reused_and_stopped() {
    let root = std::env::temp_dir().join(format!(
        "shared-db-cluster-{}",
        uuid::Uuid::new_v4().simple()
    ));
    // When tests run as root the cluster belongs to `postgres`, which must reach it.
    std::fs::create_dir_all(&root).unwrap();
    let cluster = Cluster::at(root.join("pg"));

    let first = cluster.ensure_running().await.expect("created and started");
    let again = cluster.ensure_running().await.expect("reused");
    assert_eq!(
        first.port, again.port,
        "a running cluster is reused, not re-created"
    );

    let mut conn = PgConnection::connect_with(&first.connect_options("postgres"))
        .await
        .unwrap();
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(one, 1);
    conn.close().await.unwrap();

    // Password authentication is required: a wrong password is refused.
    let wrong = first.connect_options("postgres").password("wrong");
    assert!(PgConnection::connect_with(&wrong).await.is_err());

    let c = cluster.clone();
    assert!(
        tokio::task::spawn_blocking(move || c.stop())
            .await
            .unwrap()
            .unwrap(),
        "was running"
    );
    assert!(cluster.running().unwrap().is_none());
    let c = cluster.clone();
    assert!(
        !tokio::task::spawn_blocking(move || c.stop())
            .await
            .unwrap()
            .unwrap(),
        "already stopped"
    );

    std::fs::remove_dir_all(&root).unwrap();
}
