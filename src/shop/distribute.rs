//! Spreading the shop over a Citus cluster: [`distribute`] turns a migrated shop schema on a
//! Citus coordinator into tables distributed by `shop_id` (all co-located, so a statement that
//! names one shop runs on one shard, joins and foreign keys included) and reference tables (a
//! copy on every node) for what every shop shares. See docs/SCALING.md.
//!
//! | kind | tables | why |
//! | --- | --- | --- |
//! | reference | `shops`, `users`, `roles`, `roles_users`, `faq`, `early_access`, `global_licenses` | read by every shop (foreign-key targets of shop-owned rows, sign-in by e-mail across shops, licences of no shop); few writes |
//! | distributed by `shop_id` | [`DISTRIBUTED`] | every row belongs to one shop; every key includes `shop_id` (migrations 0090–0111) |
//! | local (coordinator only) | none in `shop` | |
//!
//! The planexe tables in `public` are left as they are: local tables of the coordinator (see
//! docs/SCALING.md for why planexe stays on one primary).
//!
//! **Idempotent.** Tables already distributed the right way are left alone; calling it on a
//! distributed schema does nothing and says so. After a later migration adds a shop table, the
//! table is added to the lists here, and the next call distributes it.
//!
//! **Atomic.** One transaction: the foreign keys between shop tables are dropped, the tables
//! distributed (reference tables first, then the distributed ones co-located with
//! `shop.categories`), and the foreign keys re-created from their saved definitions, which Citus
//! then creates on every shard. Dropping them first is what lets a table be distributed while
//! another, not yet distributed, still references it (Citus refuses a foreign key from a local
//! table to a distributed one). If any step fails, nothing changed.
//!
//! **Global licences.** They live in `shop.global_licenses` alone on Citus: the mirror of
//! migration 0115 (for releases that kept them in `shop.licenses` with no shop) is dropped, and
//! shop-less rows of `shop.licenses`, which a distributed table cannot hold, are moved there
//! first. Releases before 0115 must no longer run against the database (as for any
//! distribution: run it when the shop is new or quiet).
//!
//! **Functions.** [`FUNCTIONS`], which shop statements call on the shards, are made to exist
//! on every node (for a schema migrated before the `citus` extension came).
//!
//! **Triggers.** The `modified_at` triggers only set a column of the row being written, so they
//! are safe to run on each shard; Citus still wants that said with
//! `citus.enable_unsafe_triggers`, which is set here for the database (so that later migrations
//! creating such triggers also run).
//!
//! The statements call Citus's functions, which a plain PostgreSQL server (the one `.sqlx` is
//! prepared against) does not have, so they are not macro-checked; they are static text with
//! bound parameters.

use sqlx::PgConnection;

use crate::{Error, Result};

/// Tables copied to every node, in foreign-key order (referenced first).
pub const REFERENCE: [&str; 7] = [
    "shop.users",
    "shop.roles",
    "shop.roles_users",
    "shop.shops",
    "shop.faq",
    "shop.early_access",
    "shop.global_licenses",
];

/// Tables distributed by `shop_id`, all co-located with the first.
pub const DISTRIBUTED: [&str; 17] = [
    "shop.categories",
    "shop.shops_users",
    "shop.category_translations",
    "shop.products",
    "shop.product_translations",
    "shop.tags",
    "shop.tag_translations",
    "shop.products_to_tags",
    "shop.attributes",
    "shop.attribute_translations",
    "shop.attribute_options",
    "shop.product_attribute_values",
    "shop.accounts",
    "shop.order_counters",
    "shop.orders",
    "shop.licenses",
    "shop.info_requests",
];

/// Functions of the `shop` schema that shop statements call inside distributed statements, so
/// they must exist on every node: Citus creates a function on the workers when it is made on a
/// coordinator that has them, but not one made before the `citus` extension came.
pub const FUNCTIONS: [&str; 1] = ["shop.sha256_hex(text)"];

/// What [`distribute`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Distribution {
    /// Tables made reference tables by this call.
    pub reference: Vec<String>,
    /// Tables distributed by `shop_id` by this call.
    pub distributed: Vec<String>,
    /// Foreign keys dropped and re-created around the conversion (0 when nothing changed).
    pub foreign_keys: usize,
    /// The Citus version of the coordinator (`extversion`).
    pub citus_version: String,
}

impl Distribution {
    /// True when the schema was already distributed and nothing was done.
    pub fn unchanged(&self) -> bool {
        self.reference.is_empty() && self.distributed.is_empty()
    }
}

impl std::fmt::Display for Distribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.unchanged() {
            return writeln!(
                f,
                "shop already distributed (Citus {}): {} reference tables, {} tables distributed by shop_id",
                self.citus_version,
                REFERENCE.len(),
                DISTRIBUTED.len()
            );
        }
        writeln!(f, "Citus {}:", self.citus_version)?;
        writeln!(f, "  reference tables: {}", self.reference.join(", "))?;
        writeln!(
            f,
            "  distributed by shop_id: {}",
            self.distributed.join(", ")
        )?;
        writeln!(f, "  foreign keys re-created: {}", self.foreign_keys)
    }
}

