//! The storefront catalog: the product grid a shop's visitors page through, in
//! `(order_number, id)` order, with each product's main name, price and tag names.

use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::shop::list::{self, Cursor, KeysetPage};
use crate::shop::{ProductId, ShopId};
use crate::{Error, Result};

/// One line of the storefront catalog: what a product grid shows ([`catalog_page`],
/// [`catalog_page_after`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CatalogEntry {
    /// The product.
    pub id: ProductId,
    /// Position within (shop, category); the catalog's first sort key.
    pub order_number: i32,
    /// Name in the main language; `None` if the product has no translation row.
    pub main_name: Option<String>,
    /// Unit price; `None`: no price set.
    pub price: Option<Decimal>,
    /// Names of the product's tags (main-language name, else the internal name), sorted.
    pub tag_names: Vec<String>,
}

/// A page of the shop's catalog in `(order_number, id)` order, by offset. The page's rows are
/// picked from `ix_products_shop_id_order_number_id` first and only those are joined to their
/// translation and tags, so a deep offset costs an index walk, not joins; for deep pages prefer
/// [`catalog_page_after`]. `limit` is 1..=[`list::MAX_LIMIT`], `skip` not negative. One round
/// trip.
#[tracing::instrument(target = "shared_db::shop::products", skip_all, fields(%shop_id, skip, limit))]
pub async fn catalog_page(
    exec: impl PgExecutor<'_>,
    shop_id: ShopId,
    skip: i64,
    limit: i64,
) -> Result<Vec<CatalogEntry>> {
    let limit = list::check_limit(limit)?;
    if skip < 0 {
        return Err(Error::invalid_input("skip must not be negative"));
    }
    page(exec, shop_id, skip, limit).await
}

/// Keyset (cursor) pagination over the shop's catalog in `(order_number, id)` order: a page
/// costs the same at any depth (it starts from `ix_products_shop_id_order_number_id` at the
/// cursor). `after` is the `next` cursor of the previous page (`None` for the first page);
/// `limit` is 1..=[`list::MAX_LIMIT`]. One round trip.
#[tracing::instrument(target = "shared_db::shop::products", skip_all, fields(%shop_id, limit))]
pub async fn catalog_page_after(
    exec: impl PgExecutor<'_>,
    shop_id: ShopId,
    after: Option<&Cursor>,
    limit: i64,
) -> Result<KeysetPage<CatalogEntry>> {
    let limit = list::check_limit(limit)?;
    let after = after.map(Cursor::key::<(i32, Uuid)>).transpose()?;
    // two statements rather than one with `$2 IS NULL OR …`: a generic plan of the combined
    // one could not start the index scan at the cursor
    let items = match after {
        None => page(exec, shop_id, 0, limit + 1).await?,
        Some((order_number, id)) => {
            sqlx::query_as!(
                CatalogEntry,
                r#"WITH page AS (
                       SELECT id, order_number, price FROM shop.products
                       WHERE shop_id = $1 AND (order_number, id) > ($2, $3)
                       ORDER BY order_number, id
                       LIMIT $4)
                   SELECT page.id AS "id!: ProductId", page.order_number AS "order_number!",
                          t.main_name AS "main_name?", page.price,
                          array(SELECT coalesce(tt.main_name, g.name, '')
                                FROM shop.products_to_tags pt
                                JOIN shop.tags g ON g.shop_id = pt.shop_id AND g.id = pt.tag_id
                                LEFT JOIN shop.tag_translations tt ON tt.shop_id = g.shop_id AND tt.tag_id = g.id
                                WHERE pt.shop_id = $1 AND pt.product_id = page.id
                                ORDER BY 1) AS "tag_names!"
                   FROM page LEFT JOIN shop.product_translations t ON t.shop_id = $1 AND t.product_id = page.id
                   ORDER BY page.order_number, page.id"#,
                shop_id.get(),
                order_number,
                id,
                limit + 1,
            )
            .fetch_all(exec)
            .await?
        }
    };
    Ok(list::keyset_page(items, limit, |e: &CatalogEntry| {
        (e.order_number, e.id.get())
    }))
}

/// The catalog rows from position `skip`, at most `limit`.
async fn page(
    exec: impl PgExecutor<'_>,
    shop_id: ShopId,
    skip: i64,
    limit: i64,
) -> Result<Vec<CatalogEntry>> {
    Ok(sqlx::query_as!(
        CatalogEntry,
        r#"WITH page AS (
               SELECT id, order_number, price FROM shop.products
               WHERE shop_id = $1
               ORDER BY order_number, id
               LIMIT $2 OFFSET $3)
           SELECT page.id AS "id!: ProductId", page.order_number AS "order_number!",
                  t.main_name AS "main_name?", page.price,
                  array(SELECT coalesce(tt.main_name, g.name, '')
                        FROM shop.products_to_tags pt
                        JOIN shop.tags g ON g.shop_id = pt.shop_id AND g.id = pt.tag_id
                        LEFT JOIN shop.tag_translations tt ON tt.shop_id = g.shop_id AND tt.tag_id = g.id
                        WHERE pt.shop_id = $1 AND pt.product_id = page.id
                        ORDER BY 1) AS "tag_names!"
           FROM page LEFT JOIN shop.product_translations t ON t.shop_id = $1 AND t.product_id = page.id
           ORDER BY page.order_number, page.id"#,
        shop_id.get(),
        limit,
        skip,
    )
    .fetch_all(exec)
    .await?)
}
