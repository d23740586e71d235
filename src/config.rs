//! Connection and pool configuration, read from the environment.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `DATABASE_URL` | unset → embedded cluster | PostgreSQL URL; when unset, [`crate::Database::connect`] starts the private embedded cluster under `target/` |
//! | `SHARED_DB_APPLICATION_NAME` | `shared-db` | `application_name` reported to PostgreSQL (shows in `pg_stat_activity`) |
//! | `SHARED_DB_MAX_CONNECTIONS` | `10` | pool size upper bound |
//! | `SHARED_DB_MIN_CONNECTIONS` | `0` | connections kept open even when idle |
//! | `SHARED_DB_CONNECT_TIMEOUT_SECS` | `10` | how long the first connection may take at start-up |
//! | `SHARED_DB_ACQUIRE_TIMEOUT_SECS` | `10` | how long a caller waits for a pooled connection |
//! | `SHARED_DB_IDLE_TIMEOUT_SECS` | `600` | idle connections are closed after this (`0` = never) |
//! | `SHARED_DB_MAX_LIFETIME_SECS` | `1800` | connections are recycled after this (`0` = never) |
//! | `SHARED_DB_STATEMENT_TIMEOUT_MS` | `60000` | server-side `statement_timeout` (`0` = none) |
//! | `SHARED_DB_STATEMENT_CACHE_CAPACITY` | `100` | prepared statements cached per connection (`0` for PgBouncer in transaction mode) |
//! | `SHARED_DB_TEST_BEFORE_ACQUIRE` | `true` | ping a pooled connection that sat idle before handing it out (a broken one is replaced) |
//! | `SHARED_DB_PING_IDLE_AFTER_SECS` | `10` | how long a connection must have sat idle to be pinged (`0` = ping on every acquire) |
//! | `DATABASE_REPLICA_URL` | unset | a read-only replica; opens the second pool behind [`crate::Database::replica`] |
//! | `SHARED_DB_MIGRATION_URL` | `DATABASE_URL` | direct (not pooled) URL for migrations, when `DATABASE_URL` goes through PgBouncer |
//! | `SHARED_DB_FAILOVER_CHECK_MS` | `1000` | multi-host URLs: how often the chosen server's role is checked |
//!
//! `DATABASE_URL` may name several hosts, in either of libpq's forms, with
//! `target_session_attrs` ([`crate::multihost`]); the pool then fails over between them
//! ([`crate::failover`]).
//!
//! Every session runs with `TimeZone = UTC`, so `timestamp without time zone` columns written
//! with `now()` hold UTC wall-clock time, as the Python services expect.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;

use crate::{Error, Result};

