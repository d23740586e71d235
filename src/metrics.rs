//! Operational metrics through the [`metrics`](::metrics) facade (feature `metrics`).
//!
//! shared-db only *emits*; the service picks the exporter (Prometheus, StatsD, OpenTelemetry
//! through a bridge, …) by installing a `metrics` recorder, and without one every call here is a
//! no-op. The facade was chosen over OpenTelemetry because it is one small crate with no
//! exporter, runtime or SDK attached, so the library imposes nothing on the service.
//!
//! | series | type | labels | source |
//! | --- | --- | --- | --- |
//! | `shared_db_operation_duration_seconds` | histogram | `operation` | every repository function's span, open to close |
//! | `shared_db_operation_errors_total` | counter | `operation`, `kind` | every database or pool failure, and refused input |
//! | `shared_db_pool_acquire_duration_seconds` | histogram | | sqlx's acquire timing (wait for a connection, incl. opening one) |
//! | `shared_db_pool_connections` | gauge | | open connections ([`record_pool`]) |
//! | `shared_db_pool_idle_connections` | gauge | | idle connections ([`record_pool`]) |
//! | `shared_db_pool_max_connections` | gauge | | the pool's limit ([`record_pool`]) |
//! | `shared_db_schema_status` | gauge | `status` | 1 for the current [`SchemaStatus`], 0 for the others ([`record_schema_status`]) |
//!
//! `operation` is the function's path below the crate, e.g. `planexe::plans::status`. `kind` is
//! one label per [`Error`] variant in snake case (`conflict`, `superseded`, `lock_timeout`,
//! `data_exception`, …), and for a database error no variant types, its condition
//! (`serialization_failure`, `deadlock`, else `database`); `io` and `driver` for the connection.
//! sqlx 0.9 does not expose how many tasks wait for a connection; a full pool shows as
//! `connections == max_connections` with `idle_connections == 0` and a growing acquire time.
//!
//! Wiring (see `examples/service`): install a recorder, add [`layer`] to the `tracing`
//! subscriber (per-layer filters on your log layer, so a quiet log level does not hide the spans
//! from this layer), and call [`record_pool`] / [`record_schema_status`] before each scrape.
//! Errors are counted where they arise (the conversion of a sqlx error, [`Error::invalid_input`]),
//! labelled with the repository function whose span is current; outcomes a function builds
//! itself (`NotFound` after an optional read, `InsufficientCredits`) are answers, not failures,
//! and are not counted.

use std::time::Instant;

use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::error::sqlstate;
use crate::schema::SchemaStatus;
use crate::{Database, Error};

const OPERATION_DURATION: &str = "shared_db_operation_duration_seconds";
const OPERATION_ERRORS: &str = "shared_db_operation_errors_total";
const ACQUIRE_DURATION: &str = "shared_db_pool_acquire_duration_seconds";
const POOL_CONNECTIONS: &str = "shared_db_pool_connections";
const POOL_IDLE: &str = "shared_db_pool_idle_connections";
const POOL_MAX: &str = "shared_db_pool_max_connections";
const SCHEMA_STATUS: &str = "shared_db_schema_status";

/// Targets of the spans that time a repository function.
const REPOSITORY_TARGETS: [&str; 2] = ["shared_db::planexe", "shared_db::shop"];

/// Registers help text and units with the installed recorder; call once after installing it.
pub fn describe() {
    use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_histogram!(
        OPERATION_DURATION,
        Unit::Seconds,
        "Duration of a shared-db repository function, call to return"
    );
    describe_counter!(
        OPERATION_ERRORS,
        "Failures of a shared-db repository function, by error kind"
    );
    describe_histogram!(
        ACQUIRE_DURATION,
        Unit::Seconds,
        "Time to get a connection from the pool"
    );
    describe_gauge!(POOL_CONNECTIONS, "Open connections in the pool");
    describe_gauge!(POOL_IDLE, "Idle connections in the pool");
    describe_gauge!(POOL_MAX, "The pool's connection limit");
    describe_gauge!(
        SCHEMA_STATUS,
        "1 for the schema status the database is in, 0 for the others"
    );
}

/// The `tracing` layer that times repository functions and sqlx's pool acquires.
pub fn layer() -> MetricsLayer {
    MetricsLayer { _private: () }
}

/// See [`layer`].
#[derive(Debug)]
pub struct MetricsLayer {
    _private: (),
}

/// When a repository function's span opened.
struct Started(Instant);

impl<S> tracing_subscriber::Layer<S> for MetricsLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if is_repository(attrs.metadata().target())
            && let Some(span) = ctx.span(id)
        {
            span.extensions_mut().insert(Started(Instant::now()));
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        if !is_repository(span.metadata().target()) {
            return;
        }
        let Some(Started(at)) = span.extensions_mut().remove::<Started>() else {
            return;
        };
        let meta = span.metadata();
        ::metrics::histogram!(OPERATION_DURATION, "operation" => operation(meta.target(), meta.name()))
            .record(at.elapsed().as_secs_f64());
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != "sqlx::pool::acquire" {
            return;
        }
        let mut visitor = AcquiredAfter(None);
        event.record(&mut visitor);
        if let Some(secs) = visitor.0 {
            ::metrics::histogram!(ACQUIRE_DURATION).record(secs);
        }
    }
}

