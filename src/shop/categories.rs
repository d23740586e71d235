//! `shop.categories` and `shop.category_translations`.
//!
//! A category is created and updated together with its translation in one transaction. Its
//! `order_number` is appended per shop under a lock and can be swapped with another category's.
//! Deleting a category that still has products is [`Error::Conflict`] on
//! `fk_products_category_id_categories`; its translation goes with it.

use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::input::{self, LONG_TEXT};
use super::list::{self, ListPage, ListParams, Spec, eq_col, text_col};
use super::translation::{self, Lang, Translated};
use super::{ShopId, stale_or_missing};
use crate::{Error, Result, ResultExt, tx};

/// A row of `shop.categories`.
#[derive(Debug, Clone, Serialize)]
pub struct Category {
    /// Primary key.
    pub id: Uuid,
    /// Owning shop.
    pub shop_id: ShopId,
    /// Display colour, a CSS colour such as `#376E1A` (the default).
    pub color: Option<String>,
    /// Icon name of the storefront's icon set.
    pub icon: Option<String>,
    /// Position within the shop (ascending); numbers may have gaps.
    pub order_number: i32,
    /// Image URL per language slot; `None` shows no image.
    pub main_image: Option<String>,
    /// See `main_image`.
    pub alt1_image: Option<String>,
    /// See `main_image`.
    pub alt2_image: Option<String>,
    /// Bumped by every [`update`]; pass it back to the next one.
    pub version: i32,
}

/// A row of `shop.category_translations`.
#[derive(Debug, Clone, Serialize)]
pub struct CategoryTranslation {
    /// Primary key.
    pub id: Uuid,
    /// The category (exactly one translation each).
    pub category_id: Uuid,
    /// Name in the shop's main language.
    pub main_name: String,
    /// Description in the main language (unbounded text, not indexed).
    pub main_description: String,
    /// Name in the first alternative language; `None` falls back to `main_name`.
    pub alt1_name: Option<String>,
    /// Description in alt1; `None` falls back to `main_description`.
    pub alt1_description: Option<String>,
    /// Name in the second alternative language; `None` falls back to `main_name`.
    pub alt2_name: Option<String>,
    /// Description in alt2; `None` falls back to `main_description`.
    pub alt2_description: Option<String>,
}

super::translation::impl_named!(CategoryTranslation);

/// Translation written with a category: main name and description required (not blank), blank
/// alt values stored as NULL. Names hold at most 255 characters.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CategoryTranslationInput {
    /// Name in the main language.
    pub main_name: String,
    /// Description in the main language.
    pub main_description: String,
    /// Name in alt1.
    pub alt1_name: Option<String>,
    /// Description in alt1.
    pub alt1_description: Option<String>,
    /// Name in alt2.
    pub alt2_name: Option<String>,
    /// Description in alt2.
    pub alt2_description: Option<String>,
}

impl CategoryTranslationInput {
    fn normalized(&self) -> Result<Self> {
        input::name("translation.main_name", &self.main_name, 255)?;
        input::name(
            "translation.main_description",
            &self.main_description,
            LONG_TEXT,
        )?;
        Ok(CategoryTranslationInput {
            main_name: self.main_name.clone(),
            main_description: self.main_description.clone(),
            alt1_name: translation::optional(
                "translation.alt1_name",
                self.alt1_name.as_ref(),
                255,
            )?,
            alt1_description: translation::optional(
                "translation.alt1_description",
                self.alt1_description.as_ref(),
                LONG_TEXT,
            )?,
            alt2_name: translation::optional(
                "translation.alt2_name",
                self.alt2_name.as_ref(),
                255,
            )?,
            alt2_description: translation::optional(
                "translation.alt2_description",
                self.alt2_description.as_ref(),
                LONG_TEXT,
            )?,
        })
    }
}

