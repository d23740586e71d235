//! `user_account`: users (`UserAccount`), OAuth sign-in and the admin account.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::Value;
use sqlx::PgExecutor;
use uuid::Uuid;

use super::json::LossyJson;
use super::{clean_opt, ident, json_absent, json_text};
use crate::error::{Error, Result};

/// One row of `user_account`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserAccount {
    /// Primary key.
    pub id: Uuid,
    /// UTC.
    pub created_at: Option<DateTime<Utc>>,
    /// UTC time of the last write (every write of this library sets it).
    pub updated_at: Option<DateTime<Utc>>,
    /// From the latest sign-in that carried one; not unique across users.
    pub email: Option<String>,
    /// Display name from the OAuth profile.
    pub name: Option<String>,
    #[allow(missing_docs)]
    pub given_name: Option<String>,
    #[allow(missing_docs)]
    pub family_name: Option<String>,
    /// A locale tag such as `en` or `de-DE`, as the provider sent it.
    pub locale: Option<String>,
    #[allow(missing_docs)]
    pub avatar_url: Option<String>,
    /// The admin account ([`ensure_admin`]) and users promoted by hand.
    pub is_admin: bool,
    /// The free first plan was used ([`claim_free_plan`]).
    pub free_plan_used: bool,
    /// Credits; equals the sum of the user's `credit_history.delta` (see `credit_history`).
    pub credits_balance: Decimal,
    /// UTC time of the last sign-in.
    pub last_login_at: Option<DateTime<Utc>>,
    /// Frontend preferences, e.g. `{"plan_page": {"selected_segment": "info"}}`.
    pub frontend_multi_user_config: Option<LossyJson>,
}

impl UserAccount {
    fn normalized(mut self) -> Self {
        self.frontend_multi_user_config = json_absent(self.frontend_multi_user_config);
        self
    }
}

/// A user by id. [`Error::NotFound`] if absent. One round trip.
#[tracing::instrument(skip_all, fields(%id))]
pub async fn get(ex: impl PgExecutor<'_>, id: Uuid) -> Result<UserAccount> {
    sqlx::query_as!(
        UserAccount,
        r#"SELECT id, created_at, updated_at, email, name, given_name, family_name, locale,
                  avatar_url, is_admin, free_plan_used, credits_balance, last_login_at,
                  frontend_multi_user_config
           FROM user_account WHERE id = $1"#,
        id,
    )
    .fetch_optional(ex)
    .await?
    .map(UserAccount::normalized)
    .ok_or(Error::NotFound)
}

/// The deterministic id of the admin account: `uuid5(NAMESPACE_URL, "planexe-admin-pref:<name>")`,
/// as the Python frontend computes it.
pub fn admin_id(admin_username: &str) -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_URL,
        format!("planexe-admin-pref:{admin_username}").as_bytes(),
    )
}

/// The admin account, created on first use (`is_admin = true`, name "Admin") under its
/// deterministic id ([`admin_id`]). Race-free (`INSERT … ON CONFLICT (id) DO UPDATE`); one round trip.
#[tracing::instrument(skip_all)]
pub async fn ensure_admin(ex: impl PgExecutor<'_>, admin_username: &str) -> Result<UserAccount> {
    Ok(sqlx::query_as!(
        UserAccount,
        r#"INSERT INTO user_account (id, created_at, updated_at, name, is_admin, free_plan_used,
                                    credits_balance)
           VALUES ($1, now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc', 'Admin', true, false, 0)
           ON CONFLICT (id) DO UPDATE SET is_admin = true
           RETURNING id, created_at, updated_at, email, name, given_name, family_name, locale,
                     avatar_url, is_admin, free_plan_used, credits_balance, last_login_at,
                     frontend_multi_user_config"#,
        admin_id(admin_username),
    )
    .fetch_one(ex)
    .await?
    .normalized())
}

