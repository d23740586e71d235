//! `/metrics`: after some traffic, the Prometheus scrape carries shared-db's series.
//!
//! The recorder is installed for this test's thread only and the runtime is single-threaded, so
//! the service's tasks (and sqlx's) report into it and the other tests' metrics go nowhere. The
//! `tracing` layer is installed globally, as a service does: `tracing` caches per call site
//! whether anyone listens, and a subscriber scoped to one thread loses that race to the other
//! tests' threads.

#[path = "../../examples/service/metrics.rs"]
mod service_metrics;

use hyper::StatusCode;
use serde_json::json;
use tracing_subscriber::prelude::*;

use super::{Service, app};

/// The value of the sample `name{labels}` (labels as rendered, in order), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "current_thread")]
async fn metrics_are_scraped_in_prometheus_text_after_traffic() {
    let recorder = service_metrics::recorder();
    let handle = recorder.handle();
    let _recorder = metrics::set_default_local_recorder(&recorder);
    let _ = tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(shared_db::metrics::layer()),
    );
    shared_db::metrics::describe();

    let svc = Service::start_with(move |db| {
        app::router(db.clone()).merge(service_metrics::routes(db, handle))
    })
    .await;
    for n in 0..3 {
        let created = svc
            .post("/plans", json!({ "prompt": format!("plan {n}") }))
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        let id = created.body["id"].as_str().expect("id").to_owned();
        assert_eq!(
            svc.get(&format!("/plans/{id}")).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(
        svc.post("/shops", json!({ "name": "twice" })).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        svc.post("/shops", json!({ "name": "twice" })).await.status,
        StatusCode::CONFLICT
    );
    assert_eq!(
        svc.post("/plans", json!({ "prompt": " " })).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    let scrape = svc.get("/metrics").await;
    assert_eq!(scrape.status, StatusCode::OK);
    let text = scrape.body.as_str().expect("Prometheus text").to_owned();

    // OpenTelemetry's names and attributes, with Prometheus' underscores
    let op = |name: &str, table: &str| {
        format!(
            r#"db_client_operation_duration_count{{db_system_name="postgresql",db_operation_name="{name}",db_collection_name="{table}"}}"#
        )
    };
    assert_eq!(sample(&text, &op("enqueue", "plans")), Some(3.0), "{text}");
    assert_eq!(sample(&text, &op("status", "plans")), Some(3.0), "{text}");
    assert!(
        text.contains(r#"db_client_operation_duration_bucket{db_system_name="postgresql",db_operation_name="status",db_collection_name="plans",le="0.1"}"#),
        "latency histogram with buckets: {text}"
    );
    assert_eq!(
        sample(&text, &op("create", "shop.shops")),
        Some(1.0),
        "{text}"
    );
    let failed = r#"db_client_operation_duration_count{db_system_name="postgresql",db_operation_name="create",db_collection_name="shop.shops",error_type="conflict"}"#;
    assert_eq!(
        sample(&text, failed),
        Some(1.0),
        "a failure carries error.type: {text}"
    );
    let conflict =
        r#"shared_db_operation_errors_total{operation="shop::shops::create",kind="conflict"}"#;
    assert_eq!(sample(&text, conflict), Some(1.0), "{text}");
    let refused = r#"shared_db_operation_errors_total{operation="unknown",kind="invalid_input"}"#;
    assert_eq!(
        sample(&text, refused),
        Some(1.0),
        "refused outside a repository function: {text}"
    );
    let acquires = sample(&text, "db_client_connection_wait_time_count").unwrap_or(0.0);
    assert!(acquires >= 8.0, "one acquire per request at least: {text}");
    let pool = |series: &str, labels: &str| {
        sample(
            &text,
            &format!(r#"{series}{{db_client_connection_pool_name="primary"{labels}}}"#),
        )
    };
    let idle = pool(
        "db_client_connection_count",
        r#",db_client_connection_state="idle""#,
    )
    .expect("idle connections");
    let used = pool(
        "db_client_connection_count",
        r#",db_client_connection_state="used""#,
    )
    .expect("used connections");
    let max = pool("db_client_connection_max", "").expect("max gauge");
    assert!(idle + used >= 1.0 && idle + used <= max, "{text}");
    assert_eq!(
        pool("db_client_connection_pending_requests", ""),
        Some(0.0),
        "nobody waits at scrape time: {text}"
    );
    assert_eq!(
        sample(&text, r#"shared_db_schema_status{status="up_to_date"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"shared_db_schema_status{status="diverged"}"#),
        Some(0.0)
    );
    assert!(text.contains("# TYPE shared_db_operation_errors_total counter"));
}
