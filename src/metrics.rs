//! Operational metrics through the [`::metrics`] facade (feature `metrics`).
//!
//! shared-db only *emits*; the service picks the exporter (Prometheus, StatsD, OpenTelemetry
//! through a bridge, …) by installing a `metrics` recorder, and without one every call here is a
//! no-op. The facade was chosen over OpenTelemetry because it is one small crate with no
//! exporter, runtime or SDK attached, so the library imposes nothing on the service.
//!
//! The database client instruments follow the OpenTelemetry semantic conventions (names and
//! attributes as in the conventions; a Prometheus exporter renders the dots as underscores,
//! `db_client_operation_duration`):
//!
//! | series | type | labels | source |
//! | --- | --- | --- | --- |
//! | `db.client.operation.duration` | histogram (s) | `db.system.name`, `db.operation.name`, `db.collection.name`, `error.type` (failures only) | every repository function's span, open to close |
//! | `db.client.connection.count` | gauge | `db.client.connection.pool.name`, `db.client.connection.state` (`idle`, `used`) | [`record_pool`] |
//! | `db.client.connection.max` | gauge | `db.client.connection.pool.name` | the pool's limit ([`record_pool`]) |
//! | `db.client.connection.pending_requests` | gauge | `db.client.connection.pool.name` | callers waiting for a connection of the primary's pool now: [`Database::acquire`] / `begin` / `transaction` and statements on `db.pool()` ([`record_pool`]) |
//! | `db.client.connection.wait_time` | histogram (s) | | sqlx's acquire timing (wait for a connection, incl. opening one), and the wait of an acquire served from [`crate::Pool`]'s stack |
//! | `shared_db_operation_errors_total` | counter | `operation`, `kind` | every database or pool failure, and refused input |
//! | `shared_db_schema_status` | gauge | `status` | 1 for the current [`SchemaStatus`], 0 for the others ([`record_schema_status`]) |
//!
//! `db.operation.name` and `db.collection.name` are derived from the span by
//! [`crate::semconv`]'s rule (function name; the module's table, `shop.products` for the shop
//! schema). `error.type` and `kind` are [`Error::kind`]: one label per variant in snake case
//! (`conflict`, `superseded`, `lock_timeout`, …), and for a database error no variant types, its
//! condition (`serialization_failure`, `deadlock`, else `database`); `io` and `driver` for the
//! connection. `operation` is the function's path below the crate, e.g. `planexe::plans::status`.
//! `pool.name` is `primary` or `replica`.
//!
//! `pending_requests` counts the callers of [`crate::Pool::acquire`] (which
//! [`Database::acquire`], `begin`, `transaction` and every statement on `db.pool()` go through)
//! that found no parked connection and wait; `web::Tx`, whose layer acquires from sqlx's pool
//! itself, waits inside sqlx, uncounted; its wait still shows in `wait_time`. The `idle` count is
//! sqlx's idle connections plus those parked on [`crate::Pool`]'s stack.
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

use crate::schema::SchemaStatus;
use crate::{Database, Error, semconv};

const OPERATION_DURATION: &str = "db.client.operation.duration";
const OPERATION_ERRORS: &str = "shared_db_operation_errors_total";
const WAIT_TIME: &str = "db.client.connection.wait_time";
const CONNECTION_COUNT: &str = "db.client.connection.count";
const CONNECTION_MAX: &str = "db.client.connection.max";
const PENDING_REQUESTS: &str = "db.client.connection.pending_requests";
const SCHEMA_STATUS: &str = "shared_db_schema_status";

/// Registers help text and units with the installed recorder; call once after installing it.
pub fn describe() {
    use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_histogram!(
        OPERATION_DURATION,
        Unit::Seconds,
        "Duration of database client operations (a shared-db repository function, call to return)"
    );
    describe_counter!(
        OPERATION_ERRORS,
        "Failures of a shared-db repository function, by error kind"
    );
    describe_histogram!(
        WAIT_TIME,
        Unit::Seconds,
        "The time it took to obtain an open connection from the pool"
    );
    describe_gauge!(
        CONNECTION_COUNT,
        "The number of connections that are currently in state described by the state attribute"
    );
    describe_gauge!(
        CONNECTION_MAX,
        "The maximum number of open connections allowed"
    );
    describe_gauge!(
        PENDING_REQUESTS,
        "The number of current pending requests for an open connection"
    );
    describe_gauge!(
        SCHEMA_STATUS,
        "1 for the schema status the database is in, 0 for the others"
    );
}