/// The OAuth profile a sign-in brings.
#[derive(Debug, Clone, Default)]
pub struct OAuthProfile<'a> {
    /// `google`, `github` or `discord`.
    pub provider: &'a str,
    /// The provider's user id (`sub` or `id`), at most 256 characters (refused, never cut).
    pub provider_user_id: &'a str,
    /// Profile fields: `None` or empty keeps what the user row holds; longer text is cut to the
    /// column width (256 for e-mail and name, 128 for given/family name, 64 for the locale, 512
    /// for the avatar URL).
    pub email: Option<&'a str>,
    #[allow(missing_docs)]
    pub name: Option<&'a str>,
    #[allow(missing_docs)]
    pub given_name: Option<&'a str>,
    #[allow(missing_docs)]
    pub family_name: Option<&'a str>,
    #[allow(missing_docs)]
    pub locale: Option<&'a str>,
    #[allow(missing_docs)]
    pub avatar_url: Option<&'a str>,
    /// The full provider profile, stored on the link.
    pub raw_profile: Option<&'a Value>,
}

/// Result of [`sign_in`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SignIn {
    /// The user, after the sign-in.
    pub user: UserAccount,
    /// The user row was created by this sign-in.
    pub created: bool,
}

/// Sign a user in from an OAuth profile, keyed by (provider, provider user id).
///
/// One statement: upsert the `user_provider` link on `uq_user_provider_provider_user_id` (a new
/// link gets a new user id; an existing one keeps its user), then upsert that `user_account` row.
/// Profile fields are overwritten only with non-empty values; `last_login_at` is set on both rows.
/// Concurrent first sign-ins of one identity produce one user and one link, and a link whose user row
/// is missing (possible with the Python two-commit insert) gets its user row back instead of a
/// second user. Safe to repeat. The identity is never cut: a provider longer than 32 or a provider
/// user id longer than 256 characters is [`Error::InvalidInput`] naming the field; profile text is
/// content and is cut to its column. One round trip.
#[tracing::instrument(skip_all)]
pub async fn sign_in(ex: impl PgExecutor<'_>, profile: &OAuthProfile<'_>) -> Result<SignIn> {
    let provider = ident("OAuth provider", profile.provider, 32)?;
    let provider_user_id = ident("provider user id", profile.provider_user_id, 256)?;
    if provider.is_empty() || provider_user_id.is_empty() {
        return Err(Error::invalid_input(
            "provider and provider user id are required",
        ));
    }
    let row = sqlx::query!(
        r#"WITH link AS (
               INSERT INTO user_provider (id, user_id, provider, provider_user_id, email,
                                          raw_profile, created_at, last_login_at)
               VALUES (gen_random_uuid(), gen_random_uuid(), $1, $2, $3, $4::text::json,
                       now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc')
               ON CONFLICT (provider, provider_user_id) DO UPDATE
                  SET email = coalesce(nullif(EXCLUDED.email, ''), user_provider.email),
                      raw_profile = coalesce(EXCLUDED.raw_profile, user_provider.raw_profile),
                      last_login_at = EXCLUDED.last_login_at
               RETURNING user_id)
           INSERT INTO user_account AS u (id, created_at, updated_at, email, name, given_name,
                                          family_name, locale, avatar_url, is_admin,
                                          free_plan_used, credits_balance, last_login_at)
           SELECT link.user_id, now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc',
                  nullif($3, ''), nullif($5, ''), nullif($6, ''), nullif($7, ''), nullif($8, ''),
                  nullif($9, ''), false, false, 0, now() AT TIME ZONE 'utc'
           FROM link
           ON CONFLICT (id) DO UPDATE
              SET email = coalesce(EXCLUDED.email, u.email),
                  name = coalesce(EXCLUDED.name, u.name),
                  given_name = coalesce(EXCLUDED.given_name, u.given_name),
                  family_name = coalesce(EXCLUDED.family_name, u.family_name),
                  locale = coalesce(EXCLUDED.locale, u.locale),
                  avatar_url = coalesce(EXCLUDED.avatar_url, u.avatar_url),
                  last_login_at = EXCLUDED.last_login_at,
                  updated_at = EXCLUDED.updated_at
           RETURNING id, created_at, updated_at, email, name, given_name, family_name, locale,
                     avatar_url, is_admin, free_plan_used, credits_balance, last_login_at,
                     frontend_multi_user_config, (xmax = 0) AS "created!""#,
        provider,
        provider_user_id,
        clean_opt(profile.email, 256),
        json_text(profile.raw_profile),
        clean_opt(profile.name, 256),
        clean_opt(profile.given_name, 128),
        clean_opt(profile.family_name, 128),
        clean_opt(profile.locale, 64),
        clean_opt(profile.avatar_url, 512),
    )
    .fetch_one(ex)
    .await?;
    Ok(SignIn {
        created: row.created,
        user: UserAccount {
            id: row.id,
            created_at: row.created_at,
            updated_at: row.updated_at,
            email: row.email,
            name: row.name,
            given_name: row.given_name,
            family_name: row.family_name,
            locale: row.locale,
            avatar_url: row.avatar_url,
            is_admin: row.is_admin,
            free_plan_used: row.free_plan_used,
            credits_balance: row.credits_balance,
            last_login_at: row.last_login_at,
            frontend_multi_user_config: json_absent(row.frontend_multi_user_config),
        },
    })
}

