//! Connection and pool configuration, read from the environment.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `DATABASE_URL` | required | PostgreSQL URL; [`crate::Database::connect`] without one is an [`Error::Config`] naming it (local tools opt into the embedded cluster with `Database::connect_or_embedded`, feature `embedded`) |
//! | `SHARED_DB_APPLICATION_NAME` | `shared-db` | `application_name` reported to PostgreSQL (shows in `pg_stat_activity`) |
//! | `SHARED_DB_MAX_CONNECTIONS` | `10` | pool size upper bound |
//! | `SHARED_DB_MIN_CONNECTIONS` | `0` | connections kept open even when idle |
//! | `SHARED_DB_CONNECT_TIMEOUT_SECS` | `10` | how long the first connection may take at start-up |
//! | `SHARED_DB_ACQUIRE_TIMEOUT_SECS` | `10` | how long a caller waits for a pooled connection |
//! | `SHARED_DB_IDLE_TIMEOUT_SECS` | `600` | idle connections are closed after this (`0` = never) |
//! | `SHARED_DB_MAX_LIFETIME_SECS` | `1800` | connections are recycled after this (`0` = never) |
//! | `SHARED_DB_STATEMENT_TIMEOUT_MS` | `60000` | server-side `statement_timeout` (`0` = the server's default); migrations run without one |
//! | `SHARED_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS` | `300000` | server-side `idle_in_transaction_session_timeout`: a session that holds a transaction open without running anything for this long is ended, releasing its locks (`0` = the server's default) |
//! | `SHARED_DB_MIGRATION_LOCK_TIMEOUT_MS` | `5000` | `lock_timeout` of each migration attempt; a migration that waits longer for a lock is rolled back and tried again with backoff (see [`crate::schema::migrate`]) |
//! | `SHARED_DB_SCHEMA_STRICT` | `false` | `true`: a database migrated by a newer release is `diverged` (not ready) instead of `ahead` (ready); see [`crate::schema`] |
//! | `SHARED_DB_SQLITE_BUSY_TIMEOUT_MS` | `5000` | SQLite backend: how long a connection waits for the write lock (`busy_timeout`) |
//! | `SHARED_DB_STATEMENT_CACHE_CAPACITY` | `100` | prepared statements cached per connection (`0`: none; each statement is then prepared unnamed) |
//! | `SHARED_DB_TRANSACTION_POOLER` | `false` | `true` when `DATABASE_URL` goes through a transaction-mode pooler (PgBouncer ≥ 1.21 with `max_prepared_statements`, which carries sqlx's named statements); session state such as `LISTEN` then stays off it (see [`Config::behind_transaction_pooler`]). Keep the statement cache on there: with sqlx 0.9.1 a cache of `0` sends unnamed statements across two protocol syncs, between which the pooler may switch server connections |
//! | `SHARED_DB_TEST_BEFORE_ACQUIRE` | `true` | ping a pooled connection that sat idle before handing it out (a broken one is replaced) |
//! | `SHARED_DB_PING_IDLE_AFTER_SECS` | `10` | how long a connection must have sat idle to be pinged (`0` = ping on every acquire) |
//! | `DATABASE_REPLICA_URL` | unset | a read-only replica; opens the second pool behind [`crate::Database::replica`] |
//! | `SHARED_DB_MIGRATION_URL` | `DATABASE_URL` | direct (not pooled) URL for migrations, when `DATABASE_URL` goes through PgBouncer |
//! | `SHARED_DB_LISTEN_URL` | see meaning | direct (not pooled) URL for the plan queue's `LISTEN` wake-ups ([`crate::planexe::plans::wakeup`]). Unset: workers listen through `DATABASE_URL`, unless it goes through a transaction pooler ([`Config::behind_transaction_pooler`]), where they poll only: a `LISTEN` through PgBouncer in transaction mode would stay on a server connection that other clients then share, and their statements would fail on the notifications |
//! | `SHARED_DB_FAILOVER_CHECK_MS` | `1000` | multi-host URLs: how often the chosen server's role is checked |
//!
//! `DATABASE_URL` may name several hosts, in either of libpq's forms, with
//! `target_session_attrs` ([`crate::multihost`]); the pool then fails over between them
//! ([`crate::failover`]).
//!
//! Every session runs with `TimeZone = UTC`, so `timestamp without time zone` columns written
//! with `now()` hold UTC wall-clock time, as the Python services expect.
//!
//! The library reads the process environment only; it never loads a `.env` file. Binaries that
//! want one call `dotenvy::dotenv()` before [`Config::from_env`].

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;

