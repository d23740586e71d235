//! Every shop statement of the library (each query of `.sqlx/` that names a `shop.` table) is
//! planned on the distributed schema with `EXPLAIN`, and Citus's plan says where it runs:
//!
//! - **one shard**: every Citus scan in the plan has `Task Count: 1` (a router query: one
//!   worker, one shard, or one placement of a reference table);
//! - **cross-shop**: some scan fans out to several shards, or Citus refuses the statement.
//!
//! Statements that name one shop must be one-shard. The cross-shop ones are the list below,
//! each with what Citus does with it (measured by this test: it fails when a statement's
//! behaviour differs from what is written here, or when a statement not listed fans out).

use std::collections::BTreeMap;

use shared_db::testing::{Backend, TestDatabase};
use sqlx::{Executor, PgConnection};

/// Where one statement runs on the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    /// Every Citus scan of the plan has one task.
    OneShard,
    /// A scan fans out: the largest task count of the plan.
    Shards(u64),
    /// Citus refuses to plan it: the error's first words.
    Refused(String),
}

/// The statements that do not run on one shard: their SQL (whitespace collapsed, first 160
/// characters), their measured behaviour on Citus 13.2 (`Shards(n)`: fans out to n shards;
/// `Refused(..)`: Citus's error at planning), and why.
const CROSS_SHOP: &[(&str, &str, &str)] = &[
    (
        "DELETE FROM shop.product_translations WHERE product_id = $1",
        "Shards(32)",
        "test-only statement (a test's own check across shops or by id)",
    ),
    (
        "DELETE FROM shop.products WHERE id IN ( SELECT id FROM shop.products WHERE shop_id = $1 AND order_number >= 1000 ORDER BY random() LIMIT 3)",
        "Shards(32)",
        "test-only statement (a test's own check across shops or by id)",
    ),
    (
        "INSERT INTO shop.attribute_options (shop_id, attribute_id, value_key) SELECT a.shop_id, a.id, $3 FROM shop.attributes a WHERE a.shop_id = $1 AND a.id = $2 RETUR",
        "Refused(\"error returned from database: no value found for parameter 3 at line 2484\")",
        "EXPLAIN artifact: Citus cannot EXPLAIN EXECUTE a parameterised INSERT … SELECT; the statement itself runs on one shard (shop suite on Citus)",
    ),
    (
        "INSERT INTO shop.categories (shop_id, color, icon, main_image, alt1_image, alt2_image, order_number) SELECT $1, coalesce($2, '#376E1A'), $3, $4, $5, $6, coalesc",
        "Refused(\"error returned from database: no value found for parameter 1 at line 2484\")",
        "EXPLAIN artifact, as above (categories::create passes on Citus)",
    ),
    (
        "INSERT INTO shop.licenses (id, shop_id, name, is_recurring, start_date, end_date, improviser_user, seats, order_id, created_at, modified_at) SELECT l.id, $11::u",
        "Refused(\"error returned from database: correlated subqueries are not supported when the FROM clause contains a set returning func\")",
        "importer's licence batch (UNNEST + NOT EXISTS): refused on distributed tables; the import runs on the coordinator before distribution (citus::import)",
    ),
    (
        "INSERT INTO shop.order_counters (shop_id, last_customer_order_id) SELECT $1, max(customer_order_id) FROM shop.orders WHERE shop_id = $1 HAVING max(customer_orde",
        "Refused(\"error returned from database: no value found for parameter 1 at line 2484\")",
        "EXPLAIN artifact, as above (order counter repair)",
    ),
    (
        "INSERT INTO shop.product_attribute_values (shop_id, product_id, attribute_id, option_id) SELECT p.shop_id, p.id, a.id, $4 FROM shop.products p JOIN shop.attribu",
        "Refused(\"error returned from database: could not create distributed plan at line 804\")",
        "EXPLAIN refuses the parameterised INSERT … SELECT; product_attribute_values::create runs on Citus (tenancy tests)",
    ),
    (
        "INSERT INTO shop.products (shop_id, category_id, price, tax_category, discounted_price, discounted_from, discounted_to, image_1, image_2, image_3, image_4, imag",
        "Refused(\"error returned from database: no value found for parameter 1 at line 2484\")",
        "EXPLAIN artifact, as above (products::create passes on Citus)",
    ),
    (
        "SELECT count(*) AS \"n!\" FROM shop.attributes",
        "Shards(32)",
        "test-only statement (a test's own check across shops or by id)",
    ),
    (
        "SELECT count(*) AS \"n!\" FROM shop.categories",
        "Shards(32)",
        "test-only statement (a test's own check across shops or by id)",
    ),
    (
        "SELECT count(*) AS \"n!\" FROM shop.category_translations WHERE category_id = $1",
        "Shards(32)",
        "test-only statement (a test's own check across shops or by id)",
    ),
    (
        "SELECT count(*) AS \"n!\" FROM shop.orders WHERE idempotency_key = $1",
        "Shards(32)",
        "test-only statement (a test's own check across shops or by id)",
    ),
    (
        "SELECT count(*) AS \"n!\" FROM shop.product_translations WHERE product_id = $1",
        "Shards(32)",
        "test-only statement (a test's own check across shops or by id)",
    ),
    (
        "SELECT count(*) AS \"n!\" FROM shop.products",
        "Shards(32)",
        "test-only statement (a test's own check across shops or by id)",
    ),
    (
        "SELECT count(*) AS \"n!\" FROM shop.tags",
        "Shards(32)",
        "test-only statement (a test's own check across shops or by id)",
    ),
    (
        "SELECT order_info::text AS \"t!\" FROM shop.orders WHERE id = $1",
        "Shards(32)",
        "test-only statement (a test's own check across shops or by id)",
    ),
    (
        "SELECT shop_id FROM shop.shops_users WHERE user_id = $1 ORDER BY shop_id",
        "Shards(32)",
        "a user's shops, across shops by design: fans out to every shard",
    ),
    (
        "UPDATE shop.orders SET completed_by = NULL WHERE completed_by = $1",
        "Shards(32)",
        "users::delete: a deleted user leaves the orders they completed in every shop (sequential mode, then the reference table's DELETE)",
    ),
    (
        "UPDATE shop.orders SET order_info = '[{\"product_id\": \"not a uuid\", \"quantity\": \"lots\"}]' WHERE id = $1",
        "Shards(32)",
        "test-only statement (a test's own check across shops or by id)",
    ),
    (
        "UPDATE shop.product_translations SET main_description = repeat('x', 20000) WHERE product_id IN (SELECT id FROM shop.products WHERE shop_id = $1)",
        "Shards(32)",
        "test-only statement (a test's own check across shops or by id)",
    ),
    (
        "WITH p AS ( INSERT INTO shop.products (shop_id, category_id, order_number, price) SELECT $1, $2, $4 + g, 1.00 FROM generate_series(1, $3) AS g RETURNING shop_id",
        "Refused(\"error returned from database: could not create distributed plan at line 804\")",
        "test seeding only (tests/shop/bounded.rs): INSERT … generate_series in a CTE, refused",
    ),
];

