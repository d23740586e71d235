//! Telling a real session from a transaction-mode pooler, before migrating.
//!
//! Migrations hold sqlx's migration lock, a *session*-level advisory lock, from the first
//! migration to the last. Behind a transaction-mode pooler (PgBouncer `pool_mode =
//! transaction`) a client has no session: each transaction may run on another server process,
//! so the lock would be taken on one server connection (and stay there, held for whoever gets
//! that connection next) while the migrations run on others. [`ensure_session`] refuses that
//! case before any lock is taken.
//!
//! The test: this connection reads its server process id; a second connection opens a
//! transaction and reads its own. PostgreSQL never gives a live session's process id to
//! another connection, so if the second connection is handed the same process, the first one
//! does not own a session: a pooler multiplexes it. A pooler reuses the server connection
//! that was released last, so the second connection gets it at once; up to three are tried.
//! Session-mode pooling keeps the server process for the client's lifetime and passes, as it
//! should.

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

use crate::{Error, Result};

async fn backend_pid(conn: &mut PgConnection) -> Result<i32> {
    Ok(sqlx::query_scalar!(r#"SELECT pg_backend_pid() AS "pid!""#)
        .fetch_one(conn)
        .await?)
}

/// Fails with [`Error::InvalidInput`] saying what to do when `conn` (opened from `options`)
/// goes through a transaction-mode pooler; see the [module docs](self). Opens up to three short
/// extra connections; takes no lock.
pub async fn ensure_session(conn: &mut PgConnection, options: &PgConnectOptions) -> Result<()> {
    let ours = backend_pid(conn).await?;
    let mut others = Vec::new();
    let mut shared = false;
    for _ in 0..3 {
        let mut other = PgConnection::connect_with(options).await?;
        // An open transaction pins the server process, so the next probe gets another one.
        sqlx::raw_sql("BEGIN").execute(&mut other).await?;
        let pid = backend_pid(&mut other).await?;
        others.push(other);
        if pid == ours {
            shared = true;
            break;
        }
    }
    for other in others {
        // Closing ends the open transaction (rolled back: it wrote nothing).
        let _ = other.close().await;
    }
    if shared {
        return Err(Error::invalid_input(format!(
            "migrations need a database session, but this connection goes through a \
             transaction-mode pooler (another connection was handed its server process {ours}), \
             so the migration lock would be held on one server connection while the migrations \
             run on others. Set SHARED_DB_MIGRATION_URL to a direct URL of the server (or of a \
             session-mode pool) and migrate again."
        )));
    }
    Ok(())
}
