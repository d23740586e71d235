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
//! - **`after_connect`** asks every new connection `pg_is_in_recovery()` and
//!   `transaction_read_only`. A connection to a server of the wrong role (a primary demoted
//!   since it was chosen) is closed before anyone uses it; the pool retries with back-off until
//!   its acquire timeout, and the watcher is woken to choose again.
//! - **A watcher task** asks the chosen server the same question every
//!   [`Config::failover_check_interval`](crate::Config::failover_check_interval) on a connection of
//!   its own. When the server does not answer or has the wrong role, it probes the hosts in order
//!   and points the pool at the first that matches.
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

/// The hosts, the target, and which host the pool uses now.
pub(crate) struct Failover {
    hosts: Vec<Host>,
    target: TargetSessionAttrs,
    state: Mutex<State>,
    wake: Notify,
    probe_timeout: Duration,
}

struct State {
    current: usize,
    switched_at: Instant,
}

impl Failover {
    pub(crate) fn new(
        hosts: Vec<Host>,
        target: TargetSessionAttrs,
        probe_timeout: Duration,
    ) -> Self {
        Failover {
            hosts,
            target,
            state: Mutex::new(State {
                current: 0,
                switched_at: Instant::now(),
            }),
            wake: Notify::new(),
            probe_timeout,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Options of the host the pool uses now.
    pub(crate) fn current_options(&self) -> PgConnectOptions {
        self.hosts[self.state().current].options.clone()
    }

    /// The host the pool uses now, for logs and health reports.
    pub(crate) fn current_host(&self) -> String {
        self.hosts[self.state().current].to_string()
    }

    /// True when a pooled connection of this age was opened before the last switch.
    pub(crate) fn predates_switch(&self, connection_age: Duration) -> bool {
        connection_age > self.state().switched_at.elapsed()
    }

    /// `after_connect`: refuses a connection to a server of the wrong role.
    pub(crate) async fn check_new_connection(
        &self,
        conn: &mut PgConnection,
    ) -> Result<(), sqlx::Error> {
        if matches!(
            self.target,
            TargetSessionAttrs::Any | TargetSessionAttrs::PreferStandby
        ) {
            // every role is accepted: no round trip to ask
            return Ok(());
        }
        let role = server_role(conn).await?;
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
            let mut conn = PgConnection::connect_with(&host.options).await?;
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
        let mut fallback = None;
        for (i, host) in self.hosts.iter().enumerate() {
            let Some(role) = self.probe(host).await else {
                continue;
            };
            match self.target {
                TargetSessionAttrs::PreferStandby if !role.in_recovery => {
                    fallback.get_or_insert(i);
                }
                target if target.accepts(role) => return Some(i),
                _ => {}
            }
        }
        fallback
    }

    /// Points the pool (and this state) at host `index`; every older connection is retired.
    pub(crate) fn switch_to(&self, index: usize, pool: &PgPool) {
        let previous = {
            let mut state = self.state();
            let previous = state.current;
            state.current = index;
            state.switched_at = Instant::now();
            previous
        };
        pool.set_connect_options(self.hosts[index].options.clone());
        if previous != index {
            tracing::warn!(
                from = %self.hosts[previous],
                to = %self.hosts[index],
                target = %self.target,
                "database failover: the pool now connects to another host"
            );
        } else {
            tracing::warn!(host = %self.hosts[index], "database host came back; pooled connections are renewed");
        }
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
                let options = self.current_options();
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

/// What [`Database::connect`](crate::Database::connect) connects to: the options of the chosen
/// host, and the failover state when the URL names several hosts or a target.
pub(crate) struct Target {
    pub(crate) options: PgConnectOptions,
    pub(crate) failover: Option<Arc<Failover>>,
}

impl Target {
    /// Parses `url` ([`crate::multihost::parse`]) and, for several hosts or a
    /// `target_session_attrs`, chooses the first matching host. Fails when none matches within
    /// the connect timeout.
    pub(crate) async fn resolve(
        config: &crate::Config,
        url: &crate::config::DatabaseUrl,
    ) -> crate::Result<Self> {
        let list = crate::multihost::parse(url.expose())?;
        let single = list.is_single();
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
        let failover = Arc::new(Failover::new(hosts, list.target, probe_timeout));
        let deadline = Instant::now() + config.connect_timeout;
        loop {
            if let Some(index) = failover.choose().await {
                failover.state().current = index;
                tracing::info!(host = %failover.current_host(), target = %failover.target, "database host chosen");
                break;
            }
            if Instant::now() >= deadline {
                return Err(crate::Error::Database(sqlx::Error::Io(
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "no host of {} matched target_session_attrs={} within {:?}",
                            url,
                            failover.target,
                            config.connect_timeout
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