/// The longest key [`claim_free_plan`] accepts, in characters (refused when longer, never cut).
pub const MAX_FREE_PLAN_CLAIM_KEY_CHARS: usize = 128;

/// A free-plan claim key after its input rule (shared with the SQLite backend): NUL bytes
/// removed, then 1..=[`MAX_FREE_PLAN_CLAIM_KEY_CHARS`] characters, else [`Error::InvalidInput`].
pub fn free_plan_claim_key(claim_key: &str) -> Result<String> {
    let claim_key = ident(
        "free plan claim key",
        claim_key,
        MAX_FREE_PLAN_CLAIM_KEY_CHARS,
    )?;
    if claim_key.is_empty() {
        return Err(Error::invalid_input(
            "free plan claim key must not be empty",
        ));
    }
    Ok(claim_key)
}

/// Use the user's free first plan on behalf of the request `claim_key` (the caller's request or
/// plan id, 1..=[`MAX_FREE_PLAN_CLAIM_KEY_CHARS`] characters): sets `free_plan_used` and records
/// the key if the plan was not used yet. `true` when this request used it, `false` when another
/// request (or a Python service) did.
///
/// Follows the replay contract of the [module docs](super): a repeat with the same key — after a
/// connection lost at COMMIT, or while the first is still in flight (it waits for the first on the
/// user row) — answers `true` again, so a caller that retries never charges for the plan that used
/// the free one. Concurrent claims with different keys: exactly one gets `true`. The key is
/// scoped to the user. [`Error::InvalidInput`] for an empty or overlong key; [`Error::NotFound`]
/// if the user does not exist. One round trip.
#[tracing::instrument(skip_all, fields(%user_id))]
pub async fn claim_free_plan(
    ex: impl PgExecutor<'_>,
    user_id: Uuid,
    claim_key: &str,
) -> Result<bool> {
    let claim_key = free_plan_claim_key(claim_key)?;
    let row = sqlx::query!(
        r#"WITH cur AS (
               -- the newest row version: a claim in flight is waited for
               SELECT id, free_plan_used, free_plan_claim_key FROM user_account
               WHERE id = $1 FOR UPDATE),
           upd AS (
               -- use the free plan for this key, if nobody did
               UPDATE user_account u
                  SET free_plan_used = true, free_plan_claim_key = $2,
                      updated_at = now() AT TIME ZONE 'utc'
               FROM cur WHERE u.id = cur.id AND cur.free_plan_used IS NOT TRUE
               RETURNING u.id)
           SELECT (EXISTS (SELECT 1 FROM upd)
                   OR cur.free_plan_claim_key IS NOT DISTINCT FROM $2) AS "claimed!"
           FROM cur"#,
        user_id,
        claim_key,
    )
    .fetch_optional(ex)
    .await?
    .ok_or(Error::NotFound)?;
    Ok(row.claimed)
}

/// Who pays for a plan, as the Python worker decides: the `user_account` whose id is `plan_user_id`
/// if it parses as a UUID and exists, else the first admin account. One round trip.
#[tracing::instrument(skip_all)]
pub async fn billing_user_for_plan(
    ex: impl PgExecutor<'_>,
    plan_user_id: Option<&str>,
) -> Result<Option<Uuid>> {
    let as_uuid = plan_user_id.and_then(|s| Uuid::parse_str(s).ok());
    Ok(sqlx::query_scalar!(
        r#"SELECT id AS "id!" FROM (
               (SELECT id, 0 AS rank FROM user_account WHERE id = $1)
               UNION ALL
               (SELECT id, 1 AS rank FROM user_account WHERE is_admin
                ORDER BY created_at NULLS LAST, id LIMIT 1)) candidates
           ORDER BY rank LIMIT 1"#,
        as_uuid,
    )
    .fetch_optional(ex)
    .await?)
}
