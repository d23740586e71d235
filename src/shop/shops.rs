//! `shop.shops`: the tenants. Every shop-owned row points at one.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::list::{self, ListParams, Page, Spec, eq_col, sort_col, text_col};
use crate::{Error, Result};

/// A row of `shop.shops`.
#[derive(Clone, Serialize, sqlx::FromRow)]
pub struct Shop {
    /// Primary key.
    pub id: Uuid,
    /// Unique shop name.
    pub name: String,
    /// Unique description.
    pub description: Option<String>,
    /// JSON array of IP strings allowed to place orders.
    pub allowed_ips: Option<Value>,
    /// VAT rates (percent) named by `products.tax_category`.
    pub vat_standard: f64,
    /// Lower VAT rate 1.
    pub vat_lower_1: f64,
    /// Lower VAT rate 2.
    pub vat_lower_2: f64,
    /// Lower VAT rate 3.
    pub vat_lower_3: f64,
    /// Special VAT rate.
    pub vat_special: f64,
    /// Zero VAT rate.
    pub vat_zero: f64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last modification (maintained by a trigger).
    pub modified_at: DateTime<Utc>,
    /// `ConfigurationV1` JSON object (languages, toggles, …).
    pub config: Value,
    /// Stripe secret key. Never serialized, redacted in Debug.
    #[serde(skip_serializing)]
    pub stripe_secret_key: Option<String>,
    /// Stripe publishable key.
    pub stripe_public_key: Option<String>,
    /// Version of the `config` shape.
    pub config_version: i32,
    /// Plan limits JSON object.
    pub shop_type: Value,
    /// Internal URL.
    pub internal_url: Option<String>,
    /// External URL.
    pub external_url: Option<String>,
    /// Discord webhook URL.
    pub discord_webhook: Option<String>,
}

impl std::fmt::Debug for Shop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shop")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("description", &self.description)
            .field("config_version", &self.config_version)
            .field(
                "stripe_secret_key",
                &self.stripe_secret_key.as_ref().map(|_| "<redacted>"),
            )
            .field("stripe_public_key", &self.stripe_public_key)
            .field("created_at", &self.created_at)
            .field("modified_at", &self.modified_at)
            .finish_non_exhaustive()
    }
}

/// Fields of a shop written by create and update.
#[derive(Clone, Deserialize)]
pub struct NewShop {
    /// Unique shop name.
    pub name: String,
    /// Unique description.
    pub description: Option<String>,
    /// JSON array of allowed IPs.
    pub allowed_ips: Option<Value>,
    /// `[standard, lower_1, lower_2, lower_3, special, zero]` VAT rates.
    #[serde(default = "default_vat")]
    pub vat: [f64; 6],
    /// Configuration object (must be a JSON object).
    #[serde(default = "empty_object")]
    pub config: Value,
    /// Stripe secret key.
    pub stripe_secret_key: Option<String>,
    /// Stripe publishable key.
    pub stripe_public_key: Option<String>,
    /// Plan limits object.
    #[serde(default = "empty_object")]
    pub shop_type: Value,
    /// Internal URL.
    pub internal_url: Option<String>,
    /// External URL.
    pub external_url: Option<String>,
    /// Discord webhook URL.
    pub discord_webhook: Option<String>,
}

impl std::fmt::Debug for NewShop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewShop")
            .field("name", &self.name)
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

fn default_vat() -> [f64; 6] {
    [21.0, 10.0, 5.0, 2.0, 12.0, 0.0]
}
fn empty_object() -> Value {
    Value::Object(Default::default())
}

impl NewShop {
    /// A shop with just a name and defaults elsewhere.
    pub fn named(name: impl Into<String>) -> Self {
        NewShop {
            name: name.into(),
            description: None,
            allowed_ips: None,
            vat: default_vat(),
            config: empty_object(),
            stripe_secret_key: None,
            stripe_public_key: None,
            shop_type: empty_object(),
            internal_url: Some(String::new()),
            external_url: Some(String::new()),
            discord_webhook: None,
        }
    }

    fn validate(&self) -> Result<()> {
        if self.name.trim().is_empty() {
            return Err(Error::invalid_input("shop name is required"));
        }
        if !self.config.is_object() || !self.shop_type.is_object() {
            return Err(Error::invalid_input(
                "config and shop_type must be JSON objects",
            ));
        }
        if self.allowed_ips.as_ref().is_some_and(|v| !v.is_array()) {
            return Err(Error::invalid_input("allowed_ips must be a JSON array"));
        }
        Ok(())
    }
}

