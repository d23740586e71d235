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
//! # Many releases, one database
//!
//! Services deploy on their own schedules, so a database is often migrated by a newer release
//! than some of the binaries still serving on it. The **compatibility window** makes that a
//! state of its own instead of an error ([`Compatibility::Window`], the default):
//!
//! - a database holding every migration of this binary (checksums equal) plus newer ones is
//!   [`SchemaStatus::Ahead`]: ready, and [`migrate`]/[`sync`] succeed without applying anything.
//!   Newer *expand* migrations keep everything this release reads and writes.
//! - a newer *contract* migration (one that drops or renames what older releases use) declares in
//!   the table `_shared_db_contracts` the oldest migration a binary must know to run on top of it.
//!   A binary that does not know it reports [`SchemaStatus::Incompatible`], naming the release to
//!   deploy, is never ready, and [`migrate`] fails with [`crate::Error::SchemaIncompatible`].
//! - [`SchemaStatus::Diverged`] stays for an edited migration, a failed one, or an unknown version
//!   *between* known ones.
//! - [`Compatibility::Strict`] (`SHARED_DB_SCHEMA_STRICT=true`) restores the old rule: any
//!   version this binary does not know is `Diverged`.
//!
//! The expand/contract rule for writing migrations is in `migrations/README.md`.
//!
//! Migrations run online, next to the services using the database: the migration session has
//! no `statement_timeout` (an index build may take long) and a bounded `lock_timeout`
//! ([`MigrationLocks`]), so a migration that would queue behind a long transaction, and make
//! every writer queue behind itself, gives up quickly, backs off and tries again.

mod apply;
mod lock;
mod waits;

pub use apply::MigrationLocks;
pub(crate) use waits::Watch;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::migrate::{Migrate, MigrateError, Migrator};
use sqlx::{Acquire, Connection, PgConnection, Postgres};

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
    /// Every migration of this binary is applied, and a newer release applied more, none of
    /// which removes what this release uses. Ready: the newer migrations are expand steps, and
    /// [`migrate`] succeeds without applying anything (a restart or a rollback of this release
    /// during a rolling deploy boots normally).
    Ahead {
        /// This binary's newest migration, the last one it checks.
        version: Option<i64>,
        /// The applied migrations this binary does not know, newest last (description as
        /// recorded by the release that applied them).
        newer: Vec<MigrationInfo>,
    },
    /// A newer release applied a contract migration that removes something this release reads
    /// or writes. Not ready: deploy `release` (or newer). [`migrate`] fails with
    /// [`crate::Error::SchemaIncompatible`].
    Incompatible {
        /// The contract migration.
        contract: i64,
        /// A binary must know this migration to run on top of `contract`.
        requires_version: i64,
        /// The release to deploy at least, as recorded by the contract migration.
        release: String,
        /// What the contract migration removed.
        reason: String,
    },
    /// The database and the binary disagree; a human must look.
    Diverged {
        /// Applied migrations whose checksum differs from this binary's file (edited after
        /// being applied).
        changed: Vec<i64>,
        /// Versions recorded in the database that this binary does not know, where newer
        /// migrations alone would be [`SchemaStatus::Ahead`]: versions between known ones (a
        /// migration file was removed, or two branches numbered alike), newer versions while
        /// one of ours is still pending, or any newer version under [`Compatibility::Strict`].
        unknown: Vec<i64>,
        /// Migrations recorded as failed (partially applied).
        failed: Vec<i64>,
    },
}

impl SchemaStatus {
    /// Process exit code for `shared-db status`: 0 up to date, 1 upgrade available, 2 no info,
    /// 3 diverged, 4 ahead (ready), 5 incompatible. Ready means 0 or 4.
    pub fn exit_code(&self) -> i32 {
        match self {
            SchemaStatus::UpToDate { .. } => 0,
            SchemaStatus::UpgradeAvailable { .. } => 1,
            SchemaStatus::NoInfo { .. } => 2,
            SchemaStatus::Diverged { .. } => 3,
            SchemaStatus::Ahead { .. } => 4,
            SchemaStatus::Incompatible { .. } => 5,
        }
    }