/// Pool and session settings. Build one with [`Config::from_env`] or [`Config::new`].
#[derive(Clone)]
pub struct Config {
    /// PostgreSQL URL; `None` selects the embedded cluster.
    pub database_url: Option<String>,
    /// `application_name` of every session.
    pub application_name: String,
    /// Pool size upper bound.
    pub max_connections: u32,
    /// Connections kept open when idle.
    pub min_connections: u32,
    /// Time allowed for the initial connection.
    pub connect_timeout: Duration,
    /// Time a caller waits for a pooled connection.
    pub acquire_timeout: Duration,
    /// Idle connections are closed after this.
    pub idle_timeout: Option<Duration>,
    /// Connections are recycled after this.
    pub max_lifetime: Option<Duration>,
    /// Server-side statement timeout.
    pub statement_timeout: Option<Duration>,
    /// Prepared statements cached per connection; 0 disables caching (PgBouncer transaction mode).
    pub statement_cache_capacity: usize,
    /// Ping connections that sat idle for [`PING_WHEN_IDLE_FOR`](crate::database::PING_WHEN_IDLE_FOR)
    /// or more before handing them out.
    pub test_before_acquire: bool,
    /// With `test_before_acquire`, only connections idle at least this long are pinged (zero:
    /// every acquire). Pinging every acquire costs a round trip per pooled statement.
    pub ping_idle_after: Duration,
    /// A read-only replica's URL (`DATABASE_REPLICA_URL`); `None` sends replica reads to the
    /// primary.
    pub replica_url: Option<String>,
    /// Direct URL for migrations (`SHARED_DB_MIGRATION_URL`); `None` migrates through
    /// `database_url`. Needed when `database_url` points at a transaction-mode pooler.
    pub migration_url: Option<String>,
    /// Multi-host URLs: how often the watcher asks the chosen server for its role.
    pub failover_check_interval: Duration,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field(
                "database_url",
                &self.database_url.as_deref().map(redact_url),
            )
            .field("application_name", &self.application_name)
            .field("max_connections", &self.max_connections)
            .field("min_connections", &self.min_connections)
            .field("connect_timeout", &self.connect_timeout)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_lifetime", &self.max_lifetime)
            .field("statement_timeout", &self.statement_timeout)
            .field("statement_cache_capacity", &self.statement_cache_capacity)
            .field("test_before_acquire", &self.test_before_acquire)
            .field("ping_idle_after", &self.ping_idle_after)
            .field("replica_url", &self.replica_url.as_deref().map(redact_url))
            .field(
                "migration_url",
                &self.migration_url.as_deref().map(redact_url),
            )
            .field("failover_check_interval", &self.failover_check_interval)
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database_url: None,
            application_name: "shared-db".to_owned(),
            max_connections: 10,
            min_connections: 0,
            connect_timeout: Duration::from_secs(10),
            acquire_timeout: Duration::from_secs(10),
            idle_timeout: Some(Duration::from_secs(600)),
            max_lifetime: Some(Duration::from_secs(1800)),
            statement_timeout: Some(Duration::from_secs(60)),
            statement_cache_capacity: 100,
            test_before_acquire: true,
            ping_idle_after: crate::database::PING_WHEN_IDLE_FOR,
            replica_url: None,
            migration_url: None,
            failover_check_interval: Duration::from_secs(1),
        }
    }
}

impl Config {
    /// Defaults with the given URL.
    pub fn new(database_url: impl Into<String>) -> Self {
        Config {
            database_url: Some(database_url.into()),
            ..Config::default()
        }
    }

    /// Reads `DATABASE_URL` and the `SHARED_DB_*` variables (see the [module docs](self)),
    /// loading a `.env` file first when one exists. A malformed value is an
    /// [`Error::InvalidInput`] naming the variable.
    pub fn from_env() -> Result<Self> {
        // A missing .env is normal; a malformed one is worth a warning but not a failure.
        if let Err(e) = dotenvy::dotenv()
            && !e.not_found()
        {
            tracing::warn!(error = %e, "ignoring unreadable .env file");
        }
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Like [`Config::from_env`] but reads variables through `lookup`; handy in tests.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let d = Config::default();
        let get = |key: &str| lookup(key).filter(|v| !v.trim().is_empty());
        let secs = |key: &str, default: Duration| -> Result<Duration> {
            get(key).map_or(Ok(default), |v| {
                parse::<u64>(key, &v).map(Duration::from_secs)
            })
        };
        let opt_secs = |key: &str, default: Option<Duration>| -> Result<Option<Duration>> {
            get(key).map_or(Ok(default), |v| {
                parse::<u64>(key, &v).map(|s| (s > 0).then(|| Duration::from_secs(s)))
            })
        };
        Ok(Config {
            database_url: get("DATABASE_URL"),
            application_name: get("SHARED_DB_APPLICATION_NAME").unwrap_or(d.application_name),
            max_connections: get("SHARED_DB_MAX_CONNECTIONS")
                .map_or(Ok(d.max_connections), |v| {
                    parse("SHARED_DB_MAX_CONNECTIONS", &v)
                })?,
            min_connections: get("SHARED_DB_MIN_CONNECTIONS")
                .map_or(Ok(d.min_connections), |v| {
                    parse("SHARED_DB_MIN_CONNECTIONS", &v)
                })?,
            connect_timeout: secs("SHARED_DB_CONNECT_TIMEOUT_SECS", d.connect_timeout)?,
            acquire_timeout: secs("SHARED_DB_ACQUIRE_TIMEOUT_SECS", d.acquire_timeout)?,
            idle_timeout: opt_secs("SHARED_DB_IDLE_TIMEOUT_SECS", d.idle_timeout)?,
            max_lifetime: opt_secs("SHARED_DB_MAX_LIFETIME_SECS", d.max_lifetime)?,
            statement_timeout: get("SHARED_DB_STATEMENT_TIMEOUT_MS").map_or(
                Ok(d.statement_timeout),
                |v| {
                    parse::<u64>("SHARED_DB_STATEMENT_TIMEOUT_MS", &v)
                        .map(|ms| (ms > 0).then(|| Duration::from_millis(ms)))
                },
            )?,
            statement_cache_capacity: get("SHARED_DB_STATEMENT_CACHE_CAPACITY")
                .map_or(Ok(d.statement_cache_capacity), |v| {
                    parse("SHARED_DB_STATEMENT_CACHE_CAPACITY", &v)
                })?,
            test_before_acquire: get("SHARED_DB_TEST_BEFORE_ACQUIRE")
                .map_or(Ok(d.test_before_acquire), |v| {
                    parse("SHARED_DB_TEST_BEFORE_ACQUIRE", &v)
                })?,
            ping_idle_after: secs("SHARED_DB_PING_IDLE_AFTER_SECS", d.ping_idle_after)?,
            replica_url: get("DATABASE_REPLICA_URL"),
            migration_url: get("SHARED_DB_MIGRATION_URL"),
            failover_check_interval: get("SHARED_DB_FAILOVER_CHECK_MS")
                .map_or(Ok(d.failover_check_interval), |v| {
                    parse::<u64>("SHARED_DB_FAILOVER_CHECK_MS", &v).map(Duration::from_millis)
                })?,
        })
    }

