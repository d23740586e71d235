//! Importing the old shop backend: a database laid out as `shop.md` describes it (tables in
//! `public`, nullable foreign keys, no unique links), holding two clean shops (alpha, beta), one
//! shop whose rows break every per-shop rule (gamma), and rows that belong to no shop
//! (`tests/fixtures/shop_import/`), imported with `shared_db::shop::import::run`.

use std::str::FromStr;

use rust_decimal::Decimal;
use shared_db::shop::import::{self, Options, Report, Status};
use shared_db::shop::orders::{self, OrderFields, OrderItem, OrderStatus};
use shared_db::shop::{Lang, ListParams, ProductId, ShopId, categories, products, tags};
use shared_db::testing::TestDatabase;
use sqlx::PgConnection;
use uuid::Uuid;

mod blocking;
mod summary;
mod timeouts;

const OLD_SCHEMA: &str = include_str!("../fixtures/shop_import/old_schema.sql");
const OLD_ROWS: &str = include_str!("../fixtures/shop_import/old_rows.sql");

fn id(s: &str) -> Uuid {
    Uuid::parse_str(s).unwrap()
}

const ALPHA: &str = "a0000000-0000-0000-0000-000000000001";
const BETA: &str = "b0000000-0000-0000-0000-000000000001";
const GAMMA: &str = "c0000000-0000-0000-0000-000000000001";
const ALICE: &str = "10000000-0000-0000-0000-000000000001";

/// A migrated database that also holds the old backend's tables in `public`: the import's
/// "same database" case.
async fn old_and_new_in_one() -> anyhow::Result<TestDatabase> {
    Ok(TestDatabase::with_fixture(concat!(
        include_str!("../fixtures/shop_import/old_schema.sql"),
        include_str!("../fixtures/shop_import/old_rows.sql")
    ))
    .await?)
}

async fn run(db: &TestDatabase, options: &Options) -> anyhow::Result<Report> {
    let mut source = db.pool().acquire().await?;
    let mut target = db.pool().acquire().await?;
    Ok(import::run(&mut source, &mut target, options).await?)
}

fn dry() -> Options {
    Options {
        dry_run: true,
        shops: vec![],
    }
}