    /// A binary may serve on this schema: [`SchemaStatus::UpToDate`] or [`SchemaStatus::Ahead`].
    pub fn is_ready(&self) -> bool {
        matches!(
            self,
            SchemaStatus::UpToDate { .. } | SchemaStatus::Ahead { .. }
        )
    }
}

/// How a binary treats migrations applied by a newer release (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Compatibility {
    /// Newer migrations are [`SchemaStatus::Ahead`] (ready) unless a contract migration among
    /// them requires a newer binary ([`SchemaStatus::Incompatible`]).
    #[default]
    Window,
    /// Any applied version this binary does not know is [`SchemaStatus::Diverged`]: not ready,
    /// and [`migrate`] refuses. For deployments that roll every service at once.
    Strict,
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
    /// Nothing applied: a newer release already migrated past this binary, within the
    /// compatibility window ([`SchemaStatus::Ahead`]).
    Ahead {
        /// The applied versions this binary does not know.
        newer: Vec<i64>,
    },
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
    /// With a replica configured ([`crate::Database::replica`]): how far it is behind, or why it
    /// could not be measured. Does not affect [`Health::is_ready`]: a lagging replica slows
    /// reports, not the service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica: Option<crate::replica::ReplicaHealth>,
}

impl Health {
    /// Ready to serve: connected, and the schema is what this binary expects or newer within
    /// the compatibility window ([`SchemaStatus::is_ready`]).
    pub fn is_ready(&self) -> bool {
        self.connected && self.schema.is_ready()
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

/// One row of a migration ledger (`_sqlx_migrations`), as any backend reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedMigration {
    /// Version (the file name prefix).
    pub version: i64,
    /// Description as recorded by the binary that applied it.
    pub description: String,
    /// SHA-384 of the file as applied.
    pub checksum: Vec<u8>,
    /// False when the migration failed halfway (recorded as dirty).
    pub success: bool,
}

/// Reads the migration ledger. `Ok(None)` when the ledger table does not exist.
async fn read_ledger(
    conn: &mut PgConnection,
) -> Result<Option<Vec<AppliedMigration>>, sqlx::Error> {
    let rows = sqlx::query_as!(
        AppliedMigration,
        "SELECT version, description, checksum, success FROM _sqlx_migrations ORDER BY version"
    )
    .fetch_all(conn)
    .await;
    match rows {
        Ok(rows) => Ok(Some(rows)),
        // undefined_table: never migrated
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => Ok(None),
        Err(e) => Err(e),
    }
}

/// Where a database stands, from its migration ledger (`None`: no ledger table) held against
/// `migrator`. The one rule for every backend; contracts are not consulted yet: an
/// [`SchemaStatus::Ahead`] answer still has to go through [`with_contract`] with the contract
/// the database declares, if any.
pub fn compare(
    migrator: &Migrator,
    ledger: Option<Vec<AppliedMigration>>,
    compatibility: Compatibility,
) -> SchemaStatus {
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
    let newest_known = known.keys().max().copied();
    let applied: HashMap<i64, &AppliedMigration> = ledger.iter().map(|a| (a.version, a)).collect();

    let mut changed = Vec::new();
    let mut unknown = Vec::new();
    let mut newer = Vec::new();
    let mut failed = Vec::new();
    for a in &ledger {
        if !a.success {
            failed.push(a.version);
        }
        match known.get(&a.version) {
            None if newest_known.is_none_or(|n| a.version > n)
                && compatibility == Compatibility::Window =>
            {
                newer.push(MigrationInfo {
                    version: a.version,
                    description: a.description.clone(),
                })
            }
            None => unknown.push(a.version),
            Some(m) if m.checksum.as_ref() != a.checksum.as_slice() => changed.push(a.version),
            Some(_) => {}
        }
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
    // Newer migrations on top of a history that lacks one of ours: not a window, a fork.
    if !pending.is_empty() {
        unknown.extend(newer.drain(..).map(|m| m.version));
    }
    if !(changed.is_empty() && unknown.is_empty() && failed.is_empty()) {
        return SchemaStatus::Diverged {
            changed,
            unknown,
            failed,
        };
    }
    if !newer.is_empty() {
        SchemaStatus::Ahead {
            version: newest_known,
            newer,
        }
    } else if pending.is_empty() {
        SchemaStatus::UpToDate {
            version: ledger.last().map(|a| a.version),
        }
    } else {
        SchemaStatus::UpgradeAvailable { pending }
    }
}

/// A contract migration's declaration (a row of `_shared_db_contracts`, migration 0046).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contract {
    /// The contract migration.
    pub version: i64,
    /// A binary must know this migration to run on top of it.
    pub requires_version: i64,
    /// The release to deploy at least.
    pub release: String,
    /// What it removed.
    pub reason: String,
}

/// [`SchemaStatus::Ahead`] becomes [`SchemaStatus::Incompatible`] when `contract` (the applied
/// contract with the highest `requires_version` above this binary's newest migration) exists;
/// every other status passes through.
pub fn with_contract(status: SchemaStatus, contract: Option<Contract>) -> SchemaStatus {
    match (status, contract) {
        (SchemaStatus::Ahead { .. }, Some(c)) => SchemaStatus::Incompatible {
            contract: c.version,
            requires_version: c.requires_version,
            release: c.release,
            reason: c.reason,
        },
        (status, _) => status,
    }
}

/// Turns [`SchemaStatus::Ahead`] into [`SchemaStatus::Incompatible`] when a newer contract
/// migration requires a migration this binary does not know; any other status passes through.
/// Reads only in the `Ahead` case, so a probe of an up-to-date database stays one round trip.
async fn check_contracts(
    status: SchemaStatus,
    conn: &mut PgConnection,
) -> Result<SchemaStatus, sqlx::Error> {
    let SchemaStatus::Ahead {
        version: Some(newest_known),
        ..
    } = status
    else {
        return Ok(status);
    };
    // The contract this binary is furthest from; bounded to one row.
    let contract = sqlx::query_as!(
        Contract,
        "SELECT version, requires_version, release, reason FROM _shared_db_contracts
         WHERE requires_version > $1
         ORDER BY requires_version DESC, version DESC
         LIMIT 1",
        newest_known
    )
    .fetch_optional(conn)
    .await;
    let contract = match contract {
        Ok(contract) => contract,
        // A migration history of its own (not this crate's), without the contracts table: no
        // migration in it can declare a contract.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => None,
        Err(e) => return Err(e),
    };
    Ok(with_contract(status, contract))
}

/// The ledger read, compared and checked against contracts on one connection.
async fn read_status(
    migrator: &Migrator,
    conn: &mut PgConnection,
    compatibility: Compatibility,
) -> Result<SchemaStatus, sqlx::Error> {
    let ledger = read_ledger(&mut *conn).await?;
    check_contracts(compare(migrator, ledger, compatibility), conn).await
}

/// Reports where the database behind `db` stands relative to `migrator`, within the default
/// compatibility window. Never writes; an unreachable server is [`SchemaStatus::NoInfo`], not an
/// error.
pub async fn status<'a>(
    migrator: &Migrator,
    db: impl Acquire<'a, Database = Postgres>,
) -> SchemaStatus {
    status_with(migrator, db, Compatibility::Window).await
}