/// A value for a parameter of the type sqlx recorded in `.sqlx` (only planned, never run).
fn literal(sqlx_type: &serde_json::Value, shop: &str) -> String {
    match sqlx_type.as_str() {
        Some("Uuid") => format!("'{shop}'"),
        Some("Text" | "Varchar" | "Bpchar") => "'x'".into(),
        Some("Int2" | "Int4" | "Int8" | "Numeric" | "Float4" | "Float8") => "'1'".into(),
        Some("Bool") => "'false'".into(),
        Some("Timestamptz" | "Timestamp" | "Date") => "'2026-01-01'".into(),
        Some("Jsonb" | "Json") => "'{}'".into(),
        Some(array) if array.ends_with("Array") => "'{}'".into(),
        _ => "NULL".into(),
    }
}

/// The largest `Task Count` of a JSON plan, or `None` if Citus is not in it.
fn max_task_count(plan: &serde_json::Value) -> Option<u64> {
    let mut max = None;
    let mut stack = vec![plan];
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(n) = map.get("Task Count").and_then(serde_json::Value::as_u64) {
                    max = Some(max.map_or(n, |m: u64| m.max(n)));
                }
                stack.extend(map.values());
            }
            serde_json::Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    max
}

async fn route(conn: &mut PgConnection, sql: &str, params: &[String]) -> Route {
    // PREPARE infers the parameter types as the library's own prepare does; EXECUTE gives the
    // values, so Citus plans the statement as it would route it (a custom plan per value).
    let prepared = conn
        .execute(sqlx::AssertSqlSafe(format!("PREPARE routed AS {sql}")))
        .await;
    if let Err(e) = prepared {
        return Route::Refused(short(&e.to_string()));
    }
    let explain = if params.is_empty() {
        "EXPLAIN (FORMAT JSON) EXECUTE routed".to_owned()
    } else {
        format!(
            "EXPLAIN (FORMAT JSON) EXECUTE routed({})",
            params.join(", ")
        )
    };
    let plan: Result<serde_json::Value, _> = sqlx::query_scalar(sqlx::AssertSqlSafe(explain))
        .fetch_one(&mut *conn)
        .await;
    conn.execute("DEALLOCATE routed").await.unwrap();
    match plan {
        Err(e) => Route::Refused(short(&e.to_string())),
        Ok(plan) => match max_task_count(&plan) {
            None | Some(1) => Route::OneShard,
            Some(n) => Route::Shards(n),
        },
    }
}

