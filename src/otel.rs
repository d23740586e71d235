//! OpenTelemetry spans for repository functions (feature `otel`).
//!
//! Every repository function already opens a `tracing` span. [`layer`] turns each into an
//! OpenTelemetry client span named by its `db.query.summary` (`status plans`) and carrying the
//! database client semantic conventions, derived by [`crate::semconv`]'s rule:
//! `db.system.name`, `db.namespace`, `db.operation.name`, `db.collection.name`,
//! `db.query.summary`, `server.address`, `server.port`, the span's own fields (the ids it works
//! on), and on failure `error.type` ([`crate::Error::kind`]) with the span status set to error.
//!
//! ```no_run
//! use opentelemetry::trace::TracerProvider as _;
//! use tracing_subscriber::prelude::*;
//!
//! let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build(); // + an exporter
//! let tracer = provider.tracer("my-service");
//! tracing_subscriber::registry()
//!     // the service's own spans (HTTP requests, jobs), through the `tracing` project's bridge
//!     .with(
//!         tracing_opentelemetry::layer()
//!             .with_tracer(tracer.clone())
//!             .with_filter(shared_db::otel::not_repository()),
//!     )
//!     // the library's spans, parented to the service's
//!     .with(shared_db::otel::layer(tracer))
//!     .init();
//! ```
//!
//! **Why a layer of its own rather than `tracing-opentelemetry` for these spans.** A repository
//! span is small and hot (W4 reads a plan's status 20k times a second), and a `#[instrument]`ed
//! future enters and leaves its span on every poll, six or seven times per statement. The
//! bridge pays on each of those polls (it activates the span's context and times busy and idle
//! periods) and builds a generic span from the fields; measured with callgrind it added about
//! 23,000 instructions to each `plans::status`. This layer starts the OpenTelemetry span once
//! when the `tracing` span opens (the sampler decides there, so an unsampled span costs almost
//! nothing more), does nothing per poll, puts attributes computed once per call site on it and
//! ends it when the span closes: BENCHMARKS.md, "OpenTelemetry", has the figures. The bridge
//! stays the right tool for the service's own spans; [`not_repository`] keeps it off the
//! library's, so no span is exported twice. Installed without that filter, the bridge exports
//! the library's spans itself and this layer only adds the conventions to them (the old, slower
//! path, still correct).
//!
//! Parents: a repository span is the child of the nearest enclosing span this layer or the
//! bridge knows (a request span), else of the current OpenTelemetry context.
//!
//! Sampling follows the trace, as the SDK's default sampler (`ParentBased`) does: under a parent
//! that was sampled the span is started with its attributes; under a parent that was not, no
//! OpenTelemetry span is started at all (a query of a dropped request costs a lookup, not a span);
//! a repository span without a parent is a root, which the service's sampler decides on, and only
//! a root it keeps gets its attributes made. Events inside a
//! repository span (sqlx's statement logs) are not turned into span events. The server
//! attributes are the process's primary's (see [`crate::semconv`]).
//!
//! Why these crates: `opentelemetry` is the API that the service's SDK implements;
//! `tracing-opentelemetry` is needed only to find the parent among the bridge's spans. The SDK
//! and the exporter (OTLP, or an in-memory one in tests) are the service's choice and not
//! dependencies of the library. `otel-example/` exports to an OTLP collector.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, OnceLock, RwLock};

use opentelemetry::trace::{
    Span as _, SpanBuilder, SpanContext, SpanKind, Status, TraceContextExt as _, Tracer,
};
use opentelemetry::{Context, KeyValue};
use tracing::dispatcher::WeakDispatch;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Dispatch, Metadata, Subscriber};
use tracing_subscriber::filter::{FilterFn, filter_fn};
use tracing_subscriber::layer::Context as LayerContext;
use tracing_subscriber::registry::LookupSpan;

use crate::semconv;

/// The `tracing` layer that exports repository spans through `tracer` (see the
/// [module docs](self) for how to install it beside `tracing-opentelemetry`).
pub fn layer<T>(tracer: T) -> ConventionLayer<T>
where
    T: Tracer + Send + Sync + 'static,
    T::Span: Send + Sync + 'static,
{
    ConventionLayer {
        tracer,
        dispatch: OnceLock::new(),
    }
}

/// A per-layer filter for `tracing-opentelemetry`'s layer: every span but the library's
/// repository spans, which [`layer`] exports.
pub fn not_repository() -> FilterFn<fn(&Metadata<'_>) -> bool> {
    filter_fn(|meta| !semconv::is_repository(meta.target()))
}

/// See [`layer`].
pub struct ConventionLayer<T> {
    tracer: T,
    /// The subscriber this layer is part of, to ask the bridge for its spans' contexts: inside
    /// a call of the subscriber, `tracing`'s current dispatcher is none.
    dispatch: OnceLock<WeakDispatch>,
}

impl<T> fmt::Debug for ConventionLayer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConventionLayer").finish_non_exhaustive()
    }
}

