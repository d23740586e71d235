//! Schema lifecycle: apply migrations, report where a database stands, answer readiness probes.
//!
//! What sqlalchemy-helpers' `DatabaseManager` gives Python services, on top of sqlx's migrator:
//!
//! - [`migrate`] applies pending migrations under PostgreSQL's migration advisory lock, so when
//!   ten replicas start at once one applies and the others wait, then find nothing left to do.
//! - [`status`] compares the `_sqlx_migrations` table with the migrations compiled into the
//!   binary. It only reads, so a read-only role can run it.
//! - [`sync`] migrates and says what it did.
//! - [`health`] is a readiness answer: one round trip that proves connectivity and reports
//!   [`status`].
//!
//! Migrations run online, next to the services using the database: the migration session has
//! no `statement_timeout` (an index build may take long) and a bounded `lock_timeout`
//! ([`MigrationLocks`]), so a migration that would queue behind a long transaction, and make
//! every writer queue behind itself, gives up quickly, backs off and tries again.

mod apply;

pub use apply::MigrationLocks;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::migrate::{Migrate, MigrateError, Migrator};
use sqlx::{Connection, PgConnection, PgExecutor};

use crate::Result;

/// A migration known to the binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrationInfo {
    /// Version number (the file name prefix).
    pub version: i64,
    /// Description (the rest of the file name).
    pub description: String,
}

/// Where a database stands relative to the migrations compiled into this binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum SchemaStatus {
    /// Every migration is applied and nothing unknown is recorded.
    UpToDate {
        /// Highest applied version, if any migration exists.
        version: Option<i64>,
    },
    /// Some migrations of this binary are not applied yet; [`migrate`] will apply them.
    UpgradeAvailable {
        /// The migrations still to apply, in order.
        pending: Vec<MigrationInfo>,
    },
    /// The database cannot be reached, or was never migrated.
    NoInfo {
        /// Why there is no information.
        reason: String,
    },
    /// The database and the binary disagree; a human must look.
    Diverged {
        /// Applied migrations whose checksum differs from this binary's file (edited after
        /// being applied).
        changed: Vec<i64>,
        /// Versions recorded in the database that this binary does not know (a newer binary
        /// migrated it, or a migration file was removed).
        unknown: Vec<i64>,
        /// Migrations recorded as failed (partially applied).
        failed: Vec<i64>,
    },
}

impl SchemaStatus {
    /// Process exit code for `shared-db status`: 0 up to date, 1 upgrade available, 2 no info,
    /// 3 diverged.
    pub fn exit_code(&self) -> i32 {
        match self {
            SchemaStatus::UpToDate { .. } => 0,
            SchemaStatus::UpgradeAvailable { .. } => 1,
            SchemaStatus::NoInfo { .. } => 2,
            SchemaStatus::Diverged { .. } => 3,
        }
    }
}

/// What [`sync`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum SyncOutcome {
    /// The database had no migrations applied; every migration was applied.
    Created {
        /// Versions applied.
        applied: Vec<i64>,
    },
    /// Pending migrations were applied.
    Upgraded {
        /// Versions applied.
        applied: Vec<i64>,
    },
    /// Nothing to do.
    AlreadyUpToDate,
}

/// A readiness answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    /// True when the server answered.
    pub connected: bool,
    /// The schema status (also says why, when not connected).
    pub schema: SchemaStatus,
    /// Round-trip time of the probe.
    #[serde(with = "millis")]
    pub latency: Duration,
}

impl Health {
    /// Ready to serve: connected and the schema is exactly what this binary expects.
    pub fn is_ready(&self) -> bool {
        self.connected && matches!(self.schema, SchemaStatus::UpToDate { .. })
    }
}

mod millis {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64() * 1000.0)
    }
}

/// The migration ledger table (sqlx's default name, which `sqlx migrate run` uses too).
const LEDGER: &str = "_sqlx_migrations";

/// One row of `_sqlx_migrations`.
struct Applied {
    version: i64,
    checksum: Vec<u8>,
    success: bool,
}

