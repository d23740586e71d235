//! libpq's connection strings, single- and multi-host, which sqlx alone does not parse.
//!
//! Both of libpq's forms are accepted, with the same meaning as in libpq (and so in psycopg2):
//!
//! - URL: `postgres://user:pass@h1:5432,h2:5433/db?target_session_attrs=read-write`
//!   (`[::1]:5432` for IPv6; a host without a port takes the `port` parameter, else `PGPORT`,
//!   else 5432; a unix-socket directory as `%2Fvar%2Frun%2Fpostgresql` or `?host=/tmp`);
//! - key/value: `host=h1,/var/run/postgresql port=5432,5433 user=u password=p dbname=db
//!   target_session_attrs=primary` (values may be single-quoted, `\'` and `\\` escape inside
//!   quotes; one port applies to every host).
//!
//! What libpq does, this does:
//!
//! - A host that starts with `/` is a unix-socket directory; sockets and TCP hosts mix freely.
//! - `hostaddr` gives the numeric address to connect to; `host` stays the name the password file
//!   is searched for. (libpq also checks the server certificate against `host`; sqlx can only
//!   check it against the address it connects to, so `sslmode=verify-full` with both is refused
//!   with an [`Error::Config`] rather than silently checked against the wrong name.)
//! - Where the string is silent, `PGHOST`, `PGHOSTADDR`, `PGPORT` and `PGTARGETSESSIONATTRS`
//!   apply (lists included), and sqlx applies the others (`PGUSER`, `PGDATABASE`,
//!   `PGPASSWORD`, `PGSSLMODE`, `PGAPPNAME`, `PGOPTIONS`, `PGSSLROOTCERT`, …) and then the
//!   password file (`PGPASSFILE`, else `~/.pgpass`). With no host anywhere, sqlx's default
//!   applies: the first socket directory with a server in it, else `localhost`.
//! - A URL naming one host (and no `hostaddr`) is handed to sqlx's own parser as written, as
//!   before multi-host strings existed.
//!
//! Not supported: `service`/`pg_service.conf`, `passfile=` as a parameter (the `PGPASSFILE`
//! variable works), `load_balance_hosts`, and a socket connection searching the password file
//! for `localhost`.
//!
//! Parameters sqlx does not know are ignored by it, and logged with their values; those whose
//! names say they hold a secret (`sslpassword`, …) have the value replaced by `***` before sqlx
//! sees them.
//!
//! [`parse`] turns either form into one [`PgConnectOptions`] per host, in the order given, plus
//! the [`TargetSessionAttrs`] that says which of them a session may use. Every other parameter
//! (`sslmode`, `application_name`, `options`, …) applies to every host. Which host serves the
//! pool is decided by [`crate::failover`].
//!
//! Why not a crate: `tokio-postgres`' `Config` parses both forms but knows only `any` and
//! `read-write`, and would bring a second driver into the tree to read a string.

use std::fmt;
use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgSslMode};

use crate::{Error, Result};

/// Which servers a session may use (libpq's `target_session_attrs`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TargetSessionAttrs {
    /// Any server that accepts the connection (libpq's default).
    #[default]
    Any,
    /// A server whose sessions are writable by default (`transaction_read_only = off`).
    ReadWrite,
    /// A server whose sessions are read-only by default.
    ReadOnly,
    /// A server not in recovery (`pg_is_in_recovery()` false).
    Primary,
    /// A server in recovery (a standby).
    Standby,
    /// A standby if one is reachable, else any server.
    PreferStandby,
}

impl TargetSessionAttrs {
    /// Whether a server with this role may serve a session. `prefer-standby` accepts any server;
    /// its preference is applied when choosing among hosts.
    pub fn accepts(self, role: ServerRole) -> bool {
        match self {
            TargetSessionAttrs::Any | TargetSessionAttrs::PreferStandby => true,
            TargetSessionAttrs::ReadWrite => !role.read_only,
            TargetSessionAttrs::ReadOnly => role.read_only,
            TargetSessionAttrs::Primary => !role.in_recovery,
            TargetSessionAttrs::Standby => role.in_recovery,
        }
    }

    /// The libpq spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetSessionAttrs::Any => "any",
            TargetSessionAttrs::ReadWrite => "read-write",
            TargetSessionAttrs::ReadOnly => "read-only",
            TargetSessionAttrs::Primary => "primary",
            TargetSessionAttrs::Standby => "standby",
            TargetSessionAttrs::PreferStandby => "prefer-standby",
        }
    }
}

impl FromStr for TargetSessionAttrs {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "any" => TargetSessionAttrs::Any,
            "read-write" => TargetSessionAttrs::ReadWrite,
            "read-only" => TargetSessionAttrs::ReadOnly,
            "primary" => TargetSessionAttrs::Primary,
            "standby" => TargetSessionAttrs::Standby,
            "prefer-standby" => TargetSessionAttrs::PreferStandby,
            other => {
                return Err(Error::invalid_input(format!(
                    "target_session_attrs={other:?}: expected any, read-write, read-only, \
                     primary, standby or prefer-standby"
                )));
            }
        })
    }
}

