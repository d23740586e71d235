//! The schema lifecycle on SQLite: the states, comparison rule and compatibility window of
//! [`shared_db::schema`], over this backend's ledger (`_sqlx_migrations`, as `sqlx migrate run`
//! keeps it) and contracts table.

use std::path::Path;
use std::time::{Duration, Instant};

use shared_db::schema::{
    self, AppliedMigration, Compatibility, Contract, Health, SchemaStatus, SyncOutcome,
};
use shared_db::{Error, Result};
use sqlx::SqliteConnection;
use sqlx::migrate::{Migrate, Migrator};

use crate::error::from_sqlx;

/// The migration ledger table (sqlx's default name).
const LEDGER: &str = "_sqlx_migrations";

fn no_such_table(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.message().starts_with("no such table"))
}

/// The ledger; `None` when it does not exist (never migrated).
async fn read_ledger(conn: &mut SqliteConnection) -> Result<Option<Vec<AppliedMigration>>> {
    let rows = sqlx::query_as!(
        AppliedMigration,
        r#"SELECT version AS "version!", description, checksum, success AS "success: bool"
           FROM _sqlx_migrations ORDER BY version"#
    )
    .fetch_all(conn)
    .await;
    match rows {
        Ok(rows) => Ok(Some(rows)),
        Err(e) if no_such_table(&e) => Ok(None),
        Err(e) => Err(from_sqlx(e)),
    }
}

/// The applied contract furthest from a binary whose newest migration is `newest_known`.
async fn contract_beyond(
    conn: &mut SqliteConnection,
    newest_known: i64,
) -> Result<Option<Contract>> {
    let contract = sqlx::query_as!(
        Contract,
        r#"SELECT version AS "version!", requires_version, release, reason
           FROM _shared_db_contracts WHERE requires_version > ?1
           ORDER BY requires_version DESC, version DESC LIMIT 1"#,
        newest_known
    )
    .fetch_optional(conn)
    .await;
    match contract {
        Ok(c) => Ok(c),
        Err(e) if no_such_table(&e) => Ok(None),
        Err(e) => Err(from_sqlx(e)),
    }
}

async fn read_status(
    migrator: &Migrator,
    conn: &mut SqliteConnection,
    compatibility: Compatibility,
) -> Result<SchemaStatus> {
    let ledger = read_ledger(&mut *conn).await?;
    read_status_from(migrator, conn, ledger, compatibility).await
}

/// Where the database stands relative to `migrator`. Never writes; a failure to read is
/// [`SchemaStatus::NoInfo`].
pub async fn status(
    migrator: &Migrator,
    conn: &mut SqliteConnection,
    compatibility: Compatibility,
) -> SchemaStatus {
    match read_status(migrator, conn, compatibility).await {
        Ok(status) => status,
        Err(e) => SchemaStatus::NoInfo {
            reason: format!("database unreadable: {e}"),
        },
    }
}

/// Readiness answer: [`status`] and how long it took. The reason of a failure names only its
/// kind; the driver's text goes to the log.
pub async fn health(
    migrator: &Migrator,
    conn: &mut SqliteConnection,
    compatibility: Compatibility,
) -> Health {
    let started = Instant::now();
    let (connected, schema) = match read_status(migrator, conn, compatibility).await {
        Ok(status) => (true, status),
        Err(e) => {
            tracing::warn!(error = %e, "readiness probe could not read the migration ledger");
            let reason = if e.is_retryable() {
                "database busy: timed out waiting for a lock"
            } else {
                "database unreadable: the migration ledger could not be read"
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

/// An advisory lock on a file next to the database, held while migrating: SQLite has no
/// advisory locks, and two processes applying the same migration would both try.
struct MigrationLock(std::fs::File);

impl MigrationLock {
    /// Waits (polling, so the runtime is never blocked) until this process holds the lock.
    async fn acquire(database: &Path) -> Result<Self> {
        let mut path = database.as_os_str().to_owned();
        path.push(".migrate-lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| {
                Error::Internal(format!("cannot open the migration lock file: {e}").into())
            })?;
        let mut pause = Duration::from_millis(10);
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(MigrationLock(file)),
                Err(std::fs::TryLockError::WouldBlock) => {
                    tracing::debug!(?pause, "another process is migrating; waiting");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(250));
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(Error::Internal(
                        format!("cannot lock the migration lock file: {e}").into(),
                    ));
                }
            }
        }
    }
}

impl Drop for MigrationLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// Applies pending migrations and says what was done, under the migration lock of the
/// database file `database`. The same outcomes as [`shared_db::schema::sync`]: nothing applied
/// when the database is [`SchemaStatus::Ahead`]; [`Error::SchemaIncompatible`] or a divergence
/// error, applying nothing, when it is incompatible or diverged.
pub async fn sync(
    migrator: &Migrator,
    conn: &mut SqliteConnection,
    database: &Path,
    compatibility: Compatibility,
) -> Result<SyncOutcome> {
    let _lock = MigrationLock::acquire(database).await?;
    let before = read_ledger(&mut *conn).await?;
    let fresh = before.as_ref().is_none_or(|l| l.is_empty());
    let status = read_status_from(migrator, conn, before, compatibility).await?;
    if let Some(nothing_to_apply) = schema::before_applying(status)? {
        return Ok(nothing_to_apply);
    }
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
        conn.apply(LEDGER, m).await?;
        done.push(m.version);
    }
    Ok(schema::after_applying(fresh, done))
}

async fn read_status_from(
    migrator: &Migrator,
    conn: &mut SqliteConnection,
    ledger: Option<Vec<AppliedMigration>>,
    compatibility: Compatibility,
) -> Result<SchemaStatus> {
    let status = schema::compare(migrator, ledger, compatibility);
    let contract = match &status {
        SchemaStatus::Ahead {
            version: Some(newest),
            ..
        } => contract_beyond(conn, *newest).await?,
        _ => None,
    };
    Ok(schema::with_contract(status, contract))
}
