//! `shop.attributes` and `shop.attribute_translations`: product attributes such as "size" or
//! "colour". Deleting an attribute removes its translation and options; if a product still uses
//! the attribute or one of its options, the delete is refused as a whole with
//! [`Error::Conflict`] (`fk_product_attribute_values_attribute_id_attributes` or
//! `fk_product_attribute_values_option_id_attribute_options`).

use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::list::{self, ListPage, ListParams, Spec, text_col};
use super::tags::NameTranslationInput;
use super::translation::Translated;
use super::{ShopId, input};
use crate::{Error, Result, ResultExt, tx};

/// A row of `shop.attributes`.
#[derive(Debug, Clone, Serialize)]
pub struct Attribute {
    /// Primary key.
    pub id: Uuid,
    /// Owning shop.
    pub shop_id: ShopId,
    /// Internal name, unique per shop (`uq_attributes_shop_id_name`).
    pub name: String,
    /// Unit the option values are in, e.g. `cm`; `None` for unitless attributes such as colour.
    pub unit: Option<String>,
}

/// A row of `shop.attribute_translations`.
#[derive(Debug, Clone, Serialize)]
pub struct AttributeTranslation {
    /// Primary key.
    pub id: Uuid,
    /// The attribute (exactly one translation each).
    pub attribute_id: Uuid,
    /// Name in the shop's main language.
    pub main_name: String,
    /// Name in alt1; `None` falls back to `main_name`.
    pub alt1_name: Option<String>,
    /// Name in alt2; `None` falls back to `main_name`.
    pub alt2_name: Option<String>,
}

super::translation::impl_named!(AttributeTranslation);

/// Everything an attribute's create and update write.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AttributeFields {
    /// Internal name, unique per shop, at most 60 characters, not blank.
    pub name: String,
    /// Unit, at most 20 characters.
    pub unit: Option<String>,
    /// Translation; when absent its main name is the attribute's `name`.
    pub translation: Option<NameTranslationInput>,
}

/// An attribute with its translation.
pub type AttributeWithTranslation = Translated<Attribute, AttributeTranslation>;

/// The flat row of an attribute joined to its translation: what [`get`] and [`list`] decode.
#[derive(sqlx::FromRow)]
pub(crate) struct AttributeRow {
    id: Uuid,
    shop_id: ShopId,
    name: String,
    unit: Option<String>,
    t_id: Option<Uuid>,
    t_main_name: Option<String>,
    t_alt1_name: Option<String>,
    t_alt2_name: Option<String>,
}

impl From<AttributeRow> for AttributeWithTranslation {
    fn from(r: AttributeRow) -> Self {
        let translation = match (r.t_id, r.t_main_name) {
            (Some(id), Some(main_name)) => Some(AttributeTranslation {
                id,
                attribute_id: r.id,
                main_name,
                alt1_name: r.t_alt1_name,
                alt2_name: r.t_alt2_name,
            }),
            _ => None,
        };
        Translated {
            item: Attribute {
                id: r.id,
                shop_id: r.shop_id,
                name: r.name,
                unit: r.unit,
            },
            translation,
        }
    }
}

/// List definition: filter and sort `name`, `unit`, `main_name`, `alt1_name`, `alt2_name`; bare
/// search over the name and the three translated names.
pub static LIST: Spec = Spec {
    unit: "attributes",
    select: "a.id, a.shop_id, a.name, a.unit, t.id AS t_id, t.main_name AS t_main_name, \
             t.alt1_name AS t_alt1_name, t.alt2_name AS t_alt2_name",
    from: "shop.attributes a LEFT JOIN shop.attribute_translations t ON t.shop_id = a.shop_id AND t.attribute_id = a.id",
    shop_column: Some("a.shop_id"),
    id: "a.id",
    columns: &[
        text_col!("name", "a.name"),
        text_col!("unit", "a.unit"),
        text_col!("main_name", "t.main_name"),
        text_col!("alt1_name", "t.alt1_name"),
        text_col!("alt2_name", "t.alt2_name"),
    ],
    search: &["a.name", "t.main_name", "t.alt1_name", "t.alt2_name"],
};

impl AttributeFields {
    fn translation(&self) -> Result<NameTranslationInput> {
        input::name("name", &self.name, 60)?;
        input::opt_text("unit", self.unit.as_deref(), 20)?;
        self.translation
            .clone()
            .unwrap_or_else(|| NameTranslationInput::main(self.name.clone()))
            .normalized()
    }
}

