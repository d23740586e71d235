//! The admin's product lists: offset pages with filters ([`list()`]), the keyset walk in creation
//! order ([`list_after`]) and the streaming export of a whole shop ([`export`]).
//!
//! Attribute filters: `attribute_id:<uuid>`, `option_id:<uuid>` (repeat it: every option must
//! match), `option_value_key:<text>` and `attribute_name:<text>` (any language).

use chrono::{DateTime, Utc};
use futures_core::Stream;
use futures_util::StreamExt;
use sqlx::{PgConnection, Postgres, QueryBuilder};
use uuid::Uuid;

use super::{PRODUCT_ROW_COLUMNS, ProductRow, ProductWithTranslation};
use crate::shop::ShopId;
use crate::shop::list::{
    self, Column, Cursor, Filters, KeysetPage, ListPage, ListParams, Spec, Val, eq_col, sort_col,
    text_col,
};
use crate::{Error, Result};

/// List definition. Filters: `main_name`, `alt1_name`, `alt2_name`, `tax_category`, `digital`
/// (substring); `category_id` (uuid); `featured`, `new_product`, `shippable`, `max_one` (bool);
/// `stock`, `order_number` (int); attribute filters `attribute_id`, `option_id` (uuid),
/// `option_value_key`, `attribute_name` (substring, any language). Sorts: every filter column
/// except the attribute filters, plus `price`, `created_at`, `modified_at`. Bare search: the
/// three names.
pub static LIST: Spec = Spec {
    unit: "products",
    select: PRODUCT_ROW_COLUMNS,
    from: "shop.products p LEFT JOIN shop.product_translations t ON t.shop_id = p.shop_id AND t.product_id = p.id",
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
                "EXISTS (SELECT 1 FROM shop.product_attribute_values v WHERE v.shop_id = p.shop_id AND v.product_id = p.id AND v.attribute_id = ",
                ")",
            ],
            val: Val::Uuid,
            sort: None,
        },
        Column {
            name: "option_id",
            filter: &[
                "EXISTS (SELECT 1 FROM shop.product_attribute_values v WHERE v.shop_id = p.shop_id AND v.product_id = p.id AND v.option_id = ",
                ")",
            ],
            val: Val::Uuid,
            sort: None,
        },
        Column {
            name: "option_value_key",
            filter: &[
                "EXISTS (SELECT 1 FROM shop.product_attribute_values v \
                 JOIN shop.attribute_options o ON o.shop_id = v.shop_id AND o.id = v.option_id \
                 WHERE v.shop_id = p.shop_id AND v.product_id = p.id AND o.value_key ILIKE ",
                ")",
            ],
            val: Val::Text,
            sort: None,
        },
        Column {
            name: "attribute_name",
            filter: &[
                "EXISTS (SELECT 1 FROM shop.product_attribute_values v \
                 JOIN shop.attributes a ON a.shop_id = v.shop_id AND a.id = v.attribute_id \
                 LEFT JOIN shop.attribute_translations at ON at.shop_id = a.shop_id AND at.attribute_id = a.id \
                 WHERE v.shop_id = p.shop_id AND v.product_id = p.id AND (a.name ILIKE ",
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

/// Lists the shop's products with their translations (offset pagination, at most
/// [`list::MAX_LIMIT`] rows, total from the same snapshot).
#[tracing::instrument(target = "shared_db::shop::products", skip_all, fields(%shop_id))]
pub async fn list(
    conn: &mut PgConnection,
    shop_id: ShopId,
    params: &ListParams,
) -> Result<ListPage<ProductWithTranslation>> {
    list::fetch::<ProductRow, _>(conn, &LIST, Some(shop_id), params).await
}

/// Keyset (cursor) pagination over the shop's products in `(created_at, id)` order: the cost of
/// a page does not depend on how deep it is. `filter` works as in [`list()`]; `after` is the
/// `next` cursor of the previous page (`None` for the first page); `limit` is
/// 1..=[`list::MAX_LIMIT`].
#[tracing::instrument(target = "shared_db::shop::products", skip_all, fields(%shop_id))]
pub async fn list_after(
    conn: &mut PgConnection,
    shop_id: ShopId,
    filter: &[String],
    after: Option<&Cursor>,
    limit: i64,
) -> Result<KeysetPage<ProductWithTranslation>> {
    let limit = list::check_limit(limit)?;
    let filters = Filters::parse(&LIST, filter)?;
    let after = after
        .map(Cursor::key::<(DateTime<Utc>, Uuid)>)
        .transpose()?;
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
    let rows: Vec<ProductRow> = qb.build_query_as().fetch_all(&mut *conn).await?;
    let items = rows.into_iter().map(ProductWithTranslation::from).collect();
    Ok(list::keyset_page(
        items,
        limit,
        |p: &ProductWithTranslation| (p.item.created_at, p.item.id.get()),
    ))
}

/// How long an [`export`] may take, from its first row to its last.
///
/// An export is one statement, and the server's `statement_timeout` counts while the client
/// drains it: a slow client (a browser download, a paced sync job) is cut off when the
/// session's limit runs out (`SHARED_DB_STATEMENT_TIMEOUT_MS`, 60 s by default), and the stream
/// ends with [`Error::StatementTimeout`], never silently short.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExportTimeout {
    /// The session's `statement_timeout` (the pool's setting): the default, right for exports a
    /// service drains at once.
    #[default]
    Session,
    /// At most this long, whatever the session's setting.
    Limit(std::time::Duration),
    /// No limit: for an export that may legitimately stream for as long as its reader takes.
    Unbounded,
}

/// Sets the [`ExportTimeout`] for the exports that follow, for the rest of `tx` only
/// (`SET LOCAL`: the pooled connection keeps its own setting afterwards). Then call [`export`]
/// on the same transaction (`&mut *tx`).
#[tracing::instrument(target = "shared_db::shop::products", skip_all)]
pub async fn set_export_timeout(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    timeout: ExportTimeout,
) -> Result<()> {
    let setting = match timeout {
        ExportTimeout::Session => return Ok(()),
        ExportTimeout::Unbounded => "0".to_owned(),
        ExportTimeout::Limit(d) => format!("{}ms", d.as_millis().max(1)),
    };
    sqlx::query_scalar!(
        r#"SELECT set_config('statement_timeout', $1, true) AS "setting!""#,
        setting
    )
    .fetch_one(&mut **tx)
    .await?;
    Ok(())
}

/// Every product of the shop with its translation, in `(created_at, id)` order, as a stream:
/// rows are decoded as they arrive from the server, so memory stays flat however large the shop.
/// This, not a larger page, is how a caller reads everything. The stream borrows the connection
/// until it is dropped. It runs under the session's `statement_timeout` unless the caller's
/// transaction set another with [`set_export_timeout`] (see [`ExportTimeout`]).
#[tracing::instrument(target = "shared_db::shop::products", skip_all, fields(%shop_id))]
pub fn export(
    conn: &mut PgConnection,
    shop_id: ShopId,
) -> impl Stream<Item = Result<ProductWithTranslation>> + Send + '_ {
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
           WHERE p.shop_id = $1
           ORDER BY p.created_at, p.id"#,
        shop_id.get()
    )
    .fetch(conn)
    .map(|row| row.map(Into::into).map_err(Error::from))
}
