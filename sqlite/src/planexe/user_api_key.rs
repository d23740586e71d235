//! `user_api_key` on SQLite: keys in the Python services' format, hashed by the one scheme of
//! [`shared_db::planexe::user_api_key::RawApiKey::hash`] (SHA-256 of `"{secret}:{raw}"`), so a key
//! made by either side, on either backend, authenticates on the other. The raw key is returned
//! once ([`IssuedKey::raw`]); only its hash and prefix are stored unless
//! [`KeyOptions::store_plaintext`] asks for the Python default.

use chrono::{DateTime, Utc};
use shared_db::planexe::user_api_key::{
    ApiKeySecret, Authenticated, IssuedKey, KeyOptions, LAST_USED_GRANULARITY_SECS,
    MAX_ACTIVE_KEYS, RawApiKey, UserApiKey,
};
use shared_db::planexe::{Keyset, MAX_PAGE_ROWS, clean_opt};
use shared_db::{Error, Result};
use sqlx::SqliteConnection;
use uuid::Uuid;

use super::{END_OF_TIME, credits, hex, time_text, uuid};
use crate::error::from_sqlx;
use crate::tx::transaction;

struct KeyRow {
    id: String,
    user_id: String,
    key_hash: String,
    key_prefix: String,
    label: Option<String>,
    key_plaintext: Option<String>,
    created_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl KeyRow {
    fn into_key(self) -> Result<UserApiKey> {
        Ok(UserApiKey {
            id: uuid(&self.id)?,
            user_id: uuid(&self.user_id)?,
            key_hash: self.key_hash,
            key_prefix: self.key_prefix,
            label: self.label,
            key_plaintext: self.key_plaintext,
            created_at: self.created_at,
            last_used_at: self.last_used_at,
            revoked_at: self.revoked_at,
        })
    }
}

/// Create the key `raw` (made once by [`RawApiKey::generate`], before any retry) for `user_id`,
/// as [`shared_db::planexe::user_api_key::create`]: a repeat returns the same [`IssuedKey`]; the
/// same raw key with another label is [`Error::IdempotencyKeyReused`] (`label`); another user's
/// hash is [`Error::Conflict`]; more than [`MAX_ACTIVE_KEYS`] active keys is
/// [`Error::TooManyApiKeys`]; [`Error::NotFound`] without the user. One transaction, so
/// concurrent creates cannot pass the limit.
pub async fn create(
    conn: &mut SqliteConnection,
    secret: &ApiKeySecret,
    user_id: Uuid,
    raw: &RawApiKey,
    label: Option<&str>,
    options: KeyOptions,
) -> Result<IssuedKey> {
    if !raw.is_well_formed() {
        return Err(Error::invalid_input(
            "an API key to create must come from RawApiKey::generate",
        ));
    }
    let label = clean_opt(label, 128);
    let hash = raw.hash(secret);
    let user = hex(user_id);
    transaction(conn, async |tx| {
        sqlx::query_scalar!(
            r#"SELECT id AS "id!" FROM user_account WHERE id = ?1"#,
            user
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(from_sqlx)?
        .ok_or(Error::NotFound)?;
        let existing = sqlx::query_as!(
            KeyRow,
            r#"SELECT id AS "id!", user_id AS "user_id!", key_hash AS "key_hash!",
                      key_prefix AS "key_prefix!", label AS "label?",
                      key_plaintext AS "key_plaintext?",
                      created_at AS "created_at?: DateTime<Utc>",
                      last_used_at AS "last_used_at?: DateTime<Utc>",
                      revoked_at AS "revoked_at?: DateTime<Utc>"
               FROM user_api_key WHERE key_hash = ?1"#,
            hash,
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        if let Some(row) = existing {
            return IssuedKey::replayed(row.into_key()?, user_id, label.as_deref(), raw);
        }
        let active = sqlx::query_scalar!(
            r#"SELECT count(*) AS "n!: i64" FROM user_api_key
               WHERE user_id = ?1 AND revoked_at IS NULL"#,
            user,
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        if active >= MAX_ACTIVE_KEYS {
            return Err(Error::TooManyApiKeys {
                user_id,
                limit: MAX_ACTIVE_KEYS,
            });
        }
        let row = sqlx::query_as!(
            KeyRow,
            r#"INSERT INTO user_api_key (id, user_id, key_hash, key_prefix, label, key_plaintext,
                                         created_at)
               VALUES (?1, ?2, ?3, ?4, ?5, ?6, strftime('%Y-%m-%d %H:%M:%f000', 'now'))
               RETURNING id AS "id!", user_id AS "user_id!", key_hash AS "key_hash!",
                         key_prefix AS "key_prefix!", label AS "label?",
                         key_plaintext AS "key_plaintext?",
                         created_at AS "created_at?: DateTime<Utc>",
                         last_used_at AS "last_used_at?: DateTime<Utc>",
                         revoked_at AS "revoked_at?: DateTime<Utc>""#,
            hex(Uuid::new_v4()),
            user,
            hash,
            raw.prefix(),
            label,
            options.store_plaintext.then(|| raw.expose().to_owned()),
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        Ok(IssuedKey {
            key: row.into_key()?,
            raw: raw.clone(),
        })
    })
    .await
}

/// Authenticate a presented raw key: the active key with that hash, its owner and the owner's
/// balance; `None` for unknown or revoked keys or a missing owner. `last_used_at` is written only
/// when older than [`LAST_USED_GRANULARITY_SECS`], so a busy key does not take the write lock on
/// every request (the read itself never waits for writers, in WAL).
pub async fn authenticate(
    conn: &mut SqliteConnection,
    secret: &ApiKeySecret,
    raw: &RawApiKey,
) -> Result<Option<Authenticated>> {
    if !raw.expose().starts_with("pex_") || raw.expose().len() > 64 {
        return Ok(None);
    }
    let stale_before = time_text(
        Utc::now() - chrono::Duration::milliseconds((LAST_USED_GRANULARITY_SECS * 1000.0) as i64),
    );
    let hash = raw.hash(secret);
    let row = sqlx::query!(
        r#"SELECT k.id AS "id!", k.user_id AS "user_id!",
                  CAST(u.credits_balance AS TEXT) AS "balance!: String",
                  k.last_used_at IS NULL OR k.last_used_at < ?2 AS "stale!: bool"
           FROM user_api_key k JOIN user_account u ON u.id = k.user_id
           WHERE k.key_hash = ?1 AND k.revoked_at IS NULL"#,
        hash,
        stale_before,
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(from_sqlx)?;
    let Some(row) = row else { return Ok(None) };
    if row.stale {
        sqlx::query!(
            r#"UPDATE user_api_key SET last_used_at = strftime('%Y-%m-%d %H:%M:%f000', 'now')
               WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at < ?2)"#,
            row.id,
            stale_before,
        )
        .execute(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    }
    Ok(Some(Authenticated {
        api_key_id: uuid(&row.id)?,
        user_id: uuid(&row.user_id)?,
        credits_balance: credits(&row.balance)?,
    }))
}

/// Revoke a key of `user_id` (`revoked_at = now`; revoking twice keeps the first time).
/// [`Error::NotFound`] when the user has no such key.
pub async fn revoke(conn: &mut SqliteConnection, user_id: Uuid, key_id: Uuid) -> Result<()> {
    let done = sqlx::query!(
        r#"UPDATE user_api_key
              SET revoked_at = coalesce(revoked_at, strftime('%Y-%m-%d %H:%M:%f000', 'now'))
           WHERE id = ?1 AND user_id = ?2"#,
        hex(key_id),
        hex(user_id),
    )
    .execute(conn)
    .await
    .map_err(from_sqlx)?
    .rows_affected();
    if done == 0 {
        return Err(Error::NotFound);
    }
    Ok(())
}

/// A user's keys (active and revoked), newest first (keys without a time last, ties by id
/// descending), by keyset, as [`shared_db::planexe::user_api_key::list_for_user`]: at most
/// `page.limit` (clamped to 1..=[`MAX_PAGE_ROWS`]) after `page.after`. Served by
/// `ix_user_api_key_user_id_created_at_desc`.
pub async fn list_for_user(
    conn: &mut SqliteConnection,
    user_id: Uuid,
    page: Keyset<Uuid>,
) -> Result<Vec<UserApiKey>> {
    let after = page.after.as_ref();
    let at = after.and_then(|c| c.at).map(time_text);
    let id = after.map(|c| hex(c.id));
    // The previous page ended among the keys without a time: only those are left.
    let past_dated = after.is_some_and(|c| c.at.is_none());
    let rows = sqlx::query_as!(
        KeyRow,
        r#"SELECT id AS "id!", user_id AS "user_id!", key_hash AS "key_hash!",
                  key_prefix AS "key_prefix!", label AS "label?",
                  key_plaintext AS "key_plaintext?",
                  created_at AS "created_at?: DateTime<Utc>",
                  last_used_at AS "last_used_at?: DateTime<Utc>",
                  revoked_at AS "revoked_at?: DateTime<Utc>"
           FROM user_api_key
           WHERE user_id = ?1
             AND (-- keys with a time from the cursor on, then every key without one
                  (NOT ?5 AND (created_at IS NULL
                               OR (created_at <= coalesce(?2, ?6)
                                   AND (created_at < coalesce(?2, ?6) OR id < ?3))))
                  -- past the dated keys: the undated ones after the cursor
                  OR (?5 AND created_at IS NULL AND id < ?3))
           ORDER BY created_at IS NULL, created_at DESC, id DESC
           LIMIT ?4"#,
        hex(user_id),
        at,
        id,
        page.limit.clamp(1, MAX_PAGE_ROWS),
        past_dated,
        END_OF_TIME,
    )
    .fetch_all(conn)
    .await
    .map_err(from_sqlx)?;
    rows.into_iter().map(KeyRow::into_key).collect()
}

/// Rename a key of `user_id` (label cut to 128 characters; `None` clears it).
/// [`Error::NotFound`] if the user has no such key. One statement.
pub async fn rename(
    conn: &mut SqliteConnection,
    user_id: Uuid,
    key_id: Uuid,
    label: Option<&str>,
) -> Result<UserApiKey> {
    sqlx::query_as!(
        KeyRow,
        r#"UPDATE user_api_key SET label = ?3 WHERE id = ?1 AND user_id = ?2
           RETURNING id AS "id!", user_id AS "user_id!", key_hash AS "key_hash!",
                     key_prefix AS "key_prefix!", label AS "label?",
                     key_plaintext AS "key_plaintext?",
                     created_at AS "created_at?: DateTime<Utc>",
                     last_used_at AS "last_used_at?: DateTime<Utc>",
                     revoked_at AS "revoked_at?: DateTime<Utc>""#,
        hex(key_id),
        hex(user_id),
        clean_opt(label, 128),
    )
    .fetch_optional(conn)
    .await
    .map_err(from_sqlx)?
    .ok_or(Error::NotFound)?
    .into_key()
}

/// Reset an active key of `user_id`, as [`shared_db::planexe::user_api_key::reset`]: a new raw
/// key (returned once, in [`IssuedKey::raw`]), hash, prefix (and plaintext only if asked for) on
/// the same row, `last_used_at` cleared; the old key stops authenticating with this statement's
/// commit. [`Error::NotFound`] if the user has no such active key. One statement.
pub async fn reset(
    conn: &mut SqliteConnection,
    secret: &ApiKeySecret,
    user_id: Uuid,
    key_id: Uuid,
    options: KeyOptions,
) -> Result<IssuedKey> {
    let raw = RawApiKey::generate()?;
    let row = sqlx::query_as!(
        KeyRow,
        r#"UPDATE user_api_key SET key_hash = ?3, key_prefix = ?4, key_plaintext = ?5,
                                  last_used_at = NULL
           WHERE id = ?1 AND user_id = ?2 AND revoked_at IS NULL
           RETURNING id AS "id!", user_id AS "user_id!", key_hash AS "key_hash!",
                     key_prefix AS "key_prefix!", label AS "label?",
                     key_plaintext AS "key_plaintext?",
                     created_at AS "created_at?: DateTime<Utc>",
                     last_used_at AS "last_used_at?: DateTime<Utc>",
                     revoked_at AS "revoked_at?: DateTime<Utc>""#,
        hex(key_id),
        hex(user_id),
        raw.hash(secret),
        raw.prefix(),
        options.store_plaintext.then(|| raw.expose().to_owned()),
    )
    .fetch_optional(conn)
    .await
    .map_err(|e| match from_sqlx(e) {
        // The one unique column set here is key_hash (`user_api_key_key_hash_key`).
        Error::Conflict { .. } => Error::invalid_input("API key hash collision; try again"),
        other => other,
    })?
    .ok_or(Error::NotFound)?;
    Ok(IssuedKey {
        key: row.into_key()?,
        raw,
    })
}
