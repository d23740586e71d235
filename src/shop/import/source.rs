//! Rows of the old backend's tables (`public.*`, layout of `shop.md` at Alembic head
//! `7890fc217968`) and the queries that stream them.
//!
//! These queries run against the **old** database, whose tables are not in this crate's
//! migrations, so they cannot be checked by `sqlx::query!` at build time. They are the one place
//! in the crate with runtime-checked SQL: `sqlx::query_as` over explicit column lists into the
//! `FromRow` structs below, so a missing or retyped column fails the first row with a decode
//! error naming it. Every table is qualified with `public.` (the old database may be the target
//! database itself, whose `search_path` may differ).
//!
//! Each per-shop query takes the shop id as `$1`, returns the shop's rows of one table ordered by
//! id, and computes in the old database what the rules need from other rows (does the parent
//! exist, which shop owns the category, is this the second link of the pair), so the import
//! itself holds one batch of rows at a time, never a table.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

/// `public.users` (global: not scoped by shop).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct User {
    pub id: Uuid,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub active: Option<bool>,
    pub created_at: Option<DateTime<Utc>>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub mail_offers: Option<bool>,
}

pub(crate) const USERS: &str = "
SELECT id, email, first_name, last_name, username, password, active, created_at, confirmed_at,
       mail_offers
FROM public.users
ORDER BY id";

/// `public.roles` (global).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct Role {
    pub id: Uuid,
    pub name: Option<String>,
    pub description: Option<String>,
}

pub(crate) const ROLES: &str = "
SELECT id, name, description FROM public.roles ORDER BY id";

/// `public.roles_users` (global), with whether both ends exist and the pair's rank.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct RoleUser {
    pub id: Uuid,
    pub user_id: Option<Uuid>,
    pub user_exists: bool,
    pub role_id: Option<Uuid>,
    pub role_exists: bool,
    /// 1 for the first link of this (user, role) pair by id, 2 for the second, …
    pub pair_rank: i64,
}

pub(crate) const ROLES_USERS: &str = "
SELECT ru.id, ru.user_id, u.id IS NOT NULL AS user_exists, ru.role_id,
       r.id IS NOT NULL AS role_exists,
       row_number() OVER (PARTITION BY ru.user_id, ru.role_id ORDER BY ru.id) AS pair_rank
FROM public.roles_users ru
LEFT JOIN public.users u ON u.id = ru.user_id
LEFT JOIN public.roles r ON r.id = ru.role_id
ORDER BY ru.id";

/// `public.faq` (global).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct Faq {
    pub id: Uuid,
    pub question: String,
    pub answer: String,
    pub category: String,
    pub created_at: Option<DateTime<Utc>>,
    pub modified_at: Option<DateTime<Utc>>,
    /// 1 for the first row with this question by id, 2 for the second, …
    pub question_rank: i64,
}

pub(crate) const FAQ: &str = "
SELECT id, question, answer, category, created_at, modified_at,
       row_number() OVER (PARTITION BY question ORDER BY id) AS question_rank
FROM public.faq
ORDER BY id";

/// `public.early_access` (global).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct EarlyAccess {
    pub id: Uuid,
    pub email: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
}

pub(crate) const EARLY_ACCESS: &str = "
SELECT id, email, created_at FROM public.early_access ORDER BY id";

/// The next shop after `$1` (keyset walk over `public.shops`, one shop at a time).
pub(crate) const NEXT_SHOP: &str = "
SELECT id, name FROM public.shops WHERE id > $1 ORDER BY id LIMIT 1";

/// `public.shops`, one row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct Shop {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub allowed_ips: Option<Value>,
    pub vat_standard: Option<f64>,
    pub vat_lower_1: Option<f64>,
    pub vat_lower_2: Option<f64>,
    pub vat_lower_3: Option<f64>,
    pub vat_special: Option<f64>,
    pub vat_zero: Option<f64>,
    pub created_at: Option<DateTime<Utc>>,
    pub modified_at: Option<DateTime<Utc>>,
    pub config: Value,
    pub stripe_secret_key: Option<String>,
    pub stripe_public_key: Option<String>,
    pub config_version: i32,
    pub shop_type: Value,
    pub internal_url: Option<String>,
    pub external_url: Option<String>,
    pub discord_webhook: Option<String>,
}

