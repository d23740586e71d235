//! `shop.products` and `shop.product_translations`.
//!
//! A product is created and updated together with its translation in one transaction; its
//! `order_number` is appended per (shop, category) under a lock and can be swapped within the
//! category. Deleting a product removes its translation, tag links and attribute values; info
//! requests keep existing with `product_id = NULL`.
//!
//! Lists support the attribute filters `attribute_id:<uuid>`, `option_id:<uuid>` (repeat it:
//! every option must match), `option_value_key:<text>` and `attribute_name:<text>` (any
//! language), and keyset pagination ([`list_after`]) ordered by `(created_at, id)`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgExecutor, Postgres, QueryBuilder};
use uuid::Uuid;

use super::list::{
    self, Column, Filters, KeysetPage, ListParams, Page, Spec, Val, eq_col, sort_col, text_col,
};
use super::translation::{Lang, Translated, blank_to_none, required};
use crate::{Error, Result, ResultExt, tx};

/// A row of `shop.products`.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct Product {
    /// Primary key.
    pub id: Uuid,
    /// Owning shop.
    pub shop_id: Uuid,
    /// Category (of the same shop).
    pub category_id: Option<Uuid>,
    /// Price.
    pub price: Option<f64>,
    /// Which `shops.vat_*` rate applies (`vat_standard`, `vat_lower_1`, …).
    pub tax_category: String,
    /// Discounted price.
    pub discounted_price: Option<f64>,
    /// Discount start.
    pub discounted_from: Option<DateTime<Utc>>,
    /// Discount end.
    pub discounted_to: Option<DateTime<Utc>>,
    /// Image 1.
    pub image_1: Option<String>,
    /// Image 2.
    pub image_2: Option<String>,
    /// Image 3.
    pub image_3: Option<String>,
    /// Image 4.
    pub image_4: Option<String>,
    /// Image 5.
    pub image_5: Option<String>,
    /// Image 6.
    pub image_6: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last modification (maintained by a trigger).
    pub modified_at: DateTime<Utc>,
    /// Monthly subscription price.
    pub recurring_price_monthly: Option<f64>,
    /// Yearly subscription price.
    pub recurring_price_yearly: Option<f64>,
    /// At most one per order.
    pub max_one: bool,
    /// Link to a digital asset.
    pub digital: Option<String>,
    /// Needs shipping.
    pub shippable: bool,
    /// Featured.
    pub featured: bool,
    /// Marked as new.
    pub new_product: bool,
    /// Position within (shop, category).
    pub order_number: i32,
    /// Units in stock (never negative).
    pub stock: i32,
}

/// A row of `shop.product_translations`.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct ProductTranslation {
    /// Primary key.
    pub id: Uuid,
    /// The product (exactly one translation each).
    pub product_id: Uuid,
    /// Name, main language.
    pub main_name: String,
    /// Description, main language (unbounded, not indexed).
    pub main_description: String,
    /// Short description, main language.
    pub main_description_short: String,
    /// Name, alt1.
    pub alt1_name: Option<String>,
    /// Description, alt1.
    pub alt1_description: Option<String>,
    /// Short description, alt1.
    pub alt1_description_short: Option<String>,
    /// Name, alt2.
    pub alt2_name: Option<String>,
    /// Description, alt2.
    pub alt2_description: Option<String>,
    /// Short description, alt2.
    pub alt2_description_short: Option<String>,
}

super::translation::impl_named!(ProductTranslation);

/// Translation fields written with a product; main fields required, empty alt fields → NULL.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ProductTranslationInput {
    /// Name, main language.
    pub main_name: String,
    /// Description, main language.
    pub main_description: String,
    /// Short description, main language.
    pub main_description_short: String,
    /// Name, alt1.
    pub alt1_name: Option<String>,
    /// Description, alt1.
    pub alt1_description: Option<String>,
    /// Short description, alt1.
    pub alt1_description_short: Option<String>,
    /// Name, alt2.
    pub alt2_name: Option<String>,
    /// Description, alt2.
    pub alt2_description: Option<String>,
    /// Short description, alt2.
    pub alt2_description_short: Option<String>,
}