/// Every refused row of the fixture, once: the global rows first, then the rows without a
/// shop, then gamma's rows table by table (its refused product's dependents with it).
const EXPECTED_ENTRIES: &str = "\
users                      10000000-0000-0000-0000-000000000003 not_bcrypt              password: 7 characters, not a bcrypt hash
users                      10000000-0000-0000-0000-000000000004 required                active
roles                      30000000-0000-0000-0000-000000000002 required                name
roles_users                30000000-0000-0000-0000-000000000012 rejected_user           user_id=10000000-0000-0000-0000-000000000003
faq                        40000000-0000-0000-0000-000000000002 duplicate_value         question=\"Do you ship?\"
early_access               50000000-0000-0000-0000-000000000002 required                email
tags                       e0000000-0000-0000-0000-000000000021 dangling_shop           shop_id=e0000000-0000-0000-0000-0000000000ff
tag_translations           e0000000-0000-0000-0000-000000000121 orphan_translation      tag_id=NULL
tag_translations           e0000000-0000-0000-0000-000000000122 orphan_translation      tag_id=e0000000-0000-0000-0000-0000000000fe
products                   e0000000-0000-0000-0000-000000000041 null_shop               shop_id=NULL
product_translations       e0000000-0000-0000-0000-000000000141 parent_without_shop     product_id=e0000000-0000-0000-0000-000000000041
orders                     e0000000-0000-0000-0000-000000000081 null_shop               shop_id=NULL
licenses                   e0000000-0000-0000-0000-000000000091 parent_without_shop     order_id=e0000000-0000-0000-0000-000000000081
info_requests              e0000000-0000-0000-0000-0000000000a1 null_shop               shop_id=NULL
shops_users                c0000000-0000-0000-0000-0000000000f2 duplicate_link          user_id=10000000-0000-0000-0000-000000000001
shops_users                c0000000-0000-0000-0000-0000000000f3 rejected_user           user_id=10000000-0000-0000-0000-000000000003
categories                 c0000000-0000-0000-0000-000000000012 duplicate_number        order_number=1
category_translations      c0000000-0000-0000-0000-000000000112 duplicate_translation   category_id=c0000000-0000-0000-0000-000000000011
tags                       c0000000-0000-0000-0000-000000000022 blank_name              name=\"   \"
products                   c0000000-0000-0000-0000-000000000042 negative_stock          stock=-3
products                   c0000000-0000-0000-0000-000000000043 inexact_money           price=19.999
products                   c0000000-0000-0000-0000-000000000044 cross_shop              category_id=a0000000-0000-0000-0000-000000000011
product_translations       c0000000-0000-0000-0000-000000000141 too_long                main_description: 1000001 characters (at most 1000000)
product_translations       c0000000-0000-0000-0000-000000000142 refused_parent          product_id=c0000000-0000-0000-0000-000000000042
products_to_tags           c0000000-0000-0000-0000-000000000052 duplicate_link          product_id=c0000000-0000-0000-0000-000000000041 tag_id=c0000000-0000-0000-0000-000000000021
products_to_tags           c0000000-0000-0000-0000-000000000053 cross_shop              tag_id=a0000000-0000-0000-0000-000000000021
products_to_tags           c0000000-0000-0000-0000-000000000054 refused_parent          product_id=c0000000-0000-0000-0000-000000000042
product_attribute_values   c0000000-0000-0000-0000-000000000061 cross_shop              attribute_id=a0000000-0000-0000-0000-000000000031
info_requests              c0000000-0000-0000-0000-0000000000a1 refused_parent          product_id=c0000000-0000-0000-0000-000000000042
orders                     c0000000-0000-0000-0000-000000000081 unknown_product         product_id=c0000000-0000-0000-0000-0000000000ff
orders                     c0000000-0000-0000-0000-000000000082 completer_not_member    completed_by=10000000-0000-0000-0000-000000000002
orders                     c0000000-0000-0000-0000-000000000083 inexact_money           total=10.005
";

/// The fixture's bad rows are marked with a comment naming their rule; each is listed once.
#[tokio::test]
async fn dry_run_lists_each_refused_row_once_and_writes_nothing() -> anyhow::Result<()> {
    let db = old_and_new_in_one().await?;
    let report = run(&db, &dry()).await?;

    assert_eq!(report.entries_text(), EXPECTED_ENTRIES);
    let marked = OLD_ROWS.matches("\n -- ").count();
    assert_eq!(report.entries.len(), marked, "one entry per marked row");
    let mut ids: Vec<_> = report.entries.iter().map(|e| e.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), report.entries.len(), "no row listed twice");

    let outcomes: Vec<_> = report
        .outcomes
        .iter()
        .map(|o| (o.name.as_str(), o.status, o.rows))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("(global)", Status::WouldImport, 7),
            ("alpha", Status::WouldImport, 22),
            ("beta", Status::WouldImport, 8),
            ("gamma", Status::WouldImport, 7),
        ]
    );
    let written: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM shop.users) + (SELECT count(*) FROM shop.shops)
              + (SELECT count(*) FROM shop.licenses)",
    )
    .fetch_one(db.pool())
    .await?;
    assert_eq!(written, 0, "a dry run writes nothing");

    let json = serde_json::to_value(&report)?;
    assert_eq!(json["entries"][19]["table"], "products");
    assert_eq!(json["entries"][19]["rule"], "negative_stock");
    assert_eq!(json["entries"][19]["value"], "stock=-3");
    assert_eq!(json["entries"][19]["shop"], GAMMA);
    print!("{report}");
    Ok(())
}

