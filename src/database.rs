//! [`Database`]: the one handle a service keeps.

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use crate::schema::{self, Health, SchemaStatus, SyncOutcome};
use crate::{Config, Error, MIGRATOR, Result};

/// A connection pool plus the configuration it was built from. Cheap to clone (an `Arc`
/// inside); build one at start-up and hand clones to every task.
///
/// Repository functions do not take a `Database`: they take an executor (`&PgPool`,
/// `&mut PgConnection`, `&mut *tx`), which [`Database::pool`], [`Database::acquire`] and
/// [`Database::begin`] provide.
#[derive(Clone, Debug)]
pub struct Database {
    pool: PgPool,
    /// Lock bounds of [`Database::migrate`] and [`Database::sync`].
    migration_locks: schema::MigrationLocks,
}

impl Database {
    /// Connects to `config.database_url`. Without a URL this is an [`Error::Config`] naming
    /// `DATABASE_URL`: a service never falls back to some other database.
    ///
    /// The first connection is opened eagerly and must succeed within
    /// `config.connect_timeout` ([`Error::ConnectTimeout`] otherwise), so a wrong URL fails
    /// here rather than on first use.
    pub async fn connect(config: &Config) -> Result<Self> {
        let url = config.require_url()?;
        let options = config.connect_options_for(url)?;
        let mut pool_options = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .min_connections(config.min_connections)
            .acquire_timeout(config.acquire_timeout)
            .idle_timeout(config.idle_timeout)
            .max_lifetime(config.max_lifetime)
            // sqlx's own test pings on every acquire: one extra round trip per pooled
            // statement, which cost 10–30 % of pooled throughput in the benchmarks
            // (BENCHMARKS.md). A connection back from use moments ago is as good as the ping
            // would say; only one that sat idle for a while may have been cut by the server, a
            // proxy or a firewall.
            .test_before_acquire(false);
        if config.test_before_acquire {
            let ping_idle_after = config.ping_idle_after;
            pool_options = pool_options.before_acquire(move |conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= ping_idle_after {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            });
        }
        let pool = tokio::time::timeout(config.connect_timeout, pool_options.connect_with(options))
            .await
            .map_err(|_| Error::ConnectTimeout {
                target: crate::config::redact_url(url),
                timeout: config.connect_timeout,
            })??;
        Ok(Database {
            pool,
            migration_locks: schema::MigrationLocks {
                timeout: config.migration_lock_timeout,
                ..schema::MigrationLocks::default()
            },
        })
    }

    /// [`Config::from_env`] followed by [`Database::connect`]: [`Error::Config`] when
    /// `DATABASE_URL` is unset.
    pub async fn from_env() -> Result<Self> {
        Self::connect(&Config::from_env()?).await
    }

    /// Connects to `database` on the embedded PostgreSQL cluster under `target/` (feature
    /// `embedded`), starting the cluster and creating the database when needed;
    /// `config.database_url` is ignored. For development tools, examples and benchmarks, never
    /// for a service.
    #[cfg(feature = "embedded")]
    pub async fn connect_embedded(config: &Config, database: &str) -> Result<Self> {
        let url = crate::embedded::database_url(database).await?;
        Self::connect(&Config {
            database_url: Some(url),
            ..config.clone()
        })
        .await
    }

    /// [`Database::connect`] when `config.database_url` is set, else
    /// [`Database::connect_embedded`] on the database `shared_db` (feature `embedded`). What
    /// the command line and the examples do, so they run with no environment at all.
    #[cfg(feature = "embedded")]
    pub async fn connect_or_embedded(config: &Config) -> Result<Self> {
        match config.database_url {
            Some(_) => Self::connect(config).await,
            None => Self::connect_embedded(config, "shared_db").await,
        }
    }

    /// Wraps an existing pool (migrations then use the default [`schema::MigrationLocks`]).
    pub fn from_pool(pool: PgPool) -> Self {
        Database {
            pool,
            migration_locks: schema::MigrationLocks::default(),
        }
    }

    /// The pool, usable as an executor for single statements.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A pooled connection, for several statements outside a transaction.
    pub async fn acquire(&self) -> Result<PoolConnection<Postgres>> {
        Ok(self.pool.acquire().await?)
    }

    /// Begins a transaction on a pooled connection; it rolls back when dropped uncommitted.
    pub async fn begin(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }

    /// Runs `f` in a transaction on a pooled connection; see [`crate::tx::transaction`].
    pub async fn transaction<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: AsyncFnOnce(&mut sqlx::PgConnection) -> Result<T, E>,
        E: From<Error>,
    {
        let mut conn = self.acquire().await?;
        crate::tx::transaction(&mut conn, f).await
    }

    /// Applies pending migrations (see [`schema::migrate`]); safe to call from every replica at
    /// start-up. No statement timeout; lock waits bounded by `SHARED_DB_MIGRATION_LOCK_TIMEOUT_MS`
    /// and retried with backoff ([`schema::sync_with`]).
    pub async fn migrate(&self) -> Result<()> {
        self.sync().await.map(|_| ())
    }

    /// Applies pending migrations and reports what was done (see [`schema::sync`]).
    pub async fn sync(&self) -> Result<SyncOutcome> {
        let mut conn = schema::dedicated_connection(&self.pool.connect_options()).await?;
        let outcome = schema::sync_with(&MIGRATOR, &mut conn, self.migration_locks).await;
        // Closing (rather than dropping) ends the session cleanly; the advisory lock goes with it.
        let _ = sqlx::Connection::close(conn).await;
        outcome
    }

    /// Where the database stands (see [`schema::status`]). Read-only.
    pub async fn status(&self) -> SchemaStatus {
        schema::status(&MIGRATOR, &self.pool).await
    }

    /// Readiness answer (see [`schema::health`]).
    pub async fn health(&self) -> Health {
        schema::health(&MIGRATOR, &self.pool).await
    }

    /// Closes every connection; waits for checked-out connections to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
