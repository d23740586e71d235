//! The rules: what the hardened schema would refuse, checked row by row as the rows stream by.
//!
//! A row either converts into the value [`write`](super::write) inserts, or it gives one
//! problem per broken rule and converts into nothing. Nothing is filled in, rounded or
//! truncated: a NULL where the schema wants a value is [`Rule::Required`], not a default.

use std::collections::HashSet;
use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::report::Rule;
use super::source::{self, Translation};
use super::write::{self, Insert};
use crate::shop::ProductId;
use crate::shop::input::has_nul;
use crate::shop::orders::OrderItem;

pub use crate::shop::input::LONG_TEXT;
pub use crate::shop::money::{MAX as MONEY_MAX, SCALE as MONEY_SCALE};

/// What a check knows besides the row: the shop being imported, the global rows refused
/// (users, roles) and the rows of this unit refused so far (parents are checked first).
pub(crate) struct Ctx<'a> {
    pub shop: Option<Uuid>,
    pub rejected_users: &'a HashSet<Uuid>,
    pub refused: &'a HashSet<Uuid>,
}

/// A table of the old database: how to stream it, and how a row becomes a row of `shop.*`.
pub(crate) trait OldTable:
    for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin + 'static
{
    /// Name in the old database (`public.<TABLE>`), as reported.
    const TABLE: &'static str;
    /// The streaming query (see [`source`]).
    const SQL: &'static str;
    /// Whether [`Self::SQL`] takes the shop id as `$1` (false for the global tables).
    const SCOPED: bool = true;
    /// The row as written.
    type Out: Insert;
    /// The row's id.
    fn id(&self) -> Uuid;
    /// The row as written, or `None` with at least one problem pushed.
    fn check(self, ctx: &Ctx<'_>, p: &mut Problems) -> Option<Self::Out>;
}

/// The problems found in one row.
#[derive(Debug, Default)]
pub(crate) struct Problems(pub Vec<(Rule, String)>);

impl Problems {
    fn push(&mut self, rule: Rule, value: impl Into<String>) {
        self.0.push((rule, value.into()));
    }

    fn ok(&self) -> bool {
        self.0.is_empty()
    }

    fn text(&mut self, column: &str, value: Option<&str>, max_chars: usize) {
        let Some(v) = value else { return };
        if v.contains('\0') {
            self.push(Rule::NulByte, column);
        }
        let n = v.chars().count();
        if n > max_chars {
            self.push(
                Rule::TooLong,
                format!("{column}: {n} characters (at most {max_chars})"),
            );
        }
    }

    fn name(&mut self, column: &str, value: Option<&str>, max_chars: usize) {
        if let Some(v) = value
            && v.trim().is_empty()
        {
            self.push(Rule::BlankName, format!("{column}={v:?}"));
        }
        self.text(column, value, max_chars);
    }

    fn required<T>(&mut self, column: &str, value: Option<T>) -> Option<T> {
        if value.is_none() {
            self.push(Rule::Required, column);
        }
        value
    }

    fn money(&mut self, column: &str, value: Option<f64>) -> Option<Decimal> {
        let v = value?;
        match money(v) {
            Ok(d) => Some(d),
            Err(rule) => {
                self.push(rule, format!("{column}={v}"));
                None
            }
        }
    }

    fn same_shop(
        &mut self,
        ctx: &Ctx<'_>,
        column: &str,
        id: Uuid,
        exists: bool,
        shop: Option<Uuid>,
    ) {
        if !exists {
            self.push(Rule::DanglingReference, format!("{column}={id}"));
        } else if shop != ctx.shop {
            self.push(Rule::CrossShop, format!("{column}={id}"));
        }
    }

    /// A row whose `column` names a row refused earlier in this unit is refused with it.
    fn depends(&mut self, ctx: &Ctx<'_>, column: &str, id: Option<Uuid>) {
        if let Some(id) = id
            && ctx.refused.contains(&id)
        {
            self.push(Rule::RefusedParent, format!("{column}={id}"));
        }
    }

    fn user(&mut self, ctx: &Ctx<'_>, column: &str, id: Uuid, exists: bool) {
        if !exists {
            self.push(Rule::DanglingReference, format!("{column}={id}"));
        } else if ctx.rejected_users.contains(&id) {
            self.push(Rule::RejectedUser, format!("{column}={id}"));
        }
    }
}

/// The exact decimal value of a `double precision` amount, as the old backend showed it (the
/// shortest decimal that reads back as the same double: `19.99`, `0.30000000000000004`), if it
/// fits the money columns unchanged.
pub fn money(value: f64) -> Result<Decimal, Rule> {
    if !value.is_finite() {
        return Err(Rule::MoneyOutOfRange);
    }
    let d = Decimal::from_str(&value.to_string()).map_err(|_| Rule::MoneyOutOfRange)?;
    if d.is_sign_negative() && !d.is_zero() {
        return Err(Rule::NegativeMoney);
    }
    if d.normalize().scale() > MONEY_SCALE {
        return Err(Rule::InexactMoney);
    }
    if d > MONEY_MAX {
        return Err(Rule::MoneyOutOfRange);
    }
    let mut stored = d.abs();
    stored.rescale(MONEY_SCALE);
    Ok(stored)
}

/// Whether `s` has the shape of a bcrypt hash (`$2a$`/`$2b$`/`$2x$`/`$2y$`, two cost digits,
/// 53 characters of bcrypt's base64), as passlib wrote them.
pub fn is_bcrypt(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 60
        && b.starts_with(b"$2")
        && b"abxy".contains(&b[2])
        && b[3] == b'$'
        && b[4].is_ascii_digit()
        && b[5].is_ascii_digit()
        && b[6] == b'$'
        && b[7..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'.' || *c == b'/')
}

/// The old backend's naive timestamps were written in its session time zone, UTC.
fn utc(t: NaiveDateTime) -> DateTime<Utc> {
    t.and_utc()
}

const TAX_CATEGORIES: [&str; 6] = [
    "vat_standard",
    "vat_lower_1",
    "vat_lower_2",
    "vat_lower_3",
    "vat_special",
    "vat_zero",
];

const ORDER_STATUSES: [&str; 3] = ["pending", "complete", "cancelled"];

impl OldTable for source::User {
    const TABLE: &'static str = "users";
    const SQL: &'static str = source::USERS;
    const SCOPED: bool = false;
    type Out = write::User;
    fn id(&self) -> Uuid {
        self.id
    }
    fn check(self, _: &Ctx<'_>, p: &mut Problems) -> Option<Self::Out> {
        for (column, v) in [
            ("email", &self.email),
            ("first_name", &self.first_name),
            ("last_name", &self.last_name),
            ("username", &self.username),
        ] {
            p.text(column, v.as_deref(), 255);
        }
        if let Some(pw) = &self.password
            && !is_bcrypt(pw)
        {
            p.push(
                Rule::NotBcrypt,
                format!(
                    "password: {} characters, not a bcrypt hash",
                    pw.chars().count()
                ),
            );
        }
        let active = p.required("active", self.active);
        let created_at = p.required("created_at", self.created_at);
        let mail_offers = p.required("mail_offers", self.mail_offers);
        let (Some(active), Some(created_at), Some(mail_offers)) = (active, created_at, mail_offers)
        else {
            return None;
        };
        p.ok().then_some(write::User {
            id: self.id,
            email: self.email,
            first_name: self.first_name,
            last_name: self.last_name,
            username: self.username,
            password: self.password,
            active,
            created_at,
            confirmed_at: self.confirmed_at,
            mail_offers,
        })
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

impl OldTable for source::Shop {
    const TABLE: &'static str = "shops";
    const SQL: &'static str = source::SHOP;
    type Out = write::Shop;
    fn id(&self) -> Uuid {
        self.id
    }
    fn check(self, _: &Ctx<'_>, p: &mut Problems) -> Option<Self::Out> {
        p.name("name", Some(&self.name), 255);
        for (column, v) in [
            ("description", &self.description),
            ("stripe_secret_key", &self.stripe_secret_key),
            ("stripe_public_key", &self.stripe_public_key),
            ("internal_url", &self.internal_url),
            ("external_url", &self.external_url),
            ("discord_webhook", &self.discord_webhook),
        ] {
            p.text(column, v.as_deref(), 255);
        }
        for (column, v, want) in [
            ("config", Some(&self.config), "object"),
            ("shop_type", Some(&self.shop_type), "object"),
            ("allowed_ips", self.allowed_ips.as_ref(), "array"),
        ] {
            if let Some(v) = v
                && json_kind(v) != want
            {
                p.push(
                    Rule::InvalidValue,
                    format!("{column}: a JSON {}, not an {want}", json_kind(v)),
                );
            }
        }
        let vat = [
            p.required("vat_standard", self.vat_standard),
            p.required("vat_lower_1", self.vat_lower_1),
            p.required("vat_lower_2", self.vat_lower_2),
            p.required("vat_lower_3", self.vat_lower_3),
            p.required("vat_special", self.vat_special),
            p.required("vat_zero", self.vat_zero),
        ];
        let created_at = p.required("created_at", self.created_at);
        let modified_at = p.required("modified_at", self.modified_at);
        let (
            [Some(s), Some(l1), Some(l2), Some(l3), Some(sp), Some(z)],
            Some(created_at),
            Some(modified_at),
        ) = (vat, created_at, modified_at)
        else {
            return None;
        };
        p.ok().then_some(write::Shop {
            id: self.id,
            name: self.name,
            description: self.description,
            allowed_ips: self.allowed_ips,
            vat: [s, l1, l2, l3, sp, z],
            created_at,
            modified_at,
            config: self.config,
            stripe_secret_key: self.stripe_secret_key,
            stripe_public_key: self.stripe_public_key,
            config_version: self.config_version,
            shop_type: self.shop_type,
            internal_url: self.internal_url,
            external_url: self.external_url,
            discord_webhook: self.discord_webhook,
        })
    }
}

impl OldTable for source::ShopUser {
    const TABLE: &'static str = "shops_users";
    const SQL: &'static str = source::SHOPS_USERS;
    type Out = write::ShopUser;
    fn id(&self) -> Uuid {
        self.id
    }
    fn check(self, ctx: &Ctx<'_>, p: &mut Problems) -> Option<Self::Out> {
        let user_id = p.required("user_id", self.user_id)?;
        p.user(ctx, "user_id", user_id, self.user_exists);
        if self.pair_rank > 1 {
            p.push(Rule::DuplicateLink, format!("user_id={user_id}"));
        }
        p.ok().then_some(write::ShopUser {
            id: self.id,
            user_id,
        })
    }
}

impl OldTable for source::Category {
    const TABLE: &'static str = "categories";
    const SQL: &'static str = source::CATEGORIES;
    type Out = write::Category;
    fn id(&self) -> Uuid {
        self.id
    }
    fn check(self, _: &Ctx<'_>, p: &mut Problems) -> Option<Self::Out> {
        p.text("color", self.color.as_deref(), 20);
        p.text("icon", self.icon.as_deref(), 100);
        for (column, v) in [
            ("main_image", &self.main_image),
            ("alt1_image", &self.alt1_image),
            ("alt2_image", &self.alt2_image),
        ] {
            p.text(column, v.as_deref(), 255);
        }
        let order_number = p.required("order_number", self.order_number)?;
        if self.number_rank > 1 {
            p.push(
                Rule::DuplicateNumber,
                format!("order_number={order_number}"),
            );
        }
        p.ok().then_some(write::Category {
            id: self.id,
            color: self.color,
            icon: self.icon,
            order_number,
            main_image: self.main_image,
            alt1_image: self.alt1_image,
            alt2_image: self.alt2_image,
        })
    }
}

fn check_translation(
    t: Translation,
    ctx: &Ctx<'_>,
    parent_column: &str,
    name_max: usize,
    p: &mut Problems,
) -> Option<write::Translation> {
    p.depends(ctx, parent_column, Some(t.parent_id));
    if t.parent_rank > 1 {
        p.push(
            Rule::DuplicateTranslation,
            format!("{parent_column}={}", t.parent_id),
        );
    }
    p.name("main_name", Some(&t.main_name), name_max);
    p.name("main_description", t.main_description.as_deref(), LONG_TEXT);
    p.name(
        "main_description_short",
        t.main_description_short.as_deref(),
        LONG_TEXT,
    );
    let mut alt = |column: &str, v: Option<String>, max: usize| {
        let v = v.filter(|v| !v.trim().is_empty());
        p.text(column, v.as_deref(), max);
        v
    };
    let alt1_name = alt("alt1_name", t.alt1_name, name_max);
    let alt1_description = alt("alt1_description", t.alt1_description, LONG_TEXT);
    let alt1_description_short = alt(
        "alt1_description_short",
        t.alt1_description_short,
        LONG_TEXT,
    );
    let alt2_name = alt("alt2_name", t.alt2_name, name_max);
    let alt2_description = alt("alt2_description", t.alt2_description, LONG_TEXT);
    let alt2_description_short = alt(
        "alt2_description_short",
        t.alt2_description_short,
        LONG_TEXT,
    );
    p.ok().then_some(write::Translation {
        id: t.id,
        parent_id: t.parent_id,
        main_name: t.main_name,
        main_description: t.main_description,
        main_description_short: t.main_description_short,
        alt1_name,
        alt1_description,
        alt1_description_short,
        alt2_name,
        alt2_description,
        alt2_description_short,
    })
}

macro_rules! translation_table {
    ($row:ident, $out:ident, $table:literal, $sql:ident, $parent:literal, $max:literal) => {
        impl OldTable for source::$row {
            const TABLE: &'static str = $table;
            const SQL: &'static str = source::$sql;
            type Out = write::$out;
            fn id(&self) -> Uuid {
                self.t.id
            }
            fn check(self, ctx: &Ctx<'_>, p: &mut Problems) -> Option<Self::Out> {
                check_translation(self.t, ctx, $parent, $max, p).map(write::$out)
            }
        }
    };
}
translation_table!(
    CategoryTranslation,
    CategoryTranslation,
    "category_translations",
    CATEGORY_TRANSLATIONS,
    "category_id",
    255
);
translation_table!(
    ProductTranslation,
    ProductTranslation,
    "product_translations",
    PRODUCT_TRANSLATIONS,
    "product_id",
    255
);
translation_table!(
    TagTranslation,
    TagTranslation,
    "tag_translations",
    TAG_TRANSLATIONS,
    "tag_id",
    100
);
translation_table!(
    AttributeTranslation,
    AttributeTranslation,
    "attribute_translations",
    ATTRIBUTE_TRANSLATIONS,
    "attribute_id",
    100
);

impl OldTable for source::Tag {
    const TABLE: &'static str = "tags";
    const SQL: &'static str = source::TAGS;
    type Out = write::Tag;
    fn id(&self) -> Uuid {
        self.id
    }
    fn check(self, _: &Ctx<'_>, p: &mut Problems) -> Option<Self::Out> {
        p.name("name", self.name.as_deref(), 60);
        p.ok().then_some(write::Tag {
            id: self.id,
            name: self.name,
        })
    }
}

impl OldTable for source::Attribute {
    const TABLE: &'static str = "attributes";
    const SQL: &'static str = source::ATTRIBUTES;
    type Out = write::Attribute;
    fn id(&self) -> Uuid {
        self.id
    }
    fn check(self, _: &Ctx<'_>, p: &mut Problems) -> Option<Self::Out> {
        p.name("name", Some(&self.name), 60);
        p.text("unit", self.unit.as_deref(), 20);
        p.ok().then_some(write::Attribute {
            id: self.id,
            name: self.name,
            unit: self.unit,
        })
    }
}

impl OldTable for source::AttributeOption {
    const TABLE: &'static str = "attribute_options";
    const SQL: &'static str = source::ATTRIBUTE_OPTIONS;
    type Out = write::AttributeOption;
    fn id(&self) -> Uuid {
        self.id
    }
    fn check(self, ctx: &Ctx<'_>, p: &mut Problems) -> Option<Self::Out> {
        p.depends(ctx, "attribute_id", Some(self.attribute_id));
        p.name("value_key", Some(&self.value_key), 60);
        p.ok().then_some(write::AttributeOption {
            id: self.id,
            attribute_id: self.attribute_id,
            value_key: self.value_key,
        })
    }
}

impl OldTable for source::Product {
    const TABLE: &'static str = "products";
    const SQL: &'static str = source::PRODUCTS;
    type Out = write::Product;
    fn id(&self) -> Uuid {
        self.id
    }
    fn check(self, ctx: &Ctx<'_>, p: &mut Problems) -> Option<Self::Out> {
        if let Some(category) = self.category_id {
            p.same_shop(
                ctx,
                "category_id",
                category,
                self.category_exists,
                self.category_shop,
            );
        }
        p.depends(ctx, "category_id", self.category_id);
        let price = p.money("price", self.price);
        let discounted_price = p.money("discounted_price", self.discounted_price);
        let monthly = p.money("recurring_price_monthly", self.recurring_price_monthly);
        let yearly = p.money("recurring_price_yearly", self.recurring_price_yearly);
        if let Some(tax) = p.required("tax_category", self.tax_category.as_deref())
            && !TAX_CATEGORIES.contains(&tax)
        {
            p.push(Rule::InvalidValue, format!("tax_category={tax:?}"));
        }
        let images = [
            &self.image_1,
            &self.image_2,
            &self.image_3,
            &self.image_4,
            &self.image_5,
            &self.image_6,
        ];
        for (i, v) in images.into_iter().enumerate() {
            p.text(&format!("image_{}", i + 1), v.as_deref(), 255);
        }
        p.text("digital", self.digital.as_deref(), 255);
        if let Some(stock) = p.required("stock", self.stock)
            && stock < 0
        {
            p.push(Rule::NegativeStock, format!("stock={stock}"));
        }
        if let Some(n) = p.required("order_number", self.order_number)
            && self.number_rank > 1
        {
            p.push(Rule::DuplicateNumber, format!("order_number={n}"));
        }
        let flags = [
            p.required("max_one", self.max_one),
            p.required("shippable", self.shippable),
            p.required("featured", self.featured),
            p.required("new_product", self.new_product),
        ];
        let created_at = p.required("created_at", self.created_at);
        let modified_at = p.required("modified_at", self.modified_at);
        if !p.ok() {
            return None;
        }
        let [
            Some(max_one),
            Some(shippable),
            Some(featured),
            Some(new_product),
        ] = flags
        else {
            return None;
        };
        Some(write::Product {
            id: self.id,
            category_id: self.category_id,
            price,
            tax_category: self.tax_category?,
            discounted_price,
            discounted_from: self.discounted_from.map(utc),
            discounted_to: self.discounted_to.map(utc),
            images: [
                self.image_1,
                self.image_2,
                self.image_3,
                self.image_4,
                self.image_5,
                self.image_6,
            ],
            created_at: created_at?,
            modified_at: modified_at?,
            recurring_price_monthly: monthly,
            recurring_price_yearly: yearly,
            max_one,
            digital: self.digital,
            shippable,
            featured,
            new_product,
            order_number: self.order_number?,
            stock: self.stock?,
        })
    }
}

impl OldTable for source::ProductTag {
    const TABLE: &'static str = "products_to_tags";
    const SQL: &'static str = source::PRODUCTS_TO_TAGS;
    type Out = write::ProductTag;
    fn id(&self) -> Uuid {
        self.id
    }
    fn check(self, ctx: &Ctx<'_>, p: &mut Problems) -> Option<Self::Out> {
        let product_id = p.required("product_id", self.product_id);
        let tag_id = p.required("tag_id", self.tag_id);
        let (product_id, tag_id) = (product_id?, tag_id?);
        p.same_shop(
            ctx,
            "product_id",
            product_id,
            self.product_exists,
            self.product_shop,
        );
        p.same_shop(ctx, "tag_id", tag_id, self.tag_exists, self.tag_shop);
        p.depends(ctx, "product_id", Some(product_id));
        p.depends(ctx, "tag_id", Some(tag_id));
        if self.pair_rank > 1 {
            p.push(
                Rule::DuplicateLink,
                format!("product_id={product_id} tag_id={tag_id}"),
            );
        }
        p.ok().then_some(write::ProductTag {
            id: self.id,
            product_id,
            tag_id,
        })
    }
}

impl OldTable for source::AttributeValue {
    const TABLE: &'static str = "product_attribute_values";
    const SQL: &'static str = source::PRODUCT_ATTRIBUTE_VALUES;
    type Out = write::AttributeValue;
    fn id(&self) -> Uuid {
        self.id
    }
    fn check(self, ctx: &Ctx<'_>, p: &mut Problems) -> Option<Self::Out> {
        let attribute_id = p.required("attribute_id", self.attribute_id)?;
        p.same_shop(
            ctx,
            "attribute_id",
            attribute_id,
            self.attribute_exists,
            self.attribute_shop,
        );
        p.depends(ctx, "product_id", Some(self.product_id));
        p.depends(ctx, "attribute_id", Some(attribute_id));
        p.depends(ctx, "option_id", self.option_id);
        if let Some(option) = self.option_id {
            if !self.option_exists {
                p.push(Rule::DanglingReference, format!("option_id={option}"));
            } else if self.option_attribute != Some(attribute_id) {
                p.push(
                    Rule::InvalidValue,
                    format!("option_id={option}: an option of another attribute"),
                );
            }
        }
        if self.triple_rank > 1 {
            p.push(
                Rule::DuplicateLink,
                format!(
                    "product_id={} attribute_id={attribute_id} option_id={}",
                    self.product_id,
                    self.option_id.map_or("NULL".into(), |o| o.to_string())
                ),
            );
        }
        p.ok().then_some(write::AttributeValue {
            id: self.id,
            product_id: self.product_id,
            attribute_id,
            option_id: self.option_id,
        })
    }
}

impl OldTable for source::Account {
    const TABLE: &'static str = "accounts";
    const SQL: &'static str = source::ACCOUNTS;
    type Out = write::Account;
    fn id(&self) -> Uuid {
        self.id
    }
    fn check(self, _: &Ctx<'_>, p: &mut Problems) -> Option<Self::Out> {
        p.text("name", self.name.as_deref(), 255);
        p.text("hash_name", self.hash_name.as_deref(), 255);
        let details = match self.details.as_deref().map(serde_json::from_str::<Value>) {
            None => None,
            Some(Ok(v)) => {
                if has_nul(&v) {
                    p.push(Rule::NulByte, "details");
                }
                Some(v)
            }
            Some(Err(e)) => {
                p.push(Rule::InvalidValue, format!("details: {e}"));
                None
            }
        };
        p.ok().then_some(write::Account {
            id: self.id,
            name: self.name,
            hash_name: self.hash_name,
            details,
        })
    }
}

/// The items of `order_info` as the library's [`OrderItem`]s, or the problems of each item.
fn order_items(info: &Value, p: &mut Problems) -> Vec<OrderItem> {
    let Value::Array(items) = info else {
        p.push(
            Rule::InvalidValue,
            format!("order_info: a JSON {}, not an array", json_kind(info)),
        );
        return Vec::new();
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let field = |name: &str| item.get(name).filter(|v| !v.is_null());
        let bad = |p: &mut Problems, name: &str| {
            p.push(
                Rule::InvalidValue,
                format!(
                    "order_info[{i}].{name}={}",
                    field(name).map_or("NULL".into(), Value::to_string)
                ),
            )
        };
        let product_id = field("product_id")
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok());
        let product_name = field("product_name").and_then(Value::as_str);
        let quantity = field("quantity")
            .and_then(Value::as_i64)
            .and_then(|q| i32::try_from(q).ok())
            .filter(|q| *q > 0);
        let description = match field("description") {
            None => Some(None),
            Some(Value::String(s)) => Some(Some(s.clone())),
            Some(_) => None,
        };
        let price = match field("price").and_then(Value::as_f64) {
            Some(v) => p.money(&format!("order_info[{i}].price"), Some(v)),
            None => {
                bad(p, "price");
                None
            }
        };
        // an item naming no product of the shop is reported once, as unknown_product
        if product_name.is_none() {
            bad(p, "product_name");
        }
        if quantity.is_none() {
            bad(p, "quantity");
        }
        if description.is_none() {
            bad(p, "description");
        }
        p.text(
            &format!("order_info[{i}].product_name"),
            product_name,
            LONG_TEXT,
        );
        if let Some(Some(d)) = &description {
            p.text(&format!("order_info[{i}].description"), Some(d), 1000);
        }
        if let (Some(product_id), Some(name), Some(quantity), Some(description), Some(price)) =
            (product_id, product_name, quantity, description, price)
        {
            out.push(OrderItem {
                description,
                price,
                product_id: ProductId::new(product_id),
                product_name: name.to_owned(),
                quantity,
            });
        }
    }
    out
}

impl OldTable for source::Order {
    const TABLE: &'static str = "orders";
    const SQL: &'static str = source::ORDERS;
    type Out = write::Order;
    fn id(&self) -> Uuid {
        self.id
    }
    fn check(self, ctx: &Ctx<'_>, p: &mut Problems) -> Option<Self::Out> {
        if let Some(n) = p.required("customer_order_id", self.customer_order_id)
            && self.number_rank > 1
        {
            p.push(Rule::DuplicateNumber, format!("customer_order_id={n}"));
        }
        p.text("notes", self.notes.as_deref(), LONG_TEXT);
        if let Some(account) = self.account_id {
            p.same_shop(
                ctx,
                "account_id",
                account,
                self.account_exists,
                self.account_shop,
            );
        }
        if let Some(unknown) = &self.unknown_products {
            p.push(Rule::UnknownProduct, format!("product_id={unknown}"));
        }
        p.depends(ctx, "account_id", self.account_id);
        let info = self.order_info.unwrap_or(Value::Array(Vec::new()));
        let items = order_items(&info, p);
        for item in &items {
            p.depends(ctx, "order_info.product_id", Some(item.product_id.get()));
        }
        let total = p.money("total", self.total);
        let created_at = p.required("created_at", self.created_at);
        let status = p.required("status", self.status);
        if let Some(s) = &status {
            if !ORDER_STATUSES.contains(&s.as_str()) {
                p.push(Rule::InvalidValue, format!("status={s:?}"));
            } else if (s == "complete") != self.completed_at.is_some() {
                p.push(
                    Rule::InconsistentCompletion,
                    format!(
                        "status={s} completed_at={}",
                        self.completed_at.map_or("NULL".into(), |t| t.to_string())
                    ),
                );
            }
        }
        if let Some(user) = self.completed_by {
            p.user(ctx, "completed_by", user, self.completer_exists);
            if self.completer_exists && !self.completer_is_member {
                p.push(Rule::CompleterNotMember, format!("completed_by={user}"));
            }
        }
        if !p.ok() {
            return None;
        }
        Some(write::Order {
            id: self.id,
            customer_order_id: self.customer_order_id?,
            notes: self.notes,
            account_id: self.account_id,
            order_info: serde_json::to_value(items).ok()?,
            created_at: utc(created_at?),
            total,
            status: status?,
            completed_by: self.completed_by,
            completed_at: self.completed_at.map(utc),
        })
    }
}

fn check_license(l: source::License, ctx: &Ctx<'_>, p: &mut Problems) -> Option<write::License> {
    p.depends(ctx, "order_id", l.order_id);
    p.name("name", Some(&l.name), 255);
    if l.seats <= 0 {
        p.push(Rule::InvalidValue, format!("seats={}", l.seats));
    }
    let created_at = p.required("created_at", l.created_at);
    let modified_at = p.required("modified_at", l.modified_at);
    if !p.ok() {
        return None;
    }
    Some(write::License {
        id: l.id,
        name: l.name,
        is_recurring: l.is_recurring,
        start_date: l.start_date,
        end_date: l.end_date,
        improviser_user: l.improviser_user,
        seats: l.seats,
        order_id: l.order_id,
        created_at: created_at?,
        modified_at: modified_at?,
    })
}

impl OldTable for source::License {
    const TABLE: &'static str = "licenses";
    const SQL: &'static str = source::LICENSES;
    type Out = write::License;
    fn id(&self) -> Uuid {
        self.id
    }
    fn check(self, ctx: &Ctx<'_>, p: &mut Problems) -> Option<Self::Out> {
        check_license(self, ctx, p)
    }
}

impl OldTable for source::UnorderedLicense {
    const TABLE: &'static str = "licenses";
    const SQL: &'static str = source::UNORDERED_LICENSES;
    const SCOPED: bool = false;
    type Out = write::License;
    fn id(&self) -> Uuid {
        self.l.id
    }
    fn check(self, ctx: &Ctx<'_>, p: &mut Problems) -> Option<Self::Out> {
        check_license(self.l, ctx, p)
    }
}

impl OldTable for source::Role {
    const TABLE: &'static str = "roles";
    const SQL: &'static str = source::ROLES;
    const SCOPED: bool = false;
    type Out = write::Role;
    fn id(&self) -> Uuid {
        self.id
    }
    fn check(self, _: &Ctx<'_>, p: &mut Problems) -> Option<Self::Out> {
        p.name("name", self.name.as_deref(), 80);
        p.text("description", self.description.as_deref(), 255);
        let name = p.required("name", self.name)?;
        p.ok().then_some(write::Role {
            id: self.id,
            name,
            description: self.description,
        })
    }
}

impl OldTable for source::RoleUser {
    const TABLE: &'static str = "roles_users";
    const SQL: &'static str = source::ROLES_USERS;
    const SCOPED: bool = false;
    type Out = write::RoleUser;
    fn id(&self) -> Uuid {
        self.id
    }
    fn check(self, ctx: &Ctx<'_>, p: &mut Problems) -> Option<Self::Out> {
        let user_id = p.required("user_id", self.user_id);
        let role_id = p.required("role_id", self.role_id);
        let (user_id, role_id) = (user_id?, role_id?);
        p.user(ctx, "user_id", user_id, self.user_exists);
        if !self.role_exists {
            p.push(Rule::DanglingReference, format!("role_id={role_id}"));
        }
        p.depends(ctx, "role_id", Some(role_id));
        if self.pair_rank > 1 {
            p.push(
                Rule::DuplicateLink,
                format!("user_id={user_id} role_id={role_id}"),
            );
        }
        p.ok().then_some(write::RoleUser {
            id: self.id,
            user_id,
            role_id,
        })
    }
}

impl OldTable for source::Faq {
    const TABLE: &'static str = "faq";
    const SQL: &'static str = source::FAQ;
    const SCOPED: bool = false;
    type Out = write::Faq;
    fn id(&self) -> Uuid {
        self.id
    }
    fn check(self, _: &Ctx<'_>, p: &mut Problems) -> Option<Self::Out> {
        p.name("question", Some(&self.question), 255);
        p.text("answer", Some(&self.answer), 255);
        p.name("category", Some(&self.category), 100);
        if self.question_rank > 1 {
            p.push(
                Rule::DuplicateValue,
                format!("question={:?}", self.question),
            );
        }
        let created_at = p.required("created_at", self.created_at);
        let modified_at = p.required("modified_at", self.modified_at);
        if !p.ok() {
            return None;
        }
        Some(write::Faq {
            id: self.id,
            question: self.question,
            answer: self.answer,
            category: self.category,
            created_at: created_at?,
            modified_at: modified_at?,
        })
    }
}

impl OldTable for source::EarlyAccess {
    const TABLE: &'static str = "early_access";
    const SQL: &'static str = source::EARLY_ACCESS;
    const SCOPED: bool = false;
    type Out = write::EarlyAccess;
    fn id(&self) -> Uuid {
        self.id
    }
    fn check(self, _: &Ctx<'_>, p: &mut Problems) -> Option<Self::Out> {
        p.text("email", self.email.as_deref(), 255);
        let email = p.required("email", self.email);
        let created_at = p.required("created_at", self.created_at);
        if !p.ok() {
            return None;
        }
        Some(write::EarlyAccess {
            id: self.id,
            email: email?,
            created_at: created_at?,
        })
    }
}

impl OldTable for source::InfoRequest {
    const TABLE: &'static str = "info_requests";
    const SQL: &'static str = source::INFO_REQUESTS;
    type Out = write::InfoRequest;
    fn id(&self) -> Uuid {
        self.id
    }
    fn check(self, ctx: &Ctx<'_>, p: &mut Problems) -> Option<Self::Out> {
        p.text("email", self.email.as_deref(), 255);
        if let Some(product) = self.product_id {
            p.same_shop(
                ctx,
                "product_id",
                product,
                self.product_exists,
                self.product_shop,
            );
        }
        p.depends(ctx, "product_id", self.product_id);
        p.ok().then_some(write::InfoRequest {
            id: self.id,
            email: self.email,
            product_id: self.product_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_converts_only_exact_cents() {
        let d = |s: &str| Decimal::from_str(s).unwrap();
        assert_eq!(money(19.99), Ok(d("19.99")));
        assert_eq!(money(19.9).unwrap().to_string(), "19.90");
        assert_eq!(money(-0.0).unwrap().to_string(), "0.00");
        assert_eq!(money(0.1 + 0.2), Err(Rule::InexactMoney));
        assert_eq!(money(1e-7), Err(Rule::InexactMoney));
        assert_eq!(money(19.999), Err(Rule::InexactMoney));
        assert_eq!(money(-1.0), Err(Rule::NegativeMoney));
        assert_eq!(money(f64::NAN), Err(Rule::MoneyOutOfRange));
        assert_eq!(money(1e10), Err(Rule::MoneyOutOfRange));
        assert_eq!(money(9_999_999_999.99), Ok(MONEY_MAX));
    }

    #[test]
    fn bcrypt_shape() {
        let hash = "$2b$12$KIXQJ8ZQ9vQ6s1r1Zb8Xeu0yJ9l5h6QyU1l9Y3m5kq1Xr6b2cY7aG";
        assert_eq!(hash.len(), 60);
        assert!(is_bcrypt(hash));
        assert!(!is_bcrypt("hunter2"));
        assert!(!is_bcrypt(&hash.replace("$2b$", "$1$x")));
    }
}