/// Everything a category's create and update write (the shop comes from the caller's scope,
/// never from here).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CategoryFields {
    /// CSS colour, at most 20 characters; `None` on create takes the default `#376E1A`.
    pub color: Option<String>,
    /// Icon name, at most 100 characters.
    pub icon: Option<String>,
    /// Image URL for the main language, at most 255 characters.
    pub main_image: Option<String>,
    /// Image URL for alt1, at most 255 characters.
    pub alt1_image: Option<String>,
    /// Image URL for alt2, at most 255 characters.
    pub alt2_image: Option<String>,
    /// The translation.
    pub translation: CategoryTranslationInput,
}

impl CategoryFields {
    fn check(&self) -> Result<CategoryTranslationInput> {
        input::opt_text("color", self.color.as_deref(), 20)?;
        input::opt_text("icon", self.icon.as_deref(), 100)?;
        input::opt_text("main_image", self.main_image.as_deref(), 255)?;
        input::opt_text("alt1_image", self.alt1_image.as_deref(), 255)?;
        input::opt_text("alt2_image", self.alt2_image.as_deref(), 255)?;
        self.translation.normalized()
    }
}

/// A category with its translation.
pub type CategoryWithTranslation = Translated<Category, CategoryTranslation>;

/// The flat row of a category joined to its translation: what [`get`] and [`list`] decode.
#[derive(sqlx::FromRow)]
pub(crate) struct CategoryRow {
    id: Uuid,
    shop_id: ShopId,
    color: Option<String>,
    icon: Option<String>,
    order_number: i32,
    main_image: Option<String>,
    alt1_image: Option<String>,
    alt2_image: Option<String>,
    version: i32,
    t_id: Option<Uuid>,
    t_main_name: Option<String>,
    t_main_description: Option<String>,
    t_alt1_name: Option<String>,
    t_alt1_description: Option<String>,
    t_alt2_name: Option<String>,
    t_alt2_description: Option<String>,
}

impl From<CategoryRow> for CategoryWithTranslation {
    fn from(r: CategoryRow) -> Self {
        let translation = match (r.t_id, r.t_main_name, r.t_main_description) {
            (Some(id), Some(main_name), Some(main_description)) => Some(CategoryTranslation {
                id,
                category_id: r.id,
                main_name,
                main_description,
                alt1_name: r.t_alt1_name,
                alt1_description: r.t_alt1_description,
                alt2_name: r.t_alt2_name,
                alt2_description: r.t_alt2_description,
            }),
            _ => None,
        };
        Translated {
            item: Category {
                id: r.id,
                shop_id: r.shop_id,
                color: r.color,
                icon: r.icon,
                order_number: r.order_number,
                main_image: r.main_image,
                alt1_image: r.alt1_image,
                alt2_image: r.alt2_image,
                version: r.version,
            },
            translation,
        }
    }
}

/// List definition: filter `main_name`, `alt1_name`, `alt2_name`, `color`, `icon` (substring),
/// `order_number` (exact); sort the same columns; bare search over the three names.
pub static LIST: Spec = Spec {
    unit: "categories",
    select: "c.id, c.shop_id, c.color, c.icon, c.order_number, c.main_image, c.alt1_image, \
             c.alt2_image, c.version, t.id AS t_id, t.main_name AS t_main_name, \
             t.main_description AS t_main_description, t.alt1_name AS t_alt1_name, \
             t.alt1_description AS t_alt1_description, t.alt2_name AS t_alt2_name, \
             t.alt2_description AS t_alt2_description",
    from: "shop.categories c LEFT JOIN shop.category_translations t ON t.shop_id = c.shop_id AND t.category_id = c.id",
    shop_column: Some("c.shop_id"),
    id: "c.id",
    columns: &[
        text_col!("main_name", "t.main_name"),
        text_col!("alt1_name", "t.alt1_name"),
        text_col!("alt2_name", "t.alt2_name"),
        text_col!("color", "c.color"),
        text_col!("icon", "c.icon"),
        eq_col!("order_number", "c.order_number", Int),
    ],
    search: &["t.main_name", "t.alt1_name", "t.alt2_name"],
};

