//! SQLite connect options that carry the connection invariant (see the [crate docs](crate)).

use std::str::FromStr;
use std::time::Duration;

use shared_db::{Error, Result};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};

/// Whether `url` names a SQLite database (`sqlite:` scheme).
pub fn is_sqlite_url(url: &str) -> bool {
    url.trim_start().starts_with("sqlite:")
}

/// Options for the file `url` names (`sqlite://path/to/file.db`, `sqlite:file.db`; created if
/// missing), with the connection invariant: WAL, `busy_timeout`, `foreign_keys=ON`,
/// `synchronous=NORMAL`. `:memory:` databases are refused with [`Error::Config`]: each pooled
/// connection would see a database of its own.
pub fn options(url: &str, busy_timeout: Duration) -> Result<SqliteConnectOptions> {
    if !is_sqlite_url(url) {
        return Err(Error::config("a SQLite database URL starts with sqlite:"));
    }
    let lower = url.to_ascii_lowercase();
    if lower.contains(":memory:") || lower.contains("mode=memory") {
        return Err(Error::config(
            "an in-memory SQLite database is private to one connection, so the pool's \
             connections would not share it; name a file (sqlite://path/to/file.db)",
        ));
    }
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| Error::config(format!("invalid SQLite database URL: {e}")))?;
    Ok(options
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(busy_timeout)
        .foreign_keys(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_databases_and_other_schemes_are_refused() {
        for url in [
            "sqlite::memory:",
            "sqlite://:memory:",
            "sqlite:file.db?mode=memory",
        ] {
            let err = options(url, Duration::from_secs(1)).unwrap_err();
            assert!(matches!(err, Error::Config(_)), "{url}: {err:?}");
        }
        assert!(options("postgres://h/db", Duration::from_secs(1)).is_err());
    }

    #[test]
    fn a_file_url_gets_the_invariant() {
        let o = options("sqlite://data/app.db", Duration::from_millis(1500)).unwrap();
        assert!(o.get_filename().ends_with("data/app.db"));
    }
}
