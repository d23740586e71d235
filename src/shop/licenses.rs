//! `shop.licenses`: recurring licence records for an external (improviser) user, optionally tied
//! to the order that paid for them. Not shop-owned.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::list::{self, ListParams, Page, Spec, eq_col, sort_col, text_col};
use crate::{Error, Result, ResultExt};

/// A row of `shop.licenses`.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct License {
    /// Primary key.
    pub id: Uuid,
    /// Licence name.
    pub name: String,
    /// Renews automatically.
    pub is_recurring: bool,
    /// Start.
    pub start_date: Option<DateTime<Utc>>,
    /// End.
    pub end_date: Option<DateTime<Utc>>,
    /// External user id (no foreign key).
    pub improviser_user: Uuid,
    /// Seats (positive).
    pub seats: i32,
    /// Paying order.
    pub order_id: Option<Uuid>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last modification (maintained by a trigger).
    pub modified_at: DateTime<Utc>,
}

/// Fields of a licence written by create and update.
#[derive(Debug, Clone, Deserialize)]
pub struct NewLicense {
    /// Licence name.
    pub name: String,
    /// Renews automatically.
    pub is_recurring: bool,
    /// Start (default now).
    pub start_date: Option<DateTime<Utc>>,
    /// End.
    pub end_date: Option<DateTime<Utc>>,
    /// External user id.
    pub improviser_user: Uuid,
    /// Seats.
    pub seats: i32,
    /// Paying order.
    pub order_id: Option<Uuid>,
}

/// List definition: filter `name` (substring), `improviser_user`, `order_id` (uuid),
/// `is_recurring` (bool), `seats` (int); sort those plus `start_date`, `end_date`, `created_at`;
/// bare search over the name.
pub static LIST: Spec = Spec {
    unit: "licenses",
    select: "l.*",
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
pub async fn create(exec: impl PgExecutor<'_>, new: &NewLicense) -> Result<License> {
    sqlx::query_as!(
        License,
        r#"INSERT INTO shop.licenses (name, is_recurring, start_date, end_date, improviser_user,
               seats, order_id)
           VALUES ($1, $2, coalesce($3, now()), $4, $5, $6, $7)
           RETURNING *"#,
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
}

/// Fetches a licence.
#[tracing::instrument(skip_all, fields(%id))]
pub async fn get(exec: impl PgExecutor<'_>, id: Uuid) -> Result<License> {
    sqlx::query_as!(License, "SELECT * FROM shop.licenses WHERE id = $1", id)
        .fetch_optional(exec)
        .await?
        .ok_or(Error::NotFound)
}

/// Replaces a licence's fields.
#[tracing::instrument(skip_all, fields(%id))]
pub async fn update(exec: impl PgExecutor<'_>, id: Uuid, new: &NewLicense) -> Result<License> {
    sqlx::query_as!(
        License,
        r#"UPDATE shop.licenses SET name = $2, is_recurring = $3, start_date = coalesce($4, start_date),
               end_date = $5, improviser_user = $6, seats = $7, order_id = $8
           WHERE id = $1
           RETURNING *"#,
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
    .on_constraint("fk_licenses_order_id_orders", |_| Error::NotFound)?
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
pub async fn list(conn: &mut PgConnection, params: &ListParams) -> Result<Page<License>> {
    list::fetch(conn, &LIST, None, params).await
}
