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

/// How a filter value is typed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Val {
    /// Case-insensitive substring (bound as an ILIKE pattern).
    Text,
    /// Exact uuid.
    Uuid,
    /// Exact boolean.
    Bool,
    /// Exact integer.
    Int,
}

/// A whitelisted column.
#[derive(Debug)]
pub(crate) struct Column {
    /// The public name used in `filter` and `sort`.
    pub name: &'static str,
    /// SQL fragments around the bound value (the value is bound between consecutive fragments);
    /// empty when the column cannot be filtered.
    pub filter: &'static [&'static str],
    /// Type of the filter value.
    pub val: Val,
    /// SQL expression to sort by; `None` when the column cannot be sorted.
    pub sort: Option<&'static str>,
}

/// A text column: filter by substring, sortable.
macro_rules! text_col {
    ($name:literal, $sql:literal) => {
        $crate::shop::list::Column {
            name: $name,
            filter: &[concat!($sql, " ILIKE "), ""],
            val: $crate::shop::list::Val::Text,
            sort: Some($sql),
        }
    };
}
/// A typed column: filter by equality, sortable.
macro_rules! eq_col {
    ($name:literal, $sql:literal, $val:ident) => {
        $crate::shop::list::Column {
            name: $name,
            filter: &[concat!($sql, " = "), ""],
            val: $crate::shop::list::Val::$val,
            sort: Some($sql),
        }
    };
}
/// A column that can only be sorted.
macro_rules! sort_col {
    ($name:literal, $sql:literal) => {
        $crate::shop::list::Column {
            name: $name,
            filter: &[],
            val: $crate::shop::list::Val::Text,
            sort: Some($sql),
        }
    };
}
pub(crate) use {eq_col, sort_col, text_col};

/// An entity's list definition: its whitelist of filterable and sortable columns. Each entity
/// module exposes its own as `LIST` (e.g. [`crate::shop::products::LIST`]), so a service can
/// advertise the allowed columns with [`Spec::filter_columns`] and [`Spec::sort_columns`].
#[derive(Debug)]
pub struct Spec {
    /// Unit used in the content range, e.g. `products`.
    pub(crate) unit: &'static str,
    /// Select list: explicit columns, named as the fields of the entity's row struct.
    pub(crate) select: &'static str,
    /// FROM clause (tables and joins).
    pub(crate) from: &'static str,
    /// Column holding the owning shop, for shop-owned entities.
    pub(crate) shop_column: Option<&'static str>,
    /// The id expression (final tie-break).
    pub(crate) id: &'static str,
    /// Filterable / sortable columns.
    pub(crate) columns: &'static [Column],
    /// Expressions searched by a bare filter value.
    pub(crate) search: &'static [&'static str],
}

impl Spec {
    /// Public names of the columns that can be filtered.
    pub fn filter_columns(&self) -> Vec<&'static str> {
        self.columns
            .iter()
            .filter(|c| !c.filter.is_empty())
            .map(|c| c.name)
            .collect()
    }
    /// Public names of the columns that can be sorted.
    pub fn sort_columns(&self) -> Vec<&'static str> {
        self.columns
            .iter()
            .filter(|c| c.sort.is_some())
            .map(|c| c.name)
            .collect()
    }
    /// Unit used in the content range.
    pub fn unit(&self) -> &'static str {
        self.unit
    }
    fn column(&self, name: &str) -> Option<&'static Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// A parsed filter value, typed.
#[derive(Debug)]
enum Value {
    Text(String),
    Uuid(Uuid),
    Bool(bool),
    Int(i32),
}

#[derive(Debug)]
enum Cond {
    Column(&'static Column, Value),
    Search(String),
}

/// Parsed, validated filters of a request.
#[derive(Debug)]
pub(crate) struct Filters(Vec<Cond>);

fn like_pattern(value: &str) -> String {
    let mut p = String::with_capacity(value.len() + 2);
    p.push('%');
    for ch in value.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(ch);
    }
    p.push('%');
    p
}