impl ProductTranslationInput {
    fn normalized(&self) -> Result<Self> {
        required("translation.main_name", &self.main_name)?;
        required("translation.main_description", &self.main_description)?;
        required(
            "translation.main_description_short",
            &self.main_description_short,
        )?;
        Ok(ProductTranslationInput {
            main_name: self.main_name.clone(),
            main_description: self.main_description.clone(),
            main_description_short: self.main_description_short.clone(),
            alt1_name: blank_to_none(self.alt1_name.clone()),
            alt1_description: blank_to_none(self.alt1_description.clone()),
            alt1_description_short: blank_to_none(self.alt1_description_short.clone()),
            alt2_name: blank_to_none(self.alt2_name.clone()),
            alt2_description: blank_to_none(self.alt2_description.clone()),
            alt2_description_short: blank_to_none(self.alt2_description_short.clone()),
        })
    }
}

/// Fields of a product written by create and update (the shop comes from the caller's scope).
#[derive(Debug, Clone, Deserialize)]
pub struct NewProduct {
    /// Category (must belong to the same shop).
    pub category_id: Option<Uuid>,
    /// Price.
    pub price: Option<f64>,
    /// VAT category (default `vat_standard`).
    #[serde(default = "vat_standard")]
    pub tax_category: String,
    /// Discounted price.
    pub discounted_price: Option<f64>,
    /// Discount start.
    pub discounted_from: Option<DateTime<Utc>>,
    /// Discount end.
    pub discounted_to: Option<DateTime<Utc>>,
    /// Images 1–6.
    #[serde(default)]
    pub images: [Option<String>; 6],
    /// Monthly subscription price.
    pub recurring_price_monthly: Option<f64>,
    /// Yearly subscription price.
    pub recurring_price_yearly: Option<f64>,
    /// At most one per order.
    #[serde(default)]
    pub max_one: bool,
    /// Link to a digital asset.
    pub digital: Option<String>,
    /// Needs shipping (default true).
    #[serde(default = "yes")]
    pub shippable: bool,
    /// Featured.
    #[serde(default)]
    pub featured: bool,
    /// Marked as new.
    #[serde(default)]
    pub new_product: bool,
    /// Units in stock (default 1).
    #[serde(default = "one")]
    pub stock: i32,
    /// The translation.
    pub translation: ProductTranslationInput,
}

fn vat_standard() -> String {
    "vat_standard".into()
}
fn yes() -> bool {
    true
}
fn one() -> i32 {
    1
}

impl NewProduct {
    /// A product with the given translation and defaults elsewhere.
    pub fn new(category_id: Option<Uuid>, translation: ProductTranslationInput) -> Self {
        NewProduct {
            category_id,
            price: None,
            tax_category: vat_standard(),
            discounted_price: None,
            discounted_from: None,
            discounted_to: None,
            images: Default::default(),
            recurring_price_monthly: None,
            recurring_price_yearly: None,
            max_one: false,
            digital: None,
            shippable: true,
            featured: false,
            new_product: false,
            stock: 1,
            translation,
        }
    }
}

/// A product with its translation.
pub type ProductWithTranslation = Translated<Product, ProductTranslation>;

