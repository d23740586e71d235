//! shared-db's repository spans, with the OpenTelemetry database client conventions, exported
//! to an OTLP collector (Jaeger, Tempo, the OpenTelemetry Collector, Honeycomb or Datadog
//! through one).
//!
//! ```sh
//! docker run --rm -p 4318:4318 -p 16686:16686 jaegertracing/all-in-one   # or any collector
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 cargo run -p shared-db-otel-example
//! ```
//!
//! It enqueues a plan, reads its status, and makes one write fail (a duplicate shop), so the
//! collector shows `enqueue plans`, `status plans` and a `create shop.shops` span with
//! `error.type = conflict`. `DATABASE_URL` selects the database (the embedded cluster when
//! unset); `OTEL_EXPORTER_OTLP_ENDPOINT` and the other standard `OTEL_*` variables configure the
//! exporter.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::SpanExporter;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use shared_db::planexe::plans::{self, NewPlan};
use shared_db::shop::shops;
use shared_db::{Config, Database};
use tracing_subscriber::prelude::*;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The exporter reads OTEL_EXPORTER_OTLP_ENDPOINT (default http://localhost:4318).
    let exporter = SpanExporter::builder().with_http().build()?;
    let provider = SdkTracerProvider::builder()
        .with_resource(
            Resource::builder()
                .with_service_name("shared-db-example")
                .build(),
        )
        .with_batch_exporter(exporter)
        .build();
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer().with_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "info,sqlx=warn".into()),
            ),
        )
        // the service's own spans through the bridge; the library's through its own layer
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("shared-db-example"))
                .with_filter(shared_db::otel::not_repository()),
        )
        .with(shared_db::otel::layer(provider.tracer("shared-db-example")))
        .init();

    let db = Database::connect_or_embedded(&Config::from_env()?).await?;
    db.migrate().await?;
    let queued = plans::enqueue(
        db.pool(),
        &NewPlan {
            prompt: "traced plan",
            ..Default::default()
        },
    )
    .await?;
    let status = plans::status(db.pool(), queued.id).await?;
    tracing::info!(plan = %queued.id, state = ?status.state, "plan queued and read");
    let name = format!("traced shop {}", queued.id);
    shops::create(db.pool(), &shops::ShopFields::named(name.clone())).await?;
    let refused = shops::create(db.pool(), &shops::ShopFields::named(name)).await;
    tracing::info!(error = ?refused.err().map(|e| e.kind()), "the second create was refused");

    db.close().await;
    provider.shutdown()?;
    Ok(())
}
