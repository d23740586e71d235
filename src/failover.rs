//! Failover across the hosts of a multi-host URL, on sqlx's own pool.
//!
//! sqlx's pool opens every connection from one `PgConnectOptions`, which
//! [`Pool::set_connect_options`](sqlx::Pool::set_connect_options) may replace at any time; the
//! next connection it opens uses the new ones. Failover is built from that and three pool hooks,
//! with no pool of our own:
//!
//! - **Choosing a host.** At start-up the hosts are tried in the order written, as libpq does,
//!   and the first whose role matches `target_session_attrs` becomes the pool's target
//!   (`prefer-standby`: the first standby, else the first host that answers).
//! - **`after_connect`** asks every new connection `pg_is_in_recovery()`,
//!   `transaction_read_only` and the switch generation it was opened under (a startup setting
//!   the pool's options carry). A connection to a server of the wrong role (a primary demoted
//!   since it was chosen), or one that was still being opened to the old host when the pool
//!   switched, is closed before anyone uses it; the pool retries with back-off until its acquire
//!   timeout, and on a wrong role the watcher is woken to choose again.
//! - **A watcher task** asks the chosen server the same question every
//!   [`Config::failover_check_interval`](crate::Config::failover_check_interval) on a connection of
//!   its own. When the server does not answer or has the wrong role, it probes the hosts in order
//!   and points the pool at the first that matches. When that is the host already in use (its
//!   own session was cut by a network blip, the server still serves), nothing is retired: no
//!   reconnect storm on a healthy primary.
//! - **`before_acquire` / `after_release`** close every pooled connection opened before the last
//!   switch instead of handing it out or taking it back, so no statement runs on the old server
//!   once the switch is known.
//!
//! What a caller sees during a switch: statements on the dead server fail with I/O errors,
//! acquiring waits for a matching server and fails with a pool timeout if none appears in time,
//! and a write that reaches a server that has just become read-only fails with SQLSTATE 25006.
//! All three are [`Error::is_retryable`](crate::Error::is_retryable); none is a write applied to a
//! standby.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::{Connection, PgConnection};
use tokio::sync::Notify;

use crate::multihost::{Host, ServerRole, TargetSessionAttrs};

/// Asks a server for its role: one round trip.
pub async fn server_role(conn: &mut PgConnection) -> Result<ServerRole, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT pg_is_in_recovery() AS "in_recovery!",
                  current_setting('transaction_read_only') = 'on' AS "read_only!""#
    )
    .fetch_one(conn)
    .await?;
    Ok(ServerRole {
        in_recovery: row.in_recovery,
        read_only: row.read_only,
    })
}

/// `application_name` of the watcher's own sessions (its role checks and probes), so they can
/// be told apart from the pool's in `pg_stat_activity`.
pub const MONITOR_APPLICATION_NAME: &str = "shared-db failover watcher";

/// The startup parameter that tags every pooled connection with the switch it was opened under
/// (`-c shared_db.failover_generation=N`; a custom setting, so the server only stores it).
const GENERATION_SETTING: &str = "shared_db.failover_generation";

/// `after_connect`: the server's role and the switch generation the connection was opened
/// under, in one round trip.
async fn role_and_generation(
    conn: &mut PgConnection,
) -> Result<(ServerRole, Option<String>), sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT pg_is_in_recovery() AS "in_recovery!",
                  current_setting('transaction_read_only') = 'on' AS "read_only!",
                  current_setting('shared_db.failover_generation', true) AS generation"#
    )
    .fetch_one(conn)
    .await?;
    Ok((
        ServerRole {
            in_recovery: row.in_recovery,
            read_only: row.read_only,
        },
        row.generation.filter(|g| !g.is_empty()),
    ))
}

/// The hosts, the target, and which host the pool uses now.
pub(crate) struct Failover {
    hosts: Vec<Host>,
    target: TargetSessionAttrs,
    state: Mutex<State>,
    wake: Notify,
    probe_timeout: Duration,
    /// Which pool this is; a primary's switch moves the `server.*` attributes
    /// ([`crate::semconv`]).
    purpose: Purpose,
}

