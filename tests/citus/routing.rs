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

/// The statements that span shops, by the first line of their SQL text, with their measured
/// behaviour on Citus and why they span shops.
const CROSS_SHOP: &[(&str, &str)] = &[];

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
        .map(|(sql, behaviour)| ((*sql).to_owned(), (*behaviour).to_owned()))
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
