//! The embedded PostgreSQL cluster for development, tests, examples and benchmarks (feature
//! `embedded`): the `shared-db-embedded` crate, plus what the library needs to connect to it.
//!
//! Nothing in the library starts it on its own; callers ask for it by name with
//! [`crate::Database::connect_embedded`] or [`crate::Database::connect_or_embedded`].

pub use shared_db_embedded::{Action, Cluster, Error, Outcome, Running, citus, quote_ident};

use crate::Result;

/// URL of `database` on the cluster at its default location (`SHARED_DB_EMBEDDED_DIR`, else
/// under the cargo target directory), starting the cluster and creating the database when
/// needed. The URL holds the superuser password.
pub async fn database_url(database: &str) -> Result<String> {
    let cluster = Cluster::default_location()?;
    let running = cluster.ensure_running().await?;
    running.ensure_database(database).await?;
    tracing::info!(
        data_dir = %cluster.data_dir().display(),
        port = running.port,
        database,
        "using the embedded PostgreSQL cluster"
    );
    Ok(running.url(database))
}
