//! `user_provider` on SQLite: the OAuth identities linked to users, with
//! [`shared_db::planexe::user_provider::UserProvider`] rows. Links are written by
//! [`super::user_account::sign_in`], which writes both tables.

use chrono::{DateTime, Utc};
use shared_db::planexe::user_provider::UserProvider;
use shared_db::planexe::{MAX_PAGE_ROWS, ident};
use shared_db::{Error, Result};
use sqlx::SqliteConnection;
use uuid::Uuid;

use super::{hex, json, uuid};
use crate::error::from_sqlx;

/// A `user_provider` row as SQLite returns it; [`LinkRow::into_link`] makes it the library's.
struct LinkRow {
    id: String,
    user_id: String,
    provider: String,
    provider_user_id: String,
    email: Option<String>,
    raw_profile: Option<String>,
    created_at: Option<DateTime<Utc>>,
    last_login_at: Option<DateTime<Utc>>,
}

impl LinkRow {
    fn into_link(self) -> Result<UserProvider> {
        Ok(UserProvider {
            id: uuid(&self.id)?,
            user_id: uuid(&self.user_id)?,
            provider: self.provider,
            provider_user_id: self.provider_user_id,
            email: self.email,
            raw_profile: json(self.raw_profile),
            created_at: self.created_at,
            last_login_at: self.last_login_at,
        })
    }
}

/// The link of one provider identity, as
/// [`shared_db::planexe::user_provider::get_by_identity`]: [`Error::NotFound`] if absent;
/// [`Error::InvalidInput`] for ids longer than sign-in accepts (32 and 256 characters). NUL
/// bytes are stripped, so the lookup finds what a sign-in with the same input stored.
#[tracing::instrument(target = "shared_db_sqlite::planexe::user_provider", skip_all)]
pub async fn get_by_identity(
    conn: &mut SqliteConnection,
    provider: &str,
    provider_user_id: &str,
) -> Result<UserProvider> {
    let provider = ident("OAuth provider", provider, 32)?;
    let provider_user_id = ident("provider user id", provider_user_id, 256)?;
    sqlx::query_as!(
        LinkRow,
        r#"SELECT id AS "id!", user_id AS "user_id!", provider AS "provider!",
                  provider_user_id AS "provider_user_id!", email AS "email?",
                  raw_profile AS "raw_profile?", created_at AS "created_at?: DateTime<Utc>",
                  last_login_at AS "last_login_at?: DateTime<Utc>"
           FROM user_provider WHERE provider = ?1 AND provider_user_id = ?2"#,
        provider,
        provider_user_id,
    )
    .fetch_optional(conn)
    .await
    .map_err(from_sqlx)?
    .ok_or(Error::NotFound)?
    .into_link()
}

/// The links of a user, oldest first (rows without a time last, as on PostgreSQL, then by id):
/// at most [`MAX_PAGE_ROWS`]. Served by `ix_user_provider_user_id`.
#[tracing::instrument(target = "shared_db_sqlite::planexe::user_provider", skip_all, fields(%user_id))]
pub async fn list_for_user(
    conn: &mut SqliteConnection,
    user_id: Uuid,
) -> Result<Vec<UserProvider>> {
    let rows = sqlx::query_as!(
        LinkRow,
        r#"SELECT id AS "id!", user_id AS "user_id!", provider AS "provider!",
                  provider_user_id AS "provider_user_id!", email AS "email?",
                  raw_profile AS "raw_profile?", created_at AS "created_at?: DateTime<Utc>",
                  last_login_at AS "last_login_at?: DateTime<Utc>"
           FROM user_provider WHERE user_id = ?1
           ORDER BY created_at NULLS LAST, id LIMIT ?2"#,
        hex(user_id),
        MAX_PAGE_ROWS,
    )
    .fetch_all(conn)
    .await
    .map_err(from_sqlx)?;
    rows.into_iter().map(LinkRow::into_link).collect()
}