pub(crate) const SHOP: &str = "
SELECT id, name, description, allowed_ips, vat_standard, vat_lower_1, vat_lower_2, vat_lower_3,
       vat_special, vat_zero, created_at, modified_at, config, stripe_secret_key,
       stripe_public_key, config_version, shop_type, internal_url, external_url, discord_webhook
FROM public.shops
WHERE id = $1";

/// `public.shops_users` of one shop.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ShopUser {
    pub id: Uuid,
    pub user_id: Option<Uuid>,
    pub user_exists: bool,
    /// 1 for the first link of this (shop, user) pair by id, 2 for the second, …
    pub pair_rank: i64,
}

pub(crate) const SHOPS_USERS: &str = "
SELECT su.id, su.user_id, u.id IS NOT NULL AS user_exists,
       row_number() OVER (PARTITION BY su.user_id ORDER BY su.id) AS pair_rank
FROM public.shops_users su
LEFT JOIN public.users u ON u.id = su.user_id
WHERE su.shop_id = $1
ORDER BY su.id";

/// `public.categories` of one shop.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct Category {
    pub id: Uuid,
    pub color: Option<String>,
    pub icon: Option<String>,
    pub order_number: Option<i32>,
    pub main_image: Option<String>,
    pub alt1_image: Option<String>,
    pub alt2_image: Option<String>,
    /// 1 for the first category of the shop with this order_number by id, 2 for the second, …
    pub number_rank: i64,
}

pub(crate) const CATEGORIES: &str = "
SELECT id, color, icon, order_number, main_image, alt1_image, alt2_image,
       row_number() OVER (PARTITION BY order_number ORDER BY id) AS number_rank
FROM public.categories
WHERE shop_id = $1
ORDER BY id";

/// A row of any of the four translation tables; columns a table lacks are NULL.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct Translation {
    pub id: Uuid,
    pub parent_id: Uuid,
    /// 1 for the parent's first translation by id, 2 for the second, …
    pub parent_rank: i64,
    pub main_name: String,
    pub main_description: Option<String>,
    pub main_description_short: Option<String>,
    pub alt1_name: Option<String>,
    pub alt1_description: Option<String>,
    pub alt1_description_short: Option<String>,
    pub alt2_name: Option<String>,
    pub alt2_description: Option<String>,
    pub alt2_description_short: Option<String>,
}

macro_rules! translation_newtype {
    ($name:ident) => {
        /// A translation row of one parent table (see [`Translation`]).
        #[derive(Debug, sqlx::FromRow)]
        pub(crate) struct $name {
            #[sqlx(flatten)]
            pub t: Translation,
        }
    };
}
translation_newtype!(CategoryTranslation);
translation_newtype!(ProductTranslation);
translation_newtype!(TagTranslation);
translation_newtype!(AttributeTranslation);

pub(crate) const CATEGORY_TRANSLATIONS: &str = "
SELECT t.id, t.category_id AS parent_id,
       row_number() OVER (PARTITION BY t.category_id ORDER BY t.id) AS parent_rank,
       t.main_name, t.main_description, NULL::text AS main_description_short,
       t.alt1_name, t.alt1_description, NULL::text AS alt1_description_short,
       t.alt2_name, t.alt2_description, NULL::text AS alt2_description_short
FROM public.category_translations t
JOIN public.categories c ON c.id = t.category_id
WHERE c.shop_id = $1
ORDER BY t.id";