use crate::{Error, Result};

/// Default of [`Config::ping_idle_after`]: with [`Config::test_before_acquire`], a pooled
/// connection idle for at least this long is pinged before it is handed out (a broken one is
/// replaced); busier connections are not.
pub const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(10);

/// Pool and session settings. Build one with [`Config::from_env`] or [`Config::new`].
#[derive(Clone)]
pub struct Config {
    /// PostgreSQL URL. `None` makes [`crate::Database::connect`] fail with [`Error::Config`].
    pub database_url: Option<DatabaseUrl>,
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
    /// Server-side `statement_timeout` of pooled sessions (`None`: no limit). A statement that
    /// runs longer is cancelled with [`Error::StatementTimeout`].
    pub statement_timeout: Option<Duration>,
    /// Server-side `idle_in_transaction_session_timeout` (`None`: no limit): a session left
    /// inside an open transaction without running a statement for this long is terminated by
    /// the server, so a stuck task cannot hold row locks for ever.
    pub idle_in_transaction_timeout: Option<Duration>,
    /// `lock_timeout` of one migration attempt; a migration that waits longer for a lock is
    /// rolled back and retried with backoff instead of stalling other sessions behind it.
    pub migration_lock_timeout: Duration,
    /// How a binary treats migrations applied by a newer release: the compatibility window
    /// (default; newer expand steps are `ahead` and ready) or strict (`SHARED_DB_SCHEMA_STRICT`:
    /// any unknown version is `diverged`). See [`crate::schema`].
    pub schema_compatibility: crate::schema::Compatibility,
    /// SQLite backend (`shared-db-sqlite`): how long a connection waits for another one's write
    /// lock before failing with `SQLITE_BUSY` (its `busy_timeout`).
    pub sqlite_busy_timeout: Duration,
    /// Prepared statements cached per connection; 0 disables caching (each statement is then
    /// prepared unnamed, which a transaction-mode pooler cannot carry across sqlx 0.9.1's two
    /// protocol syncs: keep it on behind one).
    pub statement_cache_capacity: usize,
    /// `DATABASE_URL` goes through a transaction-mode pooler (`SHARED_DB_TRANSACTION_POOLER`).
    pub transaction_pooler: bool,
    /// Ping connections that sat idle for [`Config::ping_idle_after`] or more before handing
    /// them out.
    pub test_before_acquire: bool,
    /// With `test_before_acquire`, only connections idle at least this long are pinged (zero:
    /// every acquire). Pinging every acquire costs a round trip per pooled statement.
    pub ping_idle_after: Duration,
    /// A read-only replica's URL (`DATABASE_REPLICA_URL`); `None` sends replica reads to the
    /// primary.
    pub replica_url: Option<DatabaseUrl>,
    /// Direct URL for migrations (`SHARED_DB_MIGRATION_URL`); `None` migrates through
    /// `database_url`. Needed when `database_url` points at a transaction-mode pooler.
    pub migration_url: Option<DatabaseUrl>,
    /// Direct URL for the queue's `LISTEN` wake-ups (`SHARED_DB_LISTEN_URL`). `None`: listen
    /// through `database_url`, or, when [`Config::behind_transaction_pooler`], not at all
    /// (workers poll). See [`crate::Database::wakeups`].
    pub listen_url: Option<DatabaseUrl>,
    /// Multi-host URLs: how often the watcher asks the chosen server for its role.
    pub failover_check_interval: Duration,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &self.database_url)
            .field("application_name", &self.application_name)
            .field("max_connections", &self.max_connections)
            .field("min_connections", &self.min_connections)
            .field("connect_timeout", &self.connect_timeout)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_lifetime", &self.max_lifetime)
            .field("statement_timeout", &self.statement_timeout)
            .field(
                "idle_in_transaction_timeout",
                &self.idle_in_transaction_timeout,
            )
            .field("migration_lock_timeout", &self.migration_lock_timeout)
            .field("schema_compatibility", &self.schema_compatibility)
            .field("sqlite_busy_timeout", &self.sqlite_busy_timeout)
            .field("statement_cache_capacity", &self.statement_cache_capacity)
            .field("transaction_pooler", &self.transaction_pooler)
            .field("test_before_acquire", &self.test_before_acquire)
            .field("ping_idle_after", &self.ping_idle_after)
            .field("replica_url", &self.replica_url)
            .field("migration_url", &self.migration_url)
            .field("listen_url", &self.listen_url)
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
            idle_in_transaction_timeout: Some(Duration::from_secs(300)),
            migration_lock_timeout: Duration::from_secs(5),
            schema_compatibility: crate::schema::Compatibility::Window,
            sqlite_busy_timeout: Duration::from_secs(5),
            statement_cache_capacity: 100,
            transaction_pooler: false,
            test_before_acquire: true,
            ping_idle_after: PING_WHEN_IDLE_FOR,
            replica_url: None,
            migration_url: None,
            listen_url: None,
            failover_check_interval: Duration::from_secs(1),
        }
    }
}

