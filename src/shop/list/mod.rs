//! List machinery shared by every shop entity: `skip`/`limit`, `filter=column:value`, bare search,
//! `sort=column:ASC|DESC`, total count and a [`ContentRange`].
//!
//! Each entity declares a [`Spec`]: the columns that may be filtered and sorted (a Rust
//! whitelist). Requests name columns by their public name; the SQL text for a column comes only
//! from the whitelist entry it matches, and every value is bound with `push_bind`. A column that
//! is not on the whitelist is [`Error::InvalidInput`]; nothing the
//! caller sends is ever spliced into SQL text.
//!
//! Semantics:
//! - `filter` entries combine with **AND**. `column:value` on a text column is a case-insensitive
//!   substring match (`%` and `_` in the value match literally); uuid, integer and boolean
//!   columns compare for equality with a typed value (a malformed value is `InvalidInput`).
//!   A filter of the same column given twice must match both values.
//! - A filter without `:` is a bare search: case-insensitive substring over the entity's name
//!   columns (any of them matches).
//! - `sort` entries are `column`, `column:ASC` or `column:DESC` (case-insensitive direction);
//!   several sorts chain; the entity's id is always appended as the final tie-break, so pages are
//!   stable.
//! - `skip` defaults to 0 and must not be negative; `limit` defaults to [`DEFAULT_LIMIT`] and must
//!   be 1..=[`MAX_LIMIT`]. Anything else is [`Error::InvalidInput`]. A caller that needs every
//!   row uses the entity's streaming export (e.g. [`crate::shop::products::export`]).
//! - The page and its `total` come from one statement (a window count), so the
//!   [`ContentRange`] always agrees with the rows it describes, even under concurrent writes.
//!
//! Keyset walks (the `*_after` functions) share one opaque [`Cursor`] type.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection, Postgres, QueryBuilder, Row, postgres::PgRow};
use uuid::Uuid;

use super::ShopId;
use crate::{Error, Result};

pub(crate) mod spec;

pub use spec::Spec;
use spec::order_by;
pub(crate) use spec::{Column, Filters, Val, eq_col, sort_col, text_col};

/// Page size when the caller gives none.
pub const DEFAULT_LIMIT: i64 = 100;

/// Largest page any list or keyset walk returns. Larger requests are [`Error::InvalidInput`]:
/// one request never makes the server hold more than this many rows.
pub const MAX_LIMIT: i64 = 500;

/// Longest filter value accepted, in characters.
const MAX_FILTER_CHARS: usize = 255;

/// What a caller asks of a list. Deserializes from query-string-like input; missing fields take
/// their defaults.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default)]
pub struct ListParams {
    /// Rows to skip (0 or more).
    pub skip: i64,
    /// Rows to return, 1..=[`MAX_LIMIT`].
    pub limit: i64,
    /// `column:value` conditions (AND) or bare search values.
    pub filter: Vec<String>,
    /// `column[:ASC|DESC]` sort keys, applied in order.
    pub sort: Vec<String>,
}

impl Default for ListParams {
    fn default() -> Self {
        ListParams {
            skip: 0,
            limit: DEFAULT_LIMIT,
            filter: Vec::new(),
            sort: Vec::new(),
        }
    }
}

impl ListParams {
    /// Adds a filter (`column:value`, or a bare search value).
    pub fn filter(mut self, f: impl Into<String>) -> Self {
        self.filter.push(f.into());
        self
    }
    /// Adds a sort key (`column`, `column:ASC`, `column:DESC`).
    pub fn sort(mut self, s: impl Into<String>) -> Self {
        self.sort.push(s.into());
        self
    }
    /// Sets skip and limit.
    pub fn page(mut self, skip: i64, limit: i64) -> Self {
        self.skip = skip;
        self.limit = limit;
        self
    }
}

/// [`Error::InvalidInput`] unless `limit` is 1..=[`MAX_LIMIT`].
pub(crate) fn check_limit(limit: i64) -> Result<i64> {
    if (1..=MAX_LIMIT).contains(&limit) {
        Ok(limit)
    } else {
        Err(Error::invalid_input(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )))
    }
}