/// Reads the migration ledger. `Ok(None)` when the ledger table does not exist.
async fn read_ledger(executor: impl PgExecutor<'_>) -> Result<Option<Vec<Applied>>, sqlx::Error> {
    let rows = sqlx::query_as!(
        Applied,
        "SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version"
    )
    .fetch_all(executor)
    .await;
    match rows {
        Ok(rows) => Ok(Some(rows)),
        // undefined_table: never migrated
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => Ok(None),
        Err(e) => Err(e),
    }
}

fn compare(migrator: &Migrator, ledger: Option<Vec<Applied>>) -> SchemaStatus {
    let Some(ledger) = ledger else {
        return SchemaStatus::NoInfo {
            reason: "the database has never been migrated (no _sqlx_migrations table)".into(),
        };
    };
    let known: HashMap<i64, &sqlx::migrate::Migration> = migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| (m.version, m))
        .collect();
    let applied: HashMap<i64, &Applied> = ledger.iter().map(|a| (a.version, a)).collect();

    let mut changed = Vec::new();
    let mut unknown = Vec::new();
    let mut failed = Vec::new();
    for a in &ledger {
        if !a.success {
            failed.push(a.version);
        }
        match known.get(&a.version) {
            None => unknown.push(a.version),
            Some(m) if m.checksum.as_ref() != a.checksum.as_slice() => changed.push(a.version),
            Some(_) => {}
        }
    }
    if !(changed.is_empty() && unknown.is_empty() && failed.is_empty()) {
        return SchemaStatus::Diverged {
            changed,
            unknown,
            failed,
        };
    }
    let mut pending: Vec<MigrationInfo> = known
        .values()
        .filter(|m| !applied.contains_key(&m.version))
        .map(|m| MigrationInfo {
            version: m.version,
            description: m.description.to_string(),
        })
        .collect();
    pending.sort_by_key(|m| m.version);
    if pending.is_empty() {
        SchemaStatus::UpToDate {
            version: ledger.last().map(|a| a.version),
        }
    } else {
        SchemaStatus::UpgradeAvailable { pending }
    }
}

/// Reports where the database behind `executor` stands relative to `migrator`. Never writes;
/// an unreachable server is [`SchemaStatus::NoInfo`], not an error.
pub async fn status(migrator: &Migrator, executor: impl PgExecutor<'_>) -> SchemaStatus {
    match read_ledger(executor).await {
        Ok(ledger) => compare(migrator, ledger),
        Err(e) => SchemaStatus::NoInfo {
            reason: format!("database unreachable: {e}"),
        },
    }
}

/// Readiness probe: one round trip that checks connectivity and reads [`status`].
///
/// The answer is meant for a probe endpoint that anyone may reach, so when the database cannot
/// be read its `reason` names only the kind of failure (`timed out`, `unreachable`); the driver's
/// text (host names, user names, SQL) goes to the log as a `tracing` warning.
pub async fn health(migrator: &Migrator, executor: impl PgExecutor<'_>) -> Health {
    let started = Instant::now();
    let (connected, schema) = match read_ledger(executor).await {
        Ok(ledger) => (true, compare(migrator, ledger)),
        Err(e) => {
            tracing::warn!(error = %e, "readiness probe could not read the migration ledger");
            let reason = match crate::Error::from(e) {
                crate::Error::PoolTimeout | crate::Error::StatementTimeout { .. } => {
                    "database unreachable: timed out"
                }
                e if e.is_retryable() || e.is_outcome_unknown() => {
                    "database unreachable: connection failed"
                }
                _ => "database unreachable: the migration ledger could not be read",
            };
            (
                false,
                SchemaStatus::NoInfo {
                    reason: reason.into(),
                },
            )
        }
    };
    Health {
        connected,
        schema,
        latency: started.elapsed(),
    }
}

/// Applies pending migrations on `conn`, waiting for any other migrating process first, with
/// the default [`MigrationLocks`].
///
/// Use a dedicated connection (not one that goes back to a pool): the migration lock is a
/// session-level advisory lock, and a connection dropped on failure releases it.
pub async fn migrate(migrator: &Migrator, conn: &mut PgConnection) -> Result<()> {
    sync(migrator, conn).await.map(|_| ())
}

