//! Create, read, update and delete of one product, and its stock.

use sqlx::{PgConnection, PgExecutor};

use super::{
    Product, ProductFields, ProductRow, ProductTranslation, ProductTranslationInput,
    ProductWithTranslation,
};
use crate::shop::translation::Lang;
use crate::shop::{ProductId, ShopId, stale_or_missing};
use crate::{Error, Result, ResultExt, tx};

async fn upsert_translation(
    exec: impl PgExecutor<'_>,
    shop_id: ShopId,
    product_id: ProductId,
    t: &ProductTranslationInput,
) -> Result<ProductTranslation> {
    Ok(sqlx::query_as!(
        ProductTranslation,
        r#"INSERT INTO shop.product_translations (shop_id, product_id, main_name,
               main_description, main_description_short, alt1_name, alt1_description,
               alt1_description_short, alt2_name, alt2_description, alt2_description_short)
           VALUES ($11, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
           ON CONFLICT (shop_id, product_id) DO UPDATE SET
               main_name = EXCLUDED.main_name, main_description = EXCLUDED.main_description,
               main_description_short = EXCLUDED.main_description_short,
               alt1_name = EXCLUDED.alt1_name, alt1_description = EXCLUDED.alt1_description,
               alt1_description_short = EXCLUDED.alt1_description_short,
               alt2_name = EXCLUDED.alt2_name, alt2_description = EXCLUDED.alt2_description,
               alt2_description_short = EXCLUDED.alt2_description_short
           RETURNING id, product_id, main_name, main_description, main_description_short,
                     alt1_name, alt1_description, alt1_description_short,
                     alt2_name, alt2_description, alt2_description_short"#,
        product_id.get(),
        t.main_name,
        t.main_description,
        t.main_description_short,
        t.alt1_name,
        t.alt1_description,
        t.alt1_description_short,
        t.alt2_name,
        t.alt2_description,
        t.alt2_description_short,
        shop_id.get(),
    )
    .fetch_one(exec)
    .await?)
}

fn missing_shop_or_category<T>(r: Result<T>) -> Result<T> {
    r.on_constraint("fk_products_shop_id_shops", |_| Error::NotFound)
        .on_constraint("fk_products_category_id_categories", |_| Error::NotFound)
}

/// Creates a product with `stock` units and its translation in one transaction, appended at the
/// end of its (shop, category). An unknown shop, or a category that is not the shop's, is
/// [`Error::NotFound`]; negative stock is [`Error::InvalidInput`].
#[tracing::instrument(target = "shared_db::shop::products", skip_all, fields(%shop_id, stock))]
pub async fn create(
    conn: &mut PgConnection,
    shop_id: ShopId,
    fields: &ProductFields,
    stock: i32,
) -> Result<ProductWithTranslation> {
    let (f, translation) = fields.checked()?;
    if stock < 0 {
        return Err(Error::invalid_input("stock must not be negative"));
    }
    let [i1, i2, i3, i4, i5, i6] = f.images.clone();
    tx::transaction(conn, async |tx| {
        crate::shop::lock_ordering(&mut *tx, "shop.products", shop_id, f.category_id).await?;
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
                   RETURNING id, shop_id, category_id, price, tax_category, discounted_price,
                             discounted_from, discounted_to, image_1, image_2, image_3, image_4,
                             image_5, image_6, created_at, modified_at, recurring_price_monthly,
                             recurring_price_yearly, max_one, digital, shippable, featured,
                             new_product, order_number, stock, version"#,
                shop_id.get(),
                f.category_id,
                f.price,
                f.tax_category,
                f.discounted_price,
                f.discounted_from,
                f.discounted_to,
                i1,
                i2,
                i3,
                i4,
                i5,
                i6,
                f.recurring_price_monthly,
                f.recurring_price_yearly,
                f.max_one,
                f.digital,
                f.shippable,
                f.featured,
                f.new_product,
                stock,
            )
            .fetch_one(&mut *tx)
            .await
            .map_err(Error::from),
        )?;
        let translation = upsert_translation(&mut *tx, shop_id, product.id, &translation).await?;
        Ok((product, translation).into())
    })
    .await
}

