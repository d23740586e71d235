//! The OpenTelemetry database client semantic conventions, derived for every repository span in
//! one place.
//!
//! Every repository function opens a `tracing` span named after itself, with the target of its
//! table's module (`shared_db::planexe::plans`, `shared_db::shop::products`). The conventions'
//! attributes follow from those two names by one rule, so no function spells them out:
//!
//! | attribute | rule | example |
//! | --- | --- | --- |
//! | `db.system.name` | always | `postgresql` |
//! | `db.operation.name` | the function's name | `status` |
//! | `db.collection.name` | the table: the module's last segment, in schema `shop` for `shared_db::shop::*` (`public` tables unqualified), none for modules that span several tables (`planexe::retention`, `shop::import`, `shop::list`) | `plans`, `shop.products` |
//! | `db.query.summary` | `"{operation} {collection}"` (the operation alone without a table) | `status plans` |
//! | `db.namespace` | the database name of the pool ([`server`]) | `shared_db` |
//! | `server.address`, `server.port` | the host (or socket directory) and port the pool connects to ([`server`]) | `10.0.0.5`, `5432` |
//! | `error.type` | [`Error::kind`](crate::Error::kind) of a failure, absent on success | `conflict`, `pool_timeout` |
//!
//! The server attributes are the process's: those of the last pool [`crate::Database::connect`]
//! opened to a primary (updated on failover). A service holds one `Database`, so they are its
//! primary's; reads through [`crate::Database::replica`] carry them too, and a process with
//! several databases sees the last one's.
//!
//! Used by [`crate::metrics`] (labels of `db.client.operation.duration`) and `crate::otel`
//! (span attributes, feature `otel`).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use sqlx::postgres::PgConnectOptions;

/// `db.system.name` of every span and metric.
pub const DB_SYSTEM: &str = "postgresql";

/// Targets of the spans that a repository function opens.
const REPOSITORY_TARGETS: [&str; 2] = ["shared_db::planexe", "shared_db::shop"];

/// Modules whose functions touch several tables: no `db.collection.name`.
const NOT_ONE_TABLE: [&str; 3] = ["planexe::retention", "shop::import", "shop::list"];

/// Whether a span of this target times a repository function.
pub fn is_repository(target: &str) -> bool {
    REPOSITORY_TARGETS.iter().any(|t| target.starts_with(t))
}

/// The conventions' names for one repository function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// `db.operation.name`: the function's name.
    pub name: &'static str,
    /// `db.collection.name`: the table, if the function works on one.
    pub collection: Option<String>,
    /// `db.query.summary`.
    pub summary: String,
}

/// The [`Operation`] of the span `name` with target `target` (see the [module docs](self));
/// `None` for a span that is not a repository function's.
pub fn operation(target: &str, name: &'static str) -> Option<Operation> {
    if !is_repository(target) {
        return None;
    }
    let module = target.strip_prefix("shared_db::").unwrap_or(target);
    let collection = (!NOT_ONE_TABLE.iter().any(|m| module.starts_with(m)))
        .then(|| {
            let (area, rest) = module.split_once("::")?;
            let table = rest.split("::").next()?;
            Some(match area {
                "shop" => format!("shop.{table}"),
                _ => table.to_owned(),
            })
        })
        .flatten();
    let summary = match &collection {
        Some(table) => format!("{name} {table}"),
        None => name.to_owned(),
    };
    Some(Operation {
        name,
        collection,
        summary,
    })
}

/// [`operation`] of a span's call site, computed once per call site: every span of one
/// repository function shares it, so the layers that read it on each span (metrics, OTel) pay
/// no string building on the hot path. `None` for a span that is not a repository function's.
pub fn operation_of(meta: &'static tracing::Metadata<'static>) -> Option<Arc<Operation>> {
    static CACHE: std::sync::OnceLock<RwLock<HashMap<usize, Option<Arc<Operation>>>>> =
        std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    // Call-site metadata is static: its address identifies the call site.
    let key = std::ptr::from_ref(meta) as usize;
    if let Some(found) = cache.read().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return found.clone();
    }
    let op = operation(meta.target(), meta.name()).map(Arc::new);
    cache
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, op.clone());
    op
}

/// `db.namespace`, `server.address` and `server.port` of the process's primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// `db.namespace`: the database name (empty when the server's default applies).
    pub namespace: String,
    /// `server.address`: host name, IP address or unix-socket directory.
    pub address: String,
    /// `server.port`.
    pub port: u16,
}

static SERVER: RwLock<Option<Arc<Server>>> = RwLock::new(None);

/// Records where the primary pool connects (called by [`crate::Database::connect`] and on
/// failover).
pub(crate) fn set_server(options: &PgConnectOptions) {
    let server = Server {
        namespace: options
            .get_database()
            .unwrap_or(options.get_username())
            .to_owned(),
        address: match options.get_socket() {
            Some(dir) => dir.display().to_string(),
            None => options.get_host().to_owned(),
        },
        port: options.get_port(),
    };
    *SERVER.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(server));
}

/// Where the primary pool connects, once a [`crate::Database`] has connected.
pub fn server() -> Option<Arc<Server>> {
    SERVER.read().unwrap_or_else(|e| e.into_inner()).clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_names_table_operation_and_summary() {
        let op = operation("shared_db::planexe::plans", "status").unwrap();
        assert_eq!(op.name, "status");
        assert_eq!(op.collection.as_deref(), Some("plans"));
        assert_eq!(op.summary, "status plans");
        let op = operation("shared_db::shop::products", "list_after").unwrap();
        assert_eq!(op.collection.as_deref(), Some("shop.products"));
        let op = operation("shared_db::planexe::retention", "purge_events").unwrap();
        assert_eq!((op.collection, op.summary.as_str()), (None, "purge_events"));
        assert_eq!(operation("shared_db::schema", "sync"), None);
        assert_eq!(operation("sqlx::query", "x"), None);
    }
}
