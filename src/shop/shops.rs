//! `shop.shops`: the tenants. Every shop-owned row points at one.
//!
//! Two columns are secrets: `stripe_secret_key` (a payment credential) and `discord_webhook` (a
//! URL that lets anyone who has it post to the shop's channel). Neither is ever serialized or
//! shown by `Debug`. Because a read never hands them out, an [`update`] that leaves them `None`
//! keeps the stored values (the natural round trip of a read); removing one takes an explicit
//! [`clear_secret`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{PgConnection, PgExecutor};

use super::list::{self, ListPage, ListParams, Spec, eq_col, sort_col, text_col};
use super::{ShopId, input, stale_or_missing};
use crate::{Error, Result, tx};

/// A row of `shop.shops`.
#[derive(Clone, Serialize, sqlx::FromRow)]
pub struct Shop {
    /// Primary key.
    pub id: ShopId,
    /// Unique shop name.
    pub name: String,
    /// Unique one-line description; `None`: none given.
    pub description: Option<String>,
    /// JSON array of the IP addresses (strings) allowed to place orders; `None`: any address.
    pub allowed_ips: Option<Value>,
    /// VAT rate in percent for `products.tax_category = 'vat_standard'`.
    pub vat_standard: f64,
    /// VAT rate in percent for `vat_lower_1`.
    pub vat_lower_1: f64,
    /// VAT rate in percent for `vat_lower_2`.
    pub vat_lower_2: f64,
    /// VAT rate in percent for `vat_lower_3`.
    pub vat_lower_3: f64,
    /// VAT rate in percent for `vat_special`.
    pub vat_special: f64,
    /// VAT rate in percent for `vat_zero` (normally 0).
    pub vat_zero: f64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change of any kind (set by a trigger).
    pub modified_at: DateTime<Utc>,
    /// `ConfigurationV1` JSON object (languages, toggles, …).
    pub config: Value,
    /// Secret: never serialized, redacted in `Debug`.
    #[serde(skip_serializing)]
    pub stripe_secret_key: Option<String>,
    /// Stripe publishable key (public by design).
    pub stripe_public_key: Option<String>,
    /// Version of the `config` shape (1 today).
    pub config_version: i32,
    /// Plan limits JSON object.
    pub shop_type: Value,
    /// Base URL of the shop's backend as the services reach it; empty when unset.
    pub internal_url: Option<String>,
    /// Base URL of the storefront as customers reach it; empty when unset.
    pub external_url: Option<String>,
    /// Secret (the URL is the credential): never serialized, redacted in `Debug`.
    #[serde(skip_serializing)]
    pub discord_webhook: Option<String>,
    /// Bumped by every [`update`]; pass it back to the next one.
    pub version: i32,
}

fn redacted(secret: &Option<String>) -> Option<&'static str> {
    secret.as_ref().map(|_| "<redacted>")
}

impl std::fmt::Debug for Shop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shop")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("description", &self.description)
            .field("config_version", &self.config_version)
            .field("stripe_secret_key", &redacted(&self.stripe_secret_key))
            .field("stripe_public_key", &self.stripe_public_key)
            .field("discord_webhook", &redacted(&self.discord_webhook))
            .field("created_at", &self.created_at)
            .field("modified_at", &self.modified_at)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Everything a shop's create and update write. For the two secrets, `None` on [`update`] keeps
/// the stored value (see the module docs).
#[derive(Clone, Deserialize)]
pub struct ShopFields {
    /// Unique shop name, at most 255 characters, not blank.
    pub name: String,
    /// Unique description, at most 255 characters.
    pub description: Option<String>,
    /// JSON array of allowed IPs.
    pub allowed_ips: Option<Value>,
    /// `[standard, lower_1, lower_2, lower_3, special, zero]` VAT rates in percent, 0..=100.
    #[serde(default = "default_vat")]
    pub vat: [f64; 6],
    /// Configuration object (must be a JSON object).
    #[serde(default = "empty_object")]
    pub config: Value,
    /// Stripe secret key, at most 255 characters; `None` on update keeps the stored one.
    pub stripe_secret_key: Option<String>,
    /// Stripe publishable key, at most 255 characters.
    pub stripe_public_key: Option<String>,
    /// Plan limits object.
    #[serde(default = "empty_object")]
    pub shop_type: Value,
    /// Backend URL, at most 255 characters.
    pub internal_url: Option<String>,
    /// Storefront URL, at most 255 characters.
    pub external_url: Option<String>,
    /// Discord webhook URL, at most 255 characters; `None` on update keeps the stored one.
    pub discord_webhook: Option<String>,
}

impl std::fmt::Debug for ShopFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShopFields")
            .field("name", &self.name)
            .field("description", &self.description)
            .field("stripe_secret_key", &redacted(&self.stripe_secret_key))
            .field("discord_webhook", &redacted(&self.discord_webhook))
            .finish_non_exhaustive()
    }
}

