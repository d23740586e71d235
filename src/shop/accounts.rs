//! `shop.accounts`: a shop's customer accounts. `name` holds the customer e-mail (used as the
//! Stripe customer e-mail); `details` caches Stripe data (`stripe_customer_id`, …).
//!
//! Deleting an account deletes its orders (declared `ON DELETE CASCADE`, as in the existing
//! backend); if a license holds one of those orders the delete is refused as a whole with
//! [`Error::Conflict`] `fk_licenses_order_id_orders`.

use serde::Serialize;
use serde_json::Value;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::list::{self, ListPage, ListParams, Spec, text_col};
use super::{ShopId, input};
use crate::{Error, Result, ResultExt};

/// A row of `shop.accounts`.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Account {
    /// Primary key.
    pub id: Uuid,
    /// Owning shop.
    pub shop_id: ShopId,
    /// Customer e-mail (its SHA-256 hex after [`anonymise`]).
    pub name: Option<String>,
    /// SHA-256 hex of the name, set by [`anonymise`].
    pub hash_name: Option<String>,
    /// Stripe cache JSON.
    pub details: Option<Value>,
}

/// List definition: filter and sort `name`, `hash_name`, `stripe_customer_id`
/// (`details->>'stripe_customer_id'`); bare search over the name.
pub static LIST: Spec = Spec {
    unit: "accounts",
    select: "a.id, a.shop_id, a.name, a.hash_name, a.details",
    from: "shop.accounts a",
    shop_column: Some("a.shop_id"),
    id: "a.id",
    columns: &[
        text_col!("name", "a.name"),
        text_col!("hash_name", "a.hash_name"),
        text_col!("stripe_customer_id", "(a.details->>'stripe_customer_id')"),
    ],
    search: &["a.name"],
};

fn check(name: Option<&str>, details: Option<&Value>) -> Result<()> {
    input::opt_text("name", name, 255)?;
    input::opt_json("details", details)
}

/// Creates an account in the shop. Unknown shop: [`Error::NotFound`].
#[tracing::instrument(skip_all, fields(%shop_id))]
pub async fn create(
    exec: impl PgExecutor<'_>,
    shop_id: ShopId,
    name: Option<&str>,
    details: Option<&Value>,
) -> Result<Account> {
    check(name, details)?;
    sqlx::query_as!(
        Account,
        "INSERT INTO shop.accounts (shop_id, name, details) VALUES ($1, $2, $3) RETURNING id, shop_id, name, hash_name, details",
        shop_id.get(),
        name,
        details
    )
    .fetch_one(exec)
    .await
    .on_constraint("fk_accounts_shop_id_shops", |_| Error::NotFound)
}

/// Fetches an account of the shop.
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn get(exec: impl PgExecutor<'_>, shop_id: ShopId, id: Uuid) -> Result<Account> {
    sqlx::query_as!(
        Account,
        "SELECT id, shop_id, name, hash_name, details FROM shop.accounts WHERE shop_id = $1 AND id = $2",
        shop_id.get(),
        id
    )
    .fetch_optional(exec)
    .await?
    .ok_or(Error::NotFound)
}

/// Finds the shop's account cached for a Stripe customer id.
#[tracing::instrument(skip_all, fields(%shop_id))]
pub async fn get_by_stripe_customer_id(
    exec: impl PgExecutor<'_>,
    shop_id: ShopId,
    stripe_customer_id: &str,
) -> Result<Account> {
    input::text("stripe_customer_id", stripe_customer_id, 255)?;
    sqlx::query_as!(
        Account,
        r#"SELECT id, shop_id, name, hash_name, details FROM shop.accounts
           WHERE shop_id = $1 AND details->>'stripe_customer_id' = $2
           ORDER BY id LIMIT 1"#,
        shop_id.get(),
        stripe_customer_id
    )
    .fetch_optional(exec)
    .await?
    .ok_or(Error::NotFound)
}

/// Replaces an account's name and details.
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn update(
    exec: impl PgExecutor<'_>,
    shop_id: ShopId,
    id: Uuid,
    name: Option<&str>,
    details: Option<&Value>,
) -> Result<Account> {
    check(name, details)?;
    sqlx::query_as!(
        Account,
        "UPDATE shop.accounts SET name = $3, details = $4 WHERE shop_id = $1 AND id = $2 RETURNING id, shop_id, name, hash_name, details",
        shop_id.get(),
        id,
        name,
        details
    )
    .fetch_optional(exec)
    .await?
    .ok_or(Error::NotFound)
}

/// Anonymises an account: its name is replaced by the SHA-256 hex of the name (also stored in
/// `hash_name`, so the same customer can still be recognised) and the Stripe details are
/// dropped. Idempotent on an already anonymised account.
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn anonymise(exec: impl PgExecutor<'_>, shop_id: ShopId, id: Uuid) -> Result<Account> {
    sqlx::query_as!(
        Account,
        r#"UPDATE shop.accounts
           SET hash_name = coalesce(hash_name, shop.sha256_hex(name)),
               name = coalesce(hash_name, shop.sha256_hex(name)),
               details = NULL
           WHERE shop_id = $1 AND id = $2
           RETURNING id, shop_id, name, hash_name, details"#,
        shop_id.get(),
        id
    )
    .fetch_optional(exec)
    .await?
    .ok_or(Error::NotFound)
}

/// Deletes an account of the shop with its orders (all or nothing).
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn delete(exec: impl PgExecutor<'_>, shop_id: ShopId, id: Uuid) -> Result<()> {
    let done = sqlx::query!(
        "DELETE FROM shop.accounts WHERE shop_id = $1 AND id = $2",
        shop_id.get(),
        id
    )
    .execute(exec)
    .await
    .map_err(super::still_referenced)?;
    super::one_row(done.rows_affected())
}

/// Lists the shop's accounts.
#[tracing::instrument(skip_all, fields(%shop_id))]
pub async fn list(
    conn: &mut PgConnection,
    shop_id: ShopId,
    params: &ListParams,
) -> Result<ListPage<Account>> {
    list::fetch::<Account, _>(conn, &LIST, Some(shop_id), params).await
}
