//! [`Database`]: the one handle a service keeps.

use std::sync::Arc;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use crate::failover::Purpose;
use crate::pool::{Pool, PooledConnection};
use crate::schema::{self, Health, SchemaStatus, SyncOutcome};
use crate::{Config, Error, MIGRATOR, Result};

/// What a connection must pass before it is handed out: sqlx's own test pings on every acquire,
/// one extra round trip per pooled statement, which cost 10–30 % of pooled throughput in the
/// benchmarks (BENCHMARKS.md). A connection back from use moments ago is as good as the ping would
/// say; only one that sat idle for `ping_idle_after` may have been cut by the server, a proxy or a
/// firewall, so only that one is pinged (when `test_before_acquire` is on). With `failover`, a
/// connection opened before the last switch of primary is retired instead.
fn with_acquire_checks(
    options: PgPoolOptions,
    config: &Config,
    failover: Option<Arc<crate::failover::Failover>>,
) -> PgPoolOptions {
    let options = options.test_before_acquire(false);
    let ping_idle_after = config.test_before_acquire.then_some(config.ping_idle_after);
    if ping_idle_after.is_none() && failover.is_none() {
        return options;
    }
    options.before_acquire(move |conn, meta| {
        let stale = failover
            .as_ref()
            .is_some_and(|f| f.predates_switch(meta.age));
        let ping = ping_idle_after.is_some_and(|after| meta.idle_for >= after);
        Box::pin(async move {
            if stale {
                return Ok(false);
            }
            if ping {
                sqlx::Connection::ping(conn).await?;
            }
            Ok(true)
        })
    })
}

/// With feature `metrics`, sqlx reports every acquire's wait as a `tracing` event (at trace
/// level), which [`crate::metrics::layer`] turns into the acquire-time histogram.
#[cfg(feature = "metrics")]
pub(crate) fn with_acquire_timing(options: PgPoolOptions) -> PgPoolOptions {
    options.acquire_time_level(log::LevelFilter::Trace)
}

/// Without feature `metrics`, the pool options unchanged.
#[cfg(not(feature = "metrics"))]
pub(crate) fn with_acquire_timing(options: PgPoolOptions) -> PgPoolOptions {
    options
}

/// A connection pool plus the configuration it was built from. Cheap to clone (an `Arc`
/// inside); build one at start-up and hand clones to every task.
///
/// Repository functions do not take a `Database`: they take an executor (`&Pool`,
/// `&mut PgConnection`, `&mut *tx`), which [`Database::pool`], [`Database::acquire`] and
/// [`Database::begin`] provide.
#[derive(Clone)]
pub struct Database {
    pool: Pool,
    /// Lock bounds of [`Database::migrate`] and [`Database::sync`].
    migration_locks: schema::MigrationLocks,
    /// Compatibility window of [`Database::migrate`], [`Database::status`], [`Database::health`].
    compatibility: schema::Compatibility,
    /// Second pool to a read-only replica (`DATABASE_REPLICA_URL`).
    replica: Option<Pool>,
    /// Multi-host URLs: stops the failover watcher when the last clone goes.
    watcher: Option<Arc<crate::failover::WatcherGuard>>,
    /// Where migrations connect (`SHARED_DB_MIGRATION_URL`); `None`: where the pool connects.
    migration: Option<Arc<sqlx::postgres::PgConnectOptions>>,
    /// Replica failover (a multi-host or role-checked `DATABASE_REPLICA_URL`).
    replica_watcher: Option<Arc<crate::failover::WatcherGuard>>,
    /// Where the queue's wake-up listener connects (see [`Database::wakeups`]).
    listen: Listen,
}

/// Where [`Database::wakeups`] points a listener.
#[derive(Clone)]
enum Listen {
    /// Through the pool's own connect options.
    Pool,
    /// `SHARED_DB_LISTEN_URL`.
    Direct(Arc<sqlx::postgres::PgConnectOptions>),
    /// Nowhere: the pool goes through a transaction pooler and no direct URL is configured.
    Off,
}

/// No password: the direct URL's options print as host, port, database and user.
impl std::fmt::Debug for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Pool => f.write_str("Pool"),
            Listen::Direct(options) => f
                .debug_tuple("Direct")
                .field(&crate::config::SafeOptions(options))
                .finish(),
            Listen::Off => f.write_str("Off"),
        }
    }
}