/// Fetches a product of the shop with its translation, in one query.
#[tracing::instrument(target = "shared_db::shop::products", skip_all, fields(%shop_id, %id))]
pub async fn get(
    exec: impl PgExecutor<'_>,
    shop_id: ShopId,
    id: ProductId,
) -> Result<ProductWithTranslation> {
    sqlx::query_as!(
        ProductRow,
        r#"SELECT p.id, p.shop_id, p.category_id, p.price, p.tax_category, p.discounted_price,
                  p.discounted_from, p.discounted_to, p.image_1, p.image_2, p.image_3, p.image_4,
                  p.image_5, p.image_6, p.created_at, p.modified_at, p.recurring_price_monthly,
                  p.recurring_price_yearly, p.max_one, p.digital, p.shippable, p.featured,
                  p.new_product, p.order_number, p.stock, p.version,
                  t.id AS "t_id?", t.main_name AS "t_main_name?",
                  t.main_description AS "t_main_description?",
                  t.main_description_short AS "t_main_description_short?",
                  t.alt1_name AS "t_alt1_name?", t.alt1_description AS "t_alt1_description?",
                  t.alt1_description_short AS "t_alt1_description_short?",
                  t.alt2_name AS "t_alt2_name?", t.alt2_description AS "t_alt2_description?",
                  t.alt2_description_short AS "t_alt2_description_short?"
           FROM shop.products p
           LEFT JOIN shop.product_translations t ON t.shop_id = p.shop_id AND t.product_id = p.id
           WHERE p.shop_id = $1 AND p.id = $2"#,
        shop_id.get(),
        id.get()
    )
    .fetch_optional(exec)
    .await?
    .map(Into::into)
    .ok_or(Error::NotFound)
}

/// The product's name in `lang`, falling back to the main name, computed in SQL.
#[tracing::instrument(target = "shared_db::shop::products", skip_all, fields(%shop_id, %id))]
pub async fn name(
    exec: impl PgExecutor<'_>,
    shop_id: ShopId,
    id: ProductId,
    lang: Lang,
) -> Result<String> {
    let lang = lang.as_str();
    sqlx::query_scalar!(
        r#"SELECT coalesce(CASE $3 WHEN 'alt1' THEN t.alt1_name WHEN 'alt2' THEN t.alt2_name END,
                           t.main_name) AS "name!"
           FROM shop.products p JOIN shop.product_translations t ON t.shop_id = p.shop_id AND t.product_id = p.id
           WHERE p.shop_id = $1 AND p.id = $2"#,
        shop_id.get(),
        id.get(),
        lang
    )
    .fetch_optional(exec)
    .await?
    .ok_or(Error::NotFound)
}

/// Replaces a product's fields and translation in one transaction. Stock is never written here
/// (see [`adjust_stock`]), so an edit cannot undo a sale. Moving the product to another category
/// appends it at the end of that category; otherwise its order number is kept.
///
/// `version` is the [`Product::version`] the caller read: if the product was saved since, the
/// update is [`Error::Conflict`] on [`crate::shop::STALE_VERSION`] and changes nothing.
#[tracing::instrument(target = "shared_db::shop::products", skip_all, fields(%shop_id, %id, version))]
pub async fn update(
    conn: &mut PgConnection,
    shop_id: ShopId,
    id: ProductId,
    version: i32,
    fields: &ProductFields,
) -> Result<ProductWithTranslation> {
    let (f, translation) = fields.checked()?;
    let [i1, i2, i3, i4, i5, i6] = f.images.clone();
    tx::transaction(conn, async |tx| {
        crate::shop::lock_ordering(&mut *tx, "shop.products", shop_id, f.category_id).await?;
        let product = missing_shop_or_category(
            sqlx::query_as!(
                Product,
                r#"UPDATE shop.products p SET category_id = $4, price = $5, tax_category = $6,
                       discounted_price = $7, discounted_from = $8, discounted_to = $9,
                       image_1 = $10, image_2 = $11, image_3 = $12, image_4 = $13, image_5 = $14,
                       image_6 = $15, recurring_price_monthly = $16, recurring_price_yearly = $17,
                       max_one = $18, digital = $19, shippable = $20, featured = $21,
                       new_product = $22, version = p.version + 1,
                       order_number = CASE WHEN p.category_id IS NOT DISTINCT FROM $4
                           THEN p.order_number
                           ELSE (SELECT coalesce(max(o.order_number) + 1, 0) FROM shop.products o
                                 WHERE o.shop_id = $1 AND o.category_id IS NOT DISTINCT FROM $4)
                           END
                   WHERE p.shop_id = $1 AND p.id = $2 AND p.version = $3
                   RETURNING p.id, p.shop_id, p.category_id, p.price, p.tax_category,
                             p.discounted_price, p.discounted_from, p.discounted_to, p.image_1,
                             p.image_2, p.image_3, p.image_4, p.image_5, p.image_6, p.created_at,
                             p.modified_at, p.recurring_price_monthly, p.recurring_price_yearly,
                             p.max_one, p.digital, p.shippable, p.featured, p.new_product,
                             p.order_number, p.stock, p.version"#,
                shop_id.get(),
                id.get(),
                version,
                f.category_id,
                f.price,
                f.tax_category,
                f.discounted_price,
                f.discounted_from,
                f.discounted_to,
                i1,
                i2,
                i3,
                i4,
                i5,
                i6,
                f.recurring_price_monthly,
                f.recurring_price_yearly,
                f.max_one,
                f.digital,
                f.shippable,
                f.featured,
                f.new_product,
            )
            .fetch_optional(&mut *tx)
            .await
            .map_err(Error::from),
        )?;
        let Some(product) = product else {
            return Err(missing_or_stale(&mut *tx, shop_id, id).await);
        };
        let translation = upsert_translation(&mut *tx, shop_id, product.id, &translation).await?;
        Ok((product, translation).into())
    })
    .await
}