impl Config {
    /// Defaults with the given URL.
    pub fn new(database_url: impl Into<DatabaseUrl>) -> Self {
        Config {
            database_url: Some(database_url.into()),
            ..Config::default()
        }
    }

    /// Reads `DATABASE_URL` and the `SHARED_DB_*` variables of the process environment (see
    /// the [module docs](self)); no `.env` file. A malformed value is an [`Error::Config`]
    /// naming the variable. A missing `DATABASE_URL` is not an error here (a local tool may
    /// choose the embedded cluster); [`crate::Database::connect`] refuses it.
    pub fn from_env() -> Result<Self> {
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
        let millis = |key: &str, default: Duration| -> Result<Duration> {
            get(key).map_or(Ok(default), |v| {
                parse::<u64>(key, &v).map(Duration::from_millis)
            })
        };
        let opt_secs = |key: &str, default: Option<Duration>| -> Result<Option<Duration>> {
            get(key).map_or(Ok(default), |v| {
                parse::<u64>(key, &v).map(|s| (s > 0).then(|| Duration::from_secs(s)))
            })
        };
        let opt_millis = |key: &str, default: Option<Duration>| -> Result<Option<Duration>> {
            get(key).map_or(Ok(default), |v| {
                parse::<u64>(key, &v).map(|ms| (ms > 0).then(|| Duration::from_millis(ms)))
            })
        };
        Ok(Config {
            database_url: get("DATABASE_URL").map(DatabaseUrl::from),
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
            statement_timeout: opt_millis("SHARED_DB_STATEMENT_TIMEOUT_MS", d.statement_timeout)?,
            idle_in_transaction_timeout: opt_millis(
                "SHARED_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS",
                d.idle_in_transaction_timeout,
            )?,
            migration_lock_timeout: millis(
                "SHARED_DB_MIGRATION_LOCK_TIMEOUT_MS",
                d.migration_lock_timeout,
            )?,
            schema_compatibility: match get("SHARED_DB_SCHEMA_STRICT") {
                None => d.schema_compatibility,
                Some(v) if parse::<bool>("SHARED_DB_SCHEMA_STRICT", &v)? => {
                    crate::schema::Compatibility::Strict
                }
                Some(_) => crate::schema::Compatibility::Window,
            },
            sqlite_busy_timeout: millis("SHARED_DB_SQLITE_BUSY_TIMEOUT_MS", d.sqlite_busy_timeout)?,
            statement_cache_capacity: get("SHARED_DB_STATEMENT_CACHE_CAPACITY")
                .map_or(Ok(d.statement_cache_capacity), |v| {
                    parse("SHARED_DB_STATEMENT_CACHE_CAPACITY", &v)
                })?,
            transaction_pooler: get("SHARED_DB_TRANSACTION_POOLER")
                .map_or(Ok(d.transaction_pooler), |v| {
                    parse("SHARED_DB_TRANSACTION_POOLER", &v)
                })?,
            test_before_acquire: get("SHARED_DB_TEST_BEFORE_ACQUIRE")
                .map_or(Ok(d.test_before_acquire), |v| {
                    parse("SHARED_DB_TEST_BEFORE_ACQUIRE", &v)
                })?,
            ping_idle_after: secs("SHARED_DB_PING_IDLE_AFTER_SECS", d.ping_idle_after)?,
            replica_url: get("DATABASE_REPLICA_URL").map(DatabaseUrl::from),
            migration_url: get("SHARED_DB_MIGRATION_URL").map(DatabaseUrl::from),
            listen_url: get("SHARED_DB_LISTEN_URL").map(DatabaseUrl::from),
            failover_check_interval: millis(
                "SHARED_DB_FAILOVER_CHECK_MS",
                d.failover_check_interval,
            )?,
        })
    }