/// List definition. Filters: `main_name`, `alt1_name`, `alt2_name`, `tax_category`, `digital`
/// (substring); `category_id` (uuid); `featured`, `new_product`, `shippable`, `max_one` (bool);
/// `stock`, `order_number` (int); attribute filters `attribute_id`, `option_id` (uuid),
/// `option_value_key`, `attribute_name` (substring, any language). Sorts: every filter column
/// except the attribute filters, plus `price`, `created_at`, `modified_at`. Bare search: the
/// three names.
pub static LIST: Spec = Spec {
    unit: "products",
    select: "to_jsonb(p) AS item, to_jsonb(t) AS translation",
    from: "shop.products p LEFT JOIN shop.product_translations t ON t.product_id = p.id",
    shop_column: Some("p.shop_id"),
    id: "p.id",
    columns: &[
        text_col!("main_name", "t.main_name"),
        text_col!("alt1_name", "t.alt1_name"),
        text_col!("alt2_name", "t.alt2_name"),
        text_col!("tax_category", "p.tax_category"),
        text_col!("digital", "p.digital"),
        eq_col!("category_id", "p.category_id", Uuid),
        eq_col!("featured", "p.featured", Bool),
        eq_col!("new_product", "p.new_product", Bool),
        eq_col!("shippable", "p.shippable", Bool),
        eq_col!("max_one", "p.max_one", Bool),
        eq_col!("stock", "p.stock", Int),
        eq_col!("order_number", "p.order_number", Int),
        sort_col!("price", "p.price"),
        sort_col!("created_at", "p.created_at"),
        sort_col!("modified_at", "p.modified_at"),
        Column {
            name: "attribute_id",
            filter: &[
                "EXISTS (SELECT 1 FROM shop.product_attribute_values v WHERE v.product_id = p.id AND v.attribute_id = ",
                ")",
            ],
            val: Val::Uuid,
            sort: None,
        },
        Column {
            name: "option_id",
            filter: &[
                "EXISTS (SELECT 1 FROM shop.product_attribute_values v WHERE v.product_id = p.id AND v.option_id = ",
                ")",
            ],
            val: Val::Uuid,
            sort: None,
        },
        Column {
            name: "option_value_key",
            filter: &[
                "EXISTS (SELECT 1 FROM shop.product_attribute_values v \
                 JOIN shop.attribute_options o ON o.id = v.option_id \
                 WHERE v.product_id = p.id AND o.value_key ILIKE ",
                ")",
            ],
            val: Val::Text,
            sort: None,
        },
        Column {
            name: "attribute_name",
            filter: &[
                "EXISTS (SELECT 1 FROM shop.product_attribute_values v \
                 JOIN shop.attributes a ON a.id = v.attribute_id \
                 LEFT JOIN shop.attribute_translations at ON at.attribute_id = a.id \
                 WHERE v.product_id = p.id AND (a.name ILIKE ",
                " OR at.main_name ILIKE ",
                " OR at.alt1_name ILIKE ",
                " OR at.alt2_name ILIKE ",
                "))",
            ],
            val: Val::Text,
            sort: None,
        },
    ],
    search: &["t.main_name", "t.alt1_name", "t.alt2_name"],
};

async fn upsert_translation(
    exec: impl PgExecutor<'_>,
    product_id: Uuid,
    t: &ProductTranslationInput,
) -> Result<ProductTranslation> {
    Ok(sqlx::query_as!(
        ProductTranslation,
        r#"INSERT INTO shop.product_translations (product_id, main_name, main_description,
               main_description_short, alt1_name, alt1_description, alt1_description_short,
               alt2_name, alt2_description, alt2_description_short)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
           ON CONFLICT (product_id) DO UPDATE SET
               main_name = EXCLUDED.main_name, main_description = EXCLUDED.main_description,
               main_description_short = EXCLUDED.main_description_short,
               alt1_name = EXCLUDED.alt1_name, alt1_description = EXCLUDED.alt1_description,
               alt1_description_short = EXCLUDED.alt1_description_short,
               alt2_name = EXCLUDED.alt2_name, alt2_description = EXCLUDED.alt2_description,
               alt2_description_short = EXCLUDED.alt2_description_short
           RETURNING *"#,
        product_id,
        t.main_name,
        t.main_description,
        t.main_description_short,
        t.alt1_name,
        t.alt1_description,
        t.alt1_description_short,
        t.alt2_name,
        t.alt2_description,
        t.alt2_description_short,
    )
    .fetch_one(exec)
    .await?)
}

fn missing_shop_or_category(r: Result<Product>) -> Result<Product> {
    r.on_constraint("fk_products_shop_id_shops", |_| Error::NotFound)
        .on_constraint("fk_products_category_id_categories", |_| Error::NotFound)
}

