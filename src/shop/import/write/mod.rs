//! Rows as they are written into `shop.*`, and the statements that write them.
//!
//! **Why not the repository functions.** `shop::products::create` and its siblings allocate
//! what the import must keep: a fresh id (`gen_random_uuid()`), the next `order_number`, the
//! next `customer_order_id` from the shop's counter, `created_at = now()`. An import that went
//! through them would break every link, order and licence that names the old ids. So each table
//! has one dedicated statement here, checked by `sqlx::query!` against the migrations like
//! every other statement of the crate:
//!
//! - `INSERT … SELECT … FROM UNNEST($1::uuid[], …)`: one statement per batch of
//!   [`BATCH`](super::BATCH) rows, the columns bound as arrays;
//! - `ON CONFLICT (shop_id, id) DO NOTHING` (users and shops: `(id)`; licences: by id, see there): a row imported by an earlier run is recognised by its id and
//!   left as it is, so a re-run inserts nothing twice. The number of rows inserted is returned
//!   (`rows_affected`); the rest were already there.
//!
//! The values themselves went through the same rules as the library's input (see
//! [`rules`](super::rules)), and the schema's own constraints (composite tenant keys, CHECKs,
//! UNIQUEs) still guard every row.

use std::future::Future;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::Result;

mod global;
mod session;

pub(crate) use global::{EarlyAccess, Faq, Role, RoleUser};
pub(crate) use session::{no_timeouts, shop_conflict};

/// A batch of converted rows of one table, written with one statement.
pub(crate) trait Insert: Send + Sync + Sized + 'static {
    /// Inserts `rows` of the given shop (`None` for global rows); returns how many were new.
    fn insert(
        conn: &mut PgConnection,
        shop: Option<Uuid>,
        rows: &[Self],
    ) -> impl Future<Output = Result<u64>> + Send;
}

fn col<T, U>(rows: &[T], f: impl Fn(&T) -> U) -> Vec<U> {
    rows.iter().map(f).collect()
}

fn shop_of(shop: Option<Uuid>) -> Result<Uuid> {
    shop.ok_or_else(|| crate::Error::invalid_input("a shop-owned row needs its shop"))
}

pub(crate) struct User {
    pub id: Uuid,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub mail_offers: bool,
}

impl Insert for User {
    async fn insert(conn: &mut PgConnection, _: Option<Uuid>, rows: &[Self]) -> Result<u64> {
        let r = sqlx::query!(
            "INSERT INTO shop.users (id, email, first_name, last_name, username, password, active,
                                     created_at, confirmed_at, mail_offers)
             SELECT u.id, u.email, u.first_name, u.last_name, u.username, u.password, u.active,
                    u.created_at, u.confirmed_at, u.mail_offers
             FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                         $7::bool[], $8::timestamptz[], $9::timestamptz[], $10::bool[])
                  AS u(id, email, first_name, last_name, username, password, active, created_at,
                       confirmed_at, mail_offers)
             ON CONFLICT (id) DO NOTHING",
            &col(rows, |r| r.id),
            &col(rows, |r| r.email.clone()) as &[Option<String>],
            &col(rows, |r| r.first_name.clone()) as &[Option<String>],
            &col(rows, |r| r.last_name.clone()) as &[Option<String>],
            &col(rows, |r| r.username.clone()) as &[Option<String>],
            &col(rows, |r| r.password.clone()) as &[Option<String>],
            &col(rows, |r| r.active),
            &col(rows, |r| r.created_at),
            &col(rows, |r| r.confirmed_at) as &[Option<DateTime<Utc>>],
            &col(rows, |r| r.mail_offers),
        )
        .execute(conn)
        .await?;
        Ok(r.rows_affected())
    }
}

pub(crate) struct Shop {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub allowed_ips: Option<Value>,
    /// standard, lower_1, lower_2, lower_3, special, zero
    pub vat: [f64; 6],
    pub created_at: DateTime<Utc>,
    pub modified_at: DateTime<Utc>,
    pub config: Value,
    pub stripe_secret_key: Option<String>,
    pub stripe_public_key: Option<String>,
    pub config_version: i32,
    pub shop_type: Value,
    pub internal_url: Option<String>,
    pub external_url: Option<String>,
    pub discord_webhook: Option<String>,
}

