//! The one error type at the library boundary.
//!
//! Every repository function returns [`Result<T>`](Result). Database constraint violations are
//! turned into typed variants carrying the constraint (or column) name, so callers can match on
//! meaning instead of parsing SQLSTATE codes; call sites refine them further with
//! [`ResultExt::on_constraint`].
//!
//! ## When to try again
//!
//! [`Error::is_retryable`] is true only when the failed attempt applied nothing and a new
//! attempt may succeed:
//!
//! | error | why nothing was applied |
//! |---|---|
//! | serialization failure (`40001`), deadlock (`40P01`) | the server rolled the transaction back |
//! | [`Error::LockTimeout`] (`55P03`) | the statement was cancelled before it changed anything; its transaction is aborted |
//! | idle-in-transaction timeout (`25P03`) | the server ended the session and rolled its transaction back |
//! | [`Error::PoolTimeout`], [`Error::ConnectTimeout`] | no connection, so nothing was sent |
//! | connection refused, `08001`, `08004`, `57P03` | the session was never established |
//!
//! A statement run on `db.pool()` directly opens its connection inside sqlx, which reports a
//! failure to open one like any other I/O error; only the kinds above are known to come from
//! before a connection existed. "Host unreachable", "network unreachable" and "timed out" can
//! also end an established connection mid-statement, so from a bare executor they stay
//! outcome-unknown: take the connection with [`crate::Database::acquire`] (as
//! [`crate::tx::retry`]'s example does) to have every connect failure classified retryable.
//!
//! [`Error::is_outcome_unknown`] is true when a connection was lost while a statement may have
//! been in flight (an I/O error, `08000`/`08003`/`08006`/`08007`, `57P01`/`57P02` while a
//! session was open): the server may or may not have committed. Repeating is safe only for
//! operations that are idempotent; [`crate::tx::retry`] repeats those errors only when its
//! policy says the operation is ([`crate::tx::RetryPolicy::idempotent`]).
//!
//! [`Error::StatementTimeout`] (`57014`) applied nothing either, but it is **not** retryable:
//! the same statement under the same `statement_timeout` most likely runs out of time again,
//! and repeating it at once multiplies the load that made it slow. The web layer still answers
//! 503, so a client may come back later.

use std::borrow::Cow;
use std::time::Duration;