/// [`status`] under an explicit [`Compatibility`].
pub async fn status_with<'a>(
    migrator: &Migrator,
    db: impl Acquire<'a, Database = Postgres>,
    compatibility: Compatibility,
) -> SchemaStatus {
    let read = async {
        let mut conn = db.acquire().await?;
        read_status(migrator, &mut conn, compatibility).await
    };
    match read.await {
        Ok(status) => status,
        Err(e) => SchemaStatus::NoInfo {
            reason: format!("database unreachable: {e}"),
        },
    }
}

/// Readiness probe: one round trip (two when the database is [`SchemaStatus::Ahead`]) that
/// checks connectivity and reads [`status`], within the default compatibility window.
///
/// The answer is meant for a probe endpoint that anyone may reach, so when the database cannot
/// be read its `reason` names only the kind of failure (`timed out`, `unreachable`); the driver's
/// text (host names, user names, SQL) goes to the log as a `tracing` warning.
pub async fn health<'a>(migrator: &Migrator, db: impl Acquire<'a, Database = Postgres>) -> Health {
    health_with(migrator, db, Compatibility::Window).await
}

/// [`health`] under an explicit [`Compatibility`].
pub async fn health_with<'a>(
    migrator: &Migrator,
    db: impl Acquire<'a, Database = Postgres>,
    compatibility: Compatibility,
) -> Health {
    let started = Instant::now();
    let read = async {
        let mut conn = db.acquire().await?;
        read_status(migrator, &mut conn, compatibility).await
    };
    let (connected, schema) = match read.await {
        Ok(status) => (true, status),
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
        replica: None,
    }
}

