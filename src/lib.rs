//! # shared-db
//!
//! The data-access layer that several services share to reach one PostgreSQL database.
//!
//! A call flows like this:
//!
//! ```text
//! Config::from_env()  ──►  Database::connect()  ──►  repository function  ──►  SQL (query! macros)  ──►  row struct
//!  (DATABASE_URL,           (pool; embedded          (free function taking     (checked against the       (plain struct
//!   SHARED_DB_* knobs)       cluster if no URL)       an executor)              schema at build time)       mirroring a table)
//! ```
//!
//! - [`config`]: [`Config`], read from the environment.
//! - [`database`]: [`Database`], the pool handle a service keeps; schema lifecycle shortcuts.
//! - [`schema`]: migrate, status, sync, health: what services call at start-up and from
//!   readiness probes.
//! - [`tx`]: transactions with savepoint nesting, isolation levels, retries.
//! - [`error`]: the one [`Error`] type; constraint violations arrive typed.
//! - [`embedded`]: the private PostgreSQL cluster used when no `DATABASE_URL` is set.
//! - `testing` (feature `testing`): one freshly migrated database per test.
//!
//! Repository functions take their executor explicitly: `impl PgExecutor<'_>` when they run one
//! statement (pass `db.pool()`, `&mut *conn` or `&mut *tx`), `&mut PgConnection` when they run
//! several (pass `&mut *tx` or `&mut conn`). There is no global pool and no hidden session.
//!
//! ```no_run
//! # async fn example() -> shared_db::Result<()> {
//! let db = shared_db::Database::from_env().await?;
//! db.migrate().await?; // at start-up; safe from every replica at once
//! let health = db.health().await; // from the readiness probe
//! assert!(health.is_ready());
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

#[cfg(feature = "blocking")]
pub mod blocking;
pub mod config;
pub mod database;
pub mod embedded;
pub mod error;
pub mod planexe;
pub mod schema;
pub mod shop;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tx;
#[cfg(feature = "axum")]
pub mod web;

pub use config::Config;
pub use database::Database;
pub use error::{Error, Result, ResultExt};

/// The migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();