/// Result alias used throughout shared-db.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in shared-db.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The row asked for does not exist (or is not visible to the caller's scope).
    #[error("not found")]
    NotFound,

    /// A unique constraint or unique index was violated.
    #[error("conflict: unique constraint `{constraint}` violated")]
    Conflict {
        /// Name of the violated constraint or unique index.
        constraint: String,
    },

    /// A foreign key constraint was violated (a reference to a missing row, or a delete of a
    /// row that is still referenced).
    #[error("foreign key constraint `{constraint}` violated")]
    ForeignKey {
        /// Name of the violated constraint.
        constraint: String,
    },

    /// A check constraint was violated.
    #[error("check constraint `{constraint}` violated")]
    Check {
        /// Name of the violated constraint.
        constraint: String,
    },

    /// A NOT NULL column received NULL.
    #[error("column `{column}` must not be null")]
    NotNull {
        /// Name of the column.
        column: String,
    },

    /// A value was rejected before any SQL ran.
    #[error("invalid input: {0}")]
    InvalidInput(Cow<'static, str>),

    /// The configuration is missing or malformed (e.g. no `DATABASE_URL`, a knob that is not a
    /// number); the message names the variable. Nothing was connected.
    #[error("configuration error: {0}")]
    Config(Cow<'static, str>),

    /// No connection to the server could be opened within `timeout` (the start-up connect in
    /// [`crate::Database::connect`]). Nothing was sent; retryable.
    #[error("could not connect to {target} within {timeout:?}")]
    ConnectTimeout {
        /// The server, as a URL with the password replaced by `***`.
        target: String,
        /// The connect timeout that ran out.
        timeout: Duration,
    },

    /// No connection could be opened (host unreachable, DNS failure, a missing socket, TLS or
    /// I/O failure during the handshake): at start-up in [`crate::Database::connect`], or when
    /// [`crate::Database::acquire`], `begin` or `transaction` had to open one. Nothing of the
    /// operation was sent; retryable for any operation.
    #[error("could not connect to {target}: {source}")]
    Connect {
        /// The server: `host:port`, a socket path, or a URL with the password replaced by `***`.
        target: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },

    /// Every pooled connection stayed busy (or the server did not accept a new one) for the
    /// pool's acquire timeout. Nothing was sent; retryable.
    #[error("no database connection became available within the pool's acquire timeout")]
    PoolTimeout,

    /// The statement ran longer than `statement_timeout` (SQLSTATE `57014`; also a cancel
    /// request from another session) and was cancelled; it changed nothing and its transaction
    /// is aborted. Not retryable (see the [module docs](self)); the web layer answers 503.
    #[error("statement cancelled: {message}")]
    StatementTimeout {
        /// The server's message (`canceling statement due to statement timeout`).
        message: String,
    },

    /// A lock could not be taken within `lock_timeout` (SQLSTATE `55P03`, also `NOWAIT`); the
    /// statement changed nothing and its transaction is aborted. Retryable.
    #[error("lock not available: {message}")]
    LockTimeout {
        /// The server's message.
        message: String,
    },

    /// The server refused a value (SQLSTATE class `22`, data exception): text too long for its
    /// column, a number out of range, a NUL byte, malformed JSON… The backstop for input the
    /// library did not check first; the web layer answers 422.
    #[error("invalid data ({sqlstate}): {message}")]
    DataException {
        /// The five-character SQLSTATE, e.g. `22001` (string data right truncation).
        sqlstate: String,
        /// The server's message; it may quote the offending input, never other rows.
        message: String,
    },

    /// A failure inside the library or its environment, not caused by the caller's input: no OS
    /// randomness, a panicked background task, a runtime that could not start.
    #[error("internal error: {0}")]
    Internal(Cow<'static, str>),

    /// A schema-lifecycle (migration) failure.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),

    /// A newer release applied a contract migration that removes what this release uses
    /// ([`crate::schema::SchemaStatus::Incompatible`]): this binary must not serve on the
    /// database, and `migrate` applies nothing. Deploy `release` or newer. Not retryable.
    #[error(
        "the database was migrated past this release: migration {contract} ({reason}) needs a \
         binary that knows migration {requires_version}; deploy {release} or newer"
    )]
    SchemaIncompatible {
        /// The contract migration.
        contract: i64,
        /// The migration a binary must know to run on top of it.
        requires_version: i64,
        /// The release to deploy at least.
        release: String,
        /// What the contract migration removed.
        reason: String,
    },

    /// The embedded PostgreSQL cluster could not be started or used (feature `embedded`).
    #[cfg(feature = "embedded")]
    #[error(transparent)]
    Embedded(#[from] shared_db_embedded::Error),

    /// shop: completing an order would take a product's stock below zero. Nothing was changed.
    #[error(
        "insufficient stock for product {product_id}: {requested} requested, {available} available"
    )]
    InsufficientStock {
        /// The product that lacks stock.
        product_id: uuid::Uuid,
        /// Quantity the order asked for.
        requested: i32,
        /// Stock at the moment of the attempt.
        available: i32,
    },

    /// A status change that the state machine does not allow (e.g. completing a cancelled order;
    /// planexe: retrying a completed plan, `to` = `pending (retry)`).
    #[error("invalid transition from `{from}` to `{to}`")]
    InvalidTransition {
        /// Current state.
        from: String,
        /// Requested state.
        to: String,
    },

    /// Any other database or driver error.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),

    // ---- planexe domain errors ----
    /// planexe: a charge would take the user's balance below zero (`credit_history::charge`).
    #[error("insufficient credits for user {user_id}: balance {balance}, requested {requested}")]
    InsufficientCredits {
        /// The user charged.
        user_id: uuid::Uuid,
        /// The balance when the charge was refused.
        balance: rust_decimal::Decimal,
        /// The amount asked for.
        requested: rust_decimal::Decimal,
    },

    /// Input named an enum label this release does not know (`FromStr` or `Deserialize` of
    /// [`PlanState`](crate::planexe::PlanState), [`EventType`](crate::planexe::EventType),
    /// [`OrderStatus`](crate::shop::orders::OrderStatus)). Reads never produce it: a stored label
    /// we do not know reads as the enum's `Unknown` variant.
    #[error("unknown label `{value}` of enum type `{type_name}`")]
    UnknownEnumLabel {
        /// The Postgres enum type (`planstate`, `eventtype`, `shop.order_status`).
        type_name: &'static str,
        /// The label given.
        value: String,
    },

    /// planexe: the plan's run was taken from this worker (stopped and retried, or re-queued by
    /// the reaper) and a newer attempt, or none, owns it now. Nothing the stale worker sent was
    /// written or billed; it should drop the plan. Not retryable.
    #[error("plan {plan_id}: this run attempt was superseded; nothing was written")]
    Superseded {
        /// The plan.
        plan_id: uuid::Uuid,
    },

    /// An idempotency key (a caller's key, or a natural one such as a provider payment id) was
    /// used again with a request that differs from the first one in `field` (`amount`, `source`,
    /// `external id`, `user`, ...). Nothing was written; the first request's outcome stands.
    /// Not retryable: the same request fails the same way. See the replay contract in
    /// [`crate::planexe`].
    #[error("idempotency key reused with a different {field}")]
    IdempotencyKeyReused {
        /// The request field that differs from the first request's.
        field: &'static str,
    },

    /// planexe: a user may hold at most `limit` active API keys.
    #[error("user {user_id} already has {limit} active API keys")]
    TooManyApiKeys {
        /// The user.
        user_id: uuid::Uuid,
        /// The limit (10, as in the Python services).
        limit: i64,
    },

    /// A batch operation ([`claim_next_batch`](crate::planexe::plans::claim_next_batch),
    /// [`finish_completed_batch`](crate::planexe::plans::finish_completed_batch)) was asked for
    /// `requested` items, outside `1..=max`. Nothing was done. Not retryable.
    #[error("batch of {requested} is outside 1..={max}")]
    BatchSize {
        /// The size asked for.
        requested: usize,
        /// The largest batch allowed.
        max: usize,
    },
}