/// What this layer keeps for a repository span (in the span's extensions).
enum Exported {
    /// The span this layer started, ended when the `tracing` span closes.
    Own(Context),
    /// Under a parent that was not sampled: the parent's context, which children inherit.
    Inherited(Context),
    /// A root the sampler dropped: its span context alone (no context to allocate, nothing to
    /// end), from which a child learns that the trace is not sampled.
    Dropped(SpanContext),
}

impl Exported {
    /// The context a child span starts under.
    fn parent_of_child(&self) -> Context {
        match self {
            Exported::Own(cx) | Exported::Inherited(cx) => cx.clone(),
            Exported::Dropped(sc) => Context::current().with_remote_span_context(sc.clone()),
        }
    }

    /// The span this layer started, if it started one.
    fn own(&self) -> Option<&Context> {
        match self {
            Exported::Own(cx) => Some(cx),
            Exported::Inherited(_) | Exported::Dropped(_) => None,
        }
    }
}

/// A repository span's attributes: its call site's conventions, then its own fields.
fn attributes(site: &Site, attrs: &Attributes<'_>) -> Vec<KeyValue> {
    let mut list = Vec::with_capacity(site.attributes.len() + attrs.metadata().fields().len());
    list.extend(site.attributes.iter().cloned());
    attrs.record(&mut FieldList(&mut list));
    list
}

impl<S, T> tracing_subscriber::Layer<S> for ConventionLayer<T>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    T: Tracer + Send + Sync + 'static,
    T::Span: Send + Sync + 'static,
{
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
        let Some(site) = site(attrs.metadata()) else {
            return;
        };
        let dispatch = self.dispatch.get().and_then(WeakDispatch::upgrade);
        let bridge_of = |id: &Id| dispatch.as_ref().and_then(|d| bridge_context(id, d));
        // Installed without `not_repository`, the bridge has made this span its own: add the
        // conventions to its span instead of exporting a second one.
        if let Some(cx) = bridge_of(id) {
            cx.span().set_attributes(site.attributes.iter().cloned());
            return;
        }
        let Some(span_ref) = ctx.span(id) else { return };
        let parent = match span_ref.parent() {
            Some(parent) => match parent.extensions().get::<Exported>() {
                Some(exported) => exported.parent_of_child(),
                None => bridge_of(&parent.id()).unwrap_or_else(Context::current),
            },
            None => Context::current(),
        };
        let exported = if !parent.has_active_span() {
            // A root: the sampler decides here. Most roots are dropped under a ratio sampler, so
            // the attributes are made only for a span that records.
            // The builder carries an empty list sized for them, which a kept span's data takes
            // over, so adding them one by one does not regrow it.
            let room = site.attributes.len() + attrs.metadata().fields().len();
            let builder = SpanBuilder::from_name(site.name)
                .with_kind(SpanKind::Client)
                .with_attributes(Vec::with_capacity(room));
            let mut span = self.tracer.build_with_context(builder, &parent);
            if span.is_recording() {
                span.set_attributes(site.attributes.iter().cloned());
                let mut fields = Vec::with_capacity(attrs.metadata().fields().len());
                attrs.record(&mut FieldList(&mut fields));
                span.set_attributes(fields);
                Exported::Own(parent.with_span(span))
            } else {
                Exported::Dropped(span.span_context().clone())
            }
        } else if parent.span().span_context().is_sampled() {
            // Under a sampled parent (a request span) the span is kept: its attributes go in
            // with the builder, whole.
            let builder = SpanBuilder::from_name(site.name)
                .with_kind(SpanKind::Client)
                .with_attributes(attributes(&site, attrs));
            Exported::Own(parent.with_span(self.tracer.build_with_context(builder, &parent)))
        } else {
            // Under a parent that was not sampled no span is started at all (parent-based
            // sampling drops it anyway): the span keeps its parent's context, which its children
            // inherit and which is not ended when it closes.
            Exported::Inherited(parent)
        };
        span_ref.extensions_mut().insert(exported);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: LayerContext<'_, S>) {
        let Some(span_ref) = ctx.span(id) else { return };
        if let Some(cx) = span_ref
            .extensions()
            .get::<Exported>()
            .and_then(Exported::own)
        {
            let span = cx.span();
            if span.is_recording() {
                let mut fields = Vec::new();
                values.record(&mut FieldList(&mut fields));
                span.set_attributes(fields);
            }
        }
    }

    fn on_close(&self, id: Id, ctx: LayerContext<'_, S>) {
        let Some(span_ref) = ctx.span(&id) else {
            return;
        };
        if let Some(Exported::Own(cx)) = span_ref.extensions_mut().remove::<Exported>() {
            cx.span().end();
        }
    }
}

