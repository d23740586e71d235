//! `shop.users`: local accounts of the admin API (legacy; production logs in through Cognito).
//!
//! Passwords are stored only as bcrypt hashes (the `bcrypt` crate). Hashes written by the old
//! backend (passlib bcrypt, `$2b$`/`$2a$`/`$2y$`) verify unchanged. Every bcrypt call runs on
//! tokio's blocking pool (`spawn_blocking`), never on the async worker threads; and
//! [`authenticate`] spends the same bcrypt work on an unknown e-mail as on a wrong password, so
//! its timing does not tell which accounts exist.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{Connection, PgConnection, PgExecutor};
use uuid::Uuid;

use super::input;
use super::list::{self, ListPage, ListParams, Spec, eq_col, sort_col, text_col};
use crate::{Error, Result};

/// A row of `shop.users`.
#[derive(Clone, Serialize, sqlx::FromRow)]
pub struct User {
    /// Primary key.
    pub id: Uuid,
    /// Login e-mail, unique; `None` for users who log in by username only.
    pub email: Option<String>,
    /// Given name, for display.
    pub first_name: Option<String>,
    /// Family name, for display.
    pub last_name: Option<String>,
    /// Login name, unique; `None` for users who log in by e-mail only.
    pub username: Option<String>,
    /// bcrypt hash; `None`: no local password (cannot log in here). Never serialized, redacted
    /// in Debug.
    #[serde(skip_serializing)]
    pub password: Option<String>,
    /// Whether the user may log in.
    pub active: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// When the e-mail was confirmed; `None`: not yet.
    pub confirmed_at: Option<DateTime<Utc>>,
    /// Opted in to offer mails.
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
    /// Checks a plaintext password against the stored hash, on the blocking pool (false when none
    /// is set or the hash is malformed).
    pub async fn verify_password(&self, plaintext: &str) -> Result<bool> {
        match &self.password {
            Some(hash) => verify(plaintext, hash).await,
            None => Ok(false),
        }
    }
}

