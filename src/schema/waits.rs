//! Statements that wait for other sessions without making anyone wait for them.
//!
//! `CREATE INDEX CONCURRENTLY` (and `DROP INDEX CONCURRENTLY`) never block readers or writers,
//! but they wait for every transaction older than their own snapshots: a nightly `pg_dump`, a
//! report, a Python session idle in a transaction during an LLM call. A `lock_timeout` on that
//! wait protects nobody and cancels a finished build, leaving an INVALID index to drop and build
//! again. So such statements run with no lock bound, and while they wait, a second session
//! reports every few seconds which sessions they wait for (pid, application name, transaction
//! age), so an operator can see why a deploy is slow and end the right session. Transactional
//! DDL keeps its bound ([`super::MigrationLocks`]).

use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

use super::{MigrateOptions, MigrationLocks, apply};
use crate::Result;

/// Default of [`MigrateOptions::report_waits_every`].
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// How a migration run watches its waiting statements.
pub(crate) struct Watch {
    observer: Option<PgConnectOptions>,
    every: Duration,
    locks: MigrationLocks,
}

/// A statement that is waiting unbounded; hand it back to [`Watch::end`].
#[must_use = "restore the lock bound with Watch::end"]
pub(crate) struct Waiting {
    reporter: Option<tokio::task::JoinHandle<()>>,
}

impl Watch {
    pub(super) fn new(options: &MigrateOptions) -> Self {
        Watch {
            observer: options.observer.clone(),
            every: options.report_waits_every.unwrap_or(REPORT_EVERY),
            locks: options.locks,
        }
    }

    /// Lifts the lock bound of `conn` for one statement that only waits (`what` names it in
    /// the log) and starts reporting whom it waits for.
    pub(crate) async fn begin(&self, conn: &mut PgConnection, what: &str) -> Result<Waiting> {
        let pid = sqlx::query_scalar!(r#"SELECT pg_backend_pid() AS "pid!""#)
            .fetch_one(&mut *conn)
            .await?;
        sqlx::query_scalar!(r#"SELECT set_config('lock_timeout', '0', false) AS "setting!""#)
            .fetch_one(&mut *conn)
            .await?;
        let reporter = self
            .observer
            .clone()
            .map(|options| tokio::spawn(report_waits(options, pid, self.every, what.to_owned())));
        Ok(Waiting { reporter })
    }

    /// Stops reporting and puts the lock bound back.
    pub(crate) async fn end(&self, conn: &mut PgConnection, waiting: Waiting) -> Result<()> {
        if let Some(reporter) = waiting.reporter {
            reporter.abort();
        }
        apply::bound_lock_waits(conn, self.locks).await
    }
}

/// One session the waiting statement waits for.
struct Blocker {
    pid: i32,
    application_name: String,
    state: Option<String>,
    transaction_secs: Option<f64>,
}

/// Every `every`, logs the sessions that `pid`'s statement waits for, from a session of its own.
/// Ends when aborted, or quietly when it cannot connect (the statement still runs).
async fn report_waits(options: PgConnectOptions, pid: i32, every: Duration, what: String) {
    let mut conn = match PgConnection::connect_with(&options).await {
        Ok(conn) => conn,
        Err(e) => {
            tracing::debug!(error = %e, "cannot open a session to watch the index build");
            return;
        }
    };
    let started = std::time::Instant::now();
    loop {
        tokio::time::sleep(every).await;
        // Bounded: a statement rarely waits for more than a handful of sessions.
        let blockers = sqlx::query_as!(
            Blocker,
            r#"SELECT a.pid AS "pid!", a.application_name AS "application_name!", a.state,
                      EXTRACT(EPOCH FROM clock_timestamp() - a.xact_start)::float8
                          AS transaction_secs
               FROM pg_stat_activity a
               WHERE a.pid = ANY (pg_blocking_pids($1))
               ORDER BY a.xact_start
               LIMIT 20"#,
            pid
        )
        .fetch_all(&mut conn)
        .await;
        let Ok(blockers) = blockers else { return };
        for b in &blockers {
            tracing::warn!(
                migration = %what,
                waiting_secs = started.elapsed().as_secs(),
                blocker_pid = b.pid,
                blocker_application = %b.application_name,
                blocker_state = b.state.as_deref().unwrap_or("unknown"),
                blocker_transaction_secs = b.transaction_secs.map_or(-1, |s| s as i64),
                "index build waits for an older transaction to end; it blocks nobody meanwhile"
            );
        }
    }
}
