//! What clients see when the database is slow, locked, down or refuses a value: 503 or 422 with
//! a generic body, never a 500 and never the driver's text.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use http_body_util::BodyExt;
use shared_db::web::{self, HttpError};
use shared_db::{Database, Error};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

#[test]
fn timeouts_are_503_and_data_exceptions_are_422() {
    let message = String::from("server text");
    for (error, status) in [
        (
            Error::StatementTimeout {
                message: message.clone(),
            },
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (
            Error::LockTimeout {
                message: message.clone(),
            },
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (Error::PoolTimeout, StatusCode::SERVICE_UNAVAILABLE),
        (
            Error::DataException {
                sqlstate: "22001".into(),
                message: message.clone(),
            },
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            // Only input names an unknown label now: a stored one reads as `Unknown`.
            Error::UnknownEnumLabel {
                type_name: "planstate",
                value: "archived".into(),
            },
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Error::internal("no OS randomness"),
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
    ] {
        assert_eq!(web::status_of(&error), status, "{error:?}");
    }
}

#[tokio::test]
async fn a_503_body_is_generic() {
    let response = HttpError(Error::StatementTimeout {
        message: "canceling statement due to statement timeout".into(),
    })
    .into_response();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(!text.contains("canceling"), "{text}");
}

#[tokio::test]
async fn readiness_of_an_unreachable_database_carries_no_driver_text() {
    // Nothing listens on this port once the listener is gone.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let options = PgConnectOptions::new()
        .host("127.0.0.1")
        .port(port)
        .username("probe_user")
        .password("hunter2")
        .database("secret_db");
    let pool = PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy_with(options);
    let (status, body) = web::readiness(State(Database::from_pool(pool))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let json = serde_json::to_string(&body.0).unwrap();
    assert!(json.contains("database unreachable"), "{json}");
    for leak in [
        "refused",
        "os error",
        "127.0.0.1",
        "probe_user",
        "secret_db",
        "hunter2",
    ] {
        assert!(!json.contains(leak), "{leak} in {json}");
    }
}