struct State {
    current: usize,
    switched_at: Instant,
    /// Bumped on every switch; the pool's options carry it ([`GENERATION_SETTING`]), so a
    /// connection that was being opened to the old host while the switch happened is known by
    /// it and refused.
    generation: u64,
}

impl Failover {
    pub(crate) fn new(
        hosts: Vec<Host>,
        target: TargetSessionAttrs,
        probe_timeout: Duration,
        purpose: Purpose,
    ) -> Self {
        Failover {
            hosts,
            target,
            state: Mutex::new(State {
                current: 0,
                switched_at: Instant::now(),
                generation: 0,
            }),
            wake: Notify::new(),
            probe_timeout,
            purpose,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Options of the host the pool uses now, tagged with the current switch generation.
    pub(crate) fn current_options(&self) -> PgConnectOptions {
        let (current, generation) = {
            let state = self.state();
            (state.current, state.generation)
        };
        self.hosts[current]
            .options
            .clone()
            .options([(GENERATION_SETTING, generation.to_string())])
    }

    /// Options for the watcher's own connections: the host's, named so an operator (or a test)
    /// can tell the watcher's session apart in `pg_stat_activity`.
    fn monitor_options(&self, host: &Host) -> PgConnectOptions {
        host.options
            .clone()
            .application_name(MONITOR_APPLICATION_NAME)
    }

    /// The host the pool uses now, for logs and health reports.
    pub(crate) fn current_host(&self) -> String {
        self.hosts[self.state().current].to_string()
    }

    /// True when a pooled connection of this age was opened before the last switch.
    pub(crate) fn predates_switch(&self, connection_age: Duration) -> bool {
        connection_age > self.state().switched_at.elapsed()
    }

    /// `after_connect`: refuses a connection to a server of the wrong role, and one that was
    /// opened to the previous host while a switch happened (its generation is older). One
    /// round trip per new connection. A connection whose generation the server did not keep
    /// (a pooler that drops the `options` startup parameter) is judged by its role alone.
    pub(crate) async fn check_new_connection(
        &self,
        conn: &mut PgConnection,
    ) -> Result<(), sqlx::Error> {
        let (role, generation) = role_and_generation(conn).await?;
        let current = self.state().generation;
        if let Some(opened_under) = generation
            && opened_under != current.to_string()
        {
            return Err(sqlx::Error::Configuration(
                format!(
                    "connection was opened to the previous host (switch {opened_under}, now \
                     {current}); retrying on the current one"
                )
                .into(),
            ));
        }
        if self.target.accepts(role) {
            return Ok(());
        }
        self.wake.notify_one();
        Err(sqlx::Error::Configuration(
            format!(
                "server has the wrong role for target_session_attrs={} (in recovery: {}, read-only: {})",
                self.target, role.in_recovery, role.read_only
            )
            .into(),
        ))
    }

    async fn probe(&self, host: &Host) -> Option<ServerRole> {
        let attempt = async {
            let mut conn = PgConnection::connect_with(&self.monitor_options(host)).await?;
            let role = server_role(&mut conn).await;
            let _ = conn.close().await;
            role
        };
        match tokio::time::timeout(self.probe_timeout, attempt).await {
            Ok(Ok(role)) => Some(role),
            Ok(Err(e)) => {
                tracing::debug!(host = %host, error = %e, "failover probe failed");
                None
            }
            Err(_) => {
                tracing::debug!(host = %host, "failover probe timed out");
                None
            }
        }
    }

    /// Probes the hosts in order and returns the first that matches the target.
    pub(crate) async fn choose(&self) -> Option<usize> {
        self.choose_reporting().await.0
    }

    /// [`Failover::choose`], plus whether every host answered (so none matching is a
    /// configuration fact, not an outage).
    async fn choose_reporting(&self) -> (Option<usize>, bool) {
        let mut fallback = None;
        let mut all_answered = true;
        for (i, host) in self.hosts.iter().enumerate() {
            let Some(role) = self.probe(host).await else {
                all_answered = false;
                continue;
            };
            match self.target {
                TargetSessionAttrs::PreferStandby if !role.in_recovery => {
                    fallback.get_or_insert(i);
                }
                target if target.accepts(role) => return (Some(i), all_answered),
                _ => {}
            }
        }
        (fallback, all_answered)
    }

    /// Points the pool (and this state) at host `index`; every older connection is retired.
    /// Choosing the host already in use changes nothing: its pooled connections stay (a lost
    /// monitor connection or a failed probe is no reason to reopen the whole pool on a server
    /// that still serves).
    pub(crate) fn switch_to(&self, index: usize, pool: &PgPool) {
        let previous = {
            let mut state = self.state();
            let previous = state.current;
            if previous == index {
                drop(state);
                tracing::debug!(host = %self.hosts[index], "database host still serves; pool kept");
                return;
            }
            state.current = index;
            state.switched_at = Instant::now();
            state.generation += 1;
            previous
        };
        pool.set_connect_options(self.current_options());
        if self.purpose == Purpose::Primary {
            crate::semconv::set_server(&self.hosts[index].options);
        }
        tracing::warn!(
            from = %self.hosts[previous],
            to = %self.hosts[index],
            target = %self.target,
            "database failover: the pool now connects to another host"
        );
    }

    /// Whether the server behind `conn` still suits the target (and, for `prefer-standby`, is a
    /// standby).
    async fn still_good(&self, conn: &mut PgConnection) -> bool {
        match tokio::time::timeout(self.probe_timeout, server_role(conn)).await {
            Ok(Ok(role)) => {
                self.target.accepts(role)
                    && (self.target != TargetSessionAttrs::PreferStandby || role.in_recovery)
            }
            _ => false,
        }
    }

    /// Runs until the pool is closed: checks the chosen server every `interval` (or when woken)
    /// and switches hosts when it no longer suits.
    pub(crate) async fn watch(self: Arc<Self>, pool: PgPool, interval: Duration) {
        let mut monitor: Option<PgConnection> = None;
        loop {
            // Woken early by `after_connect` when it meets a server of the wrong role.
            let _ = tokio::time::timeout(interval, self.wake.notified()).await;
            if pool.is_closed() {
                return;
            }
            if monitor.is_none() {
                let options = self.monitor_options(&self.hosts[self.state().current]);
                monitor =
                    tokio::time::timeout(self.probe_timeout, PgConnection::connect_with(&options))
                        .await
                        .ok()
                        .and_then(Result::ok);
            }
            if let Some(conn) = monitor.as_mut()
                && self.still_good(conn).await
            {
                continue;
            }
            monitor = None;
            match self.choose().await {
                Some(index) => self.switch_to(index, &pool),
                None => tracing::warn!(
                    target = %self.target,
                    "database failover: no host matches yet; retrying"
                ),
            }
        }
    }
}

/// Stops the watcher when the last [`Database`](crate::Database) clone goes.
pub(crate) struct WatcherGuard {
    pub(crate) task: tokio::task::JoinHandle<()>,
    pub(crate) failover: Arc<Failover>,
}

impl std::fmt::Debug for WatcherGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Failover")
            .field("host", &self.failover.current_host())
            .field("target", &self.failover.target)
            .finish()
    }
}

