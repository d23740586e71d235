//! `shop.orders` and the per-shop `shop.order_counters`.
//!
//! - `customer_order_id` is allocated per shop by bumping the shop's counter row with one
//!   `INSERT … ON CONFLICT DO UPDATE … RETURNING` inside the order's transaction: concurrent
//!   creations queue on that row, a rolled-back creation gives its number back, so the numbers
//!   are unique (`uq_orders_shop_id_customer_order_id`) and gap-free.
//! - `order_info` is a JSON array of typed [`OrderItem`]s; prices in it are strings with the
//!   money scale (`"19.90"`, see [`super::money`]).
//! - Status moves `pending → complete` ([`complete`]) or `pending → cancelled` ([`cancel`]);
//!   anything else is [`Error::InvalidTransition`].
//! - Completing decrements stock for every item under row locks taken in product-id order (no
//!   deadlocks between concurrent completions) with `stock >= quantity` in the same `UPDATE`;
//!   if any product lacks stock the whole completion is undone and the caller gets
//!   [`Error::InsufficientStock`].
//! - Safe to repeat after an unknown outcome (a connection lost around COMMIT): [`create`] with
//!   an idempotency key returns the order the first call placed, and [`complete`] by the same
//!   user returns the completed order instead of [`Error::InvalidTransition`]. Stock is taken
//!   once. Both may therefore run under [`crate::tx::RetryPolicy::idempotent`] (a keyless create
//!   may not).

mod lifecycle;
mod status;

// The submodules' spans name `shared_db::shop::orders` as their target, so logs and metrics keep one name per
// function (its public path) whichever file holds it.
pub use lifecycle::{cancel, complete, create, delete, update};
pub use status::OrderStatus;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgExecutor, Postgres, QueryBuilder, types::Json};
use uuid::Uuid;

use super::input::{self, LONG_TEXT};
use super::list::{
    self, Cursor, Filters, KeysetPage, ListPage, ListParams, Spec, eq_col, sort_col, text_col,
};
use super::{ProductId, ShopId, money};
use crate::{Error, Result};

/// Most items one order may hold.
pub const MAX_ITEMS: usize = 500;

/// One line of `order_info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderItem {
    /// Free text shown on the invoice line, at most 1000 characters.
    #[serde(default)]
    pub description: Option<String>,
    /// Unit price at the time of ordering ([`super::money`] rules; stored as `"19.90"`).
    pub price: Decimal,
    /// The product (of the order's shop).
    pub product_id: ProductId,
    /// Product name at the time of ordering, at most 255 characters.
    pub product_name: String,
    /// Units, positive.
    pub quantity: i32,
}

/// The items of an order (`order_info`).
pub type OrderItems = Vec<OrderItem>;

/// A row of `shop.orders`.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Order {
    /// Primary key.
    pub id: Uuid,
    /// Number of the order within its shop: 1, 2, 3, … without gaps.
    pub customer_order_id: i32,
    /// Free text from the customer or the admin.
    pub notes: Option<String>,
    /// Owning shop.
    pub shop_id: ShopId,
    /// Customer account of the same shop; `None` for guest orders.
    pub account_id: Option<Uuid>,
    /// The items as ordered.
    pub order_info: Json<OrderItems>,
    /// When the order was placed.
    pub created_at: DateTime<Utc>,
    /// Amount charged ([`super::money`]); `None` when not computed yet.
    pub total: Option<Decimal>,
    /// Where the order is in its lifecycle.
    pub status: OrderStatus,
    /// Member of the shop who completed it; `None` while not complete, or after that user left
    /// the shop.
    pub completed_by: Option<Uuid>,
    /// When it was completed; set exactly when `status` is `complete`.
    pub completed_at: Option<DateTime<Utc>>,
    /// The caller's key of the [`create`] that placed it; `None` when created without one.
    pub idempotency_key: Option<Uuid>,
}

/// Everything an order's create and update write (the shop comes from the caller's scope).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct OrderFields {
    /// Customer account of the shop.
    pub account_id: Option<Uuid>,
    /// Free text, at most [`LONG_TEXT`] characters.
    pub notes: Option<String>,
    /// The items, at most [`MAX_ITEMS`].
    pub items: OrderItems,
    /// Amount to charge ([`super::money`] rules).
    pub total: Option<Decimal>,
}

impl OrderFields {
    /// Validates the fields and returns them as stored (money with two decimals).
    fn checked(&self) -> Result<OrderFields> {
        input::opt_text("notes", self.notes.as_deref(), LONG_TEXT)?;
        if self.items.len() > MAX_ITEMS {
            return Err(Error::invalid_input(format!(
                "items: at most {MAX_ITEMS} per order"
            )));
        }
        let mut items = Vec::with_capacity(self.items.len());
        for item in &self.items {
            if item.quantity <= 0 {
                return Err(Error::invalid_input(format!(
                    "items.quantity of product {} must be positive",
                    item.product_id
                )));
            }
            input::text("items.product_name", &item.product_name, 255)?;
            input::opt_text("items.description", item.description.as_deref(), 1000)?;
            items.push(OrderItem {
                price: money::check("items.price", item.price)?,
                ..item.clone()
            });
        }
        Ok(OrderFields {
            account_id: self.account_id,
            notes: self.notes.clone(),
            items,
            total: money::check_opt("total", self.total)?,
        })
    }
}

