//! `user_api_key`: API keys (`UserApiKey`), in the Python services' exact format so that keys made by
//! either side work on both.
//!
//! * raw key: `pex_` + URL-safe base64 (no padding) of 24 random bytes = 36 characters;
//! * `key_hash`: lowercase hex SHA-256 of the UTF-8 string `"{secret}:{raw}"` (`PLANEXE_API_KEY_SECRET`);
//! * `key_prefix`: the first 10 characters of the raw key;
//! * `key_plaintext`: stored only when [`KeyOptions::store_plaintext`] is set (off by default; the
//!   Python default stores it unless `PLANEXE_API_KEY_SHOW_ONCE` is truthy);
//! * at most [`MAX_ACTIVE_KEYS`] active (`revoked_at IS NULL`) keys per user.
//!
//! The hash and the plaintext never serialize and never appear in `Debug` output.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::{Cursor, Keyset, clean_opt};
use crate::error::{Error, Result, ResultExt};

/// Maximum number of active keys per user (as in the Python frontend).
pub const MAX_ACTIVE_KEYS: i64 = 10;
/// Length of `key_prefix`.
pub const KEY_PREFIX_LEN: usize = 10;
const KEY_TAG: &str = "pex_";

/// The server-side secret mixed into key hashes (`PLANEXE_API_KEY_SECRET`). Redacted in `Debug`.
#[derive(Clone)]
pub struct ApiKeySecret(String);

impl ApiKeySecret {
    /// Wrap the secret.
    pub fn new(secret: impl Into<String>) -> Self {
        ApiKeySecret(secret.into())
    }
}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKeySecret(<redacted>)")
    }
}

/// A raw API key, shown to its owner once. Redacted in `Debug`; never serialized.
#[derive(Clone, PartialEq, Eq)]
pub struct RawApiKey(String);

impl RawApiKey {
    /// Generate a key: `pex_` + base64url(24 random bytes), no padding.
    pub fn generate() -> Result<Self> {
        let mut bytes = [0u8; 24];
        getrandom::fill(&mut bytes)
            .map_err(|e| Error::internal(format!("no OS randomness: {e}")))?;
        Ok(RawApiKey(format!(
            "{KEY_TAG}{}",
            URL_SAFE_NO_PAD.encode(bytes)
        )))
    }
    /// Whether this has the shape of a generated key: `pex_` and 32 base64url characters.
    pub fn is_well_formed(&self) -> bool {
        self.0.len() == KEY_TAG.len() + 32
            && self.0.starts_with(KEY_TAG)
            && self.0[KEY_TAG.len()..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }
    /// Wrap a key presented by a client.
    pub fn from_presented(raw: impl Into<String>) -> Self {
        RawApiKey(raw.into())
    }
    /// The key text (to show to its owner once).
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// `key_prefix`: the first 10 characters.
    pub fn prefix(&self) -> String {
        self.0.chars().take(KEY_PREFIX_LEN).collect()
    }
    /// `key_hash`: lowercase hex SHA-256 of `"{secret}:{raw}"`.
    pub fn hash(&self, secret: &ApiKeySecret) -> String {
        let mut h = Sha256::new();
        h.update(secret.0.as_bytes());
        h.update(b":");
        h.update(self.0.as_bytes());
        hex::encode(h.finalize())
    }
}

impl fmt::Debug for RawApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawApiKey({}…)", self.prefix())
    }
}