impl Insert for Shop {
    async fn insert(conn: &mut PgConnection, _: Option<Uuid>, rows: &[Self]) -> Result<u64> {
        let mut n = 0;
        for s in rows {
            let [vs, v1, v2, v3, vsp, vz] = s.vat;
            n += sqlx::query!(
                "INSERT INTO shop.shops (id, name, description, allowed_ips, vat_standard,
                                         vat_lower_1, vat_lower_2, vat_lower_3, vat_special,
                                         vat_zero, created_at, modified_at, config,
                                         stripe_secret_key, stripe_public_key, config_version,
                                         shop_type, internal_url, external_url, discord_webhook)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                         $17, $18, $19, $20)
                 ON CONFLICT (id) DO NOTHING",
                s.id,
                s.name,
                s.description,
                s.allowed_ips,
                vs,
                v1,
                v2,
                v3,
                vsp,
                vz,
                s.created_at,
                s.modified_at,
                s.config,
                s.stripe_secret_key,
                s.stripe_public_key,
                s.config_version,
                s.shop_type,
                s.internal_url,
                s.external_url,
                s.discord_webhook,
            )
            .execute(&mut *conn)
            .await?
            .rows_affected();
        }
        Ok(n)
    }
}

pub(crate) struct ShopUser {
    pub id: Uuid,
    pub user_id: Uuid,
}

impl Insert for ShopUser {
    async fn insert(conn: &mut PgConnection, shop: Option<Uuid>, rows: &[Self]) -> Result<u64> {
        let r = sqlx::query!(
            "INSERT INTO shop.shops_users (id, user_id, shop_id)
             SELECT u.id, u.user_id, $3 FROM UNNEST($1::uuid[], $2::uuid[]) AS u(id, user_id)
             ON CONFLICT (shop_id, id) DO NOTHING",
            &col(rows, |r| r.id),
            &col(rows, |r| r.user_id),
            shop_of(shop)?,
        )
        .execute(conn)
        .await?;
        Ok(r.rows_affected())
    }
}

pub(crate) struct Category {
    pub id: Uuid,
    pub color: Option<String>,
    pub icon: Option<String>,
    pub order_number: i32,
    pub main_image: Option<String>,
    pub alt1_image: Option<String>,
    pub alt2_image: Option<String>,
}

impl Insert for Category {
    async fn insert(conn: &mut PgConnection, shop: Option<Uuid>, rows: &[Self]) -> Result<u64> {
        let r = sqlx::query!(
            "INSERT INTO shop.categories (id, shop_id, color, icon, order_number, main_image,
                                          alt1_image, alt2_image)
             SELECT c.id, $1, c.color, c.icon, c.order_number, c.main_image, c.alt1_image,
                    c.alt2_image
             FROM UNNEST($2::uuid[], $3::text[], $4::text[], $5::int[], $6::text[], $7::text[],
                         $8::text[])
                  AS c(id, color, icon, order_number, main_image, alt1_image, alt2_image)
             ON CONFLICT (shop_id, id) DO NOTHING",
            shop_of(shop)?,
            &col(rows, |r| r.id),
            &col(rows, |r| r.color.clone()) as &[Option<String>],
            &col(rows, |r| r.icon.clone()) as &[Option<String>],
            &col(rows, |r| r.order_number),
            &col(rows, |r| r.main_image.clone()) as &[Option<String>],
            &col(rows, |r| r.alt1_image.clone()) as &[Option<String>],
            &col(rows, |r| r.alt2_image.clone()) as &[Option<String>],
        )
        .execute(conn)
        .await?;
        Ok(r.rows_affected())
    }
}