impl Drop for WatcherGuard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Which pool a connection string is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// `DATABASE_URL`: `target_session_attrs` as written (libpq's default `any`).
    Primary,
    /// `DATABASE_REPLICA_URL`: must reach a standby; `any` (unset) means `standby`, so the
    /// role is checked at start-up, on every new connection and by the watcher.
    Replica,
}

impl Purpose {
    fn variable(self) -> &'static str {
        match self {
            Purpose::Primary => "DATABASE_URL",
            Purpose::Replica => "DATABASE_REPLICA_URL",
        }
    }
}

/// What [`Database::connect`](crate::Database::connect) connects to: the options of the chosen
/// host, and the failover state when the URL names several hosts or a target.
pub(crate) struct Target {
    pub(crate) options: PgConnectOptions,
    pub(crate) failover: Option<Arc<Failover>>,
}

impl Target {
    /// Parses `url` ([`crate::multihost::parse`]) and, for several hosts or a
    /// `target_session_attrs` (always, for a replica), chooses the first matching host. Fails
    /// when none matches within the connect timeout, and at once with [`crate::Error::Config`]
    /// when every host answered and none has the role asked for (a replica URL that names a
    /// primary).
    pub(crate) async fn resolve(
        config: &crate::Config,
        url: &crate::config::DatabaseUrl,
        purpose: Purpose,
    ) -> crate::Result<Self> {
        let list = crate::multihost::parse(url.expose())?;
        let target = match (purpose, list.target) {
            (Purpose::Replica, TargetSessionAttrs::Any) => TargetSessionAttrs::Standby,
            (_, target) => target,
        };
        let single = list.hosts.len() == 1 && target == TargetSessionAttrs::Any;
        let hosts: Vec<Host> = list
            .hosts
            .into_iter()
            .map(|h| Host {
                options: config.session_options(h.options),
                ..h
            })
            .collect();
        if single {
            let options = hosts.into_iter().next().map(|h| h.options);
            return Ok(Target {
                options: options.expect("a host list has a host"),
                failover: None,
            });
        }
        let probe_timeout = config.connect_timeout.min(Duration::from_secs(2));
        let failover = Arc::new(Failover::new(hosts, target, probe_timeout, purpose));
        let deadline = Instant::now() + config.connect_timeout;
        loop {
            let (chosen, all_answered) = failover.choose_reporting().await;
            if let Some(index) = chosen {
                failover.state().current = index;
                tracing::info!(host = %failover.current_host(), target = %failover.target, "database host chosen");
                break;
            }
            // A primary may be between roles during a failover: wait for it. A replica URL
            // whose every host answers as a primary is a configuration mistake.
            if all_answered && purpose == Purpose::Replica {
                return Err(crate::Error::config(format!(
                    "{}: every host answered and none matches target_session_attrs={target} \
                     ({url}); point it at a streaming replica (a standby: pg_is_in_recovery() \
                     true), or unset it to read from the primary",
                    purpose.variable(),
                )));
            }
            if Instant::now() >= deadline {
                return Err(crate::Error::Database(sqlx::Error::Io(
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "no host of {} matched target_session_attrs={} within {:?}",
                            url, failover.target, config.connect_timeout
                        ),
                    ),
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        {
            failover.state().switched_at = Instant::now();
        }
        Ok(Target {
            options: failover.current_options(),
            failover: Some(failover),
        })
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_opened_before_a_switch_is_refused_after_it() -> crate::Result<()> {
        let test_db = crate::testing::TestDatabase::new().await?;
        let options = test_db.connect_options().clone();
        // two names for the same server: a switch between them is a switch all the same
        let hosts: Vec<Host> = ["127.0.0.1", "localhost"]
            .into_iter()
            .map(|name| Host {
                host: name.to_owned(),
                port: options.get_port(),
                options: options.clone().host(name),
            })
            .collect();
        let failover = Failover::new(
            hosts,
            TargetSessionAttrs::Any,
            Duration::from_secs(5),
            Purpose::Replica,
        );
        let pool =
            sqlx::postgres::PgPoolOptions::new().connect_lazy_with(failover.current_options());

        // opened under the options of host 0 (a connect in flight when the switch happens)
        let mut opened_before = PgConnection::connect_with(&failover.current_options()).await?;
        failover
            .check_new_connection(&mut opened_before)
            .await
            .expect("accepted before the switch");
        failover.switch_to(1, &pool);
        let err = failover
            .check_new_connection(&mut opened_before)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("previous host"), "{err}");

        let mut opened_after = PgConnection::connect_with(&failover.current_options()).await?;
        failover.check_new_connection(&mut opened_after).await?;
        // choosing the host in use again is no switch: the connection stays good
        failover.switch_to(1, &pool);
        failover.check_new_connection(&mut opened_after).await?;
        Ok(())
    }
}