/// Creates a product and its translation in one transaction, appended at the end of its
/// (shop, category). An unknown shop, or a category that is not the shop's, is
/// [`Error::NotFound`]; negative stock is [`Error::Check`] `ck_products_stock_non_negative`.
#[tracing::instrument(skip_all, fields(%shop_id))]
pub async fn create(
    conn: &mut PgConnection,
    shop_id: Uuid,
    new: &NewProduct,
) -> Result<ProductWithTranslation> {
    let translation = new.translation.normalized()?;
    let [i1, i2, i3, i4, i5, i6] = new.images.clone();
    tx::transaction(conn, async |tx| {
        super::lock_ordering(&mut *tx, "shop.products", shop_id, new.category_id).await?;
        let product = missing_shop_or_category(
            sqlx::query_as!(
                Product,
                r#"INSERT INTO shop.products (shop_id, category_id, price, tax_category,
                       discounted_price, discounted_from, discounted_to, image_1, image_2, image_3,
                       image_4, image_5, image_6, recurring_price_monthly, recurring_price_yearly,
                       max_one, digital, shippable, featured, new_product, stock, order_number)
                   SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                          $17, $18, $19, $20, $21, coalesce(max(order_number) + 1, 0)
                   FROM shop.products
                   WHERE shop_id = $1 AND category_id IS NOT DISTINCT FROM $2
                   RETURNING *"#,
                shop_id,
                new.category_id,
                new.price,
                new.tax_category,
                new.discounted_price,
                new.discounted_from,
                new.discounted_to,
                i1,
                i2,
                i3,
                i4,
                i5,
                i6,
                new.recurring_price_monthly,
                new.recurring_price_yearly,
                new.max_one,
                new.digital,
                new.shippable,
                new.featured,
                new.new_product,
                new.stock,
            )
            .fetch_one(&mut *tx)
            .await
            .map_err(Error::from),
        )?;
        let translation = upsert_translation(&mut *tx, product.id, &translation).await?;
        Ok((product, translation).into())
    })
    .await
}

/// Fetches a product of the shop with its translation, in one query.
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn get(
    exec: impl PgExecutor<'_>,
    shop_id: Uuid,
    id: Uuid,
) -> Result<ProductWithTranslation> {
    // Explicit columns (not `to_jsonb(row)`), so the compiler checks every field against the
    // schema; the translation's columns are nullable through the LEFT JOIN.
    let r = sqlx::query!(
        r#"SELECT p.id, p.shop_id, p.category_id, p.price, p.tax_category, p.discounted_price,
                  p.discounted_from, p.discounted_to, p.image_1, p.image_2, p.image_3, p.image_4,
                  p.image_5, p.image_6, p.created_at, p.modified_at, p.recurring_price_monthly,
                  p.recurring_price_yearly, p.max_one, p.digital, p.shippable, p.featured,
                  p.new_product, p.order_number, p.stock,
                  t.id AS "t_id?", t.main_name AS "t_main_name?",
                  t.main_description AS "t_main_description?",
                  t.main_description_short AS "t_main_description_short?",
                  t.alt1_name AS "t_alt1_name?", t.alt1_description AS "t_alt1_description?",
                  t.alt1_description_short AS "t_alt1_description_short?",
                  t.alt2_name AS "t_alt2_name?", t.alt2_description AS "t_alt2_description?",
                  t.alt2_description_short AS "t_alt2_description_short?"
           FROM shop.products p
           LEFT JOIN shop.product_translations t ON t.product_id = p.id
           WHERE p.shop_id = $1 AND p.id = $2"#,
        shop_id,
        id
    )
    .fetch_optional(exec)
    .await?
    .ok_or(Error::NotFound)?;
    let translation = match (
        r.t_id,
        r.t_main_name,
        r.t_main_description,
        r.t_main_description_short,
    ) {
        (Some(t_id), Some(main_name), Some(main_description), Some(main_description_short)) => {
            Some(ProductTranslation {
                id: t_id,
                product_id: r.id,
                main_name,
                main_description,
                main_description_short,
                alt1_name: r.t_alt1_name,
                alt1_description: r.t_alt1_description,
                alt1_description_short: r.t_alt1_description_short,
                alt2_name: r.t_alt2_name,
                alt2_description: r.t_alt2_description,
                alt2_description_short: r.t_alt2_description_short,
            })
        }
        _ => None,
    };
    Ok(Translated {
        item: Product {
            id: r.id,
            shop_id: r.shop_id,
            category_id: r.category_id,
            price: r.price,
            tax_category: r.tax_category,
            discounted_price: r.discounted_price,
            discounted_from: r.discounted_from,
            discounted_to: r.discounted_to,
            image_1: r.image_1,
            image_2: r.image_2,
            image_3: r.image_3,
            image_4: r.image_4,
            image_5: r.image_5,
            image_6: r.image_6,
            created_at: r.created_at,
            modified_at: r.modified_at,
            recurring_price_monthly: r.recurring_price_monthly,
            recurring_price_yearly: r.recurring_price_yearly,
            max_one: r.max_one,
            digital: r.digital,
            shippable: r.shippable,
            featured: r.featured,
            new_product: r.new_product,
            order_number: r.order_number,
            stock: r.stock,
        },
        translation,
    })
}

