//! The migration lock: sqlx's own advisory lock key, taken by polling.
//!
//! sqlx (`sqlx migrate run`, `Migrator::run`) serialises migrators with a session-level advisory
//! lock whose key it derives from the database name. We take the **same key**, so our processes
//! and `sqlx migrate run` exclude each other, but with `pg_try_advisory_lock` in a loop instead
//! of a blocking `pg_advisory_lock`: a session blocked inside a statement holds a snapshot, and
//! the migrating session's `CREATE INDEX CONCURRENTLY` waits for every older snapshot to end, so
//! a replica blocked in the lock and the replica migrating would wait for each other. Between
//! polls a waiting replica holds no snapshot.

use std::time::Duration;

use sqlx::PgConnection;

use crate::Result;

/// First pause between polls; doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(20);
/// Longest pause between polls, so a waiter notices the lock's release within half a second.
const MAX_PAUSE: Duration = Duration::from_millis(500);

/// sqlx 0.9's migration lock key for `database_name` (`sqlx-postgres/src/migrate.rs`,
/// `generate_lock_id`): CRC-32 (ISO-HDLC) of the name times `0x3d32ad9e`.
pub(crate) fn sqlx_lock_id(database_name: &str) -> i64 {
    const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    0x3d32ad9e * i64::from(CRC.checksum(database_name.as_bytes()))
}

/// The held migration lock; give it back with [`release`].
#[must_use = "release the lock with schema::lock::release"]
pub(crate) struct Held {
    key: i64,
}

/// Waits until this session holds the migration lock. Session-level: it is held until
/// [`release`] or the end of the session, whichever comes first.
pub(crate) async fn acquire(conn: &mut PgConnection) -> Result<Held> {
    let database = sqlx::query_scalar!(r#"SELECT current_database() AS "name!""#)
        .fetch_one(&mut *conn)
        .await?;
    let key = sqlx_lock_id(&database);
    let mut pause = FIRST_PAUSE;
    loop {
        let locked = sqlx::query_scalar!(r#"SELECT pg_try_advisory_lock($1) AS "locked!""#, key)
            .fetch_one(&mut *conn)
            .await?;
        if locked {
            return Ok(Held { key });
        }
        tracing::debug!(?pause, "another process is migrating; waiting");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// Releases the lock taken by [`acquire`].
pub(crate) async fn release(conn: &mut PgConnection, held: Held) -> Result<()> {
    sqlx::query_scalar!(r#"SELECT pg_advisory_unlock($1) AS "unlocked!""#, held.key)
        .fetch_one(&mut *conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_matches_sqlx() {
        // CRC-32/ISO-HDLC("postgres") = 0x156a8775 (zlib.crc32), times sqlx's multiplier.
        assert_eq!(sqlx_lock_id("postgres"), 0x3d32ad9e * 0x156a8775);
    }
}