/// Everything a user's create and update write. `password` is plaintext, is hashed before it
/// reaches SQL, and is used by [`create`] only ([`update`] leaves the password alone; see
/// [`set_password`]). Text fields hold at most 255 characters.
#[derive(Clone, Default, Deserialize)]
pub struct UserFields {
    /// Login e-mail.
    pub email: Option<String>,
    /// Given name.
    pub first_name: Option<String>,
    /// Family name.
    pub last_name: Option<String>,
    /// Login name.
    pub username: Option<String>,
    /// Plaintext password, at most 72 bytes (bcrypt ignores anything longer, so it is refused).
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

impl UserFields {
    fn check(&self) -> Result<()> {
        input::opt_text("email", self.email.as_deref(), 255)?;
        input::opt_text("first_name", self.first_name.as_deref(), 255)?;
        input::opt_text("last_name", self.last_name.as_deref(), 255)?;
        input::opt_text("username", self.username.as_deref(), 255)?;
        Ok(())
    }
}

impl std::fmt::Debug for UserFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserFields")
            .field("email", &self.email)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// bcrypt cost used for new hashes.
pub const BCRYPT_COST: u32 = bcrypt::DEFAULT_COST;

/// A bcrypt hash of cost [`BCRYPT_COST`] that no password matches (an all-zero salt and digest):
/// verifying against it costs the same as verifying a real hash.
const NO_USER_HASH: &str = "$2b$12$.....................................................";

/// A bcrypt task that panicked or was cancelled: a failure inside the library, not the caller's.
fn task_failed(e: tokio::task::JoinError) -> Error {
    Error::internal(format!("password task failed: {e}"))
}

fn check_password(plaintext: &str) -> Result<()> {
    input::text("password", plaintext, 72)?;
    if plaintext.len() > 72 {
        return Err(Error::invalid_input("password is longer than 72 bytes"));
    }
    if plaintext.is_empty() {
        return Err(Error::invalid_input("password is required"));
    }
    Ok(())
}

/// Hashes a password with bcrypt on the blocking pool.
#[tracing::instrument(skip_all)]
pub async fn hash_password(plaintext: &str) -> Result<String> {
    check_password(plaintext)?;
    let plaintext = plaintext.to_owned();
    tokio::task::spawn_blocking(move || bcrypt::hash(plaintext, BCRYPT_COST))
        .await
        .map_err(task_failed)?
        .map_err(|e| Error::internal(format!("password hashing failed: {e}")))
}

/// bcrypt verification on the blocking pool; a malformed hash is a mismatch.
async fn verify(plaintext: &str, hash: &str) -> Result<bool> {
    let plaintext = plaintext.to_owned();
    let hash = hash.to_owned();
    tokio::task::spawn_blocking(move || bcrypt::verify(plaintext, &hash).unwrap_or(false))
        .await
        .map_err(task_failed)
}

/// List definition: filter `email`, `first_name`, `last_name`, `username`, `active`; sort those
/// plus `created_at`; bare search over e-mail, names and username.
pub static LIST: Spec = Spec {
    unit: "users",
    select: "u.id, u.email, u.first_name, u.last_name, u.username, u.password, u.active, u.created_at, u.confirmed_at, u.mail_offers",
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
pub async fn create(exec: impl PgExecutor<'_>, new: &UserFields) -> Result<User> {
    new.check()?;
    let hash = match &new.password {
        Some(p) => Some(hash_password(p).await?),
        None => None,
    };
    Ok(sqlx::query_as!(
        User,
        r#"INSERT INTO shop.users (email, first_name, last_name, username, password, active, mail_offers)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           RETURNING id, email, first_name, last_name, username, password, active, created_at, confirmed_at, mail_offers"#,
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
    sqlx::query_as!(User, "SELECT id, email, first_name, last_name, username, password, active, created_at, confirmed_at, mail_offers FROM shop.users WHERE id = $1", id)
        .fetch_optional(exec)
        .await?
        .ok_or(Error::NotFound)
}

/// Fetches a user by e-mail.
#[tracing::instrument(skip_all)]
pub async fn get_by_email(exec: impl PgExecutor<'_>, email: &str) -> Result<User> {
    input::text("email", email, 255)?;
    sqlx::query_as!(User, "SELECT id, email, first_name, last_name, username, password, active, created_at, confirmed_at, mail_offers FROM shop.users WHERE email = $1", email)
        .fetch_optional(exec)
        .await?
        .ok_or(Error::NotFound)
}

/// Updates profile fields (not the password; see [`set_password`]).
#[tracing::instrument(skip_all, fields(%id))]
pub async fn update(exec: impl PgExecutor<'_>, id: Uuid, new: &UserFields) -> Result<User> {
    new.check()?;
    sqlx::query_as!(
        User,
        r#"UPDATE shop.users SET email = $2, first_name = $3, last_name = $4, username = $5,
               active = $6, mail_offers = $7
           WHERE id = $1
           RETURNING id, email, first_name, last_name, username, password, active, created_at, confirmed_at, mail_offers"#,
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
        "UPDATE shop.users SET confirmed_at = now() WHERE id = $1 RETURNING id, email, first_name, last_name, username, password, active, created_at, confirmed_at, mail_offers",
        id
    )
    .fetch_optional(exec)
    .await?
    .ok_or(Error::NotFound)
}

/// Looks a user up by e-mail and checks the password. A missing user, an inactive user and a
/// wrong password are all [`Error::NotFound`], so callers cannot tell them apart; each costs one
/// bcrypt verification (an unknown e-mail is checked against a hash no password matches), so
/// neither can the clock.
#[tracing::instrument(skip_all)]
pub async fn authenticate(exec: impl PgExecutor<'_>, email: &str, plaintext: &str) -> Result<User> {
    let user = match get_by_email(exec, email).await {
        Ok(user) => Some(user),
        Err(Error::NotFound) => None,
        Err(e) => return Err(e),
    };
    let hash = user.as_ref().and_then(|u| u.password.as_deref());
    let matches = verify(plaintext, hash.unwrap_or(NO_USER_HASH)).await? && hash.is_some();
    match user {
        Some(user) if matches && user.active => Ok(user),
        _ => Err(Error::NotFound),
    }
}

/// Deletes a user; their role and shop memberships go with them, orders they completed keep
/// `completed_by = NULL`. One transaction (a savepoint inside the caller's): nothing changes
/// unless the user goes.
#[tracing::instrument(skip_all, fields(%id))]
pub async fn delete(conn: &mut PgConnection, id: Uuid) -> Result<()> {
    let mut tx = conn.begin().await?;
    // On Citus the orders of every shop are updated over one connection per node before the
    // user (a reference table) is deleted in the same transaction; run in parallel, Citus
    // refuses that delete. A plain server keeps the setting as an unused placeholder, for this
    // transaction only.
    sqlx::query_scalar!(
        r#"SELECT set_config('citus.multi_shard_modify_mode', 'sequential', true) AS "mode!""#
    )
    .fetch_one(&mut *tx)
    .await?;
    // Orders they completed, in any shop, keep their state without them (a NO ACTION key:
    // Citus has no SET NULL on a key that includes shop_id).
    sqlx::query!(
        "UPDATE shop.orders SET completed_by = NULL WHERE completed_by = $1",
        id
    )
    .execute(&mut *tx)
    .await?;
    // The memberships go with the user (cascade).
    let done = sqlx::query!("DELETE FROM shop.users WHERE id = $1", id)
        .execute(&mut *tx)
        .await
        .map_err(super::still_referenced)?;
    super::one_row(done.rows_affected())?;
    tx.commit().await?;
    Ok(())
}

/// Lists users.
#[tracing::instrument(skip_all)]
pub async fn list(conn: &mut PgConnection, params: &ListParams) -> Result<ListPage<User>> {
    list::fetch::<User, _>(conn, &LIST, None, params).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn the_no_user_hash_is_a_well_formed_hash_of_the_default_cost() {
        let parts = bcrypt::HashParts::from_str(NO_USER_HASH).expect("parses");
        assert_eq!(parts.get_cost(), BCRYPT_COST);
        assert!(!bcrypt::verify("", NO_USER_HASH).expect("verifies"));
    }
}