/// One row of `user_api_key`.
#[derive(Clone, PartialEq, Serialize)]
pub struct UserApiKey {
    /// Primary key.
    pub id: Uuid,
    /// The owning `user_account`.
    pub user_id: Uuid,
    /// Lowercase hex SHA-256 of `"{secret}:{raw key}"`; never serialized.
    #[serde(skip_serializing)]
    pub key_hash: String,
    /// First 10 characters of the key, to recognise it.
    pub key_prefix: String,
    /// Name given by the user (Python attribute `name`, column `label`).
    pub label: Option<String>,
    /// The raw key, stored only with [`KeyOptions::store_plaintext`]; never serialized.
    #[serde(skip_serializing)]
    pub key_plaintext: Option<String>,
    /// UTC.
    pub created_at: Option<DateTime<Utc>>,
    /// UTC time of a recent successful authentication, at most [`LAST_USED_GRANULARITY_SECS`]
    /// stale; `None` if never used.
    pub last_used_at: Option<DateTime<Utc>>,
    /// UTC revocation time; a key is active while this is `None`.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl fmt::Debug for UserApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserApiKey")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("key_hash", &"<redacted>")
            .field("key_prefix", &self.key_prefix)
            .field("label", &self.label)
            .field(
                "key_plaintext",
                &self.key_plaintext.as_ref().map(|_| "<redacted>"),
            )
            .field("created_at", &self.created_at)
            .field("last_used_at", &self.last_used_at)
            .field("revoked_at", &self.revoked_at)
            .finish()
    }
}

/// Options of [`create`] and [`reset`].
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyOptions {
    /// Store the raw key in `key_plaintext` (the Python default). Off unless asked for.
    pub store_plaintext: bool,
}

/// A key just created or reset: the row and the raw key, which is not retrievable later unless
/// plaintext storage was asked for.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    /// The stored row.
    pub key: UserApiKey,
    /// The raw key to hand to the user.
    pub raw: RawApiKey,
}

impl IssuedKey {
    /// The answer of a `create` whose raw key is already stored as `key` (the replay rule of
    /// [`create`], shared by the SQLite backend): the same key again for the same user and label,
    /// [`Error::IdempotencyKeyReused`] (`label`) for another label, and [`Error::Conflict`]
    /// (`user_api_key_key_hash_key`) when another user holds that hash.
    pub fn replayed(
        key: UserApiKey,
        user_id: Uuid,
        label: Option<&str>,
        raw: &RawApiKey,
    ) -> Result<Self> {
        if key.user_id != user_id {
            Err(Error::Conflict {
                constraint: "user_api_key_key_hash_key".to_owned(),
            })
        } else if key.label.as_deref() != label {
            Err(Error::idempotency_key_reused("label"))
        } else {
            Ok(IssuedKey {
                key,
                raw: raw.clone(),
            })
        }
    }
}

/// Create the key `raw` for `user_id` with an optional label (content: cut to 128 characters).
///
/// The caller generates `raw` with [`RawApiKey::generate`] once, before any retry loop: the raw
/// key is the idempotency key, and `create` follows the replay contract of the
/// [module docs](super): repeating it after an unknown outcome (a connection lost at COMMIT), or
/// while the first is still in flight (it waits on the user row), finds the row the first call
/// wrote and returns the same [`IssuedKey`]; there is one key. The same raw key with another
/// label is [`Error::IdempotencyKeyReused`] (`label`). A hash already held by another user is
/// [`Error::Conflict`] (`user_api_key_key_hash_key`, the Python schema's global uniqueness of a
/// 192-bit secret: only a caller that holds that secret can meet it); a raw key that does not
/// look generated is [`Error::InvalidInput`].
///
/// Refused with [`Error::TooManyApiKeys`] when the user already has [`MAX_ACTIVE_KEYS`] active keys,
/// and with [`Error::NotFound`] when the user does not exist. Race-free: the user row is locked
/// before counting, so concurrent creates cannot exceed the limit. One transaction, three statements
/// (5 round trips with BEGIN/COMMIT).
#[tracing::instrument(skip_all, fields(%user_id))]
pub async fn create(
    conn: &mut PgConnection,
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
    crate::tx::transaction(conn, async |tx| {
        sqlx::query_scalar!(
            "SELECT id FROM user_account WHERE id = $1 FOR UPDATE",
            user_id
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(Error::NotFound)?;
        let existing = sqlx::query_as!(
            UserApiKey,
            r#"SELECT id, user_id, key_hash, key_prefix, label, key_plaintext, created_at,
                      last_used_at, revoked_at
               FROM user_api_key WHERE key_hash = $1"#,
            hash,
        )
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(key) = existing {
            return IssuedKey::replayed(key, user_id, label.as_deref(), raw);
        }
        let key = sqlx::query_as!(
            UserApiKey,
            r#"INSERT INTO user_api_key (id, user_id, key_hash, key_prefix, label, key_plaintext,
                                         created_at)
               SELECT gen_random_uuid(), $1, $2, $3, $4, $5, now() AT TIME ZONE 'utc'
               WHERE (SELECT count(*) FROM user_api_key
                      WHERE user_id = $1 AND revoked_at IS NULL) < $6
               RETURNING id, user_id, key_hash, key_prefix, label, key_plaintext, created_at,
                         last_used_at, revoked_at"#,
            user_id,
            hash,
            raw.prefix(),
            label,
            options.store_plaintext.then(|| raw.expose().to_owned()),
            MAX_ACTIVE_KEYS,
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(Error::TooManyApiKeys {
            user_id,
            limit: MAX_ACTIVE_KEYS,
        })?;
        Ok(IssuedKey {
            key,
            raw: raw.clone(),
        })
    })
    .await
}

/// An authenticated API request's identity.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Authenticated {
    /// The key's id.
    pub api_key_id: Uuid,
    /// The key's owner.
    pub user_id: Uuid,
    /// The owner's balance.
    pub credits_balance: Decimal,
}

