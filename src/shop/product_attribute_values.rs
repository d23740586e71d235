//! `shop.product_attribute_values`: which attribute (and option) a product has. Scoped through
//! the product's shop; product and attribute must belong to the same shop, and the option must be
//! one of the attribute's options.

use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::list::{self, ListParams, Page, Spec, eq_col, text_col};
use crate::{Error, Result};

/// A row of `shop.product_attribute_values`.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct ProductAttributeValue {
    /// Primary key.
    pub id: Uuid,
    /// The product.
    pub product_id: Uuid,
    /// The attribute.
    pub attribute_id: Uuid,
    /// The chosen option, if any.
    pub option_id: Option<Uuid>,
}

/// List definition: filter and sort `product_id`, `attribute_id`, `option_id` (uuid),
/// `value_key` (substring); bare search over the option key.
pub static LIST: Spec = Spec {
    unit: "product_attribute_values",
    select: "v.*",
    from: "shop.product_attribute_values v JOIN shop.products p ON p.id = v.product_id \
           LEFT JOIN shop.attribute_options o ON o.id = v.option_id",
    shop_column: Some("p.shop_id"),
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
/// triple twice: [`Error::Conflict`] `uq_product_attribute_values_product_attribute_option`.
#[tracing::instrument(skip_all, fields(%shop_id, %product_id, %attribute_id))]
pub async fn create(
    exec: impl PgExecutor<'_>,
    shop_id: Uuid,
    product_id: Uuid,
    attribute_id: Uuid,
    option_id: Option<Uuid>,
) -> Result<ProductAttributeValue> {
    sqlx::query_as!(
        ProductAttributeValue,
        r#"INSERT INTO shop.product_attribute_values (product_id, attribute_id, option_id)
           SELECT p.id, a.id, $4
           FROM shop.products p JOIN shop.attributes a ON a.shop_id = p.shop_id
           WHERE p.shop_id = $1 AND p.id = $2 AND a.id = $3
           RETURNING *"#,
        shop_id,
        product_id,
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
    shop_id: Uuid,
    id: Uuid,
) -> Result<ProductAttributeValue> {
    sqlx::query_as!(
        ProductAttributeValue,
        r#"SELECT v.* FROM shop.product_attribute_values v JOIN shop.products p ON p.id = v.product_id
           WHERE p.shop_id = $1 AND v.id = $2"#,
        shop_id,
        id
    )
    .fetch_optional(exec)
    .await?
    .ok_or(Error::NotFound)
}

/// Changes the option of a value of the shop.
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn set_option(
    exec: impl PgExecutor<'_>,
    shop_id: Uuid,
    id: Uuid,
    option_id: Option<Uuid>,
) -> Result<ProductAttributeValue> {
    sqlx::query_as!(
        ProductAttributeValue,
        r#"UPDATE shop.product_attribute_values v SET option_id = $3
           FROM shop.products p
           WHERE p.id = v.product_id AND p.shop_id = $1 AND v.id = $2
           RETURNING v.*"#,
        shop_id,
        id,
        option_id
    )
    .fetch_optional(exec)
    .await?
    .ok_or(Error::NotFound)
}

/// Deletes a value of the shop.
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn delete(exec: impl PgExecutor<'_>, shop_id: Uuid, id: Uuid) -> Result<()> {
    let done = sqlx::query!(
        r#"DELETE FROM shop.product_attribute_values v USING shop.products p
           WHERE p.id = v.product_id AND p.shop_id = $1 AND v.id = $2"#,
        shop_id,
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
    shop_id: Uuid,
    params: &ListParams,
) -> Result<Page<ProductAttributeValue>> {
    list::fetch(conn, &LIST, Some(shop_id), params).await
}
