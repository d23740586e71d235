//! Blocking facade (feature `blocking`) for callers without an async runtime, on SQLite: the
//! methods of [`shared_db::blocking::BlockingDatabase`] with the same names and meaning, so a
//! synchronous service's start-up and probes (`connect`/`from_env`, `migrate`, `status`, `sync`,
//! `health`) read the same on either backend, and `DATABASE_URL=sqlite://app.db` is the switch.
//!
//! [`BlockingDatabase`] owns the runtime every blocking facade owns
//! ([`shared_db::blocking::runtime`]) and an async [`Database`]; every call blocks the calling
//! thread until the operation is done. The repository functions of this crate take a
//! connection, so [`BlockingDatabase::run`] hands `op` a pooled connection outside any
//! transaction (each statement commits on its own, as on the PostgreSQL pool) and
//! [`BlockingDatabase::transaction`] one inside a write transaction (`BEGIN IMMEDIATE`).
//!
//! ```no_run
//! use shared_db_sqlite::blocking::BlockingDatabase;
//! use shared_db_sqlite::planexe::plans;
//!
//! fn main() -> shared_db::Result<()> {
//!     let db = BlockingDatabase::from_env()?; // DATABASE_URL=sqlite://app.db
//!     db.migrate()?;
//!     let ready = db.health().is_ready();
//!     let pending = db.run(async |conn| plans::count_pending(conn).await)?;
//!     # let _ = (ready, pending);
//!     Ok(())
//! }
//! ```
//!
//! Where the URL alone decides the backend, [`AnyBlockingDatabase`] connects to either and
//! answers the lifecycle calls for both.
//!
//! Do not call it from inside an async runtime (Tokio refuses to block a runtime thread); use
//! the async API there.

use shared_db::schema::{Health, SchemaStatus, SyncOutcome};
use shared_db::{Config, Result};
use sqlx::SqliteConnection;

use crate::Database;

/// A [`Database`] with blocking methods.
#[derive(Debug)]
pub struct BlockingDatabase {
    runtime: tokio::runtime::Runtime,
    db: Database,
}

impl BlockingDatabase {
    /// Opens the file `config` names (see [`Database::connect`]: created if missing, one
    /// connection opened at once); [`shared_db::Error::Internal`] when the runtime cannot start.
    pub fn connect(config: &Config) -> Result<Self> {
        let runtime = shared_db::blocking::runtime()?;
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

    /// Runs `op` with a pooled connection, outside a transaction (each statement commits on its
    /// own), and waits for it.
    pub fn run<T>(&self, op: impl AsyncFnOnce(&mut SqliteConnection) -> Result<T>) -> Result<T> {
        self.runtime.block_on(async {
            let mut conn = self.db.acquire().await?;
            op(&mut conn).await
        })
    }

    /// Runs `op` in a write transaction (see [`crate::tx::transaction`]: committed on `Ok`,
    /// rolled back on `Err`) and waits for it.
    pub fn transaction<T>(
        &self,
        op: impl AsyncFnOnce(&mut SqliteConnection) -> Result<T>,
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

/// Either backend's blocking facade, chosen by the URL: a `sqlite:` URL opens
/// [`BlockingDatabase`] on that file, any other [`shared_db::blocking::BlockingDatabase`]. What a
/// synchronous service holds when the deployment's `DATABASE_URL` decides the backend: its
/// start-up and probes (`migrate`, `sync`, `status`, `health`) are the same code on both.
///
/// Repository calls go through the backend's own facade ([`AnyBlockingDatabase::Postgres`],
/// [`AnyBlockingDatabase::Sqlite`]): each backend's functions take their own executor.
#[derive(Debug)]
pub enum AnyBlockingDatabase {
    /// The library on a PostgreSQL server.
    Postgres(shared_db::blocking::BlockingDatabase),
    /// This crate on a SQLite file.
    Sqlite(BlockingDatabase),
}

impl AnyBlockingDatabase {
    /// Connects to `config.database_url` with the backend its scheme names
    /// ([`crate::connect::is_sqlite_url`]); [`shared_db::Error::Config`] without a URL.
    pub fn connect(config: &Config) -> Result<Self> {
        let url = config.require_url()?;
        if crate::connect::is_sqlite_url(url.expose()) {
            BlockingDatabase::connect(config).map(AnyBlockingDatabase::Sqlite)
        } else {
            shared_db::blocking::BlockingDatabase::connect(config)
                .map(AnyBlockingDatabase::Postgres)
        }
    }

    /// [`Config::from_env`] followed by [`AnyBlockingDatabase::connect`].
    pub fn from_env() -> Result<Self> {
        Self::connect(&Config::from_env()?)
    }

    /// Applies pending migrations of the backend's own set.
    pub fn migrate(&self) -> Result<()> {
        match self {
            AnyBlockingDatabase::Postgres(db) => db.migrate(),
            AnyBlockingDatabase::Sqlite(db) => db.migrate(),
        }
    }

    /// Applies pending migrations and says what was done.
    pub fn sync(&self) -> Result<SyncOutcome> {
        match self {
            AnyBlockingDatabase::Postgres(db) => db.sync(),
            AnyBlockingDatabase::Sqlite(db) => db.sync(),
        }
    }

    /// Where the database stands (same states and exit codes on both backends).
    pub fn status(&self) -> SchemaStatus {
        match self {
            AnyBlockingDatabase::Postgres(db) => db.status(),
            AnyBlockingDatabase::Sqlite(db) => db.status(),
        }
    }

    /// Readiness answer.
    pub fn health(&self) -> Health {
        match self {
            AnyBlockingDatabase::Postgres(db) => db.health(),
            AnyBlockingDatabase::Sqlite(db) => db.health(),
        }
    }
}
