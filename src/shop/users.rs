//! `shop.users`: local accounts of the admin API (legacy; production logs in through Cognito).
//!
//! Passwords are stored only as bcrypt hashes (the `bcrypt` crate). Hashes written by the old
//! backend (passlib bcrypt, `$2b$`/`$2a$`/`$2y$`) verify unchanged.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::list::{self, ListParams, Page, Spec, eq_col, sort_col, text_col};
use crate::{Error, Result};

/// A row of `shop.users`.
#[derive(Clone, Serialize, sqlx::FromRow)]
pub struct User {
    /// Primary key.
    pub id: Uuid,
    /// Unique e-mail.
    pub email: Option<String>,
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: Option<String>,
    /// Unique username.
    pub username: Option<String>,
    /// bcrypt hash. Never serialized, redacted in Debug.
    #[serde(skip_serializing)]
    pub password: Option<String>,
    /// Whether the user may log in.
    pub active: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// When the e-mail was confirmed.
    pub confirmed_at: Option<DateTime<Utc>>,
    /// Opted in to offers.
    pub mail_offers: bool,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

impl User {
    /// Checks a plaintext password against the stored hash (false when none is set or the hash
    /// is malformed).
    pub fn verify_password(&self, plaintext: &str) -> bool {
        self.password
            .as_deref()
            .is_some_and(|hash| bcrypt::verify(plaintext, hash).unwrap_or(false))
    }
}

/// Fields of a new user. `password` is plaintext and is hashed before it reaches SQL.
#[derive(Clone, Default, Deserialize)]
pub struct NewUser {
    /// E-mail.
    pub email: Option<String>,
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: Option<String>,
    /// Username.
    pub username: Option<String>,
    /// Plaintext password (hashed with bcrypt).
    pub password: Option<String>,
    /// Whether the user may log in (default true).
    #[serde(default = "yes")]
    pub active: bool,
    /// Opted in to offers.
    #[serde(default)]
    pub mail_offers: bool,
}

fn yes() -> bool {
    true
}

impl std::fmt::Debug for NewUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser")
            .field("email", &self.email)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// bcrypt cost used for new hashes.
pub const BCRYPT_COST: u32 = bcrypt::DEFAULT_COST;

/// Hashes a password with bcrypt on the blocking pool.
#[tracing::instrument(skip_all)]
pub async fn hash_password(plaintext: &str) -> Result<String> {
    let plaintext = plaintext.to_owned();
    tokio::task::spawn_blocking(move || bcrypt::hash(plaintext, BCRYPT_COST))
        .await
        .map_err(|e| Error::internal(format!("password hashing failed: {e}")))?
        .map_err(|e| Error::internal(format!("password hashing failed: {e}")))
}

/// List definition: filter `email`, `first_name`, `last_name`, `username`, `active`; sort those
/// plus `created_at`; bare search over e-mail, names and username.
pub static LIST: Spec = Spec {
    unit: "users",
    select: "u.*",
    from: "shop.users u",
    shop_column: None,
    id: "u.id",
    columns: &[
        text_col!("email", "u.email"),
        text_col!("first_name", "u.first_name"),
        text_col!("last_name", "u.last_name"),
        text_col!("username", "u.username"),
        eq_col!("active", "u.active", Bool),
        sort_col!("created_at", "u.created_at"),
    ],
    search: &["u.email", "u.first_name", "u.last_name", "u.username"],
};

/// Creates a user; a taken e-mail or username is [`Error::Conflict`] (`uq_users_email`,
/// `uq_users_username`).
#[tracing::instrument(skip_all)]
pub async fn create(exec: impl PgExecutor<'_>, new: &NewUser) -> Result<User> {
    let hash = match &new.password {
        Some(p) => Some(hash_password(p).await?),
        None => None,
    };
    Ok(sqlx::query_as!(
        User,
        r#"INSERT INTO shop.users (email, first_name, last_name, username, password, active, mail_offers)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           RETURNING *"#,
        new.email,
        new.first_name,
        new.last_name,
        new.username,
        hash,
        new.active,
        new.mail_offers,
    )
    .fetch_one(exec)
    .await?)
}

/// Fetches a user.
#[tracing::instrument(skip_all, fields(%id))]
pub async fn get(exec: impl PgExecutor<'_>, id: Uuid) -> Result<User> {
    sqlx::query_as!(User, "SELECT * FROM shop.users WHERE id = $1", id)
        .fetch_optional(exec)
        .await?
        .ok_or(Error::NotFound)
}

/// Fetches a user by e-mail.
#[tracing::instrument(skip_all)]
pub async fn get_by_email(exec: impl PgExecutor<'_>, email: &str) -> Result<User> {
    sqlx::query_as!(User, "SELECT * FROM shop.users WHERE email = $1", email)
        .fetch_optional(exec)
        .await?
        .ok_or(Error::NotFound)
}

/// Updates profile fields (not the password; see [`set_password`]).
#[tracing::instrument(skip_all, fields(%id))]
pub async fn update(exec: impl PgExecutor<'_>, id: Uuid, new: &NewUser) -> Result<User> {
    sqlx::query_as!(
        User,
        r#"UPDATE shop.users SET email = $2, first_name = $3, last_name = $4, username = $5,
               active = $6, mail_offers = $7
           WHERE id = $1
           RETURNING *"#,
        id,
        new.email,
        new.first_name,
        new.last_name,
        new.username,
        new.active,
        new.mail_offers,
    )
    .fetch_optional(exec)
    .await?
    .ok_or(Error::NotFound)
}

/// Replaces the password hash.
#[tracing::instrument(skip_all, fields(%id))]
pub async fn set_password(exec: impl PgExecutor<'_>, id: Uuid, plaintext: &str) -> Result<()> {
    let hash = hash_password(plaintext).await?;
    let done = sqlx::query!(
        "UPDATE shop.users SET password = $2 WHERE id = $1",
        id,
        hash
    )
    .execute(exec)
    .await?;
    super::one_row(done.rows_affected())
}

/// Marks the e-mail as confirmed now.
#[tracing::instrument(skip_all, fields(%id))]
pub async fn confirm(exec: impl PgExecutor<'_>, id: Uuid) -> Result<User> {
    sqlx::query_as!(
        User,
        "UPDATE shop.users SET confirmed_at = now() WHERE id = $1 RETURNING *",
        id
    )
    .fetch_optional(exec)
    .await?
    .ok_or(Error::NotFound)
}

/// Looks a user up by e-mail and checks the password. A missing user, an inactive user and a
/// wrong password are all [`Error::NotFound`], so callers cannot tell them apart.
#[tracing::instrument(skip_all)]
pub async fn authenticate(exec: impl PgExecutor<'_>, email: &str, plaintext: &str) -> Result<User> {
    let user = get_by_email(exec, email).await?;
    let hash = user.password.clone();
    let plaintext = plaintext.to_owned();
    let ok = tokio::task::spawn_blocking(move || {
        hash.is_some_and(|h| bcrypt::verify(plaintext, &h).unwrap_or(false))
    })
    .await
    .unwrap_or(false);
    if ok && user.active {
        Ok(user)
    } else {
        Err(Error::NotFound)
    }
}

/// Deletes a user; their role and shop memberships go with them, orders they completed keep
/// `completed_by = NULL`.
#[tracing::instrument(skip_all, fields(%id))]
pub async fn delete(exec: impl PgExecutor<'_>, id: Uuid) -> Result<()> {
    let done = sqlx::query!("DELETE FROM shop.users WHERE id = $1", id)
        .execute(exec)
        .await
        .map_err(super::still_referenced)?;
    super::one_row(done.rows_affected())
}

/// Lists users.
#[tracing::instrument(skip_all)]
pub async fn list(conn: &mut PgConnection, params: &ListParams) -> Result<Page<User>> {
    list::fetch(conn, &LIST, None, params).await
}