/// How [`sync_with_options`] migrates: lock bounds, the compatibility window, and where it
/// watches from while an index build waits.
#[derive(Debug, Clone, Default)]
pub struct MigrateOptions {
    /// Lock bounds of transactional migrations.
    pub locks: MigrationLocks,
    /// Whether newer migrations are a window ([`SchemaStatus::Ahead`]) or a divergence.
    pub compatibility: Compatibility,
    /// A second session to the same database, used only while a `CONCURRENTLY` statement waits
    /// for other sessions: every [`MigrateOptions::report_waits_every`] it logs who the build is
    /// waiting for. `None`: the build still waits, silently.
    pub observer: Option<sqlx::postgres::PgConnectOptions>,
    /// How often a waiting index build logs the sessions it waits for (default 5 s).
    pub report_waits_every: Option<Duration>,
}

/// Applies pending migrations on `conn`, waiting for any other migrating process first, with
/// the default [`MigrateOptions`].
///
/// Use a dedicated connection (not one that goes back to a pool): the migration lock is a
/// session-level advisory lock, and a connection dropped on failure releases it.
pub async fn migrate(migrator: &Migrator, conn: &mut PgConnection) -> Result<()> {
    sync(migrator, conn).await.map(|_| ())
}

/// Applies pending migrations and reports what was done, with the default
/// [`MigrateOptions`]. Fails (applying nothing) when the database has
/// [`SchemaStatus::Diverged`] or [`SchemaStatus::Incompatible`]; succeeds without applying
/// anything when it is [`SchemaStatus::Ahead`].
pub async fn sync(migrator: &Migrator, conn: &mut PgConnection) -> Result<SyncOutcome> {
    sync_with_options(migrator, conn, &MigrateOptions::default()).await
}

/// [`sync`] with explicit lock bounds (and the other [`MigrateOptions`] at their defaults).
pub async fn sync_with(
    migrator: &Migrator,
    conn: &mut PgConnection,
    locks: MigrationLocks,
) -> Result<SyncOutcome> {
    let options = MigrateOptions {
        locks,
        ..MigrateOptions::default()
    };
    sync_with_options(migrator, conn, &options).await
}

/// [`sync`] with explicit [`MigrateOptions`].
///
/// For the duration of the call the session runs with `statement_timeout = 0` and
/// `lock_timeout = locks.timeout` (both reset afterwards). A transactional migration whose lock
/// wait times out was rolled back (its ledger row included), so it is tried again after a
/// backoff, up to `locks.attempts` times; then [`crate::Error::LockTimeout`]. A `CONCURRENTLY`
/// statement runs without the lock bound: it waits for older transactions without blocking
/// anyone, and logs whom it waits for (see [`MigrateOptions::observer`]).
pub async fn sync_with_options(
    migrator: &Migrator,
    conn: &mut PgConnection,
    options: &MigrateOptions,
) -> Result<SyncOutcome> {
    // Waiting for another replica's migration is not bounded by the lock timeout: take the
    // migration lock first, then bound every other lock wait.
    apply::unbounded_session(conn).await?;
    // Hold the migration lock (sqlx's key, taken by polling: see `lock`) across the look and the
    // run, so the outcome we report is the one this process caused.
    let held = lock::acquire(conn).await?;
    let outcome = match apply::bound_lock_waits(conn, options.locks).await {
        Ok(()) => sync_locked(migrator, conn, options).await,
        Err(e) => Err(e),
    };
    let unlocked = lock::release(conn, held).await;
    let reset = apply::reset_session(conn).await;
    let outcome = outcome?;
    unlocked?;
    reset?;
    Ok(outcome)
}

