//! `GET /metrics`: shared-db's metrics in the Prometheus text format.
//!
//! The service chooses the exporter: here `metrics-exporter-prometheus`, whose recorder collects
//! what shared-db emits (feature `metrics`) and renders it on each scrape. Pool gauges and the
//! schema status are read at scrape time; operation and acquire timings come from the
//! `tracing` layer `shared_db::metrics::layer()` installed in `main.rs`.

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use shared_db::Database;

pub use metrics_exporter_prometheus::PrometheusHandle;

/// Histogram buckets in seconds: 0.25 ms (a cached pooled read) … 10 s (a stuck statement).
const BUCKETS: [f64; 14] = [
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// A Prometheus recorder with histogram buckets for shared-db's durations. Install it globally
/// (`metrics::set_global_recorder`) or, in a test, locally; its `handle()` renders the text.
pub fn recorder() -> PrometheusRecorder {
    PrometheusBuilder::new()
        .set_buckets(&BUCKETS)
        .expect("non-empty buckets")
        .build_recorder()
}

/// The `/metrics` route.
pub fn routes(db: Database, handle: PrometheusHandle) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state((db, handle))
}

async fn scrape(State((db, handle)): State<(Database, PrometheusHandle)>) -> impl IntoResponse {
    shared_db::metrics::record_pool(&db);
    shared_db::metrics::record_schema_status(&db).await;
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
}
