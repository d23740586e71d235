//! `shop.info_requests`: "tell me more" requests about a product of a shop. Deleting the
//! product keeps the request with `product_id = NULL`.

use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::list::{self, ListPage, ListParams, Spec, eq_col, text_col};
use super::{ProductId, ShopId, input};
use crate::{Error, Result, ResultExt};

/// A row of `shop.info_requests`.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct InfoRequest {
    /// Primary key.
    pub id: Uuid,
    /// Where to send the answer; `None` when the visitor left none.
    pub email: Option<String>,
    /// Owning shop.
    pub shop_id: ShopId,
    /// The product asked about (of the same shop); `None` once that product was deleted.
    pub product_id: Option<ProductId>,
}

/// List definition: filter `email` (substring), `product_id` (uuid), `product_name` (main
/// name, substring); sort the same; bare search over e-mail and product name.
pub static LIST: Spec = Spec {
    unit: "info_requests",
    select: "i.id, i.email, i.shop_id, i.product_id",
    from: "shop.info_requests i LEFT JOIN shop.product_translations t ON t.shop_id = i.shop_id AND t.product_id = i.product_id",
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
    shop_id: ShopId,
    email: Option<&str>,
    product_id: Option<ProductId>,
) -> Result<InfoRequest> {
    input::opt_text("email", email, 255)?;
    not_the_shops(
        sqlx::query_as!(
            InfoRequest,
            r#"INSERT INTO shop.info_requests (shop_id, email, product_id) VALUES ($1, $2, $3)
               RETURNING id, email, shop_id, product_id"#,
            shop_id.get(),
            email,
            product_id.map(ProductId::get)
        )
        .fetch_one(exec)
        .await
        .map_err(Error::from),
    )
}

/// Fetches a request of the shop.
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn get(exec: impl PgExecutor<'_>, shop_id: ShopId, id: Uuid) -> Result<InfoRequest> {
    sqlx::query_as!(
        InfoRequest,
        r#"SELECT id, email, shop_id, product_id FROM shop.info_requests
           WHERE shop_id = $1 AND id = $2"#,
        shop_id.get(),
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
    shop_id: ShopId,
    id: Uuid,
    email: Option<&str>,
    product_id: Option<ProductId>,
) -> Result<InfoRequest> {
    input::opt_text("email", email, 255)?;
    not_the_shops(
        sqlx::query_as!(
            InfoRequest,
            r#"UPDATE shop.info_requests SET email = $3, product_id = $4
               WHERE shop_id = $1 AND id = $2 RETURNING id, email, shop_id, product_id"#,
            shop_id.get(),
            id,
            email,
            product_id.map(ProductId::get)
        )
        .fetch_optional(exec)
        .await
        .map_err(Error::from)
        .and_then(|r| r.ok_or(Error::NotFound)),
    )
}

/// Deletes a request of the shop.
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn delete(exec: impl PgExecutor<'_>, shop_id: ShopId, id: Uuid) -> Result<()> {
    let done = sqlx::query!(
        "DELETE FROM shop.info_requests WHERE shop_id = $1 AND id = $2",
        shop_id.get(),
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
    shop_id: ShopId,
    params: &ListParams,
) -> Result<ListPage<InfoRequest>> {
    list::fetch::<InfoRequest, _>(conn, &LIST, Some(shop_id), params).await
}