fn default_vat() -> [f64; 6] {
    [21.0, 10.0, 5.0, 2.0, 12.0, 0.0]
}
fn empty_object() -> Value {
    Value::Object(Default::default())
}

impl ShopFields {
    /// A shop with just a name and defaults elsewhere.
    pub fn named(name: impl Into<String>) -> Self {
        ShopFields {
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

    fn check(&self) -> Result<()> {
        input::name("name", &self.name, 255)?;
        input::opt_text("description", self.description.as_deref(), 255)?;
        input::opt_text("stripe_secret_key", self.stripe_secret_key.as_deref(), 255)?;
        input::opt_text("stripe_public_key", self.stripe_public_key.as_deref(), 255)?;
        input::opt_text("internal_url", self.internal_url.as_deref(), 255)?;
        input::opt_text("external_url", self.external_url.as_deref(), 255)?;
        input::opt_text("discord_webhook", self.discord_webhook.as_deref(), 255)?;
        input::json("config", &self.config)?;
        input::json("shop_type", &self.shop_type)?;
        input::opt_json("allowed_ips", self.allowed_ips.as_ref())?;
        if !self.config.is_object() || !self.shop_type.is_object() {
            return Err(Error::invalid_input(
                "config and shop_type must be JSON objects",
            ));
        }
        if self.allowed_ips.as_ref().is_some_and(|v| !v.is_array()) {
            return Err(Error::invalid_input("allowed_ips must be a JSON array"));
        }
        if self.vat.iter().any(|v| !(0.0..=100.0).contains(v)) {
            return Err(Error::invalid_input("vat rates must be between 0 and 100"));
        }
        Ok(())
    }
}

/// A secret column of a shop, for [`clear_secret`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secret {
    /// `stripe_secret_key`.
    StripeSecretKey,
    /// `discord_webhook`.
    DiscordWebhook,
}

/// List definition: filter `name`, `description`, `internal_url`, `external_url` (substring),
/// `config_version` (int); sort those plus `created_at`, `modified_at`; bare search over `name`,
/// `description`.
pub static LIST: Spec = Spec {
    unit: "shops",
    select: "s.id, s.name, s.description, s.allowed_ips, s.vat_standard, s.vat_lower_1, \
             s.vat_lower_2, s.vat_lower_3, s.vat_special, s.vat_zero, s.created_at, \
             s.modified_at, s.config, s.stripe_secret_key, s.stripe_public_key, s.config_version, \
             s.shop_type, s.internal_url, s.external_url, s.discord_webhook, s.version",
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

/// Creates a shop; a taken name is [`Error::Conflict`] `uq_shops_name`.
#[tracing::instrument(skip_all)]
pub async fn create(exec: impl PgExecutor<'_>, fields: &ShopFields) -> Result<Shop> {
    fields.check()?;
    let [v0, v1, v2, v3, v4, v5] = fields.vat;
    Ok(sqlx::query_as!(
        Shop,
        r#"INSERT INTO shop.shops (name, description, allowed_ips, vat_standard, vat_lower_1,
               vat_lower_2, vat_lower_3, vat_special, vat_zero, config, stripe_secret_key,
               stripe_public_key, shop_type, internal_url, external_url, discord_webhook)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
           RETURNING id, name, description, allowed_ips, vat_standard, vat_lower_1, vat_lower_2,
                     vat_lower_3, vat_special, vat_zero, created_at, modified_at, config,
                     stripe_secret_key, stripe_public_key, config_version, shop_type,
                     internal_url, external_url, discord_webhook, version"#,
        fields.name,
        fields.description,
        fields.allowed_ips,
        v0,
        v1,
        v2,
        v3,
        v4,
        v5,
        fields.config,
        fields.stripe_secret_key,
        fields.stripe_public_key,
        fields.shop_type,
        fields.internal_url,
        fields.external_url,
        fields.discord_webhook,
    )
    .fetch_one(exec)
    .await?)
}

/// Fetches a shop.
#[tracing::instrument(skip_all, fields(%id))]
pub async fn get(exec: impl PgExecutor<'_>, id: ShopId) -> Result<Shop> {
    sqlx::query_as!(
        Shop,
        r#"SELECT id, name, description, allowed_ips, vat_standard, vat_lower_1, vat_lower_2,
                  vat_lower_3, vat_special, vat_zero, created_at, modified_at, config,
                  stripe_secret_key, stripe_public_key, config_version, shop_type, internal_url,
                  external_url, discord_webhook, version
           FROM shop.shops WHERE id = $1"#,
        id.get()
    )
    .fetch_optional(exec)
    .await?
    .ok_or(Error::NotFound)
}

/// Fetches a shop by its unique name.
#[tracing::instrument(skip_all)]
pub async fn get_by_name(exec: impl PgExecutor<'_>, name: &str) -> Result<Shop> {
    input::text("name", name, 255)?;
    sqlx::query_as!(
        Shop,
        r#"SELECT id, name, description, allowed_ips, vat_standard, vat_lower_1, vat_lower_2,
                  vat_lower_3, vat_special, vat_zero, created_at, modified_at, config,
                  stripe_secret_key, stripe_public_key, config_version, shop_type, internal_url,
                  external_url, discord_webhook, version
           FROM shop.shops WHERE name = $1"#,
        name
    )
    .fetch_optional(exec)
    .await?
    .ok_or(Error::NotFound)
}

/// Replaces a shop's fields; a secret left `None` keeps its stored value. `modified_at` is set
/// by the database.
///
/// `version` is the [`Shop::version`] the caller read: if the shop was saved since, the update is
/// [`Error::Conflict`] on [`super::STALE_VERSION`] and changes nothing.
#[tracing::instrument(skip_all, fields(%id, version))]
pub async fn update(
    conn: &mut PgConnection,
    id: ShopId,
    version: i32,
    fields: &ShopFields,
) -> Result<Shop> {
    fields.check()?;
    let [v0, v1, v2, v3, v4, v5] = fields.vat;
    tx::transaction(conn, async |tx| {
        let shop = sqlx::query_as!(
            Shop,
            r#"UPDATE shop.shops SET name = $3, description = $4, allowed_ips = $5,
                   vat_standard = $6, vat_lower_1 = $7, vat_lower_2 = $8, vat_lower_3 = $9,
                   vat_special = $10, vat_zero = $11, config = $12,
                   stripe_secret_key = coalesce($13, stripe_secret_key),
                   stripe_public_key = $14, shop_type = $15, internal_url = $16,
                   external_url = $17, discord_webhook = coalesce($18, discord_webhook),
                   version = version + 1
               WHERE id = $1 AND version = $2
               RETURNING id, name, description, allowed_ips, vat_standard, vat_lower_1,
                         vat_lower_2, vat_lower_3, vat_special, vat_zero, created_at, modified_at,
                         config, stripe_secret_key, stripe_public_key, config_version, shop_type,
                         internal_url, external_url, discord_webhook, version"#,
            id.get(),
            version,
            fields.name,
            fields.description,
            fields.allowed_ips,
            v0,
            v1,
            v2,
            v3,
            v4,
            v5,
            fields.config,
            fields.stripe_secret_key,
            fields.stripe_public_key,
            fields.shop_type,
            fields.internal_url,
            fields.external_url,
            fields.discord_webhook,
        )
        .fetch_optional(&mut *tx)
        .await?;
        match shop {
            Some(shop) => Ok(shop),
            None => {
                let exists = sqlx::query_scalar!(
                    r#"SELECT EXISTS (SELECT 1 FROM shop.shops WHERE id = $1) AS "e!""#,
                    id.get()
                )
                .fetch_one(&mut *tx)
                .await?;
                Err(stale_or_missing(exists))
            }
        }
    })
    .await
}

/// Removes a stored secret (sets the column to NULL). Does not bump the version: it is not an
/// edit of the fields a form shows.
#[tracing::instrument(skip_all, fields(%id, ?secret))]
pub async fn clear_secret(exec: impl PgExecutor<'_>, id: ShopId, secret: Secret) -> Result<()> {
    let done = match secret {
        Secret::StripeSecretKey => {
            sqlx::query!(
                "UPDATE shop.shops SET stripe_secret_key = NULL WHERE id = $1",
                id.get()
            )
            .execute(exec)
            .await?
        }
        Secret::DiscordWebhook => {
            sqlx::query!(
                "UPDATE shop.shops SET discord_webhook = NULL WHERE id = $1",
                id.get()
            )
            .execute(exec)
            .await?
        }
    };
    super::one_row(done.rows_affected())
}

/// Deletes a shop. A shop that still owns rows (products, categories, orders, …) is
/// [`Error::Conflict`] naming the constraint of the table that holds it; its memberships and order
/// counter go with it.
#[tracing::instrument(skip_all, fields(%id))]
pub async fn delete(exec: impl PgExecutor<'_>, id: ShopId) -> Result<()> {
    let done = sqlx::query!("DELETE FROM shop.shops WHERE id = $1", id.get())
        .execute(exec)
        .await
        .map_err(super::still_referenced)?;
    super::one_row(done.rows_affected())
}

/// Lists shops (see [`LIST`] for the whitelist).
#[tracing::instrument(skip_all)]
pub async fn list(conn: &mut PgConnection, params: &ListParams) -> Result<ListPage<Shop>> {
    list::fetch::<Shop, _>(conn, &LIST, None, params).await
}
