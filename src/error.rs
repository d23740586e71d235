//! The one error type at the library boundary.
//!
//! Every repository function returns [`Result<T>`](Result). Database constraint violations are
//! turned into typed variants carrying the constraint (or column) name, so callers can match on
//! meaning instead of parsing SQLSTATE codes; call sites refine them further with
//! [`ResultExt::on_constraint`].

use std::borrow::Cow;

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

    /// A schema-lifecycle (migration) failure.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),

    /// The embedded PostgreSQL cluster could not be started or used.
    #[error("embedded PostgreSQL: {0}")]
    Embedded(String),

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

    /// planexe: a Postgres enum label this library does not know, e.g. the orphan `import_pending`
    /// that older planexe databases carry. Never a panic.
    #[error("unknown label `{value}` of enum type `{type_name}`")]
    UnknownEnumLabel {
        /// The Postgres enum type (`planstate`, `eventtype`).
        type_name: &'static str,
        /// The label read from the database.
        value: String,
    },

    /// planexe: a user may hold at most `limit` active API keys.
    #[error("user {user_id} already has {limit} active API keys")]
    TooManyApiKeys {
        /// The user.
        user_id: uuid::Uuid,
        /// The limit (10, as in the Python services).
        limit: i64,
    },
}

/// SQLSTATE codes we act on.
mod sqlstate {
    pub const SERIALIZATION_FAILURE: &str = "40001";
    pub const DEADLOCK_DETECTED: &str = "40P01";
    /// Class 08: connection exceptions.
    pub const CONNECTION_EXCEPTION_CLASS: &str = "08";
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    pub const CRASH_SHUTDOWN: &str = "57P02";
    pub const CANNOT_CONNECT_NOW: &str = "57P03";
}

impl Error {
    /// Builds an [`Error::InvalidInput`].
    pub fn invalid_input(message: impl Into<Cow<'static, str>>) -> Self {
        Error::InvalidInput(message.into()).counted()
    }

    /// Counts the error in the operation metrics (feature `metrics`); see [`crate::metrics`].
    fn counted(self) -> Self {
        #[cfg(feature = "metrics")]
        crate::metrics::count_error(&self);
        self
    }

    /// True when running the same operation again may succeed: serialization failures,
    /// deadlocks, lost or refused connections, and pool timeouts.
    ///
    /// [`crate::tx::retry`] uses this to decide whether to try again.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Database(e) => sqlx_error_is_retryable(e),
            _ => false,
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
            _ => None,
        }
    }
}

fn sqlx_error_is_retryable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code == sqlstate::SERIALIZATION_FAILURE
                || code == sqlstate::DEADLOCK_DETECTED
                || code == sqlstate::ADMIN_SHUTDOWN
                || code == sqlstate::CRASH_SHUTDOWN
                || code == sqlstate::CANNOT_CONNECT_NOW
                || code.starts_with(sqlstate::CONNECTION_EXCEPTION_CLASS)
        }),
        _ => false,
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
            // A column decoder of ours (e.g. an enum meeting an unknown label) reports a typed
            // error; surface it as itself rather than as an opaque decode failure.
            sqlx::Error::ColumnDecode { index, source } => match source.downcast::<Error>() {
                Ok(inner) => *inner,
                Err(source) => Error::Database(sqlx::Error::ColumnDecode { index, source }),
            },
            sqlx::Error::Migrate(m) => Error::Migrate(*m),
            sqlx::Error::Database(db) => {
                let constraint = db.constraint().map(str::to_owned);
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
