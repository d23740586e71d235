//! Bounded lists: a page and its total come from one snapshot, and a whole shop is read through a
//! stream instead of an unbounded page.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use futures::TryStreamExt;
use shared_db::shop::{ListParams, MAX_LIMIT, products};

use super::{ALPHA, two_shops};

/// Where the next seeded batch starts numbering (order numbers are unique per category).
static NEXT_BATCH: AtomicI32 = AtomicI32::new(1);

/// `n` more products in alpha's category, written in one statement.
async fn seed(pool: &sqlx::PgPool, n: i32) -> anyhow::Result<()> {
    let base = 10_000 * NEXT_BATCH.fetch_add(1, Ordering::Relaxed);
    sqlx::query!(
        r#"WITH p AS (
               INSERT INTO shop.products (shop_id, category_id, order_number, price)
               SELECT $1, $2, $4 + g, 1.00 FROM generate_series(1, $3) AS g
               RETURNING shop_id, id)
           INSERT INTO shop.product_translations (shop_id, product_id, main_name,
               main_description, main_description_short)
           SELECT shop_id, id, 'Seeded', 'Seeded', 'Seeded' FROM p"#,
        ALPHA.shop.get(),
        ALPHA.category,
        n,
        base
    )
    .execute(pool)
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_total_agrees_with_the_page_under_concurrent_writes() -> anyhow::Result<()> {
    let t = two_shops().await?;
    seed(t.pool(), 40).await?;
    let stop = Arc::new(AtomicBool::new(false));
    // writers keep adding and removing products while the lists run
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (pool, stop) = (t.pool().clone(), stop.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    if (i + w) % 2 == 0 {
                        seed(&pool, 3).await?;
                    } else {
                        sqlx::query!(
                            r#"DELETE FROM shop.products WHERE id IN (
                                   SELECT id FROM shop.products WHERE shop_id = $1
                                     AND order_number >= 1000 ORDER BY random() LIMIT 3)"#,
                            ALPHA.shop.get()
                        )
                        .execute(&pool)
                        .await?;
                    }
                    i += 1;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    let mut conn = t.pool().acquire().await?;
    for round in 0..150 {
        let skip = round % 30;
        let page = products::list(
            &mut conn,
            ALPHA.shop,
            &ListParams::default().sort("order_number").page(skip, 20),
        )
        .await?;
        let n = page.items.len() as i64;
        // what Content-Range promises: rows skip..skip+n of total, and a short page means the end
        assert!(
            page.total >= skip + n,
            "round {round}: {} rows of {}",
            n,
            page.total
        );
        if 0 < n && n < 20 {
            assert_eq!(
                page.total,
                skip + n,
                "round {round}: short page but more rows counted"
            );
        }
        if n > 0 {
            assert_eq!(
                page.content_range.to_string(),
                format!("products {}-{}/{}", skip, skip + n - 1, page.total)
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await??;
    }
    Ok(())
}

#[tokio::test]
async fn a_whole_shop_is_exported_as_a_stream_not_a_page() -> anyhow::Result<()> {
    let t = two_shops().await?;
    seed(t.pool(), 1_200).await?;
    let mut conn = t.pool().acquire().await?;
    // more rows than any page may hold
    let mut stream = products::export(&mut conn, ALPHA.shop);
    let mut seen = 0_i64;
    let mut last = None;
    while let Some(p) = stream.try_next().await? {
        assert_eq!(p.item.shop_id, ALPHA.shop);
        let key = (p.item.created_at, p.item.id);
        assert!(last.is_none_or(|l| l < key), "in (created_at, id) order");
        last = Some(key);
        seen += 1;
    }
    drop(stream);
    assert_eq!(seen, 1_201);
    assert!(seen > MAX_LIMIT);
    Ok(())
}

/// Drains `stream`, pausing `pause` every 100 rows as a slow reader would; the rows read, or the
/// error that ended the stream.
async fn drain_slowly(
    mut stream: impl futures::Stream<Item = shared_db::Result<products::ProductWithTranslation>> + Unpin,
    pause: std::time::Duration,
) -> Result<i64, shared_db::Error> {
    let mut seen = 0_i64;
    while let Some(p) = stream.try_next().await? {
        let _ = p;
        seen += 1;
        if seen % 100 == 0 {
            tokio::time::sleep(pause).await;
        }
    }
    Ok(seen)
}

#[tokio::test]
async fn a_slow_export_is_cut_by_the_session_limit_unless_its_transaction_lifts_it()
-> anyhow::Result<()> {
    let t = two_shops().await?;
    // Long rows, so the export outgrows the socket buffers and the server waits for the reader.
    seed(t.pool(), 3_000).await?;
    sqlx::query!(
        "UPDATE shop.product_translations SET main_description = repeat('x', 20000)
         WHERE product_id IN (SELECT id FROM shop.products WHERE shop_id = $1)",
        ALPHA.shop.get()
    )
    .execute(t.pool())
    .await?;
    let pause = std::time::Duration::from_millis(25);

    // The session's limit (300 ms here, as a pool's statement_timeout) cuts a slow reader off,
    // and says so: the stream ends with a typed error, not silently short.
    let mut tx = t.pool().begin().await?;
    sqlx::raw_sql("SET LOCAL statement_timeout = '300ms'")
        .execute(&mut *tx)
        .await?;
    let cut = drain_slowly(products::export(&mut tx, ALPHA.shop), pause).await;
    assert!(
        matches!(cut, Err(shared_db::Error::StatementTimeout { .. })),
        "{cut:?}"
    );
    drop(tx);

    // The same export, its transaction's limit lifted explicitly: every row arrives.
    let mut tx = t.pool().begin().await?;
    sqlx::raw_sql("SET LOCAL statement_timeout = '300ms'")
        .execute(&mut *tx)
        .await?;
    products::set_export_timeout(&mut tx, products::ExportTimeout::Unbounded).await?;
    let seen = drain_slowly(products::export(&mut tx, ALPHA.shop), pause).await?;
    assert_eq!(seen, 3_001);
    tx.commit().await?;
    Ok(())
}