/// A translation row; the fields its table lacks are `None`.
pub(crate) struct Translation {
    pub id: Uuid,
    pub parent_id: Uuid,
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

pub(crate) struct CategoryTranslation(pub Translation);
pub(crate) struct ProductTranslation(pub Translation);
pub(crate) struct TagTranslation(pub Translation);
pub(crate) struct AttributeTranslation(pub Translation);

impl Insert for CategoryTranslation {
    async fn insert(conn: &mut PgConnection, shop: Option<Uuid>, rows: &[Self]) -> Result<u64> {
        let r = sqlx::query!(
            "INSERT INTO shop.category_translations (id, shop_id, category_id, main_name, main_description,
                                                     alt1_name, alt1_description, alt2_name,
                                                     alt2_description)
             SELECT t.id, $9::uuid, t.category_id, t.main_name, t.main_description, t.alt1_name,
                    t.alt1_description, t.alt2_name, t.alt2_description
             FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[],
                         $7::text[], $8::text[])
                  AS t(id, category_id, main_name, main_description, alt1_name, alt1_description,
                       alt2_name, alt2_description)
             ON CONFLICT (shop_id, id) DO NOTHING",
            &col(rows, |r| r.0.id),
            &col(rows, |r| r.0.parent_id),
            &col(rows, |r| r.0.main_name.clone()),
            &col(rows, |r| r.0.main_description.clone()) as &[Option<String>],
            &col(rows, |r| r.0.alt1_name.clone()) as &[Option<String>],
            &col(rows, |r| r.0.alt1_description.clone()) as &[Option<String>],
            &col(rows, |r| r.0.alt2_name.clone()) as &[Option<String>],
            &col(rows, |r| r.0.alt2_description.clone()) as &[Option<String>],
            shop_of(shop)?,
        )
        .execute(conn)
        .await?;
        Ok(r.rows_affected())
    }
}

impl Insert for ProductTranslation {
    async fn insert(conn: &mut PgConnection, shop: Option<Uuid>, rows: &[Self]) -> Result<u64> {
        let r = sqlx::query!(
            "INSERT INTO shop.product_translations (id, shop_id, product_id, main_name, main_description,
                                                    main_description_short, alt1_name,
                                                    alt1_description, alt1_description_short,
                                                    alt2_name, alt2_description,
                                                    alt2_description_short)
             SELECT t.id, $12::uuid, t.product_id, t.main_name, t.main_description, t.main_description_short,
                    t.alt1_name, t.alt1_description, t.alt1_description_short, t.alt2_name,
                    t.alt2_description, t.alt2_description_short
             FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[],
                         $7::text[], $8::text[], $9::text[], $10::text[], $11::text[])
                  AS t(id, product_id, main_name, main_description, main_description_short,
                       alt1_name, alt1_description, alt1_description_short, alt2_name,
                       alt2_description, alt2_description_short)
             ON CONFLICT (shop_id, id) DO NOTHING",
            &col(rows, |r| r.0.id),
            &col(rows, |r| r.0.parent_id),
            &col(rows, |r| r.0.main_name.clone()),
            &col(rows, |r| r.0.main_description.clone()) as &[Option<String>],
            &col(rows, |r| r.0.main_description_short.clone()) as &[Option<String>],
            &col(rows, |r| r.0.alt1_name.clone()) as &[Option<String>],
            &col(rows, |r| r.0.alt1_description.clone()) as &[Option<String>],
            &col(rows, |r| r.0.alt1_description_short.clone()) as &[Option<String>],
            &col(rows, |r| r.0.alt2_name.clone()) as &[Option<String>],
            &col(rows, |r| r.0.alt2_description.clone()) as &[Option<String>],
            &col(rows, |r| r.0.alt2_description_short.clone()) as &[Option<String>],
            shop_of(shop)?,
        )
        .execute(conn)
        .await?;
        Ok(r.rows_affected())
    }
}

impl Insert for TagTranslation {
    async fn insert(conn: &mut PgConnection, shop: Option<Uuid>, rows: &[Self]) -> Result<u64> {
        let r = sqlx::query!(
            "INSERT INTO shop.tag_translations (id, shop_id, tag_id, main_name, alt1_name, alt2_name)
             SELECT t.id, $6::uuid, t.tag_id, t.main_name, t.alt1_name, t.alt2_name
             FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[])
                  AS t(id, tag_id, main_name, alt1_name, alt2_name)
             ON CONFLICT (shop_id, id) DO NOTHING",
            &col(rows, |r| r.0.id),
            &col(rows, |r| r.0.parent_id),
            &col(rows, |r| r.0.main_name.clone()),
            &col(rows, |r| r.0.alt1_name.clone()) as &[Option<String>],
            &col(rows, |r| r.0.alt2_name.clone()) as &[Option<String>],
            shop_of(shop)?,
        )
        .execute(conn)
        .await?;
        Ok(r.rows_affected())
    }
}