/// Why a versioned update matched no row: the product is not the shop's, or it was saved since.
async fn missing_or_stale(exec: impl PgExecutor<'_>, shop_id: ShopId, id: ProductId) -> Error {
    let exists = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM shop.products WHERE shop_id = $1 AND id = $2) AS "e!""#,
        shop_id.get(),
        id.get()
    )
    .fetch_one(exec)
    .await;
    exists.map_or_else(Error::from, stale_or_missing)
}

/// Moves a product's stock by `delta` units (negative takes stock away) in one atomic statement
/// and returns the new stock. Concurrent adjustments and order completions all apply: none
/// overwrites another.
///
/// Errors, each with nothing changed: [`Error::NotFound`] (not the shop's product),
/// [`Error::InsufficientStock`] (the result would be below zero), [`Error::InvalidInput`] (the
/// result would exceed `i32::MAX`). A refusal's `available` is the latest committed stock, not the
/// statement's start snapshot (which, after waiting behind other buyers, may be long gone): the
/// refused statement reads the row `FOR SHARE`, so inside a caller's transaction that row stays
/// share-locked until it ends, as it would have stayed locked had the move succeeded.
#[tracing::instrument(target = "shared_db::shop::products", skip_all, fields(%shop_id, %id, delta))]
pub async fn adjust_stock(
    exec: impl PgExecutor<'_>,
    shop_id: ShopId,
    id: ProductId,
    delta: i32,
) -> Result<i32> {
    let r = sqlx::query!(
        r#"WITH moved AS (
               UPDATE shop.products SET stock = stock + $3::int
               WHERE shop_id = $1 AND id = $2 AND stock::bigint + $3::int BETWEEN 0 AND 2147483647
               RETURNING stock)
           SELECT (SELECT stock FROM moved) AS "new_stock?",
                  (SELECT stock FROM shop.products
                   WHERE shop_id = $1 AND id = $2 AND NOT EXISTS (SELECT FROM moved)
                   FOR SHARE) AS "seen?""#,
        shop_id.get(),
        id.get(),
        delta
    )
    .fetch_one(exec)
    .await?;
    match (r.new_stock, r.seen) {
        (Some(stock), _) => Ok(stock),
        (None, None) => Err(Error::NotFound),
        (None, Some(available)) if delta < 0 => Err(Error::InsufficientStock {
            product_id: id.get(),
            requested: delta.saturating_neg(),
            available,
        }),
        (None, Some(_)) => Err(Error::invalid_input("stock would exceed 2147483647")),
    }
}

/// Swaps the order numbers of two products of the same shop and category.
#[tracing::instrument(target = "shared_db::shop::products", skip_all, fields(%shop_id, %a, %b))]
pub async fn swap_order(
    exec: impl PgExecutor<'_>,
    shop_id: ShopId,
    a: ProductId,
    b: ProductId,
) -> Result<()> {
    if a == b {
        return Err(Error::invalid_input("cannot swap a product with itself"));
    }
    let done = sqlx::query!(
        r#"UPDATE shop.products p SET order_number = o.order_number
           FROM shop.products o
           WHERE p.shop_id = $1 AND o.shop_id = $1
             AND p.category_id IS NOT DISTINCT FROM o.category_id
             AND ((p.id = $2 AND o.id = $3) OR (p.id = $3 AND o.id = $2))"#,
        shop_id.get(),
        a.get(),
        b.get()
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
#[tracing::instrument(target = "shared_db::shop::products", skip_all, fields(%shop_id, %id))]
pub async fn delete(exec: impl PgExecutor<'_>, shop_id: ShopId, id: ProductId) -> Result<()> {
    let done = sqlx::query!(
        // info requests about the product keep the request, without the product (the
        // foreign key is NO ACTION: Citus has no SET NULL on a key with shop_id)
        "WITH cleared AS (
             UPDATE shop.info_requests SET product_id = NULL WHERE shop_id = $1 AND product_id = $2)
         DELETE FROM shop.products WHERE shop_id = $1 AND id = $2",
        shop_id.get(),
        id.get()
    )
    .execute(exec)
    .await
    .map_err(crate::shop::still_referenced)?;
    crate::shop::one_row(done.rows_affected())
}