async fn upsert_translation(
    exec: impl PgExecutor<'_>,
    shop_id: ShopId,
    attribute_id: Uuid,
    t: &NameTranslationInput,
) -> Result<AttributeTranslation> {
    Ok(sqlx::query_as!(
        AttributeTranslation,
        r#"INSERT INTO shop.attribute_translations (shop_id, attribute_id, main_name, alt1_name, alt2_name)
           VALUES ($5, $1, $2, $3, $4)
           ON CONFLICT (shop_id, attribute_id) DO UPDATE SET main_name = EXCLUDED.main_name,
               alt1_name = EXCLUDED.alt1_name, alt2_name = EXCLUDED.alt2_name
           RETURNING id, attribute_id, main_name, alt1_name, alt2_name"#,
        attribute_id,
        t.main_name,
        t.alt1_name,
        t.alt2_name,
        shop_id.get(),
    )
    .fetch_one(exec)
    .await?)
}

/// Creates an attribute and its translation in one transaction. A name already used in the
/// shop is [`Error::Conflict`] `uq_attributes_shop_id_name`; unknown shop: [`Error::NotFound`].
#[tracing::instrument(skip_all, fields(%shop_id))]
pub async fn create(
    conn: &mut PgConnection,
    shop_id: ShopId,
    fields: &AttributeFields,
) -> Result<AttributeWithTranslation> {
    let translation = fields.translation()?;
    tx::transaction(conn, async |tx| {
        let attribute = sqlx::query_as!(
            Attribute,
            r#"INSERT INTO shop.attributes (shop_id, name, unit) VALUES ($1, $2, $3)
               RETURNING id, shop_id, name, unit"#,
            shop_id.get(),
            fields.name,
            fields.unit
        )
        .fetch_one(&mut *tx)
        .await
        .on_constraint("fk_attributes_shop_id_shops", |_| Error::NotFound)?;
        let translation = upsert_translation(&mut *tx, shop_id, attribute.id, &translation).await?;
        Ok((attribute, translation).into())
    })
    .await
}

/// Fetches an attribute of the shop with its translation, in one query.
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn get(
    exec: impl PgExecutor<'_>,
    shop_id: ShopId,
    id: Uuid,
) -> Result<AttributeWithTranslation> {
    sqlx::query_as!(
        AttributeRow,
        r#"SELECT a.id, a.shop_id, a.name, a.unit,
                  t.id AS "t_id?", t.main_name AS "t_main_name?",
                  t.alt1_name AS "t_alt1_name?", t.alt2_name AS "t_alt2_name?"
           FROM shop.attributes a
           LEFT JOIN shop.attribute_translations t ON t.shop_id = a.shop_id AND t.attribute_id = a.id
           WHERE a.shop_id = $1 AND a.id = $2"#,
        shop_id.get(),
        id
    )
    .fetch_optional(exec)
    .await?
    .map(Into::into)
    .ok_or(Error::NotFound)
}

/// Replaces an attribute's fields and translation in one transaction.
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn update(
    conn: &mut PgConnection,
    shop_id: ShopId,
    id: Uuid,
    fields: &AttributeFields,
) -> Result<AttributeWithTranslation> {
    let translation = fields.translation()?;
    tx::transaction(conn, async |tx| {
        let attribute = sqlx::query_as!(
            Attribute,
            r#"UPDATE shop.attributes SET name = $3, unit = $4 WHERE shop_id = $1 AND id = $2
               RETURNING id, shop_id, name, unit"#,
            shop_id.get(),
            id,
            fields.name,
            fields.unit
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(Error::NotFound)?;
        let translation = upsert_translation(&mut *tx, shop_id, attribute.id, &translation).await?;
        Ok((attribute, translation).into())
    })
    .await
}

/// Deletes an attribute of the shop with its translation and options; in use by a product:
/// [`Error::Conflict`], nothing deleted.
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn delete(exec: impl PgExecutor<'_>, shop_id: ShopId, id: Uuid) -> Result<()> {
    let done = sqlx::query!(
        "DELETE FROM shop.attributes WHERE shop_id = $1 AND id = $2",
        shop_id.get(),
        id
    )
    .execute(exec)
    .await
    .map_err(super::still_referenced)?;
    super::one_row(done.rows_affected())
}

/// Lists the shop's attributes with their translations.
#[tracing::instrument(skip_all, fields(%shop_id))]
pub async fn list(
    conn: &mut PgConnection,
    shop_id: ShopId,
    params: &ListParams,
) -> Result<ListPage<AttributeWithTranslation>> {
    list::fetch::<AttributeRow, _>(conn, &LIST, Some(shop_id), params).await
}
