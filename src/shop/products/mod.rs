//! `shop.products` and `shop.product_translations`.
//!
//! A product is created and updated together with its translation in one transaction; its
//! `order_number` is appended per (shop, category) under a lock and can be swapped within the
//! category. Deleting a product removes its translation, tag links and attribute values; info
//! requests keep existing with `product_id = NULL`.
//!
//! - [`crud`]: create, get, update (versioned), delete, and [`adjust_stock`], the only way stock
//!   changes outside order completion.
//! - [`listing`]: the admin list (filters, sorts, attribute filters), the keyset walk
//!   [`list_after`] in `(created_at, id)` order, and the streaming [`export`].
//! - [`catalog`]: the storefront's product grid ([`catalog_page`], [`catalog_page_after`]).

pub mod catalog;
pub mod crud;
pub mod listing;

// The submodules' spans name `shared_db::shop::products` as their target, so logs and metrics keep one name per
// function (its public path) whichever file holds it.
pub use catalog::{CatalogEntry, catalog_page, catalog_page_after};
pub use crud::{adjust_stock, create, delete, get, name, swap_order, update};
pub use listing::{ExportTimeout, LIST, export, list, list_after, set_export_timeout};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::input::{self, LONG_TEXT};
use super::money;
use super::translation::{self, Translated};
use super::{ProductId, ShopId};
use crate::Result;

/// A row of `shop.products`. Money is `numeric(12,2)` (see [`super::money`]); `None` means no
/// price is set.
#[derive(Debug, Clone, Serialize)]
pub struct Product {
    /// Primary key.
    pub id: ProductId,
    /// Owning shop.
    pub shop_id: ShopId,
    /// Category of the same shop; `None` for uncategorised products.
    pub category_id: Option<Uuid>,
    /// Unit price including VAT.
    pub price: Option<Decimal>,
    /// Which `shops.vat_*` rate applies (`vat_standard`, `vat_lower_1`, …).
    pub tax_category: String,
    /// Price while the discount runs (`discounted_from` ..= `discounted_to`).
    pub discounted_price: Option<Decimal>,
    /// Discount start; `None` with a discounted price: from now on.
    pub discounted_from: Option<DateTime<Utc>>,
    /// Discount end; `None` with a discounted price: open-ended.
    pub discounted_to: Option<DateTime<Utc>>,
    /// Image URLs in display order; `None` slots are empty.
    pub image_1: Option<String>,
    /// See `image_1`.
    pub image_2: Option<String>,
    /// See `image_1`.
    pub image_3: Option<String>,
    /// See `image_1`.
    pub image_4: Option<String>,
    /// See `image_1`.
    pub image_5: Option<String>,
    /// See `image_1`.
    pub image_6: Option<String>,
    /// Creation time; with `id` the order of [`list_after`].
    pub created_at: DateTime<Utc>,
    /// Last change of any kind, stock included (set by a trigger).
    pub modified_at: DateTime<Utc>,
    /// Subscription price per month; `None`: not sold monthly.
    pub recurring_price_monthly: Option<Decimal>,
    /// Subscription price per year; `None`: not sold yearly.
    pub recurring_price_yearly: Option<Decimal>,
    /// An order may hold at most one unit.
    pub max_one: bool,
    /// URL of the digital asset delivered on purchase; `None` for physical goods.
    pub digital: Option<String>,
    /// Needs shipping.
    pub shippable: bool,
    /// Shown in the storefront's featured row.
    pub featured: bool,
    /// Carries the storefront's "new" badge.
    pub new_product: bool,
    /// Position within (shop, category), ascending; the catalog's first sort key.
    pub order_number: i32,
    /// Units in stock, never negative. Changed only by [`adjust_stock`] and order completion.
    pub stock: i32,
    /// Bumped by every [`update`]; pass it back to the next one. Stock changes leave it alone.
    pub version: i32,
}

/// A row of `shop.product_translations`.
#[derive(Debug, Clone, Serialize)]
pub struct ProductTranslation {
    /// Primary key.
    pub id: Uuid,
    /// The product (exactly one translation each).
    pub product_id: ProductId,
    /// Name in the shop's main language.
    pub main_name: String,
    /// Description in the main language (unbounded text, not indexed).
    pub main_description: String,
    /// One-line description in the main language.
    pub main_description_short: String,
    /// Name in alt1; `None` falls back to `main_name`.
    pub alt1_name: Option<String>,
    /// Description in alt1; `None` falls back to `main_description`.
    pub alt1_description: Option<String>,
    /// Short description in alt1; `None` falls back to `main_description_short`.
    pub alt1_description_short: Option<String>,
    /// Name in alt2; `None` falls back to `main_name`.
    pub alt2_name: Option<String>,
    /// Description in alt2; `None` falls back to `main_description`.
    pub alt2_description: Option<String>,
    /// Short description in alt2; `None` falls back to `main_description_short`.
    pub alt2_description_short: Option<String>,
}

