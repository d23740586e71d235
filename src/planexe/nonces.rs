//! `nonces`: one-shot form-submission nonces (`NonceItem`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgExecutor;

use super::json::LossyJson;
use super::{PageRequest, json_absent, json_text, secs};
use crate::error::{Error, Result};

/// One row of `nonces`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Nonce {
    /// Serial id.
    pub id: i32,
    /// `CREATE_<uuid4>` or `DEMO_<uuid4>`.
    pub nonce_key: String,
    /// First use.
    pub created_at: DateTime<Utc>,
    /// Latest use.
    pub last_accessed_at: DateTime<Utc>,
    /// Number of uses (1 on first use).
    pub request_count: i32,
    /// Context of the latest use (user agent, ip, prompt, user id).
    pub context: Option<LossyJson>,
}

/// Outcome of [`consume`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NonceUse {
    /// The row after this use.
    pub nonce: Nonce,
    /// `true` for the first use; `false` means a replay (the frontend answers HTTP 409).
    pub is_new: bool,
}

/// The input rule of a nonce key to consume, on every backend: 1..=255 characters and no NUL (a
/// key is an identifier, so it is refused rather than cut or cleaned); [`Error::InvalidInput`]
/// otherwise.
pub fn check_key(nonce_key: &str) -> Result<()> {
    if nonce_key.is_empty() || nonce_key.chars().count() > 255 || nonce_key.contains('\0') {
        return Err(Error::invalid_input("nonce key must be 1..=255 characters"));
    }
    Ok(())
}

/// Consume a nonce: the first use inserts it, later uses bump `request_count` and `last_accessed_at`
/// and replace the context. One statement (`INSERT … ON CONFLICT (nonce_key) DO UPDATE`), one round
/// trip; concurrent uses of the same key serialise on the unique index, so exactly one sees `is_new`.
#[tracing::instrument(skip_all)]
pub async fn consume(
    ex: impl PgExecutor<'_>,
    nonce_key: &str,
    context: Option<&Value>,
) -> Result<NonceUse> {
    check_key(nonce_key)?;
    let row = sqlx::query!(
        r#"INSERT INTO nonces (nonce_key, created_at, last_accessed_at, request_count, context)
           VALUES ($1, now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc', 1, $2::text::json)
           ON CONFLICT (nonce_key) DO UPDATE
              SET request_count = nonces.request_count + 1,
                  last_accessed_at = EXCLUDED.last_accessed_at,
                  context = EXCLUDED.context
           RETURNING id, nonce_key, created_at, last_accessed_at, request_count, context,
                     (xmax = 0) AS "inserted!""#,
        nonce_key,
        json_text(context),
    )
    .fetch_one(ex)
    .await?;
    Ok(NonceUse {
        is_new: row.inserted,
        nonce: Nonce {
            id: row.id,
            nonce_key: row.nonce_key,
            created_at: row.created_at,
            last_accessed_at: row.last_accessed_at,
            request_count: row.request_count,
            context: json_absent(row.context),
        },
    })
}

/// Delete nonces created more than `age` ago (the Python services never call their cleanup; schedule
/// this, e.g. daily with 30 days). Returns the number deleted. One round trip.
#[tracing::instrument(skip_all)]
pub async fn purge_older_than(ex: impl PgExecutor<'_>, age: Duration) -> Result<u64> {
    let done = sqlx::query!(
        r#"DELETE FROM nonces
           WHERE created_at < (now() AT TIME ZONE 'utc') - make_interval(secs => $1)"#,
        secs(age),
    )
    .execute(ex)
    .await?;
    Ok(done.rows_affected())
}

/// The nonce with this key, as it stands after its latest use; [`Error::NotFound`] if it was never
/// used (or has been purged). Served by the unique index `ix_nonces_nonce_key`. One round trip.
#[tracing::instrument(skip_all)]
pub async fn get(ex: impl PgExecutor<'_>, nonce_key: &str) -> Result<Nonce> {
    let nonce = sqlx::query_as!(
        Nonce,
        r#"SELECT id, nonce_key, created_at, last_accessed_at, request_count, context
           FROM nonces WHERE nonce_key = $1"#,
        nonce_key,
    )
    .fetch_optional(ex)
    .await?
    .ok_or(Error::NotFound)?;
    Ok(Nonce {
        context: json_absent(nonce.context),
        ..nonce
    })
}

/// Nonces by latest use, most recent first (ties by id, newest first, so pages never overlap or skip
/// while nothing is written). At most `page.limit` rows (clamped to 1..=200), after skipping
/// `page.offset`. Served by `ix_nonces_last_accessed_at`. One round trip.
#[tracing::instrument(skip_all)]
pub async fn list_recent(ex: impl PgExecutor<'_>, page: PageRequest) -> Result<Vec<Nonce>> {
    let rows = sqlx::query_as!(
        Nonce,
        r#"SELECT id, nonce_key, created_at, last_accessed_at, request_count, context
           FROM nonces ORDER BY last_accessed_at DESC, id DESC LIMIT $1 OFFSET $2"#,
        page.limit(),
        page.offset(),
    )
    .fetch_all(ex)
    .await?;
    Ok(rows
        .into_iter()
        .map(|n| Nonce {
            context: json_absent(n.context),
            ..n
        })
        .collect())
}
