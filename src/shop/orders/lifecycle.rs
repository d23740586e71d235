//! Placing, editing, completing, cancelling and deleting an order.

use std::collections::BTreeMap;

use sqlx::types::Json;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::{Order, OrderFields, OrderItems, OrderStatus};
use crate::shop::{ProductId, ShopId};
use crate::{Error, Result, ResultExt, tx};

const IDEMPOTENCY_KEY: &str = "uq_orders_shop_id_idempotency_key";

/// Places an order in the shop with the next `customer_order_id`. Unknown shop, or an account
/// that is not the shop's: [`Error::NotFound`].
///
/// `idempotency_key` names this placement and follows the replay contract of the
/// [`crate::planexe`] docs, scoped to the shop: a create repeated with the key of an order the
/// shop already has (say, retried after the connection dropped around COMMIT, or while the first
/// is still in flight) returns that order and places nothing; the key with another account,
/// notes, items or total is [`Error::IdempotencyKeyReused`] naming the field. Creates without a
/// key always place a new order.
#[tracing::instrument(target = "shared_db::shop::orders", skip_all, fields(%shop_id, ?idempotency_key))]
pub async fn create(
    conn: &mut PgConnection,
    shop_id: ShopId,
    fields: &OrderFields,
    idempotency_key: Option<Uuid>,
) -> Result<Order> {
    let fields = fields.checked()?;
    if let Some(key) = idempotency_key
        && let Some(order) = by_idempotency_key(&mut *conn, shop_id, key).await?
    {
        return replayed(order, &fields);
    }
    let placed = tx::transaction(&mut *conn, async |tx| {
        let number = sqlx::query_scalar!(
            r#"INSERT INTO shop.order_counters AS c (shop_id, last_customer_order_id) VALUES ($1, 1)
               ON CONFLICT (shop_id) DO UPDATE SET last_customer_order_id = c.last_customer_order_id + 1
               RETURNING last_customer_order_id"#,
            shop_id.get()
        )
        .fetch_one(&mut *tx)
        .await
        .on_constraint("fk_order_counters_shop_id_shops", |_| Error::NotFound)?;
        sqlx::query_as!(
            Order,
            r#"INSERT INTO shop.orders (customer_order_id, notes, shop_id, account_id, order_info,
                   total, idempotency_key)
               VALUES ($1, $2, $3, $4, $5, $6, $7)
               RETURNING id, customer_order_id, notes, shop_id, account_id, order_info,
                         created_at, total, status, completed_by, completed_at, idempotency_key"#,
            number,
            fields.notes,
            shop_id.get(),
            fields.account_id,
            Json(&fields.items) as _,
            fields.total,
            idempotency_key,
        )
        .fetch_one(&mut *tx)
        .await
        .on_constraint("fk_orders_account_id_accounts", |_| Error::NotFound)
    })
    .await;
    match (placed, idempotency_key) {
        // a concurrent create with the same key committed first; ours rolled back (and gave its
        // number back): answer with the order that was placed
        (Err(Error::Conflict { constraint }), Some(key)) if constraint == IDEMPOTENCY_KEY => {
            match by_idempotency_key(&mut *conn, shop_id, key).await? {
                Some(order) => replayed(order, &fields),
                None => Err(Error::Conflict { constraint }),
            }
        }
        (placed, _) => placed,
    }
}

/// The replay rule of the [`crate::planexe`] docs for an order a key already names: that order
/// when the request is the same, else [`Error::IdempotencyKeyReused`] naming the first field
/// that differs.
fn replayed(order: Order, fields: &OrderFields) -> Result<Order> {
    let differs = if order.account_id != fields.account_id {
        Some("account")
    } else if order.notes != fields.notes {
        Some("notes")
    } else if order.order_info.0 != fields.items {
        Some("items")
    } else if order.total != fields.total {
        Some("total")
    } else {
        None
    };
    match differs {
        Some(field) => Err(Error::idempotency_key_reused(field)),
        None => Ok(order),
    }
}

async fn by_idempotency_key(
    exec: impl PgExecutor<'_>,
    shop_id: ShopId,
    key: Uuid,
) -> Result<Option<Order>> {
    Ok(sqlx::query_as!(
        Order,
        r#"SELECT id, customer_order_id, notes, shop_id, account_id, order_info, created_at, total,
                  status, completed_by, completed_at, idempotency_key
           FROM shop.orders WHERE shop_id = $1 AND idempotency_key = $2"#,
        shop_id.get(),
        key
    )
    .fetch_optional(exec)
    .await?)
}

/// Locks the order row for the rest of the transaction and returns it.
async fn lock(conn: &mut PgConnection, shop_id: ShopId, id: Uuid) -> Result<Order> {
    sqlx::query_as!(
        Order,
        r#"SELECT id, customer_order_id, notes, shop_id, account_id, order_info, created_at, total,
                  status, completed_by, completed_at, idempotency_key
           FROM shop.orders WHERE shop_id = $1 AND id = $2
           FOR UPDATE"#,
        shop_id.get(),
        id
    )
    .fetch_optional(conn)
    .await?
    .ok_or(Error::NotFound)
}

fn transition(from: OrderStatus, to: OrderStatus) -> Error {
    Error::InvalidTransition {
        from: from.as_str().into(),
        to: to.as_str().into(),
    }
}

