//! `shop.tags` and `shop.tag_translations`. Deleting a tag removes its translation and its
//! product links.

use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::ShopId;
use super::input;
use super::list::{self, ListPage, ListParams, Spec, text_col};
use super::translation::{self, Translated};
use crate::{Error, Result, ResultExt, tx};

/// A row of `shop.tags`.
#[derive(Debug, Clone, Serialize)]
pub struct Tag {
    /// Primary key.
    pub id: Uuid,
    /// Owning shop.
    pub shop_id: ShopId,
    /// Internal name for the admin (not unique, not shown to customers); the catalog shows it
    /// when the tag has no translation.
    pub name: Option<String>,
}

/// A row of `shop.tag_translations`.
#[derive(Debug, Clone, Serialize)]
pub struct TagTranslation {
    /// Primary key.
    pub id: Uuid,
    /// The tag (exactly one translation each).
    pub tag_id: Uuid,
    /// Name in the shop's main language.
    pub main_name: String,
    /// Name in alt1; `None` falls back to `main_name`.
    pub alt1_name: Option<String>,
    /// Name in alt2; `None` falls back to `main_name`.
    pub alt2_name: Option<String>,
}

super::translation::impl_named!(TagTranslation);

/// Translated names written with a tag or attribute: the main name is required (not blank), blank
/// alt names are stored as NULL; each at most 100 characters.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NameTranslationInput {
    /// Name in the main language.
    pub main_name: String,
    /// Name in alt1.
    pub alt1_name: Option<String>,
    /// Name in alt2.
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
        input::name("translation.main_name", &self.main_name, 100)?;
        Ok(NameTranslationInput {
            main_name: self.main_name.clone(),
            alt1_name: translation::optional(
                "translation.alt1_name",
                self.alt1_name.as_ref(),
                100,
            )?,
            alt2_name: translation::optional(
                "translation.alt2_name",
                self.alt2_name.as_ref(),
                100,
            )?,
        })
    }
}

/// Everything a tag's create and update write.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TagFields {
    /// Internal name, at most 60 characters; blank is refused (leave it `None` instead).
    pub name: Option<String>,
    /// The translation.
    pub translation: NameTranslationInput,
}

impl TagFields {
    fn check(&self) -> Result<NameTranslationInput> {
        input::opt_name("name", self.name.as_deref(), 60)?;
        self.translation.normalized()
    }
}

/// A tag with its translation.
pub type TagWithTranslation = Translated<Tag, TagTranslation>;

/// The flat row of a tag joined to its translation: what [`get`] and [`list`] decode.
#[derive(sqlx::FromRow)]
pub(crate) struct TagRow {
    id: Uuid,
    shop_id: ShopId,
    name: Option<String>,
    t_id: Option<Uuid>,
    t_main_name: Option<String>,
    t_alt1_name: Option<String>,
    t_alt2_name: Option<String>,
}

impl From<TagRow> for TagWithTranslation {
    fn from(r: TagRow) -> Self {
        let translation = match (r.t_id, r.t_main_name) {
            (Some(id), Some(main_name)) => Some(TagTranslation {
                id,
                tag_id: r.id,
                main_name,
                alt1_name: r.t_alt1_name,
                alt2_name: r.t_alt2_name,
            }),
            _ => None,
        };
        Translated {
            item: Tag {
                id: r.id,
                shop_id: r.shop_id,
                name: r.name,
            },
            translation,
        }
    }
}

