//! OpenTelemetry spans for repository functions (feature `otel`).
//!
//! Every repository function already opens a `tracing` span. With
//! [`tracing-opentelemetry`](https://docs.rs/tracing-opentelemetry)'s layer installed, each
//! becomes an OpenTelemetry span; [`layer`] adds the database client semantic conventions to
//! it, derived by [`crate::semconv`]'s rule: `db.system.name`, `db.namespace`,
//! `db.operation.name`, `db.collection.name`, `db.query.summary`, `server.address`,
//! `server.port`, and on failure `error.type` ([`crate::Error::kind`]) with the span status
//! set to error. The span's own fields (the ids it works on) come along as attributes.
//!
//! ```no_run
//! use opentelemetry::trace::TracerProvider as _;
//! use tracing_subscriber::prelude::*;
//!
//! let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build(); // + an exporter
//! tracing_subscriber::registry()
//!     .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("my-service")))
//!     .with(shared_db::otel::layer())
//!     .init();
//! ```
//!
//! Why these crates: `tracing-opentelemetry` is the `tracing` project's own bridge and keeps
//! the spans the library already has; `opentelemetry` is the API both sides share. The SDK and
//! the exporter (OTLP, or an in-memory one in tests) are the service's choice and not
//! dependencies of the library. `examples/otel.rs` exports to an OTLP collector.
//!
//! Limits: the OpenTelemetry span keeps the function's name (`status`); tracing-opentelemetry
//! fixes the name and kind when the span opens, before the conventions are known, so backends
//! show `db.query.summary` beside it rather than as the name. The server attributes are the
//! process's primary's (see [`crate::semconv`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use opentelemetry::KeyValue;
use opentelemetry::trace::Status;
use tracing::span::{Attributes, Id};
use tracing::{Metadata, Span, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::semconv;

/// The `tracing` layer that puts the database client conventions on repository spans. Install
/// it beside `tracing_opentelemetry::layer()` (in either order).
pub fn layer() -> ConventionLayer {
    ConventionLayer { _private: () }
}

/// See [`layer`].
#[derive(Debug)]
pub struct ConventionLayer {
    _private: (),
}

/// A repository span whose attributes are not set yet.
struct Unmarked;

impl<S> tracing_subscriber::Layer<S> for ConventionLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if semconv::is_repository(attrs.metadata().target())
            && let Some(span) = ctx.span(id)
        {
            span.extensions_mut().insert(Unmarked);
        }
    }

    /// On the first enter the span is current, so the attributes go through
    /// [`OpenTelemetrySpanExt`], the bridge's public way to add them (a span opened by
    /// `#[tracing::instrument]` cannot declare them without every function naming them).
    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let first = span.extensions_mut().remove::<Unmarked>().is_some();
        if !first {
            return;
        }
        let Some(attributes) = operation_attributes(span.metadata()) else {
            return;
        };
        let current = Span::current();
        if current.id().as_ref() != Some(id) {
            return;
        }
        for KeyValue { key, value, .. } in attributes.iter().cloned() {
            current.set_attribute(key, value);
        }
        if let Some(server) = server_attributes() {
            for KeyValue { key, value, .. } in server.iter().cloned() {
                current.set_attribute(key, value);
            }
        }
    }
}

/// A shared list of attributes.
type AttributeList = Arc<[KeyValue]>;

/// The operation's attributes, built once per call site (the strings are shared, so a span
/// pays for no allocation of its own).
fn operation_attributes(meta: &'static Metadata<'static>) -> Option<AttributeList> {
    static CACHE: OnceLock<RwLock<HashMap<usize, AttributeList>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = std::ptr::from_ref(meta) as usize;
    if let Some(found) = cache.read().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Some(found.clone());
    }
    let op = semconv::operation_of(meta)?;
    let mut out = vec![
        KeyValue::new("db.system.name", semconv::DB_SYSTEM),
        KeyValue::new("db.operation.name", op.name),
        KeyValue::new("db.query.summary", Arc::<str>::from(op.summary.as_str())),
    ];
    if let Some(table) = &op.collection {
        out.push(KeyValue::new(
            "db.collection.name",
            Arc::<str>::from(table.as_str()),
        ));
    }
    let out: AttributeList = out.into();
    cache
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, out.clone());
    Some(out)
}

/// `db.namespace`, `server.address`, `server.port` of the process's primary, rebuilt only when
/// it changes (failover).
fn server_attributes() -> Option<AttributeList> {
    static CACHE: Mutex<Option<(Arc<semconv::Server>, AttributeList)>> = Mutex::new(None);
    let server = semconv::server()?;
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((cached, attributes)) = cache.as_ref()
        && Arc::ptr_eq(cached, &server)
    {
        return Some(attributes.clone());
    }
    let attributes: AttributeList = vec![
        KeyValue::new("db.namespace", Arc::<str>::from(server.namespace.as_str())),
        KeyValue::new("server.address", Arc::<str>::from(server.address.as_str())),
        KeyValue::new("server.port", i64::from(server.port)),
    ]
    .into();
    *cache = Some((server, attributes.clone()));
    Some(attributes)
}

/// Marks the current repository span failed with `error.type` = [`crate::Error::kind`] (called
/// where errors arise, as the error counter is).
pub(crate) fn record_error(error: &crate::Error) {
    if matches!(error, crate::Error::NotFound) {
        return;
    }
    let span = Span::current();
    if span
        .metadata()
        .is_some_and(|m| semconv::is_repository(m.target()))
    {
        span.set_attribute("error.type", error.kind());
        span.set_status(Status::error(error.kind()));
    }
}
