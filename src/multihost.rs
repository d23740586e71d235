//! libpq's multi-host connection strings, which sqlx does not parse.
//!
//! Both of libpq's forms are accepted, with the same meaning as in libpq (and so in psycopg2):
//!
//! - URL: `postgres://user:pass@h1:5432,h2:5433/db?target_session_attrs=read-write`
//!   (`[::1]:5432` for IPv6; a host without a port takes the `port` parameter, else 5432);
//! - key/value: `host=h1,h2 port=5432,5433 user=u password=p dbname=db target_session_attrs=primary`
//!   (values may be single-quoted, `\'` and `\\` escape inside quotes; one port applies to
//!   every host).
//!
//! [`parse`] turns either into one [`PgConnectOptions`] per host, in the order given, plus the
//! [`TargetSessionAttrs`] that says which of them a session may use. Every other parameter
//! (`sslmode`, `application_name`, `options`, …) applies to every host, as sqlx reads it from a
//! single-host URL. Which host serves the pool is decided by [`crate::failover`].
//!
//! Why not a crate: `tokio-postgres`' `Config` parses both forms but knows only `any` and
//! `read-write`, and would bring a second driver into the tree to read a string.

use std::fmt;
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;

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
#[derive(Debug, Clone)]
pub struct Host {
    /// Host name or address as written (without IPv6 brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Options for a connection to this host alone.
    pub options: PgConnectOptions,
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
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

/// Components as they will appear in a URL (percent-encoded where a URL needs it).
#[derive(Default)]
struct Parts {
    userinfo: Option<String>,
    hosts: Vec<(String, Option<u16>)>,
    ports: Vec<u16>,
    database: Option<String>,
    params: Vec<(String, String)>,
    target: TargetSessionAttrs,
}

/// Parses a libpq connection string (URL or key/value form) into its hosts; see the
/// [module docs](self). Errors are [`Error::InvalidInput`] naming the offending part; the
/// password never appears in them.
pub fn parse(conn_str: &str) -> Result<HostList> {
    let s = conn_str.trim();
    let parts = if s.starts_with("postgres://") || s.starts_with("postgresql://") {
        parse_url(s)?
    } else if s.contains('=') {
        parse_key_value(s)?
    } else {
        return Err(Error::invalid_input(
            "database URL must start with postgres:// or be libpq key=value pairs",
        ));
    };
    build(parts)
}

fn parse_url(s: &str) -> Result<Parts> {
    let rest = s.split_once("://").map_or(s, |(_, r)| r);
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (authority, database) = match rest.split_once('/') {
        Some((a, d)) => (a, (!d.is_empty()).then(|| d.to_owned())),
        None => (rest, None),
    };
    let (userinfo, hostspec) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u.to_owned()), h),
        None => (None, authority),
    };
    let mut parts = Parts {
        userinfo,
        database,
        ..Parts::default()
    };
    if !hostspec.is_empty() {
        for spec in hostspec.split(',') {
            parts.hosts.push(split_host_port(spec)?);
        }
    }
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "target_session_attrs" => parts.target = value.parse()?,
            "host" => {
                for h in value.split(',') {
                    parts.hosts.push((h.to_owned(), None));
                }
            }
            "port" => parts.ports = parse_ports(value)?,
            _ => parts.params.push((key.to_owned(), value.to_owned())),
        }
    }
    Ok(parts)
}

fn split_host_port(spec: &str) -> Result<(String, Option<u16>)> {
    let bad = || Error::invalid_input(format!("invalid host in database URL: {spec:?}"));
    if let Some(v6) = spec.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(bad)?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().map_err(|_| bad())?),
            None if after.is_empty() => None,
            None => return Err(bad()),
        };
        return Ok((host.to_owned(), port));
    }
    match spec.rsplit_once(':') {
        Some((host, port)) => Ok((host.to_owned(), Some(port.parse().map_err(|_| bad())?))),
        None => Ok((spec.to_owned(), None)),
    }
}

fn parse_ports(value: &str) -> Result<Vec<u16>> {
    value
        .split(',')
        .map(|p| {
            p.trim()
                .parse()
                .map_err(|_| Error::invalid_input(format!("invalid port {p:?}")))
        })
        .collect()
}

fn parse_key_value(s: &str) -> Result<Parts> {
    let mut parts = Parts::default();
    let (mut user, mut password) = (None, None);
    for (key, value) in key_value_pairs(s)? {
        match key.as_str() {
            "host" | "hostaddr" => {
                parts.hosts = value.split(',').map(|h| (h.to_owned(), None)).collect()
            }
            "port" => parts.ports = parse_ports(&value)?,
            "user" => user = Some(encode(&value)),
            "password" => password = Some(encode(&value)),
            "dbname" => parts.database = Some(encode(&value)),
            "target_session_attrs" => parts.target = value.parse()?,
            _ => parts.params.push((key, encode(&value))),
        }
    }
    parts.userinfo = match (user, password) {
        (Some(u), Some(p)) => Some(format!("{u}:{p}")),
        (Some(u), None) => Some(u),
        (None, Some(p)) => Some(format!(":{p}")),
        (None, None) => None,
    };
    Ok(parts)
}

/// Splits `key = value key2='quoted value'` into pairs, as libpq does.
fn key_value_pairs(s: &str) -> Result<Vec<(String, String)>> {
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
                "connection string: missing \"=\" after {key:?}"
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
                            "connection string: unterminated quoted value of {key:?}"
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

fn build(parts: Parts) -> Result<HostList> {
    let mut hosts = parts.hosts;
    if hosts.is_empty() {
        hosts.push(("localhost".to_owned(), None));
    }
    if !(parts.ports.is_empty() || parts.ports.len() == 1 || parts.ports.len() == hosts.len()) {
        return Err(Error::invalid_input(format!(
            "connection string names {} hosts but {} ports",
            hosts.len(),
            parts.ports.len()
        )));
    }
    let query: Vec<String> = parts
        .params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut list = Vec::with_capacity(hosts.len());
    for (i, (host, port)) in hosts.into_iter().enumerate() {
        if host.is_empty() || host.starts_with('/') {
            return Err(Error::invalid_input(
                "a multi-host connection string needs TCP host names (no empty host, no socket)",
            ));
        }
        let port = port
            .or_else(|| parts.ports.get(i).or(parts.ports.first()).copied())
            .unwrap_or(5432);
        let mut url = String::from("postgres://");
        if let Some(u) = &parts.userinfo {
            url.push_str(u);
            url.push('@');
        }
        if host.contains(':') {
            url.push_str(&format!("[{host}]:{port}"));
        } else {
            url.push_str(&format!("{host}:{port}"));
        }
        if let Some(db) = &parts.database {
            url.push('/');
            url.push_str(db);
        }
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query.join("&"));
        }
        let options = PgConnectOptions::from_str(&url).map_err(|e| {
            Error::invalid_input(format!(
                "invalid database URL for host {host}: {}",
                crate::config::redact_url(&e.to_string())
            ))
        })?;
        list.push(Host {
            host,
            port,
            options,
        });
    }
    Ok(HostList {
        hosts: list,
        target: parts.target,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(list: &HostList) -> Vec<String> {
        list.hosts.iter().map(ToString::to_string).collect()
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
    fn hosts_without_ports_take_the_port_parameter_or_5432() {
        let list = parse("postgresql://u@a,b:6000,c/db?port=7000").unwrap();
        assert_eq!(hosts(&list), ["a:7000", "b:6000", "c:7000"]);
        let list = parse("postgres://u@a,b/db").unwrap();
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
