//! Blocking facade (feature `blocking`) for callers without an async runtime: scripts, CLI
//! tools, synchronous services. The way the Python module offered sync and async session
//! factories side by side.
//!
//! [`BlockingDatabase`] owns a small Tokio runtime and an async [`Database`]; every call blocks
//! the calling thread until the operation is done. Any repository function can be called through
//! [`BlockingDatabase::run`] (one statement on the pool) or
//! [`BlockingDatabase::transaction`] (several statements, committed together).
//!
//! ```no_run
//! use shared_db::blocking::BlockingDatabase;
//!
//! fn main() -> shared_db::Result<()> {
//!     let db = BlockingDatabase::from_env()?;
//!     db.migrate()?;
//!     let ready = db.health().is_ready();
//!     let n: i64 = db.run(async |pool| {
//!         # let _ = pool;
//!         Ok(1) // e.g. shared_db::planexe::plans::count_pending(pool).await
//!     })?;
//!     # let _ = (ready, n);
//!     Ok(())
//! }
//! ```
//!
//! Do not call it from inside an async runtime (Tokio refuses to block a runtime thread); use
//! the async API there.
//!
//! The SQLite backend's facade (`shared_db_sqlite::blocking`, same methods) owns the same
//! runtime, built by [`runtime`].

use sqlx::PgConnection;

use crate::schema::{Health, SchemaStatus, SyncOutcome};
use crate::{Config, Database, Error, Pool, Result};

/// The runtime a blocking facade owns: two worker threads named `shared-db-blocking`, with I/O
/// and timers. The calling thread runs each call (`block_on`); the pool's background tasks
/// (reaping idle connections, say) run on the workers, between calls too. [`Error::Internal`]
/// when the runtime cannot start.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("shared-db-blocking")
        .enable_all()
        .build()
        .map_err(|e| Error::internal(format!("cannot start a runtime: {e}")))
}

/// A [`Database`] with blocking methods.
#[derive(Debug)]
pub struct BlockingDatabase {
    runtime: tokio::runtime::Runtime,
    db: Database,
}

impl BlockingDatabase {
    /// Connects with `config` (see [`Database::connect`]); [`Error::Internal`] when the runtime
    /// cannot start.
    pub fn connect(config: &Config) -> Result<Self> {
        let runtime = runtime()?;
        let db = runtime.block_on(Database::connect(config))?;
        Ok(BlockingDatabase { runtime, db })
    }

    /// [`Config::from_env`] followed by [`BlockingDatabase::connect`].
    pub fn from_env() -> Result<Self> {
        Self::connect(&Config::from_env()?)
    }

    /// The async handle inside.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Runs `op` with the pool as its executor and waits for it.
    pub fn run<T>(&self, op: impl AsyncFnOnce(&Pool) -> Result<T>) -> Result<T> {
        self.runtime.block_on(op(self.db.pool()))
    }

    /// Runs `op` in a transaction (see [`crate::tx::transaction`]) and waits for it.
    pub fn transaction<T>(
        &self,
        op: impl AsyncFnOnce(&mut PgConnection) -> Result<T>,
    ) -> Result<T> {
        self.runtime.block_on(self.db.transaction(op))
    }

    /// [`Database::migrate`], blocking.
    pub fn migrate(&self) -> Result<()> {
        self.runtime.block_on(self.db.migrate())
    }

    /// [`Database::sync`], blocking.
    pub fn sync(&self) -> Result<SyncOutcome> {
        self.runtime.block_on(self.db.sync())
    }

    /// [`Database::status`], blocking.
    pub fn status(&self) -> SchemaStatus {
        self.runtime.block_on(self.db.status())
    }

    /// [`Database::health`], blocking.
    pub fn health(&self) -> Health {
        self.runtime.block_on(self.db.health())
    }
}
