//! STAND-IN for the foundation's test harness (replaced by `main` at merge).
use sqlx::{Connection, Executor, PgPool, postgres::PgPoolOptions};

/// A fresh migrated database, dropped on Drop.
pub struct TestDatabase {
    pool: PgPool,
    name: String,
    admin_url: String,
    url: String,
}

impl TestDatabase {
    /// Create a fresh database.
    pub async fn new() -> crate::Result<Self> {
        let admin_url = std::env::var("DATABASE_URL").expect("DATABASE_URL");
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let mut c = sqlx::PgConnection::connect(&admin_url).await?;
        c.execute(sqlx::AssertSqlSafe(format!("create database {name}"))).await?;
        let base = admin_url.rsplit_once('/').unwrap().0;
        let url = format!("{base}/{name}");
        let pool = PgPoolOptions::new().max_connections(40).connect(&url).await?;
        crate::MIGRATOR.run(&pool).await.map_err(|e| crate::Error::InvalidInput(e.to_string()))?;
        Ok(Self { pool, name, admin_url, url })
    }
    /// Pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
    /// Url.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin = self.admin_url.clone();
        let pool = self.pool.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                pool.close().await;
                if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                    let _ = c.execute(sqlx::AssertSqlSafe(format!("drop database if exists {name} with (force)"))).await;
                }
            });
        })
        .join();
    }
}
