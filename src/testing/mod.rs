//! Test support: one freshly migrated database per test, cloned from a template.
//!
//! Enabled by the `testing` feature. The server is `SHARED_DB_TEST_URL`, else `DATABASE_URL`,
//! else the embedded cluster (started on first use). The `SHARED_DB_*` pool knobs apply (e.g.
//! `SHARED_DB_TRANSACTION_POOLER=true`). When the URL goes through a transaction-mode
//! pooler, set `SHARED_DB_MIGRATION_URL` to the server itself: databases are then created,
//! migrated and dropped there, and only the tests' pools go through the pooler. The first test in a run migrates a
//! template database named after the migrations' checksums; every test then gets
//! `CREATE DATABASE … TEMPLATE …`, which copies files instead of replaying migrations. The
//! database is dropped when the [`TestDatabase`] is dropped, even if the test panicked
//! (set `SHARED_DB_TEST_KEEP=1` to keep it for a post-mortem).
//!
//! ```no_run
//! # async fn example() -> shared_db::Result<()> {
//! let test_db = shared_db::testing::TestDatabase::new().await?;
//! let status = test_db.db().status().await;
//! assert!(matches!(status, shared_db::schema::SchemaStatus::UpToDate { .. }));
//! # Ok(()) }
//! ```

pub mod proxy;

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection};
use tokio::sync::OnceCell;

use crate::embedded::quote_ident;
use crate::{Config, Database, Error, MIGRATOR, Result};

/// Pool size for test databases: enough for the concurrency tests' workers.
const TEST_POOL_SIZE: u32 = 24;

static SERVER: OnceCell<Server> = OnceCell::const_new();
static CITUS: OnceCell<crate::embedded::citus::CitusRunning> = OnceCell::const_new();

/// Where a test database is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The test server (see the [module docs](self)): one PostgreSQL server.
    Plain,
    /// The Citus test cluster (`crate::embedded::citus`: a coordinator and two workers on this
    /// machine, Citus built under `target/tools` on first use). The database is created on
    /// every node, migrated on the coordinator, and the shop distributed
    /// ([`crate::shop::distribute::distribute`]). No template: each test pays for the
    /// migrations and the distribution (a few seconds).
    Citus,
}

/// The running Citus test cluster (started, and Citus built, on first use).
pub async fn citus() -> Result<crate::embedded::citus::CitusRunning> {
    CITUS
        .get_or_try_init(|| async {
            let cluster =
                tokio::task::spawn_blocking(crate::embedded::citus::CitusCluster::default_location)
                    .await
                    .map_err(|e| Error::internal(format!("Citus build task failed: {e}")))??;
            Ok::<_, Error>(cluster.ensure_running().await?)
        })
        .await
        .cloned()
}

/// The server tests run on.
#[derive(Clone)]
struct Server {
    /// Direct session to the maintenance database: creates, migrates and drops databases.
    options: PgConnectOptions,
    /// What the tests' pools connect through (the pooler, if any), maintenance database.
    pooled: PgConnectOptions,
    /// URL with `{db}` standing for the database name.
    url_pattern: String,
}

/// Replaces the database of a PostgreSQL URL by `{db}`, keeping any query string.
fn url_pattern(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[after_scheme..]
        .find('/')
        .map_or(base.len(), |i| after_scheme + i);
    let mut pattern = format!("{}/{{db}}", &base[..host_end]);
    if let Some(q) = query {
        pattern.push('?');
        pattern.push_str(q);
    }
    pattern
}
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Connect options of the test server's maintenance database (`postgres`).
pub async fn server() -> Result<PgConnectOptions> {
    Ok(server_info().await?.options)
}

async fn server_info() -> Result<Server> {
    SERVER
        .get_or_try_init(|| async {
            let url = std::env::var("SHARED_DB_TEST_URL")
                .ok()
                .or_else(|| std::env::var("DATABASE_URL").ok())
                .filter(|u| !u.trim().is_empty());
            match url {
                Some(url) => {
                    let config = Config::from_env()?;
                    let pooled = config.connect_options_for(&url)?.database("postgres");
                    let options = match &config.migration_url {
                        Some(direct) => config.connect_options_for(direct)?.database("postgres"),
                        None => pooled.clone(),
                    };
                    Ok(Server {
                        options,
                        pooled,
                        url_pattern: url_pattern(&url),
                    })
                }
                None => {
                    let cluster = crate::embedded::Cluster::default_location()?;
                    let running = cluster.ensure_running().await?;
                    Ok(Server {
                        options: running.connect_options("postgres"),
                        pooled: running.connect_options("postgres"),
                        url_pattern: running.url("{db}"),
                    })
                }
            }
        })
        .await
        .cloned()
}

