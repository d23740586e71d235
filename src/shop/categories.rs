//! `shop.categories` and `shop.category_translations`.
//!
//! A category is created and updated together with its translation in one transaction. Its
//! `order_number` is appended per shop under a lock and can be swapped with another category's.
//! Deleting a category that still has products is [`Error::Conflict`] on
//! `fk_products_category_id_categories`; its translation goes with it.

use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::list::{self, ListParams, Page, Spec, eq_col, text_col};
use super::translation::{Lang, Translated, blank_to_none, required};
use crate::{Error, Result, ResultExt, tx};

/// A row of `shop.categories`.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct Category {
    /// Primary key.
    pub id: Uuid,
    /// Owning shop.
    pub shop_id: Uuid,
    /// Display colour.
    pub color: Option<String>,
    /// Icon name.
    pub icon: Option<String>,
    /// Position within the shop.
    pub order_number: i32,
    /// Image for the main language.
    pub main_image: Option<String>,
    /// Image for alt1.
    pub alt1_image: Option<String>,
    /// Image for alt2.
    pub alt2_image: Option<String>,
}

/// A row of `shop.category_translations`.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct CategoryTranslation {
    /// Primary key.
    pub id: Uuid,
    /// The category (exactly one translation each).
    pub category_id: Uuid,
    /// Name, main language.
    pub main_name: String,
    /// Description, main language.
    pub main_description: String,
    /// Name, alt1.
    pub alt1_name: Option<String>,
    /// Description, alt1.
    pub alt1_description: Option<String>,
    /// Name, alt2.
    pub alt2_name: Option<String>,
    /// Description, alt2.
    pub alt2_description: Option<String>,
}

super::translation::impl_named!(CategoryTranslation);

/// Translation fields written with a category. Main fields are required; empty alt fields are
/// stored as NULL.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CategoryTranslationInput {
    /// Name, main language.
    pub main_name: String,
    /// Description, main language.
    pub main_description: String,
    /// Name, alt1.
    pub alt1_name: Option<String>,
    /// Description, alt1.
    pub alt1_description: Option<String>,
    /// Name, alt2.
    pub alt2_name: Option<String>,
    /// Description, alt2.
    pub alt2_description: Option<String>,
}

impl CategoryTranslationInput {
    fn normalized(&self) -> Result<Self> {
        required("translation.main_name", &self.main_name)?;
        required("translation.main_description", &self.main_description)?;
        Ok(CategoryTranslationInput {
            main_name: self.main_name.clone(),
            main_description: self.main_description.clone(),
            alt1_name: blank_to_none(self.alt1_name.clone()),
            alt1_description: blank_to_none(self.alt1_description.clone()),
            alt2_name: blank_to_none(self.alt2_name.clone()),
            alt2_description: blank_to_none(self.alt2_description.clone()),
        })
    }
}

/// Fields of a category written by create and update (the shop comes from the caller's scope,
/// never from here).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NewCategory {
    /// Display colour.
    pub color: Option<String>,
    /// Icon name.
    pub icon: Option<String>,
    /// Image, main language.
    pub main_image: Option<String>,
    /// Image, alt1.
    pub alt1_image: Option<String>,
    /// Image, alt2.
    pub alt2_image: Option<String>,
    /// The translation.
    pub translation: CategoryTranslationInput,
}

/// A category with its translation.
pub type CategoryWithTranslation = Translated<Category, CategoryTranslation>;

/// List definition: filter `main_name`, `alt1_name`, `alt2_name`, `color`, `icon` (substring),
/// `order_number` (exact); sort the same columns; bare search over the three names.
pub static LIST: Spec = Spec {
    unit: "categories",
    select: "to_jsonb(c) AS item, to_jsonb(t) AS translation",
    from: "shop.categories c LEFT JOIN shop.category_translations t ON t.category_id = c.id",
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
    category_id: Uuid,
    t: &CategoryTranslationInput,
) -> Result<CategoryTranslation> {
    Ok(sqlx::query_as!(
        CategoryTranslation,
        r#"INSERT INTO shop.category_translations (category_id, main_name, main_description,
               alt1_name, alt1_description, alt2_name, alt2_description)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (category_id) DO UPDATE SET
               main_name = EXCLUDED.main_name, main_description = EXCLUDED.main_description,
               alt1_name = EXCLUDED.alt1_name, alt1_description = EXCLUDED.alt1_description,
               alt2_name = EXCLUDED.alt2_name, alt2_description = EXCLUDED.alt2_description
           RETURNING *"#,
        category_id,
        t.main_name,
        t.main_description,
        t.alt1_name,
        t.alt1_description,
        t.alt2_name,
        t.alt2_description,
    )
    .fetch_one(exec)
    .await?)
}