/// The global tables besides users (compared by id like the shops' tables).
const GLOBAL_TABLES: [&str; 4] = ["roles", "roles_users", "faq", "early_access"];

/// Every shop-owned table the import writes.
const TABLES: [&str; 17] = [
    "shops",
    "shops_users",
    "categories",
    "category_translations",
    "tags",
    "tag_translations",
    "attributes",
    "attribute_translations",
    "attribute_options",
    "products",
    "product_translations",
    "products_to_tags",
    "product_attribute_values",
    "accounts",
    "orders",
    "licenses",
    "info_requests",
];

async fn ids(conn: &mut PgConnection, schema: &str, table: &str) -> anyhow::Result<Vec<Uuid>> {
    let sql = format!("SELECT id FROM {schema}.{table} ORDER BY id");
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_all(conn)
        .await?)
}

#[tokio::test]
async fn import_brings_every_good_row_with_its_id_and_values() -> anyhow::Result<()> {
    let db = old_and_new_in_one().await?;
    let dry_run = run(&db, &dry()).await?;
    let report = run(&db, &Options::default()).await?;
    assert_eq!(
        report.entries, dry_run.entries,
        "the same report as the dry run"
    );
    let statuses: Vec<_> = report.outcomes.iter().map(|o| o.status).collect();
    assert_eq!(
        statuses,
        [
            Status::Imported,
            Status::Imported,
            Status::Imported,
            Status::Imported
        ]
    );

    let mut conn = db.pool().acquire().await?;
    // every good row, by id: every row of the old database but the refused ones (gamma's
    // good rows come over too: its refused rows block nothing else)
    let refused: Vec<Uuid> = report.entries.iter().map(|e| e.id).collect();
    for table in TABLES.iter().chain(&GLOBAL_TABLES) {
        let old: Vec<Uuid> = ids(&mut conn, "public", table)
            .await?
            .into_iter()
            .filter(|i| !refused.contains(i))
            .collect();
        let new = ids(&mut conn, "shop", table).await?;
        assert_eq!(new, old, "{table}");
        assert!(!new.is_empty(), "{table}: the fixture has good rows");
    }
    let users = ids(&mut conn, "shop", "users").await?;
    assert_eq!(
        users,
        [id(ALICE), id("10000000-0000-0000-0000-000000000002")]
    );

    // the same values, compared column by column in SQL (old money as the decimal it prints as)
    let differing: Vec<(String, Uuid)> = sqlx::query_as(
        r#"SELECT 'products', n.id FROM shop.products n JOIN public.products o USING (id)
           WHERE (o.shop_id, o.category_id, o.price::numeric, o.tax_category,
                  o.discounted_price::numeric, o.discounted_from AT TIME ZONE 'UTC',
                  o.discounted_to AT TIME ZONE 'UTC', o.image_1, o.created_at, o.modified_at,
                  o.recurring_price_monthly::numeric, o.max_one, o.digital, o.shippable,
                  o.featured, o.new_product, o.order_number, o.stock)
                 IS DISTINCT FROM
                 (n.shop_id, n.category_id, n.price, n.tax_category, n.discounted_price,
                  n.discounted_from, n.discounted_to, n.image_1, n.created_at, n.modified_at,
                  n.recurring_price_monthly, n.max_one, n.digital, n.shippable, n.featured,
                  n.new_product, n.order_number, n.stock)
           UNION ALL
           SELECT 'product_translations', n.id FROM shop.product_translations n
           JOIN public.product_translations o USING (id)
           WHERE (o.product_id, o.main_name, o.main_description, o.main_description_short,
                  o.alt1_name, o.alt1_description, o.alt1_description_short)
                 IS DISTINCT FROM
                 (n.product_id, n.main_name, n.main_description, n.main_description_short,
                  n.alt1_name, n.alt1_description, n.alt1_description_short)
           UNION ALL
           SELECT 'categories', n.id FROM shop.categories n JOIN public.categories o USING (id)
           WHERE (o.shop_id, o.color, o.icon, o.order_number, o.main_image)
                 IS DISTINCT FROM (n.shop_id, n.color, n.icon, n.order_number, n.main_image)
           UNION ALL
           SELECT 'orders', n.id FROM shop.orders n JOIN public.orders o USING (id)
           WHERE (o.customer_order_id, o.notes, o.shop_id, o.account_id,
                  o.created_at AT TIME ZONE 'UTC', o.total::numeric, o.status, o.completed_by,
                  o.completed_at AT TIME ZONE 'UTC')
                 IS DISTINCT FROM
                 (n.customer_order_id, n.notes, n.shop_id, n.account_id, n.created_at, n.total,
                  n.status::text, n.completed_by, n.completed_at)
           UNION ALL
           SELECT 'shops', n.id FROM shop.shops n JOIN public.shops o USING (id)
           WHERE (o.name, o.description, o.allowed_ips, o.vat_lower_1, o.config,
                  o.stripe_public_key, o.created_at, o.modified_at)
                 IS DISTINCT FROM
                 (n.name, n.description, n.allowed_ips, n.vat_lower_1, n.config,
                  n.stripe_public_key, n.created_at, n.modified_at)
           UNION ALL
           SELECT 'users', n.id FROM shop.users n JOIN public.users o USING (id)
           WHERE (o.email, o.username, o.password, o.active, o.created_at, o.mail_offers)
                 IS DISTINCT FROM (n.email, n.username, n.password, n.active, n.created_at,
                                   n.mail_offers)
           UNION ALL
           SELECT 'accounts', n.id FROM shop.accounts n JOIN public.accounts o USING (id)
           WHERE (o.shop_id, o.name, o.details::jsonb) IS DISTINCT FROM (n.shop_id, n.name, n.details)
           UNION ALL
           SELECT 'licenses', n.id FROM shop.licenses n JOIN public.licenses o USING (id)
           WHERE (o.name, o.is_recurring, o.start_date, o.end_date, o.improviser_user, o.seats,
                  o.order_id, o.created_at)
                 IS DISTINCT FROM (n.name, n.is_recurring, n.start_date, n.end_date,
                                   n.improviser_user, n.seats, n.order_id, n.created_at)"#,
    )
    .fetch_all(&mut *conn)
    .await?;
    assert_eq!(differing, [], "rows whose values changed");

    // order items keep their product ids; prices become the library's two-decimal strings
    let info: serde_json::Value = sqlx::query_scalar(
        "SELECT order_info FROM shop.orders WHERE id = 'a0000000-0000-0000-0000-000000000081'",
    )
    .fetch_one(&mut *conn)
    .await?;
    assert_eq!(
        info,
        serde_json::json!([{"description": "blue", "price": "19.99",
            "product_id": "a0000000-0000-0000-0000-000000000041",
            "product_name": "Blauw hemd", "quantity": 2}])
    );
    // the shop's next order number continues after the imported ones; licences name the shop
    // of their order
    let counter: i32 = sqlx::query_scalar(
        "SELECT last_customer_order_id FROM shop.order_counters WHERE shop_id = $1",
    )
    .bind(id(ALPHA))
    .fetch_one(&mut *conn)
    .await?;
    assert_eq!(counter, 2);
    let license_shop: Option<Uuid> = sqlx::query_scalar(
        "SELECT shop_id FROM shop.licenses WHERE id = 'a0000000-0000-0000-0000-000000000091'",
    )
    .fetch_one(&mut *conn)
    .await?;
    assert_eq!(license_shop, Some(id(ALPHA)));
    Ok(())
}