super::translation::impl_named!(ProductTranslation);

/// Translation written with a product: main fields required (not blank), blank alt fields stored
/// as NULL. Names hold at most 255 characters, descriptions [`LONG_TEXT`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ProductTranslationInput {
    /// Name in the main language.
    pub main_name: String,
    /// Description in the main language.
    pub main_description: String,
    /// One-line description in the main language.
    pub main_description_short: String,
    /// Name in alt1.
    pub alt1_name: Option<String>,
    /// Description in alt1.
    pub alt1_description: Option<String>,
    /// Short description in alt1.
    pub alt1_description_short: Option<String>,
    /// Name in alt2.
    pub alt2_name: Option<String>,
    /// Description in alt2.
    pub alt2_description: Option<String>,
    /// Short description in alt2.
    pub alt2_description_short: Option<String>,
}

impl ProductTranslationInput {
    fn normalized(&self) -> Result<Self> {
        input::name("translation.main_name", &self.main_name, 255)?;
        input::name(
            "translation.main_description",
            &self.main_description,
            LONG_TEXT,
        )?;
        input::name(
            "translation.main_description_short",
            &self.main_description_short,
            LONG_TEXT,
        )?;
        let opt = translation::optional;
        Ok(ProductTranslationInput {
            main_name: self.main_name.clone(),
            main_description: self.main_description.clone(),
            main_description_short: self.main_description_short.clone(),
            alt1_name: opt("translation.alt1_name", self.alt1_name.as_ref(), 255)?,
            alt1_description: opt(
                "translation.alt1_description",
                self.alt1_description.as_ref(),
                LONG_TEXT,
            )?,
            alt1_description_short: opt(
                "translation.alt1_description_short",
                self.alt1_description_short.as_ref(),
                LONG_TEXT,
            )?,
            alt2_name: opt("translation.alt2_name", self.alt2_name.as_ref(), 255)?,
            alt2_description: opt(
                "translation.alt2_description",
                self.alt2_description.as_ref(),
                LONG_TEXT,
            )?,
            alt2_description_short: opt(
                "translation.alt2_description_short",
                self.alt2_description_short.as_ref(),
                LONG_TEXT,
            )?,
        })
    }
}

/// Everything a product's create and update write (the shop comes from the caller's scope).
/// Stock is not here: [`create`] takes the opening stock, and afterwards only
/// [`adjust_stock`] and order completion move it.
#[derive(Debug, Clone, Deserialize)]
pub struct ProductFields {
    /// Category of the same shop.
    pub category_id: Option<Uuid>,
    /// Unit price; see [`super::money`] for the rules.
    pub price: Option<Decimal>,
    /// VAT category (default `vat_standard`).
    #[serde(default = "vat_standard")]
    pub tax_category: String,
    /// Price while the discount runs.
    pub discounted_price: Option<Decimal>,
    /// Discount start.
    pub discounted_from: Option<DateTime<Utc>>,
    /// Discount end.
    pub discounted_to: Option<DateTime<Utc>>,
    /// Image URLs 1–6, at most 255 characters each.
    #[serde(default)]
    pub images: [Option<String>; 6],
    /// Subscription price per month.
    pub recurring_price_monthly: Option<Decimal>,
    /// Subscription price per year.
    pub recurring_price_yearly: Option<Decimal>,
    /// An order may hold at most one unit.
    #[serde(default)]
    pub max_one: bool,
    /// URL of the digital asset, at most 255 characters.
    pub digital: Option<String>,
    /// Needs shipping (default true).
    #[serde(default = "yes")]
    pub shippable: bool,
    /// Shown in the featured row.
    #[serde(default)]
    pub featured: bool,
    /// Carries the "new" badge.
    #[serde(default)]
    pub new_product: bool,
    /// The translation.
    pub translation: ProductTranslationInput,
}

fn vat_standard() -> String {
    "vat_standard".into()
}
fn yes() -> bool {
    true
}