async fn upsert_translation(
    exec: impl PgExecutor<'_>,
    shop_id: ShopId,
    category_id: Uuid,
    t: &CategoryTranslationInput,
) -> Result<CategoryTranslation> {
    Ok(sqlx::query_as!(
        CategoryTranslation,
        r#"INSERT INTO shop.category_translations (shop_id, category_id, main_name,
               main_description, alt1_name, alt1_description, alt2_name, alt2_description)
           VALUES ($8, $1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (shop_id, category_id) DO UPDATE SET
               main_name = EXCLUDED.main_name, main_description = EXCLUDED.main_description,
               alt1_name = EXCLUDED.alt1_name, alt1_description = EXCLUDED.alt1_description,
               alt2_name = EXCLUDED.alt2_name, alt2_description = EXCLUDED.alt2_description
           RETURNING id, category_id, main_name, main_description, alt1_name, alt1_description,
                     alt2_name, alt2_description"#,
        category_id,
        t.main_name,
        t.main_description,
        t.alt1_name,
        t.alt1_description,
        t.alt2_name,
        t.alt2_description,
        shop_id.get(),
    )
    .fetch_one(exec)
    .await?)
}

/// Creates a category and its translation in one transaction, appending it at the end of the
/// shop's order. An unknown shop is [`Error::NotFound`].
#[tracing::instrument(skip_all, fields(%shop_id))]
pub async fn create(
    conn: &mut PgConnection,
    shop_id: ShopId,
    fields: &CategoryFields,
) -> Result<CategoryWithTranslation> {
    let translation = fields.check()?;
    tx::transaction(conn, async |tx| {
        super::lock_ordering(&mut *tx, "shop.categories", shop_id, None).await?;
        let category = sqlx::query_as!(
            Category,
            r#"INSERT INTO shop.categories (shop_id, color, icon, main_image, alt1_image, alt2_image,
                   order_number)
               SELECT $1, coalesce($2, '#376E1A'), $3, $4, $5, $6, coalesce(max(order_number) + 1, 0)
               FROM shop.categories WHERE shop_id = $1
               RETURNING id, shop_id, color, icon, order_number, main_image, alt1_image,
                         alt2_image, version"#,
            shop_id.get(),
            fields.color,
            fields.icon,
            fields.main_image,
            fields.alt1_image,
            fields.alt2_image,
        )
        .fetch_one(&mut *tx)
        .await
        .on_constraint("fk_categories_shop_id_shops", |_| Error::NotFound)?;
        let translation = upsert_translation(&mut *tx, shop_id, category.id, &translation).await?;
        Ok((category, translation).into())
    })
    .await
}

/// Fetches a category of the shop with its translation, in one query.
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn get(
    exec: impl PgExecutor<'_>,
    shop_id: ShopId,
    id: Uuid,
) -> Result<CategoryWithTranslation> {
    sqlx::query_as!(
        CategoryRow,
        r#"SELECT c.id, c.shop_id, c.color, c.icon, c.order_number, c.main_image, c.alt1_image,
                  c.alt2_image, c.version,
                  t.id AS "t_id?", t.main_name AS "t_main_name?",
                  t.main_description AS "t_main_description?",
                  t.alt1_name AS "t_alt1_name?", t.alt1_description AS "t_alt1_description?",
                  t.alt2_name AS "t_alt2_name?", t.alt2_description AS "t_alt2_description?"
           FROM shop.categories c
           LEFT JOIN shop.category_translations t ON t.shop_id = c.shop_id AND t.category_id = c.id
           WHERE c.shop_id = $1 AND c.id = $2"#,
        shop_id.get(),
        id
    )
    .fetch_optional(exec)
    .await?
    .map(Into::into)
    .ok_or(Error::NotFound)
}

/// The category's name in `lang`, falling back to the main name, computed in SQL.
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn name(
    exec: impl PgExecutor<'_>,
    shop_id: ShopId,
    id: Uuid,
    lang: Lang,
) -> Result<String> {
    let lang = lang.as_str();
    sqlx::query_scalar!(
        r#"SELECT coalesce(CASE $3 WHEN 'alt1' THEN t.alt1_name WHEN 'alt2' THEN t.alt2_name END,
                           t.main_name) AS "name!"
           FROM shop.categories c JOIN shop.category_translations t ON t.shop_id = c.shop_id AND t.category_id = c.id
           WHERE c.shop_id = $1 AND c.id = $2"#,
        shop_id.get(),
        id,
        lang
    )
    .fetch_optional(exec)
    .await?
    .ok_or(Error::NotFound)
}

