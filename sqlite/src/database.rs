//! [`Database`]: a pool of connections to one SQLite file, with the lifecycle of
//! [`shared_db::Database`].

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use shared_db::schema::{Compatibility, Health, SchemaStatus, SyncOutcome};
use shared_db::{Config, Result};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};
use sqlx::{Sqlite, SqliteConnection, Transaction};

use crate::error::from_sqlx;
use crate::{MIGRATOR, connect, schema};

/// A pool of connections to one SQLite file, each with the connection invariant
/// ([`connect::options`]). Cheap to clone.
#[derive(Clone)]
pub struct Database {
    pool: SqlitePool,
    /// The database file (the migration lock lives next to it).
    file: Arc<PathBuf>,
    compatibility: Compatibility,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database")
            .field("file", &self.file)
            .field("size", &self.pool.size())
            .finish()
    }
}

impl Database {
    /// Opens (creating if missing) the file `config.database_url` names (`sqlite://…`), with the
    /// pool bounds of `config` and its `sqlite_busy_timeout`. [`shared_db::Error::Config`] when
    /// there is no URL, it is not a `sqlite:` URL, or it names `:memory:`. One connection is
    /// opened at once, so a path that cannot be created fails here.
    pub async fn connect(config: &Config) -> Result<Self> {
        let url = config.require_url()?;
        let options = connect::options(url.expose(), config.sqlite_busy_timeout)?;
        let file = Arc::new(options.get_filename().to_path_buf());
        let pool = SqlitePoolOptions::new()
            .max_connections(config.max_connections)
            .min_connections(config.min_connections)
            .acquire_timeout(config.acquire_timeout)
            .idle_timeout(config.idle_timeout)
            .max_lifetime(config.max_lifetime)
            .connect_with(options)
            .await
            .map_err(from_sqlx)?;
        Ok(Database {
            pool,
            file,
            compatibility: config.schema_compatibility,
        })
    }

    /// [`Database::connect`] with [`Config::from_env`].
    pub async fn from_env() -> Result<Self> {
        Self::connect(&Config::from_env()?).await
    }

    /// The pool, as an executor for single statements.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The database file.
    pub fn file(&self) -> &std::path::Path {
        &self.file
    }

    /// A connection for several statements that need not commit together.
    pub async fn acquire(&self) -> Result<PoolConnection<Sqlite>> {
        self.pool.acquire().await.map_err(from_sqlx)
    }

    /// A write transaction: `BEGIN IMMEDIATE`, so it holds the write lock from the start (waiting
    /// for another writer under `busy_timeout` here, not halfway through) and can never fail with
    /// `SQLITE_BUSY_SNAPSHOT`.
    pub async fn begin(&self) -> Result<Transaction<'static, Sqlite>> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(from_sqlx)
    }

    /// Runs `f` in a write transaction on a pooled connection (`BEGIN IMMEDIATE`), committed
    /// on `Ok`, rolled back on `Err`; see [`crate::tx::transaction`]. The counterpart of
    /// [`shared_db::Database::transaction`].
    pub async fn transaction<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: AsyncFnOnce(&mut SqliteConnection) -> Result<T, E>,
        E: From<shared_db::Error>,
    {
        let mut conn = self.acquire().await?;
        crate::tx::transaction(&mut conn, f).await
    }

    /// Applies pending migrations (see [`Database::sync`]).
    pub async fn migrate(&self) -> Result<()> {
        self.sync().await.map(|_| ())
    }

    /// Applies pending migrations and says what was done; safe from several processes at once
    /// (see [`schema::sync`]).
    pub async fn sync(&self) -> Result<SyncOutcome> {
        let mut conn = self.acquire().await?;
        schema::sync(&MIGRATOR, &mut conn, &self.file, self.compatibility).await
    }

    /// Where the database stands. Read-only.
    pub async fn status(&self) -> SchemaStatus {
        match self.acquire().await {
            Ok(mut conn) => schema::status(&MIGRATOR, &mut conn, self.compatibility).await,
            Err(e) => SchemaStatus::NoInfo {
                reason: format!("database unreadable: {e}"),
            },
        }
    }

    /// Readiness answer: ready when the file is readable and the schema up to date (or ahead,
    /// within the compatibility window).
    pub async fn health(&self) -> Health {
        let started = std::time::Instant::now();
        match self.acquire().await {
            Ok(mut conn) => schema::health(&MIGRATOR, &mut conn, self.compatibility).await,
            Err(e) => {
                tracing::warn!(error = %e, "readiness probe could not get a connection");
                Health {
                    connected: false,
                    schema: SchemaStatus::NoInfo {
                        reason: "database unreadable: no connection".into(),
                    },
                    latency: started.elapsed(),
                    replica: None,
                }
            }
        }
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