/// The `Content-Range` value of a page: `<unit> <first>-<last>/<total>` (inclusive positions);
/// an empty page renders `<unit> */<total>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ContentRange {
    /// e.g. `products`.
    pub unit: &'static str,
    /// Position of the first row returned (0-based); `None` for an empty page.
    pub first: Option<i64>,
    /// Position of the last row returned (inclusive); `None` for an empty page.
    pub last: Option<i64>,
    /// Rows matching the filters, counted in the same snapshot as the page.
    pub total: i64,
}

impl fmt::Display for ContentRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.first, self.last) {
            (Some(first), Some(last)) => {
                write!(f, "{} {}-{}/{}", self.unit, first, last, self.total)
            }
            _ => write!(f, "{} */{}", self.unit, self.total),
        }
    }
}

/// One page of an offset list (the answer to a [`ListParams`] request).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ListPage<T> {
    /// At most `limit` rows, in the requested order.
    pub items: Vec<T>,
    /// Rows matching the filters, ignoring skip/limit (same snapshot as `items`).
    pub total: i64,
    /// The `Content-Range` value.
    pub content_range: ContentRange,
}

/// One page of a keyset (cursor) walk.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeysetPage<T> {
    /// At most `limit` rows.
    pub items: Vec<T>,
    /// Where the next page starts; `None` when this page is the last.
    pub next: Option<Cursor>,
}

/// A position in a keyset walk: the sort key of the last row of the previous page. Opaque to
/// callers: they get it as [`KeysetPage::next`], may carry it through a URL as text
/// ([`Display`](fmt::Display) / [`FromStr`]), and pass it back to the same walk. A cursor of
/// another walk, or a malformed one, is [`Error::InvalidInput`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Cursor(String);

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Cursor {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        super::input::text("cursor", s, 128)?;
        Ok(Cursor(s.to_owned()))
    }
}

/// A sort key a keyset walk resumes after. `KIND` tags the cursor text, so a cursor cannot be
/// fed to a walk over another order.
pub(crate) trait CursorKey: Sized {
    const KIND: &'static str;
    fn encode(&self) -> String;
    fn decode(s: &str) -> Option<Self>;
}

impl Cursor {
    pub(crate) fn new<K: CursorKey>(key: &K) -> Self {
        Cursor(format!("{}:{}", K::KIND, key.encode()))
    }

    pub(crate) fn key<K: CursorKey>(&self) -> Result<K> {
        self.0
            .strip_prefix(K::KIND)
            .and_then(|rest| rest.strip_prefix(':'))
            .and_then(K::decode)
            .ok_or_else(|| Error::invalid_input(format!("not a {} cursor", K::KIND)))
    }
}

/// `(created_at, id)`: a product walk in creation order.
impl CursorKey for (DateTime<Utc>, Uuid) {
    const KIND: &'static str = "created";
    fn encode(&self) -> String {
        format!("{}.{}", self.0.timestamp_micros(), self.1)
    }
    fn decode(s: &str) -> Option<Self> {
        let (micros, id) = s.split_once('.')?;
        Some((
            DateTime::from_timestamp_micros(micros.parse().ok()?)?,
            id.parse().ok()?,
        ))
    }
}

/// `(order_number, id)`: the catalog walk.
impl CursorKey for (i32, Uuid) {
    const KIND: &'static str = "ordered";
    fn encode(&self) -> String {
        format!("{}.{}", self.0, self.1)
    }
    fn decode(s: &str) -> Option<Self> {
        let (n, id) = s.split_once('.')?;
        Some((n.parse().ok()?, id.parse().ok()?))
    }
}

/// A number unique within the walk (an order's `customer_order_id`).
impl CursorKey for i32 {
    const KIND: &'static str = "number";
    fn encode(&self) -> String {
        self.to_string()
    }
    fn decode(s: &str) -> Option<Self> {
        s.parse().ok()
    }
}