fn unknown(kind: &str, name: &str, allowed: &[&str]) -> Error {
    // the name is echoed only in the error message, never in SQL
    Error::invalid_input(format!(
        "unknown {kind} column `{}`; allowed: {}",
        name.chars().take(64).collect::<String>(),
        allowed.join(", ")
    ))
}

impl Filters {
    /// Validates `filter` entries against the spec's whitelist.
    pub fn parse(spec: &Spec, filters: &[String]) -> Result<Self> {
        let mut conds = Vec::with_capacity(filters.len());
        for f in filters {
            super::input::text("filter", f, MAX_FILTER_CHARS)?;
            let Some((name, value)) = f.split_once(':') else {
                if spec.search.is_empty() {
                    return Err(Error::invalid_input(format!(
                        "{} cannot be searched without a column",
                        spec.unit
                    )));
                }
                conds.push(Cond::Search(like_pattern(f)));
                continue;
            };
            let col = spec
                .column(name)
                .filter(|c| !c.filter.is_empty())
                .ok_or_else(|| unknown("filter", name, &spec.filter_columns()))?;
            let bad =
                |what: &str| Error::invalid_input(format!("filter `{}` expects {what}", col.name));
            let value = match col.val {
                Val::Text => Value::Text(like_pattern(value)),
                Val::Uuid => Value::Uuid(value.parse().map_err(|_| bad("a uuid"))?),
                Val::Bool => Value::Bool(value.parse().map_err(|_| bad("true or false"))?),
                Val::Int => Value::Int(value.parse().map_err(|_| bad("an integer"))?),
            };
            conds.push(Cond::Column(col, value));
        }
        Ok(Filters(conds))
    }

    /// Pushes ` WHERE …` for the shop scope and every condition.
    pub fn push_where(
        &self,
        qb: &mut QueryBuilder<Postgres>,
        spec: &Spec,
        shop_id: Option<ShopId>,
    ) {
        qb.push(" WHERE TRUE");
        if let (Some(col), Some(shop_id)) = (spec.shop_column, shop_id) {
            qb.push(" AND ").push(col).push(" = ").push_bind(shop_id);
        }
        for cond in &self.0 {
            match cond {
                Cond::Column(col, value) => {
                    qb.push(" AND (");
                    let (first, rest) = col.filter.split_first().expect("filterable column");
                    qb.push(*first);
                    for frag in rest {
                        match value {
                            Value::Text(v) => qb.push_bind(v.clone()),
                            Value::Uuid(v) => qb.push_bind(*v),
                            Value::Bool(v) => qb.push_bind(*v),
                            Value::Int(v) => qb.push_bind(*v),
                        };
                        qb.push(*frag);
                    }
                    qb.push(")");
                }
                Cond::Search(pattern) => {
                    qb.push(" AND (");
                    for (i, expr) in spec.search.iter().enumerate() {
                        if i > 0 {
                            qb.push(" OR ");
                        }
                        qb.push(*expr).push(" ILIKE ").push_bind(pattern.clone());
                    }
                    qb.push(")");
                }
            }
        }
    }
}

/// Validated ORDER BY.
fn order_by(spec: &Spec, sort: &[String]) -> Result<String> {
    let mut out = String::from(" ORDER BY ");
    for s in sort {
        let (name, dir) = s.split_once(':').unwrap_or((s.as_str(), "ASC"));
        let col = spec
            .column(name)
            .and_then(|c| c.sort.map(|sql| (c, sql)))
            .ok_or_else(|| unknown("sort", name, &spec.sort_columns()))?;
        let dir = if dir.eq_ignore_ascii_case("asc") {
            "ASC"
        } else if dir.eq_ignore_ascii_case("desc") {
            "DESC"
        } else {
            return Err(Error::invalid_input(format!(
                "sort direction for `{}` must be ASC or DESC",
                col.0.name
            )));
        };
        out.push_str(col.1);
        out.push(' ');
        out.push_str(dir);
        out.push_str(" NULLS LAST, ");
    }
    out.push_str(spec.id);
    Ok(out)
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

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
        assert_eq!(like_pattern(""), "%%");
    }
}