/// The `tracing` layer that times repository functions (`db.client.operation.duration`) and
/// sqlx's pool acquires (`db.client.connection.wait_time`).
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

/// `error.type` of the repository function whose span this is, once it failed.
struct Failed(&'static str);

impl<S> tracing_subscriber::Layer<S> for MetricsLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if semconv::is_repository(attrs.metadata().target())
            && let Some(span) = ctx.span(id)
        {
            span.extensions_mut().insert(Started(Instant::now()));
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let meta = span.metadata();
        let Some(op) = semconv::operation_of(meta) else {
            return;
        };
        let (started, failed) = {
            let mut ext = span.extensions_mut();
            (ext.remove::<Started>(), ext.remove::<Failed>())
        };
        let Some(Started(at)) = started else { return };
        let mut labels = vec![
            ("db.system.name", semconv::DB_SYSTEM.to_owned()),
            ("db.operation.name", op.name.to_owned()),
        ];
        if let Some(table) = &op.collection {
            labels.push(("db.collection.name", table.clone()));
        }
        if let Some(Failed(kind)) = failed {
            labels.push(("error.type", kind.to_owned()));
        }
        let labels: Vec<::metrics::Label> = labels
            .into_iter()
            .map(|(k, v)| ::metrics::Label::new(k, v))
            .collect();
        ::metrics::histogram!(OPERATION_DURATION, labels).record(at.elapsed().as_secs_f64());
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != "sqlx::pool::acquire" {
            return;
        }
        let mut visitor = AcquiredAfter(None);
        event.record(&mut visitor);
        if let Some(secs) = visitor.0 {
            ::metrics::histogram!(WAIT_TIME).record(secs);
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
    let span = tracing::Span::current();
    let operation = span
        .metadata()
        .filter(|meta| semconv::is_repository(meta.target()))
        .map_or_else(|| "unknown".to_owned(), |m| operation(m.target(), m.name()));
    let kind = error.kind();
    ::metrics::counter!(OPERATION_ERRORS, "operation" => operation, "kind" => kind).increment(1);
    // the duration of this function's span is labelled with its `error.type`
    span.with_subscriber(|(id, dispatch)| {
        if let Some(registry) = dispatch.downcast_ref::<tracing_subscriber::Registry>()
            && let Some(span) = registry.span(id)
            && semconv::is_repository(span.metadata().target())
        {
            span.extensions_mut().replace(Failed(kind));
        }
    });
}

/// Sets the connection gauges from `db`'s pools (primary, and the replica's when configured) as
/// they are now. Cheap (atomics); call before a scrape or on a timer.
pub fn record_pool(db: &Database) {
    let pools = [("primary", Some(db.pool())), ("replica", db.replica_pool())];
    for (name, pool) in pools {
        let Some(pool) = pool else { continue };
        let idle = pool.num_idle() as f64;
        let open = f64::from(pool.size());
        ::metrics::gauge!(CONNECTION_COUNT, "db.client.connection.pool.name" => name, "db.client.connection.state" => "idle")
            .set(idle);
        ::metrics::gauge!(CONNECTION_COUNT, "db.client.connection.pool.name" => name, "db.client.connection.state" => "used")
            .set((open - idle).max(0.0));
        ::metrics::gauge!(CONNECTION_MAX, "db.client.connection.pool.name" => name)
            .set(f64::from(pool.options().get_max_connections()));
    }
    ::metrics::gauge!(PENDING_REQUESTS, "db.client.connection.pool.name" => "primary")
        .set(db.pending_requests() as f64);
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