impl fmt::Display for TargetSessionAttrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a server said about itself when asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerRole {
    /// `pg_is_in_recovery()`: a standby (or a server still replaying WAL after a crash).
    pub in_recovery: bool,
    /// `transaction_read_only` of a new session: true on standbys and where
    /// `default_transaction_read_only` is on.
    pub read_only: bool,
}

/// One host of a connection string, with everything else of the string applied.
///
/// `Debug` shows where it connects, the database and the user, never the password (sqlx's
/// `Debug` of the options inside would).
#[derive(Clone)]
pub struct Host {
    /// Where connections go: a host name or IP address (without IPv6 brackets; the `hostaddr`
    /// when one was given), or a unix-socket directory (it starts with `/`).
    pub host: String,
    /// TCP port, or for a socket the number in its file name (`.s.PGSQL.<port>`).
    pub port: u16,
    /// Options for a connection to this host alone.
    pub options: PgConnectOptions,
}

impl Host {
    /// The host as sqlx will reach it. sqlx keeps an IPv6 literal's URL brackets (`[::1]`),
    /// which its TCP connect cannot resolve: they go.
    fn from_options(mut options: PgConnectOptions) -> Host {
        if let Some(v6) = options
            .get_host()
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
        {
            let v6 = v6.to_owned();
            options = options.host(&v6);
        }
        let host = match options.get_socket() {
            Some(dir) => dir.display().to_string(),
            None => options.get_host().to_owned(),
        };
        Host {
            host,
            port: options.get_port(),
            options,
        }
    }

    /// True for a unix-domain socket.
    pub fn is_socket(&self) -> bool {
        self.host.starts_with('/')
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_socket() {
            write!(
                f,
                "{}/.s.PGSQL.{}",
                self.host.trim_end_matches('/'),
                self.port
            )
        } else if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Host")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.options.get_database())
            .field("user", &self.options.get_username())
            .finish_non_exhaustive()
    }
}

/// A parsed connection string: the hosts in order and the session target.
#[derive(Debug, Clone)]
pub struct HostList {
    /// Hosts in the order written; libpq tries them in this order.
    pub hosts: Vec<Host>,
    /// Which of them a session may use.
    pub target: TargetSessionAttrs,
}

impl HostList {
    /// One host and `any`: nothing to choose, the plain single-server setup.
    pub fn is_single(&self) -> bool {
        self.hosts.len() == 1 && self.target == TargetSessionAttrs::Any
    }
}

