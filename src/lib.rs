//! # shared-db
//!
//! The data-access layer that several services (web frontend, queue workers, API server, shop
//! admin) share to reach one PostgreSQL database. Plain Rust, no web framework in the core.
//!
//! ## Architecture in one screen
//!
//! ```text
//! Config::from_env()  ──►  Database::connect()  ──►  repository function  ──►  SQL (query! macros)  ──►  row struct
//!  (DATABASE_URL,           (pool; no URL is a       (free function taking     (checked against the       (plain struct
//!   SHARED_DB_* knobs)       configuration error)     an executor)              schema at build time)       mirroring a table)
//! ```
//!
//! 1. **Configuration** — [`Config`] is read once from the process environment
//!    (`DATABASE_URL`, the `SHARED_DB_*` pool knobs); the library never reads a `.env` file.
//!    Without `DATABASE_URL`, [`Database::connect`] fails with [`Error::Config`]. Local tools
//!    opt into a throwaway cluster under `target/` with the `embedded` feature
//!    (`Database::connect_or_embedded`).
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
//! (`Conflict`, `ForeignKey`, `Check`, …); `NotFound`, timeouts (`PoolTimeout`,
//! `StatementTimeout`, `LockTimeout`) and data exceptions have their own variants; and
//! [`Error::is_retryable`] says when trying again is safe and may help. Every repository function opens a
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
//! - [`multihost`], [`failover`]: libpq's multi-host URLs with `target_session_attrs`, and the
//!   pool switching hosts when the primary moves; [`pooler`]: refusing to migrate through a
//!   transaction-mode pooler.
//! - [`replica`]: explicit reads from a streaming replica ([`Database::replica`]) and its lag.
//!
//! Opt-in features (the default set is empty):
//!
//! - `embedded`: a private PostgreSQL cluster under `target/` for development and tests.
//! - `axum` (`web`): readiness handler, request-scoped transaction, error → HTTP status.
//! - `blocking` (`blocking`): the same operations for callers without an async runtime.
//! - `metrics` (`metrics`): pool, acquire, per-operation latency and error metrics through the
//!   `metrics` facade, and the `tracing` layer that times repository functions; names and
//!   attributes follow the OpenTelemetry database client conventions ([`semconv`]).
//! - `otel` (`otel`): the same conventions as attributes of every repository span, through
//!   `tracing-opentelemetry` (the service brings the SDK and exporter).
//! - `worker` (`worker`): the plan-queue worker loop (claim, progress, billing, finish).
//! - `testing` (`testing`): one freshly migrated database per test (enables `embedded`).
//!
//! ## Example
//!
//! ```no_run
//! use shared_db::planexe::plans::{self, NewPlan};
//!
//! # async fn example() -> shared_db::Result<()> {
//! let db = shared_db::Database::connect(&shared_db::Config::new(
//!     "postgres://planexe:secret@db.internal:5432/planexe",
//! ))
//! .await?;
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
//! queue worker (`examples/worker.rs`, feature `worker`); the `shared-db` command line (the
//! workspace's `cli/`) plays all of it in one command, `shared-db demo`.
#![warn(missing_docs)]

#[cfg(feature = "blocking")]
pub mod blocking;
pub mod config;
pub mod database;
#[cfg(feature = "embedded")]
pub mod embedded;
mod enum_label;
pub mod error;
pub mod failover;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod multihost;
#[cfg(feature = "otel")]
pub mod otel;
pub mod planexe;
pub mod pool;
pub mod pooler;
pub mod replica;
pub mod schema;
pub mod semconv;
pub mod shop;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tx;
#[cfg(feature = "axum")]
pub mod web;
#[cfg(feature = "worker")]
pub mod worker;

pub use config::Config;
pub use database::Database;
pub use enum_label::EnumLabel;
pub use error::{Error, Result, ResultExt};
pub use pool::{Pool, PooledConnection};

/// The migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();