/// List definition: filter `status`, `notes`, `account_name` (substring), `account_id`,
/// `completed_by` (uuid), `customer_order_id` (int); sort those plus `created_at`,
/// `completed_at`, `total`; bare search over notes and the account name.
pub static LIST: Spec = Spec {
    unit: "orders",
    select: "o.id, o.customer_order_id, o.notes, o.shop_id, o.account_id, o.order_info, \
             o.created_at, o.total, o.status, o.completed_by, o.completed_at, o.idempotency_key",
    from: "shop.orders o LEFT JOIN shop.accounts a ON a.shop_id = o.shop_id AND a.id = o.account_id",
    shop_column: Some("o.shop_id"),
    id: "o.id",
    columns: &[
        text_col!("status", "o.status::text"),
        text_col!("notes", "o.notes"),
        text_col!("account_name", "a.name"),
        eq_col!("account_id", "o.account_id", Uuid),
        eq_col!("completed_by", "o.completed_by", Uuid),
        eq_col!("customer_order_id", "o.customer_order_id", Int),
        sort_col!("created_at", "o.created_at"),
        sort_col!("completed_at", "o.completed_at"),
        sort_col!("total", "o.total"),
    ],
    search: &["o.notes", "a.name"],
};

/// Fetches an order of the shop.
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn get(exec: impl PgExecutor<'_>, shop_id: ShopId, id: Uuid) -> Result<Order> {
    sqlx::query_as!(
        Order,
        r#"SELECT id, customer_order_id, notes, shop_id, account_id, order_info, created_at, total,
                  status, completed_by, completed_at, idempotency_key
           FROM shop.orders WHERE shop_id = $1 AND id = $2"#,
        shop_id.get(),
        id
    )
    .fetch_optional(exec)
    .await?
    .ok_or(Error::NotFound)
}

/// Fetches an order of the shop by its customer order number.
#[tracing::instrument(skip_all, fields(%shop_id, customer_order_id))]
pub async fn get_by_customer_order_id(
    exec: impl PgExecutor<'_>,
    shop_id: ShopId,
    customer_order_id: i32,
) -> Result<Order> {
    sqlx::query_as!(
        Order,
        r#"SELECT id, customer_order_id, notes, shop_id, account_id, order_info, created_at, total,
                  status, completed_by, completed_at, idempotency_key
           FROM shop.orders WHERE shop_id = $1 AND customer_order_id = $2"#,
        shop_id.get(),
        customer_order_id
    )
    .fetch_optional(exec)
    .await?
    .ok_or(Error::NotFound)
}

/// Lists the shop's orders (offset pagination, at most [`list::MAX_LIMIT`] rows).
#[tracing::instrument(skip_all, fields(%shop_id))]
pub async fn list(
    conn: &mut PgConnection,
    shop_id: ShopId,
    params: &ListParams,
) -> Result<ListPage<Order>> {
    list::fetch::<Order, _>(conn, &LIST, Some(shop_id), params).await
}

/// Keyset (cursor) pagination over the shop's orders, newest first (descending
/// `customer_order_id`, unique per shop). `filter` works as in [`list()`]; `after` is the `next`
/// cursor of the previous page; `limit` is 1..=[`list::MAX_LIMIT`].
#[tracing::instrument(skip_all, fields(%shop_id))]
pub async fn list_after(
    conn: &mut PgConnection,
    shop_id: ShopId,
    filter: &[String],
    after: Option<&Cursor>,
    limit: i64,
) -> Result<KeysetPage<Order>> {
    let limit = list::check_limit(limit)?;
    let filters = Filters::parse(&LIST, filter)?;
    let after = after.map(Cursor::key::<i32>).transpose()?;
    let mut qb = QueryBuilder::<Postgres>::new("SELECT ");
    qb.push(LIST.select).push(" FROM ").push(LIST.from);
    filters.push_where(&mut qb, &LIST, Some(shop_id));
    if let Some(after) = after {
        qb.push(" AND o.customer_order_id < ").push_bind(after);
    }
    qb.push(" ORDER BY o.customer_order_id DESC LIMIT ")
        .push_bind(limit + 1);
    let items: Vec<Order> = qb.build_query_as().fetch_all(&mut *conn).await?;
    Ok(list::keyset_page(items, limit, |o: &Order| {
        o.customer_order_id
    }))
}