fn short(error: &str) -> String {
    error.chars().take(120).collect()
}

#[tokio::test]
async fn every_shop_statement_that_names_a_shop_runs_on_one_shard() -> anyhow::Result<()> {
    let db = TestDatabase::on(Backend::Citus).await?;
    let mut conn = db.pool().acquire().await?;
    let shop = super::shop::ALPHA.shop.get().to_string();

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".sqlx");
    let mut statements = BTreeMap::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
        let sql = json["query"].as_str().unwrap_or_default().to_owned();
        if !sql.contains("shop.") {
            continue;
        }
        let params: Vec<String> = json["describe"]["parameters"]["Left"]
            .as_array()
            .map(|types| types.iter().map(|t| literal(t, &shop)).collect())
            .unwrap_or_default();
        statements.insert(sql, params);
    }
    assert!(
        statements.len() > 100,
        "found only {} shop statements in {}",
        statements.len(),
        dir.display()
    );

    let mut one_shard = 0;
    let mut fan_out = BTreeMap::new();
    for (sql, params) in &statements {
        match route(&mut conn, sql, params).await {
            Route::OneShard => one_shard += 1,
            other => {
                fan_out.insert(first_line(sql), other);
            }
        }
    }
    eprintln!(
        "{} shop statements: {one_shard} on one shard, {} cross-shop",
        statements.len(),
        fan_out.len()
    );
    for (sql, route) in &fan_out {
        eprintln!("  {route:?}  {sql}");
    }
    let listed: BTreeMap<String, String> = CROSS_SHOP
        .iter()
        .map(|(sql, behaviour, _why)| ((*sql).to_owned(), (*behaviour).to_owned()))
        .collect();
    let measured: BTreeMap<String, String> = fan_out
        .iter()
        .map(|(sql, route)| (sql.clone(), format!("{route:?}")))
        .collect();
    assert_eq!(
        measured, listed,
        "the statements that span shops, and what Citus does with them"
    );
    Ok(())
}

/// A statement's key in the list: its SQL with whitespace collapsed, up to 160 characters.
fn first_line(sql: &str) -> String {
    let collapsed = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    collapsed.chars().take(160).collect()
}
