//! The one error type of the embedded cluster.

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why the embedded cluster could not be created, started, stopped or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Creating, starting or stopping the cluster failed (missing server binaries, `initdb` or
    /// `pg_ctl` failing, an unreadable cluster file); the message says which and why.
    #[error("embedded PostgreSQL: {0}")]
    Cluster(String),
    /// A statement on the running cluster failed (creating a database).
    #[error("embedded PostgreSQL: {0}")]
    Database(#[from] sqlx::Error),
}