impl ProductFields {
    /// A product with the given translation and defaults elsewhere.
    pub fn new(category_id: Option<Uuid>, translation: ProductTranslationInput) -> Self {
        ProductFields {
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
            translation,
        }
    }

    /// Validates every field and returns the values as stored: money with two decimals, the
    /// translation normalized.
    fn checked(&self) -> Result<(Self, ProductTranslationInput)> {
        input::text("tax_category", &self.tax_category, 20)?;
        input::opt_text("digital", self.digital.as_deref(), 255)?;
        const IMAGES: [&str; 6] = [
            "images[0]",
            "images[1]",
            "images[2]",
            "images[3]",
            "images[4]",
            "images[5]",
        ];
        for (field, image) in IMAGES.iter().zip(&self.images) {
            input::opt_text(field, image.as_deref(), 255)?;
        }
        let translation = self.translation.normalized()?;
        let mut fields = self.clone();
        fields.price = money::check_opt("price", self.price)?;
        fields.discounted_price = money::check_opt("discounted_price", self.discounted_price)?;
        fields.recurring_price_monthly =
            money::check_opt("recurring_price_monthly", self.recurring_price_monthly)?;
        fields.recurring_price_yearly =
            money::check_opt("recurring_price_yearly", self.recurring_price_yearly)?;
        Ok((fields, translation))
    }
}

/// A product with its translation.
pub type ProductWithTranslation = Translated<Product, ProductTranslation>;

/// The flat row of a product joined to its translation: what [`get`], [`list`], [`list_after`]
/// and [`export`] decode.
#[derive(sqlx::FromRow)]
pub(crate) struct ProductRow {
    id: ProductId,
    shop_id: ShopId,
    category_id: Option<Uuid>,
    price: Option<Decimal>,
    tax_category: String,
    discounted_price: Option<Decimal>,
    discounted_from: Option<DateTime<Utc>>,
    discounted_to: Option<DateTime<Utc>>,
    image_1: Option<String>,
    image_2: Option<String>,
    image_3: Option<String>,
    image_4: Option<String>,
    image_5: Option<String>,
    image_6: Option<String>,
    created_at: DateTime<Utc>,
    modified_at: DateTime<Utc>,
    recurring_price_monthly: Option<Decimal>,
    recurring_price_yearly: Option<Decimal>,
    max_one: bool,
    digital: Option<String>,
    shippable: bool,
    featured: bool,
    new_product: bool,
    order_number: i32,
    stock: i32,
    version: i32,
    t_id: Option<Uuid>,
    t_main_name: Option<String>,
    t_main_description: Option<String>,
    t_main_description_short: Option<String>,
    t_alt1_name: Option<String>,
    t_alt1_description: Option<String>,
    t_alt1_description_short: Option<String>,
    t_alt2_name: Option<String>,
    t_alt2_description: Option<String>,
    t_alt2_description_short: Option<String>,
}

/// The select list of [`ProductRow`] over `shop.products p LEFT JOIN
/// shop.product_translations t`, for the `QueryBuilder` lists. The `query_as!` reads spell the
/// same list out so the compiler checks it.
pub(crate) const PRODUCT_ROW_COLUMNS: &str = "p.id, p.shop_id, p.category_id, p.price, \
    p.tax_category, p.discounted_price, p.discounted_from, p.discounted_to, p.image_1, p.image_2, \
    p.image_3, p.image_4, p.image_5, p.image_6, p.created_at, p.modified_at, \
    p.recurring_price_monthly, p.recurring_price_yearly, p.max_one, p.digital, p.shippable, \
    p.featured, p.new_product, p.order_number, p.stock, p.version, t.id AS t_id, \
    t.main_name AS t_main_name, t.main_description AS t_main_description, \
    t.main_description_short AS t_main_description_short, t.alt1_name AS t_alt1_name, \
    t.alt1_description AS t_alt1_description, t.alt1_description_short AS t_alt1_description_short, \
    t.alt2_name AS t_alt2_name, t.alt2_description AS t_alt2_description, \
    t.alt2_description_short AS t_alt2_description_short";

impl From<ProductRow> for ProductWithTranslation {
    fn from(r: ProductRow) -> Self {
        let translation = match (
            r.t_id,
            r.t_main_name,
            r.t_main_description,
            r.t_main_description_short,
        ) {
            (Some(id), Some(main_name), Some(main_description), Some(main_description_short)) => {
                Some(ProductTranslation {
                    id,
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
        Translated {
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
                version: r.version,
            },
            translation,
        }
    }
}
