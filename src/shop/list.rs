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
//! - `skip` defaults to 0, `limit` to 100; `limit = 0` returns every row.

use std::fmt;

use sqlx::{FromRow, PgConnection, Postgres, QueryBuilder, postgres::PgRow};
use uuid::Uuid;

use crate::{Error, Result};

/// Default page size.
pub const DEFAULT_LIMIT: i64 = 100;

/// What a caller asks of a list. Deserializes from query-string-like input; missing fields take
/// their defaults.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default)]
pub struct ListParams {
    /// Rows to skip.
    pub skip: i64,
    /// Rows to return; 0 means all.
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

/// The `Content-Range` value of a page: `<unit> <first>-<last>/<total>` (inclusive positions);
/// an empty page renders `<unit> */<total>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ContentRange {
    /// Unit name, e.g. `products`.
    pub unit: &'static str,
    /// Position of the first row returned (0-based); `None` for an empty page.
    pub first: Option<i64>,
    /// Position of the last row returned (inclusive).
    pub last: Option<i64>,
    /// Rows matching the filters.
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

/// One page of a list.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Page<T> {
    /// The rows.
    pub items: Vec<T>,
    /// Rows matching the filters, ignoring skip/limit.
    pub total: i64,
    /// The `Content-Range` value.
    pub content_range: ContentRange,
}

/// One page of a keyset (cursor) list.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeysetPage<T> {
    /// The rows.
    pub items: Vec<T>,
    /// Cursor for the next page; `None` when this page is the last.
    pub next: Option<String>,
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
    /// Select list, e.g. `to_jsonb(p) AS item, to_jsonb(t) AS translation`.
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
    pub fn push_where(&self, qb: &mut QueryBuilder<Postgres>, spec: &Spec, shop_id: Option<Uuid>) {
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

/// Runs a list query: count, then the requested page.
#[tracing::instrument(skip_all, fields(unit = spec.unit))]
pub(crate) async fn fetch<R>(
    conn: &mut PgConnection,
    spec: &Spec,
    shop_id: Option<Uuid>,
    params: &ListParams,
) -> Result<Page<R>>
where
    R: for<'r> FromRow<'r, PgRow> + Send + Unpin,
{
    if params.skip < 0 || params.limit < 0 {
        return Err(Error::invalid_input("skip and limit must not be negative"));
    }
    let filters = Filters::parse(spec, &params.filter)?;
    let order = order_by(spec, &params.sort)?;

    let mut count = QueryBuilder::<Postgres>::new("SELECT count(*) FROM ");
    count.push(spec.from);
    filters.push_where(&mut count, spec, shop_id);
    let total: i64 = count.build_query_scalar().fetch_one(&mut *conn).await?;

    let mut rows = QueryBuilder::<Postgres>::new("SELECT ");
    rows.push(spec.select).push(" FROM ").push(spec.from);
    filters.push_where(&mut rows, spec, shop_id);
    rows.push(order);
    if params.limit > 0 {
        rows.push(" LIMIT ").push_bind(params.limit);
    }
    rows.push(" OFFSET ").push_bind(params.skip);
    let items: Vec<R> = rows.build_query_as().fetch_all(&mut *conn).await?;

    let n = items.len() as i64;
    let content_range = ContentRange {
        unit: spec.unit,
        first: (n > 0).then_some(params.skip),
        last: (n > 0).then_some(params.skip + n - 1),
        total,
    };
    Ok(Page {
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
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
        assert_eq!(like_pattern(""), "%%");
    }
}