/// Creates a category and its translation in one transaction, appending it at the end of the
/// shop's order. An unknown shop is [`Error::NotFound`].
#[tracing::instrument(skip_all, fields(%shop_id))]
pub async fn create(
    conn: &mut PgConnection,
    shop_id: Uuid,
    new: &NewCategory,
) -> Result<CategoryWithTranslation> {
    let translation = new.translation.normalized()?;
    tx::transaction(conn, async |tx| {
        super::lock_ordering(&mut *tx, "shop.categories", shop_id, None).await?;
        let category = sqlx::query_as!(
            Category,
            r#"INSERT INTO shop.categories (shop_id, color, icon, main_image, alt1_image, alt2_image,
                   order_number)
               SELECT $1, coalesce($2, '#376E1A'), $3, $4, $5, $6, coalesce(max(order_number) + 1, 0)
               FROM shop.categories WHERE shop_id = $1
               RETURNING *"#,
            shop_id,
            new.color,
            new.icon,
            new.main_image,
            new.alt1_image,
            new.alt2_image,
        )
        .fetch_one(&mut *tx)
        .await
        .on_constraint("fk_categories_shop_id_shops", |_| Error::NotFound)?;
        let translation = upsert_translation(&mut *tx, category.id, &translation).await?;
        Ok((category, translation).into())
    })
    .await
}

/// Fetches a category of the shop with its translation, in one query.
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn get(
    exec: impl PgExecutor<'_>,
    shop_id: Uuid,
    id: Uuid,
) -> Result<CategoryWithTranslation> {
    // Explicit columns (not `to_jsonb(row)`), so the compiler checks every field against the
    // schema; the translation's columns are nullable through the LEFT JOIN.
    let r = sqlx::query!(
        r#"SELECT c.id, c.shop_id, c.color, c.icon, c.order_number,
                  c.main_image, c.alt1_image, c.alt2_image,
                  t.id AS "t_id?", t.main_name AS "t_main_name?",
                  t.main_description AS "t_main_description?",
                  t.alt1_name AS "t_alt1_name?", t.alt1_description AS "t_alt1_description?",
                  t.alt2_name AS "t_alt2_name?", t.alt2_description AS "t_alt2_description?"
           FROM shop.categories c
           LEFT JOIN shop.category_translations t ON t.category_id = c.id
           WHERE c.shop_id = $1 AND c.id = $2"#,
        shop_id,
        id
    )
    .fetch_optional(exec)
    .await?
    .ok_or(Error::NotFound)?;
    let translation = match (r.t_id, r.t_main_name, r.t_main_description) {
        (Some(t_id), Some(main_name), Some(main_description)) => Some(CategoryTranslation {
            id: t_id,
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
    Ok(Translated {
        item: Category {
            id: r.id,
            shop_id: r.shop_id,
            color: r.color,
            icon: r.icon,
            order_number: r.order_number,
            main_image: r.main_image,
            alt1_image: r.alt1_image,
            alt2_image: r.alt2_image,
        },
        translation,
    })
}

/// The category's name in `lang`, falling back to the main name, computed in SQL.
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn name(
    exec: impl PgExecutor<'_>,
    shop_id: Uuid,
    id: Uuid,
    lang: Lang,
) -> Result<String> {
    let lang = lang.as_str();
    sqlx::query_scalar!(
        r#"SELECT coalesce(CASE $3 WHEN 'alt1' THEN t.alt1_name WHEN 'alt2' THEN t.alt2_name END,
                           t.main_name) AS "name!"
           FROM shop.categories c JOIN shop.category_translations t ON t.category_id = c.id
           WHERE c.shop_id = $1 AND c.id = $2"#,
        shop_id,
        id,
        lang
    )
    .fetch_optional(exec)
    .await?
    .ok_or(Error::NotFound)
}

/// Replaces a category's fields and its translation in one transaction (the translation row is
/// created if another service left it missing). The order number is kept.
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn update(
    conn: &mut PgConnection,
    shop_id: Uuid,
    id: Uuid,
    new: &NewCategory,
) -> Result<CategoryWithTranslation> {
    let translation = new.translation.normalized()?;
    tx::transaction(conn, async |tx| {
        let category = sqlx::query_as!(
            Category,
            r#"UPDATE shop.categories SET color = $3, icon = $4, main_image = $5, alt1_image = $6,
                   alt2_image = $7
               WHERE shop_id = $1 AND id = $2
               RETURNING *"#,
            shop_id,
            id,
            new.color,
            new.icon,
            new.main_image,
            new.alt1_image,
            new.alt2_image,
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(Error::NotFound)?;
        let translation = upsert_translation(&mut *tx, category.id, &translation).await?;
        Ok((category, translation).into())
    })
    .await
}

/// Swaps the order numbers of two categories of the shop (gaps in the numbering do not matter).
#[tracing::instrument(skip_all, fields(%shop_id, %a, %b))]
pub async fn swap_order(exec: impl PgExecutor<'_>, shop_id: Uuid, a: Uuid, b: Uuid) -> Result<()> {
    if a == b {
        return Err(Error::invalid_input("cannot swap a category with itself"));
    }
    let done = sqlx::query!(
        r#"UPDATE shop.categories c SET order_number = o.order_number
           FROM shop.categories o
           WHERE c.shop_id = $1 AND o.shop_id = $1
             AND ((c.id = $2 AND o.id = $3) OR (c.id = $3 AND o.id = $2))"#,
        shop_id,
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
pub async fn delete(exec: impl PgExecutor<'_>, shop_id: Uuid, id: Uuid) -> Result<()> {
    let done = sqlx::query!(
        "DELETE FROM shop.categories WHERE shop_id = $1 AND id = $2",
        shop_id,
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
    shop_id: Uuid,
    params: &ListParams,
) -> Result<Page<CategoryWithTranslation>> {
    list::fetch(conn, &LIST, Some(shop_id), params).await
}
