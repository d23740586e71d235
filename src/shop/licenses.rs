//! `shop.licenses`: recurring licence records for an external (improviser) user, optionally tied
//! to the order that paid for them. A licence with an order carries that order's shop: the
//! library copies it from the order, and the composite foreign key `(shop_id, order_id)` makes
//! the database refuse a licence that names another shop's order.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::list::{self, ListPage, ListParams, Spec, eq_col, sort_col, text_col};
use super::{ShopId, input};
use crate::{Error, Result, ResultExt};

/// A row of `shop.licenses`.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct License {
    /// Primary key.
    pub id: Uuid,
    /// The shop of the paying order; `None` for a licence without an order.
    pub shop_id: Option<ShopId>,
    /// Product name the licence is for.
    pub name: String,
    /// Renews automatically at `end_date`.
    pub is_recurring: bool,
    /// When the licence starts to count; set to the creation time when not given.
    pub start_date: Option<DateTime<Utc>>,
    /// When it ends; `None`: open-ended.
    pub end_date: Option<DateTime<Utc>>,
    /// The licensee's id in the improviser service (no foreign key: another database).
    pub improviser_user: Uuid,
    /// Number of seats, positive.
    pub seats: i32,
    /// The order that paid for it; `None` for granted licences.
    pub order_id: Option<Uuid>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change (set by a trigger).
    pub modified_at: DateTime<Utc>,
}

/// Everything a licence's create and update write.
#[derive(Debug, Clone, Deserialize)]
pub struct LicenseFields {
    /// Product name, at most 255 characters, not blank.
    pub name: String,
    /// Renews automatically.
    pub is_recurring: bool,
    /// Start; `None` on create: now, on update: unchanged.
    pub start_date: Option<DateTime<Utc>>,
    /// End; `None`: open-ended.
    pub end_date: Option<DateTime<Utc>>,
    /// The licensee's improviser id.
    pub improviser_user: Uuid,
    /// Seats, positive.
    pub seats: i32,
    /// The paying order (of any shop; the licence takes its shop).
    pub order_id: Option<Uuid>,
}

/// List definition: filter `name` (substring), `improviser_user`, `order_id` (uuid),
/// `is_recurring` (bool), `seats` (int); sort those plus `start_date`, `end_date`, `created_at`;
/// bare search over the name.
pub static LIST: Spec = Spec {
    unit: "licenses",
    select: "l.id, l.shop_id, l.name, l.is_recurring, l.start_date, l.end_date, l.improviser_user, l.seats, l.order_id, l.created_at, l.modified_at",
    from: "shop.licenses l",
    shop_column: None,
    id: "l.id",
    columns: &[
        text_col!("name", "l.name"),
        eq_col!("improviser_user", "l.improviser_user", Uuid),
        eq_col!("order_id", "l.order_id", Uuid),
        eq_col!("is_recurring", "l.is_recurring", Bool),
        eq_col!("seats", "l.seats", Int),
        sort_col!("start_date", "l.start_date"),
        sort_col!("end_date", "l.end_date"),
        sort_col!("created_at", "l.created_at"),
    ],
    search: &["l.name"],
};

/// Creates a licence. Unknown order: [`Error::NotFound`]; `seats <= 0`: [`Error::Check`].
#[tracing::instrument(skip_all)]
pub async fn create(exec: impl PgExecutor<'_>, new: &LicenseFields) -> Result<License> {
    input::name("name", &new.name, 255)?;
    sqlx::query_as!(
        License,
        r#"INSERT INTO shop.licenses (name, is_recurring, start_date, end_date, improviser_user,
               seats, order_id, shop_id)
           VALUES ($1, $2, coalesce($3, now()), $4, $5, $6, $7,
                   (SELECT shop_id FROM shop.orders WHERE id = $7))
           RETURNING id, shop_id, name, is_recurring, start_date, end_date, improviser_user, seats, order_id, created_at, modified_at"#,
        new.name,
        new.is_recurring,
        new.start_date,
        new.end_date,
        new.improviser_user,
        new.seats,
        new.order_id
    )
    .fetch_one(exec)
    .await
    .on_constraint("fk_licenses_order_id_orders", |_| Error::NotFound)
    .on_constraint("ck_licenses_order_has_shop", |_| Error::NotFound)
}

/// Fetches a licence.
#[tracing::instrument(skip_all, fields(%id))]
pub async fn get(exec: impl PgExecutor<'_>, id: Uuid) -> Result<License> {
    sqlx::query_as!(License, "SELECT id, shop_id, name, is_recurring, start_date, end_date, improviser_user, seats, order_id, created_at, modified_at FROM shop.licenses WHERE id = $1", id)
        .fetch_optional(exec)
        .await?
        .ok_or(Error::NotFound)
}

/// Replaces a licence's fields.
#[tracing::instrument(skip_all, fields(%id))]
pub async fn update(exec: impl PgExecutor<'_>, id: Uuid, new: &LicenseFields) -> Result<License> {
    input::name("name", &new.name, 255)?;
    sqlx::query_as!(
        License,
        r#"UPDATE shop.licenses SET name = $2, is_recurring = $3,
               start_date = coalesce($4, start_date), end_date = $5, improviser_user = $6,
               seats = $7, order_id = $8,
               shop_id = (SELECT shop_id FROM shop.orders WHERE id = $8)
           WHERE id = $1
           RETURNING id, shop_id, name, is_recurring, start_date, end_date, improviser_user, seats, order_id, created_at, modified_at"#,
        id,
        new.name,
        new.is_recurring,
        new.start_date,
        new.end_date,
        new.improviser_user,
        new.seats,
        new.order_id
    )
    .fetch_optional(exec)
    .await
    .on_constraint("fk_licenses_order_id_orders", |_| Error::NotFound)
    .on_constraint("ck_licenses_order_has_shop", |_| Error::NotFound)?
    .ok_or(Error::NotFound)
}

/// Deletes a licence.
#[tracing::instrument(skip_all, fields(%id))]
pub async fn delete(exec: impl PgExecutor<'_>, id: Uuid) -> Result<()> {
    let done = sqlx::query!("DELETE FROM shop.licenses WHERE id = $1", id)
        .execute(exec)
        .await?;
    super::one_row(done.rows_affected())
}

/// Lists licences.
#[tracing::instrument(skip_all)]
pub async fn list(conn: &mut PgConnection, params: &ListParams) -> Result<ListPage<License>> {
    list::fetch::<License, _>(conn, &LIST, None, params).await
}
