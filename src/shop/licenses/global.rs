//! Global licences: granted licences of no shop and no order, in `shop.global_licenses` (a
//! reference table on Citus, where `shop.licenses` is distributed by shop). The old backend
//! allowed them, and the import keeps them; they are reached only through these functions, which
//! never see a shop's licence. They come back as [`License`] with `shop_id` and `order_id`
//! `None`. Until the contract step of migration 0115, releases that keep global licences in
//! `shop.licenses` (`shop_id IS NULL`) see the same rows: triggers mirror the two tables.

use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::{COLUMNS, License, LicenseFields};
use crate::shop::input;
use crate::shop::list::{self, ListPage, ListParams, Spec};
use crate::shop::{ShopId, one_row};
use crate::{Error, Result};

/// List definition of the global licences: the same filters and sorts as [`super::LIST`].
pub static LIST_GLOBAL: Spec = Spec {
    unit: "licenses",
    select: "l.id, l.shop_id, l.name, l.is_recurring, l.start_date, l.end_date, l.improviser_user, l.seats, l.order_id, l.created_at, l.modified_at",
    from: "(SELECT id, NULL::uuid AS shop_id, name, is_recurring, start_date, end_date, improviser_user, seats, NULL::uuid AS order_id, created_at, modified_at FROM shop.global_licenses) l",
    shop_column: None,
    id: "l.id",
    columns: COLUMNS,
    search: &["l.name"],
};

/// A global licence has no order: `order_id` must be `None`.
fn no_order(new: &LicenseFields) -> Result<()> {
    input::name("name", &new.name, 255)?;
    match new.order_id {
        Some(_) => Err(Error::invalid_input(
            "order_id: a global licence has no order; create it as a licence of the order's shop",
        )),
        None => Ok(()),
    }
}

/// Creates a global licence (no shop, no order). `order_id` set: [`Error::InvalidInput`];
/// `seats <= 0`: [`Error::Check`].
#[tracing::instrument(target = "shared_db::shop::licenses", skip_all)]
pub async fn create_global(exec: impl PgExecutor<'_>, new: &LicenseFields) -> Result<License> {
    no_order(new)?;
    Ok(sqlx::query_as!(
        License,
        r#"INSERT INTO shop.global_licenses (name, is_recurring, start_date, end_date,
               improviser_user, seats)
           VALUES ($1, $2, coalesce($3, now()), $4, $5, $6)
           RETURNING id, NULL::uuid AS "shop_id?: ShopId", name, is_recurring, start_date, end_date, improviser_user, seats, NULL::uuid AS "order_id?", created_at, modified_at"#,
        new.name,
        new.is_recurring,
        new.start_date,
        new.end_date,
        new.improviser_user,
        new.seats
    )
    .fetch_one(exec)
    .await?)
}

/// Fetches a global licence; a shop's licence is [`Error::NotFound`].
#[tracing::instrument(target = "shared_db::shop::licenses", skip_all, fields(%id))]
pub async fn get_global(exec: impl PgExecutor<'_>, id: Uuid) -> Result<License> {
    sqlx::query_as!(
        License,
        r#"SELECT id, NULL::uuid AS "shop_id?: ShopId", name, is_recurring, start_date, end_date, improviser_user, seats, NULL::uuid AS "order_id?", created_at, modified_at
           FROM shop.global_licenses WHERE id = $1"#,
        id
    )
    .fetch_optional(exec)
    .await?
    .ok_or(Error::NotFound)
}

/// Replaces a global licence's fields (it stays global: `order_id` set is
/// [`Error::InvalidInput`]); a shop's licence is [`Error::NotFound`].
#[tracing::instrument(target = "shared_db::shop::licenses", skip_all, fields(%id))]
pub async fn update_global(
    exec: impl PgExecutor<'_>,
    id: Uuid,
    new: &LicenseFields,
) -> Result<License> {
    no_order(new)?;
    sqlx::query_as!(
        License,
        r#"UPDATE shop.global_licenses SET name = $2, is_recurring = $3,
               start_date = coalesce($4, start_date), end_date = $5, improviser_user = $6,
               seats = $7
           WHERE id = $1
           RETURNING id, NULL::uuid AS "shop_id?: ShopId", name, is_recurring, start_date, end_date, improviser_user, seats, NULL::uuid AS "order_id?", created_at, modified_at"#,
        id,
        new.name,
        new.is_recurring,
        new.start_date,
        new.end_date,
        new.improviser_user,
        new.seats
    )
    .fetch_optional(exec)
    .await?
    .ok_or(Error::NotFound)
}

/// Deletes a global licence; a shop's licence is [`Error::NotFound`].
#[tracing::instrument(target = "shared_db::shop::licenses", skip_all, fields(%id))]
pub async fn delete_global(exec: impl PgExecutor<'_>, id: Uuid) -> Result<()> {
    let done = sqlx::query!("DELETE FROM shop.global_licenses WHERE id = $1", id)
        .execute(exec)
        .await?;
    one_row(done.rows_affected())
}

/// Lists the global licences.
#[tracing::instrument(target = "shared_db::shop::licenses", skip_all)]
pub async fn list_global(
    conn: &mut PgConnection,
    params: &ListParams,
) -> Result<ListPage<License>> {
    list::fetch::<License, _>(conn, &LIST_GLOBAL, None, params).await
}
