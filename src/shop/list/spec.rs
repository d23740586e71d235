//! The per-entity whitelists ([`Spec`]) and what is built from them: validated filters
//! ([`Filters`]) and the `ORDER BY` clause. Names from the request select whitelist entries; only
//! the entries' SQL text and bound values reach the query.

use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use super::MAX_FILTER_CHARS;
use crate::shop::ShopId;
use crate::{Error, Result};

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
        $crate::shop::list::spec::Column {
            name: $name,
            filter: &[concat!($sql, " ILIKE "), ""],
            val: $crate::shop::list::spec::Val::Text,
            sort: Some($sql),
        }
    };
}
/// A typed column: filter by equality, sortable.
macro_rules! eq_col {
    ($name:literal, $sql:literal, $val:ident) => {
        $crate::shop::list::spec::Column {
            name: $name,
            filter: &[concat!($sql, " = "), ""],
            val: $crate::shop::list::spec::Val::$val,
            sort: Some($sql),
        }
    };
}
/// A column that can only be sorted.
macro_rules! sort_col {
    ($name:literal, $sql:literal) => {
        $crate::shop::list::spec::Column {
            name: $name,
            filter: &[],
            val: $crate::shop::list::spec::Val::Text,
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
            crate::shop::input::text("filter", f, MAX_FILTER_CHARS)?;
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
pub(crate) fn order_by(spec: &Spec, sort: &[String]) -> Result<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
        assert_eq!(like_pattern(""), "%%");
    }
}