/// How stale `last_used_at` may get before [`authenticate`] writes it again.
pub const LAST_USED_GRANULARITY_SECS: f64 = 60.0;

/// Authenticate a presented raw key (the hot path of every API request): the active key with that
/// hash, its owner and the owner's balance. `None` for unknown or revoked keys, or keys whose user
/// row is missing. `last_used_at` is set to now when it is older than
/// [`LAST_USED_GRANULARITY_SECS`] (or unset), so a busy key is not written — and its row not
/// locked — on every request (the Python services write it every time). One statement, one round
/// trip.
#[tracing::instrument(skip_all)]
pub async fn authenticate(
    ex: impl PgExecutor<'_>,
    secret: &ApiKeySecret,
    raw: &RawApiKey,
) -> Result<Option<Authenticated>> {
    if !raw.expose().starts_with(KEY_TAG) || raw.expose().len() > 64 {
        return Ok(None);
    }
    Ok(sqlx::query_as!(
        Authenticated,
        r#"WITH k AS (
               SELECT id, user_id, last_used_at FROM user_api_key
               WHERE key_hash = $1 AND revoked_at IS NULL),
           touch AS (
               UPDATE user_api_key SET last_used_at = now() AT TIME ZONE 'utc'
               WHERE id = (SELECT id FROM k)
                 AND (last_used_at IS NULL OR last_used_at
                      < (now() AT TIME ZONE 'utc') - make_interval(secs => $2)))
           SELECT k.id AS api_key_id, k.user_id, u.credits_balance
           FROM k JOIN user_account u ON u.id = k.user_id"#,
        raw.hash(secret),
        LAST_USED_GRANULARITY_SECS,
    )
    .fetch_optional(ex)
    .await?)
}

impl UserApiKey {
    /// This key's place in the list, for the next [`list_for_user`] page.
    pub fn cursor(&self) -> Cursor<Uuid> {
        Cursor {
            at: self.created_at,
            id: self.id,
        }
    }
}

