//! Test harness (local stand-in until the foundation is merged): one fresh database per test,
//! cloned from a template migrated once per process.

use sqlx::{Connection, Executor, PgConnection, PgPool, postgres::PgPoolOptions};
use tokio::sync::OnceCell;

static TEMPLATE: OnceCell<String> = OnceCell::const_new();

/// A throw-away database for one test.
pub struct TestDatabase {
    pool: PgPool,
    url: String,
}

fn server_url() -> String {
    std::env::var("DATABASE_URL").expect("DATABASE_URL must point at a PostgreSQL server")
}

fn with_db(url: &str, db: &str) -> String {
    let base = url.rsplit_once('/').map_or(url, |(b, _)| b);
    format!("{base}/{db}")
}

impl TestDatabase {
    /// Creates a fresh, migrated database.
    pub async fn new() -> crate::Result<Self> {
        let server = server_url();
        let template = TEMPLATE
            .get_or_try_init(|| async {
                let name = format!("shared_db_tpl_{}", std::process::id());
                let mut admin = PgConnection::connect(&server).await?;
                admin
                    .execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}")))
                    .await?;
                admin
                    .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .await?;
                let mut tpl = PgConnection::connect(&with_db(&server, &name)).await?;
                crate::MIGRATOR.run(&mut tpl).await?;
                tpl.close().await?;
                Ok::<_, crate::Error>(name)
            })
            .await?;
        let name = format!("shared_db_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&server).await?;
        admin
            .execute(sqlx::AssertSqlSafe(format!(
                "CREATE DATABASE {name} TEMPLATE {template}"
            )))
            .await?;
        let url = with_db(&server, &name);
        let pool = PgPoolOptions::new().max_connections(20).connect(&url).await?;
        Ok(TestDatabase { pool, url })
    }

    /// The pool of this test's database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The URL of this test's database.
    pub fn url(&self) -> &str {
        &self.url
    }
}