    /// True when `database_url` is configured for a transaction-mode pooler (PgBouncer's
    /// `pool_mode = transaction`): [`Config::transaction_pooler`], or a statement cache of `0`
    /// (what such a setup used before PgBouncer carried named statements). Session state such
    /// as `LISTEN` must not go through such a pool.
    pub fn behind_transaction_pooler(&self) -> bool {
        self.transaction_pooler || self.statement_cache_capacity == 0
    }

    /// The URL, or the [`Error::Config`] that says `DATABASE_URL` is missing.
    pub fn require_url(&self) -> Result<&DatabaseUrl> {
        self.database_url.as_ref().ok_or_else(|| {
            Error::config(
                "DATABASE_URL is not set: set it to the PostgreSQL URL of the shared database \
                 (for local development, a tool may opt into the embedded cluster instead)",
            )
        })
    }

    /// Connect options for `url` (either libpq form, parsed by [`crate::multihost::parse`],
    /// so unix sockets, `hostaddr`, the `PG*` environment defaults and the password file apply
    /// as in libpq) with this configuration's session settings applied (`TimeZone`,
    /// `statement_timeout`, `idle_in_transaction_session_timeout`). A string naming several
    /// hosts is an [`Error::Config`]: only `DATABASE_URL` and `DATABASE_REPLICA_URL` may, and
    /// [`crate::Database::connect`] chooses among them.
    pub fn connect_options_for(&self, url: impl AsRef<str>) -> Result<PgConnectOptions> {
        let list = crate::multihost::parse(url.as_ref())?;
        let [host] = <[_; 1]>::try_from(list.hosts).map_err(|hosts| {
            Error::config(format!(
                "the connection string names {} hosts; only DATABASE_URL and \
                 DATABASE_REPLICA_URL may name several",
                hosts.len()
            ))
        })?;
        Ok(self.session_options(host.options))
    }

    /// `options` with this configuration's session settings (application name, statement
    /// cache, `TimeZone`, `statement_timeout`, `idle_in_transaction_session_timeout`) applied.
    pub fn session_options(&self, options: PgConnectOptions) -> PgConnectOptions {
        let options = options
            .application_name(&self.application_name)
            .statement_cache_capacity(self.statement_cache_capacity);
        // An unset timeout is left to the server (none, unless the role or database sets one).
        let mut session = vec![("TimeZone", "UTC".to_owned())];
        for (name, timeout) in [
            ("statement_timeout", self.statement_timeout),
            (
                "idle_in_transaction_session_timeout",
                self.idle_in_transaction_timeout,
            ),
        ] {
            if let Some(t) = timeout {
                session.push((name, t.as_millis().to_string()));
            }
        }
        options.options(session)
    }
}

fn parse<T: FromStr>(key: &str, value: &str) -> Result<T>
where
    T::Err: fmt::Display,
{
    value
        .trim()
        .parse()
        .map_err(|e| Error::config(format!("{key}={value:?}: {e}")))
}

/// A connection string that may hold a password: `DATABASE_URL`, `DATABASE_REPLICA_URL`,
/// `SHARED_DB_MIGRATION_URL`. Every URL the library keeps is one of these, so none can reach a
/// log by accident: `Debug` and `Display` show [`redact_url`]'s form (passwords and
/// secret-looking parameters as `***`). [`DatabaseUrl::expose`] gives the string itself, for a
/// parser.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Wraps a connection string (URL or libpq key/value form).
    pub fn new(url: impl Into<String>) -> Self {
        DatabaseUrl(url.into())
    }

    /// The connection string as given, password included. Hand it to a parser, never to a log.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The string with every secret replaced by `***` (see [`redact_url`]).
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DatabaseUrl")
            .field(&self.redacted())
            .finish()
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl From<String> for DatabaseUrl {
    fn from(url: String) -> Self {
        DatabaseUrl(url)
    }
}

impl From<&str> for DatabaseUrl {
    fn from(url: &str) -> Self {
        DatabaseUrl(url.to_owned())
    }
}