/// Distributes the migrated shop schema on the Citus coordinator `conn` is connected to (see the
/// [module docs](self)). Not a Citus coordinator (no `citus` extension):
/// [`Error::InvalidInput`]. Takes the tables' locks for the conversion (it copies their rows to
/// the shards): run it when the shop is new or quiet.
#[tracing::instrument(skip_all)]
pub async fn distribute(conn: &mut PgConnection) -> Result<Distribution> {
    let citus_version: Option<String> =
        sqlx::query_scalar("SELECT extversion FROM pg_extension WHERE extname = 'citus'")
            .fetch_optional(&mut *conn)
            .await?;
    let citus_version = citus_version.ok_or_else(|| {
        Error::invalid_input(
            "not a Citus coordinator: the citus extension is not installed in this database",
        )
    })?;

    // Which tables are already what they should be: distributed ('h') or reference ('n' with
    // replication model 't'; a Citus local table is 'n' with 's').
    let done: Vec<(String, String)> = sqlx::query_as(
        "SELECT logicalrelid::regclass::text,
                CASE WHEN partmethod = 'h' THEN 'distributed'
                     WHEN partmethod = 'n' AND repmodel = 't' THEN 'reference'
                     ELSE 'other' END
         FROM pg_dist_partition",
    )
    .fetch_all(&mut *conn)
    .await?;
    let is = |table: &str, kind: &str| done.iter().any(|(t, k)| t == table && k == kind);
    let reference: Vec<String> = REFERENCE
        .iter()
        .filter(|t| !is(t, "reference"))
        .map(|t| (*t).to_owned())
        .collect();
    let distributed: Vec<String> = DISTRIBUTED
        .iter()
        .filter(|t| !is(t, "distributed"))
        .map(|t| (*t).to_owned())
        .collect();
    if reference.is_empty() && distributed.is_empty() {
        return Ok(Distribution {
            reference,
            distributed,
            foreign_keys: 0,
            citus_version,
        });
    }

    // For this database's later sessions (migrations creating modified_at triggers) too.
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut *conn)
        .await?;
    let alter = format!(
        "ALTER DATABASE {} SET citus.enable_unsafe_triggers = on",
        quote_ident(&database)
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(alter))
        .execute(&mut *conn)
        .await?;

    crate::tx::transaction(conn, async |tx| {
        // Conversions in one transaction must not open parallel connections per shard (the
        // reference tables' rows would not be visible to them).
        sqlx::raw_sql(
            "SET LOCAL citus.multi_shard_modify_mode = 'sequential';
             SET LOCAL citus.enable_unsafe_triggers = on;",
        )
        .execute(&mut *tx)
        .await?;
        // Global licences in shop.global_licenses only (see the module docs).
        sqlx::raw_sql(
            "DROP TRIGGER IF EXISTS tr_licenses_mirror_global ON shop.licenses;
             DROP TRIGGER IF EXISTS tr_global_licenses_mirror ON shop.global_licenses;
             INSERT INTO shop.global_licenses (id, name, is_recurring, start_date, end_date,
                                               improviser_user, seats, created_at, modified_at)
             SELECT id, name, is_recurring, start_date, end_date, improviser_user, seats,
                    created_at, modified_at
             FROM shop.licenses WHERE shop_id IS NULL
             ON CONFLICT (id) DO NOTHING;
             DELETE FROM shop.licenses WHERE shop_id IS NULL;",
        )
        .execute(&mut *tx)
        .await?;
        // Save and drop every foreign key of the shop tables.
        let keys: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT c.conrelid::regclass::text, c.conname::text, pg_get_constraintdef(c.oid)
             FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
             WHERE n.nspname = 'shop' AND c.contype = 'f'
             ORDER BY 1, 2",
        )
        .fetch_all(&mut *tx)
        .await?;
        for (table, name, _) in &keys {
            let drop = format!("ALTER TABLE {table} DROP CONSTRAINT {}", quote_ident(name));
            sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
                .execute(&mut *tx)
                .await?;
        }
        for table in &reference {
            sqlx::query("SELECT create_reference_table($1::regclass)")
                .bind(table)
                .execute(&mut *tx)
                .await?;
        }
        for table in &distributed {
            let colocate_with = if *table == DISTRIBUTED[0] {
                "none"
            } else {
                DISTRIBUTED[0]
            };
            sqlx::query(
                "SELECT create_distributed_table($1::regclass, 'shop_id', colocate_with => $2)",
            )
            .bind(table)
            .bind(colocate_with)
            .execute(&mut *tx)
            .await?;
        }
        // Functions the shards' statements call, on every node (a no-op for those already there).
        for function in FUNCTIONS {
            sqlx::query("SELECT create_distributed_function($1::regprocedure)")
                .bind(function)
                .execute(&mut *tx)
                .await?;
        }
        for (table, name, definition) in &keys {
            let add = format!(
                "ALTER TABLE {table} ADD CONSTRAINT {} {definition}",
                quote_ident(name)
            );
            sqlx::raw_sql(sqlx::AssertSqlSafe(add))
                .execute(&mut *tx)
                .await?;
        }
        Ok(keys.len())
    })
    .await
    .map(|foreign_keys| Distribution {
        reference,
        distributed,
        foreign_keys,
        citus_version,
    })
}

/// Quotes an identifier for the DDL that cannot take bind parameters.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
