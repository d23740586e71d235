//! SQLite's result codes as [`shared_db::Error`]s.
//!
//! | SQLite | [`shared_db::Error`] | retryable |
//! |---|---|---|
//! | `SQLITE_BUSY` (5, and its extended codes such as `BUSY_SNAPSHOT` 517), `SQLITE_LOCKED` (6) | [`Error::LockTimeout`] | yes: the statement changed nothing, and its transaction must start again |
//! | constraint violations (unique 2067 / primary key 1555, foreign key 787, check 275, not null 1299) | `Conflict`, `ForeignKey`, `Check`, `NotNull`, naming what SQLite names (`table.column`, or the constraint) | no |
//! | everything else | as [`shared_db::Error::from`] | as there |

use shared_db::Error;

/// The typed error for a sqlx error from a SQLite connection.
pub fn from_sqlx(e: sqlx::Error) -> Error {
    let sqlx::Error::Database(db) = &e else {
        return Error::from(e);
    };
    let code: i64 = db.code().and_then(|c| c.parse().ok()).unwrap_or(0);
    let message = db.message().to_owned();
    // What follows "... constraint failed: " — SQLite names the columns or the constraint.
    let named = || {
        message
            .split_once("failed: ")
            .map_or_else(|| message.clone(), |(_, n)| n.to_owned())
    };
    match code & 0xff {
        5 | 6 => Error::LockTimeout { message },
        19 => match code {
            2067 | 1555 => Error::Conflict {
                constraint: named(),
            },
            787 => Error::ForeignKey {
                constraint: named(),
            },
            275 => Error::Check {
                constraint: named(),
            },
            1299 => Error::NotNull { column: named() },
            _ => Error::from(e),
        },
        _ => Error::from(e),
    }
}
