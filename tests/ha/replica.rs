//! A streaming replica of the embedded primary: explicit replica reads, read-your-writes on the
//! primary, lag in `health()`, and the host chosen by `target_session_attrs`.

use std::time::{Duration, Instant};

use shared_db::planexe::PlanState;
use shared_db::planexe::plans::{self, NewPlan};
use shared_db::replica::ReplicaHealth;
use shared_db::testing::TestDatabase;
use shared_db::{Config, Database};

use crate::servers::Replica;

#[tokio::test]
async fn replica_reads_are_explicit_and_health_reports_the_lag() -> anyhow::Result<()> {
    let test_db = TestDatabase::new().await?;
    let replica = Replica::of(test_db.url()).await?;
    let mut config = Config::new(test_db.url());
    config.replica_url = Some(replica.url_for(test_db.url()).into());
    let db = Database::connect(&config).await?;
    assert!(db.has_replica());

    // Read-your-writes: straight after enqueue, the primary answers.
    let queued = plans::enqueue(
        db.pool(),
        &NewPlan {
            prompt: "a plan for a bakery",
            ..Default::default()
        },
    )
    .await?;
    let status = plans::status(db.pool(), queued.id).await?;
    assert_eq!(status.state, Some(PlanState::Pending));

    // The replica serves it once replayed.
    let started = Instant::now();
    let seen_after = loop {
        match plans::status(db.replica(), queued.id).await {
            Ok(status) => {
                assert_eq!(status.state, Some(PlanState::Pending));
                break started.elapsed();
            }
            Err(shared_db::Error::NotFound) if started.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };

    let health = db.health().await;
    assert!(health.is_ready());
    let Some(ReplicaHealth::Lag(lag)) = &health.replica else {
        panic!(
            "health must report the replica lag, got {:?}",
            health.replica
        );
    };
    assert!(lag.bytes.is_some(), "a standby reports its replay position");
    println!(
        "replica: enqueued plan visible on the replica after {:.1} ms; health: lag {:?} bytes, \
         {:?} ms since the last replayed commit",
        seen_after.as_secs_f64() * 1000.0,
        lag.bytes,
        lag.since_last_replay_ms
    );

    // A write sent to the replica is refused, retryably, and nothing is written.
    let err = plans::enqueue(
        db.replica(),
        &NewPlan {
            prompt: "lost?",
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.sqlstate().as_deref(), Some("25006"), "{err}");
    assert!(err.is_retryable());
    assert_eq!(plans::count_pending(db.pool()).await?, 1);

    // Lag right after a burst of writes, as health() reports it.
    let writers = (0..8).map(|w| {
        let db = db.clone();
        tokio::spawn(async move {
            for i in 0..50 {
                let prompt = format!("burst {w}/{i}");
                plans::enqueue(
                    db.pool(),
                    &NewPlan {
                        prompt: &prompt,
                        ..Default::default()
                    },
                )
                .await?;
            }
            Ok::<_, shared_db::Error>(())
        })
    });
    for w in futures::future::join_all(writers).await {
        w??;
    }
    let Some(ReplicaHealth::Lag(burst)) = db.health().await.replica else {
        panic!("health must report the replica lag after the burst");
    };
    println!(
        "replica: right after 400 concurrent enqueues: lag {:?} bytes, {:?} ms since the last \
         replayed commit",
        burst.bytes, burst.since_last_replay_ms
    );
    db.close().await;
    Ok(())
}

#[tokio::test]
async fn target_session_attrs_choose_the_host_by_role() -> anyhow::Result<()> {
    let test_db = TestDatabase::new().await?;
    let replica = Replica::of(test_db.url()).await?;
    let primary_url = url::Url::parse(test_db.url())?;
    let (primary_port, replica_port) = (primary_url.port().unwrap(), replica.port);
    // The standby is listed first, so only the role can make the primary win.
    let multi = |target: &str| {
        let mut url = primary_url.clone();
        url.set_query(Some(&format!("target_session_attrs={target}")));
        url.to_string().replace(
            &format!("127.0.0.1:{primary_port}"),
            &format!("127.0.0.1:{replica_port},127.0.0.1:{primary_port}"),
        )
    };
    for (target, port) in [
        ("read-write", primary_port),
        ("primary", primary_port),
        ("standby", replica_port),
        ("read-only", replica_port),
        ("prefer-standby", replica_port),
        ("any", replica_port),
    ] {
        let db = Database::connect(&Config::new(multi(target))).await?;
        assert_eq!(
            db.serving_host(),
            Some(format!("127.0.0.1:{port}")),
            "target_session_attrs={target}"
        );
        db.close().await;
    }

    // Writes through a read-write multi-host URL land on the primary.
    let db = Database::connect(&Config::new(multi("read-write"))).await?;
    plans::enqueue(
        db.pool(),
        &NewPlan {
            prompt: "written through the multi-host URL",
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(plans::count_pending(test_db.pool()).await?, 1);
    db.close().await;

    // The key/value form means the same.
    let kv = format!(
        "host=127.0.0.1,127.0.0.1 port={replica_port},{primary_port} user=postgres password={} \
         dbname={} target_session_attrs=read-write",
        primary_url.password().unwrap_or_default(),
        test_db.name()
    );
    let db = Database::connect(&Config::new(kv)).await?;
    assert_eq!(db.serving_host(), Some(format!("127.0.0.1:{primary_port}")));
    db.close().await;
    Ok(())
}
