//! Only what makes a shop itself unusable skips it whole, and its transaction is given back.

use shared_db::shop::import::{Options, Rule, Status};

use crate::{GAMMA, id, old_and_new_in_one, run};

#[tokio::test]
async fn a_different_shop_under_the_name_blocks_the_whole_shop() -> anyhow::Result<()> {
    let db = old_and_new_in_one().await?;
    sqlx::query("INSERT INTO shop.shops (name) VALUES ('gamma')")
        .execute(db.pool())
        .await?;
    let report = run(&db, &Options::default()).await?;
    let gamma = report.outcomes.iter().find(|o| o.name == "gamma").unwrap();
    assert_eq!(gamma.status, Status::Skipped);
    assert!(
        gamma
            .reason
            .as_deref()
            .unwrap()
            .starts_with("shop_conflict: "),
        "{gamma:?}"
    );
    assert!(
        report
            .entries
            .iter()
            .any(|e| e.rule == Rule::ShopConflict && e.id == id(GAMMA))
    );
    let written: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM shop.products WHERE shop_id = $1)
              + (SELECT count(*) FROM shop.shops WHERE id = $1)",
    )
    .bind(id(GAMMA))
    .fetch_one(db.pool())
    .await?;
    assert_eq!(written, 0, "nothing of the blocked shop");
    let products = report
        .tables
        .iter()
        .find(|t| t.table == "products")
        .unwrap();
    assert_eq!(
        products.skipped, 1,
        "gamma's good product is counted as skipped"
    );
    // the other shops came over
    assert!(
        report.outcomes[1..3]
            .iter()
            .all(|o| o.status == Status::Imported)
    );
    Ok(())
}

#[tokio::test]
async fn a_refused_shop_row_blocks_the_whole_shop() -> anyhow::Result<()> {
    let db = old_and_new_in_one().await?;
    sqlx::query("UPDATE public.shops SET config = '\"{}\"' WHERE id = $1")
        .bind(id(GAMMA))
        .execute(db.pool())
        .await?;
    let report = run(&db, &Options::default()).await?;
    let gamma = report.outcomes.iter().find(|o| o.name == "gamma").unwrap();
    assert_eq!(gamma.status, Status::Skipped);
    assert_eq!(
        gamma.reason.as_deref(),
        Some("the shop row is refused (invalid_value)")
    );
    let shops: i64 = sqlx::query_scalar("SELECT count(*) FROM shop.categories WHERE shop_id = $1")
        .bind(id(GAMMA))
        .fetch_one(db.pool())
        .await?;
    assert_eq!(shops, 0);
    Ok(())
}