/// The product's name in `lang`, falling back to the main name, computed in SQL.
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
           FROM shop.products p JOIN shop.product_translations t ON t.product_id = p.id
           WHERE p.shop_id = $1 AND p.id = $2"#,
        shop_id,
        id,
        lang
    )
    .fetch_optional(exec)
    .await?
    .ok_or(Error::NotFound)
}

/// Replaces a product's fields and translation in one transaction. Moving it to another category
/// appends it at the end of that category; otherwise its order number is kept. `modified_at` is
/// set by the database.
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn update(
    conn: &mut PgConnection,
    shop_id: Uuid,
    id: Uuid,
    new: &NewProduct,
) -> Result<ProductWithTranslation> {
    let translation = new.translation.normalized()?;
    let [i1, i2, i3, i4, i5, i6] = new.images.clone();
    tx::transaction(conn, async |tx| {
        super::lock_ordering(&mut *tx, "shop.products", shop_id, new.category_id).await?;
        let product = missing_shop_or_category(
            sqlx::query_as!(
                Product,
                r#"UPDATE shop.products p SET category_id = $3, price = $4, tax_category = $5,
                       discounted_price = $6, discounted_from = $7, discounted_to = $8,
                       image_1 = $9, image_2 = $10, image_3 = $11, image_4 = $12, image_5 = $13,
                       image_6 = $14, recurring_price_monthly = $15, recurring_price_yearly = $16,
                       max_one = $17, digital = $18, shippable = $19, featured = $20,
                       new_product = $21, stock = $22,
                       order_number = CASE WHEN p.category_id IS NOT DISTINCT FROM $3
                           THEN p.order_number
                           ELSE (SELECT coalesce(max(o.order_number) + 1, 0) FROM shop.products o
                                 WHERE o.shop_id = $1 AND o.category_id IS NOT DISTINCT FROM $3)
                           END
                   WHERE p.shop_id = $1 AND p.id = $2
                   RETURNING p.*"#,
                shop_id,
                id,
                new.category_id,
                new.price,
                new.tax_category,
                new.discounted_price,
                new.discounted_from,
                new.discounted_to,
                i1,
                i2,
                i3,
                i4,
                i5,
                i6,
                new.recurring_price_monthly,
                new.recurring_price_yearly,
                new.max_one,
                new.digital,
                new.shippable,
                new.featured,
                new.new_product,
                new.stock,
            )
            .fetch_optional(&mut *tx)
            .await
            .map_err(Error::from)
            .and_then(|p| p.ok_or(Error::NotFound)),
        )?;
        let translation = upsert_translation(&mut *tx, product.id, &translation).await?;
        Ok((product, translation).into())
    })
    .await
}