pub(crate) const PRODUCT_TRANSLATIONS: &str = "
SELECT t.id, t.product_id AS parent_id,
       row_number() OVER (PARTITION BY t.product_id ORDER BY t.id) AS parent_rank,
       t.main_name, t.main_description, t.main_description_short,
       t.alt1_name, t.alt1_description, t.alt1_description_short,
       t.alt2_name, t.alt2_description, t.alt2_description_short
FROM public.product_translations t
JOIN public.products p ON p.id = t.product_id
WHERE p.shop_id = $1
ORDER BY t.id";

pub(crate) const TAG_TRANSLATIONS: &str = "
SELECT t.id, t.tag_id AS parent_id,
       row_number() OVER (PARTITION BY t.tag_id ORDER BY t.id) AS parent_rank,
       t.main_name, NULL::text AS main_description, NULL::text AS main_description_short,
       t.alt1_name, NULL::text AS alt1_description, NULL::text AS alt1_description_short,
       t.alt2_name, NULL::text AS alt2_description, NULL::text AS alt2_description_short
FROM public.tag_translations t
JOIN public.tags g ON g.id = t.tag_id
WHERE g.shop_id = $1
ORDER BY t.id";

pub(crate) const ATTRIBUTE_TRANSLATIONS: &str = "
SELECT t.id, t.attribute_id AS parent_id,
       row_number() OVER (PARTITION BY t.attribute_id ORDER BY t.id) AS parent_rank,
       t.main_name, NULL::text AS main_description, NULL::text AS main_description_short,
       t.alt1_name, NULL::text AS alt1_description, NULL::text AS alt1_description_short,
       t.alt2_name, NULL::text AS alt2_description, NULL::text AS alt2_description_short
FROM public.attribute_translations t
JOIN public.attributes a ON a.id = t.attribute_id
WHERE a.shop_id = $1
ORDER BY t.id";

/// `public.tags` of one shop.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct Tag {
    pub id: Uuid,
    pub name: Option<String>,
}

pub(crate) const TAGS: &str = "
SELECT id, name FROM public.tags WHERE shop_id = $1 ORDER BY id";

/// `public.attributes` of one shop.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct Attribute {
    pub id: Uuid,
    pub name: String,
    pub unit: Option<String>,
}

pub(crate) const ATTRIBUTES: &str = "
SELECT id, name, unit FROM public.attributes WHERE shop_id = $1 ORDER BY id";

/// `public.attribute_options` of the shop's attributes.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AttributeOption {
    pub id: Uuid,
    pub attribute_id: Uuid,
    pub value_key: String,
}

pub(crate) const ATTRIBUTE_OPTIONS: &str = "
SELECT o.id, o.attribute_id, o.value_key
FROM public.attribute_options o
JOIN public.attributes a ON a.id = o.attribute_id
WHERE a.shop_id = $1
ORDER BY o.id";

/// `public.products` of one shop, with the shop of its category.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct Product {
    pub id: Uuid,
    pub category_id: Option<Uuid>,
    pub category_exists: bool,
    pub category_shop: Option<Uuid>,
    pub price: Option<f64>,
    pub tax_category: Option<String>,
    pub discounted_price: Option<f64>,
    pub discounted_from: Option<NaiveDateTime>,
    pub discounted_to: Option<NaiveDateTime>,
    pub image_1: Option<String>,
    pub image_2: Option<String>,
    pub image_3: Option<String>,
    pub image_4: Option<String>,
    pub image_5: Option<String>,
    pub image_6: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub modified_at: Option<DateTime<Utc>>,
    pub recurring_price_monthly: Option<f64>,
    pub recurring_price_yearly: Option<f64>,
    pub max_one: Option<bool>,
    pub digital: Option<String>,
    pub shippable: Option<bool>,
    pub featured: Option<bool>,
    pub new_product: Option<bool>,
    pub order_number: Option<i32>,
    pub stock: Option<i32>,
    /// 1 for the first product of the (shop, category) with this order_number by id, …
    pub number_rank: i64,
}

