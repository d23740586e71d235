//! PgBouncer in transaction mode (`.ci/pgbouncer`): the library works through it, and
//! migrating through it is refused before the migration lock is taken.

use std::process::Command;

use sqlx::Connection;

use shared_db::planexe::PlanState;
use shared_db::planexe::plans::{self, NewPlan};
use shared_db::testing::TestDatabase;
use shared_db::{Config, Database};

/// Starts a PgBouncer of its own in front of the embedded cluster; stopped on drop.
struct PgBouncer {
    run_dir: std::path::PathBuf,
    pooled: String,
    direct: String,
}

impl PgBouncer {
    fn start() -> anyhow::Result<Self> {
        let run_dir = crate::servers::work_dir("pgbouncer")?;
        let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/pgbouncer"))
            .arg("start")
            .env("PGBOUNCER_RUN_DIR", &run_dir)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            ".ci/pgbouncer start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout)?;
        let var = |name: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name}=")))
                .map(str::to_owned)
                .ok_or_else(|| anyhow::anyhow!("no {name} in {stdout:?}"))
        };
        Ok(PgBouncer {
            pooled: var("PGBOUNCER_URL")?,
            direct: var("DIRECT_URL")?,
            run_dir,
        })
    }

    fn url(base: &str, database: &str) -> String {
        let server = base
            .strip_suffix("/postgres")
            .expect("URL of database postgres");
        format!("{server}/{database}")
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/pgbouncer"))
            .arg("stop")
            .env("PGBOUNCER_RUN_DIR", &self.run_dir)
            .status();
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}

#[tokio::test]
async fn migrate_through_a_transaction_pooler_is_refused_and_a_direct_url_is_used()
-> anyhow::Result<()> {
    // The embedded cluster: .ci/pgbouncer fronts it.
    let empty = TestDatabase::empty().await?;
    let bouncer = PgBouncer::start()?;
    let mut config = Config::new(PgBouncer::url(&bouncer.pooled, empty.name()));
    config.transaction_pooler = true;
    let db = Database::connect(&config).await?;

    let err = db.migrate().await.unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("transaction-mode pooler") && message.contains("SHARED_DB_MIGRATION_URL"),
        "{message}"
    );
    // Nothing applied, and no session anywhere holds an advisory lock.
    let ledger: Option<String> =
        sqlx::query_scalar!("SELECT to_regclass('_sqlx_migrations')::text")
            .fetch_one(empty.pool())
            .await?;
    assert_eq!(ledger, None);
    let locks =
        sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM pg_locks WHERE locktype = 'advisory'"#)
            .fetch_one(empty.pool())
            .await?;
    assert_eq!(locks, 0);

    // With the direct URL for migrations, the same service migrates and works through the pooler.
    config.migration_url = Some(PgBouncer::url(&bouncer.direct, empty.name()).into());
    let db = Database::connect(&config).await?;
    db.migrate().await?;
    let queued = plans::enqueue(
        db.pool(),
        &NewPlan {
            prompt: "through the pooler",
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(
        plans::status(db.pool(), queued.id).await?.state,
        Some(PlanState::Pending)
    );
    db.close().await;
    Ok(())
}

#[tokio::test]
async fn a_direct_session_passes_the_pooler_check() -> anyhow::Result<()> {
    let empty = TestDatabase::empty().await?;
    let mut conn = sqlx::PgConnection::connect_with(empty.connect_options()).await?;
    shared_db::pooler::ensure_session(&mut conn, empty.connect_options()).await?;
    Ok(())
}
