//! # shared-db
//!
//! The data-access layer that several services (web frontend, queue workers, API server, shop
//! admin) share to reach one PostgreSQL database. Plain Rust, no web framework in the core.
//!
//! ## Architecture in one screen
//!
//! ```text
//! Config::from_env()  ──►  Database::connect()  ──►  repository function  ──►  SQL (query! macros)  ──►  row struct
//!  (DATABASE_URL,           (pool; embedded          (free function taking     (checked against the       (plain struct
//!   SHARED_DB_* knobs)       cluster if no URL)       an executor)              schema at build time)       mirroring a table)
//! ```
//!
//! 1. **Configuration** — [`Config`] is read once from the environment (`DATABASE_URL`, the
//!    `SHARED_DB_*` pool knobs, a `.env` file if present). No URL selects the [`embedded`]
//!    PostgreSQL cluster under `target/`, so nothing needs to be set up to try it.
//! 2. **[`Database`]** — the pool handle a service builds at start-up and clones into every task.
//!    It is also where the schema lifecycle lives: [`Database::migrate`] at start-up (safe from
//!    every replica at once), [`Database::status`] for deploy checks, [`Database::health`] for
//!    readiness probes (details in [`schema`]).
//! 3. **Repository functions** — one module per table, named after it, under [`planexe`] (the
//!    PlanExe tables, wire-compatible with the Python services) and [`shop`] (the storefront
//!    schema). Each is a free function that takes its executor explicitly:
//!    `impl PgExecutor<'_>` when it runs one statement (pass `db.pool()`, `&mut *conn` or
//!    `&mut *tx`), `&mut PgConnection` when it runs several (it then opens its own transaction,
//!    or a savepoint inside yours, see [`tx`]). There is no global pool and no hidden session.
//! 4. **Row structs** — next to the functions that return them (`planexe::plans::Plan`,
//!    `shop::products::Product`, …): plain `Serialize` structs; secret columns never serialize
//!    and never appear in `Debug`.
//!
//! Every failure is one [`Error`]: constraint violations arrive typed by constraint name
//! (`Conflict`, `ForeignKey`, `Check`, …), `NotFound` is its own variant, and
//! [`Error::is_retryable`] says when trying again may help. Every repository function opens a
//! `tracing` span named after it (target = its module, ids as fields, never secrets), so a
//! service's logs show which operation ran and, with span-close events on, how long it took.
//!
//! ## Modules
//!
//! - [`config`]: [`Config`], read from the environment.
//! - [`database`]: [`Database`], the pool handle a service keeps; schema lifecycle shortcuts.
//! - [`schema`]: migrate, status, sync, health: what services call at start-up and from
//!   readiness probes.
//! - [`tx`]: transactions with savepoint nesting, isolation levels, retries.
//! - [`error`]: the one [`Error`] type; constraint violations arrive typed.
//! - [`planexe`]: the PlanExe tables (plans queue, workers, events, users, credits, payments,
//!   API keys, telemetry).
//! - [`shop`]: the storefront schema (shops, catalog with translations, orders, admin users)
//!   and its whitelisted list filtering ([`shop::ListParams`], `Content-Range`).
//! - [`embedded`]: the private PostgreSQL cluster used when no `DATABASE_URL` is set.
//! - `web` (feature `axum`): readiness handler, request-scoped transaction, error → HTTP status.
//! - `blocking` (feature `blocking`): the same operations for callers without an async runtime.
//! - `metrics` (feature `metrics`): pool, acquire, per-operation latency and error metrics
//!   through the `metrics` facade, and the `tracing` layer that times repository functions.
//! - `testing` (feature `testing`): one freshly migrated database per test.
//!
//! ## Example
//!
//! ```no_run
//! use shared_db::planexe::plans::{self, NewPlan};
//!
//! # async fn example() -> shared_db::Result<()> {
//! let db = shared_db::Database::from_env().await?;
//! db.migrate().await?; // at start-up; safe from every replica at once
//! assert!(db.health().await.is_ready()); // from the readiness probe
//!
//! // one statement: the pool is the executor
//! let queued = plans::enqueue(
//!     db.pool(),
//!     &NewPlan { prompt: "a plan for a bakery", ..Default::default() },
//! )
//! .await?;
//!
//! // several statements that must commit together: a transaction
//! let mut tx = db.begin().await?;
//! let status = plans::status(&mut *tx, queued.id).await?;
//! tx.commit().await?;
//! # let _ = status;
//! # Ok(()) }
//! ```
//!
//! The repository's `examples/` hold a web service (`examples/service`, feature `axum`) and a
//! queue worker (`examples/worker.rs`); `shared-db demo` plays all of it in one command.
#![warn(missing_docs)]

#[cfg(feature = "blocking")]
pub mod blocking;
pub mod config;
pub mod database;
pub mod embedded;
pub mod error;
#[cfg(feature = "metrics")]
pub mod metrics;
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
