//! The `shop` schema: a multi-shop storefront catalog, its orders and its admin users.
//!
//! All tables live in the PostgreSQL schema `shop` (migrations `0020`–`0022`, `0040`–`0059`), so they never
//! collide with the planexe tables in `public`. One module per table (translation tables live
//! with their parent); free functions next to the struct they return.
//!
//! **Scoping:** every function on a shop-owned entity (categories, products, tags,
//! products_to_tags, attributes and their options and product values, accounts, orders,
//! info_requests, shops_users) takes the [`ShopId`], and a row of another shop is
//! [`Error::NotFound`], for reads, updates and deletes alike. Composite
//! foreign keys `(shop_id, x_id)` make it impossible to link rows of two shops, whoever writes.
//!
//! **Input** follows one set of rules ([`input`]): NUL bytes and over-long text are
//! [`Error::InvalidInput`] naming the field, blank names are refused. Money is
//! [`rust_decimal::Decimal`] in `numeric(12,2)` columns ([`money`]). Lists are bounded
//! ([`list::MAX_LIMIT`]); whole tables are read through streaming exports.
//!
//! **Concurrent edits:** shops, categories and products carry a `version`; their `update` takes
//! the version the caller read, and a stale one is [`Error::Conflict`] on
//! [`STALE_VERSION`] with nothing changed. Stock moves only by delta
//! ([`products::adjust_stock`], order completion), never by an edit.
//!
//! **Deletes** follow the `ON DELETE` rule declared for each foreign key (see
//! `migrations/README.md`); deleting a row that is still referenced through a `RESTRICT` key is
//! [`Error::Conflict`] carrying the constraint name, which names the
//! table that holds it (e.g. `fk_products_category_id_categories`).

//! ```no_run
//! use shared_db::shop::{ListParams, ShopId, products};
//!
//! # async fn example(db: &shared_db::Database, shop_id: ShopId) -> shared_db::Result<()> {
//! let mut conn = db.acquire().await?;
//! let params = ListParams::default()
//!     .filter("main_name:shirt") // filters combine with AND
//!     .filter("featured:true")
//!     .sort("price:DESC") // id is always the final tie-break
//!     .page(0, 20);
//! let page = products::list(&mut conn, shop_id, &params).await?;
//! println!("Content-Range: {}", page.content_range); // e.g. "products 0-19/42"
//! # Ok(()) }
//! ```

pub mod accounts;
pub mod attribute_options;
pub mod attributes;
pub mod categories;
pub mod distribute;
pub mod early_access;
pub mod faq;
pub mod ids;
#[cfg(feature = "import")]
pub mod import;
pub mod info_requests;
pub mod input;
pub mod licenses;
pub mod list;
pub mod money;
pub mod orders;
pub mod product_attribute_values;
pub mod products;
pub mod products_to_tags;
pub mod reference_data;
pub mod roles;
pub mod shops;
pub mod shops_users;
pub mod tags;
pub mod translation;
pub mod users;

pub use ids::{ProductId, ShopId};
pub use list::{ContentRange, Cursor, KeysetPage, ListPage, ListParams, MAX_LIMIT};
pub use translation::{Lang, Named, Translated};

use crate::{Error, Result};

/// A delete blocked by a `RESTRICT` foreign key becomes [`Error::Conflict`] naming the
/// constraint (and so the referencing table).
pub(crate) fn still_referenced(e: impl Into<Error>) -> Error {
    match e.into() {
        Error::ForeignKey { constraint } => Error::Conflict { constraint },
        e => e,
    }
}

/// The `constraint` of the [`Error::Conflict`] an `update` returns when the caller's version is
/// stale (someone else saved the row since it was read). Nothing was changed; read again.
pub const STALE_VERSION: &str = "stale_version";

/// Why a versioned update matched no row, from whether the row exists (read right after it): saved
/// since by someone else (the [`STALE_VERSION`] conflict) or not the shop's ([`Error::NotFound`]).
pub(crate) fn stale_or_missing(exists: bool) -> Error {
    if exists {
        Error::Conflict {
            constraint: STALE_VERSION.into(),
        }
    } else {
        Error::NotFound
    }
}

/// `NotFound` unless exactly one row was affected.
pub(crate) fn one_row(affected: u64) -> Result<()> {
    if affected == 0 {
        Err(Error::NotFound)
    } else {
        Ok(())
    }
}

/// Serialises appends to an ordering sequence (`scope` = table, per shop and optionally per
/// category) for the rest of the transaction, so `max(order_number) + 1` read by the next
/// statement cannot be taken by a concurrent insert. A transaction-level advisory lock: it
/// touches no row and is released at commit or rollback.
pub(crate) async fn lock_ordering(
    exec: impl sqlx::PgExecutor<'_>,
    scope: &str,
    shop_id: ShopId,
    category_id: Option<uuid::Uuid>,
) -> Result<()> {
    sqlx::query_scalar!(
        r#"SELECT true AS "locked!" FROM (
               SELECT pg_advisory_xact_lock(
                   hashtextextended(concat_ws(':', $1::text, $2::uuid, $3::uuid), 0))
           ) AS l"#,
        scope,
        shop_id.get(),
        category_id
    )
    .fetch_one(exec)
    .await?;
    Ok(())
}
