//! OpenTelemetry: repository spans carry the database client semantic conventions, sit under
//! the service's own spans, and are exported once whichever way the layers are installed.
//!
//! The spans go into the SDK's in-memory exporter, which hands back exactly what an OTLP
//! exporter would send. Each story installs its own subscriber for its own thread
//! (`set_default`; a `#[tokio::test]` runs on one thread). The server attributes are the
//! process's (the last pool opened), so the stories take turns.

use std::collections::HashMap;

use opentelemetry::trace::{SpanKind, Status, TracerProvider as _};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use shared_db::planexe::plans::{self, NewPlan};
use shared_db::shop::shops;
use shared_db::testing::TestDatabase;
use tracing::Instrument as _;
use tracing_subscriber::prelude::*;

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn attributes(span: &SpanData) -> HashMap<String, Value> {
    span.attributes
        .iter()
        .map(|KeyValue { key, value, .. }| (key.to_string(), value.clone()))
        .collect()
}

fn one<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    let found: Vec<&SpanData> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "one `{name}` span: {spans:#?}");
    found[0]
}

/// A provider exporting into memory, synchronously (every span is there once it ended).
fn provider() -> (SdkTracerProvider, InMemorySpanExporter) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    (provider, exporter)
}

#[tokio::test]
async fn repository_spans_carry_the_database_client_conventions() -> anyhow::Result<()> {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (provider, exporter) = provider();
    let tracer = provider.tracer("shared-db-test");
    let _subscriber = tracing_subscriber::registry()
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(tracer.clone())
                .with_filter(shared_db::otel::not_repository()),
        )
        .with(shared_db::otel::layer(tracer))
        .set_default();

    let test_db = TestDatabase::new().await?;
    // connected as a service connects: the pool's server becomes the spans' server.*
    let db = &shared_db::Database::connect(&shared_db::Config::new(test_db.url())).await?;
    let queued = plans::enqueue(
        db.pool(),
        &NewPlan {
            prompt: "otel",
            ..Default::default()
        },
    )
    .await?;
    plans::status(db.pool(), queued.id).await?;
    shops::create(db.pool(), &shops::ShopFields::named("twice")).await?;
    let conflict = shops::create(db.pool(), &shops::ShopFields::named("twice"))
        .await
        .unwrap_err();
    assert_eq!(conflict.kind(), "conflict");

    provider.force_flush()?;
    let spans = exporter.get_finished_spans()?;
    let options = test_db.connect_options();

    // named by its summary, as the conventions ask of a database client span
    let status = one(&spans, "status plans");
    assert_eq!(status.span_kind, SpanKind::Client);
    let a = attributes(status);
    for (key, want) in [
        ("db.system.name", Value::from("postgresql")),
        ("db.operation.name", Value::from("status")),
        ("db.collection.name", Value::from("plans")),
        ("db.query.summary", Value::from("status plans")),
        ("db.namespace", Value::from(test_db.name().to_owned())),
        ("server.address", Value::from(options.get_host().to_owned())),
        ("server.port", Value::I64(i64::from(options.get_port()))),
    ] {
        assert_eq!(a.get(key), Some(&want), "{key} of {a:#?}");
    }
    assert_eq!(
        a.get("id").map(ToString::to_string),
        Some(queued.id.to_string()),
        "the span's own fields stay"
    );
    assert!(!a.contains_key("error.type"), "a success has no error.type");
    assert_eq!(status.status, Status::Unset);
    assert!(
        status.end_time >= status.start_time,
        "the span ends when the call returns"
    );

    let enqueue = attributes(one(&spans, "enqueue plans"));
    assert_eq!(
        enqueue.get("db.operation.name"),
        Some(&Value::from("enqueue"))
    );

    let creates: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.name == "create shop.shops")
        .collect();
    assert_eq!(creates.len(), 2, "{spans:#?}");
    let failed = creates
        .iter()
        .find(|s| attributes(s).contains_key("error.type"))
        .expect("the refused create is marked");
    let f = attributes(failed);
    assert_eq!(f.get("error.type"), Some(&Value::from("conflict")));
    assert_eq!(
        f.get("db.collection.name"),
        Some(&Value::from("shop.shops"))
    );
    assert!(
        matches!(&failed.status, Status::Error { description } if description == "conflict"),
        "{:?}",
        failed.status
    );
    Ok(())
}

#[tokio::test]
async fn a_repository_span_is_the_child_of_the_service_span_around_it() -> anyhow::Result<()> {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (provider, exporter) = provider();
    let tracer = provider.tracer("shared-db-test");
    let _subscriber = tracing_subscriber::registry()
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(tracer.clone())
                // no context activation: the parent is found through the bridge's span itself,
                // not through the current OpenTelemetry context
                .with_context_activation(false)
                .with_filter(shared_db::otel::not_repository()),
        )
        .with(shared_db::otel::layer(tracer))
        .set_default();
    let test_db = TestDatabase::new().await?;
    let db = test_db.db();

    // a request handler of the service: its span comes from the bridge
    async {
        let queued = plans::enqueue(
            db.pool(),
            &NewPlan {
                prompt: "inside a request",
                ..Default::default()
            },
        )
        .await?;
        plans::status(db.pool(), queued.id).await
    }
    .instrument(tracing::info_span!("GET /plans/{id}"))
    .await?;

    provider.force_flush()?;
    let spans = exporter.get_finished_spans()?;
    let request = one(&spans, "GET /plans/{id}");
    for name in ["enqueue plans", "status plans"] {
        let child = one(&spans, name);
        assert_eq!(
            child.span_context.trace_id(),
            request.span_context.trace_id(),
            "{name} is in the request's trace"
        );
        assert_eq!(
            child.parent_span_id,
            request.span_context.span_id(),
            "{name} hangs off the request"
        );
    }
    assert_eq!(spans.len(), 3, "nothing exported twice: {spans:#?}");
    Ok(())
}