/// Replaces a category's fields and its translation in one transaction (the translation row is
/// created if another service left it missing). The order number is kept.
///
/// `version` is the [`Category::version`] the caller read: if the category was saved since,
/// the update is [`Error::Conflict`] on [`super::STALE_VERSION`] and changes nothing.
#[tracing::instrument(skip_all, fields(%shop_id, %id, version))]
pub async fn update(
    conn: &mut PgConnection,
    shop_id: ShopId,
    id: Uuid,
    version: i32,
    fields: &CategoryFields,
) -> Result<CategoryWithTranslation> {
    let translation = fields.check()?;
    tx::transaction(conn, async |tx| {
        let category = sqlx::query_as!(
            Category,
            r#"UPDATE shop.categories SET color = $4, icon = $5, main_image = $6, alt1_image = $7,
                   alt2_image = $8, version = version + 1
               WHERE shop_id = $1 AND id = $2 AND version = $3
               RETURNING id, shop_id, color, icon, order_number, main_image, alt1_image,
                         alt2_image, version"#,
            shop_id.get(),
            id,
            version,
            fields.color,
            fields.icon,
            fields.main_image,
            fields.alt1_image,
            fields.alt2_image,
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(category) = category else {
            return Err(missing_or_stale(&mut *tx, shop_id, id).await);
        };
        let translation = upsert_translation(&mut *tx, shop_id, category.id, &translation).await?;
        Ok((category, translation).into())
    })
    .await
}

/// Why a versioned update matched no row: the category is not the shop's, or it was saved since.
async fn missing_or_stale(exec: impl PgExecutor<'_>, shop_id: ShopId, id: Uuid) -> Error {
    let exists = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM shop.categories WHERE shop_id = $1 AND id = $2) AS "e!""#,
        shop_id.get(),
        id
    )
    .fetch_one(exec)
    .await;
    exists.map_or_else(Error::from, stale_or_missing)
}

/// Swaps the order numbers of two categories of the shop (gaps in the numbering do not matter).
#[tracing::instrument(skip_all, fields(%shop_id, %a, %b))]
pub async fn swap_order(
    exec: impl PgExecutor<'_>,
    shop_id: ShopId,
    a: Uuid,
    b: Uuid,
) -> Result<()> {
    if a == b {
        return Err(Error::invalid_input("cannot swap a category with itself"));
    }
    let done = sqlx::query!(
        r#"UPDATE shop.categories c SET order_number = o.order_number
           FROM shop.categories o
           WHERE c.shop_id = $1 AND o.shop_id = $1
             AND ((c.id = $2 AND o.id = $3) OR (c.id = $3 AND o.id = $2))"#,
        shop_id.get(),
        a,
        b
    )
    .execute(exec)
    .await?;
    if done.rows_affected() == 2 {
        Ok(())
    } else {
        Err(Error::NotFound)
    }
}

/// Deletes a category of the shop (and its translation). Still holding products:
/// [`Error::Conflict`] `fk_products_category_id_categories`.
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn delete(exec: impl PgExecutor<'_>, shop_id: ShopId, id: Uuid) -> Result<()> {
    let done = sqlx::query!(
        "DELETE FROM shop.categories WHERE shop_id = $1 AND id = $2",
        shop_id.get(),
        id
    )
    .execute(exec)
    .await
    .map_err(super::still_referenced)?;
    super::one_row(done.rows_affected())
}

/// Lists the shop's categories with their translations.
#[tracing::instrument(skip_all, fields(%shop_id))]
pub async fn list(
    conn: &mut PgConnection,
    shop_id: ShopId,
    params: &ListParams,
) -> Result<ListPage<CategoryWithTranslation>> {
    list::fetch::<CategoryRow, _>(conn, &LIST, Some(shop_id), params).await
}