pub(crate) const PRODUCTS: &str = "
SELECT p.id, p.category_id, c.id IS NOT NULL AS category_exists, c.shop_id AS category_shop,
       p.price, p.tax_category, p.discounted_price, p.discounted_from, p.discounted_to,
       p.image_1, p.image_2, p.image_3, p.image_4, p.image_5, p.image_6,
       p.created_at, p.modified_at, p.recurring_price_monthly, p.recurring_price_yearly,
       p.max_one, p.digital, p.shippable, p.featured, p.new_product, p.order_number, p.stock,
       row_number() OVER (PARTITION BY p.category_id, p.order_number ORDER BY p.id) AS number_rank
FROM public.products p
LEFT JOIN public.categories c ON c.id = p.category_id
WHERE p.shop_id = $1
ORDER BY p.id";

/// `public.products_to_tags` of one shop, with the shops of both ends.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ProductTag {
    pub id: Uuid,
    pub product_id: Option<Uuid>,
    pub product_exists: bool,
    pub product_shop: Option<Uuid>,
    pub tag_id: Option<Uuid>,
    pub tag_exists: bool,
    pub tag_shop: Option<Uuid>,
    /// 1 for the first link of this (product, tag) pair by id, 2 for the second, …
    pub pair_rank: i64,
}

pub(crate) const PRODUCTS_TO_TAGS: &str = "
SELECT l.id, l.product_id, p.id IS NOT NULL AS product_exists, p.shop_id AS product_shop,
       l.tag_id, g.id IS NOT NULL AS tag_exists, g.shop_id AS tag_shop,
       row_number() OVER (PARTITION BY l.product_id, l.tag_id ORDER BY l.id) AS pair_rank
FROM public.products_to_tags l
LEFT JOIN public.products p ON p.id = l.product_id
LEFT JOIN public.tags g ON g.id = l.tag_id
WHERE l.shop_id = $1
ORDER BY l.id";

/// `public.product_attribute_values` of the shop's products.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AttributeValue {
    pub id: Uuid,
    pub product_id: Uuid,
    pub attribute_id: Option<Uuid>,
    pub attribute_exists: bool,
    pub attribute_shop: Option<Uuid>,
    pub option_id: Option<Uuid>,
    pub option_exists: bool,
    /// The attribute the option belongs to.
    pub option_attribute: Option<Uuid>,
    /// 1 for the first value of this (product, attribute, option) by id (NULL options equal).
    pub triple_rank: i64,
}

pub(crate) const PRODUCT_ATTRIBUTE_VALUES: &str = "
SELECT v.id, v.product_id, v.attribute_id, a.id IS NOT NULL AS attribute_exists,
       a.shop_id AS attribute_shop, v.option_id, o.id IS NOT NULL AS option_exists,
       o.attribute_id AS option_attribute,
       row_number() OVER (PARTITION BY v.product_id, v.attribute_id, v.option_id ORDER BY v.id)
           AS triple_rank
FROM public.product_attribute_values v
JOIN public.products p ON p.id = v.product_id
LEFT JOIN public.attributes a ON a.id = v.attribute_id
LEFT JOIN public.attribute_options o ON o.id = v.option_id
WHERE p.shop_id = $1
ORDER BY v.id";

/// `public.accounts` of one shop. `details` is `json` (not `jsonb`) in the old schema and is
/// read as text: it may hold what `jsonb` refuses (`\u0000`).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct Account {
    pub id: Uuid,
    pub name: Option<String>,
    pub hash_name: Option<String>,
    pub details: Option<String>,
}

pub(crate) const ACCOUNTS: &str = "
SELECT id, name, hash_name, details::text AS details
FROM public.accounts
WHERE shop_id = $1
ORDER BY id";

