//! `shop.orders` and the per-shop `shop.order_counters`.
//!
//! - `customer_order_id` is allocated per shop by bumping the shop's counter row with one
//!   `INSERT … ON CONFLICT DO UPDATE … RETURNING` inside the order's transaction: concurrent
//!   creations queue on that row, a rolled-back creation gives its number back, so the numbers
//!   are unique (`uq_orders_shop_id_customer_order_id`) and gap-free.
//! - `order_info` is a JSON array of typed [`OrderItem`]s.
//! - Status moves `pending → complete` ([`complete`]) or `pending → cancelled` ([`cancel`]);
//!   anything else is [`Error::InvalidTransition`].
//! - Completing decrements stock for every item under row locks taken in product-id order (no
//!   deadlocks between concurrent completions) with `stock >= quantity` in the same `UPDATE`;
//!   if any product lacks stock the whole completion is undone and the caller gets
//!   [`Error::InsufficientStock`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgExecutor, Postgres, QueryBuilder, types::Json};
use uuid::Uuid;

use super::list::{self, Filters, KeysetPage, ListParams, Page, Spec, eq_col, sort_col, text_col};
use crate::{Error, Result, ResultExt, tx};

/// Status of an order (PostgreSQL enum `shop.order_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "shop.order_status", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    /// Placed, not yet handled.
    Pending,
    /// Handled; stock was taken.
    Complete,
    /// Cancelled before completion.
    Cancelled,
}

impl OrderStatus {
    fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Complete => "complete",
            OrderStatus::Cancelled => "cancelled",
        }
    }
}

/// One line of `order_info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderItem {
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// Unit price at the time of ordering.
    pub price: f64,
    /// The product (of the order's shop).
    pub product_id: Uuid,
    /// Product name at the time of ordering.
    pub product_name: String,
    /// Units (positive).
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
    /// Notes.
    pub notes: Option<String>,
    /// Owning shop.
    pub shop_id: Uuid,
    /// Customer account (of the same shop).
    pub account_id: Option<Uuid>,
    /// Items.
    pub order_info: Json<OrderItems>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Total amount.
    pub total: Option<f64>,
    /// Status.
    pub status: OrderStatus,
    /// User who completed the order.
    pub completed_by: Option<Uuid>,
    /// When it was completed.
    pub completed_at: Option<DateTime<Utc>>,
}

/// Fields of a new order (the shop comes from the caller's scope).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NewOrder {
    /// Customer account of the shop.
    pub account_id: Option<Uuid>,
    /// Notes.
    pub notes: Option<String>,
    /// Items.
    pub items: OrderItems,
    /// Total amount.
    pub total: Option<f64>,
}

impl NewOrder {
    fn validate(&self) -> Result<()> {
        if let Some(item) = self.items.iter().find(|i| i.quantity <= 0) {
            return Err(Error::invalid_input(format!(
                "quantity of product {} must be positive",
                item.product_id
            )));
        }
        Ok(())
    }
}