/// List definition: filter `name`, `description`, `internal_url`, `external_url` (substring),
/// `config_version` (int); sort those plus `created_at`, `modified_at`; bare search over `name`,
/// `description`.
pub static LIST: Spec = Spec {
    unit: "shops",
    select: "s.*",
    from: "shop.shops s",
    shop_column: None,
    id: "s.id",
    columns: &[
        text_col!("name", "s.name"),
        text_col!("description", "s.description"),
        text_col!("internal_url", "s.internal_url"),
        text_col!("external_url", "s.external_url"),
        eq_col!("config_version", "s.config_version", Int),
        sort_col!("created_at", "s.created_at"),
        sort_col!("modified_at", "s.modified_at"),
    ],
    search: &["s.name", "s.description"],
};

/// Creates a shop.
#[tracing::instrument(skip_all)]
pub async fn create(exec: impl PgExecutor<'_>, new: &NewShop) -> Result<Shop> {
    new.validate()?;
    let [v0, v1, v2, v3, v4, v5] = new.vat;
    let shop = sqlx::query_as!(
        Shop,
        r#"INSERT INTO shop.shops (name, description, allowed_ips, vat_standard, vat_lower_1,
               vat_lower_2, vat_lower_3, vat_special, vat_zero, config, stripe_secret_key,
               stripe_public_key, shop_type, internal_url, external_url, discord_webhook)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
           RETURNING *"#,
        new.name,
        new.description,
        new.allowed_ips,
        v0,
        v1,
        v2,
        v3,
        v4,
        v5,
        new.config,
        new.stripe_secret_key,
        new.stripe_public_key,
        new.shop_type,
        new.internal_url,
        new.external_url,
        new.discord_webhook,
    )
    .fetch_one(exec)
    .await?;
    Ok(shop)
}

/// Fetches a shop.
#[tracing::instrument(skip_all, fields(%id))]
pub async fn get(exec: impl PgExecutor<'_>, id: Uuid) -> Result<Shop> {
    sqlx::query_as!(Shop, "SELECT * FROM shop.shops WHERE id = $1", id)
        .fetch_optional(exec)
        .await?
        .ok_or(Error::NotFound)
}

/// Fetches a shop by its unique name.
#[tracing::instrument(skip_all)]
pub async fn get_by_name(exec: impl PgExecutor<'_>, name: &str) -> Result<Shop> {
    sqlx::query_as!(Shop, "SELECT * FROM shop.shops WHERE name = $1", name)
        .fetch_optional(exec)
        .await?
        .ok_or(Error::NotFound)
}

/// Replaces a shop's fields; `modified_at` is set by the database.
#[tracing::instrument(skip_all, fields(%id))]
pub async fn update(exec: impl PgExecutor<'_>, id: Uuid, new: &NewShop) -> Result<Shop> {
    new.validate()?;
    let [v0, v1, v2, v3, v4, v5] = new.vat;
    sqlx::query_as!(
        Shop,
        r#"UPDATE shop.shops SET name = $2, description = $3, allowed_ips = $4, vat_standard = $5,
               vat_lower_1 = $6, vat_lower_2 = $7, vat_lower_3 = $8, vat_special = $9,
               vat_zero = $10, config = $11, stripe_secret_key = $12, stripe_public_key = $13,
               shop_type = $14, internal_url = $15, external_url = $16, discord_webhook = $17
           WHERE id = $1
           RETURNING *"#,
        id,
        new.name,
        new.description,
        new.allowed_ips,
        v0,
        v1,
        v2,
        v3,
        v4,
        v5,
        new.config,
        new.stripe_secret_key,
        new.stripe_public_key,
        new.shop_type,
        new.internal_url,
        new.external_url,
        new.discord_webhook,
    )
    .fetch_optional(exec)
    .await?
    .ok_or(Error::NotFound)
}

/// Deletes a shop. A shop that still owns rows (products, categories, orders, …) is
/// [`Error::Conflict`] naming the constraint of the table that holds it; its memberships and order
/// counter go with it.
#[tracing::instrument(skip_all, fields(%id))]
pub async fn delete(exec: impl PgExecutor<'_>, id: Uuid) -> Result<()> {
    let done = sqlx::query!("DELETE FROM shop.shops WHERE id = $1", id)
        .execute(exec)
        .await
        .map_err(super::still_referenced)?;
    super::one_row(done.rows_affected())
}

/// Lists shops (see [`LIST`] for the whitelist).
#[tracing::instrument(skip_all)]
pub async fn list(conn: &mut PgConnection, params: &ListParams) -> Result<Page<Shop>> {
    list::fetch(conn, &LIST, None, params).await
}