/// A database of its own for one test; dropped with this value.
#[derive(Debug)]
pub struct TestDatabase {
    db: Database,
    name: String,
    options: PgConnectOptions,
    /// Direct session to the maintenance database, for the drop.
    admin: PgConnectOptions,
    /// The other nodes' maintenance databases (Citus workers), where it is dropped too.
    other_nodes: Vec<PgConnectOptions>,
    url: String,
}

impl TestDatabase {
    /// A fresh database with every migration of this crate applied.
    pub async fn new() -> Result<Self> {
        Self::with_migrator(&MIGRATOR).await
    }

    /// A fresh database with `migrator`'s migrations applied.
    pub async fn with_migrator(migrator: &Migrator) -> Result<Self> {
        let server = server_info().await?;
        let template = ensure_template(&server.options, migrator).await?;
        Self::create(&server, Some(&template)).await
    }

    /// A fresh migrated database on `backend` (on [`Backend::Citus`], with the shop
    /// distributed).
    pub async fn on(backend: Backend) -> Result<Self> {
        match backend {
            Backend::Plain => Self::new().await,
            Backend::Citus => Self::citus().await,
        }
    }

    /// [`TestDatabase::with_fixture`] on `backend`.
    pub async fn with_fixture_on(backend: Backend, sql: &'static str) -> Result<Self> {
        let test_db = Self::on(backend).await?;
        sqlx::raw_sql(sql).execute(test_db.db.pool()).await?;
        Ok(test_db)
    }

    /// A fresh database on the Citus test cluster, migrated, the shop distributed.
    async fn citus() -> Result<Self> {
        // Databases are made, migrated and distributed one at a time: the distribution's DDL
        // on all nodes at once from parallel tests made Citus fail node connections.
        static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let cluster = citus().await?;
        let name = Self::fresh_name();
        let options = cluster.coordinator.connect_options(&name);
        {
            let _turn = ONE_AT_A_TIME.lock().await;
            cluster.ensure_database(&name).await?;
            let mut conn = PgConnection::connect_with(&options).await?;
            crate::schema::migrate(&MIGRATOR, &mut conn).await?;
            crate::shop::distribute::distribute(&mut conn).await?;
            conn.close().await?;
        }
        let pool = crate::database::with_acquire_timing(PgPoolOptions::new())
            .max_connections(TEST_POOL_SIZE)
            .connect_with(options.clone())
            .await?;
        Ok(TestDatabase {
            db: Database::from_pool(pool),
            url: cluster.coordinator.url(&name),
            name,
            options,
            admin: cluster.coordinator.connect_options("postgres"),
            other_nodes: cluster
                .workers
                .iter()
                .map(|w| w.connect_options("postgres"))
                .collect(),
        })
    }

    fn fresh_name() -> String {
        format!(
            "test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        )
    }

    /// A fresh, empty database (no migrations), for schema-lifecycle tests.
    pub async fn empty() -> Result<Self> {
        let server = server_info().await?;
        Self::create(&server, None).await
    }

    /// A fresh migrated database with the `.sql` fixture text applied.
    pub async fn with_fixture(sql: &'static str) -> Result<Self> {
        let test_db = Self::new().await?;
        sqlx::raw_sql(sql).execute(test_db.db.pool()).await?;
        Ok(test_db)
    }

    async fn create(server: &Server, template: Option<&str>) -> Result<Self> {
        let name = Self::fresh_name();
        let sql = match template {
            Some(t) => format!(
                "CREATE DATABASE {} TEMPLATE {}",
                quote_ident(&name),
                quote_ident(t)
            ),
            None => format!("CREATE DATABASE {}", quote_ident(&name)),
        };
        let mut admin = PgConnection::connect_with(&server.options).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut admin)
            .await?;
        admin.close().await?;

        let options = server.pooled.clone().database(&name);
        let url = server.url_pattern.replace("{db}", &name);
        let pool = crate::database::with_acquire_timing(PgPoolOptions::new())
            .max_connections(TEST_POOL_SIZE)
            .connect_with(options.clone())
            .await?;
        Ok(TestDatabase {
            db: Database::from_pool(pool),
            name,
            options,
            admin: server.options.clone(),
            other_nodes: Vec::new(),
            url,
        })
    }

