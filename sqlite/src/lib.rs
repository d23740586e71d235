//! shared-db on one SQLite file, for local and single-node deployments.
//!
//! The same library as the PostgreSQL one where a user can tell: [`Database`] is built from the
//! same [`shared_db::Config`] (`DATABASE_URL=sqlite://path/to/file.db`), answers `migrate`,
//! `status`, `sync` and `health` with the same [`shared_db::schema::SchemaStatus`] states (and so
//! the same `shared-db status` exit codes, compared by the same rule,
//! [`shared_db::schema::compare`]), and fails with the same [`shared_db::Error`].
//!
//! What SQLite needs that PostgreSQL does not:
//!
//! - **The connection invariant** ([`connect`]): every connection the pool opens, now or after
//!   it grew or recycled one, runs with `journal_mode=WAL` (readers and the writer work at the
//!   same time), `busy_timeout` (a locked database waits instead of failing;
//!   `SHARED_DB_SQLITE_BUSY_TIMEOUT_MS`, default 5 s), `foreign_keys=ON` and
//!   `synchronous=NORMAL`. These cannot go in the URL; the options carry them.
//! - **Write transactions take the write lock at `BEGIN`** ([`Database::begin`] is
//!   `BEGIN IMMEDIATE`), so waiting for another writer happens there, under `busy_timeout`, and
//!   `SQLITE_BUSY_SNAPSHOT` (a deferred transaction that read, then tries to write after another
//!   connection committed) cannot surface halfway through one.
//! - **`:memory:` is refused**: each pooled connection would get a database of its own.
//! - **Migrations** are serialised across processes by an advisory lock on a file next to the
//!   database (SQLite has no advisory locks of its own), so every replica may migrate at start-up.
//!
//! Queries are checked at build time against this crate's own SQLite schema
//! (`sqlite/migrations`, offline data in `sqlite/.sqlx`, `SQLITE_DATABASE_URL` while writing
//! them), as the PostgreSQL crate's are against its own.

#[cfg(feature = "blocking")]
pub mod blocking;
pub mod connect;
mod database;
pub mod error;
pub mod planexe;
pub mod schema;
pub mod tx;

pub use database::Database;

/// This backend's migrations (`sqlite/migrations`), compiled in.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();