/// Replaces the notes, items, account and total of a pending order; any other status
/// ([`OrderStatus::Unknown`] included) is [`Error::InvalidTransition`].
#[tracing::instrument(target = "shared_db::shop::orders", skip_all, fields(%shop_id, %id))]
pub async fn update(
    conn: &mut PgConnection,
    shop_id: ShopId,
    id: Uuid,
    fields: &OrderFields,
) -> Result<Order> {
    let fields = fields.checked()?;
    tx::transaction(conn, async |tx| {
        let current = lock(&mut *tx, shop_id, id).await?;
        if current.status != OrderStatus::Pending {
            return Err(transition(current.status, OrderStatus::Pending));
        }
        sqlx::query_as!(
            Order,
            r#"UPDATE shop.orders SET notes = $3, account_id = $4, order_info = $5, total = $6
               WHERE shop_id = $1 AND id = $2
               RETURNING id, customer_order_id, notes, shop_id, account_id, order_info,
                         created_at, total, status, completed_by, completed_at, idempotency_key"#,
            shop_id.get(),
            id,
            fields.notes,
            fields.account_id,
            Json(&fields.items) as _,
            fields.total,
        )
        .fetch_one(&mut *tx)
        .await
        .on_constraint("fk_orders_account_id_accounts", |_| Error::NotFound)
    })
    .await
}

/// Completes a pending order of the shop: takes the stock of every item (all or nothing) and
/// records who completed it and when.
///
/// Safe to repeat: completing an order that `completed_by` already completed returns it as it
/// is, without taking stock again (the answer to a retry after a lost COMMIT).
///
/// Errors, each with nothing changed: [`Error::NotFound`] (no such order in the shop, or
/// `completed_by` is not a member of the shop), [`Error::InvalidTransition`] (cancelled, or
/// completed by someone else, or a status this release does not know:
/// [`OrderStatus::Unknown`]), [`Error::InsufficientStock`] (some product lacks stock; a
/// product that no longer exists in the shop counts as having none).
#[tracing::instrument(target = "shared_db::shop::orders", skip_all, fields(%shop_id, order_id = %id, %completed_by))]
pub async fn complete(
    conn: &mut PgConnection,
    shop_id: ShopId,
    id: Uuid,
    completed_by: Uuid,
) -> Result<Order> {
    tx::transaction(conn, async |tx| {
        let current = lock(&mut *tx, shop_id, id).await?;
        match current.status {
            OrderStatus::Pending => {}
            OrderStatus::Complete if current.completed_by == Some(completed_by) => {
                return Ok(current);
            }
            status => return Err(transition(status, OrderStatus::Complete)),
        }
        take_stock(&mut *tx, shop_id, &current.order_info.0).await?;
        sqlx::query_as!(
            Order,
            r#"UPDATE shop.orders SET status = 'complete', completed_by = $3, completed_at = now()
               WHERE shop_id = $1 AND id = $2
               RETURNING id, customer_order_id, notes, shop_id, account_id, order_info,
                         created_at, total, status, completed_by, completed_at, idempotency_key"#,
            shop_id.get(),
            id,
            completed_by
        )
        .fetch_one(&mut *tx)
        .await
        .on_constraint("fk_orders_completed_by_shops_users", |_| Error::NotFound)
    })
    .await
}

/// One decrement per product, in product-id order: concurrent completions lock rows in the same
/// order and cannot deadlock.
async fn take_stock(conn: &mut PgConnection, shop_id: ShopId, items: &OrderItems) -> Result<()> {
    let mut wanted: BTreeMap<ProductId, i32> = BTreeMap::new();
    for item in items {
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
            shop_id.get(),
            product_id.get(),
            quantity
        )
        .fetch_optional(&mut *conn)
        .await?;
        if taken.is_none() {
            let available = sqlx::query_scalar!(
                "SELECT stock FROM shop.products WHERE shop_id = $1 AND id = $2",
                shop_id.get(),
                product_id.get()
            )
            .fetch_optional(&mut *conn)
            .await?
            .unwrap_or(0);
            return Err(Error::InsufficientStock {
                product_id: product_id.get(),
                requested: quantity,
                available,
            });
        }
    }
    Ok(())
}

/// Cancels a pending order of the shop (stock is untouched: it was never taken); any other
/// status ([`OrderStatus::Unknown`] included) is [`Error::InvalidTransition`].
#[tracing::instrument(target = "shared_db::shop::orders", skip_all, fields(%shop_id, order_id = %id))]
pub async fn cancel(conn: &mut PgConnection, shop_id: ShopId, id: Uuid) -> Result<Order> {
    tx::transaction(conn, async |tx| {
        let current = lock(&mut *tx, shop_id, id).await?;
        if current.status != OrderStatus::Pending {
            return Err(transition(current.status, OrderStatus::Cancelled));
        }
        Ok(sqlx::query_as!(
            Order,
            r#"UPDATE shop.orders SET status = 'cancelled' WHERE shop_id = $1 AND id = $2
               RETURNING id, customer_order_id, notes, shop_id, account_id, order_info,
                         created_at, total, status, completed_by, completed_at, idempotency_key"#,
            shop_id.get(),
            id
        )
        .fetch_one(&mut *tx)
        .await?)
    })
    .await
}

/// Deletes an order of the shop; held by a license: [`Error::Conflict`]
/// `fk_licenses_order_id_orders`. Its number is not reused.
#[tracing::instrument(target = "shared_db::shop::orders", skip_all, fields(%shop_id, %id))]
pub async fn delete(exec: impl PgExecutor<'_>, shop_id: ShopId, id: Uuid) -> Result<()> {
    let done = sqlx::query!(
        "DELETE FROM shop.orders WHERE shop_id = $1 AND id = $2",
        shop_id.get(),
        id
    )
    .execute(exec)
    .await
    .map_err(crate::shop::still_referenced)?;
    crate::shop::one_row(done.rows_affected())
}