    /// The database handle.
    pub fn db(&self) -> &Database {
        &self.db
    }

    /// The pool, as an executor.
    pub fn pool(&self) -> &sqlx::PgPool {
        self.db.pool()
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// URL of this database (for a child process, say). Contains the password.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Connect options for this database (e.g. for a second process or a dedicated connection).
    pub fn connect_options(&self) -> &PgConnectOptions {
        &self.options
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if std::env::var_os("SHARED_DB_TEST_KEEP").is_some() {
            eprintln!("keeping test database {}", self.name);
            return;
        }
        let name = std::mem::take(&mut self.name);
        let servers: Vec<PgConnectOptions> = std::iter::once(self.admin.clone())
            .chain(self.other_nodes.iter().cloned())
            .collect();
        // Drop may run inside a runtime (or during a panic); do the async work on a thread of
        // its own with a runtime of its own.
        let joined = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::internal(format!("cannot start a runtime: {e}")))?;
            rt.block_on(async {
                for server in &servers {
                    let mut admin = PgConnection::connect_with(server).await?;
                    let sql = format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        quote_ident(&name)
                    );
                    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                        .execute(&mut admin)
                        .await?;
                    admin.close().await?;
                }
                Ok::<_, Error>(())
            })
        })
        .join();
        if let Ok(Err(e)) = joined {
            eprintln!("could not drop test database: {e}");
        }
    }
}

/// Creates (once per server and migration set) the template database and returns its name.
async fn ensure_template(server: &PgConnectOptions, migrator: &Migrator) -> Result<String> {
    let mut hasher = std::hash::DefaultHasher::new();
    for m in migrator.iter() {
        m.version.hash(&mut hasher);
        m.checksum.hash(&mut hasher);
    }
    let hash = hasher.finish();
    let name = format!("template_shared_db_{hash:016x}");
    // Serialise template creation across threads and processes with an advisory lock.
    let lock_key = hash as i64;
    let mut admin = PgConnection::connect_with(server).await?;
    sqlx::query_scalar!(r#"SELECT pg_advisory_lock($1) AS "locked!: ()""#, lock_key)
        .fetch_one(&mut admin)
        .await?;
    let result = create_template_locked(server, migrator, &name, &mut admin).await;
    let unlock = sqlx::query_scalar!(r#"SELECT pg_advisory_unlock($1) AS "unlocked!""#, lock_key)
        .fetch_one(&mut admin)
        .await;
    result?;
    unlock?;
    admin.close().await?;
    Ok(name)
}

async fn create_template_locked(
    server: &PgConnectOptions,
    migrator: &Migrator,
    name: &str,
    admin: &mut PgConnection,
) -> Result<()> {
    let exists = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS "exists!""#,
        name
    )
    .fetch_one(&mut *admin)
    .await?;
    if exists {
        return Ok(());
    }
    // Build under a temporary name and rename when complete, so a crash mid-way never leaves a
    // half-migrated template behind under the real name.
    let building = format!("{name}_building");
    for sql in [
        format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&building)
        ),
        format!("CREATE DATABASE {}", quote_ident(&building)),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut *admin)
            .await?;
    }
    let mut conn = PgConnection::connect_with(&server.clone().database(&building)).await?;
    crate::schema::migrate(migrator, &mut conn).await?;
    conn.close().await?;
    let sql = format!(
        "ALTER DATABASE {} RENAME TO {}",
        quote_ident(&building),
        quote_ident(name)
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut *admin)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn url_pattern_swaps_the_database_and_keeps_the_query() {
        assert_eq!(
            super::url_pattern("postgres://u:p@h:5432/db?sslmode=disable"),
            "postgres://u:p@h:5432/{db}?sslmode=disable"
        );
        assert_eq!(super::url_pattern("postgres://h"), "postgres://h/{db}");
    }
}