/// Swaps the order numbers of two products of the same shop and category.
#[tracing::instrument(skip_all, fields(%shop_id, %a, %b))]
pub async fn swap_order(exec: impl PgExecutor<'_>, shop_id: Uuid, a: Uuid, b: Uuid) -> Result<()> {
    if a == b {
        return Err(Error::invalid_input("cannot swap a product with itself"));
    }
    let done = sqlx::query!(
        r#"UPDATE shop.products p SET order_number = o.order_number
           FROM shop.products o
           WHERE p.shop_id = $1 AND o.shop_id = $1
             AND p.category_id IS NOT DISTINCT FROM o.category_id
             AND ((p.id = $2 AND o.id = $3) OR (p.id = $3 AND o.id = $2))"#,
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

/// Deletes a product of the shop with its translation, tag links and attribute values.
#[tracing::instrument(skip_all, fields(%shop_id, %id))]
pub async fn delete(exec: impl PgExecutor<'_>, shop_id: Uuid, id: Uuid) -> Result<()> {
    let done = sqlx::query!(
        "DELETE FROM shop.products WHERE shop_id = $1 AND id = $2",
        shop_id,
        id
    )
    .execute(exec)
    .await
    .map_err(super::still_referenced)?;
    super::one_row(done.rows_affected())
}

/// Lists the shop's products with their translations (offset pagination).
#[tracing::instrument(skip_all, fields(%shop_id))]
pub async fn list(
    conn: &mut PgConnection,
    shop_id: Uuid,
    params: &ListParams,
) -> Result<Page<ProductWithTranslation>> {
    list::fetch(conn, &LIST, Some(shop_id), params).await
}

/// Cursor of [`list_after`]: `<created_at as microseconds since the epoch>.<id>`.
fn encode_cursor(p: &Product) -> String {
    format!("{}.{}", p.created_at.timestamp_micros(), p.id)
}

fn decode_cursor(cursor: &str) -> Result<(DateTime<Utc>, Uuid)> {
    let bad = || Error::invalid_input("malformed product cursor");
    let (micros, id) = cursor.split_once('.').ok_or_else(bad)?;
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    let at = DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
    Ok((at, id.parse().map_err(|_| bad())?))
}

/// Keyset (cursor) pagination over the shop's products in `(created_at, id)` order: the cost of
/// a page does not depend on how deep it is. `filter` works as in [`list()`]; `after` is the
/// `next` cursor of the previous page (`None` for the first page); `limit` must be positive.
#[tracing::instrument(skip_all, fields(%shop_id))]
pub async fn list_after(
    conn: &mut PgConnection,
    shop_id: Uuid,
    filter: &[String],
    after: Option<&str>,
    limit: i64,
) -> Result<KeysetPage<ProductWithTranslation>> {
    if limit <= 0 {
        return Err(Error::invalid_input("limit must be positive"));
    }
    let filters = Filters::parse(&LIST, filter)?;
    let after = after.map(decode_cursor).transpose()?;
    let mut qb = QueryBuilder::<Postgres>::new("SELECT ");
    qb.push(LIST.select).push(" FROM ").push(LIST.from);
    filters.push_where(&mut qb, &LIST, Some(shop_id));
    if let Some((at, id)) = after {
        qb.push(" AND (p.created_at, p.id) > (")
            .push_bind(at)
            .push(", ")
            .push_bind(id)
            .push(")");
    }
    qb.push(" ORDER BY p.created_at, p.id LIMIT ")
        .push_bind(limit + 1);
    let mut items: Vec<ProductWithTranslation> = qb.build_query_as().fetch_all(&mut *conn).await?;
    let next = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|p| encode_cursor(&p.item))
    } else {
        None
    };
    Ok(KeysetPage { items, next })
}

/// One line of the storefront catalog: what a product grid shows ([`catalog_page`],
/// [`catalog_page_after`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CatalogEntry {
    /// The product.
    pub id: Uuid,
    /// Position within (shop, category); the catalog's first sort key.
    pub order_number: i32,
    /// Name in the main language (`None` if the product has no translation row).
    pub main_name: Option<String>,
    /// Price.
    pub price: Option<f64>,
    /// Names of the product's tags (main-language name, else the internal name), sorted.
    pub tag_names: Vec<String>,
}