/// A digest of every table the import writes.
async fn digest(conn: &mut PgConnection) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for table in TABLES
        .iter()
        .chain(&GLOBAL_TABLES)
        .chain(&["users", "order_counters"])
    {
        let order = if *table == "order_counters" {
            "shop_id"
        } else {
            "id"
        };
        let sql = format!(
            "SELECT coalesce(md5(string_agg(t::text, '|' ORDER BY t.{order})), '') FROM shop.{table} t"
        );
        out.push(
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_one(&mut *conn)
                .await?,
        );
    }
    Ok(out)
}

#[tokio::test]
async fn a_second_run_changes_nothing() -> anyhow::Result<()> {
    let db = old_and_new_in_one().await?;
    let first = run(&db, &Options::default()).await?;
    let before = digest(&mut *db.pool().acquire().await?).await?;

    let second = run(&db, &Options::default()).await?;
    let after = digest(&mut *db.pool().acquire().await?).await?;

    assert_eq!(after, before);
    assert_eq!(second.entries, first.entries);
    for (o1, o2) in first.outcomes.iter().zip(&second.outcomes) {
        assert_eq!((o2.status, o2.rows), (o1.status, o1.rows), "{}", o1.name);
        assert_eq!(o2.written, 0, "{}: nothing new", o1.name);
    }
    assert_eq!(first.outcomes[1].written, 22, "alpha, first run");
    Ok(())
}

