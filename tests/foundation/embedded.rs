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

#[tokio::test]
async fn processes_asking_for_one_database_at_once_all_get_it() {
    // Several benchmark or test processes starting together ask for the same database. Two
    // CREATE DATABASE of one name can collide in the catalog's unique index instead of reporting
    // "already exists": both outcomes mean the database is there.
    let running = Cluster::default_location()
        .unwrap()
        .ensure_running()
        .await
        .unwrap();
    for round in 0..5 {
        let name = format!("shared_db_race_{}_{round}", uuid::Uuid::new_v4().simple());
        let askers: Vec<_> = (0..8)
            .map(|_| {
                let (running, name) = (running.clone(), name.clone());
                tokio::spawn(async move { running.ensure_database(&name).await })
            })
            .collect();
        for asker in askers {
            asker
                .await
                .unwrap()
                .expect("the database, whoever created it");
        }
        let conn = PgConnection::connect_with(&running.connect_options(&name))
            .await
            .expect("it exists");
        conn.close().await.unwrap();
        let mut admin = PgConnection::connect_with(&running.connect_options("postgres"))
            .await
            .unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await
            .unwrap();
    }
}
