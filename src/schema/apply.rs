//! Applying one migration on a live database: bounded lock waits, backoff, and the clean-up of
//! an index that a failed `CREATE INDEX CONCURRENTLY` left behind.

use std::time::Duration;

use sqlx::PgConnection;
use sqlx::migrate::{Migrate, MigrateError, Migration};

use super::waits::Watch;
use crate::error::sqlstate::LOCK_NOT_AVAILABLE;
use crate::{Error, Result};

/// How long one migration attempt may wait for a lock, and how often it is tried.
///
/// The point of the bound: a migration that needs an `ACCESS EXCLUSIVE` lock and queues behind
/// a long transaction makes every later reader and writer of that table queue behind itself.
/// Giving up after `timeout` lets them through; the migration tries again after a backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationLocks {
    /// `lock_timeout` of each attempt (`SHARED_DB_MIGRATION_LOCK_TIMEOUT_MS`, default 5 s).
    pub timeout: Duration,
    /// Attempts per migration, the first included (at least 1). Between attempts the backoff
    /// starts at 100 ms and doubles up to 5 s.
    pub attempts: u32,
}

impl Default for MigrationLocks {
    fn default() -> Self {
        MigrationLocks {
            timeout: Duration::from_secs(5),
            attempts: 10,
        }
    }
}

/// `statement_timeout = 0` and `lock_timeout = 0` for the session: index builds may run long,
/// and waiting for the migration lock itself (another replica migrating) is not bounded.
pub(super) async fn unbounded_session(conn: &mut PgConnection) -> Result<()> {
    sqlx::raw_sql("SET statement_timeout = 0; SET lock_timeout = 0")
        .execute(conn)
        .await?;
    Ok(())
}

/// Bounds every lock wait of the session by `locks.timeout`.
pub(crate) async fn bound_lock_waits(conn: &mut PgConnection, locks: MigrationLocks) -> Result<()> {
    let millis = format!("{}ms", locks.timeout.as_millis().max(1));
    sqlx::query_scalar!(
        r#"SELECT set_config('lock_timeout', $1, false) AS "setting!""#,
        millis
    )
    .fetch_one(conn)
    .await?;
    Ok(())
}

/// Back to the session's own settings (those of its connect options).
pub(super) async fn reset_session(conn: &mut PgConnection) -> Result<()> {
    sqlx::raw_sql("RESET statement_timeout; RESET lock_timeout")
        .execute(conn)
        .await?;
    Ok(())
}

/// Applies `m`, trying again after a backoff while its lock waits time out.
///
/// A transactional migration that failed was rolled back with its ledger row, so repeating it
/// is safe. A `-- no-transaction` migration holds one statement by convention
/// (`migrations/README.md`), which either ran or did not. When that statement is a
/// `CONCURRENTLY` one it runs without the lock bound ([`super::waits`]): it waits for older
/// transactions without blocking anyone. The one that can leave something behind is
/// `CREATE INDEX CONCURRENTLY IF NOT EXISTS`, whose failed build (or a crash mid-build) leaves an
/// INVALID index that `IF NOT EXISTS` would then accept: such an index is dropped before each
/// attempt, so the next run builds it again.
pub(super) async fn apply(
    conn: &mut PgConnection,
    ledger: &str,
    m: &Migration,
    locks: MigrationLocks,
    watch: &Watch,
) -> Result<()> {
    if m.no_tx && waits_for_others(m.sql.as_str()) {
        let what = format!("{} ({})", m.version, m.description);
        let waiting = watch.begin(conn, &what).await?;
        let applied = async {
            drop_invalid_index(conn, m.sql.as_str()).await?;
            conn.apply(ledger, m).await?;
            Ok::<_, Error>(())
        }
        .await;
        let ended = watch.end(conn, waiting).await;
        applied?;
        return ended;
    }
    let attempts = locks.attempts.max(1);
    let mut backoff = Duration::from_millis(100);
    let mut attempt = 1;
    loop {
        let message = match conn.apply(ledger, m).await {
            Ok(_) => return Ok(()),
            Err(MigrateError::ExecuteMigration(sqlx::Error::Database(db), _))
                if db.code().as_deref() == Some(LOCK_NOT_AVAILABLE) =>
            {
                db.message().to_owned()
            }
            Err(other) => return Err(other.into()),
        };
        if attempt >= attempts {
            return Err(Error::LockTimeout {
                message: format!(
                    "migration {} ({}) gave up after {attempts} attempts: {message}",
                    m.version, m.description
                ),
            });
        }
        tracing::warn!(
            version = m.version,
            attempt,
            ?backoff,
            "migration timed out waiting for a lock; rolled back, trying again"
        );
        tokio::time::sleep(backoff + crate::tx::jitter()).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
        attempt += 1;
    }
}

