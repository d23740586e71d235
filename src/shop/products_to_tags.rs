//! `shop.products_to_tags`: which tags a product carries. Product and tag must belong to the
//! link's shop (composite foreign keys); a link is unique per (product, tag).

use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::list::{self, ListPage, ListParams, Spec, eq_col, text_col};
use super::{ProductId, ShopId};
use crate::{Error, Result};

/// A row of `shop.products_to_tags`.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ProductToTag {
    /// Primary key.
    pub id: Uuid,
    /// Owning shop.
    pub shop_id: ShopId,
    /// The product.
    pub product_id: Uuid,
    /// The tag.
    pub tag_id: Uuid,
}

/// List definition: filter `product_id`, `tag_id` (uuid), `tag_name` (tag main name,
/// substring); sort `product_id`, `tag_id`, `tag_name`; bare search over the tag's names.
pub static LIST: Spec = Spec {
    unit: "products_to_tags",
    select: "pt.id, pt.shop_id, pt.product_id, pt.tag_id",
    from: "shop.products_to_tags pt LEFT JOIN shop.tag_translations t ON t.shop_id = pt.shop_id AND t.tag_id = pt.tag_id",
    shop_column: Some("pt.shop_id"),
    id: "pt.id",
    columns: &[
        eq_col!("product_id", "pt.product_id", Uuid),
        eq_col!("tag_id", "pt.tag_id", Uuid),
        text_col!("tag_name", "t.main_name"),
    ],
    search: &["t.main_name", "t.alt1_name", "t.alt2_name"],
};

/// Tags a product (idempotent). A product or tag that is not the shop's is [`Error::NotFound`].
#[tracing::instrument(skip_all, fields(%shop_id, %product_id, %tag_id))]
pub async fn link(
    exec: impl PgExecutor<'_>,
    shop_id: ShopId,
    product_id: ProductId,
    tag_id: Uuid,
) -> Result<ProductToTag> {
    sqlx::query_as!(
        ProductToTag,
        r#"WITH ins AS (
               INSERT INTO shop.products_to_tags (shop_id, product_id, tag_id) VALUES ($1, $2, $3)
               ON CONFLICT (shop_id, product_id, tag_id) DO NOTHING
               RETURNING id, shop_id, product_id, tag_id)
           SELECT id AS "id!", shop_id AS "shop_id!: ShopId",
                  product_id AS "product_id!: ProductId", tag_id AS "tag_id!"
           FROM ins
           UNION ALL
           SELECT id, shop_id, product_id, tag_id FROM shop.products_to_tags
           WHERE shop_id = $1 AND product_id = $2 AND tag_id = $3"#,
        shop_id.get(),
        product_id.get(),
        tag_id
    )
    .fetch_optional(exec)
    .await
    .map_err(|e| match Error::from(e) {
        Error::ForeignKey { .. } => Error::NotFound,
        e => e,
    })?
    // no row only when a concurrent transaction linked the same pair after our snapshot was
    // taken; the link exists, but it is not visible to this statement
    .ok_or_else(|| Error::Conflict {
        constraint: "uq_products_to_tags_shop_id_product_id_tag_id".into(),
    })
}

/// Fetches a link of the shop.
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn get(exec: impl PgExecutor<'_>, shop_id: ShopId, id: Uuid) -> Result<ProductToTag> {
    sqlx::query_as!(
        ProductToTag,
        "SELECT id, shop_id, product_id, tag_id FROM shop.products_to_tags WHERE shop_id = $1 AND id = $2",
        shop_id.get(),
        id
    )
    .fetch_optional(exec)
    .await?
    .ok_or(Error::NotFound)
}

/// Deletes a link of the shop by id.
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn delete(exec: impl PgExecutor<'_>, shop_id: ShopId, id: Uuid) -> Result<()> {
    let done = sqlx::query!(
        "DELETE FROM shop.products_to_tags WHERE shop_id = $1 AND id = $2",
        shop_id.get(),
        id
    )
    .execute(exec)
    .await?;
    super::one_row(done.rows_affected())
}

/// Removes a tag from a product of the shop.
#[tracing::instrument(skip_all, fields(%shop_id, %product_id, %tag_id))]
pub async fn unlink(
    exec: impl PgExecutor<'_>,
    shop_id: ShopId,
    product_id: ProductId,
    tag_id: Uuid,
) -> Result<()> {
    let done = sqlx::query!(
        "DELETE FROM shop.products_to_tags WHERE shop_id = $1 AND product_id = $2 AND tag_id = $3",
        shop_id.get(),
        product_id.get(),
        tag_id
    )
    .execute(exec)
    .await?;
    super::one_row(done.rows_affected())
}

/// Lists the shop's links.
#[tracing::instrument(skip_all, fields(%shop_id))]
pub async fn list(
    conn: &mut PgConnection,
    shop_id: ShopId,
    params: &ListParams,
) -> Result<ListPage<ProductToTag>> {
    list::fetch::<ProductToTag, _>(conn, &LIST, Some(shop_id), params).await
}
