//! axum integration (feature `axum`): what a web service needs and nothing more.
//!
//! - [`readiness`]: a readiness handler backed by [`Database::health`]; 200 when ready, 503
//!   otherwise, with the [`Health`] as JSON.
//! - [`Tx`]: a request-scoped transaction extractor. It begins on first use; the middleware from
//!   [`transaction_layer`] commits it when the handler's response is a success (2xx/3xx) and
//!   rolls it back otherwise, so a handler that returns an error never leaves half its writes
//!   behind (what the Python session middleware promised and did not do). Built on
//!   [`axum_sqlx_tx`], which does exactly this and is maintained; we add the error mapping.
//! - [`HttpError`]: [`Error`] → HTTP status: `NotFound` → 404; `Conflict`, `ForeignKey`,
//!   `InvalidTransition`, `InsufficientStock`, `TooManyApiKeys` → 409; `InsufficientCredits` →
//!   402; `InvalidInput`, `BatchSize`, `UnknownEnumLabel`, `DataException`, `Check` and `NotNull` → 422;
//!   timeouts (pool, connect, statement, lock), retryable failures and lost connections → 503;
//!   everything else 500. Every 5xx body is generic and never leaks SQL or driver text.
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use shared_db::web::{self, Tx};
//!
//! # async fn example(db: shared_db::Database) {
//! let (tx_state, tx_layer) = web::transaction_layer(&db);
//! let app: Router = Router::new()
//!     .route("/ready", get(web::readiness).with_state(db.clone()))
//!     .route("/count", get(count).with_state(tx_state))
//!     .layer(tx_layer);
//! # let _ = app; }
//!
//! async fn count(mut tx: Tx) -> Result<String, web::HttpError> {
//!     let conn: &mut sqlx::PgConnection = web::conn(&mut tx);
//!     # let _ = conn;
//!     Ok("42".into())
//! }
//! ```

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, IntoResponseParts, Response, ResponseParts};
use serde::Serialize;

use crate::schema::Health;
use crate::{Database, Error};

/// The request-scoped transaction extractor, with shared-db's error responses.
pub type Tx = axum_sqlx_tx::Tx<sqlx::Postgres, HttpError>;

/// State the [`Tx`] extractor needs (add it with `with_state`, or make it `FromRef` of yours).
pub type TxState = axum_sqlx_tx::State<sqlx::Postgres>;

/// The middleware that commits or rolls back each request's [`Tx`].
pub type TxLayer = axum_sqlx_tx::Layer<sqlx::Postgres, HttpError>;

/// Builds the [`Tx`] state and middleware for `db`'s pool.
pub fn transaction_layer(db: &Database) -> (TxState, TxLayer) {
    Tx::config(db.pool().sqlx().clone())
        .layer_error::<HttpError>()
        .setup()
}

/// The connection inside a [`Tx`], for repository functions taking `&mut PgConnection`.
pub fn conn(tx: &mut Tx) -> &mut sqlx::PgConnection {
    tx
}

/// Readiness probe: 200 with the [`Health`] when connected and up to date, 503 otherwise.
pub async fn readiness(State(db): State<Database>) -> (StatusCode, Json<Health>) {
    let health = db.health().await;
    let status = if health.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(health))
}

/// An [`Error`] on its way to becoming an HTTP response.
#[derive(Debug)]
pub struct HttpError(pub Error);

/// JSON body of an error response.
#[derive(Debug, Serialize)]
struct ErrorBody {
    error: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    constraint: Option<String>,
}

impl HttpError {
    /// The status this error maps to.
    pub fn status(&self) -> StatusCode {
        status_of(&self.0)
    }
}

/// The HTTP status for an [`Error`].
pub fn status_of(error: &Error) -> StatusCode {
    match error {
        Error::NotFound => StatusCode::NOT_FOUND,
        Error::Conflict { .. }
        | Error::ForeignKey { .. }
        | Error::InvalidTransition { .. }
        | Error::InsufficientStock { .. }
        | Error::TooManyApiKeys { .. }
        | Error::Superseded { .. } => StatusCode::CONFLICT,
        Error::InsufficientCredits { .. } => StatusCode::PAYMENT_REQUIRED,
        Error::InvalidInput(_)
        | Error::BatchSize { .. }
        | Error::IdempotencyKeyReused { .. }
        | Error::UnknownEnumLabel { .. }
        | Error::DataException { .. }
        | Error::Check { .. }
        | Error::NotNull { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        Error::StatementTimeout { .. }
        | Error::LockTimeout { .. }
        | Error::PoolTimeout
        | Error::ConnectTimeout { .. } => StatusCode::SERVICE_UNAVAILABLE,
        e if e.is_retryable() || e.is_outcome_unknown() => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = if status.is_server_error() {
            // Details stay in the log; the client learns nothing about our SQL.
            tracing::error!(error = %self.0, "request failed");
            ErrorBody {
                error: if status == StatusCode::SERVICE_UNAVAILABLE {
                    "unavailable"
                } else {
                    "internal"
                },
                message: "internal error".into(),
                constraint: None,
            }
        } else {
            ErrorBody {
                error: match status {
                    StatusCode::NOT_FOUND => "not_found",
                    StatusCode::CONFLICT => "conflict",
                    StatusCode::PAYMENT_REQUIRED => "insufficient_credits",
                    _ => "invalid",
                },
                message: self.0.to_string(),
                constraint: self.0.constraint().map(str::to_owned),
            }
        };
        (status, Json(body)).into_response()
    }
}

impl From<Error> for HttpError {
    fn from(e: Error) -> Self {
        HttpError(e)
    }
}

impl From<sqlx::Error> for HttpError {
    fn from(e: sqlx::Error) -> Self {
        HttpError(e.into())
    }
}

impl From<axum_sqlx_tx::Error> for HttpError {
    fn from(e: axum_sqlx_tx::Error) -> Self {
        match e {
            axum_sqlx_tx::Error::Database { error } => HttpError(error.into()),
            other => HttpError(Error::internal(format!("request transaction: {other}"))),
        }
    }
}

/// A `Content-Range` response header, e.g. `products 0-49/1234`, for list endpoints.
#[derive(Debug, Clone)]
pub struct ContentRangeHeader(pub String);

impl IntoResponseParts for ContentRangeHeader {
    type Error = HttpError;

    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Self::Error> {
        let value = HeaderValue::from_str(&self.0).map_err(|_| {
            HttpError(Error::invalid_input(
                "Content-Range value is not a valid header",
            ))
        })?;
        res.headers_mut().insert(header::CONTENT_RANGE, value);
        Ok(res)
    }
}