/// List definition: filter `status`, `notes`, `account_name` (substring), `account_id`,
/// `completed_by` (uuid), `customer_order_id` (int); sort those plus `created_at`,
/// `completed_at`, `total`; bare search over notes and the account name.
pub static LIST: Spec = Spec {
    unit: "orders",
    select: "o.*",
    from: "shop.orders o LEFT JOIN shop.accounts a ON a.id = o.account_id",
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

/// Places an order in the shop with the next `customer_order_id`. Unknown shop, or an account
/// that is not the shop's: [`Error::NotFound`].
#[tracing::instrument(skip_all, fields(%shop_id))]
pub async fn create(conn: &mut PgConnection, shop_id: Uuid, new: &NewOrder) -> Result<Order> {
    new.validate()?;
    tx::transaction(conn, async |tx| {
        let number = sqlx::query_scalar!(
            r#"INSERT INTO shop.order_counters AS c (shop_id, last_customer_order_id) VALUES ($1, 1)
               ON CONFLICT (shop_id) DO UPDATE SET last_customer_order_id = c.last_customer_order_id + 1
               RETURNING last_customer_order_id"#,
            shop_id
        )
        .fetch_one(&mut *tx)
        .await
        .on_constraint("fk_order_counters_shop_id_shops", |_| Error::NotFound)?;
        let order = sqlx::query_as!(
            Order,
            r#"INSERT INTO shop.orders (customer_order_id, notes, shop_id, account_id, order_info, total)
               VALUES ($1, $2, $3, $4, $5, $6)
               RETURNING *"#,
            number,
            new.notes,
            shop_id,
            new.account_id,
            Json(&new.items) as _,
            new.total,
        )
        .fetch_one(&mut *tx)
        .await
        .on_constraint("fk_orders_account_id_accounts", |_| Error::NotFound)?;
        Ok(order)
    })
    .await
}

/// Fetches an order of the shop.
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn get(exec: impl PgExecutor<'_>, shop_id: Uuid, id: Uuid) -> Result<Order> {
    sqlx::query_as!(
        Order,
        "SELECT * FROM shop.orders WHERE shop_id = $1 AND id = $2",
        shop_id,
        id
    )
    .fetch_optional(exec)
    .await?
    .ok_or(Error::NotFound)
}

/// Fetches an order of the shop by its customer order number.
#[tracing::instrument(skip_all, fields(%shop_id))]
pub async fn get_by_customer_order_id(
    exec: impl PgExecutor<'_>,
    shop_id: Uuid,
    customer_order_id: i32,
) -> Result<Order> {
    sqlx::query_as!(
        Order,
        "SELECT * FROM shop.orders WHERE shop_id = $1 AND customer_order_id = $2",
        shop_id,
        customer_order_id
    )
    .fetch_optional(exec)
    .await?
    .ok_or(Error::NotFound)
}

/// Locks the order row for the rest of the transaction and returns its status and items.
async fn lock(
    conn: &mut PgConnection,
    shop_id: Uuid,
    id: Uuid,
) -> Result<(OrderStatus, OrderItems)> {
    let row = sqlx::query!(
        "SELECT status, order_info FROM shop.orders WHERE shop_id = $1 AND id = $2 FOR UPDATE",
        shop_id,
        id
    )
    .fetch_optional(conn)
    .await?
    .ok_or(Error::NotFound)?;
    Ok((row.status, row.order_info.0))
}

fn transition(from: OrderStatus, to: OrderStatus) -> Error {
    Error::InvalidTransition {
        from: from.as_str().into(),
        to: to.as_str().into(),
    }
}

/// Replaces the notes, items, account and total of a pending order.
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn update(
    conn: &mut PgConnection,
    shop_id: Uuid,
    id: Uuid,
    new: &NewOrder,
) -> Result<Order> {
    new.validate()?;
    tx::transaction(conn, async |tx| {
        let (status, _) = lock(&mut *tx, shop_id, id).await?;
        if status != OrderStatus::Pending {
            return Err(transition(status, OrderStatus::Pending));
        }
        let order = sqlx::query_as!(
            Order,
            r#"UPDATE shop.orders SET notes = $3, account_id = $4, order_info = $5, total = $6
               WHERE shop_id = $1 AND id = $2
               RETURNING *"#,
            shop_id,
            id,
            new.notes,
            new.account_id,
            Json(&new.items) as _,
            new.total,
        )
        .fetch_one(&mut *tx)
        .await
        .on_constraint("fk_orders_account_id_accounts", |_| Error::NotFound)?;
        Ok(order)
    })
    .await
}

/// Completes a pending order of the shop: takes the stock of every item (all or nothing) and
/// records who completed it and when.
///
/// Errors: [`Error::NotFound`] (no such order in the shop, or unknown user),
/// [`Error::InvalidTransition`] (not pending, e.g. completed concurrently),
/// [`Error::InsufficientStock`] (some product lacks stock; a product that no longer exists in the
/// shop counts as having none). On error nothing is changed.
#[tracing::instrument(skip_all, fields(%shop_id, order_id = %id, %completed_by))]
pub async fn complete(
    conn: &mut PgConnection,
    shop_id: Uuid,
    id: Uuid,
    completed_by: Uuid,
) -> Result<Order> {
    tx::transaction(conn, async |tx| {
        let (status, items) = lock(&mut *tx, shop_id, id).await?;
        if status != OrderStatus::Pending {
            return Err(transition(status, OrderStatus::Complete));
        }
        // one decrement per product, in product-id order: concurrent completions lock rows in the
        // same order and cannot deadlock
        let mut wanted: BTreeMap<Uuid, i32> = BTreeMap::new();
        for item in &items {
            // items written by another service are not trusted to be sane: no overflow, no
            // negative quantities
            let q = wanted.entry(item.product_id).or_default();
            *q = q.saturating_add(item.quantity.max(0));
        }
        for (product_id, quantity) in wanted {
            let taken = sqlx::query_scalar!(
                r#"UPDATE shop.products SET stock = stock - $3
                   WHERE shop_id = $1 AND id = $2 AND stock >= $3
                   RETURNING stock"#,
                shop_id,
                product_id,
                quantity
            )
            .fetch_optional(&mut *tx)
            .await?;
            if taken.is_none() {
                let available = sqlx::query_scalar!(
                    "SELECT stock FROM shop.products WHERE shop_id = $1 AND id = $2",
                    shop_id,
                    product_id
                )
                .fetch_optional(&mut *tx)
                .await?
                .unwrap_or(0);
                return Err(Error::InsufficientStock {
                    product_id,
                    requested: quantity,
                    available,
                });
            }
        }
        let order = sqlx::query_as!(
            Order,
            r#"UPDATE shop.orders SET status = 'complete', completed_by = $3, completed_at = now()
               WHERE shop_id = $1 AND id = $2
               RETURNING *"#,
            shop_id,
            id,
            completed_by
        )
        .fetch_one(&mut *tx)
        .await
        .on_constraint("fk_orders_completed_by_users", |_| Error::NotFound)?;
        Ok(order)
    })
    .await
}

/// Cancels a pending order of the shop (stock is untouched: it was never taken).
#[tracing::instrument(skip_all, fields(%shop_id, order_id = %id))]
pub async fn cancel(conn: &mut PgConnection, shop_id: Uuid, id: Uuid) -> Result<Order> {
    tx::transaction(conn, async |tx| {
        let (status, _) = lock(&mut *tx, shop_id, id).await?;
        if status != OrderStatus::Pending {
            return Err(transition(status, OrderStatus::Cancelled));
        }
        Ok(sqlx::query_as!(
            Order,
            r#"UPDATE shop.orders SET status = 'cancelled' WHERE shop_id = $1 AND id = $2 RETURNING *"#,
            shop_id,
            id
        )
        .fetch_one(&mut *tx)
        .await?)
    })
    .await
}

/// Deletes an order of the shop; held by a license: [`Error::Conflict`]
/// `fk_licenses_order_id_orders`. Its number is not reused.
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn delete(exec: impl PgExecutor<'_>, shop_id: Uuid, id: Uuid) -> Result<()> {
    let done = sqlx::query!(
        "DELETE FROM shop.orders WHERE shop_id = $1 AND id = $2",
        shop_id,
        id
    )
    .execute(exec)
    .await
    .map_err(super::still_referenced)?;
    super::one_row(done.rows_affected())
}

/// Lists the shop's orders (offset pagination).
#[tracing::instrument(skip_all, fields(%shop_id))]
pub async fn list(
    conn: &mut PgConnection,
    shop_id: Uuid,
    params: &ListParams,
) -> Result<Page<Order>> {
    list::fetch(conn, &LIST, Some(shop_id), params).await
}

/// Keyset (cursor) pagination over the shop's orders, newest first (descending
/// `customer_order_id`, unique per shop). The cursor is the last `customer_order_id` of the
/// previous page, as a decimal string; `filter` works as in [`list()`].
#[tracing::instrument(skip_all, fields(%shop_id))]
pub async fn list_after(
    conn: &mut PgConnection,
    shop_id: Uuid,
    filter: &[String],
    after: Option<&str>,
    limit: i64,
) -> Result<KeysetPage<Order>> {
    if limit <= 0 {
        return Err(Error::invalid_input("limit must be positive"));
    }
    let filters = Filters::parse(&LIST, filter)?;
    let after: Option<i32> = after
        .map(|c| {
            c.parse()
                .map_err(|_| Error::invalid_input("malformed order cursor"))
        })
        .transpose()?;
    let mut qb = QueryBuilder::<Postgres>::new("SELECT ");
    qb.push(LIST.select).push(" FROM ").push(LIST.from);
    filters.push_where(&mut qb, &LIST, Some(shop_id));
    if let Some(after) = after {
        qb.push(" AND o.customer_order_id < ").push_bind(after);
    }
    qb.push(" ORDER BY o.customer_order_id DESC LIMIT ")
        .push_bind(limit + 1);
    let mut items: Vec<Order> = qb.build_query_as().fetch_all(&mut *conn).await?;
    let next = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|o| o.customer_order_id.to_string())
    } else {
        None
    };
    Ok(KeysetPage { items, next })
}