/// Parameters sqlx 0.9 reads from a URL (`PgConnectOptions::parse_from_url`); it logs any
/// other with its value.
const SQLX_KEYS: [&str; 18] = [
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

/// libpq's connection keywords: a parse error may name one of these, never other text of the
/// string (which may be a piece of a password).
const LIBPQ_KEYS: [&str; 46] = [
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "passfile",
    "require_auth",
    "channel_binding",
    "connect_timeout",
    "client_encoding",
    "options",
    "application_name",
    "fallback_application_name",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "replication",
    "gssencmode",
    "sslmode",
    "requiressl",
    "sslnegotiation",
    "sslcompression",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslcertmode",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "requirepeer",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "krbsrvname",
    "gsslib",
    "gssdelegation",
    "service",
    "target_session_attrs",
    "load_balance_hosts",
    "min_protocol_version",
    "max_protocol_version",
    "scram_client_key",
    "scram_server_key",
];

/// A parameter as sqlx will see it: one sqlx does not know whose name says it is a secret
/// (`sslpassword`, …) has its value replaced, since sqlx logs unknown parameters with their
/// values. sqlx ignores them either way.
fn sanitize_param(key: &str, value: &str) -> (String, String) {
    let known = SQLX_KEYS.contains(&key) || key.starts_with("options[");
    if !known && crate::config::is_secret_key(key) {
        (key.to_owned(), "***".to_owned())
    } else {
        (key.to_owned(), value.to_owned())
    }
}

/// Components as they will appear in a URL (user, password, database and parameter values
/// percent-encoded); host, port and hostaddr lists decoded. `None`: not given (the `PG*`
/// environment default applies).
#[derive(Default)]
struct Parts {
    /// How many hosts the URL's authority named (the `host` parameter not counted).
    authority_hosts: usize,
    /// A `host` or `hostaddr` parameter was given.
    host_params: bool,
    user: Option<String>,
    password: Option<String>,
    hosts: Option<Vec<String>>,
    ports: Option<Vec<String>>,
    hostaddrs: Option<Vec<String>>,
    database: Option<String>,
    params: Vec<(String, String)>,
    target: Option<TargetSessionAttrs>,
}

/// Parses a libpq connection string (URL or key/value form) into its hosts; see the
/// [module docs](self). Where the string is silent, the `PG*` environment variables apply as in
/// libpq (`PGHOST`, `PGHOSTADDR`, `PGPORT` and `PGTARGETSESSIONATTRS` here, the others by
/// sqlx), then the password file. Errors are [`Error::InvalidInput`] naming the offending
/// part; nothing of the user name or password appears in them.
pub fn parse(conn_str: &str) -> Result<HostList> {
    parse_with_env(conn_str, |key| std::env::var(key).ok())
}

/// [`parse`] with the `PGHOST`, `PGHOSTADDR`, `PGPORT` and `PGTARGETSESSIONATTRS` defaults read
/// through `env` instead of the process environment (sqlx still reads `PGUSER`, `PGDATABASE`,
/// `PGPASSWORD`, `PGSSLMODE`, … and the password file itself).
pub fn parse_with_env(conn_str: &str, env: impl Fn(&str) -> Option<String>) -> Result<HostList> {
    let s = conn_str.trim();
    let is_url = s.starts_with("postgres://") || s.starts_with("postgresql://");
    let parts = if is_url {
        parse_url(s)?
    } else if s.is_empty() || s.contains('=') {
        parse_key_value(s)?
    } else {
        return Err(Error::invalid_input(
            "database URL must start with postgres:// or be libpq key=value pairs",
        ));
    };
    let env = |key: &str| env(key).filter(|v| !v.trim().is_empty());
    let target = match parts.target {
        Some(t) => t,
        None => env("PGTARGETSESSIONATTRS")
            .map(|v| v.parse())
            .transpose()?
            .unwrap_or_default(),
    };
    if is_url && let Some(options) = single_host_url(s, &parts, &env)? {
        return Ok(HostList {
            hosts: vec![Host::from_options(options)],
            target,
        });
    }
    build(parts, target, &env)
}

/// A URL naming one host (and no `hostaddr`) goes to sqlx's own parser as written, as before
/// multi-host strings existed; only `target_session_attrs` (ours) is taken out and unknown
/// secret parameters are masked. `None`: not such a URL.
fn single_host_url(
    s: &str,
    parts: &Parts,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Option<PgConnectOptions>> {
    let one_host = parts.authority_hosts == 1 && !parts.host_params;
    let one_port = parts.ports.as_ref().is_none_or(|p| p.len() == 1);
    if !one_host || !one_port || env("PGHOSTADDR").is_some() {
        return Ok(None);
    }
    let url = match s.split_once('?') {
        None => s.to_owned(),
        Some((base, query)) => {
            let query: Vec<String> = query
                .split('&')
                .filter(|p| !p.is_empty())
                .filter_map(|pair| {
                    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                    (key != "target_session_attrs").then(|| {
                        let (key, value) = sanitize_param(key, value);
                        format!("{key}={value}")
                    })
                })
                .collect();
            if query.is_empty() {
                base.to_owned()
            } else {
                format!("{base}?{}", query.join("&"))
            }
        }
    };
    let options = PgConnectOptions::from_str(&url)
        .map_err(|e| Error::invalid_input(format!("invalid database URL: {}", sqlx_message(&e))))?;
    // sqlx read `PGPORT` from the process environment already; this applies the one `env` gives
    // (the same variable, unless a caller of `parse_with_env` says otherwise).
    Ok(Some(match (&parts.ports, env("PGPORT")) {
        (None, Some(port)) => options.port(parse_port(&port)?),
        _ => options,
    }))
}

/// sqlx's message, with anything URL-like in it redacted.
fn sqlx_message(e: &sqlx::Error) -> String {
    let message = e.to_string();
    if message.contains("://") {
        crate::config::redact_url(&message)
    } else {
        message
    }
}

fn parse_url(s: &str) -> Result<Parts> {
    let rest = s.split_once("://").map_or(s, |(_, r)| r);
    // libpq: the user info ends at the first `@` before any `/` or `?`.
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    // An `@` after that, with no `key=` or `&` before it (base64 padding `==` aside), ends a
    // user info that has an unencoded `/` or `?` in it.
    if !authority.contains('@')
        && let Some(at) = tail.find('@')
        && !tail[..at].trim_end_matches('=').contains(['=', '&'])
    {
        return Err(Error::invalid_input(
            "database URL: the user name or password contains an unencoded '/' or '?'; \
             percent-encode it (%2F, %3F)",
        ));
    }
    let (path, query) = match tail.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (tail, None),
    };
    let database = path.strip_prefix('/').filter(|d| !d.is_empty());
    let (userinfo, hostspec) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let mut parts = Parts {
        database: database.map(str::to_owned),
        ..Parts::default()
    };
    if let Some(userinfo) = userinfo {
        let (user, password) = match userinfo.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (userinfo, None),
        };
        parts.user = (!user.is_empty()).then(|| user.to_owned());
        parts.password = password.map(str::to_owned);
    }
    if !hostspec.is_empty() {
        let specs: Vec<&str> = hostspec.split(',').collect();
        let mut hosts = Vec::with_capacity(specs.len());
        let mut ports = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            let (host, port) = split_host_port(spec).map_err(|()| {
                Error::invalid_input(format!(
                    "database URL: host {} of {} is not a valid host[:port]",
                    i + 1,
                    specs.len()
                ))
            })?;
            hosts.push(percent_decode(&host)?);
            ports.push(port.unwrap_or_default());
        }
        parts.authority_hosts = hosts.len();
        parts.hosts = Some(hosts);
        if ports.iter().any(|p| !p.is_empty()) {
            parts.ports = Some(ports);
        }
    }
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "target_session_attrs" => parts.target = Some(percent_decode(value)?.parse()?),
            "host" => {
                parts.host_params = true;
                parts.hosts = Some(split_list(&percent_decode(value)?));
            }
            "hostaddr" => {
                parts.host_params = true;
                parts.hostaddrs = Some(split_list(&percent_decode(value)?));
            }
            "port" => parts.ports = Some(split_list(&percent_decode(value)?)),
            _ => parts.params.push((key.to_owned(), value.to_owned())),
        }
    }
    Ok(parts)
}

