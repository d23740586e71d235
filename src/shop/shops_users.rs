//! `shop.shops_users`: which users may act for which shop.

use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::ShopId;
use super::list::{self, ListPage, ListParams, Spec, eq_col, text_col};
use crate::{Error, Result};

/// A row of `shop.shops_users`.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ShopUser {
    /// Primary key.
    pub id: Uuid,
    /// The member.
    pub user_id: Uuid,
    /// The shop.
    pub shop_id: ShopId,
}

/// List definition (a shop's memberships): filter and sort `user_id` (exact), `email`,
/// `username` (substring); bare search over e-mail and username.
pub static LIST: Spec = Spec {
    unit: "shops_users",
    select: "su.id, su.user_id, su.shop_id",
    from: "shop.shops_users su JOIN shop.users u ON u.id = su.user_id",
    shop_column: Some("su.shop_id"),
    id: "su.id",
    columns: &[
        eq_col!("user_id", "su.user_id", Uuid),
        text_col!("email", "u.email"),
        text_col!("username", "u.username"),
    ],
    search: &["u.email", "u.username"],
};

/// Makes a user a member of a shop (idempotent). A missing user or shop is
/// [`Error::NotFound`].
#[tracing::instrument(skip_all, fields(%shop_id, %user_id))]
pub async fn add(exec: impl PgExecutor<'_>, shop_id: ShopId, user_id: Uuid) -> Result<ShopUser> {
    sqlx::query_as!(
        ShopUser,
        r#"WITH ins AS (
               INSERT INTO shop.shops_users (shop_id, user_id) VALUES ($1, $2)
               ON CONFLICT (shop_id, user_id) DO NOTHING
               RETURNING id, user_id, shop_id)
           SELECT id AS "id!", user_id AS "user_id!", shop_id AS "shop_id!: ShopId" FROM ins
           UNION ALL
           SELECT id, user_id, shop_id FROM shop.shops_users WHERE shop_id = $1 AND user_id = $2"#,
        shop_id.get(),
        user_id
    )
    .fetch_one(exec)
    .await
    .map_err(|e| match Error::from(e) {
        Error::ForeignKey { .. } => Error::NotFound,
        e => e,
    })
}

/// Ends a membership; [`Error::NotFound`] if there was none.
#[tracing::instrument(skip_all, fields(%shop_id, %user_id))]
pub async fn remove(exec: impl PgExecutor<'_>, shop_id: ShopId, user_id: Uuid) -> Result<()> {
    let done = sqlx::query!(
        // orders the member completed keep their state, without the member (NO ACTION key:
        // Citus has no SET NULL on a key with shop_id)
        "WITH cleared AS (
             UPDATE shop.orders SET completed_by = NULL WHERE shop_id = $1 AND completed_by = $2)
         DELETE FROM shop.shops_users WHERE shop_id = $1 AND user_id = $2",
        shop_id.get(),
        user_id
    )
    .execute(exec)
    .await?;
    super::one_row(done.rows_affected())
}

/// Whether the user is a member of the shop.
#[tracing::instrument(skip_all, fields(%shop_id, %user_id))]
pub async fn is_member(exec: impl PgExecutor<'_>, shop_id: ShopId, user_id: Uuid) -> Result<bool> {
    Ok(sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM shop.shops_users WHERE shop_id = $1 AND user_id = $2) AS "member!""#,
        shop_id.get(),
        user_id
    )
    .fetch_one(exec)
    .await?)
}

/// [`Error::NotFound`] unless the user is a member of the shop: a guard for shop-scoped
/// operations (a non-member sees the shop as absent).
#[tracing::instrument(skip_all, fields(%shop_id, %user_id))]
pub async fn require_member(
    exec: impl PgExecutor<'_>,
    shop_id: ShopId,
    user_id: Uuid,
) -> Result<()> {
    if is_member(exec, shop_id, user_id).await? {
        Ok(())
    } else {
        Err(Error::NotFound)
    }
}

/// The ids of the shops a user belongs to.
#[tracing::instrument(skip_all, fields(%user_id))]
pub async fn shops_of(exec: impl PgExecutor<'_>, user_id: Uuid) -> Result<Vec<ShopId>> {
    Ok(sqlx::query_scalar!(
        "SELECT shop_id FROM shop.shops_users WHERE user_id = $1 ORDER BY shop_id",
        user_id
    )
    .fetch_all(exec)
    .await?)
}

/// Lists a shop's memberships.
#[tracing::instrument(skip_all, fields(%shop_id))]
pub async fn list(
    conn: &mut PgConnection,
    shop_id: ShopId,
    params: &ListParams,
) -> Result<ListPage<ShopUser>> {
    list::fetch::<ShopUser, _>(conn, &LIST, Some(shop_id), params).await
}