/// SQLSTATE codes we act on.
pub(crate) mod sqlstate {
    pub const SERIALIZATION_FAILURE: &str = "40001";
    pub const DEADLOCK_DETECTED: &str = "40P01";
    /// Class 08: connection exceptions.
    pub const CONNECTION_EXCEPTION_CLASS: &str = "08";
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    pub const CRASH_SHUTDOWN: &str = "57P02";
    pub const CANNOT_CONNECT_NOW: &str = "57P03";
    /// The client could not establish the connection.
    pub const UNABLE_TO_ESTABLISH: &str = "08001";
    /// The server rejected the connection.
    pub const CONNECTION_REJECTED: &str = "08004";
    /// `query_canceled`: statement timeout or a cancel request.
    pub const QUERY_CANCELED: &str = "57014";
    /// `lock_not_available`: lock timeout or `NOWAIT`.
    pub const LOCK_NOT_AVAILABLE: &str = "55P03";
    /// The server ended a session idle in a transaction; the transaction was rolled back.
    pub const IDLE_IN_TRANSACTION_TIMEOUT: &str = "25P03";
    /// Class 22: data exceptions.
    pub const DATA_EXCEPTION_CLASS: &str = "22";
    /// A write reached a read-only server: a standby, or a primary being failed over. The
    /// statement was refused, so nothing was applied.
    pub const READ_ONLY_SQL_TRANSACTION: &str = "25006";
}

impl Error {
    /// Builds an [`Error::InvalidInput`].
    pub fn invalid_input(message: impl Into<Cow<'static, str>>) -> Self {
        Error::InvalidInput(message.into()).counted()
    }

    /// Builds an [`Error::IdempotencyKeyReused`] naming the differing `field`.
    pub fn idempotency_key_reused(field: &'static str) -> Self {
        Error::IdempotencyKeyReused { field }.counted()
    }

    /// Counts the error in the operation metrics (feature `metrics`, see [`crate::metrics`]) and
    /// marks the current repository span failed (feature `otel`).
    fn counted(self) -> Self {
        #[cfg(feature = "metrics")]
        crate::metrics::count_error(&self);
        #[cfg(feature = "otel")]
        crate::otel::record_error(&self);
        self
    }

