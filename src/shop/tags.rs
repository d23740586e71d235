//! `shop.tags` and `shop.tag_translations`. Deleting a tag removes its translation and its
//! product links.

use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::list::{self, ListParams, Page, Spec, text_col};
use super::translation::{Translated, blank_to_none, required};
use crate::{Error, Result, ResultExt, tx};

/// A row of `shop.tags`.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct Tag {
    /// Primary key.
    pub id: Uuid,
    /// Owning shop.
    pub shop_id: Uuid,
    /// Internal name (not unique).
    pub name: Option<String>,
}

/// A row of `shop.tag_translations`.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct TagTranslation {
    /// Primary key.
    pub id: Uuid,
    /// The tag (exactly one translation each).
    pub tag_id: Uuid,
    /// Name, main language.
    pub main_name: String,
    /// Name, alt1.
    pub alt1_name: Option<String>,
    /// Name, alt2.
    pub alt2_name: Option<String>,
}

super::translation::impl_named!(TagTranslation);

/// Translation names written with a tag or attribute; main required, empty alt → NULL.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NameTranslationInput {
    /// Name, main language.
    pub main_name: String,
    /// Name, alt1.
    pub alt1_name: Option<String>,
    /// Name, alt2.
    pub alt2_name: Option<String>,
}

impl NameTranslationInput {
    /// Just a main name.
    pub fn main(name: impl Into<String>) -> Self {
        NameTranslationInput {
            main_name: name.into(),
            alt1_name: None,
            alt2_name: None,
        }
    }

    pub(crate) fn normalized(&self) -> Result<Self> {
        required("translation.main_name", &self.main_name)?;
        Ok(NameTranslationInput {
            main_name: self.main_name.clone(),
            alt1_name: blank_to_none(self.alt1_name.clone()),
            alt2_name: blank_to_none(self.alt2_name.clone()),
        })
    }
}

/// Fields of a tag written by create and update.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NewTag {
    /// Internal name.
    pub name: Option<String>,
    /// The translation.
    pub translation: NameTranslationInput,
}

/// A tag with its translation.
pub type TagWithTranslation = Translated<Tag, TagTranslation>;

/// List definition: filter and sort `name`, `main_name`, `alt1_name`, `alt2_name`; bare search
/// over all four.
pub static LIST: Spec = Spec {
    unit: "tags",
    select: "to_jsonb(g) AS item, to_jsonb(t) AS translation",
    from: "shop.tags g LEFT JOIN shop.tag_translations t ON t.tag_id = g.id",
    shop_column: Some("g.shop_id"),
    id: "g.id",
    columns: &[
        text_col!("name", "g.name"),
        text_col!("main_name", "t.main_name"),
        text_col!("alt1_name", "t.alt1_name"),
        text_col!("alt2_name", "t.alt2_name"),
    ],
    search: &["g.name", "t.main_name", "t.alt1_name", "t.alt2_name"],
};

async fn upsert_translation(
    exec: impl PgExecutor<'_>,
    tag_id: Uuid,
    t: &NameTranslationInput,
) -> Result<TagTranslation> {
    Ok(sqlx::query_as!(
        TagTranslation,
        r#"INSERT INTO shop.tag_translations (tag_id, main_name, alt1_name, alt2_name)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (tag_id) DO UPDATE SET main_name = EXCLUDED.main_name,
               alt1_name = EXCLUDED.alt1_name, alt2_name = EXCLUDED.alt2_name
           RETURNING *"#,
        tag_id,
        t.main_name,
        t.alt1_name,
        t.alt2_name,
    )
    .fetch_one(exec)
    .await?)
}

/// Creates a tag and its translation in one transaction. Unknown shop: [`Error::NotFound`].
#[tracing::instrument(skip_all, fields(%shop_id))]
pub async fn create(
    conn: &mut PgConnection,
    shop_id: Uuid,
    new: &NewTag,
) -> Result<TagWithTranslation> {
    let translation = new.translation.normalized()?;
    tx::transaction(conn, async |tx| {
        let tag = sqlx::query_as!(
            Tag,
            "INSERT INTO shop.tags (shop_id, name) VALUES ($1, $2) RETURNING *",
            shop_id,
            new.name
        )
        .fetch_one(&mut *tx)
        .await
        .on_constraint("fk_tags_shop_id_shops", |_| Error::NotFound)?;
        let translation = upsert_translation(&mut *tx, tag.id, &translation).await?;
        Ok((tag, translation).into())
    })
    .await
}

/// Fetches a tag of the shop with its translation, in one query.
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn get(exec: impl PgExecutor<'_>, shop_id: Uuid, id: Uuid) -> Result<TagWithTranslation> {
    // Explicit columns (not `to_jsonb(row)`), so the compiler checks every field against the
    // schema; the translation's columns are nullable through the LEFT JOIN.
    let r = sqlx::query!(
        r#"SELECT g.id, g.shop_id, g.name,
                  t.id AS "t_id?", t.main_name AS "t_main_name?",
                  t.alt1_name AS "t_alt1_name?", t.alt2_name AS "t_alt2_name?"
           FROM shop.tags g
           LEFT JOIN shop.tag_translations t ON t.tag_id = g.id
           WHERE g.shop_id = $1 AND g.id = $2"#,
        shop_id,
        id
    )
    .fetch_optional(exec)
    .await?
    .ok_or(Error::NotFound)?;
    let translation = match (r.t_id, r.t_main_name) {
        (Some(t_id), Some(main_name)) => Some(TagTranslation {
            id: t_id,
            tag_id: r.id,
            main_name,
            alt1_name: r.t_alt1_name,
            alt2_name: r.t_alt2_name,
        }),
        _ => None,
    };
    Ok(Translated {
        item: Tag {
            id: r.id,
            shop_id: r.shop_id,
            name: r.name,
        },
        translation,
    })
}

/// Replaces a tag's name and translation in one transaction.
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn update(
    conn: &mut PgConnection,
    shop_id: Uuid,
    id: Uuid,
    new: &NewTag,
) -> Result<TagWithTranslation> {
    let translation = new.translation.normalized()?;
    tx::transaction(conn, async |tx| {
        let tag = sqlx::query_as!(
            Tag,
            "UPDATE shop.tags SET name = $3 WHERE shop_id = $1 AND id = $2 RETURNING *",
            shop_id,
            id,
            new.name
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(Error::NotFound)?;
        let translation = upsert_translation(&mut *tx, tag.id, &translation).await?;
        Ok((tag, translation).into())
    })
    .await
}

/// Deletes a tag of the shop with its translation and product links.
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn delete(exec: impl PgExecutor<'_>, shop_id: Uuid, id: Uuid) -> Result<()> {
    let done = sqlx::query!(
        "DELETE FROM shop.tags WHERE shop_id = $1 AND id = $2",
        shop_id,
        id
    )
    .execute(exec)
    .await
    .map_err(super::still_referenced)?;
    super::one_row(done.rows_affected())
}

/// Lists the shop's tags with their translations.
#[tracing::instrument(skip_all, fields(%shop_id))]
pub async fn list(
    conn: &mut PgConnection,
    shop_id: Uuid,
    params: &ListParams,
) -> Result<Page<TagWithTranslation>> {
    list::fetch(conn, &LIST, Some(shop_id), params).await
}