fn split_list(value: &str) -> Vec<String> {
    value.split(',').map(|v| v.trim().to_owned()).collect()
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`; the port as written (checked later).
fn split_host_port(spec: &str) -> std::result::Result<(String, Option<String>), ()> {
    if let Some(v6) = spec.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or(())?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.to_owned()),
            None if after.is_empty() => None,
            None => return Err(()),
        };
        return Ok((host.to_owned(), port));
    }
    match spec.rsplit_once(':') {
        Some((host, port)) => Ok((host.to_owned(), Some(port.to_owned()))),
        None => Ok((spec.to_owned(), None)),
    }
}

fn percent_decode(s: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    Error::invalid_input("database URL: a '%' is not followed by two hex digits")
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| Error::invalid_input("database URL: percent-encoding is not UTF-8"))
}

fn parse_port(p: &str) -> Result<u16> {
    p.trim()
        .parse()
        .map_err(|_| Error::invalid_input(format!("invalid port {p:?}")))
}

fn parse_key_value(s: &str) -> Result<Parts> {
    let mut parts = Parts::default();
    for (key, value) in key_value_pairs(s)? {
        match key.as_str() {
            "host" => parts.hosts = Some(split_list(&value)),
            "hostaddr" => parts.hostaddrs = Some(split_list(&value)),
            "port" => parts.ports = Some(split_list(&value)),
            "user" => parts.user = Some(encode(&value)),
            "password" => parts.password = Some(encode(&value)),
            "dbname" => parts.database = Some(encode(&value)),
            "target_session_attrs" => parts.target = Some(value.parse()?),
            _ => parts.params.push((key, encode(&value))),
        }
    }
    Ok(parts)
}

/// Splits `key = value key2='quoted value'` into pairs, as libpq does. Errors name the key only
/// when it is one of libpq's keywords: any other word may be a piece of a password written
/// without quotes.
pub(crate) fn key_value_pairs(s: &str) -> Result<Vec<(String, String)>> {
    let named = |key: &str| {
        if LIBPQ_KEYS.contains(&key) {
            format!("{key:?}")
        } else {
            "a word that is not a libpq keyword (quote values that contain spaces)".to_owned()
        }
    };
    let mut pairs = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let key: String =
            std::iter::from_fn(|| chars.next_if(|c| *c != '=' && !c.is_whitespace())).collect();
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(Error::invalid_input(format!(
                "connection string: missing \"=\" after {}",
                named(&key)
            )));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\\') => value.extend(chars.next()),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => {
                        return Err(Error::invalid_input(format!(
                            "connection string: unterminated quoted value of {}",
                            named(&key)
                        )));
                    }
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// sqlx's default host when neither the string nor `PGHOST` names one: the first of its socket
/// directories that has a server's socket, else `localhost` (libpq's default is its socket
/// directory).
fn default_host() -> String {
    let options = PgConnectOptions::new_without_pgpass();
    match options.get_socket() {
        Some(dir) => dir.display().to_string(),
        None => options.get_host().to_owned(),
    }
}

fn build(
    parts: Parts,
    target: TargetSessionAttrs,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<HostList> {
    let env_list = |key: &str| env(key).map(|v| split_list(&v));
    let hostaddrs = parts.hostaddrs.or_else(|| env_list("PGHOSTADDR"));
    let hosts = match (parts.hosts.or_else(|| env_list("PGHOST")), &hostaddrs) {
        (Some(hosts), _) => hosts,
        // libpq: `hostaddr` alone names the servers; there is no host name
        (None, Some(addrs)) => vec![String::new(); addrs.len()],
        (None, None) => vec![String::new()],
    };
    if let Some(addrs) = &hostaddrs
        && addrs.len() != hosts.len()
    {
        return Err(Error::invalid_input(format!(
            "connection string: could not match {} host names to {} hostaddr values",
            hosts.len(),
            addrs.len()
        )));
    }
    let ports = parts
        .ports
        .or_else(|| env_list("PGPORT"))
        .unwrap_or_default();
    if ports.len() > 1 && ports.len() != hosts.len() {
        return Err(Error::invalid_input(format!(
            "connection string names {} hosts but {} ports",
            hosts.len(),
            ports.len()
        )));
    }
    let query: Vec<String> = parts
        .params
        .iter()
        .map(|(k, v)| {
            let (k, v) = sanitize_param(k, v);
            format!("{k}={v}")
        })
        .collect();
    let mut list = Vec::with_capacity(hosts.len());
    for (i, name) in hosts.iter().enumerate() {
        // libpq: an empty port in a list is the default port
        let port = match ports
            .get(i)
            .or(ports.first())
            .filter(|p| !p.trim().is_empty())
        {
            Some(p) => parse_port(p)?,
            None => 5432,
        };
        let addr = match hostaddrs.as_ref().map(|a| a[i].as_str()) {
            None | Some("") => None,
            Some(a) => Some(a.parse::<std::net::IpAddr>().map_err(|_| {
                Error::invalid_input(format!("hostaddr {a:?} is not a numeric IP address"))
            })?),
        };
        // The name sqlx parses: the host name (so the password file is searched for it, as in
        // libpq), the address when there is no name, else the default host.
        let name = match (name.is_empty(), addr) {
            (false, _) => name.clone(),
            (true, Some(a)) => a.to_string(),
            (true, None) => default_host(),
        };
        let url_host = match addr {
            // a socket directory with a hostaddr: libpq connects over TCP to the address
            Some(a) if name.starts_with('/') => a.to_string(),
            _ => name.clone(),
        };
        let mut url = String::from("postgres://");
        match (&parts.user, &parts.password) {
            (Some(u), Some(p)) => url.push_str(&format!("{u}:{p}@")),
            (Some(u), None) => url.push_str(&format!("{u}@")),
            (None, Some(p)) => url.push_str(&format!(":{p}@")),
            (None, None) => {}
        }
        if url_host.starts_with('/') {
            url.push_str(&encode(&url_host));
        } else if url_host.contains(':') {
            url.push_str(&format!("[{url_host}]"));
        } else {
            url.push_str(&url_host);
        }
        url.push_str(&format!(":{port}"));
        if let Some(db) = &parts.database {
            url.push('/');
            url.push_str(db);
        }
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query.join("&"));
        }
        let mut options = PgConnectOptions::from_str(&url).map_err(|e| {
            Error::invalid_input(format!(
                "invalid connection string for host {} of {}: {}",
                i + 1,
                hosts.len(),
                sqlx_message(&e)
            ))
        })?;
        if let Some(addr) = addr {
            let addr = addr.to_string();
            if !url_host.starts_with('/')
                && url_host != addr
                && matches!(options.get_ssl_mode(), PgSslMode::VerifyFull)
            {
                return Err(Error::config(format!(
                    "host={url_host} with hostaddr={addr} and sslmode=verify-full: libpq would \
                     check the certificate against {url_host}, but sqlx checks it against the \
                     address it connects to; use sslmode=verify-ca or drop hostaddr"
                )));
            }
            options = options.host(&addr);
        }
        list.push(Host::from_options(options));
    }
    Ok(HostList {
        hosts: list,
        target,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(list: &HostList) -> Vec<String> {
        list.hosts.iter().map(ToString::to_string).collect()
    }

    /// What a connection string must give, per libpq's documentation ("Connection Strings",
    /// "Parameter Key Words", "Environment Variables" in the libpq chapter of the PostgreSQL
    /// manual; the URIs are the manual's own examples where it has one).
    enum Expect {
        /// The hosts in order (`host:port`, or a socket as `dir/.s.PGSQL.port`), the database
        /// (`None`: not asserted) and the target.
        Hosts(
            &'static [&'static str],
            Option<&'static str>,
            TargetSessionAttrs,
        ),
        /// Refused; the message contains this.
        Refused(&'static str),
    }

    /// A connection string, the `PG*` variables set, and what libpq does with them.
    type Case = (
        &'static str,
        &'static [(&'static str, &'static str)],
        Expect,
    );

    #[test]
    fn connection_strings_behave_as_in_libpq() {
        use Expect::{Hosts, Refused};
        use TargetSessionAttrs::*;
        #[rustfmt::skip]
        let table: &[Case] = &[
            // -- the manual's URI examples
            ("postgresql://localhost", &[], Hosts(&["localhost:5432"], None, Any)),
            ("postgresql://localhost:5433", &[], Hosts(&["localhost:5433"], None, Any)),
            ("postgresql://localhost/mydb", &[], Hosts(&["localhost:5432"], Some("mydb"), Any)),
            ("postgresql://user@localhost", &[], Hosts(&["localhost:5432"], None, Any)),
            ("postgresql://user:secret@localhost", &[], Hosts(&["localhost:5432"], None, Any)),
            ("postgresql://other@localhost/otherdb?connect_timeout=10&application_name=myapp", &[],
                Hosts(&["localhost:5432"], Some("otherdb"), Any)),
            ("postgresql://host1:123,host2:456/somedb?target_session_attrs=any&application_name=myapp", &[],
                Hosts(&["host1:123", "host2:456"], Some("somedb"), Any)),
            ("postgresql:///mydb?host=localhost&port=5433", &[], Hosts(&["localhost:5433"], Some("mydb"), Any)),
            ("postgresql://[2001:db8::1234]/database", &[], Hosts(&["[2001:db8::1234]:5432"], Some("database"), Any)),
            // a host that starts with a slash is a unix-socket directory, in either spelling
            ("postgresql:///dbname?host=/var/lib/postgresql", &[],
                Hosts(&["/var/lib/postgresql/.s.PGSQL.5432"], Some("dbname"), Any)),
            ("postgresql://%2Fvar%2Flib%2Fpostgresql/dbname", &[],
                Hosts(&["/var/lib/postgresql/.s.PGSQL.5432"], Some("dbname"), Any)),
            ("postgres:///app?host=/tmp", &[], Hosts(&["/tmp/.s.PGSQL.5432"], Some("app"), Any)),
            ("host=/var/run/postgresql dbname=app", &[],
                Hosts(&["/var/run/postgresql/.s.PGSQL.5432"], Some("app"), Any)),
            // the Cloud SQL Auth Proxy's socket directory has colons in it
            ("host=/cloudsql/project:region:instance dbname=app user=svc", &[],
                Hosts(&["/cloudsql/project:region:instance/.s.PGSQL.5432"], Some("app"), Any)),
            ("postgres://svc:pw@/app?host=/cloudsql/project:region:instance", &[],
                Hosts(&["/cloudsql/project:region:instance/.s.PGSQL.5432"], Some("app"), Any)),
            // sockets and TCP hosts mix; ports pair with hosts in order
            ("host=/var/run/postgresql,db2.example port=5432,6432 dbname=app", &[],
                Hosts(&["/var/run/postgresql/.s.PGSQL.5432", "db2.example:6432"], Some("app"), Any)),
            ("host=localhost port=5432 dbname=mydb connect_timeout=10", &[],
                Hosts(&["localhost:5432"], Some("mydb"), Any)),
            // one port for every host; an empty entry is the default port
            ("host=a,b port=6432 dbname=db", &[], Hosts(&["a:6432", "b:6432"], Some("db"), Any)),
            ("postgres://a:5000,b/db", &[], Hosts(&["a:5000", "b:5432"], Some("db"), Any)),
            // a query parameter overrides the authority
            ("postgresql://u@a,b:6000,c/db?port=7000", &[], Hosts(&["a:7000", "b:7000", "c:7000"], Some("db"), Any)),
            // -- environment defaults apply where the string is silent, lists included
            ("postgres:///app", &[("PGHOST", "/tmp")], Hosts(&["/tmp/.s.PGSQL.5432"], Some("app"), Any)),
            ("postgres:///app", &[("PGHOST", "db.example"), ("PGPORT", "6543")],
                Hosts(&["db.example:6543"], Some("app"), Any)),
            ("postgres://h/app", &[("PGPORT", "6543")], Hosts(&["h:6543"], Some("app"), Any)),
            ("postgres://a,b/db", &[("PGPORT", "7000")], Hosts(&["a:7000", "b:7000"], Some("db"), Any)),
            ("dbname=app", &[("PGHOST", "h1,h2"), ("PGPORT", "1,2")], Hosts(&["h1:1", "h2:2"], Some("app"), Any)),
            ("postgres://a,b/db", &[("PGTARGETSESSIONATTRS", "standby")], Hosts(&["a:5432", "b:5432"], Some("db"), Standby)),
            ("postgres://h:1/db", &[("PGHOST", "ignored"), ("PGPORT", "2")], Hosts(&["h:1"], Some("db"), Any)),
            // -- hostaddr: the address connected to; host stays the name (password file)
            ("host=db.example hostaddr=10.0.0.5 dbname=app", &[], Hosts(&["10.0.0.5:5432"], Some("app"), Any)),
            ("hostaddr=10.0.0.5 dbname=app", &[], Hosts(&["10.0.0.5:5432"], Some("app"), Any)),
            ("postgres://db.example/app?hostaddr=10.0.0.5", &[], Hosts(&["10.0.0.5:5432"], Some("app"), Any)),
            ("host=a,b hostaddr=10.0.0.1,10.0.0.2 port=1,2", &[], Hosts(&["10.0.0.1:1", "10.0.0.2:2"], None, Any)),
            ("host=a,b hostaddr=,10.0.0.2", &[], Hosts(&["a:5432", "10.0.0.2:5432"], None, Any)),
            ("dbname=app", &[("PGHOST", "db.example"), ("PGHOSTADDR", "10.0.0.9")], Hosts(&["10.0.0.9:5432"], Some("app"), Any)),
            ("host=a,b hostaddr=10.0.0.1", &[], Refused("could not match 2 host names to 1 hostaddr values")),
            ("hostaddr=db.example", &[], Refused("not a numeric IP address")),
            ("host=db.example hostaddr=10.0.0.5 sslmode=verify-full", &[], Refused("verify-full")),
            // -- targets
            ("host=h target_session_attrs=primary", &[], Hosts(&["h:5432"], None, Primary)),
            ("postgres://h1,h2/db?target_session_attrs=prefer-standby", &[], Hosts(&["h1:5432", "h2:5432"], Some("db"), PreferStandby)),
            ("postgres://h/db?target_session_attrs=master", &[], Refused("target_session_attrs")),
            // -- malformed
            ("postgres://a,b,c/db?port=1,2", &[], Refused("3 hosts but 2 ports")),
            ("postgres://a:notaport,b/db", &[], Refused("invalid port")),
            ("host=a port", &[], Refused("missing \"=\"")),
            ("mysql-ish nonsense", &[], Refused("postgres://")),
            ("host='unterminated", &[], Refused("unterminated")),
        ];
        for (input, env, expect) in table {
            let lookup = |key: &str| {
                env.iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| (*v).to_owned())
            };
            match (parse_with_env(input, lookup), expect) {
                (Ok(list), Hosts(want, db, target)) => {
                    assert_eq!(hosts(&list), *want, "{input} {env:?}");
                    assert_eq!(list.target, *target, "{input}");
                    if let Some(db) = db {
                        for h in &list.hosts {
                            assert_eq!(h.options.get_database(), Some(*db), "{input}");
                        }
                    }
                }
                (Err(e), Refused(says)) => {
                    assert!(e.to_string().contains(says), "{input}: {e}");
                }
                (got, _) => panic!("{input} {env:?}: unexpected {got:?}"),
            }
        }
    }

    #[test]
    fn hostaddr_keeps_the_host_name_for_the_password_file() {
        let list = parse_with_env(
            "host=db.example hostaddr=10.0.0.5 user=u dbname=app",
            |_| None,
        )
        .unwrap();
        let h = &list.hosts[0];
        assert_eq!(h.options.get_host(), "10.0.0.5");
        assert!(!h.is_socket());
        // a socket directory with a hostaddr: TCP to the address, as libpq does
        let list = parse_with_env("host=/tmp hostaddr=127.0.0.1", |_| None).unwrap();
        assert_eq!(hosts(&list), ["127.0.0.1:5432"]);
        assert!(list.hosts[0].options.get_socket().is_none());
    }

    /// Captures what sqlx logs while `f` runs.
    fn logged(f: impl FnOnce()) -> String {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn no_secret_reaches_debug_errors_or_sqlx_logs() {
        let secret = "hunter2";
        // Debug of a host and of a list: host, port, database, user; no password
        let list = parse("postgres://app:hunter2@h1,h2/db?sslpassword=hunter2").unwrap();
        let shown = format!("{list:?} {:?}", list.hosts[0]);
        assert!(!shown.contains(secret), "{shown}");
        assert!(
            shown.contains("h1") && shown.contains("\"db\"") && shown.contains("app"),
            "{shown}"
        );
        // sqlx's Debug of the options inside would have shown it: the test sees the danger
        assert!(format!("{:?}", list.hosts[0].options).contains(secret));

        // unencoded '/', '?' (base64 passwords) and '@' in a password: refused or parsed, and
        // no piece of the password in the message
        for (url, pieces) in [
            ("postgres://u:Xq9/Zk+ef==@h/db", ["Xq9", "Zk+ef"]),
            ("postgres://u:Xq9?Zk+ef==@h/db", ["Xq9", "Zk+ef"]),
            ("postgres://u:Xq9/Zk+ef==@h1,h2/db", ["Xq9", "Zk+ef"]),
            ("postgres://u:Xq9@Zk+ef@h1,h2:99999/db", ["Xq9", "Zk+ef"]),
            ("host=h password=Xq9 Zk+ef dbname=db", ["Xq9", "Zk+ef"]),
            ("host=h password='Xq9 Zk+ef dbname=db", ["Xq9", "Zk+ef"]),
        ] {
            let err = parse(url).unwrap_err();
            for piece in pieces {
                assert!(!err.to_string().contains(piece), "{url}: {err}");
            }
        }

        // a secret-looking parameter sqlx does not know is masked before sqlx logs it
        let log = logged(|| {
            parse("postgres://h/db?sslpassword=hunter2&api_token=hunter2&connect_timeout=5")
                .unwrap();
            parse("host=h1,h2 sslpassword=hunter2 dbname=db").unwrap();
        });
        assert!(log.contains("sslpassword"), "sqlx logged nothing? {log}");
        assert!(log.contains("connect_timeout"), "{log}");
        assert!(!log.contains(secret), "{log}");
    }

    #[test]
    fn url_with_two_hosts_and_a_target() {
        let list =
            parse("postgres://app:s%40cret@h1:5432,h2:5433/shared?target_session_attrs=read-write")
                .unwrap();
        assert_eq!(hosts(&list), ["h1:5432", "h2:5433"]);
        assert_eq!(list.target, TargetSessionAttrs::ReadWrite);
        for h in &list.hosts {
            assert_eq!(h.options.get_username(), "app");
            assert_eq!(h.options.get_database(), Some("shared"));
        }
        assert_eq!(list.hosts[1].options.get_host(), "h2");
        assert_eq!(list.hosts[1].options.get_port(), 5433);
    }

    #[test]
    fn every_target_spelling_parses_and_a_wrong_one_is_refused() {
        for t in [
            "any",
            "read-write",
            "read-only",
            "primary",
            "standby",
            "prefer-standby",
        ] {
            let list = parse(&format!("postgres://h1,h2/db?target_session_attrs={t}")).unwrap();
            assert_eq!(list.target.as_str(), t);
        }
        let err = parse("postgres://h1,h2/db?target_session_attrs=master").unwrap_err();
        assert!(err.to_string().contains("target_session_attrs"), "{err}");
    }

    #[test]
    fn hosts_without_ports_take_5432() {
        let list = parse_with_env("postgres://u@a,b/db", |_| None).unwrap();
        assert_eq!(hosts(&list), ["a:5432", "b:5432"]);
        assert_eq!(list.target, TargetSessionAttrs::Any);
    }

    #[test]
    fn ipv6_hosts_keep_their_brackets_apart_from_the_port() {
        let list = parse("postgres://[::1]:5433,[fe80::2]/db").unwrap();
        assert_eq!(hosts(&list), ["[::1]:5433", "[fe80::2]:5432"]);
        assert_eq!(list.hosts[0].host, "::1");
    }

    #[test]
    fn other_parameters_apply_to_every_host() {
        let list =
            parse("postgres://u@h1,h2/db?sslmode=disable&application_name=w1&target_session_attrs=primary")
                .unwrap();
        for h in &list.hosts {
            assert_eq!(h.options.get_application_name(), Some("w1"));
            assert!(matches!(
                h.options.get_ssl_mode(),
                sqlx::postgres::PgSslMode::Disable
            ));
        }
    }

    #[test]
    fn key_value_form_with_quotes_and_one_port_per_host() {
        let list = parse(
            "host=10.0.0.1,10.0.0.2 port=5432,5433 user=app password='p@ss \\'x\\' y' \
             dbname='my db' target_session_attrs=prefer-standby",
        )
        .unwrap();
        assert_eq!(hosts(&list), ["10.0.0.1:5432", "10.0.0.2:5433"]);
        assert_eq!(list.target, TargetSessionAttrs::PreferStandby);
        assert_eq!(list.hosts[1].options.get_database(), Some("my db"));
        assert_eq!(list.hosts[1].options.get_username(), "app");
    }

    #[test]
    fn key_value_form_with_one_port_for_all_hosts() {
        let list = parse("host=a,b port=6432 dbname=db").unwrap();
        assert_eq!(hosts(&list), ["a:6432", "b:6432"]);
    }

    #[test]
    fn mismatched_port_count_and_garbage_are_refused() {
        assert!(parse("postgres://a,b,c/db?port=1,2").is_err());
        assert!(parse("postgres://a:notaport/db").is_err());
        assert!(parse("host=a port").is_err());
        assert!(parse("mysql-ish nonsense").is_err());
        assert!(parse("host='unterminated").is_err());
    }

    #[test]
    fn a_single_host_url_is_single() {
        assert!(parse("postgres://u:p@h/db").unwrap().is_single());
        assert!(
            !parse("postgres://u:p@h/db?target_session_attrs=primary")
                .unwrap()
                .is_single()
        );
    }

    #[test]
    fn errors_never_show_the_password() {
        let err = parse("postgres://u:hunter2@a,b:99999/db").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn role_matching_follows_libpq() {
        let primary = ServerRole {
            in_recovery: false,
            read_only: false,
        };
        let standby = ServerRole {
            in_recovery: true,
            read_only: true,
        };
        let read_only_primary = ServerRole {
            in_recovery: false,
            read_only: true,
        };
        use TargetSessionAttrs::*;
        assert!(ReadWrite.accepts(primary) && !ReadWrite.accepts(standby));
        assert!(!ReadWrite.accepts(read_only_primary) && Primary.accepts(read_only_primary));
        assert!(Standby.accepts(standby) && !Standby.accepts(primary));
        assert!(ReadOnly.accepts(read_only_primary) && !ReadOnly.accepts(primary));
        assert!(Any.accepts(standby) && PreferStandby.accepts(primary));
    }
}