    /// Connect options for `url` with this configuration's session settings applied.
    pub fn connect_options_for(&self, url: &str) -> Result<PgConnectOptions> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| Error::invalid_input(format!("invalid database URL: {e}")))?;
        Ok(self.session_options(options))
    }

    /// `options` with this configuration's session settings (application name, statement
    /// cache, `TimeZone`, statement timeout) applied.
    pub fn session_options(&self, options: PgConnectOptions) -> PgConnectOptions {
        let mut options = options
            .application_name(&self.application_name)
            .statement_cache_capacity(self.statement_cache_capacity);
        let mut session = vec![("TimeZone", "UTC".to_owned())];
        if let Some(t) = self.statement_timeout {
            session.push(("statement_timeout", t.as_millis().to_string()));
        }
        options = options.options(session);
        options
    }
}

fn parse<T: FromStr>(key: &str, value: &str) -> Result<T>
where
    T::Err: fmt::Display,
{
    value
        .trim()
        .parse()
        .map_err(|e| Error::invalid_input(format!("{key}={value:?}: {e}")))
}

/// Replaces the password in a URL (or in libpq's key/value form) by `***` for display.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return match url.find("password") {
            Some(at) => format!("{}password=***", &url[..at]),
            None => url.to_owned(),
        };
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_when_unset() {
        let c = Config::from_lookup(|_| None).unwrap();
        assert_eq!(c.database_url, None);
        assert_eq!(c.connect_timeout, Duration::from_secs(10));
        assert_eq!(c.statement_cache_capacity, 100);
    }

    #[test]
    fn values_are_read_and_zero_disables() {
        let c = Config::from_lookup(|k| match k {
            "DATABASE_URL" => Some("postgres://u:p@h/db".into()),
            "SHARED_DB_STATEMENT_CACHE_CAPACITY" => Some("0".into()),
            "SHARED_DB_IDLE_TIMEOUT_SECS" => Some("0".into()),
            "SHARED_DB_MAX_CONNECTIONS" => Some("42".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.statement_cache_capacity, 0);
        assert_eq!(c.idle_timeout, None);
        assert_eq!(c.max_connections, 42);
        assert!(
            !format!("{c:?}").contains(":p@"),
            "password must be redacted"
        );
    }

    #[test]
    fn malformed_value_names_the_variable() {
        let err =
            Config::from_lookup(|k| (k == "SHARED_DB_MAX_CONNECTIONS").then(|| "many".into()))
                .unwrap_err();
        assert!(
            err.to_string().contains("SHARED_DB_MAX_CONNECTIONS"),
            "{err}"
        );
    }
}