impl Insert for AttributeTranslation {
    async fn insert(conn: &mut PgConnection, shop: Option<Uuid>, rows: &[Self]) -> Result<u64> {
        let r = sqlx::query!(
            "INSERT INTO shop.attribute_translations (id, shop_id, attribute_id, main_name, alt1_name,
                                                      alt2_name)
             SELECT t.id, $6::uuid, t.attribute_id, t.main_name, t.alt1_name, t.alt2_name
             FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[])
                  AS t(id, attribute_id, main_name, alt1_name, alt2_name)
             ON CONFLICT (shop_id, id) DO NOTHING",
            &col(rows, |r| r.0.id),
            &col(rows, |r| r.0.parent_id),
            &col(rows, |r| r.0.main_name.clone()),
            &col(rows, |r| r.0.alt1_name.clone()) as &[Option<String>],
            &col(rows, |r| r.0.alt2_name.clone()) as &[Option<String>],
            shop_of(shop)?,
        )
        .execute(conn)
        .await?;
        Ok(r.rows_affected())
    }
}

pub(crate) struct Tag {
    pub id: Uuid,
    pub name: Option<String>,
}

impl Insert for Tag {
    async fn insert(conn: &mut PgConnection, shop: Option<Uuid>, rows: &[Self]) -> Result<u64> {
        let r = sqlx::query!(
            "INSERT INTO shop.tags (id, shop_id, name)
             SELECT t.id, $1, t.name FROM UNNEST($2::uuid[], $3::text[]) AS t(id, name)
             ON CONFLICT (shop_id, id) DO NOTHING",
            shop_of(shop)?,
            &col(rows, |r| r.id),
            &col(rows, |r| r.name.clone()) as &[Option<String>],
        )
        .execute(conn)
        .await?;
        Ok(r.rows_affected())
    }
}

pub(crate) struct Attribute {
    pub id: Uuid,
    pub name: String,
    pub unit: Option<String>,
}

impl Insert for Attribute {
    async fn insert(conn: &mut PgConnection, shop: Option<Uuid>, rows: &[Self]) -> Result<u64> {
        let r = sqlx::query!(
            "INSERT INTO shop.attributes (id, shop_id, name, unit)
             SELECT a.id, $1, a.name, a.unit
             FROM UNNEST($2::uuid[], $3::text[], $4::text[]) AS a(id, name, unit)
             ON CONFLICT (shop_id, id) DO NOTHING",
            shop_of(shop)?,
            &col(rows, |r| r.id),
            &col(rows, |r| r.name.clone()),
            &col(rows, |r| r.unit.clone()) as &[Option<String>],
        )
        .execute(conn)
        .await?;
        Ok(r.rows_affected())
    }
}

pub(crate) struct AttributeOption {
    pub id: Uuid,
    pub attribute_id: Uuid,
    pub value_key: String,
}

impl Insert for AttributeOption {
    async fn insert(conn: &mut PgConnection, shop: Option<Uuid>, rows: &[Self]) -> Result<u64> {
        let r = sqlx::query!(
            "INSERT INTO shop.attribute_options (id, shop_id, attribute_id, value_key)
             SELECT o.id, $4::uuid, o.attribute_id, o.value_key
             FROM UNNEST($1::uuid[], $2::uuid[], $3::text[]) AS o(id, attribute_id, value_key)
             ON CONFLICT (shop_id, id) DO NOTHING",
            &col(rows, |r| r.id),
            &col(rows, |r| r.attribute_id),
            &col(rows, |r| r.value_key.clone()),
            shop_of(shop)?,
        )
        .execute(conn)
        .await?;
        Ok(r.rows_affected())
    }
}

pub(crate) struct Product {
    pub id: Uuid,
    pub category_id: Option<Uuid>,
    pub price: Option<Decimal>,
    pub tax_category: String,
    pub discounted_price: Option<Decimal>,
    pub discounted_from: Option<DateTime<Utc>>,
    pub discounted_to: Option<DateTime<Utc>>,
    pub images: [Option<String>; 6],
    pub created_at: DateTime<Utc>,
    pub modified_at: DateTime<Utc>,
    pub recurring_price_monthly: Option<Decimal>,
    pub recurring_price_yearly: Option<Decimal>,
    pub max_one: bool,
    pub digital: Option<String>,
    pub shippable: bool,
    pub featured: bool,
    pub new_product: bool,
    pub order_number: i32,
    pub stock: i32,
}

