//! Nothing is left behind: every row of every old table is imported or reported, and a shop
//! with only row-level problems comes over without its bad rows.

use shared_db::shop::import::{Options, Status};
use uuid::Uuid;

use crate::{GAMMA, dry, id, old_and_new_in_one, run};

/// Every table of the backend at its final migration (`shop.md` §2), users first.
const OLD_TABLES: [&str; 22] = [
    "users",
    "roles",
    "roles_users",
    "shops",
    "shops_users",
    "tags",
    "tag_translations",
    "accounts",
    "categories",
    "category_translations",
    "orders",
    "products",
    "product_translations",
    "products_to_tags",
    "licenses",
    "early_access",
    "info_requests",
    "faq",
    "attributes",
    "attribute_translations",
    "attribute_options",
    "product_attribute_values",
];

#[tokio::test]
async fn the_summary_accounts_for_every_row_of_every_table() -> anyhow::Result<()> {
    let db = old_and_new_in_one().await?;
    for options in [dry(), Options::default()] {
        let report = run(&db, &options).await?;
        print!("{}", report.summary_text());
        assert_eq!(
            report.tables.len(),
            OLD_TABLES.len(),
            "one line per old table"
        );
        for table in OLD_TABLES {
            let t = report
                .tables
                .iter()
                .find(|t| t.table == table)
                .unwrap_or_else(|| panic!("{table} missing from the summary"));
            let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM public.{table}"
            )))
            .fetch_one(db.pool())
            .await?;
            assert_eq!(t.read, rows as u64, "{table}: every row read");
            assert_eq!(t.read, t.imported + t.refused + t.skipped, "{table}");
            assert_eq!(t.skipped, 0, "{table}: 0 good rows left out");
            let refused = report
                .entries
                .iter()
                .filter(|e| e.table == table)
                .map(|e| e.id)
                .collect::<std::collections::HashSet<_>>();
            assert_eq!(
                t.refused,
                refused.len() as u64,
                "{table}: refused = reported"
            );
        }
    }
    Ok(())
}

/// Gamma's problems are all row-level: its good rows are imported, its bad rows and the rows
/// that depend on them are reported, each with its rule.
#[tokio::test]
async fn a_shop_with_only_row_level_problems_brings_its_good_rows() -> anyhow::Result<()> {
    let db = old_and_new_in_one().await?;
    let report = run(&db, &Options::default()).await?;
    let gamma = report
        .outcomes
        .iter()
        .find(|o| o.shop == Some(id(GAMMA)))
        .unwrap();
    assert_eq!(gamma.status, Status::Imported, "{gamma:?}");
    assert_eq!((gamma.rows, gamma.written), (7, 7));
    assert_eq!(
        gamma.refused,
        report
            .entries
            .iter()
            .filter(|e| e.shop == Some(id(GAMMA)))
            .map(|e| e.id)
            .collect::<std::collections::HashSet<_>>()
            .len() as u64
    );

    // product 42 (negative stock) is refused, and its translation, tag link and info request
    // with it; the good product 41 and its good link are there
    let dependents: Vec<(&str, Uuid, String)> = report
        .entries
        .iter()
        .filter(|e| e.rule.name() == "refused_parent")
        .map(|e| (e.table, e.id, e.value.clone()))
        .collect();
    let p42 = "product_id=c0000000-0000-0000-0000-000000000042";
    assert_eq!(
        dependents,
        [
            (
                "product_translations",
                id("c0000000-0000-0000-0000-000000000142"),
                p42.to_string()
            ),
            (
                "products_to_tags",
                id("c0000000-0000-0000-0000-000000000054"),
                p42.to_string()
            ),
            (
                "info_requests",
                id("c0000000-0000-0000-0000-0000000000a1"),
                p42.to_string()
            ),
        ]
    );
    let products: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM shop.products WHERE shop_id = $1 ORDER BY id")
            .bind(id(GAMMA))
            .fetch_all(db.pool())
            .await?;
    assert_eq!(products, [id("c0000000-0000-0000-0000-000000000041")]);
    let links: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM shop.products_to_tags WHERE shop_id = $1")
            .bind(id(GAMMA))
            .fetch_all(db.pool())
            .await?;
    assert_eq!(links, [id("c0000000-0000-0000-0000-000000000051")]);
    Ok(())
}
