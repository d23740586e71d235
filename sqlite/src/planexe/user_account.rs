//! `user_account` on SQLite: users as the Python services create them ([`create`]), read
//! ([`get`], [`balance`]), signed in from an OAuth profile ([`sign_in`], which also writes the
//! `user_provider` link), the admin account ([`ensure_admin`]), the free first plan
//! ([`claim_free_plan`]) and who pays for a plan ([`billing_user_for_plan`]). The row types, input
//! rules and errors are [`shared_db::planexe::user_account`]'s.
//!
//! What PostgreSQL does in one statement with row locks, this module does in one `BEGIN IMMEDIATE`
//! transaction ([`crate::tx::transaction`]): the write lock is held from the first read, so a
//! concurrent first sign-in of the same identity (in any process on the file) finds the link the
//! first one made, and a second free-plan claim finds the plan used.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use shared_db::planexe::user_account::{OAuthProfile, SignIn, UserAccount, free_plan_claim_key};
use shared_db::planexe::{clean_opt, ident, json_text};
use shared_db::{Error, Result};
use sqlx::SqliteConnection;
use uuid::Uuid;

use super::{credits, hex, json, uuid};
use crate::error::from_sqlx;
use crate::tx::transaction;

/// The admin account's deterministic id, the one rule of both backends (the Python frontend's).
pub use shared_db::planexe::user_account::admin_id;

/// A `user_account` row as SQLite returns it (text id, balance as text, JSON as text);
/// [`AccountRow::into_account`] makes it the library's [`UserAccount`].
struct AccountRow {
    id: String,
    created_at: Option<DateTime<Utc>>,
    updated_at: Option<DateTime<Utc>>,
    email: Option<String>,
    name: Option<String>,
    given_name: Option<String>,
    family_name: Option<String>,
    locale: Option<String>,
    avatar_url: Option<String>,
    is_admin: bool,
    free_plan_used: bool,
    credits_balance: String,
    last_login_at: Option<DateTime<Utc>>,
    frontend_multi_user_config: Option<String>,
}

impl AccountRow {
    fn into_account(self) -> Result<UserAccount> {
        Ok(UserAccount {
            id: uuid(&self.id)?,
            created_at: self.created_at,
            updated_at: self.updated_at,
            email: self.email,
            name: self.name,
            given_name: self.given_name,
            family_name: self.family_name,
            locale: self.locale,
            avatar_url: self.avatar_url,
            is_admin: self.is_admin,
            free_plan_used: self.free_plan_used,
            credits_balance: credits(&self.credits_balance)?,
            last_login_at: self.last_login_at,
            frontend_multi_user_config: json(self.frontend_multi_user_config),
        })
    }
}

/// Create a user with a fresh id, a zero balance and the Python defaults (not admin, free plan
/// unused), as the frontend's sign-up does; `email` cut to 256 characters.
pub async fn create(conn: &mut SqliteConnection, email: Option<&str>) -> Result<Uuid> {
    let id = Uuid::new_v4();
    let email = clean_opt(email, 256);
    sqlx::query!(
        r#"INSERT INTO user_account (id, created_at, updated_at, email, is_admin, free_plan_used,
                                     credits_balance)
           VALUES (?1, strftime('%Y-%m-%d %H:%M:%f000', 'now'),
                   strftime('%Y-%m-%d %H:%M:%f000', 'now'), ?2, 0, 0, 0)"#,
        hex(id),
        email,
    )
    .execute(conn)
    .await
    .map_err(from_sqlx)?;
    Ok(id)
}

/// The user's balance, exact. [`Error::NotFound`] without the user.
pub async fn balance(conn: &mut SqliteConnection, id: Uuid) -> Result<Decimal> {
    let text = sqlx::query_scalar!(
        r#"SELECT CAST(credits_balance AS TEXT) AS "b!: String" FROM user_account WHERE id = ?1"#,
        hex(id),
    )
    .fetch_optional(conn)
    .await
    .map_err(from_sqlx)?
    .ok_or(Error::NotFound)?;
    credits(&text)
}