/// A user's keys (active and revoked), newest first (keys without a time last, ties by id
/// descending), by keyset: at most `page.limit` keys after `page.after`, read from
/// `ix_user_api_key_user_id_created_at_desc` (migration 0074) starting at the cursor. Revoked
/// keys accumulate without bound, so the list pages like every other. One round trip.
#[tracing::instrument(skip_all, fields(%user_id))]
pub async fn list_for_user(
    ex: impl PgExecutor<'_>,
    user_id: Uuid,
    page: Keyset<Uuid>,
) -> Result<Vec<UserApiKey>> {
    Ok(sqlx::query_as!(
        UserApiKey,
        r#"SELECT id AS "id!", user_id AS "user_id!", key_hash AS "key_hash!",
                  key_prefix AS "key_prefix!", label, key_plaintext,
                  created_at AS "created_at: DateTime<Utc>",
                  last_used_at AS "last_used_at: DateTime<Utc>",
                  revoked_at AS "revoked_at: DateTime<Utc>"
           FROM (
               -- keys with a time, from the cursor on (none once past them)
               (SELECT id, user_id, key_hash, key_prefix, label, key_plaintext, created_at,
                       last_used_at, revoked_at
                FROM user_api_key
                WHERE user_id = $1 AND NOT $5
                  AND created_at <= coalesce($2, 'infinity'::timestamp)
                  AND (created_at < coalesce($2, 'infinity'::timestamp) OR id < $3)
                ORDER BY created_at DESC NULLS LAST, id DESC
                LIMIT $4)
               UNION ALL
               -- then the keys without one (by id, in the index's order)
               (SELECT id, user_id, key_hash, key_prefix, label, key_plaintext, created_at,
                       last_used_at, revoked_at
                FROM user_api_key
                WHERE user_id = $1 AND created_at IS NULL AND (NOT $5 OR id < $3)
                ORDER BY created_at DESC NULLS LAST, id DESC
                LIMIT $4)) page
           ORDER BY created_at DESC NULLS LAST, id DESC
           LIMIT $4"#,
        user_id,
        page.at(),
        page.id(),
        page.limit(),
        page.past_dated(),
    )
    .fetch_all(ex)
    .await?)
}

/// Rename a key of `user_id` (label truncated to 128; `None` clears it). [`Error::NotFound`] if the
/// user has no such key. One round trip.
#[tracing::instrument(skip_all, fields(%user_id, %key_id))]
pub async fn rename(
    ex: impl PgExecutor<'_>,
    user_id: Uuid,
    key_id: Uuid,
    label: Option<&str>,
) -> Result<UserApiKey> {
    sqlx::query_as!(
        UserApiKey,
        r#"UPDATE user_api_key SET label = $3 WHERE id = $1 AND user_id = $2
           RETURNING id, user_id, key_hash, key_prefix, label, key_plaintext, created_at,
                     last_used_at, revoked_at"#,
        key_id,
        user_id,
        clean_opt(label, 128),
    )
    .fetch_optional(ex)
    .await?
    .ok_or(Error::NotFound)
}

/// Revoke a key of `user_id` (`revoked_at = now`; revoking twice keeps the first time).
/// [`Error::NotFound`] if the user has no such key. One round trip.
#[tracing::instrument(skip_all, fields(%user_id, %key_id))]
pub async fn revoke(ex: impl PgExecutor<'_>, user_id: Uuid, key_id: Uuid) -> Result<UserApiKey> {
    sqlx::query_as!(
        UserApiKey,
        r#"UPDATE user_api_key
              SET revoked_at = coalesce(revoked_at, now() AT TIME ZONE 'utc')
           WHERE id = $1 AND user_id = $2
           RETURNING id, user_id, key_hash, key_prefix, label, key_plaintext, created_at,
                     last_used_at, revoked_at"#,
        key_id,
        user_id,
    )
    .fetch_optional(ex)
    .await?
    .ok_or(Error::NotFound)
}

/// Reset an active key of `user_id`: a new raw key, hash, prefix (and plaintext if asked for) on the
/// same row; the old key stops working at once. [`Error::NotFound`] if the user has no such active
/// key. One round trip.
#[tracing::instrument(skip_all, fields(%user_id, %key_id))]
pub async fn reset(
    ex: impl PgExecutor<'_>,
    secret: &ApiKeySecret,
    user_id: Uuid,
    key_id: Uuid,
    options: KeyOptions,
) -> Result<IssuedKey> {
    let raw = RawApiKey::generate()?;
    let key = sqlx::query_as!(
        UserApiKey,
        r#"UPDATE user_api_key SET key_hash = $3, key_prefix = $4, key_plaintext = $5,
                                  last_used_at = NULL
           WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL
           RETURNING id, user_id, key_hash, key_prefix, label, key_plaintext, created_at,
                     last_used_at, revoked_at"#,
        key_id,
        user_id,
        raw.hash(secret),
        raw.prefix(),
        options.store_plaintext.then(|| raw.expose().to_owned()),
    )
    .fetch_optional(ex)
    .await
    .on_constraint("user_api_key_key_hash_key", |_| {
        Error::invalid_input("API key hash collision; try again")
    })?
    .ok_or(Error::NotFound)?;
    Ok(IssuedKey { key, raw })
}