    /// Builds an [`Error::Config`].
    pub fn config(message: impl Into<Cow<'static, str>>) -> Self {
        Error::Config(message.into())
    }

    /// Builds an [`Error::Internal`].
    pub fn internal(message: impl Into<Cow<'static, str>>) -> Self {
        Error::Internal(message.into())
    }

    /// True when the failed attempt applied nothing and running the same operation again may
    /// succeed: serialization failures, deadlocks, lock timeouts, pool and connect timeouts,
    /// refused connections. The exact rule is in the [module docs](self).
    ///
    /// [`crate::tx::retry`] uses this to decide whether to try again.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::LockTimeout { .. }
            | Error::PoolTimeout
            | Error::ConnectTimeout { .. }
            | Error::Connect { .. } => true,
            Error::Database(e) => classify(e) == Class::Retryable,
            _ => false,
        }
    }

    /// True when the connection was lost while a statement may have been in flight, so the
    /// server may or may not have applied (even committed) it. Only an idempotent operation may
    /// be repeated; see [`crate::tx::RetryPolicy::idempotent`].
    pub fn is_outcome_unknown(&self) -> bool {
        match self {
            Error::Database(e) => classify(e) == Class::OutcomeUnknown,
            _ => false,
        }
    }

    /// A short, fixed name for what went wrong: the variant in snake case (`conflict`,
    /// `lock_timeout`, `connect`, …), and for a database error no variant types, its condition
    /// (`serialization_failure`, `deadlock`, else `database`); `io` and `driver` for the
    /// connection. It is the `kind` label of the error counter and the OpenTelemetry
    /// `error.type` of a failed operation ([`crate::semconv`]). Exhaustive on purpose: a new
    /// variant must choose its name here.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NotFound => "not_found",
            Error::Conflict { .. } => "conflict",
            Error::ForeignKey { .. } => "foreign_key",
            Error::Check { .. } => "check",
            Error::NotNull { .. } => "not_null",
            Error::InvalidInput(_) => "invalid_input",
            Error::Config(_) => "config",
            Error::ConnectTimeout { .. } => "connect_timeout",
            Error::Connect { .. } => "connect",
            Error::PoolTimeout | Error::Database(sqlx::Error::PoolTimedOut) => "pool_timeout",
            Error::StatementTimeout { .. } => "statement_timeout",
            Error::LockTimeout { .. } => "lock_timeout",
            Error::DataException { .. } => "data_exception",
            Error::Internal(_) => "internal",
            Error::Migrate(_) => "migrate",
            Error::SchemaIncompatible { .. } => "schema_incompatible",
            #[cfg(feature = "embedded")]
            Error::Embedded(_) => "embedded",
            Error::InsufficientStock { .. } => "insufficient_stock",
            Error::InvalidTransition { .. } => "invalid_transition",
            Error::InsufficientCredits { .. } => "insufficient_credits",
            Error::UnknownEnumLabel { .. } => "unknown_enum_label",
            Error::Superseded { .. } => "superseded",
            Error::TooManyApiKeys { .. } => "too_many_api_keys",
            Error::BatchSize { .. } => "batch_size",
            Error::IdempotencyKeyReused { .. } => "idempotency_key_reused",
            Error::Database(sqlx::Error::Io(_)) => "io",
            Error::Database(sqlx::Error::Database(db)) => match db.code().as_deref() {
                Some(sqlstate::QUERY_CANCELED) => "statement_timeout",
                Some(sqlstate::LOCK_NOT_AVAILABLE) => "lock_timeout",
                Some(sqlstate::SERIALIZATION_FAILURE) => "serialization_failure",
                Some(sqlstate::DEADLOCK_DETECTED) => "deadlock",
                _ => "database",
            },
            Error::Database(_) => "driver",
        }
    }

    /// The constraint name for constraint violations, if any.
    pub fn constraint(&self) -> Option<&str> {
        match self {
            Error::Conflict { constraint }
            | Error::ForeignKey { constraint }
            | Error::Check { constraint } => Some(constraint),
            _ => None,
        }
    }

    /// The SQLSTATE code of an underlying database error, if any.
    pub fn sqlstate(&self) -> Option<Cow<'_, str>> {
        match self {
            Error::Database(sqlx::Error::Database(db)) => db.code(),
            Error::StatementTimeout { .. } => Some(Cow::Borrowed(sqlstate::QUERY_CANCELED)),
            Error::LockTimeout { .. } => Some(Cow::Borrowed(sqlstate::LOCK_NOT_AVAILABLE)),
            Error::DataException { sqlstate, .. } => Some(Cow::Borrowed(sqlstate)),
            _ => None,
        }
    }
}