/// A user by id, as [`shared_db::planexe::user_account::get`]. [`Error::NotFound`] if absent.
/// A `frontend_multi_user_config` another writer left unparseable reads as `None`.
#[tracing::instrument(target = "shared_db_sqlite::planexe::user_account", skip_all, fields(%id))]
pub async fn get(conn: &mut SqliteConnection, id: Uuid) -> Result<UserAccount> {
    sqlx::query_as!(
        AccountRow,
        r#"SELECT id AS "id!", created_at AS "created_at?: DateTime<Utc>",
                  updated_at AS "updated_at?: DateTime<Utc>", email AS "email?", name AS "name?",
                  given_name AS "given_name?", family_name AS "family_name?",
                  locale AS "locale?", avatar_url AS "avatar_url?",
                  is_admin AS "is_admin!: bool", free_plan_used AS "free_plan_used!: bool",
                  CAST(credits_balance AS TEXT) AS "credits_balance!: String",
                  last_login_at AS "last_login_at?: DateTime<Utc>",
                  frontend_multi_user_config AS "frontend_multi_user_config?"
           FROM user_account WHERE id = ?1"#,
        hex(id),
    )
    .fetch_optional(conn)
    .await
    .map_err(from_sqlx)?
    .ok_or(Error::NotFound)?
    .into_account()
}

/// The admin account, created on first use (`is_admin`, name "Admin", zero balance) under its
/// deterministic id ([`admin_id`], the Python frontend's), as
/// [`shared_db::planexe::user_account::ensure_admin`]; an existing row with that id is made admin
/// and otherwise kept. One statement (`INSERT … ON CONFLICT (id) DO UPDATE … RETURNING`), so
/// concurrent calls make one account and every caller gets it.
#[tracing::instrument(target = "shared_db_sqlite::planexe::user_account", skip_all)]
pub async fn ensure_admin(
    conn: &mut SqliteConnection,
    admin_username: &str,
) -> Result<UserAccount> {
    sqlx::query_as!(
        AccountRow,
        r#"INSERT INTO user_account (id, created_at, updated_at, name, is_admin, free_plan_used,
                                     credits_balance)
           VALUES (?1, strftime('%Y-%m-%d %H:%M:%f000', 'now'),
                   strftime('%Y-%m-%d %H:%M:%f000', 'now'), 'Admin', 1, 0, 0)
           ON CONFLICT (id) DO UPDATE SET is_admin = 1
           RETURNING id AS "id!", created_at AS "created_at?: DateTime<Utc>",
                     updated_at AS "updated_at?: DateTime<Utc>", email AS "email?",
                     name AS "name?", given_name AS "given_name?",
                     family_name AS "family_name?", locale AS "locale?",
                     avatar_url AS "avatar_url?", is_admin AS "is_admin!: bool",
                     free_plan_used AS "free_plan_used!: bool",
                     CAST(credits_balance AS TEXT) AS "credits_balance!: String",
                     last_login_at AS "last_login_at?: DateTime<Utc>",
                     frontend_multi_user_config AS "frontend_multi_user_config?""#,
        hex(admin_id(admin_username)),
    )
    .fetch_one(conn)
    .await
    .map_err(from_sqlx)?
    .into_account()
}