impl From<&String> for DatabaseUrl {
    fn from(url: &String) -> Self {
        DatabaseUrl(url.clone())
    }
}

impl FromStr for DatabaseUrl {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Ok(DatabaseUrl(s.to_owned()))
    }
}

impl AsRef<str> for DatabaseUrl {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Whether a connection parameter's name says it holds a secret (`password`, `sslpassword`,
/// `passfile` is not one, `api_token`, `client_secret`, …): such values are never shown, and
/// the ones sqlx does not know are replaced by `***` before sqlx (which logs unknown parameters
/// with their values) sees them.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "passwd",
        "pwd",
        "secret",
        "token",
        "credential",
        "passphrase",
        "apikey",
        "api_key",
    ]
    .iter()
    .any(|word| key.contains(word))
}

/// `Debug` of connect options without their secrets: host (or socket), port, database and user.
/// sqlx's own `Debug` of `PgConnectOptions` prints the password.
pub(crate) struct SafeOptions<'a>(pub(crate) &'a PgConnectOptions);

impl fmt::Debug for SafeOptions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = self.0;
        let mut d = f.debug_struct("ConnectOptions");
        match o.get_socket() {
            Some(dir) => d.field("socket", &dir.display().to_string()),
            None => d.field("host", &o.get_host()),
        };
        d.field("port", &o.get_port())
            .field("database", &o.get_database())
            .field("user", &o.get_username())
            .finish_non_exhaustive()
    }
}

