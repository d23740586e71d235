//! OpenTelemetry: repository spans carry the database client semantic conventions.
//!
//! The spans go through `tracing-opentelemetry` into the SDK's in-memory exporter, which hands
//! back exactly what an OTLP exporter would send. The subscriber is global (a binary of its
//! own), as in a service: `tracing` caches per call site whether anyone listens.

use std::collections::HashMap;

use opentelemetry::trace::{Status, TracerProvider as _};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use shared_db::planexe::plans::{self, NewPlan};
use shared_db::shop::shops;
use shared_db::testing::TestDatabase;
use tracing_subscriber::prelude::*;

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

#[tokio::test]
async fn repository_spans_carry_the_database_client_conventions() -> anyhow::Result<()> {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("shared-db-test")))
        .with(shared_db::otel::layer())
        .try_init()?;

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

    let status = one(&spans, "status");
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

    let enqueue = attributes(one(&spans, "enqueue"));
    assert_eq!(
        enqueue.get("db.query.summary"),
        Some(&Value::from("enqueue plans"))
    );

    let creates: Vec<&SpanData> = spans.iter().filter(|s| s.name == "create").collect();
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
