//! `shop.product_attribute_values`: which attribute (and option) a product has. Each value
//! carries the shop of its product; composite foreign keys `(shop_id, product_id)` and
//! `(shop_id, attribute_id)` make the database refuse a value that links two shops, and the
//! option must be one of the attribute's options.

use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::list::{self, ListPage, ListParams, Spec, eq_col, text_col};
use super::{ProductId, ShopId};
use crate::{Error, Result};

/// A row of `shop.product_attribute_values`.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ProductAttributeValue {
    /// Primary key.
    pub id: Uuid,
    /// Owning shop: the shop of both the product and the attribute.
    pub shop_id: ShopId,
    /// The product that has the attribute.
    pub product_id: ProductId,
    /// The attribute.
    pub attribute_id: Uuid,
    /// The attribute's option the product has; `None` when the attribute applies without a value.
    pub option_id: Option<Uuid>,
}

/// List definition: filter and sort `product_id`, `attribute_id`, `option_id` (uuid),
/// `value_key` (substring); bare search over the option key.
pub static LIST: Spec = Spec {
    unit: "product_attribute_values",
    select: "v.id, v.shop_id, v.product_id, v.attribute_id, v.option_id",
    from: "shop.product_attribute_values v \
           LEFT JOIN shop.attribute_options o ON o.shop_id = v.shop_id AND o.id = v.option_id",
    shop_column: Some("v.shop_id"),
    id: "v.id",
    columns: &[
        eq_col!("product_id", "v.product_id", Uuid),
        eq_col!("attribute_id", "v.attribute_id", Uuid),
        eq_col!("option_id", "v.option_id", Uuid),
        text_col!("value_key", "o.value_key"),
    ],
    search: &["o.value_key"],
};

/// Gives a product of the shop an attribute value. Product or attribute not the shop's:
/// [`Error::NotFound`]; an option that is not the attribute's: [`Error::ForeignKey`]; the same
/// triple twice: [`Error::Conflict`] `uq_product_attribute_values_shop_product_attr_option`.
#[tracing::instrument(skip_all, fields(%shop_id, %product_id, %attribute_id))]
pub async fn create(
    exec: impl PgExecutor<'_>,
    shop_id: ShopId,
    product_id: ProductId,
    attribute_id: Uuid,
    option_id: Option<Uuid>,
) -> Result<ProductAttributeValue> {
    sqlx::query_as!(
        ProductAttributeValue,
        r#"INSERT INTO shop.product_attribute_values (shop_id, product_id, attribute_id, option_id)
           SELECT p.shop_id, p.id, a.id, $4
           FROM shop.products p JOIN shop.attributes a ON a.shop_id = p.shop_id
           WHERE p.shop_id = $1 AND a.shop_id = $1 AND p.id = $2 AND a.id = $3
           RETURNING id, shop_id, product_id, attribute_id, option_id"#,
        shop_id.get(),
        product_id.get(),
        attribute_id,
        option_id
    )
    .fetch_optional(exec)
    .await?
    .ok_or(Error::NotFound)
}

/// Fetches a value of the shop.
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn get(
    exec: impl PgExecutor<'_>,
    shop_id: ShopId,
    id: Uuid,
) -> Result<ProductAttributeValue> {
    sqlx::query_as!(
        ProductAttributeValue,
        r#"SELECT id, shop_id, product_id, attribute_id, option_id
           FROM shop.product_attribute_values
           WHERE shop_id = $1 AND id = $2"#,
        shop_id.get(),
        id
    )
    .fetch_optional(exec)
    .await?
    .ok_or(Error::NotFound)
}

/// Changes the option of a value of the shop; an option that is not the attribute's:
/// [`Error::ForeignKey`].
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn set_option(
    exec: impl PgExecutor<'_>,
    shop_id: ShopId,
    id: Uuid,
    option_id: Option<Uuid>,
) -> Result<ProductAttributeValue> {
    sqlx::query_as!(
        ProductAttributeValue,
        r#"UPDATE shop.product_attribute_values SET option_id = $3
           WHERE shop_id = $1 AND id = $2
           RETURNING id, shop_id, product_id, attribute_id, option_id"#,
        shop_id.get(),
        id,
        option_id
    )
    .fetch_optional(exec)
    .await?
    .ok_or(Error::NotFound)
}

/// Deletes a value of the shop.
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn delete(exec: impl PgExecutor<'_>, shop_id: ShopId, id: Uuid) -> Result<()> {
    let done = sqlx::query!(
        "DELETE FROM shop.product_attribute_values WHERE shop_id = $1 AND id = $2",
        shop_id.get(),
        id
    )
    .execute(exec)
    .await?;
    super::one_row(done.rows_affected())
}

/// Lists the shop's attribute values (filter `product_id:<uuid>` for one product).
#[tracing::instrument(skip_all, fields(%shop_id))]
pub async fn list(
    conn: &mut PgConnection,
    shop_id: ShopId,
    params: &ListParams,
) -> Result<ListPage<ProductAttributeValue>> {
    list::fetch::<ProductAttributeValue, _>(conn, &LIST, Some(shop_id), params).await
}