#[tokio::test]
async fn without_the_filter_the_bridge_exports_the_span_and_the_conventions_still_apply()
-> anyhow::Result<()> {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (provider, exporter) = provider();
    let tracer = provider.tracer("shared-db-test");
    let _subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(tracer.clone()))
        .with(shared_db::otel::layer(tracer))
        .set_default();
    let test_db = TestDatabase::new().await?;
    plans::enqueue(
        test_db.db().pool(),
        &NewPlan {
            prompt: "bridge",
            ..Default::default()
        },
    )
    .await?;
    let missing = plans::status(test_db.db().pool(), uuid::Uuid::new_v4()).await;
    assert!(matches!(missing, Err(shared_db::Error::NotFound)));

    provider.force_flush()?;
    let spans = exporter.get_finished_spans()?;
    // the bridge names a span after the function; this layer adds to it, exports nothing itself
    assert!(
        !spans.iter().any(|s| s.name.ends_with(" plans")),
        "no second span of the library's own: {spans:#?}"
    );
    let enqueue = attributes(one(&spans, "enqueue"));
    assert_eq!(
        enqueue.get("db.query.summary"),
        Some(&Value::from("enqueue plans"))
    );
    let status = one(&spans, "status");
    assert_eq!(
        attributes(status).get("db.collection.name"),
        Some(&Value::from("plans"))
    );
    assert!(
        !attributes(status).contains_key("error.type"),
        "NotFound is an answer, not a failure"
    );
    Ok(())
}

/// Samples every span but those named in `drop`, whatever their parent decided: a sampler that
/// would keep a query of a dropped request, so the story can tell whether the library follows
/// the request's decision.
#[derive(Debug, Clone)]
struct DropByName(&'static [&'static str]);

impl opentelemetry_sdk::trace::ShouldSample for DropByName {
    fn should_sample(
        &self,
        parent: Option<&opentelemetry::Context>,
        _trace_id: opentelemetry::trace::TraceId,
        name: &str,
        _kind: &SpanKind,
        _attributes: &[KeyValue],
        _links: &[opentelemetry::trace::Link],
    ) -> opentelemetry_sdk::trace::SamplingResult {
        use opentelemetry::trace::TraceContextExt as _;
        opentelemetry_sdk::trace::SamplingResult {
            decision: if self.0.contains(&name) {
                opentelemetry_sdk::trace::SamplingDecision::Drop
            } else {
                opentelemetry_sdk::trace::SamplingDecision::RecordAndSample
            },
            attributes: Vec::new(),
            trace_state: parent
                .map(|cx| cx.span().span_context().trace_state().clone())
                .unwrap_or_default(),
        }
    }
}

#[tokio::test]
async fn a_query_follows_its_requests_sampling_and_a_kept_root_query_has_every_attribute()
-> anyhow::Result<()> {
    let _turn = ONE_AT_A_TIME.lock().await;
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_sampler(DropByName(&["GET /dropped", "count_pending plans"]))
        .with_simple_exporter(exporter.clone())
        .build();
    let tracer = provider.tracer("shared-db-test");
    let _subscriber = tracing_subscriber::registry()
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(tracer.clone())
                .with_filter(shared_db::otel::not_repository()),
        )
        .with(shared_db::otel::layer(tracer))
        .set_default();
    let test_db = TestDatabase::new().await?;
    let db = &shared_db::Database::connect(&shared_db::Config::new(test_db.url())).await?;

    // A request the sampler dropped: its queries run, fail or not, and are not exported,
    // although the sampler would keep them on their own.
    let queued = async {
        let queued = plans::enqueue(
            db.pool(),
            &NewPlan {
                prompt: "in a dropped request",
                ..Default::default()
            },
        )
        .await?;
        let missing = plans::get(db.pool(), uuid::Uuid::new_v4()).await;
        assert!(matches!(missing, Err(shared_db::Error::NotFound)));
        // a worker that lost its run: a failure, recorded on no span
        let stale = plans::Attempt {
            plan_id: queued.id,
            token: uuid::Uuid::new_v4(),
        };
        let refused = plans::finish_completed(db.pool(), stale, None).await;
        assert!(refused.is_err(), "{refused:?}");
        anyhow::Ok(queued)
    }
    .instrument(tracing::info_span!("GET /dropped"))
    .await?;
    // Queries without a request: roots, each sampled on its own.
    plans::status(db.pool(), queued.id).await?; // kept
    plans::count_pending(db.pool()).await?; // dropped by the sampler
    // A repository span inside a dropped root one (one repository function calling another):
    // the inner one is dropped with its trace, although the sampler would keep it on its own.
    plans::status(db.pool(), queued.id)
        .instrument(tracing::info_span!(target: "shared_db::planexe::plans", "count_pending"))
        .await?;

    provider.force_flush()?;
    let spans = exporter.get_finished_spans()?;
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
    assert_eq!(names, ["status plans"], "only the kept root: {spans:#?}");
    let status = attributes(&spans[0]);
    for key in [
        "db.system.name",
        "db.namespace",
        "db.operation.name",
        "db.collection.name",
        "db.query.summary",
        "server.address",
        "server.port",
    ] {
        assert!(
            status.contains_key(key),
            "{key} on a sampled root: {status:?}"
        );
    }
    assert_eq!(
        status.get("id").map(Value::as_str),
        Some(queued.id.to_string().into()),
        "the span's own fields too: {status:?}"
    );
    Ok(())
}