/// Sign a user in from an OAuth profile, keyed by (provider, provider user id), as
/// [`shared_db::planexe::user_account::sign_in`]: the `user_provider` link is created (with a new
/// user id) or updated (keeping its user), then that `user_account` row is created or updated.
/// Profile fields are overwritten only with non-empty values; both rows get the same
/// `last_login_at`. [`SignIn::created`] is true when this sign-in made the user row.
///
/// One `BEGIN IMMEDIATE` transaction: concurrent first sign-ins of one identity, in any process on
/// the file, produce one link and one user (the second finds the first's link on
/// `uq_user_provider_provider_user_id`), and a link whose user row is missing (the Python
/// two-commit insert) gets its user row back. Safe to repeat. A provider longer than 32, or a
/// provider user id longer than 256 characters, or either empty, is [`Error::InvalidInput`];
/// profile text is cut to its column.
#[tracing::instrument(target = "shared_db_sqlite::planexe::user_account", skip_all)]
pub async fn sign_in(conn: &mut SqliteConnection, profile: &OAuthProfile<'_>) -> Result<SignIn> {
    let provider = ident("OAuth provider", profile.provider, 32)?;
    let provider_user_id = ident("provider user id", profile.provider_user_id, 256)?;
    if provider.is_empty() || provider_user_id.is_empty() {
        return Err(Error::invalid_input(
            "provider and provider user id are required",
        ));
    }
    let email = clean_opt(profile.email, 256);
    let raw_profile = json_text(profile.raw_profile);
    let name = clean_opt(profile.name, 256);
    let given_name = clean_opt(profile.given_name, 128);
    let family_name = clean_opt(profile.family_name, 128);
    let locale = clean_opt(profile.locale, 64);
    let avatar_url = clean_opt(profile.avatar_url, 512);
    transaction(conn, async |tx| {
        // The link: a new identity gets a new user id; a known one keeps its user. Its login
        // time is the one both rows get.
        let link = sqlx::query!(
            r#"INSERT INTO user_provider (id, user_id, provider, provider_user_id, email,
                                          raw_profile, created_at, last_login_at)
               VALUES (?1, ?2, ?3, ?4, ?5, ?6, strftime('%Y-%m-%d %H:%M:%f000', 'now'),
                       strftime('%Y-%m-%d %H:%M:%f000', 'now'))
               ON CONFLICT (provider, provider_user_id) DO UPDATE
                  SET email = coalesce(nullif(excluded.email, ''), user_provider.email),
                      raw_profile = coalesce(excluded.raw_profile, user_provider.raw_profile),
                      last_login_at = excluded.last_login_at
               RETURNING user_id AS "user_id!", last_login_at AS "at!: String""#,
            hex(Uuid::new_v4()),
            hex(Uuid::new_v4()),
            provider,
            provider_user_id,
            email,
            raw_profile,
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        // Another writer may have left the link's user id hyphenated: the user row's is hex.
        let user = hex(uuid(&link.user_id)?);
        // Under the write lock, nobody creates the user between this read and the upsert.
        let existed = sqlx::query_scalar!(
            r#"SELECT 1 AS "one!: i64" FROM user_account WHERE id = ?1"#,
            user,
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(from_sqlx)?
        .is_some();
        let row = sqlx::query_as!(
            AccountRow,
            r#"INSERT INTO user_account (id, created_at, updated_at, email, name, given_name,
                                         family_name, locale, avatar_url, is_admin,
                                         free_plan_used, credits_balance, last_login_at)
               VALUES (?1, ?2, ?2, nullif(?3, ''), nullif(?4, ''), nullif(?5, ''),
                       nullif(?6, ''), nullif(?7, ''), nullif(?8, ''), 0, 0, 0, ?2)
               ON CONFLICT (id) DO UPDATE
                  SET email = coalesce(excluded.email, user_account.email),
                      name = coalesce(excluded.name, user_account.name),
                      given_name = coalesce(excluded.given_name, user_account.given_name),
                      family_name = coalesce(excluded.family_name, user_account.family_name),
                      locale = coalesce(excluded.locale, user_account.locale),
                      avatar_url = coalesce(excluded.avatar_url, user_account.avatar_url),
                      last_login_at = excluded.last_login_at,
                      updated_at = excluded.updated_at
               RETURNING id AS "id!", created_at AS "created_at?: DateTime<Utc>",
                         updated_at AS "updated_at?: DateTime<Utc>", email AS "email?",
                         name AS "name?", given_name AS "given_name?",
                         family_name AS "family_name?", locale AS "locale?",
                         avatar_url AS "avatar_url?", is_admin AS "is_admin!: bool",
                         free_plan_used AS "free_plan_used!: bool",
                         CAST(credits_balance AS TEXT) AS "credits_balance!: String",
                         last_login_at AS "last_login_at?: DateTime<Utc>",
                         frontend_multi_user_config AS "frontend_multi_user_config?""#,
            user,
            link.at,
            email,
            name,
            given_name,
            family_name,
            locale,
            avatar_url,
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        Ok(SignIn {
            user: row.into_account()?,
            created: !existed,
        })
    })
    .await
}

/// Use the user's free first plan on behalf of the request `claim_key`, as
/// [`shared_db::planexe::user_account::claim_free_plan`]: `true` when this request used it (or
/// had used it: a repeat with the same key answers `true` again, so a caller that retries never
/// pays for the plan that used the free one), `false` when another request or a Python service
/// did. Concurrent claims with different keys, in any process on the file: exactly one gets
/// `true` (one `BEGIN IMMEDIATE` transaction reads and sets the flag under the write lock).
/// [`Error::InvalidInput`] for an empty key or one longer than
/// [`MAX_FREE_PLAN_CLAIM_KEY_CHARS`](shared_db::planexe::user_account::MAX_FREE_PLAN_CLAIM_KEY_CHARS); [`Error::NotFound`] without the user.
#[tracing::instrument(target = "shared_db_sqlite::planexe::user_account", skip_all, fields(%user_id))]
pub async fn claim_free_plan(
    conn: &mut SqliteConnection,
    user_id: Uuid,
    claim_key: &str,
) -> Result<bool> {
    let claim_key = free_plan_claim_key(claim_key)?;
    let user = hex(user_id);
    transaction(conn, async |tx| {
        let current = sqlx::query!(
            r#"SELECT free_plan_used AS "used!: bool", free_plan_claim_key AS "key?"
               FROM user_account WHERE id = ?1"#,
            user,
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(from_sqlx)?
        .ok_or(Error::NotFound)?;
        if current.used {
            return Ok(current.key.as_deref() == Some(claim_key.as_str()));
        }
        sqlx::query!(
            r#"UPDATE user_account
                  SET free_plan_used = 1, free_plan_claim_key = ?2,
                      updated_at = strftime('%Y-%m-%d %H:%M:%f000', 'now')
               WHERE id = ?1"#,
            user,
            claim_key,
        )
        .execute(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        Ok(true)
    })
    .await
}

/// Who pays for a plan, as the Python worker decides and
/// [`shared_db::planexe::user_account::billing_user_for_plan`] answers: the `user_account` whose
/// id is `plan_user_id` if it parses as a UUID (hyphenated or hex) and exists, else the first
/// admin account (oldest, rows without a time last, then by id); `None` when neither exists.
#[tracing::instrument(target = "shared_db_sqlite::planexe::user_account", skip_all)]
pub async fn billing_user_for_plan(
    conn: &mut SqliteConnection,
    plan_user_id: Option<&str>,
) -> Result<Option<Uuid>> {
    let as_hex = plan_user_id.and_then(|s| Uuid::parse_str(s).ok()).map(hex);
    let id = sqlx::query_scalar!(
        r#"SELECT id AS "id!" FROM (
               SELECT id, 0 AS rank FROM user_account WHERE id = ?1
               UNION ALL
               SELECT id, 1 AS rank FROM (
                   SELECT id FROM user_account WHERE is_admin = 1
                   ORDER BY created_at NULLS LAST, id LIMIT 1))
           ORDER BY rank LIMIT 1"#,
        as_hex,
    )
    .fetch_optional(conn)
    .await
    .map_err(from_sqlx)?;
    id.as_deref().map(uuid).transpose()
}