/// How a driver error bears on trying again.
#[derive(Debug, PartialEq, Eq)]
enum Class {
    /// Nothing was applied; another attempt may succeed.
    Retryable,
    /// The connection went away mid-flight; the server may have applied the statement.
    OutcomeUnknown,
    /// Trying again will not help (or is not known to be safe).
    Permanent,
}

fn classify(e: &sqlx::Error) -> Class {
    use std::io::ErrorKind;
    match e {
        sqlx::Error::Io(io) => match io.kind() {
            // connect(2) failures, and a unix socket file that does not exist: no connection
            ErrorKind::ConnectionRefused | ErrorKind::AddrNotAvailable | ErrorKind::NotFound => {
                Class::Retryable
            }
            // std's getaddrinfo failure (no ErrorKind of its own): names resolve only before
            // a connection exists
            _ if io
                .to_string()
                .starts_with("failed to lookup address information") =>
            {
                Class::Retryable
            }
            _ => Class::OutcomeUnknown,
        },
        sqlx::Error::PoolTimedOut => Class::Retryable,
        sqlx::Error::WorkerCrashed => Class::OutcomeUnknown,
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some(
                sqlstate::SERIALIZATION_FAILURE
                | sqlstate::DEADLOCK_DETECTED
                | sqlstate::LOCK_NOT_AVAILABLE
                | sqlstate::IDLE_IN_TRANSACTION_TIMEOUT
                | sqlstate::CANNOT_CONNECT_NOW
                | sqlstate::UNABLE_TO_ESTABLISH
                | sqlstate::CONNECTION_REJECTED
                | sqlstate::READ_ONLY_SQL_TRANSACTION,
            ) => Class::Retryable,
            Some(sqlstate::ADMIN_SHUTDOWN | sqlstate::CRASH_SHUTDOWN) => Class::OutcomeUnknown,
            Some(code) if code.starts_with(sqlstate::CONNECTION_EXCEPTION_CLASS) => {
                Class::OutcomeUnknown
            }
            _ => Class::Permanent,
        },
        _ => Class::Permanent,
    }
}

impl Error {
    /// A failure to open a connection to `target`: [`Error::Connect`] for an I/O or TLS
    /// failure (nothing was sent), else the usual mapping (a refused password stays permanent).
    pub(crate) fn opening(e: sqlx::Error, target: impl FnOnce() -> String) -> Self {
        match e {
            sqlx::Error::Io(_) | sqlx::Error::Tls(_) => Error::Connect {
                target: target(),
                source: e,
            }
            .counted(),
            other => other.into(),
        }
    }

    /// [`Error::opening`] at start-up, naming the redacted URL.
    pub(crate) fn connect_failure(e: sqlx::Error, url: &crate::config::DatabaseUrl) -> Self {
        Error::opening(e, || url.redacted())
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::classify(e).counted()
    }
}