impl Insert for Product {
    async fn insert(conn: &mut PgConnection, shop: Option<Uuid>, rows: &[Self]) -> Result<u64> {
        let image = |i: usize| col(rows, move |r| r.images[i].clone());
        let r = sqlx::query!(
            "INSERT INTO shop.products (id, shop_id, category_id, price, tax_category,
                                        discounted_price, discounted_from, discounted_to,
                                        image_1, image_2, image_3, image_4, image_5, image_6,
                                        created_at, modified_at, recurring_price_monthly,
                                        recurring_price_yearly, max_one, digital, shippable,
                                        featured, new_product, order_number, stock)
             SELECT p.id, $1, p.category_id, p.price, p.tax_category, p.discounted_price,
                    p.discounted_from, p.discounted_to, p.image_1, p.image_2, p.image_3,
                    p.image_4, p.image_5, p.image_6, p.created_at, p.modified_at,
                    p.recurring_price_monthly, p.recurring_price_yearly, p.max_one, p.digital,
                    p.shippable, p.featured, p.new_product, p.order_number, p.stock
             FROM UNNEST($2::uuid[], $3::uuid[], $4::numeric[], $5::text[], $6::numeric[],
                         $7::timestamptz[], $8::timestamptz[], $9::text[], $10::text[],
                         $11::text[], $12::text[], $13::text[], $14::text[], $15::timestamptz[],
                         $16::timestamptz[], $17::numeric[], $18::numeric[], $19::bool[],
                         $20::text[], $21::bool[], $22::bool[], $23::bool[], $24::int[],
                         $25::int[])
                  AS p(id, category_id, price, tax_category, discounted_price, discounted_from,
                       discounted_to, image_1, image_2, image_3, image_4, image_5, image_6,
                       created_at, modified_at, recurring_price_monthly, recurring_price_yearly,
                       max_one, digital, shippable, featured, new_product, order_number, stock)
             ON CONFLICT (shop_id, id) DO NOTHING",
            shop_of(shop)?,
            &col(rows, |r| r.id),
            &col(rows, |r| r.category_id) as &[Option<Uuid>],
            &col(rows, |r| r.price) as &[Option<Decimal>],
            &col(rows, |r| r.tax_category.clone()),
            &col(rows, |r| r.discounted_price) as &[Option<Decimal>],
            &col(rows, |r| r.discounted_from) as &[Option<DateTime<Utc>>],
            &col(rows, |r| r.discounted_to) as &[Option<DateTime<Utc>>],
            &image(0) as &[Option<String>],
            &image(1) as &[Option<String>],
            &image(2) as &[Option<String>],
            &image(3) as &[Option<String>],
            &image(4) as &[Option<String>],
            &image(5) as &[Option<String>],
            &col(rows, |r| r.created_at),
            &col(rows, |r| r.modified_at),
            &col(rows, |r| r.recurring_price_monthly) as &[Option<Decimal>],
            &col(rows, |r| r.recurring_price_yearly) as &[Option<Decimal>],
            &col(rows, |r| r.max_one),
            &col(rows, |r| r.digital.clone()) as &[Option<String>],
            &col(rows, |r| r.shippable),
            &col(rows, |r| r.featured),
            &col(rows, |r| r.new_product),
            &col(rows, |r| r.order_number),
            &col(rows, |r| r.stock),
        )
        .execute(conn)
        .await?;
        Ok(r.rows_affected())
    }
}

pub(crate) struct ProductTag {
    pub id: Uuid,
    pub product_id: Uuid,
    pub tag_id: Uuid,
}