/// Cuts the `limit + 1` rows a keyset query fetched down to `limit`, and points the cursor at
/// the last row kept when there were more.
pub(crate) fn keyset_page<T, K: CursorKey>(
    mut items: Vec<T>,
    limit: i64,
    key: impl Fn(&T) -> K,
) -> KeysetPage<T> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|row| Cursor::new(&key(row)))
    } else {
        None
    };
    KeysetPage { items, next }
}

/// Runs a list query: the requested page with a window count of every matching row, in one
/// statement (one snapshot). Rows decode through `R`'s `FromRow` (the entity's row struct over
/// the explicit columns of [`Spec::select`]) and are handed out as `T`.
#[tracing::instrument(skip_all, fields(unit = spec.unit))]
pub(crate) async fn fetch<R, T>(
    conn: &mut PgConnection,
    spec: &Spec,
    shop_id: Option<ShopId>,
    params: &ListParams,
) -> Result<ListPage<T>>
where
    R: for<'r> FromRow<'r, PgRow>,
    T: From<R>,
{
    if params.skip < 0 {
        return Err(Error::invalid_input("skip must not be negative"));
    }
    let limit = check_limit(params.limit)?;
    let filters = Filters::parse(spec, &params.filter)?;
    let order = order_by(spec, &params.sort)?;

    let mut qb = QueryBuilder::<Postgres>::new("SELECT ");
    qb.push(spec.select)
        .push(", count(*) OVER () AS list_total FROM ")
        .push(spec.from);
    filters.push_where(&mut qb, spec, shop_id);
    qb.push(order);
    qb.push(" LIMIT ").push_bind(limit);
    qb.push(" OFFSET ").push_bind(params.skip);
    let rows: Vec<PgRow> = qb.build().fetch_all(&mut *conn).await?;

    let total: i64 = match rows.first() {
        Some(row) => row.try_get("list_total")?,
        // an empty page (skip past the end) carries no window count; count on its own
        None => {
            let mut count = QueryBuilder::<Postgres>::new("SELECT count(*) FROM ");
            count.push(spec.from);
            filters.push_where(&mut count, spec, shop_id);
            count.build_query_scalar().fetch_one(&mut *conn).await?
        }
    };
    let items = rows
        .iter()
        .map(|row| R::from_row(row).map(T::from))
        .collect::<Result<Vec<T>, sqlx::Error>>()?;

    let n = items.len() as i64;
    let content_range = ContentRange {
        unit: spec.unit,
        first: (n > 0).then_some(params.skip),
        last: (n > 0).then(|| params.skip.saturating_add(n - 1)),
        total,
    };
    Ok(ListPage {
        items,
        total,
        content_range,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_renders_inclusive_positions() {
        let r = ContentRange {
            unit: "products",
            first: Some(0),
            last: Some(99),
            total: 250,
        };
        assert_eq!(r.to_string(), "products 0-99/250");
        let empty = ContentRange {
            unit: "tags",
            first: None,
            last: None,
            total: 3,
        };
        assert_eq!(empty.to_string(), "tags */3");
    }

    #[test]
    fn limits_outside_one_to_max_are_refused() {
        assert!(check_limit(0).is_err());
        assert!(check_limit(-1).is_err());
        assert!(check_limit(MAX_LIMIT + 1).is_err());
        assert!(check_limit(i64::MAX).is_err());
        assert_eq!(check_limit(MAX_LIMIT).unwrap(), MAX_LIMIT);
    }

    #[test]
    fn a_cursor_only_resumes_its_own_walk() {
        let id = Uuid::from_u128(7);
        let c = Cursor::new(&(3_i32, id));
        assert_eq!(c.key::<(i32, Uuid)>().unwrap(), (3, id));
        assert!(c.key::<i32>().is_err());
        assert!(c.key::<(DateTime<Utc>, Uuid)>().is_err());
        let parsed: Cursor = c.to_string().parse().unwrap();
        assert_eq!(parsed, c);
    }
}
