//! `shop.attributes` and `shop.attribute_translations`: product attributes such as "size" or
//! "colour". Deleting an attribute removes its translation and options; if a product still uses
//! the attribute or one of its options, the delete is refused as a whole with
//! [`Error::Conflict`] (`fk_product_attribute_values_attribute_id_attributes` or
//! `fk_product_attribute_values_option_id_attribute_options`).

use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::list::{self, ListParams, Page, Spec, text_col};
use super::tags::NameTranslationInput;
use super::translation::Translated;
use crate::{Error, Result, ResultExt, tx};

/// A row of `shop.attributes`.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct Attribute {
    /// Primary key.
    pub id: Uuid,
    /// Owning shop.
    pub shop_id: Uuid,
    /// Name, unique per shop.
    pub name: String,
    /// Unit, e.g. `cm`.
    pub unit: Option<String>,
}

/// A row of `shop.attribute_translations`.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct AttributeTranslation {
    /// Primary key.
    pub id: Uuid,
    /// The attribute (exactly one translation each).
    pub attribute_id: Uuid,
    /// Name, main language.
    pub main_name: String,
    /// Name, alt1.
    pub alt1_name: Option<String>,
    /// Name, alt2.
    pub alt2_name: Option<String>,
}

super::translation::impl_named!(AttributeTranslation);

/// Fields of an attribute written by create and update.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NewAttribute {
    /// Name, unique per shop.
    pub name: String,
    /// Unit.
    pub unit: Option<String>,
    /// Translation; when absent its main name is the attribute's `name`.
    pub translation: Option<NameTranslationInput>,
}

/// An attribute with its translation.
pub type AttributeWithTranslation = Translated<Attribute, AttributeTranslation>;

/// List definition: filter and sort `name`, `unit`, `main_name`, `alt1_name`, `alt2_name`; bare
/// search over the name and the three translated names.
pub static LIST: Spec = Spec {
    unit: "attributes",
    select: "to_jsonb(a) AS item, to_jsonb(t) AS translation",
    from: "shop.attributes a LEFT JOIN shop.attribute_translations t ON t.attribute_id = a.id",
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

impl NewAttribute {
    fn translation(&self) -> Result<NameTranslationInput> {
        if self.name.is_empty() {
            return Err(Error::invalid_input("attribute name is required"));
        }
        self.translation
            .clone()
            .unwrap_or_else(|| NameTranslationInput::main(self.name.clone()))
            .normalized()
    }
}

async fn upsert_translation(
    exec: impl PgExecutor<'_>,
    attribute_id: Uuid,
    t: &NameTranslationInput,
) -> Result<AttributeTranslation> {
    Ok(sqlx::query_as!(
        AttributeTranslation,
        r#"INSERT INTO shop.attribute_translations (attribute_id, main_name, alt1_name, alt2_name)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (attribute_id) DO UPDATE SET main_name = EXCLUDED.main_name,
               alt1_name = EXCLUDED.alt1_name, alt2_name = EXCLUDED.alt2_name
           RETURNING *"#,
        attribute_id,
        t.main_name,
        t.alt1_name,
        t.alt2_name,
    )
    .fetch_one(exec)
    .await?)
}

/// Creates an attribute and its translation in one transaction. A name already used in the
/// shop is [`Error::Conflict`] `uq_attributes_shop_id_name`; unknown shop: [`Error::NotFound`].
#[tracing::instrument(skip_all, fields(%shop_id))]
pub async fn create(
    conn: &mut PgConnection,
    shop_id: Uuid,
    new: &NewAttribute,
) -> Result<AttributeWithTranslation> {
    let translation = new.translation()?;
    tx::transaction(conn, async |tx| {
        let attribute = sqlx::query_as!(
            Attribute,
            "INSERT INTO shop.attributes (shop_id, name, unit) VALUES ($1, $2, $3) RETURNING *",
            shop_id,
            new.name,
            new.unit
        )
        .fetch_one(&mut *tx)
        .await
        .on_constraint("fk_attributes_shop_id_shops", |_| Error::NotFound)?;
        let translation = upsert_translation(&mut *tx, attribute.id, &translation).await?;
        Ok((attribute, translation).into())
    })
    .await
}

/// Fetches an attribute of the shop with its translation, in one query.
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn get(
    exec: impl PgExecutor<'_>,
    shop_id: Uuid,
    id: Uuid,
) -> Result<AttributeWithTranslation> {
    // Explicit columns (not `to_jsonb(row)`), so the compiler checks every field against the
    // schema; the translation's columns are nullable through the LEFT JOIN.
    let r = sqlx::query!(
        r#"SELECT a.id, a.shop_id, a.name, a.unit,
                  t.id AS "t_id?", t.main_name AS "t_main_name?",
                  t.alt1_name AS "t_alt1_name?", t.alt2_name AS "t_alt2_name?"
           FROM shop.attributes a
           LEFT JOIN shop.attribute_translations t ON t.attribute_id = a.id
           WHERE a.shop_id = $1 AND a.id = $2"#,
        shop_id,
        id
    )
    .fetch_optional(exec)
    .await?
    .ok_or(Error::NotFound)?;
    let translation = match (r.t_id, r.t_main_name) {
        (Some(t_id), Some(main_name)) => Some(AttributeTranslation {
            id: t_id,
            attribute_id: r.id,
            main_name,
            alt1_name: r.t_alt1_name,
            alt2_name: r.t_alt2_name,
        }),
        _ => None,
    };
    Ok(Translated {
        item: Attribute {
            id: r.id,
            shop_id: r.shop_id,
            name: r.name,
            unit: r.unit,
        },
        translation,
    })
}

/// Replaces an attribute's fields and translation in one transaction.
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn update(
    conn: &mut PgConnection,
    shop_id: Uuid,
    id: Uuid,
    new: &NewAttribute,
) -> Result<AttributeWithTranslation> {
    let translation = new.translation()?;
    tx::transaction(conn, async |tx| {
        let attribute = sqlx::query_as!(
            Attribute,
            "UPDATE shop.attributes SET name = $3, unit = $4 WHERE shop_id = $1 AND id = $2 RETURNING *",
            shop_id,
            id,
            new.name,
            new.unit
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(Error::NotFound)?;
        let translation = upsert_translation(&mut *tx, attribute.id, &translation).await?;
        Ok((attribute, translation).into())
    })
    .await
}

/// Deletes an attribute of the shop with its translation and options; in use by a product:
/// [`Error::Conflict`], nothing deleted.
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn delete(exec: impl PgExecutor<'_>, shop_id: Uuid, id: Uuid) -> Result<()> {
    let done = sqlx::query!(
        "DELETE FROM shop.attributes WHERE shop_id = $1 AND id = $2",
        shop_id,
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
    shop_id: Uuid,
    params: &ListParams,
) -> Result<Page<AttributeWithTranslation>> {
    list::fetch(conn, &LIST, Some(shop_id), params).await
}