/// Host, port, database and user of each pool, never a password (sqlx's `Debug` of connect
/// options prints it).
impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::config::SafeOptions;
        let primary = self.pool.connect_options();
        let replica = self.replica.as_ref().map(|r| r.connect_options());
        f.debug_struct("Database")
            .field("pool", &SafeOptions(&primary))
            .field("size", &self.pool.size())
            .field("idle", &self.pool.num_idle())
            .field("parked", &self.pool.num_parked())
            .field("replica", &replica.as_deref().map(SafeOptions))
            .field("failover", &self.watcher)
            .field("replica_failover", &self.replica_watcher)
            .field("migration", &self.migration.as_deref().map(SafeOptions))
            .field("listen", &self.listen)
            .field("compatibility", &self.compatibility)
            .finish_non_exhaustive()
    }
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
        let (pool, watcher) = Self::open(config, url, Purpose::Primary).await?;
        let (replica, replica_watcher) = match &config.replica_url {
            Some(replica_url) => {
                let (pool, watcher) = Self::open(config, replica_url, Purpose::Replica).await?;
                (Some(pool), watcher)
            }
            None => (None, None),
        };
        let migration = match &config.migration_url {
            Some(url) => Some(Arc::new(config.connect_options_for(url)?)),
            None => None,
        };
        let listen = match &config.listen_url {
            Some(url) => Listen::Direct(Arc::new(config.connect_options_for(url)?)),
            None if config.behind_transaction_pooler() => Listen::Off,
            None => Listen::Pool,
        };
        Ok(Database {
            pool,
            migration_locks: schema::MigrationLocks {
                timeout: config.migration_lock_timeout,
                ..schema::MigrationLocks::default()
            },
            compatibility: config.schema_compatibility,
            replica,
            watcher,
            migration,
            replica_watcher,
            listen,
        })
    }

    /// One pool for `url`, with failover (and its watcher) when the string names several hosts
    /// or a role to check.
    async fn open(
        config: &Config,
        url: &crate::config::DatabaseUrl,
        purpose: Purpose,
    ) -> Result<(Pool, Option<Arc<crate::failover::WatcherGuard>>)> {
        let target = crate::failover::Target::resolve(config, url, purpose).await?;
        let failover = target.failover.clone();
        let mut pool_options =
            with_acquire_checks(Self::pool_options(config), config, failover.clone());
        pool_options = with_acquire_timing(pool_options);
        if let Some(failover) = target.failover.clone() {
            let on_release = failover.clone();
            pool_options = pool_options
                .after_connect(move |conn, _meta| {
                    let failover = failover.clone();
                    Box::pin(async move { failover.check_new_connection(conn).await })
                })
                .after_release(move |_conn, meta| {
                    let retire = on_release.predates_switch(meta.age);
                    Box::pin(async move { Ok(!retire) })
                });
        }
        if purpose == Purpose::Primary {
            crate::semconv::set_server(&target.options);
        }
        let pool = Self::connect_pool(config, pool_options, target.options, url).await?;
        let watcher = target.failover.map(|failover| {
            Arc::new(crate::failover::WatcherGuard {
                task: tokio::spawn(
                    failover
                        .clone()
                        .watch(pool.clone(), config.failover_check_interval),
                ),
                failover,
            })
        });
        let pool = Pool::with_bound(pool, config.ping_idle_after, failover);
        Ok((pool, watcher))
    }

    fn pool_options(config: &Config) -> PgPoolOptions {
        PgPoolOptions::new()
            .max_connections(config.max_connections)
            .min_connections(config.min_connections)
            .acquire_timeout(config.acquire_timeout)
            .idle_timeout(config.idle_timeout)
            .max_lifetime(config.max_lifetime)
    }

    async fn connect_pool(
        config: &Config,
        pool_options: PgPoolOptions,
        options: sqlx::postgres::PgConnectOptions,
        url: &crate::config::DatabaseUrl,
    ) -> Result<PgPool> {
        let pool = tokio::time::timeout(config.connect_timeout, pool_options.connect_with(options))
            .await
            .map_err(|_| Error::ConnectTimeout {
                target: url.redacted(),
                timeout: config.connect_timeout,
            })?
            .map_err(|e| Error::connect_failure(e, url))?;
        Ok(pool)
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
            database_url: Some(url.into()),
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

    /// Wraps an existing pool (migrations then use the default [`schema::MigrationLocks`]),
    /// with [`Pool::new`]'s return path.
    pub fn from_pool(pool: PgPool) -> Self {
        crate::semconv::set_server(&pool.connect_options());
        Database {
            pool: Pool::new(pool),
            migration_locks: schema::MigrationLocks::default(),
            compatibility: schema::Compatibility::default(),
            replica: None,
            watcher: None,
            migration: None,
            replica_watcher: None,
            listen: Listen::Pool,
        }
    }

    /// Wraps a primary pool and a replica pool (see [`Database::replica`]).
    pub fn with_replica(pool: PgPool, replica: PgPool) -> Self {
        Database {
            replica: Some(Pool::new(replica)),
            ..Database::from_pool(pool)
        }
    }

    /// The executor for reads that may come from the read-only replica
    /// (`DATABASE_REPLICA_URL`); the primary pool when no replica is configured. Only reads that
    /// tolerate [replica lag](crate::replica::ReplicaLag) belong here: read what this process
    /// has just written through [`Database::pool`]. A write sent here fails with SQLSTATE 25006
    /// when a replica is configured.
    pub fn replica(&self) -> &Pool {
        self.replica.as_ref().unwrap_or(&self.pool)
    }

    /// With a multi-host `DATABASE_URL`: the `host:port` that new connections go to now (it
    /// changes on failover). `None` for a single-host URL.
    pub fn serving_host(&self) -> Option<String> {
        self.watcher.as_ref().map(|w| w.failover.current_host())
    }

    /// True when [`Database::replica`] is a pool of its own.
    pub fn has_replica(&self) -> bool {
        self.replica.is_some()
    }

    /// The pool, usable as an executor for single statements: one round trip per statement
    /// (the connection comes from and goes back to the pool without one, see [`Pool`]).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Where a plan worker should listen for wake-ups ([`crate::planexe::plans::Wakeups`]):
    /// `SHARED_DB_LISTEN_URL` when set; else the pool's own server, unless the pool goes through
    /// a transaction-mode pooler ([`Config::behind_transaction_pooler`]), where this is `None`
    /// and workers poll. A `LISTEN` through such a pooler would deliver nothing reliably and
    /// would leave notifications on a server connection that other clients then get, failing
    /// their statements.
    pub fn wakeups(&self) -> Option<crate::planexe::plans::ListenOn> {
        use crate::planexe::plans::ListenOn;
        match &self.listen {
            Listen::Pool => Some(ListenOn::Pool(self.pool.sqlx().clone())),
            Listen::Direct(options) => Some(ListenOn::Options(Box::new((**options).clone()))),
            Listen::Off => None,
        }
    }

    /// A pooled connection, for several statements outside a transaction. It goes back to the
    /// pool when dropped, with no round trip unless it is in doubt (see [`Pool`]).
    ///
    /// A failure to open a connection is [`Error::Connect`] (retryable: nothing was sent).
    pub async fn acquire(&self) -> Result<PooledConnection> {
        self.pool.acquire().await.map_err(|e| self.opening(e))
    }

    /// Callers waiting for a connection of the primary's pool right now: in
    /// [`Database::acquire`], [`Database::begin`], [`Database::transaction`] or a statement run
    /// on [`Database::pool`] (one that gets a parked connection does not wait).
    pub fn pending_requests(&self) -> u64 {
        self.pool.pending_requests()
    }

    /// The replica's own pool, when `DATABASE_REPLICA_URL` is set (unlike
    /// [`Database::replica`], never the primary's).
    pub fn replica_pool(&self) -> Option<&Pool> {
        self.replica.as_ref()
    }

    /// Begins a transaction on a pooled connection; it rolls back when dropped uncommitted.
    pub async fn begin(&self) -> Result<Transaction<'static, Postgres>> {
        // The connection goes back to sqlx after the transaction (checked by its ping).
        let conn = self.acquire().await?.into_sqlx();
        // what `Pool::begin` does, with the acquire's failure classified on its own
        Ok(sqlx::Transaction::begin(conn, None).await?)
    }

    /// [`Error::opening`] naming the pool's current host.
    fn opening(&self, e: sqlx::Error) -> Error {
        Error::opening(e, || {
            let options = self.pool.connect_options();
            match options.get_socket() {
                Some(dir) => format!("{}/.s.PGSQL.{}", dir.display(), options.get_port()),
                None => format!("{}:{}", options.get_host(), options.get_port()),
            }
        })
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

    /// Applies pending migrations and reports what was done (see [`schema::sync`]), on a
    /// dedicated session to `SHARED_DB_MIGRATION_URL` when set. Refuses (before taking the
    /// migration lock) to migrate through a transaction-mode pooler ([`crate::pooler`]).
    pub async fn sync(&self) -> Result<SyncOutcome> {
        let options = self
            .migration
            .clone()
            .unwrap_or_else(|| self.pool.connect_options());
        let mut conn = schema::dedicated_connection(&options).await?;
        if let Err(e) = crate::pooler::ensure_session(&mut conn, &options).await {
            let _ = sqlx::Connection::close(conn).await;
            return Err(e);
        }
        let migrate = schema::MigrateOptions {
            locks: self.migration_locks,
            compatibility: self.compatibility,
            // A second session, opened only while an index build waits, reports whom it waits for.
            observer: Some((*options).clone()),
            report_waits_every: None,
        };
        let outcome = schema::sync_with_options(&MIGRATOR, &mut conn, &migrate).await;
        // Closing (rather than dropping) ends the session cleanly; the advisory lock goes with it.
        let _ = sqlx::Connection::close(conn).await;
        outcome
    }

    /// Where the database stands (see [`schema::status`]). Read-only.
    pub async fn status(&self) -> SchemaStatus {
        schema::status_with(&MIGRATOR, self.pool.sqlx(), self.compatibility).await
    }

    /// Readiness answer (see [`schema::health`]).
    pub async fn health(&self) -> Health {
        let mut health = schema::health_with(&MIGRATOR, self.pool.sqlx(), self.compatibility).await;
        if let Some(replica) = &self.replica {
            health.replica = Some(match crate::replica::lag(&self.pool, replica).await {
                Ok(lag) => crate::replica::ReplicaHealth::Lag(lag),
                Err(e) => crate::replica::ReplicaHealth::Unreachable(e.to_string()),
            });
        }
        health
    }

    /// Closes every connection; waits for checked-out connections to come back.
    pub async fn close(&self) {
        if let Some(replica) = &self.replica {
            replica.close().await;
        }
        self.pool.close().await;
    }
}