impl Error {
    /// The typed variant for a sqlx error.
    fn classify(e: sqlx::Error) -> Self {
        use sqlx::error::ErrorKind;
        match e {
            sqlx::Error::RowNotFound => Error::NotFound,
            // A column decoder of ours may report a typed error; surface it as itself rather
            // than as an opaque decode failure. (An enum meeting an unknown label is not one:
            // it decodes as its `Unknown` variant.)
            sqlx::Error::ColumnDecode { index, source } => match source.downcast::<Error>() {
                Ok(inner) => *inner,
                Err(source) => Error::Database(sqlx::Error::ColumnDecode { index, source }),
            },
            sqlx::Error::Migrate(m) => Error::Migrate(*m),
            sqlx::Error::PoolTimedOut => Error::PoolTimeout,
            sqlx::Error::Database(db) => {
                let code = db.code().map(Cow::into_owned).unwrap_or_default();
                match code.as_str() {
                    sqlstate::QUERY_CANCELED => {
                        return Error::StatementTimeout {
                            message: db.message().to_owned(),
                        };
                    }
                    sqlstate::LOCK_NOT_AVAILABLE => {
                        return Error::LockTimeout {
                            message: db.message().to_owned(),
                        };
                    }
                    c if c.starts_with(sqlstate::DATA_EXCEPTION_CLASS) => {
                        return Error::DataException {
                            message: db.message().to_owned(),
                            sqlstate: code,
                        };
                    }
                    _ => {}
                }
                // A Citus coordinator relays a shard's violation without the constraint field:
                // the name is then read from the message.
                let constraint = db
                    .constraint()
                    .or_else(|| constraint_in_message(db.message()))
                    .map(logical_constraint_name);
                match (db.kind(), constraint) {
                    (ErrorKind::UniqueViolation, Some(constraint)) => {
                        Error::Conflict { constraint }
                    }
                    (ErrorKind::ForeignKeyViolation, Some(constraint)) => {
                        Error::ForeignKey { constraint }
                    }
                    (ErrorKind::CheckViolation, Some(constraint)) => Error::Check { constraint },
                    (ErrorKind::NotNullViolation, _) => {
                        let column = db
                            .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                            .and_then(|pg| pg.column())
                            .unwrap_or("<unknown>")
                            .to_owned();
                        Error::NotNull { column }
                    }
                    _ => Error::Database(sqlx::Error::Database(db)),
                }
            }
            other => Error::Database(other),
        }
    }
}

/// The schema's name of a violated constraint. On a Citus cluster the violation happens on a
/// shard, whose constraints carry the shard id (`uq_orders_shop_id_id_102491`); the suffix (an
/// underscore and six or more digits: shard ids start at 102008, and no constraint of ours ends
/// that way) is dropped, so callers match the same names on one server and on Citus.
fn logical_constraint_name(name: &str) -> String {
    match name.rsplit_once('_') {
        Some((base, digits))
            if digits.len() >= 6
                && digits.bytes().all(|b| b.is_ascii_digit())
                && !base.is_empty() =>
        {
            base.to_owned()
        }
        _ => name.to_owned(),
    }
}

/// The constraint named in a violation message (`… violates unique constraint "x"`), for errors
/// that carry no constraint field (relayed by a Citus coordinator from a worker).
fn constraint_in_message(message: &str) -> Option<&str> {
    let (_, rest) = message.split_once(" constraint \"")?;
    rest.split_once('"').map(|(name, _)| name)
}

/// Turns constraint violations into domain errors at the call site.
///
/// ```
/// use shared_db::{Error, ResultExt};
///
/// fn create() -> Result<(), sqlx::Error> {
///     Ok(())
/// }
///
/// # fn main() -> shared_db::Result<()> {
/// create().on_constraint("uq_users_email", |_| Error::invalid_input("e-mail already registered"))?;
/// # Ok(())
/// # }
/// ```
pub trait ResultExt<T> {
    /// If the error is a unique, foreign-key or check violation of constraint `name`, replace it
    /// by `f(error)`; any other error is converted into [`Error`] unchanged.
    fn on_constraint(self, name: &str, f: impl FnOnce(Error) -> Error) -> Result<T>;
}

impl<T, E: Into<Error>> ResultExt<T> for std::result::Result<T, E> {
    fn on_constraint(self, name: &str, f: impl FnOnce(Error) -> Error) -> Result<T> {
        self.map_err(|e| {
            let e = e.into();
            if e.constraint() == Some(name) {
                f(e)
            } else {
                e
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_citus_shard_suffix_is_dropped_from_constraint_names() {
        assert_eq!(
            super::logical_constraint_name("uq_orders_shop_id_id_102491"),
            "uq_orders_shop_id_id"
        );
        assert_eq!(
            super::logical_constraint_name("uq_orders_shop_id_id"),
            "uq_orders_shop_id_id"
        );
        assert_eq!(super::logical_constraint_name("ck_x_12"), "ck_x_12");
        assert_eq!(
            super::constraint_in_message(
                "insert or update on table \"orders_102491\" violates foreign key constraint \"fk_orders_account_id_accounts_102491\""
            ),
            Some("fk_orders_account_id_accounts_102491")
        );
    }
}