/// Fixing gamma's refused rows in the old database and running again imports them (and the
/// rows that depended on them), and nothing else.
#[tokio::test]
async fn after_the_old_rows_are_fixed_a_rerun_imports_the_refused_rows() -> anyhow::Result<()> {
    let db = old_and_new_in_one().await?;
    run(&db, &Options::default()).await?;
    sqlx::raw_sql(
        "DELETE FROM public.shops_users WHERE id IN ('c0000000-0000-0000-0000-0000000000f2',
                                                     'c0000000-0000-0000-0000-0000000000f3');
         UPDATE public.categories SET order_number = 2 WHERE id = 'c0000000-0000-0000-0000-000000000012';
         DELETE FROM public.category_translations WHERE id = 'c0000000-0000-0000-0000-000000000112';
         UPDATE public.tags SET name = 'old' WHERE id = 'c0000000-0000-0000-0000-000000000022';
         UPDATE public.products SET stock = 0 WHERE id = 'c0000000-0000-0000-0000-000000000042';
         UPDATE public.products SET price = 19.99 WHERE id = 'c0000000-0000-0000-0000-000000000043';
         UPDATE public.products SET category_id = 'c0000000-0000-0000-0000-000000000011'
             WHERE id = 'c0000000-0000-0000-0000-000000000044';
         UPDATE public.product_translations SET main_description = 'short'
             WHERE id = 'c0000000-0000-0000-0000-000000000141';
         DELETE FROM public.products_to_tags WHERE id IN ('c0000000-0000-0000-0000-000000000052',
                                                          'c0000000-0000-0000-0000-000000000053');
         DELETE FROM public.product_attribute_values WHERE id = 'c0000000-0000-0000-0000-000000000061';
         DELETE FROM public.orders WHERE id IN ('c0000000-0000-0000-0000-000000000081',
                                                'c0000000-0000-0000-0000-000000000082');
         UPDATE public.orders SET total = 10 WHERE id = 'c0000000-0000-0000-0000-000000000083';",
    )
    .execute(db.pool())
    .await?;

    let report = run(&db, &Options::default()).await?;
    let gamma = &report.outcomes[3];
    assert_eq!(
        (gamma.name.as_str(), gamma.status),
        ("gamma", Status::Imported)
    );
    // 7 good rows came over in the first run; the 7 fixed rows and the 3 that depended on
    // product 42 come now
    assert_eq!((gamma.rows, gamma.written), (17, 10));
    assert!(report.outcomes[1..3].iter().all(|o| o.written == 0));
    assert!(
        report.entries.iter().all(|e| e.shop.is_none()),
        "only rows without a shop remain"
    );
    Ok(())
}

