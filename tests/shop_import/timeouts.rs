//! A big shop is not cut off: the import reads its source in one snapshot without the pool's
//! statement timeout, and its target transactions may wait idle on the source.

use std::time::Duration;

use shared_db::shop::import::{self, Options, Status};
use shared_db::{Config, Database};

use crate::old_and_new_in_one;

/// Every query of the old products takes 300 ms (an uncorrelated sub-select that sleeps once
/// per statement), longer than the pool's 200 ms `statement_timeout`; the target transaction
/// waits that long idle, longer than the pool's 200 ms idle-in-transaction timeout.
#[tokio::test]
async fn a_shop_import_outlasts_a_200_ms_pool_statement_timeout() -> anyhow::Result<()> {
    let db = old_and_new_in_one().await?;
    sqlx::raw_sql(
        "ALTER TABLE public.products RENAME TO products_data;
         CREATE VIEW public.products AS
             SELECT * FROM public.products_data WHERE (SELECT true FROM pg_sleep(0.3));",
    )
    .execute(db.pool())
    .await?;
    let mut config = Config::new(db.url());
    config.statement_timeout = Some(Duration::from_millis(200));
    config.idle_in_transaction_timeout = Some(Duration::from_millis(200));
    let pool = Database::connect(&config).await?;

    // the pool really cuts a slow statement off
    let mut conn = pool.acquire().await?;
    let cut = sqlx::query("SELECT count(*) FROM public.products")
        .execute(&mut *conn)
        .await;
    assert!(cut.is_err(), "the pool's statement timeout applies");
    drop(conn);

    let mut source = pool.acquire().await?;
    let mut target = pool.acquire().await?;
    let report = import::run(&mut source, &mut target, &Options::default()).await?;
    let statuses: Vec<_> = report.outcomes.iter().map(|o| o.status).collect();
    assert_eq!(statuses, [Status::Imported; 4], "{report}");

    // and the connections go back to the pool with its settings
    let timeout: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(&mut *target)
        .await?;
    assert_eq!(timeout, "200ms");
    Ok(())
}