/// A statement of a `-- no-transaction` file that waits for other sessions rather than
/// blocking them: `CREATE`/`DROP INDEX CONCURRENTLY` (or `REINDEX … CONCURRENTLY`).
fn waits_for_others(sql: &str) -> bool {
    sql.lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .flat_map(str::split_whitespace)
        .any(|w| w.eq_ignore_ascii_case("concurrently"))
}

/// The index and table of `CREATE [UNIQUE] INDEX CONCURRENTLY IF NOT EXISTS <index> ON [ONLY]
/// <table>`, if that is what `sql` is (comments aside).
fn concurrent_index(sql: &str) -> Option<(String, String)> {
    let code: Vec<&str> = sql
        .lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .collect();
    let mut words = code.iter().flat_map(|l| l.split_whitespace()).peekable();
    let mut next_is = |expected: &str, optional: bool| {
        let hit = words
            .peek()
            .is_some_and(|w| w.eq_ignore_ascii_case(expected));
        if hit {
            words.next();
        }
        hit || optional
    };
    let shape = next_is("create", false)
        && next_is("unique", true)
        && ["index", "concurrently", "if", "not", "exists"]
            .iter()
            .all(|w| next_is(w, false));
    if !shape {
        return None;
    }
    let index = words.next()?.to_owned();
    if !words.next()?.eq_ignore_ascii_case("on") {
        return None;
    }
    let mut table = words.next()?;
    if table.eq_ignore_ascii_case("only") {
        table = words.next()?;
    }
    Some((index, table.split('(').next()?.to_owned()))
}

/// Drops the INVALID index a failed concurrent build of `sql` left behind, if any.
async fn drop_invalid_index(conn: &mut PgConnection, sql: &str) -> Result<()> {
    let Some((index, table)) = concurrent_index(sql) else {
        return Ok(());
    };
    let invalid = sqlx::query_scalar!(
        r#"SELECT i.indexrelid::regclass::text AS "name!"
           FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
           WHERE i.indrelid = to_regclass($1) AND c.relname = $2 AND NOT i.indisvalid"#,
        table,
        index.trim_matches('"'),
    )
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(name) = invalid {
        tracing::warn!(index = %name, "dropping the INVALID index of a failed concurrent build");
        // `name` is the server's own quoted spelling of an existing index.
        let drop = format!("DROP INDEX CONCURRENTLY IF EXISTS {name}");
        sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::concurrent_index;

    #[test]
    fn a_concurrent_index_build_is_recognised_with_its_table() {
        let sql = "-- no-transaction\n-- why: billing sums\nCREATE INDEX CONCURRENTLY IF NOT EXISTS \
                   ix_credit_history_external_id_source\n    ON credit_history (external_id, source);";
        assert_eq!(
            concurrent_index(sql),
            Some((
                "ix_credit_history_external_id_source".into(),
                "credit_history".into()
            ))
        );
        assert_eq!(
            concurrent_index("create unique index concurrently if not exists ux ON ONLY shop.t(a)"),
            Some(("ux".into(), "shop.t".into()))
        );
        assert_eq!(concurrent_index("CREATE INDEX ix ON t (a)"), None);
        assert_eq!(concurrent_index("ALTER TABLE t ADD COLUMN c int"), None);
    }

    #[test]
    fn only_concurrently_statements_wait_unbounded() {
        assert!(super::waits_for_others(
            "-- no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS ix ON t (a);"
        ));
        assert!(super::waits_for_others(
            "drop index concurrently if exists ix"
        ));
        assert!(!super::waits_for_others(
            "-- not built concurrently\nALTER TABLE t ADD COLUMN c int"
        ));
    }
}