/// `public.orders` of one shop, with what the rules need from accounts, users, shops_users and
/// products.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct Order {
    pub id: Uuid,
    pub customer_order_id: Option<i32>,
    pub notes: Option<String>,
    pub account_id: Option<Uuid>,
    pub account_exists: bool,
    pub account_shop: Option<Uuid>,
    pub order_info: Option<Value>,
    pub created_at: Option<NaiveDateTime>,
    pub total: Option<f64>,
    pub status: Option<String>,
    pub completed_by: Option<Uuid>,
    pub completer_exists: bool,
    pub completer_is_member: bool,
    pub completed_at: Option<NaiveDateTime>,
    /// 1 for the first order of the shop with this customer_order_id by id, 2 for the second, …
    pub number_rank: i64,
    /// `product_id`s of items that name no product of this shop, comma-separated, in item order.
    pub unknown_products: Option<String>,
}

pub(crate) const ORDERS: &str = r"
SELECT o.id, o.customer_order_id, o.notes, o.account_id, a.id IS NOT NULL AS account_exists,
       a.shop_id AS account_shop, o.order_info, o.created_at, o.total, o.status, o.completed_by,
       u.id IS NOT NULL AS completer_exists,
       EXISTS (SELECT 1 FROM public.shops_users su
               WHERE su.shop_id = o.shop_id AND su.user_id = o.completed_by) AS completer_is_member,
       o.completed_at,
       row_number() OVER (PARTITION BY o.customer_order_id ORDER BY o.id) AS number_rank,
       (SELECT string_agg(coalesce(i.item ->> 'product_id', 'NULL'), ',' ORDER BY i.n)
        FROM jsonb_array_elements(CASE jsonb_typeof(o.order_info) WHEN 'array' THEN o.order_info
                                                                 ELSE '[]' END)
             WITH ORDINALITY AS i(item, n)
        WHERE NOT EXISTS (
            SELECT 1 FROM public.products p
            WHERE p.shop_id = o.shop_id
              AND p.id = CASE WHEN i.item ->> 'product_id'
                                   ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                              THEN (i.item ->> 'product_id')::uuid END)) AS unknown_products
FROM public.orders o
LEFT JOIN public.accounts a ON a.id = o.account_id
LEFT JOIN public.users u ON u.id = o.completed_by
WHERE o.shop_id = $1
ORDER BY o.id";

/// `public.info_requests` of one shop, with the shop of the product asked about.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct InfoRequest {
    pub id: Uuid,
    pub email: Option<String>,
    pub product_id: Option<Uuid>,
    pub product_exists: bool,
    pub product_shop: Option<Uuid>,
}

pub(crate) const INFO_REQUESTS: &str = "
SELECT i.id, i.email, i.product_id, p.id IS NOT NULL AS product_exists, p.shop_id AS product_shop
FROM public.info_requests i
LEFT JOIN public.products p ON p.id = i.product_id
WHERE i.shop_id = $1
ORDER BY i.id";

/// `public.licenses`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct License {
    pub id: Uuid,
    pub name: String,
    pub is_recurring: bool,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub improviser_user: Uuid,
    pub seats: i32,
    pub order_id: Option<Uuid>,
    pub created_at: Option<DateTime<Utc>>,
    pub modified_at: Option<DateTime<Utc>>,
}

/// Licenses without an order: global rows, imported with the users.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct UnorderedLicense {
    #[sqlx(flatten)]
    pub l: License,
}

pub(crate) const LICENSES: &str = "
SELECT l.id, l.name, l.is_recurring, l.start_date, l.end_date, l.improviser_user, l.seats,
       l.order_id, l.created_at, l.modified_at
FROM public.licenses l
JOIN public.orders o ON o.id = l.order_id
WHERE o.shop_id = $1
ORDER BY l.id";

pub(crate) const UNORDERED_LICENSES: &str = "
SELECT id, name, is_recurring, start_date, end_date, improviser_user, seats, order_id,
       created_at, modified_at
FROM public.licenses
WHERE order_id IS NULL
ORDER BY id";

/// One refused row that belongs to no existing shop: `(table, id, rule, value)`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct Homeless {
    pub table_name: String,
    pub id: Uuid,
    pub rule: String,
    pub value: String,
}

