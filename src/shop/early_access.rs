//! `shop.early_access`: early-access sign-ups, one per e-mail.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::input;
use super::list::{self, ListPage, ListParams, Spec, sort_col, text_col};
use crate::{Error, Result};

/// A row of `shop.early_access`.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct EarlyAccess {
    /// Primary key.
    pub id: Uuid,
    /// Address to notify, unique.
    pub email: String,
    /// Sign-up time.
    pub created_at: DateTime<Utc>,
}

/// List definition: filter and sort `email`; sort `created_at`; bare search over the e-mail.
pub static LIST: Spec = Spec {
    unit: "early_access",
    select: "e.id, e.email, e.created_at",
    from: "shop.early_access e",
    shop_column: None,
    id: "e.id",
    columns: &[
        text_col!("email", "e.email"),
        sort_col!("created_at", "e.created_at"),
    ],
    search: &["e.email"],
};

/// Signs an e-mail up. An e-mail already signed up is [`Error::Conflict`]
/// `uq_early_access_email`.
#[tracing::instrument(skip_all)]
pub async fn create(exec: impl PgExecutor<'_>, email: &str) -> Result<EarlyAccess> {
    input::name("email", email, 255)?;
    Ok(sqlx::query_as!(
        EarlyAccess,
        "INSERT INTO shop.early_access (email) VALUES ($1) RETURNING id, email, created_at",
        email
    )
    .fetch_one(exec)
    .await?)
}

/// Fetches a sign-up.
#[tracing::instrument(skip_all, fields(%id))]
pub async fn get(exec: impl PgExecutor<'_>, id: Uuid) -> Result<EarlyAccess> {
    sqlx::query_as!(
        EarlyAccess,
        "SELECT id, email, created_at FROM shop.early_access WHERE id = $1",
        id
    )
    .fetch_optional(exec)
    .await?
    .ok_or(Error::NotFound)
}

/// Deletes a sign-up.
#[tracing::instrument(skip_all, fields(%id))]
pub async fn delete(exec: impl PgExecutor<'_>, id: Uuid) -> Result<()> {
    let done = sqlx::query!("DELETE FROM shop.early_access WHERE id = $1", id)
        .execute(exec)
        .await?;
    super::one_row(done.rows_affected())
}

/// Lists sign-ups.
#[tracing::instrument(skip_all)]
pub async fn list(conn: &mut PgConnection, params: &ListParams) -> Result<ListPage<EarlyAccess>> {
    list::fetch::<EarlyAccess, _>(conn, &LIST, None, params).await
}
