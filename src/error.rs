//! STAND-IN for the foundation's error module (replaced by `main` at merge).
use rust_decimal::Decimal;
use uuid::Uuid;

/// Library error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Row absent.
    #[error("not found")]
    NotFound,
    /// Unique violation.
    #[error("conflict on {constraint}")]
    Conflict {
        /// constraint
        constraint: String,
    },
    /// FK violation.
    #[error("foreign key {constraint}")]
    ForeignKey {
        /// constraint
        constraint: String,
    },
    /// Check violation.
    #[error("check {constraint}")]
    Check {
        /// constraint
        constraint: String,
    },
    /// Not null violation.
    #[error("not null {column}")]
    NotNull {
        /// column
        column: String,
    },
    /// Rejected before SQL.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Anything else.
    #[error(transparent)]
    Database(sqlx::Error),
    /// planexe: a charge would take the balance below zero.
    #[error("insufficient credits for user {user_id}: balance {balance}, requested {requested}")]
    InsufficientCredits {
        /// The user charged.
        user_id: Uuid,
        /// The balance when the charge was refused.
        balance: Decimal,
        /// The amount asked for.
        requested: Decimal,
    },
    /// planexe: the plan's state does not allow the requested action.
    #[error("cannot {action} a plan in state {from}")]
    InvalidTransition {
        /// The state label as stored (or `NULL`).
        from: String,
        /// The refused action (`retry`, `resume`, `stop`, `complete`, `fail`, ...).
        action: &'static str,
    },
    /// planexe: a Postgres enum label this library does not know (e.g. `import_pending`).
    #[error("unknown label {value:?} of enum type {type_name}")]
    UnknownEnumLabel {
        /// The Postgres type (`planstate`, `eventtype`).
        type_name: &'static str,
        /// The label read.
        value: String,
    },
    /// planexe: a user may hold at most `limit` active API keys.
    #[error("user {user_id} already has {limit} active API keys")]
    TooManyApiKeys {
        /// The user.
        user_id: Uuid,
        /// The limit.
        limit: i64,
    },
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::RowNotFound => Error::NotFound,
            sqlx::Error::Database(ref db) => {
                let c = db.constraint().unwrap_or_default().to_string();
                match db.code().as_deref() {
                    Some("23505") => Error::Conflict { constraint: c },
                    Some("23503") => Error::ForeignKey { constraint: c },
                    Some("23514") => Error::Check { constraint: c },
                    _ => Error::Database(e),
                }
            }
            e => Error::Database(e),
        }
    }
}

impl Error {
    /// Constraint name, if any.
    pub fn constraint(&self) -> Option<&str> {
        match self {
            Error::Conflict { constraint }
            | Error::ForeignKey { constraint }
            | Error::Check { constraint } => Some(constraint),
            _ => None,
        }
    }
}

/// Map constraint violations.
pub trait ResultExt<T> {
    /// if the error is a constraint violation on `name`, replace it by `f(err)`
    fn on_constraint(self, name: &str, f: impl FnOnce(Error) -> Error) -> Result<T>;
}

impl<T> ResultExt<T> for Result<T, Error> {
    fn on_constraint(self, name: &str, f: impl FnOnce(Error) -> Error) -> Result<T> {
        match self {
            Err(e) if e.constraint() == Some(name) => Err(f(e)),
            r => r,
        }
    }
}
impl<T> ResultExt<T> for Result<T, sqlx::Error> {
    fn on_constraint(self, name: &str, f: impl FnOnce(Error) -> Error) -> Result<T> {
        self.map_err(Error::from).on_constraint(name, f)
    }
}