/// Reads sqlx's `acquired_after_secs` field.
struct AcquiredAfter(Option<f64>);

impl tracing::field::Visit for AcquiredAfter {
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        if field.name() == "acquired_after_secs" {
            self.0 = Some(value);
        }
    }

    fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
}

fn is_repository(target: &str) -> bool {
    REPOSITORY_TARGETS.iter().any(|t| target.starts_with(t))
}

/// `shared_db::planexe::plans` + `status` → `planexe::plans::status`.
fn operation(target: &str, name: &str) -> String {
    let module = target.strip_prefix("shared_db::").unwrap_or(target);
    format!("{module}::{name}")
}

/// Counts `error` against the repository function whose span is current (`unknown` outside
/// one). Called where errors arise; see the module docs.
pub(crate) fn count_error(error: &Error) {
    if matches!(error, Error::NotFound) {
        return;
    }
    let operation = tracing::Span::current()
        .metadata()
        .filter(|meta| is_repository(meta.target()))
        .map_or_else(|| "unknown".to_owned(), |m| operation(m.target(), m.name()));
    ::metrics::counter!(OPERATION_ERRORS, "operation" => operation, "kind" => error_kind(error))
        .increment(1);
}

/// A small, fixed set of labels: the variant, or for untyped database errors the condition.
/// Exhaustive on purpose: a new variant must choose its label here.
fn error_kind(error: &Error) -> &'static str {
    match error {
        Error::NotFound => "not_found",
        Error::Conflict { .. } => "conflict",
        Error::ForeignKey { .. } => "foreign_key",
        Error::Check { .. } => "check",
        Error::NotNull { .. } => "not_null",
        Error::InvalidInput(_) => "invalid_input",
        Error::Config(_) => "config",
        Error::ConnectTimeout { .. } => "connect_timeout",
        Error::Connect { .. } => "connect",
        Error::PoolTimeout | Error::Database(sqlx::Error::PoolTimedOut) => "pool_timeout",
        Error::StatementTimeout { .. } => "statement_timeout",
        Error::LockTimeout { .. } => "lock_timeout",
        Error::DataException { .. } => "data_exception",
        Error::Internal(_) => "internal",
        Error::Migrate(_) => "migrate",
        Error::SchemaIncompatible { .. } => "schema_incompatible",
        #[cfg(feature = "embedded")]
        Error::Embedded(_) => "embedded",
        Error::InsufficientStock { .. } => "insufficient_stock",
        Error::InvalidTransition { .. } => "invalid_transition",
        Error::InsufficientCredits { .. } => "insufficient_credits",
        Error::UnknownEnumLabel { .. } => "unknown_enum_label",
        Error::Superseded { .. } => "superseded",
        Error::TooManyApiKeys { .. } => "too_many_api_keys",
        Error::Database(sqlx::Error::Io(_)) => "io",
        Error::Database(sqlx::Error::Database(db)) => match db.code().as_deref() {
            Some(sqlstate::QUERY_CANCELED) => "statement_timeout",
            Some(sqlstate::LOCK_NOT_AVAILABLE) => "lock_timeout",
            Some(sqlstate::SERIALIZATION_FAILURE) => "serialization_failure",
            Some(sqlstate::DEADLOCK_DETECTED) => "deadlock",
            _ => "database",
        },
        Error::Database(_) => "driver",
    }
}

/// Sets the pool gauges from `db`'s pool as it is now. Cheap (atomics); call before a scrape or
/// on a timer.
pub fn record_pool(db: &Database) {
    let pool = db.pool();
    ::metrics::gauge!(POOL_CONNECTIONS).set(f64::from(pool.size()));
    ::metrics::gauge!(POOL_IDLE).set(pool.num_idle() as f64);
    ::metrics::gauge!(POOL_MAX).set(f64::from(pool.options().get_max_connections()));
}

/// Reads the schema status (one query on the migrations table, see [`Database::status`]) and
/// sets `shared_db_schema_status`. Returns the status read.
pub async fn record_schema_status(db: &Database) -> SchemaStatus {
    let status = db.status().await;
    let current = status_label(&status);
    for label in [
        "up_to_date",
        "upgrade_available",
        "no_info",
        "diverged",
        "ahead",
        "incompatible",
    ] {
        ::metrics::gauge!(SCHEMA_STATUS, "status" => label).set(if label == current {
            1.0
        } else {
            0.0
        });
    }
    status
}

fn status_label(status: &SchemaStatus) -> &'static str {
    match status {
        SchemaStatus::UpToDate { .. } => "up_to_date",
        SchemaStatus::UpgradeAvailable { .. } => "upgrade_available",
        SchemaStatus::NoInfo { .. } => "no_info",
        SchemaStatus::Diverged { .. } => "diverged",
        SchemaStatus::Ahead { .. } => "ahead",
        SchemaStatus::Incompatible { .. } => "incompatible",
    }
}