impl Insert for ProductTag {
    async fn insert(conn: &mut PgConnection, shop: Option<Uuid>, rows: &[Self]) -> Result<u64> {
        let r = sqlx::query!(
            "INSERT INTO shop.products_to_tags (id, shop_id, product_id, tag_id)
             SELECT l.id, $1, l.product_id, l.tag_id
             FROM UNNEST($2::uuid[], $3::uuid[], $4::uuid[]) AS l(id, product_id, tag_id)
             ON CONFLICT (shop_id, id) DO NOTHING",
            shop_of(shop)?,
            &col(rows, |r| r.id),
            &col(rows, |r| r.product_id),
            &col(rows, |r| r.tag_id),
        )
        .execute(conn)
        .await?;
        Ok(r.rows_affected())
    }
}

pub(crate) struct AttributeValue {
    pub id: Uuid,
    pub product_id: Uuid,
    pub attribute_id: Uuid,
    pub option_id: Option<Uuid>,
}

impl Insert for AttributeValue {
    async fn insert(conn: &mut PgConnection, shop: Option<Uuid>, rows: &[Self]) -> Result<u64> {
        let r = sqlx::query!(
            "INSERT INTO shop.product_attribute_values (id, shop_id, product_id, attribute_id,
                                                        option_id)
             SELECT v.id, $5, v.product_id, v.attribute_id, v.option_id
             FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[])
                  AS v(id, product_id, attribute_id, option_id)
             ON CONFLICT (shop_id, id) DO NOTHING",
            &col(rows, |r| r.id),
            &col(rows, |r| r.product_id),
            &col(rows, |r| r.attribute_id),
            &col(rows, |r| r.option_id) as &[Option<Uuid>],
            shop_of(shop)?,
        )
        .execute(conn)
        .await?;
        Ok(r.rows_affected())
    }
}

pub(crate) struct Account {
    pub id: Uuid,
    pub name: Option<String>,
    pub hash_name: Option<String>,
    pub details: Option<Value>,
}

impl Insert for Account {
    async fn insert(conn: &mut PgConnection, shop: Option<Uuid>, rows: &[Self]) -> Result<u64> {
        let r = sqlx::query!(
            "INSERT INTO shop.accounts (id, shop_id, name, hash_name, details)
             SELECT a.id, $1, a.name, a.hash_name, a.details
             FROM UNNEST($2::uuid[], $3::text[], $4::text[], $5::jsonb[])
                  AS a(id, name, hash_name, details)
             ON CONFLICT (shop_id, id) DO NOTHING",
            shop_of(shop)?,
            &col(rows, |r| r.id),
            &col(rows, |r| r.name.clone()) as &[Option<String>],
            &col(rows, |r| r.hash_name.clone()) as &[Option<String>],
            &col(rows, |r| r.details.clone()) as &[Option<Value>],
        )
        .execute(conn)
        .await?;
        Ok(r.rows_affected())
    }
}

pub(crate) struct Order {
    pub id: Uuid,
    pub customer_order_id: i32,
    pub notes: Option<String>,
    pub account_id: Option<Uuid>,
    /// The items as the library's `OrderItems` serialise.
    pub order_info: Value,
    pub created_at: DateTime<Utc>,
    pub total: Option<Decimal>,
    /// One of the `shop.order_status` labels (checked).
    pub status: String,
    pub completed_by: Option<Uuid>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl Insert for Order {
    async fn insert(conn: &mut PgConnection, shop: Option<Uuid>, rows: &[Self]) -> Result<u64> {
        let shop = shop_of(shop)?;
        let r = sqlx::query!(
            "INSERT INTO shop.orders (id, shop_id, customer_order_id, notes, account_id,
                                      order_info, created_at, total, status, completed_by,
                                      completed_at)
             SELECT o.id, $1, o.customer_order_id, o.notes, o.account_id, o.order_info,
                    o.created_at, o.total, o.status::shop.order_status, o.completed_by,
                    o.completed_at
             FROM UNNEST($2::uuid[], $3::int[], $4::text[], $5::uuid[], $6::jsonb[],
                         $7::timestamptz[], $8::numeric[], $9::text[], $10::uuid[],
                         $11::timestamptz[])
                  AS o(id, customer_order_id, notes, account_id, order_info, created_at, total,
                       status, completed_by, completed_at)
             ON CONFLICT (shop_id, id) DO NOTHING",
            shop,
            &col(rows, |r| r.id),
            &col(rows, |r| r.customer_order_id),
            &col(rows, |r| r.notes.clone()) as &[Option<String>],
            &col(rows, |r| r.account_id) as &[Option<Uuid>],
            &col(rows, |r| r.order_info.clone()),
            &col(rows, |r| r.created_at),
            &col(rows, |r| r.total) as &[Option<Decimal>],
            &col(rows, |r| r.status.clone()),
            &col(rows, |r| r.completed_by) as &[Option<Uuid>],
            &col(rows, |r| r.completed_at) as &[Option<DateTime<Utc>>],
        )
        .execute(&mut *conn)
        .await?;
        // the shop's next order continues after the highest imported number
        sqlx::query!(
            "INSERT INTO shop.order_counters (shop_id, last_customer_order_id)
             SELECT $1, max(customer_order_id) FROM shop.orders WHERE shop_id = $1
             HAVING max(customer_order_id) IS NOT NULL
             ON CONFLICT (shop_id) DO UPDATE
             SET last_customer_order_id = GREATEST(shop.order_counters.last_customer_order_id,
                                                   EXCLUDED.last_customer_order_id)",
            shop,
        )
        .execute(conn)
        .await?;
        Ok(r.rows_affected())
    }
}