/// List definition: filter and sort `name`, `main_name`, `alt1_name`, `alt2_name`; bare search
/// over all four.
pub static LIST: Spec = Spec {
    unit: "tags",
    select: "g.id, g.shop_id, g.name, t.id AS t_id, t.main_name AS t_main_name, \
             t.alt1_name AS t_alt1_name, t.alt2_name AS t_alt2_name",
    from: "shop.tags g LEFT JOIN shop.tag_translations t ON t.shop_id = g.shop_id AND t.tag_id = g.id",
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
    shop_id: ShopId,
    tag_id: Uuid,
    t: &NameTranslationInput,
) -> Result<TagTranslation> {
    Ok(sqlx::query_as!(
        TagTranslation,
        r#"INSERT INTO shop.tag_translations (shop_id, tag_id, main_name, alt1_name, alt2_name)
           VALUES ($5, $1, $2, $3, $4)
           ON CONFLICT (shop_id, tag_id) DO UPDATE SET main_name = EXCLUDED.main_name,
               alt1_name = EXCLUDED.alt1_name, alt2_name = EXCLUDED.alt2_name
           RETURNING id, tag_id, main_name, alt1_name, alt2_name"#,
        tag_id,
        t.main_name,
        t.alt1_name,
        t.alt2_name,
        shop_id.get(),
    )
    .fetch_one(exec)
    .await?)
}

/// Creates a tag and its translation in one transaction. Unknown shop: [`Error::NotFound`].
#[tracing::instrument(skip_all, fields(%shop_id))]
pub async fn create(
    conn: &mut PgConnection,
    shop_id: ShopId,
    fields: &TagFields,
) -> Result<TagWithTranslation> {
    let translation = fields.check()?;
    tx::transaction(conn, async |tx| {
        let tag = sqlx::query_as!(
            Tag,
            "INSERT INTO shop.tags (shop_id, name) VALUES ($1, $2) RETURNING id, shop_id, name",
            shop_id.get(),
            fields.name
        )
        .fetch_one(&mut *tx)
        .await
        .on_constraint("fk_tags_shop_id_shops", |_| Error::NotFound)?;
        let translation = upsert_translation(&mut *tx, shop_id, tag.id, &translation).await?;
        Ok((tag, translation).into())
    })
    .await
}

/// Fetches a tag of the shop with its translation, in one query.
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn get(
    exec: impl PgExecutor<'_>,
    shop_id: ShopId,
    id: Uuid,
) -> Result<TagWithTranslation> {
    sqlx::query_as!(
        TagRow,
        r#"SELECT g.id, g.shop_id, g.name,
                  t.id AS "t_id?", t.main_name AS "t_main_name?",
                  t.alt1_name AS "t_alt1_name?", t.alt2_name AS "t_alt2_name?"
           FROM shop.tags g
           LEFT JOIN shop.tag_translations t ON t.shop_id = g.shop_id AND t.tag_id = g.id
           WHERE g.shop_id = $1 AND g.id = $2"#,
        shop_id.get(),
        id
    )
    .fetch_optional(exec)
    .await?
    .map(Into::into)
    .ok_or(Error::NotFound)
}

/// Replaces a tag's name and translation in one transaction.
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn update(
    conn: &mut PgConnection,
    shop_id: ShopId,
    id: Uuid,
    fields: &TagFields,
) -> Result<TagWithTranslation> {
    let translation = fields.check()?;
    tx::transaction(conn, async |tx| {
        let tag = sqlx::query_as!(
            Tag,
            "UPDATE shop.tags SET name = $3 WHERE shop_id = $1 AND id = $2 RETURNING id, shop_id, name",
            shop_id.get(),
            id,
            fields.name
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(Error::NotFound)?;
        let translation = upsert_translation(&mut *tx, shop_id, tag.id, &translation).await?;
        Ok((tag, translation).into())
    })
    .await
}

/// Deletes a tag of the shop with its translation and product links.
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn delete(exec: impl PgExecutor<'_>, shop_id: ShopId, id: Uuid) -> Result<()> {
    let done = sqlx::query!(
        "DELETE FROM shop.tags WHERE shop_id = $1 AND id = $2",
        shop_id.get(),
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
    shop_id: ShopId,
    params: &ListParams,
) -> Result<ListPage<TagWithTranslation>> {
    list::fetch::<TagRow, _>(conn, &LIST, Some(shop_id), params).await
}
