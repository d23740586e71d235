//! The migrated schema is exactly what the Python services expect (reference planexe.md §3–§5), plus
//! the additive hardening indexes. Any drift fails here.

use std::collections::BTreeSet;

use shared_db::testing::TestDatabase;

const EXPECTED: &str = include_str!("../fixtures/planexe/expected_schema.txt");
const TABLES: [&str; 11] = [
    "events",
    "plans",
    "workers",
    "nonces",
    "user_account",
    "user_provider",
    "user_api_key",
    "credit_history",
    "payment_record",
    "token_metrics",
    "feedback_item",
];

fn expected(kind: &str) -> BTreeSet<String> {
    EXPECTED
        .lines()
        .filter(|l| l.starts_with(&format!("{kind}|")))
        .map(str::to_owned)
        .collect()
}

fn report(what: &str, expected: &BTreeSet<String>, actual: &BTreeSet<String>) {
    let missing: Vec<_> = expected.difference(actual).collect();
    let extra: Vec<_> = actual.difference(expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what} drift\n  missing: {missing:#?}\n  unexpected: {extra:#?}"
    );
}

#[tokio::test]
async fn a_fresh_database_has_exactly_the_python_schema() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let tables: Vec<String> = TABLES.iter().map(|t| t.to_string()).collect();

    let present = sqlx::query_scalar!(
        r#"SELECT c.relname AS "name!" FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname = ANY($1)"#,
        &tables,
    )
    .fetch_all(db.pool())
    .await?;
    assert_eq!(
        present.len(),
        11,
        "all eleven tables live in schema public: {present:?}"
    );

    let columns: BTreeSet<String> = sqlx::query!(
        r#"SELECT c.relname AS "table_name!", a.attname AS "column_name!",
                  format_type(a.atttypid, a.atttypmod) AS "data_type!", a.attnotnull AS "not_null!",
                  pg_get_expr(d.adbin, d.adrelid) AS "default_expr?"
           FROM pg_attribute a
           JOIN pg_class c ON c.oid = a.attrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
           LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
           WHERE n.nspname = 'public' AND c.relname = ANY($1) AND a.attnum > 0
             AND NOT a.attisdropped"#,
        &tables,
    )
    .fetch_all(db.pool())
    .await?
    .into_iter()
    .map(|r| {
        format!(
            "column|{}|{}|{}|{}|{}",
            r.table_name,
            r.column_name,
            r.data_type,
            if r.not_null { "not null" } else { "null" },
            r.default_expr.unwrap_or_default()
        )
    })
    .collect();
    report("column", &expected("column"), &columns);

    let indexes: BTreeSet<String> = sqlx::query!(
        r#"SELECT t.relname AS "table_name!", i.relname AS "index_name!",
                  pg_get_indexdef(ix.indexrelid) AS "definition!"
           FROM pg_index ix
           JOIN pg_class i ON i.oid = ix.indexrelid
           JOIN pg_class t ON t.oid = ix.indrelid
           JOIN pg_namespace n ON n.oid = t.relnamespace
           WHERE n.nspname = 'public' AND t.relname = ANY($1)"#,
        &tables,
    )
    .fetch_all(db.pool())
    .await?
    .into_iter()
    .map(|r| format!("index|{}|{}|{}", r.table_name, r.index_name, r.definition))
    .collect();
    report("index", &expected("index"), &indexes);

    let enums: BTreeSet<String> = sqlx::query!(
        r#"SELECT t.typname AS "type_name!",
                  string_agg(e.enumlabel::text, ',' ORDER BY e.enumsortorder) AS "labels!"
           FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid
           JOIN pg_namespace n ON n.oid = t.typnamespace
           WHERE n.nspname = 'public' AND t.typname IN ('planstate', 'eventtype', 'taskstate')
           GROUP BY t.typname"#,
    )
    .fetch_all(db.pool())
    .await?
    .into_iter()
    .map(|r| format!("enum|{}|{}", r.type_name, r.labels))
    .collect();
    report("enum", &expected("enum"), &enums);

    // No foreign keys anywhere (the Python package's policy, §2.2).
    let foreign_keys = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
           WHERE k.contype = 'f' AND c.relname = ANY($1)"#,
        &tables,
    )
    .fetch_one(db.pool())
    .await?;
    assert_eq!(foreign_keys, 0);
    Ok(())
}

#[test]
fn the_expectation_covers_every_table_of_the_reference() {
    for table in TABLES {
        assert!(
            expected("column")
                .iter()
                .any(|l| l.starts_with(&format!("column|{table}|"))),
            "no expected columns for {table}"
        );
        assert!(
            expected("index").contains(&format!(
                "index|{table}|{table}_pkey|CREATE UNIQUE INDEX {table}_pkey ON public.{table} USING btree (id)"
            )),
            "no primary key expected for {table}"
        );
    }
    assert_eq!(expected("column").len(), 122);
}

#[tokio::test]
async fn migrations_adopt_a_database_the_python_services_already_manage() -> anyhow::Result<()> {
    use shared_db::planexe::{PlanState, plans};
    let db = TestDatabase::empty().await?;
    sqlx::raw_sql(include_str!(
        "../fixtures/planexe/python_legacy_database.sql"
    ))
    .execute(db.pool())
    .await?;

    db.db().migrate().await?;

    // Existing tables, rows and the legacy type name are kept; what was missing is added.
    let state_type = sqlx::query_scalar!(
        r#"SELECT format_type(atttypid, atttypmod) AS "t!" FROM pg_attribute
           WHERE attrelid = 'plans'::regclass AND attname = 'state'"#
    )
    .fetch_one(db.pool())
    .await?;
    assert_eq!(state_type, "taskstate");
    let has = |name: &'static str| {
        let pool = db.pool().clone();
        async move {
            sqlx::query_scalar!(
                r#"SELECT EXISTS (SELECT 1 FROM pg_class WHERE relname = $1)
                       OR EXISTS (SELECT 1 FROM pg_type WHERE typname = $1) AS "e!""#,
                name
            )
            .fetch_one(&pool)
            .await
        }
    };
    assert!(
        has("task_item_pkey").await?,
        "the renamed table keeps its primary key"
    );
    assert!(!has("plans_pkey").await?);
    assert!(
        has("ix_token_metrics_task_id").await?,
        "missing ix_* indexes are added"
    );
    assert!(
        has("ix_plans_pending_fifo").await? && has("uq_payment_record_provider_payment_id").await?
    );
    assert!(
        !has("ix_plans_api_key_id").await?,
        "no duplicate of idx_plans_api_key_id"
    );
    assert!(
        has("taskstate").await? && !has("planstate").await?,
        "no second plan-state type"
    );

    // The queue works on the adopted database, around the orphan label.
    let claimed = plans::claim_next(db.pool(), "w")
        .await?
        .expect("the pending plan")
        .plan;
    assert_eq!(claimed.prompt.as_deref(), Some("waiting"));
    assert_eq!(claimed.state, Some(PlanState::Processing));
    // The orphan-labelled plan reads as it is stored and is never claimed.
    let orphan = plans::get(db.pool(), "00000000-0000-4000-8000-0000000000d1".parse()?).await?;
    assert!(matches!(orphan.state, Some(PlanState::Unknown(label)) if label == "import_pending"));
    assert!(plans::claim_next(db.pool(), "w").await?.is_none());
    Ok(())
}