/// Every row whose shop is NULL or missing, directly (`shop_id`) or through its parent, in
/// the order of the per-shop import (parents first), each table by id.
pub(crate) const HOMELESS: &str = "
WITH shop_owned(n, table_name, id, shop_id) AS (
    SELECT 1, 'shops_users', id, shop_id FROM public.shops_users
    UNION ALL SELECT 2, 'categories', id, shop_id FROM public.categories
    UNION ALL SELECT 4, 'tags', id, shop_id FROM public.tags
    UNION ALL SELECT 6, 'attributes', id, shop_id FROM public.attributes
    UNION ALL SELECT 9, 'products', id, shop_id FROM public.products
    UNION ALL SELECT 11, 'products_to_tags', id, shop_id FROM public.products_to_tags
    UNION ALL SELECT 13, 'accounts', id, shop_id FROM public.accounts
    UNION ALL SELECT 14, 'orders', id, shop_id FROM public.orders
    UNION ALL SELECT 16, 'info_requests', id, shop_id FROM public.info_requests
),
child(n, table_name, id, parent_column, parent_id, parent_exists, parent_shop) AS (
    SELECT 3, 'category_translations', t.id, 'category_id', t.category_id, c.id IS NOT NULL, c.shop_id
    FROM public.category_translations t LEFT JOIN public.categories c ON c.id = t.category_id
    UNION ALL
    SELECT 5, 'tag_translations', t.id, 'tag_id', t.tag_id, g.id IS NOT NULL, g.shop_id
    FROM public.tag_translations t LEFT JOIN public.tags g ON g.id = t.tag_id
    UNION ALL
    SELECT 7, 'attribute_translations', t.id, 'attribute_id', t.attribute_id, a.id IS NOT NULL, a.shop_id
    FROM public.attribute_translations t LEFT JOIN public.attributes a ON a.id = t.attribute_id
    UNION ALL
    SELECT 8, 'attribute_options', o.id, 'attribute_id', o.attribute_id, a.id IS NOT NULL, a.shop_id
    FROM public.attribute_options o LEFT JOIN public.attributes a ON a.id = o.attribute_id
    UNION ALL
    SELECT 10, 'product_translations', t.id, 'product_id', t.product_id, p.id IS NOT NULL, p.shop_id
    FROM public.product_translations t LEFT JOIN public.products p ON p.id = t.product_id
    UNION ALL
    SELECT 12, 'product_attribute_values', v.id, 'product_id', v.product_id, p.id IS NOT NULL, p.shop_id
    FROM public.product_attribute_values v LEFT JOIN public.products p ON p.id = v.product_id
    UNION ALL
    SELECT 15, 'licenses', l.id, 'order_id', l.order_id, o.id IS NOT NULL, o.shop_id
    FROM public.licenses l LEFT JOIN public.orders o ON o.id = l.order_id
    WHERE l.order_id IS NOT NULL
)
SELECT table_name, id, rule, value FROM (
    SELECT n, table_name, id,
           CASE WHEN shop_id IS NULL THEN 'null_shop' ELSE 'dangling_shop' END AS rule,
           'shop_id=' || coalesce(shop_id::text, 'NULL') AS value
    FROM shop_owned
    WHERE shop_id IS NULL OR NOT EXISTS (SELECT 1 FROM public.shops s WHERE s.id = shop_owned.shop_id)
    UNION ALL
    SELECT n, table_name, id,
           CASE WHEN NOT parent_exists AND table_name LIKE '%translations' THEN 'orphan_translation'
                WHEN NOT parent_exists THEN 'dangling_reference'
                ELSE 'parent_without_shop' END,
           parent_column || '=' || coalesce(parent_id::text, 'NULL')
    FROM child
    WHERE NOT parent_exists OR parent_shop IS NULL
       OR NOT EXISTS (SELECT 1 FROM public.shops s WHERE s.id = child.parent_shop)
) refused
ORDER BY n, id";