/// What the library does with a shop, it does with an imported one.
#[tokio::test]
async fn imported_shops_work_through_the_library() -> anyhow::Result<()> {
    let db = old_and_new_in_one().await?;
    run(&db, &Options::default()).await?;
    let mut conn = db.pool().acquire().await?;
    let alpha = ShopId::new(id(ALPHA));
    let shirt = ProductId::new(id("a0000000-0000-0000-0000-000000000041"));

    let page = products::list(&mut conn, alpha, &ListParams::default()).await?;
    let names: Vec<_> = page.items.iter().map(|p| p.name(Lang::Main)).collect();
    assert_eq!(names, [Some("Blauw hemd"), Some("E-boek")]);
    assert_eq!(page.total, 2);
    let product = products::get(&mut *conn, alpha, shirt).await?;
    assert_eq!(product.item.price, Some(Decimal::from_str("19.99")?));
    assert_eq!(
        products::name(&mut *conn, alpha, shirt, Lang::Alt1).await?,
        "Blue shirt"
    );
    assert_eq!(
        products::name(
            &mut *conn,
            alpha,
            ProductId::new(id("a0000000-0000-0000-0000-000000000042")),
            Lang::Alt1
        )
        .await?,
        "E-boek",
        "no alt1 name: falls back to main"
    );
    let cats = categories::list(&mut conn, alpha, &ListParams::default()).await?;
    let cat_names: Vec<_> = cats.items.iter().map(|c| c.name(Lang::Alt1)).collect();
    assert_eq!(cat_names, [Some("Shirts"), Some("Broeken")]);
    let tag_page = tags::list(&mut conn, alpha, &ListParams::default()).await?;
    assert_eq!(tag_page.items[0].name(Lang::Alt1), Some("Sale"));

    let imported = orders::get(
        &mut *conn,
        alpha,
        id("a0000000-0000-0000-0000-000000000081"),
    )
    .await?;
    assert_eq!(imported.status, OrderStatus::Complete);
    assert_eq!(imported.order_info.0[0].product_id, shirt);
    assert_eq!(imported.total, Some(Decimal::from_str("39.98")?));
    let listed = orders::list(&mut conn, alpha, &ListParams::default()).await?;
    assert_eq!(listed.total, 2);

    // a new order continues the shop's numbering, and completing it takes stock
    let fields = OrderFields {
        account_id: Some(id("a0000000-0000-0000-0000-000000000071")),
        notes: None,
        items: vec![OrderItem {
            description: None,
            price: Decimal::from_str("19.99")?,
            product_id: shirt,
            product_name: "Blauw hemd".into(),
            quantity: 2,
        }],
        total: Some(Decimal::from_str("39.98")?),
    };
    let order = orders::create(&mut conn, alpha, &fields, None).await?;
    assert_eq!(order.customer_order_id, 3);
    orders::complete(&mut conn, alpha, order.id, id(ALICE)).await?;
    assert_eq!(products::get(&mut *conn, alpha, shirt).await?.item.stock, 3);
    Ok(())
}

/// The old database may be another database; `--shop` limits the import to the shops named.
#[tokio::test]
async fn imports_from_another_database_and_only_the_shops_asked_for() -> anyhow::Result<()> {
    let old = TestDatabase::empty().await?;
    sqlx::raw_sql(OLD_SCHEMA).execute(old.pool()).await?;
    sqlx::raw_sql(OLD_ROWS).execute(old.pool()).await?;
    let new = TestDatabase::new().await?;

    let mut source = old.pool().acquire().await?;
    let mut target = new.pool().acquire().await?;
    let options = Options {
        dry_run: false,
        shops: vec![id(BETA)],
    };
    let report = import::run(&mut source, &mut target, &options).await?;
    let outcomes: Vec<_> = report
        .outcomes
        .iter()
        .map(|o| (o.name.as_str(), o.status, o.written))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("(global)", Status::Imported, 7),
            ("beta", Status::Imported, 8)
        ]
    );
    let shops: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM shop.shops")
        .fetch_all(new.pool())
        .await?;
    assert_eq!(shops, [id(BETA)]);
    Ok(())
}
