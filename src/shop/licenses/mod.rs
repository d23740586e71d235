//! `shop.licenses`: licence records for an external (improviser) user.
//!
//! **Two kinds, two sets of functions.**
//! - A **shop's licence** belongs to one shop: [`create`], [`get`], [`update`], [`delete`] and
//!   [`list()`] take the [`ShopId`] like every other shop-owned entity, and a licence of another
//!   shop is [`Error::NotFound`]. It may name the order that paid for it, which must be an order
//!   of the same shop: the composite foreign key `(shop_id, order_id)` refuses any other, and
//!   the library reports that as [`Error::NotFound`] (the order is not the shop's).
//! - A **global licence** (granted, with no order and no shop, as the old backend allowed) is
//!   reached only through [`create_global`], [`get_global`], [`update_global`],
//!   [`delete_global`] and [`list_global`]; they never see a
//!   shop's licence, and a shop's functions never see a global one.

mod global;

pub use global::{create_global, delete_global, get_global, list_global, update_global};

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
    /// The owning shop; `None` for a global licence.
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
    /// The order that paid for it (always an order of `shop_id`); `None` for granted licences.
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
    /// The paying order: an order of the licence's shop; must be `None` for a global licence.
    pub order_id: Option<Uuid>,
}

/// List definition of a shop's licences: filter `name` (substring), `improviser_user`,
/// `order_id` (uuid), `is_recurring` (bool), `seats` (int); sort those plus `start_date`,
/// `end_date`, `created_at`; bare search over the name.
pub static LIST: Spec = Spec {
    unit: "licenses",
    select: "l.id, l.shop_id, l.name, l.is_recurring, l.start_date, l.end_date, l.improviser_user, l.seats, l.order_id, l.created_at, l.modified_at",
    from: "shop.licenses l",
    shop_column: Some("l.shop_id"),
    id: "l.id",
    columns: COLUMNS,
    search: &["l.name"],
};

/// Filterable and sortable columns, shared by the shop and the global lists.
const COLUMNS: &[list::spec::Column] = &[
    text_col!("name", "l.name"),
    eq_col!("improviser_user", "l.improviser_user", Uuid),
    eq_col!("order_id", "l.order_id", Uuid),
    eq_col!("is_recurring", "l.is_recurring", Bool),
    eq_col!("seats", "l.seats", Int),
    sort_col!("start_date", "l.start_date"),
    sort_col!("end_date", "l.end_date"),
    sort_col!("created_at", "l.created_at"),
];

/// Creates a licence of `shop_id`. An order that is not an order of this shop (unknown, or
/// another shop's): [`Error::NotFound`]; `seats <= 0`: [`Error::Check`].
#[tracing::instrument(skip_all, fields(%shop_id))]
pub async fn create(
    exec: impl PgExecutor<'_>,
    shop_id: ShopId,
    new: &LicenseFields,
) -> Result<License> {
    input::name("name", &new.name, 255)?;
    sqlx::query_as!(
        License,
        r#"INSERT INTO shop.licenses (shop_id, name, is_recurring, start_date, end_date,
               improviser_user, seats, order_id)
           VALUES ($1, $2, $3, coalesce($4, now()), $5, $6, $7, $8)
           RETURNING id, shop_id AS "shop_id: ShopId", name, is_recurring, start_date, end_date, improviser_user, seats, order_id, created_at, modified_at"#,
        shop_id.get(),
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
    .on_constraint("fk_licenses_shop_id_shops", |_| Error::NotFound)
}

/// Fetches a licence of `shop_id`; another shop's (or a global) licence is [`Error::NotFound`].
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn get(exec: impl PgExecutor<'_>, shop_id: ShopId, id: Uuid) -> Result<License> {
    sqlx::query_as!(
        License,
        r#"SELECT id, shop_id AS "shop_id: ShopId", name, is_recurring, start_date, end_date, improviser_user, seats, order_id, created_at, modified_at
           FROM shop.licenses WHERE id = $1 AND shop_id = $2"#,
        id,
        shop_id.get()
    )
    .fetch_optional(exec)
    .await?
    .ok_or(Error::NotFound)
}

/// Replaces the fields of a licence of `shop_id`. The licence stays in its shop; an order of
/// another shop, or another shop's licence: [`Error::NotFound`], nothing changed.
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn update(
    exec: impl PgExecutor<'_>,
    shop_id: ShopId,
    id: Uuid,
    new: &LicenseFields,
) -> Result<License> {
    input::name("name", &new.name, 255)?;
    sqlx::query_as!(
        License,
        r#"UPDATE shop.licenses SET name = $3, is_recurring = $4,
               start_date = coalesce($5, start_date), end_date = $6, improviser_user = $7,
               seats = $8, order_id = $9
           WHERE id = $1 AND shop_id = $2
           RETURNING id, shop_id AS "shop_id: ShopId", name, is_recurring, start_date, end_date, improviser_user, seats, order_id, created_at, modified_at"#,
        id,
        shop_id.get(),
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
    .on_constraint("fk_licenses_order_id_orders", |_| Error::NotFound)?
    .ok_or(Error::NotFound)
}

/// Deletes a licence of `shop_id`; another shop's licence is [`Error::NotFound`].
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn delete(exec: impl PgExecutor<'_>, shop_id: ShopId, id: Uuid) -> Result<()> {
    let done = sqlx::query!(
        "DELETE FROM shop.licenses WHERE id = $1 AND shop_id = $2",
        id,
        shop_id.get()
    )
    .execute(exec)
    .await?;
    super::one_row(done.rows_affected())
}

/// Lists the licences of `shop_id`.
#[tracing::instrument(skip_all, fields(%shop_id))]
pub async fn list(
    conn: &mut PgConnection,
    shop_id: ShopId,
    params: &ListParams,
) -> Result<ListPage<License>> {
    list::fetch::<License, _>(conn, &LIST, Some(shop_id), params).await
}