pub(crate) struct License {
    pub id: Uuid,
    pub name: String,
    pub is_recurring: bool,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub improviser_user: Uuid,
    pub seats: i32,
    pub order_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub modified_at: DateTime<Utc>,
}

impl Insert for License {
    /// `shop` is the shop of the licence's order; `None` for a licence without an order.
    async fn insert(conn: &mut PgConnection, shop: Option<Uuid>, rows: &[Self]) -> Result<u64> {
        let r = sqlx::query!(
            "INSERT INTO shop.licenses (id, shop_id, name, is_recurring, start_date, end_date,
                                        improviser_user, seats, order_id, created_at, modified_at)
             SELECT l.id, $11::uuid, l.name, l.is_recurring, l.start_date, l.end_date, l.improviser_user,
                    l.seats, l.order_id, l.created_at, l.modified_at
             FROM UNNEST($1::uuid[], $2::text[], $3::bool[], $4::timestamptz[],
                         $5::timestamptz[], $6::uuid[], $7::int[], $8::uuid[],
                         $9::timestamptz[], $10::timestamptz[])
                  AS l(id, name, is_recurring, start_date, end_date, improviser_user, seats,
                       order_id, created_at, modified_at)
             -- no key on id alone (a global licence has no shop_id, and keys include it):
             -- an earlier run's row is recognised by this lookup
             WHERE NOT EXISTS (SELECT 1 FROM shop.licenses x WHERE x.id = l.id)
             ON CONFLICT DO NOTHING",
            &col(rows, |r| r.id),
            &col(rows, |r| r.name.clone()),
            &col(rows, |r| r.is_recurring),
            &col(rows, |r| r.start_date) as &[Option<DateTime<Utc>>],
            &col(rows, |r| r.end_date) as &[Option<DateTime<Utc>>],
            &col(rows, |r| r.improviser_user),
            &col(rows, |r| r.seats),
            &col(rows, |r| r.order_id) as &[Option<Uuid>],
            &col(rows, |r| r.created_at),
            &col(rows, |r| r.modified_at),
            shop,
        )
        .execute(conn)
        .await?;
        Ok(r.rows_affected())
    }
}

pub(crate) struct InfoRequest {
    pub id: Uuid,
    pub email: Option<String>,
    pub product_id: Option<Uuid>,
}

impl Insert for InfoRequest {
    async fn insert(conn: &mut PgConnection, shop: Option<Uuid>, rows: &[Self]) -> Result<u64> {
        let r = sqlx::query!(
            "INSERT INTO shop.info_requests (id, shop_id, email, product_id)
             SELECT i.id, $1, i.email, i.product_id
             FROM UNNEST($2::uuid[], $3::text[], $4::uuid[]) AS i(id, email, product_id)
             ON CONFLICT (shop_id, id) DO NOTHING",
            shop_of(shop)?,
            &col(rows, |r| r.id),
            &col(rows, |r| r.email.clone()) as &[Option<String>],
            &col(rows, |r| r.product_id) as &[Option<Uuid>],
        )
        .execute(conn)
        .await?;
        Ok(r.rows_affected())
    }
}
