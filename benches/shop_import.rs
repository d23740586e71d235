//! Import benchmark (`cargo bench --bench shop_import`, BENCHMARKS.md "Shop import").
//!
//! Seeds a synthetic old shop backend database (`tests/fixtures/shop_import/old_schema.sql`) with
//! set-based SQL: 50 shops, 200 000 products with a translation and a tag link each, 100 000
//! orders of two items; then imports it into a freshly migrated database (another database on
//! the same server): a dry run, the import, and an idempotent re-run. Prints rows, seconds,
//! rows/s and the process's peak RSS (`VmHWM`) after each step. A first import of a tenth of the
//! data runs before, so the peak of the small and of the full import can be compared: memory is
//! bounded by one batch, not by the data. `BENCH_SHOPS` / `BENCH_PRODUCTS` / `BENCH_ORDERS`
//! change the shape (one shop of 1M products: `BENCH_SHOPS=1 BENCH_PRODUCTS=1000000`).

use std::time::Instant;

use shared_db::shop::import::{self, Options, Report};
use shared_db::testing::TestDatabase;

fn env(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Peak resident set size of this process so far, in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The old backend's rows: `products` products and `orders` orders spread over `shops` shops.
fn seed_sql(shops: i64, products: i64, orders: i64) -> String {
    format!(
        r#"
INSERT INTO public.users (id, email, username, password, active, created_at, mail_offers)
SELECT md5('u' || s)::uuid, 'admin' || s || '@example.com', 'admin' || s,
       '$2b$12$KIXQJ8ZQ9vQ6s1r1Zb8Xeu0yJ9l5h6QyU1l9Y3m5kq1Xr6b2cY7aG', true, now(), false
FROM generate_series(0, {shops} - 1) s;
INSERT INTO public.shops (id, name, description, vat_standard, vat_lower_1, vat_lower_2,
                          vat_lower_3, vat_special, vat_zero, config, shop_type)
SELECT md5('s' || s)::uuid, 'shop ' || s, 'Shop number ' || s, 21, 9, 5, 2, 12, 0,
       '{{"languages": {{"main": "nl", "alt1": "en"}}}}', '{{}}'
FROM generate_series(0, {shops} - 1) s;
INSERT INTO public.shops_users (id, user_id, shop_id)
SELECT md5('su' || s)::uuid, md5('u' || s)::uuid, md5('s' || s)::uuid
FROM generate_series(0, {shops} - 1) s;
INSERT INTO public.categories (id, shop_id, order_number, color)
SELECT md5('c' || c)::uuid, md5('s' || (c % {shops}))::uuid, c / {shops}, '#376E1A'
FROM generate_series(0, {shops} * 10 - 1) c;
INSERT INTO public.category_translations (id, category_id, main_name, main_description, alt1_name)
SELECT md5('ct' || c)::uuid, md5('c' || c)::uuid, 'Categorie ' || c, 'Beschrijving ' || c,
       'Category ' || c
FROM generate_series(0, {shops} * 10 - 1) c;
INSERT INTO public.tags (id, shop_id, name)
SELECT md5('t' || t)::uuid, md5('s' || (t % {shops}))::uuid, 'tag ' || t
FROM generate_series(0, {shops} * 20 - 1) t;
INSERT INTO public.tag_translations (id, tag_id, main_name, alt1_name)
SELECT md5('tt' || t)::uuid, md5('t' || t)::uuid, 'Label ' || t, 'Tag ' || t
FROM generate_series(0, {shops} * 20 - 1) t;
INSERT INTO public.products (id, shop_id, category_id, price, tax_category, created_at,
                             modified_at, max_one, shippable, featured, new_product,
                             order_number, stock)
SELECT md5('p' || p)::uuid, md5('s' || (p % {shops}))::uuid,
       md5('c' || (p % ({shops} * 10)))::uuid, (p % 10000) / 100.0, 'vat_standard',
       now(), now(), false, true, p % 7 = 0, false, p / ({shops} * 10), 1000
FROM generate_series(0, {products} - 1) p;
INSERT INTO public.product_translations (id, product_id, main_name, main_description,
                                         main_description_short, alt1_name, alt1_description)
SELECT md5('pt' || p)::uuid, md5('p' || p)::uuid, 'Product ' || p,
       'Een omschrijving van product ' || p || ' die ongeveer honderd tekens lang is, zoals in een echte winkel.',
       'Product ' || p, 'Product ' || p, 'A description of product ' || p
FROM generate_series(0, {products} - 1) p;
INSERT INTO public.products_to_tags (id, shop_id, product_id, tag_id)
SELECT md5('l' || p)::uuid, md5('s' || (p % {shops}))::uuid, md5('p' || p)::uuid,
       md5('t' || (p % ({shops} * 20)))::uuid
FROM generate_series(0, {products} - 1) p;
INSERT INTO public.orders (id, customer_order_id, shop_id, order_info, created_at, total,
                           status, completed_by, completed_at)
SELECT md5('o' || o)::uuid, o / {shops} + 1, md5('s' || (o % {shops}))::uuid,
       jsonb_build_array(
           jsonb_build_object('product_id', md5('p' || (o % {products}))::uuid, 'price', 12.5,
                              'product_name', 'Product ' || (o % {products}), 'quantity', 1),
           jsonb_build_object('product_id', md5('p' || ((o + {shops}) % {products}))::uuid,
                              'price', 7.25, 'product_name', 'Other', 'quantity', 2)),
       now()::timestamp, 27, CASE WHEN o % 2 = 0 THEN 'complete' ELSE 'pending' END,
       CASE WHEN o % 2 = 0 THEN md5('u' || (o % {shops}))::uuid END,
       CASE WHEN o % 2 = 0 THEN now()::timestamp END
FROM generate_series(0, {orders} - 1) o;
ANALYZE;
"#
    )
}

fn rows(report: &Report) -> u64 {
    report.outcomes.iter().map(|o| o.rows).sum()
}

async fn step(
    label: &str,
    old: &TestDatabase,
    new: &TestDatabase,
    dry_run: bool,
) -> anyhow::Result<Report> {
    let mut source = old.pool().acquire().await?;
    let mut target = new.pool().acquire().await?;
    let started = Instant::now();
    let report = import::run(
        &mut source,
        &mut target,
        &Options {
            dry_run,
            shops: vec![],
        },
    )
    .await?;
    let secs = started.elapsed().as_secs_f64();
    let written: u64 = report.outcomes.iter().map(|o| o.written).sum();
    println!(
        "| {label} | {} | {written} | {secs:.1} | {:.0} | {:.1} |",
        rows(&report),
        rows(&report) as f64 / secs,
        peak_rss_mib()
    );
    anyhow::ensure!(report.entries.is_empty(), "the synthetic data is clean");
    Ok(report)
}

async fn run() -> anyhow::Result<()> {
    let shops = env("BENCH_SHOPS", 50);
    let products = env("BENCH_PRODUCTS", 200_000);
    let orders = env("BENCH_ORDERS", 100_000);
    println!("{shops} shop(s), {products} products, {orders} orders");
    println!("| step | rows read | rows written | s | rows/s | peak RSS MiB |");
    println!("|---|---|---|---|---|---|");
    println!("| start | | | | | {:.1} |", peak_rss_mib());
    for (label, p, o) in [
        ("tenth", products / 10, orders / 10),
        ("full", products, orders),
    ] {
        let old = TestDatabase::empty().await?;
        let seeding = Instant::now();
        sqlx::raw_sql(include_str!("../tests/fixtures/shop_import/old_schema.sql"))
            .execute(old.pool())
            .await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(seed_sql(shops, p, o)))
            .execute(old.pool())
            .await?;
        eprintln!(
            "{label}: seeded {p} products, {o} orders in {:.1} s",
            seeding.elapsed().as_secs_f64()
        );
        let new = TestDatabase::new().await?;
        step(&format!("{label}: dry run"), &old, &new, true).await?;
        step(&format!("{label}: import"), &old, &new, false).await?;
        step(&format!("{label}: re-run"), &old, &new, false).await?;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` must not start the benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("the import benchmark runs with `cargo bench --bench shop_import`");
        return Ok(());
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}