async fn sync_locked(
    migrator: &Migrator,
    conn: &mut PgConnection,
    options: &MigrateOptions,
) -> Result<SyncOutcome> {
    let before = read_ledger(&mut *conn).await?;
    let fresh = before.as_ref().is_none_or(|l| l.is_empty());
    let status =
        check_contracts(compare(migrator, before, options.compatibility), &mut *conn).await?;
    if let Some(nothing_to_apply) = before_applying(status)? {
        return Ok(nothing_to_apply);
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
    let watch = waits::Watch::new(options);
    let mut done = Vec::new();
    for m in migrator.iter() {
        if m.migration_type.is_down_migration() || applied.contains(&m.version) {
            continue;
        }
        crate::planexe::events::before_migration(conn, m, &watch).await?;
        apply::apply(conn, LEDGER, m, options.locks, &watch).await?;
        done.push(m.version);
    }
    Ok(after_applying(fresh, done))
}

/// What `sync` does with a database in `status`, the one rule for every backend: `Ok(Some(_))`
/// when there is nothing to apply (up to date, or ahead within the compatibility window);
/// `Err(_)` when it must refuse, applying nothing (incompatible, or diverged: the first failed,
/// edited or unknown version); `Ok(None)` when pending migrations are to be applied.
pub fn before_applying(status: SchemaStatus) -> Result<Option<SyncOutcome>> {
    match status {
        SchemaStatus::UpToDate { .. } => Ok(Some(SyncOutcome::AlreadyUpToDate)),
        SchemaStatus::Ahead { newer, .. } => {
            tracing::info!(
                newer = ?newer.iter().map(|m| m.version).collect::<Vec<_>>(),
                "a newer release migrated this database; nothing to apply"
            );
            Ok(Some(SyncOutcome::Ahead {
                newer: newer.into_iter().map(|m| m.version).collect(),
            }))
        }
        SchemaStatus::Incompatible {
            contract,
            requires_version,
            release,
            reason,
        } => Err(crate::Error::SchemaIncompatible {
            contract,
            requires_version,
            release,
            reason,
        }),
        SchemaStatus::Diverged {
            changed,
            unknown,
            failed,
        } => Err(match (failed.first(), changed.first(), unknown.first()) {
            (Some(&v), _, _) => MigrateError::Dirty(v),
            (None, Some(&v), _) => MigrateError::VersionMismatch(v),
            (None, None, Some(&v)) => MigrateError::VersionMissing(v),
            (None, None, None) => unreachable!("divergence always names a version"),
        }
        .into()),
        SchemaStatus::UpgradeAvailable { .. } | SchemaStatus::NoInfo { .. } => Ok(None),
    }
}

/// The outcome of a `sync` that applied `applied` (in order) to a database that had no
/// migrations before (`fresh`) or some.
pub fn after_applying(fresh: bool, applied: Vec<i64>) -> SyncOutcome {
    if fresh {
        SyncOutcome::Created { applied }
    } else if applied.is_empty() {
        SyncOutcome::AlreadyUpToDate
    } else {
        SyncOutcome::Upgraded { applied }
    }
}

/// Opens a dedicated connection for [`migrate`]/[`sync`] from pool-compatible options.
pub(crate) async fn dedicated_connection(
    options: &sqlx::postgres::PgConnectOptions,
) -> Result<PgConnection> {
    Ok(PgConnection::connect_with(options).await?)
}