/// The bridge's OpenTelemetry context of span `id`, if `tracing-opentelemetry` is installed in
/// `dispatch` and handles that span.
fn bridge_context(id: &Id, dispatch: &Dispatch) -> Option<Context> {
    tracing_opentelemetry::get_otel_context(id, dispatch).filter(|cx| cx.has_active_span())
}

/// A span's fields as attributes: those it opened with, and those recorded later
/// (`Span::record`).
struct FieldList<'a>(&'a mut Vec<KeyValue>);

impl Visit for FieldList<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        use std::fmt::Write as _;
        // sized for the common field, a UUID (36 characters), so it is written without regrowing
        let mut text = String::with_capacity(40);
        let _ = write!(text, "{value:?}");
        self.0.push(KeyValue::new(field.name(), text));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push(KeyValue::new(field.name(), value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.push(KeyValue::new(field.name(), value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        let value = i64::try_from(value).unwrap_or(i64::MAX);
        self.0.push(KeyValue::new(field.name(), value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.push(KeyValue::new(field.name(), value));
    }
}

/// What every span of one call site shares, built once per call site and server: its name
/// and the conventions' attributes (the strings are shared, so a span pays for no allocation of
/// its own).
struct Site {
    /// `db.query.summary`, the span's name.
    name: &'static str,
    /// The operation's and the server's attributes.
    attributes: Arc<[KeyValue]>,
    /// The server the attributes name (rebuilt when the primary changes on failover).
    server: Option<Arc<semconv::Server>>,
}

/// The [`Site`] of a repository span's call site; `None` for other spans.
fn site(meta: &'static Metadata<'static>) -> Option<Arc<Site>> {
    type Cache = RwLock<HashMap<usize, Arc<Site>, BuildHasherDefault<AddressHasher>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    if !semconv::is_repository(meta.target()) {
        return None;
    }
    let cache = CACHE.get_or_init(Default::default);
    let server = semconv::server();
    // Call-site metadata is static: its address identifies the call site.
    let key = std::ptr::from_ref(meta) as usize;
    if let Some(found) = cache.read().unwrap_or_else(|e| e.into_inner()).get(&key)
        && same_server(&found.server, &server)
    {
        return Some(found.clone());
    }
    let op = semconv::operation_of(meta)?;
    let mut attributes = vec![
        KeyValue::new("db.system.name", semconv::DB_SYSTEM),
        KeyValue::new("db.operation.name", op.name),
        KeyValue::new("db.query.summary", Arc::<str>::from(op.summary.as_str())),
    ];
    if let Some(table) = &op.collection {
        attributes.push(KeyValue::new(
            "db.collection.name",
            Arc::<str>::from(table.as_str()),
        ));
    }
    if let Some(server) = &server {
        attributes.extend([
            KeyValue::new("db.namespace", Arc::<str>::from(server.namespace.as_str())),
            KeyValue::new("server.address", Arc::<str>::from(server.address.as_str())),
            KeyValue::new("server.port", i64::from(server.port)),
        ]);
    }
    let mut cache = cache.write().unwrap_or_else(|e| e.into_inner());
    // The name outlives every span: one string per call site (a few hundred in the library),
    // kept for the process's life, whatever the server.
    let name = match cache.get(&key) {
        Some(old) => old.name,
        None => Box::leak(op.summary.clone().into_boxed_str()),
    };
    let site = Arc::new(Site {
        name,
        attributes: attributes.into(),
        server,
    });
    cache.insert(key, site.clone());
    Some(site)
}

/// Hashes a call site's metadata address: addresses are distinct already, and SipHash (the
/// default) would cost more than the rest of the lookup on every span.
#[derive(Default)]
struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_usize(&mut self, address: usize) {
        // metadata is at least 8-byte aligned: spread the bits that vary over the whole word
        self.0 = (address as u64 >> 3).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Whether two server records are the same one (the primary changes on failover).
fn same_server(a: &Option<Arc<semconv::Server>>, b: &Option<Arc<semconv::Server>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// Marks the current repository span failed with `error.type` = [`crate::Error::kind`] (called
/// where errors arise, as the error counter is).
pub(crate) fn record_error(error: &crate::Error) {
    if matches!(error, crate::Error::NotFound) {
        return;
    }
    let current = tracing::Span::current();
    if !current
        .metadata()
        .is_some_and(|m| semconv::is_repository(m.target()))
    {
        return;
    }
    let cx = current.with_subscriber(|(id, dispatch)| {
        exported_context(id, dispatch).or_else(|| bridge_context(id, dispatch))
    });
    if let Some(cx) = cx.flatten() {
        let span = cx.span();
        span.set_attribute(KeyValue::new("error.type", error.kind()));
        span.set_status(Status::error(error.kind()));
    }
}

/// The context this layer keeps for span `id`, if it exports that span.
fn exported_context(id: &Id, dispatch: &Dispatch) -> Option<Context> {
    let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
    let span = registry.span(id)?;
    let extensions = span.extensions();
    extensions
        .get::<Exported>()
        .and_then(Exported::own)
        .cloned()
}
