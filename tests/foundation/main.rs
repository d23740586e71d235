//! Foundation stories: connecting, the schema lifecycle, transactions, error mapping, timeouts,
//! retries and the embedded cluster, each against a real PostgreSQL database of its own.

mod connect;
mod embedded;
mod errors;
mod lifecycle;
mod online_migrations;
mod pool;
mod prerequisites;
mod rolling_deploy;
mod timeouts;
mod transactions;

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

/// A migrator made of the given `(version, sql)` steps, for lifecycle stories that need a
/// migration history of their own.
pub fn migrator(steps: &[(i64, &'static str)]) -> Migrator {
    Migrator::with_migrations(
        steps
            .iter()
            .map(|&(version, sql)| {
                Migration::new(
                    version,
                    format!("step {version}").into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    // as sqlx reads the first line of a migration file
                    sql.starts_with("-- no-transaction"),
                )
            })
            .collect(),
    )
}

/// The constraint fixture as a one-step migrator, so each story gets it from a template.
pub fn constraints_migrator() -> Migrator {
    migrator(&[(1, include_str!("../fixtures/foundation/constraints.sql"))])
}
