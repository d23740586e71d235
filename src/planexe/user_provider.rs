//! `user_provider`: OAuth identities linked to users (`UserProvider`). Sign-in lives in
//! [`user_account::sign_in`](super::user_account::sign_in), which writes both tables.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;
use uuid::Uuid;

use super::json::LossyJson;
use super::{MAX_PAGE_ROWS, ident, json_absent};
use crate::error::{Error, Result};

/// One row of `user_provider`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserProvider {
    /// Primary key.
    pub id: Uuid,
    /// The `user_account` this identity signs in as.
    pub user_id: Uuid,
    /// `google`, `github` or `discord`.
    pub provider: String,
    /// The provider's user id.
    pub provider_user_id: String,
    /// E-mail at the provider, from the latest sign-in that carried one.
    pub email: Option<String>,
    /// The provider's profile JSON as received; SQL NULL and JSON `null` read as `None`.
    pub raw_profile: Option<LossyJson>,
    /// UTC.
    pub created_at: Option<DateTime<Utc>>,
    /// UTC time of the last sign-in through this link.
    pub last_login_at: Option<DateTime<Utc>>,
}

impl UserProvider {
    fn normalized(mut self) -> Self {
        self.raw_profile = json_absent(self.raw_profile);
        self
    }
}

/// The link of one provider identity. [`Error::NotFound`] if absent; [`Error::InvalidInput`] for ids
/// longer than sign-in accepts. One round trip.
#[tracing::instrument(skip_all)]
pub async fn get_by_identity(
    ex: impl PgExecutor<'_>,
    provider: &str,
    provider_user_id: &str,
) -> Result<UserProvider> {
    let provider = ident("OAuth provider", provider, 32)?;
    let provider_user_id = ident("provider user id", provider_user_id, 256)?;
    sqlx::query_as!(
        UserProvider,
        r#"SELECT id, user_id, provider, provider_user_id, email, raw_profile, created_at,
                  last_login_at
           FROM user_provider WHERE provider = $1 AND provider_user_id = $2"#,
        provider,
        provider_user_id,
    )
    .fetch_optional(ex)
    .await?
    .map(UserProvider::normalized)
    .ok_or(Error::NotFound)
}

/// The links of a user, oldest first: at most [`MAX_PAGE_ROWS`] (a user links a handful of
/// OAuth identities; the bound keeps a pathological one from returning an unbounded list).
/// Served by `ix_user_provider_user_id`. One round trip.
#[tracing::instrument(skip_all, fields(%user_id))]
pub async fn list_for_user(ex: impl PgExecutor<'_>, user_id: Uuid) -> Result<Vec<UserProvider>> {
    let rows = sqlx::query_as!(
        UserProvider,
        r#"SELECT id, user_id, provider, provider_user_id, email, raw_profile, created_at,
                  last_login_at
           FROM user_provider WHERE user_id = $1 ORDER BY created_at, id LIMIT $2"#,
        user_id,
        MAX_PAGE_ROWS,
    )
    .fetch_all(ex)
    .await?;
    Ok(rows.into_iter().map(UserProvider::normalized).collect())
}
