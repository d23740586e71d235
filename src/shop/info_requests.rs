//! `shop.info_requests`: "tell me more" requests about a product of a shop. Deleting the
//! product keeps the request with `product_id = NULL`.

use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::list::{self, ListParams, Page, Spec, eq_col, text_col};
use crate::{Error, Result, ResultExt};

/// A row of `shop.info_requests`.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct InfoRequest {
    /// Primary key.
    pub id: Uuid,
    /// Requester e-mail.
    pub email: Option<String>,
    /// Owning shop.
    pub shop_id: Uuid,
    /// The product asked about (of the same shop).
    pub product_id: Option<Uuid>,
}

/// List definition: filter `email` (substring), `product_id` (uuid), `product_name` (main
/// name, substring); sort the same; bare search over e-mail and product name.
pub static LIST: Spec = Spec {
    unit: "info_requests",
    select: "i.*",
    from: "shop.info_requests i LEFT JOIN shop.product_translations t ON t.product_id = i.product_id",
    shop_column: Some("i.shop_id"),
    id: "i.id",
    columns: &[
        text_col!("email", "i.email"),
        eq_col!("product_id", "i.product_id", Uuid),
        text_col!("product_name", "t.main_name"),
    ],
    search: &["i.email", "t.main_name"],
};

fn not_the_shops(r: Result<InfoRequest>) -> Result<InfoRequest> {
    r.on_constraint("fk_info_requests_shop_id_shops", |_| Error::NotFound)
        .on_constraint("fk_info_requests_product_id_products", |_| Error::NotFound)
}

/// Records a request. Unknown shop, or a product that is not the shop's: [`Error::NotFound`].
#[tracing::instrument(skip_all, fields(%shop_id))]
pub async fn create(
    exec: impl PgExecutor<'_>,
    shop_id: Uuid,
    email: Option<&str>,
    product_id: Option<Uuid>,
) -> Result<InfoRequest> {
    not_the_shops(
        sqlx::query_as!(
            InfoRequest,
            "INSERT INTO shop.info_requests (shop_id, email, product_id) VALUES ($1, $2, $3) RETURNING *",
            shop_id,
            email,
            product_id
        )
        .fetch_one(exec)
        .await
        .map_err(Error::from),
    )
}

/// Fetches a request of the shop.
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn get(exec: impl PgExecutor<'_>, shop_id: Uuid, id: Uuid) -> Result<InfoRequest> {
    sqlx::query_as!(
        InfoRequest,
        "SELECT * FROM shop.info_requests WHERE shop_id = $1 AND id = $2",
        shop_id,
        id
    )
    .fetch_optional(exec)
    .await?
    .ok_or(Error::NotFound)
}

/// Replaces a request's e-mail and product.
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn update(
    exec: impl PgExecutor<'_>,
    shop_id: Uuid,
    id: Uuid,
    email: Option<&str>,
    product_id: Option<Uuid>,
) -> Result<InfoRequest> {
    not_the_shops(
        sqlx::query_as!(
            InfoRequest,
            r#"UPDATE shop.info_requests SET email = $3, product_id = $4
               WHERE shop_id = $1 AND id = $2 RETURNING *"#,
            shop_id,
            id,
            email,
            product_id
        )
        .fetch_optional(exec)
        .await
        .map_err(Error::from)
        .and_then(|r| r.ok_or(Error::NotFound)),
    )
}

/// Deletes a request of the shop.
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn delete(exec: impl PgExecutor<'_>, shop_id: Uuid, id: Uuid) -> Result<()> {
    let done = sqlx::query!(
        "DELETE FROM shop.info_requests WHERE shop_id = $1 AND id = $2",
        shop_id,
        id
    )
    .execute(exec)
    .await?;
    super::one_row(done.rows_affected())
}

/// Lists the shop's requests.
#[tracing::instrument(skip_all, fields(%shop_id))]
pub async fn list(
    conn: &mut PgConnection,
    shop_id: Uuid,
    params: &ListParams,
) -> Result<Page<InfoRequest>> {
    list::fetch(conn, &LIST, Some(shop_id), params).await
}
