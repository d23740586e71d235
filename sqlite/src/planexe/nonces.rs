//! `nonces` on SQLite: one-shot form-submission nonces, with the library's
//! [`shared_db::planexe::nonces::Nonce`] rows and its key rule
//! ([`shared_db::planexe::nonces::check_key`]).
//!
//! **Accepted once.** PostgreSQL answers "was this use the first?" from one upsert (`xmax = 0`).
//! SQLite's upsert cannot tell an inserted row from an updated one, so [`consume`] is one
//! `BEGIN IMMEDIATE` transaction: it bumps an existing row, or inserts the first one, under the
//! write lock. Concurrent consumers of one key (tasks, or processes on the file) run one after
//! another, so exactly one of them sees `is_new`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use shared_db::planexe::nonces::{Nonce, NonceUse, check_key};
use shared_db::planexe::{MAX_PAGE_ROWS, PageRequest, json_text};
use shared_db::{Error, Result};
use sqlx::SqliteConnection;

use super::{ago, json};
use crate::error::from_sqlx;
use crate::tx::transaction;

/// A `nonces` row as SQLite returns it (the context as JSON text).
struct NonceRow {
    id: i64,
    nonce_key: String,
    created_at: DateTime<Utc>,
    last_accessed_at: DateTime<Utc>,
    request_count: i64,
    context: Option<String>,
}

impl NonceRow {
    fn into_nonce(self) -> Result<Nonce> {
        Ok(Nonce {
            id: i32::try_from(self.id)
                .map_err(|_| Error::internal(format!("stored nonce id {} beyond i32", self.id)))?,
            nonce_key: self.nonce_key,
            created_at: self.created_at,
            last_accessed_at: self.last_accessed_at,
            request_count: i32::try_from(self.request_count).unwrap_or(i32::MAX),
            context: json(self.context),
        })
    }
}

/// Consume a nonce, as [`shared_db::planexe::nonces::consume`]: the first use inserts it
/// (`request_count` 1, `is_new`), every later use bumps `request_count` and `last_accessed_at`
/// and replaces the context (`is_new == false`: a replay, HTTP 409). One `BEGIN IMMEDIATE`
/// transaction (see the [module docs](self)); [`Error::InvalidInput`] for a key that is empty,
/// longer than 255 characters or holds a NUL.
#[tracing::instrument(target = "shared_db_sqlite::planexe::nonces", skip_all)]
pub async fn consume(
    conn: &mut SqliteConnection,
    nonce_key: &str,
    context: Option<&Value>,
) -> Result<NonceUse> {
    check_key(nonce_key)?;
    let context = json_text(context);
    transaction(conn, async |tx| {
        // A replay: the row is there (written by anyone), bump it.
        let bumped = sqlx::query_as!(
            NonceRow,
            r#"UPDATE nonces
                  SET request_count = request_count + 1,
                      last_accessed_at = strftime('%Y-%m-%d %H:%M:%f000', 'now'), context = ?2
               WHERE nonce_key = ?1
               RETURNING id AS "id!: i64", nonce_key AS "nonce_key!",
                         created_at AS "created_at!: DateTime<Utc>",
                         last_accessed_at AS "last_accessed_at!: DateTime<Utc>",
                         request_count AS "request_count!: i64", context AS "context?""#,
            nonce_key,
            context,
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        if let Some(row) = bumped {
            return Ok(NonceUse {
                nonce: row.into_nonce()?,
                is_new: false,
            });
        }
        // The first use: no other writer can insert it meanwhile (we hold the write lock).
        let row = sqlx::query_as!(
            NonceRow,
            r#"INSERT INTO nonces (nonce_key, created_at, last_accessed_at, request_count, context)
               VALUES (?1, strftime('%Y-%m-%d %H:%M:%f000', 'now'),
                       strftime('%Y-%m-%d %H:%M:%f000', 'now'), 1, ?2)
               RETURNING id AS "id!: i64", nonce_key AS "nonce_key!",
                         created_at AS "created_at!: DateTime<Utc>",
                         last_accessed_at AS "last_accessed_at!: DateTime<Utc>",
                         request_count AS "request_count!: i64", context AS "context?""#,
            nonce_key,
            context,
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        Ok(NonceUse {
            nonce: row.into_nonce()?,
            is_new: true,
        })
    })
    .await
}

/// Delete nonces created more than `age` ago; the number deleted. One statement.
pub async fn purge_older_than(conn: &mut SqliteConnection, age: Duration) -> Result<u64> {
    let cutoff = ago(age);
    let done = sqlx::query!("DELETE FROM nonces WHERE created_at < ?1", cutoff)
        .execute(conn)
        .await
        .map_err(from_sqlx)?;
    Ok(done.rows_affected())
}

/// The nonce with this key after its latest use; [`Error::NotFound`] if it was never used (or
/// has been purged). Served by `ix_nonces_nonce_key`.
pub async fn get(conn: &mut SqliteConnection, nonce_key: &str) -> Result<Nonce> {
    sqlx::query_as!(
        NonceRow,
        r#"SELECT id AS "id!: i64", nonce_key AS "nonce_key!",
                  created_at AS "created_at!: DateTime<Utc>",
                  last_accessed_at AS "last_accessed_at!: DateTime<Utc>",
                  request_count AS "request_count!: i64", context AS "context?"
           FROM nonces WHERE nonce_key = ?1"#,
        nonce_key,
    )
    .fetch_optional(conn)
    .await
    .map_err(from_sqlx)?
    .ok_or(Error::NotFound)?
    .into_nonce()
}

/// Nonces by latest use, most recent first (ties by id, newest first), at most `page.limit`
/// (clamped to 1..=[`MAX_PAGE_ROWS`]) after skipping `page.offset`. Served by
/// `ix_nonces_last_accessed_at`.
pub async fn list_recent(conn: &mut SqliteConnection, page: PageRequest) -> Result<Vec<Nonce>> {
    let rows = sqlx::query_as!(
        NonceRow,
        r#"SELECT id AS "id!: i64", nonce_key AS "nonce_key!",
                  created_at AS "created_at!: DateTime<Utc>",
                  last_accessed_at AS "last_accessed_at!: DateTime<Utc>",
                  request_count AS "request_count!: i64", context AS "context?"
           FROM nonces ORDER BY last_accessed_at DESC, id DESC LIMIT ?1 OFFSET ?2"#,
        page.limit.clamp(1, MAX_PAGE_ROWS),
        page.offset.max(0),
    )
    .fetch_all(conn)
    .await
    .map_err(from_sqlx)?;
    rows.into_iter().map(NonceRow::into_nonce).collect()
}