/// A page of the shop's catalog in `(order_number, id)` order, by offset. The page's rows are
/// picked from `ix_products_shop_id_order_number_id` first and only those are joined to their
/// translation and tags, so a deep offset costs an index walk, not joins; for deep pages prefer
/// [`catalog_page_after`]. `limit` must be positive, `skip` not negative. One round trip.
pub async fn catalog_page(
    exec: impl PgExecutor<'_>,
    shop_id: Uuid,
    skip: i64,
    limit: i64,
) -> Result<Vec<CatalogEntry>> {
    if limit <= 0 || skip < 0 {
        return Err(Error::invalid_input(
            "limit must be positive and skip not negative",
        ));
    }
    Ok(sqlx::query_as!(
        CatalogEntry,
        r#"WITH page AS (
               SELECT id, order_number, price FROM shop.products
               WHERE shop_id = $1
               ORDER BY order_number, id
               LIMIT $2 OFFSET $3)
           SELECT page.id AS "id!", page.order_number AS "order_number!",
                  t.main_name AS "main_name?", page.price,
                  array(SELECT coalesce(tt.main_name, g.name, '')
                        FROM shop.products_to_tags pt
                        JOIN shop.tags g ON g.id = pt.tag_id
                        LEFT JOIN shop.tag_translations tt ON tt.tag_id = g.id
                        WHERE pt.product_id = page.id
                        ORDER BY 1) AS "tag_names!"
           FROM page LEFT JOIN shop.product_translations t ON t.product_id = page.id
           ORDER BY page.order_number, page.id"#,
        shop_id,
        limit,
        skip,
    )
    .fetch_all(exec)
    .await?)
}

/// Cursor of [`catalog_page_after`]: `<order_number>.<id>`.
fn encode_catalog_cursor(e: &CatalogEntry) -> String {
    format!("{}.{}", e.order_number, e.id)
}

fn decode_catalog_cursor(cursor: &str) -> Result<(i32, Uuid)> {
    let bad = || Error::invalid_input("malformed catalog cursor");
    let (order_number, id) = cursor.split_once('.').ok_or_else(bad)?;
    Ok((
        order_number.parse().map_err(|_| bad())?,
        id.parse().map_err(|_| bad())?,
    ))
}

/// Keyset (cursor) pagination over the shop's catalog in `(order_number, id)` order: a page
/// costs the same at any depth (it starts from `ix_products_shop_id_order_number_id` at the
/// cursor). `after` is the `next` cursor of the previous page (`None` for the first page);
/// `limit` must be positive. One round trip.
pub async fn catalog_page_after(
    exec: impl PgExecutor<'_>,
    shop_id: Uuid,
    after: Option<&str>,
    limit: i64,
) -> Result<KeysetPage<CatalogEntry>> {
    if limit <= 0 {
        return Err(Error::invalid_input("limit must be positive"));
    }
    let mut items = match after.map(decode_catalog_cursor).transpose()? {
        None => catalog_page(exec, shop_id, 0, limit + 1).await?,
        Some((order_number, id)) => {
            sqlx::query_as!(
                CatalogEntry,
                r#"WITH page AS (
                   SELECT id, order_number, price FROM shop.products
                   WHERE shop_id = $1 AND (order_number, id) > ($2, $3)
                   ORDER BY order_number, id
                   LIMIT $4)
               SELECT page.id AS "id!", page.order_number AS "order_number!",
                      t.main_name AS "main_name?", page.price,
                      array(SELECT coalesce(tt.main_name, g.name, '')
                            FROM shop.products_to_tags pt
                            JOIN shop.tags g ON g.id = pt.tag_id
                            LEFT JOIN shop.tag_translations tt ON tt.tag_id = g.id
                            WHERE pt.product_id = page.id
                            ORDER BY 1) AS "tag_names!"
               FROM page LEFT JOIN shop.product_translations t ON t.product_id = page.id
               ORDER BY page.order_number, page.id"#,
                shop_id,
                order_number,
                id,
                limit + 1,
            )
            .fetch_all(exec)
            .await?
        }
    };
    let next = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(encode_catalog_cursor)
    } else {
        None
    };
    Ok(KeysetPage { items, next })
}
