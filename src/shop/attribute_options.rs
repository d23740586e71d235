//! `shop.attribute_options`: the values of an attribute ("Small", "Red"). Scoped through their
//! attribute's shop. An option used by a product cannot be deleted ([`Error::Conflict`]
//! `fk_product_attribute_values_option_id_attribute_options`).

use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::list::{self, ListPage, ListParams, Spec, eq_col, text_col};
use super::{ShopId, input};
use crate::{Error, Result};

/// A row of `shop.attribute_options`.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AttributeOption {
    /// Primary key.
    pub id: Uuid,
    /// The attribute whose value this is (of the same shop).
    pub attribute_id: Uuid,
    /// The value, e.g. `small` or `red`; unique per attribute, at most 60 characters.
    pub value_key: String,
}

/// List definition: filter and sort `attribute_id` (uuid), `value_key`, `attribute_name`
/// (substring); bare search over the value key.
pub static LIST: Spec = Spec {
    unit: "attribute_options",
    select: "o.id, o.attribute_id, o.value_key",
    from: "shop.attribute_options o JOIN shop.attributes a ON a.shop_id = o.shop_id AND a.id = o.attribute_id",
    shop_column: Some("a.shop_id"),
    id: "o.id",
    columns: &[
        eq_col!("attribute_id", "o.attribute_id", Uuid),
        text_col!("value_key", "o.value_key"),
        text_col!("attribute_name", "a.name"),
    ],
    search: &["o.value_key"],
};

/// Adds an option to an attribute of the shop. An attribute of another shop is
/// [`Error::NotFound`]; a duplicate key is [`Error::Conflict`]
/// `uq_attribute_options_shop_id_attribute_id_value_key`.
#[tracing::instrument(skip_all, fields(%shop_id, %attribute_id))]
pub async fn create(
    exec: impl PgExecutor<'_>,
    shop_id: ShopId,
    attribute_id: Uuid,
    value_key: &str,
) -> Result<AttributeOption> {
    input::name("value_key", value_key, 60)?;
    sqlx::query_as!(
        AttributeOption,
        r#"INSERT INTO shop.attribute_options (shop_id, attribute_id, value_key)
           SELECT a.shop_id, a.id, $3 FROM shop.attributes a WHERE a.shop_id = $1 AND a.id = $2
           RETURNING id, attribute_id, value_key"#,
        shop_id.get(),
        attribute_id,
        value_key
    )
    .fetch_optional(exec)
    .await?
    .ok_or(Error::NotFound)
}

/// Fetches an option of the shop.
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn get(exec: impl PgExecutor<'_>, shop_id: ShopId, id: Uuid) -> Result<AttributeOption> {
    sqlx::query_as!(
        AttributeOption,
        r#"SELECT id, attribute_id, value_key FROM shop.attribute_options
           WHERE shop_id = $1 AND id = $2"#,
        shop_id.get(),
        id
    )
    .fetch_optional(exec)
    .await?
    .ok_or(Error::NotFound)
}

/// Renames an option's key.
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn update(
    exec: impl PgExecutor<'_>,
    shop_id: ShopId,
    id: Uuid,
    value_key: &str,
) -> Result<AttributeOption> {
    input::name("value_key", value_key, 60)?;
    sqlx::query_as!(
        AttributeOption,
        r#"UPDATE shop.attribute_options SET value_key = $3
           WHERE shop_id = $1 AND id = $2
           RETURNING id, attribute_id, value_key"#,
        shop_id.get(),
        id,
        value_key
    )
    .fetch_optional(exec)
    .await?
    .ok_or(Error::NotFound)
}

/// Deletes an option of the shop; in use by a product: [`Error::Conflict`].
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn delete(exec: impl PgExecutor<'_>, shop_id: ShopId, id: Uuid) -> Result<()> {
    let done = sqlx::query!(
        r#"DELETE FROM shop.attribute_options WHERE shop_id = $1 AND id = $2"#,
        shop_id.get(),
        id
    )
    .execute(exec)
    .await
    .map_err(super::still_referenced)?;
    super::one_row(done.rows_affected())
}

/// Lists the shop's options (filter `attribute_id:<uuid>` for one attribute).
#[tracing::instrument(skip_all, fields(%shop_id))]
pub async fn list(
    conn: &mut PgConnection,
    shop_id: ShopId,
    params: &ListParams,
) -> Result<ListPage<AttributeOption>> {
    list::fetch::<AttributeOption, _>(conn, &LIST, Some(shop_id), params).await
}