/// Applies pending migrations and reports what was done, with the default
/// [`MigrationLocks`]. Fails (applying nothing) when the database has
/// [`SchemaStatus::Diverged`].
pub async fn sync(migrator: &Migrator, conn: &mut PgConnection) -> Result<SyncOutcome> {
    sync_with(migrator, conn, MigrationLocks::default()).await
}

/// [`sync`] with explicit lock bounds. For the duration of the call the session runs with
/// `statement_timeout = 0` and `lock_timeout = locks.timeout` (both reset afterwards). A
/// migration whose lock wait times out was rolled back (each file runs in its own transaction,
/// its ledger row included), so it is tried again after a backoff, up to `locks.attempts`
/// times; then [`crate::Error::LockTimeout`].
pub async fn sync_with(
    migrator: &Migrator,
    conn: &mut PgConnection,
    locks: MigrationLocks,
) -> Result<SyncOutcome> {
    // Waiting for another replica's migration is not bounded by the lock timeout: take the
    // migration lock first, then bound every other lock wait.
    apply::unbounded_session(conn).await?;
    // Hold sqlx's migration lock across the look and the run, so the outcome we report is the
    // one this process caused. Advisory locks nest, so the migrator's own lock is re-entrant.
    conn.lock().await?;
    let outcome = match apply::bound_lock_waits(conn, locks).await {
        Ok(()) => sync_locked(migrator, conn, locks).await,
        Err(e) => Err(e),
    };
    let unlocked = conn.unlock().await;
    let reset = apply::reset_session(conn).await;
    let outcome = outcome?;
    unlocked?;
    reset?;
    Ok(outcome)
}

async fn sync_locked(
    migrator: &Migrator,
    conn: &mut PgConnection,
    locks: MigrationLocks,
) -> Result<SyncOutcome> {
    let before = read_ledger(&mut *conn).await?;
    let fresh = before.as_ref().is_none_or(|l| l.is_empty());
    match compare(migrator, before) {
        SchemaStatus::UpToDate { .. } => return Ok(SyncOutcome::AlreadyUpToDate),
        SchemaStatus::Diverged {
            changed,
            unknown,
            failed,
        } => {
            let err = match (failed.first(), changed.first(), unknown.first()) {
                (Some(&v), _, _) => MigrateError::Dirty(v),
                (None, Some(&v), _) => MigrateError::VersionMismatch(v),
                (None, None, Some(&v)) => MigrateError::VersionMissing(v),
                (None, None, None) => unreachable!("divergence always names a version"),
            };
            return Err(err.into());
        }
        SchemaStatus::UpgradeAvailable { .. } | SchemaStatus::NoInfo { .. } => {}
    }
    // The same steps as `Migrator::run`, through the `Migrate` trait's boxed (Send) futures, so
    // that `sync` can run inside a spawned task.
    conn.ensure_migrations_table(LEDGER).await?;
    let applied: Vec<i64> = conn
        .list_applied_migrations(LEDGER)
        .await?
        .into_iter()
        .map(|m| m.version)
        .collect();
    let mut done = Vec::new();
    for m in migrator.iter() {
        if m.migration_type.is_down_migration() || applied.contains(&m.version) {
            continue;
        }
        apply::apply(conn, LEDGER, m, locks).await?;
        done.push(m.version);
    }
    Ok(if fresh {
        SyncOutcome::Created { applied: done }
    } else if done.is_empty() {
        SyncOutcome::AlreadyUpToDate
    } else {
        SyncOutcome::Upgraded { applied: done }
    })
}

/// Opens a dedicated connection for [`migrate`]/[`sync`] from pool-compatible options.
pub(crate) async fn dedicated_connection(
    options: &sqlx::postgres::PgConnectOptions,
) -> Result<PgConnection> {
    Ok(PgConnection::connect_with(options).await?)
}