/// The connection string with every secret replaced by `***`, for logs and messages: the
/// password in the user info (up to the last `@` before the host, so an unencoded `@`, `/` or
/// `?` in the password is covered) and every parameter whose name says it is a secret
/// ([`is_secret_key`]: `password`, `sslpassword`, …), in the URL's query or in libpq's
/// key/value form.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return redact_key_value(url);
    };
    let before_query = rest.find('?').unwrap_or(rest.len());
    let at = rest[..before_query]
        .rfind('@')
        // a `?` inside the password: the `@` is later, and no `/` precedes it
        .or_else(|| rest.rfind('@').filter(|&i| !rest[..i].contains('/')));
    let (userinfo, after) = match at {
        Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
        None => (None, rest),
    };
    let mut out = format!("{scheme}://");
    if let Some(userinfo) = userinfo {
        match userinfo.split_once(':') {
            Some((user, _password)) => out.push_str(&format!("{user}:***@")),
            None => out.push_str(&format!("{userinfo}@")),
        }
    }
    match after.split_once('?') {
        Some((host_path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if is_secret_key(key) => format!("{key}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            out.push_str(&format!("{host_path}?{}", query.join("&")));
        }
        None => out.push_str(after),
    }
    out
}

/// libpq's key/value form with secret values replaced; when the string does not parse,
/// everything from the first secret-looking key on.
fn redact_key_value(s: &str) -> String {
    match crate::multihost::key_value_pairs(s) {
        Ok(pairs) => pairs
            .into_iter()
            .map(|(key, value)| {
                if is_secret_key(&key) {
                    format!("{key}=***")
                } else if value.is_empty() || value.contains([' ', '\'', '\\']) {
                    format!(
                        "{key}='{}'",
                        value.replace('\\', "\\\\").replace('\'', "\\'")
                    )
                } else {
                    format!("{key}={value}")
                }
            })
            .collect::<Vec<_>>()
            .join(" "),
        Err(_) => {
            let lower = s.to_ascii_lowercase();
            let first_secret = ["pass", "pwd", "secret", "token", "credential", "key"]
                .iter()
                .filter_map(|w| lower.find(w))
                .min();
            match first_secret {
                Some(at) => format!("{}***", &s[..at]),
                None => s.to_owned(),
            }
        }
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
        assert!(!c.behind_transaction_pooler());
    }

    #[test]
    fn a_transaction_pooler_is_declared_with_the_statement_cache_kept() {
        let c = Config::from_lookup(|k| {
            (k == "SHARED_DB_TRANSACTION_POOLER").then(|| "true".to_owned())
        })
        .unwrap();
        assert!(c.transaction_pooler && c.behind_transaction_pooler());
        assert_eq!(c.statement_cache_capacity, 100);
        let bad = Config::from_lookup(|k| {
            (k == "SHARED_DB_TRANSACTION_POOLER").then(|| "yes please".to_owned())
        });
        assert!(matches!(bad, Err(Error::Config(m)) if m.contains("SHARED_DB_TRANSACTION_POOLER")));
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
        assert!(c.behind_transaction_pooler());
        assert!(!c.transaction_pooler);
        assert_eq!(c.listen_url, None);
        assert_eq!(c.idle_timeout, None);
        assert_eq!(c.max_connections, 42);
        assert!(
            !format!("{c:?}").contains(":p@"),
            "password must be redacted"
        );
    }

    #[test]
    fn session_timeouts_are_read_in_milliseconds_and_zero_disables() {
        let c = Config::from_lookup(|k| match k {
            "SHARED_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS" => Some("0".into()),
            "SHARED_DB_MIGRATION_LOCK_TIMEOUT_MS" => Some("250".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.idle_in_transaction_timeout, None);
        assert_eq!(c.migration_lock_timeout, Duration::from_millis(250));
        let d = Config::default();
        assert_eq!(
            d.idle_in_transaction_timeout,
            Some(Duration::from_secs(300))
        );
    }

    #[test]
    fn redact_url_hides_every_password() {
        for (url, shown) in [
            (
                "postgres://u:secret@h:5432/db",
                "postgres://u:***@h:5432/db",
            ),
            ("postgres://u:p@ss@w0rd@h/db", "postgres://u:***@h/db"),
            ("postgres://u:pa?ss@h/db", "postgres://u:***@h/db"),
            (
                "postgres://h/db?user=u&password=secret&sslmode=require",
                "postgres://h/db?user=u&password=***&sslmode=require",
            ),
            (
                "postgres://u:a@b@h/db?application_name=x@y&PASSWORD=z",
                "postgres://u:***@h/db?application_name=x@y&PASSWORD=***",
            ),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("postgres://h/db?options=a@b", "postgres://h/db?options=a@b"),
            // base64 passwords: unencoded '/' and '?'
            ("postgres://u:Xq9/Zk+ef==@h/db", "postgres://u:***@h/db"),
            ("postgres://u:Xq9?Zk+ef==@h/db", "postgres://u:***@h/db"),
            (
                "postgres://h/db?sslpassword=secret&api_token=secret&sslmode=require",
                "postgres://h/db?sslpassword=***&api_token=***&sslmode=require",
            ),
            // libpq's key/value form: only the secret values go
            (
                "host=h user=u password=secret dbname=db",
                "host=h user=u password=*** dbname=db",
            ),
            (
                "host=/var/run/postgresql password='se cret' sslpassword=secret dbname='my db'",
                "host=/var/run/postgresql password=*** sslpassword=*** dbname='my db'",
            ),
            // unparsable key/value text: everything from the first secret-looking word
            ("host=h password='secret", "host=h ***"),
        ] {
            let redacted = redact_url(url);
            assert_eq!(redacted, shown, "{url}");
            for secret in ["secret", "ss@w0rd", "pa?ss", "=z", "Xq9", "Zk+ef"] {
                assert!(!redacted.contains(secret), "{redacted}");
            }
        }
    }

    #[test]
    fn every_url_the_config_keeps_shows_no_password() {
        let c = Config::from_lookup(|k| match k {
            "DATABASE_URL" => Some("postgres://u:hunter2@h1,h2/db".into()),
            "DATABASE_REPLICA_URL" => Some("host=r password=hunter2".into()),
            "SHARED_DB_MIGRATION_URL" => Some("postgres://u@h/db?password=hunter2".into()),
            _ => None,
        })
        .unwrap();
        let url = c.database_url.as_ref().unwrap();
        for shown in [
            format!("{c:?}"),
            format!("{url} {url:?}"),
            format!("{:?}", c.replica_url),
            format!("{:?}", c.migration_url),
        ] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("***"), "{shown}");
        }
        assert_eq!(url.expose(), "postgres://u:hunter2@h1,h2/db");
    }

    #[test]
    fn malformed_value_names_the_variable() {
        let err =
            Config::from_lookup(|k| (k == "SHARED_DB_MAX_CONNECTIONS").then(|| "many".into()))
                .unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err:?}");
        assert!(
            err.to_string().contains("SHARED_DB_MAX_CONNECTIONS"),
            "{err}"
        );
    }
}
