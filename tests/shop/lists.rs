//! Lists: filters combine with AND, bare values search names, sorts are whitelisted and stable,
//! hostile strings are inert, pages carry a content range, and keyset pages walk everything.

use shared_db::shop::products::{
    self, ProductFields, ProductTranslationInput, ProductWithTranslation,
};
use shared_db::shop::{
    Cursor, ListParams, MAX_LIMIT, ProductId, attribute_options, attributes, categories,
    early_access, faq, licenses, orders, product_attribute_values, roles, shops, tags, users,
};
use sqlx::PgConnection;

use super::{ALPHA, assert_invalid, two_shops};

async fn product(
    conn: &mut PgConnection,
    name: &str,
    alt1: Option<&str>,
    featured: bool,
    stock: i32,
) -> anyhow::Result<ProductId> {
    let mut new = ProductFields::new(
        Some(ALPHA.category),
        ProductTranslationInput {
            main_name: name.into(),
            main_description: format!("About {name}"),
            main_description_short: name.into(),
            alt1_name: alt1.map(Into::into),
            ..Default::default()
        },
    );
    new.featured = featured;
    Ok(products::create(conn, ALPHA.shop, &new, stock)
        .await?
        .item
        .id)
}

fn names(items: &[ProductWithTranslation]) -> Vec<String> {
    items
        .iter()
        .map(|p| p.translation.as_ref().unwrap().main_name.clone())
        .collect()
}

/// Alpha's catalog: the fixture's "alpha socks" plus four products.
async fn catalog(conn: &mut PgConnection) -> anyhow::Result<()> {
    product(conn, "Red Shirt", Some("Rood hemd"), true, 3).await?;
    product(conn, "Blue Shirt", Some("Blauw hemd"), false, 0).await?;
    product(conn, "Red Hat", None, false, 3).await?;
    product(conn, "100% Wool_Scarf", None, true, 1).await?;
    Ok(())
}

/// Names in Rust's byte order, independent of the database collation.
async fn sorted(conn: &mut PgConnection, params: ListParams) -> shared_db::Result<Vec<String>> {
    let mut v = list(conn, params).await?;
    v.sort();
    Ok(v)
}

async fn list(conn: &mut PgConnection, params: ListParams) -> shared_db::Result<Vec<String>> {
    Ok(names(
        &products::list(conn, ALPHA.shop, &params).await?.items,
    ))
}

#[tokio::test]
async fn filters_combine_with_and() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    catalog(&mut conn).await?;
    let p = ListParams::default().sort("main_name");
    assert_eq!(
        list(&mut conn, p.clone().filter("main_name:shirt")).await?,
        ["Blue Shirt", "Red Shirt"]
    );
    assert_eq!(
        list(
            &mut conn,
            p.clone().filter("main_name:shirt").filter("main_name:RED")
        )
        .await?,
        ["Red Shirt"]
    );
    assert_eq!(
        list(
            &mut conn,
            p.clone().filter("main_name:red").filter("featured:false")
        )
        .await?,
        ["Red Hat"]
    );
    assert_eq!(
        list(
            &mut conn,
            p.clone().filter("stock:3").filter("alt1_name:hemd")
        )
        .await?,
        ["Red Shirt"]
    );
    assert!(
        list(
            &mut conn,
            p.clone().filter("main_name:shirt").filter("main_name:hat")
        )
        .await?
        .is_empty()
    );
    // typed columns reject malformed values instead of text-casting them
    assert_invalid(list(&mut conn, p.clone().filter("stock:many")).await);
    assert_invalid(list(&mut conn, p.clone().filter("category_id:not-a-uuid")).await);
    Ok(())
}

#[tokio::test]
async fn a_bare_value_searches_the_names() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    catalog(&mut conn).await?;
    let p = ListParams::default().sort("main_name");
    assert_eq!(list(&mut conn, p.clone().filter("hat")).await?, ["Red Hat"]);
    // alternative-language names are searched too
    assert_eq!(
        list(&mut conn, p.clone().filter("blauw")).await?,
        ["Blue Shirt"]
    );
    // LIKE wildcards in the value match literally
    assert_eq!(
        list(&mut conn, p.clone().filter("100%")).await?,
        ["100% Wool_Scarf"]
    );
    // "d_S" would match "Red Shirt" if `_` were a wildcard
    assert!(list(&mut conn, p.clone().filter("d_S")).await?.is_empty());
    assert_eq!(
        list(&mut conn, p.clone().filter("l_S")).await?,
        ["100% Wool_Scarf"]
    );
    assert!(list(&mut conn, p.clone().filter("%")).await?.len() == 1);

    // other entities search their own name columns
    let page = tags::list(&mut conn, ALPHA.shop, &ListParams::default().filter("sal")).await?;
    assert_eq!(page.total, 1);
    let page = categories::list(
        &mut conn,
        ALPHA.shop,
        &ListParams::default().filter("CLOTHES"),
    )
    .await?;
    assert_eq!(page.total, 1);
    let page = shops::list(&mut conn, &ListParams::default().filter("bet")).await?;
    assert_eq!(page.items[0].name, "beta");
    Ok(())
}

#[tokio::test]
async fn sorting_is_whitelisted_and_stable() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    catalog(&mut conn).await?;
    let p = ListParams::default();
    assert_eq!(
        list(
            &mut conn,
            p.clone().filter("main_name:e").sort("main_name:desc")
        )
        .await?,
        ["Red Shirt", "Red Hat", "Blue Shirt"]
    );
    // ties on stock are broken by the second key, then by id: the same order every time
    let by_stock = list(
        &mut conn,
        p.clone().sort("stock:DESC").sort("main_name:ASC"),
    )
    .await?;
    assert_eq!(
        by_stock,
        [
            "alpha socks",
            "Red Hat",
            "Red Shirt",
            "100% Wool_Scarf",
            "Blue Shirt"
        ]
    );
    let ties = products::list(&mut conn, ALPHA.shop, &p.clone().sort("featured")).await?;
    let again = products::list(&mut conn, ALPHA.shop, &p.clone().sort("featured")).await?;
    let ids = |page: &shared_db::shop::ListPage<ProductWithTranslation>| {
        page.items.iter().map(|i| i.item.id).collect::<Vec<_>>()
    };
    assert_eq!(ids(&ties), ids(&again));

    for bad in [
        "password",
        "shop_id",
        "id:ASC",
        "main_name:SIDEWAYS",
        "attribute_id",
        "",
    ] {
        assert_invalid(list(&mut conn, p.clone().sort(bad)).await);
    }
    assert_invalid(list(&mut conn, p.clone().filter("password:x")).await);
    assert_invalid(list(&mut conn, p.clone().filter(":x")).await);
    Ok(())
}

#[tokio::test]
async fn hostile_filter_and_sort_strings_are_inert() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    catalog(&mut conn).await?;
    let hostile = [
        "'; DROP TABLE shop.products; --",
        "x' OR '1'='1",
        "\" OR 1=1 --",
        "1; DELETE FROM shop.orders",
        "') UNION SELECT * FROM shop.users --",
        "\\'; SELECT pg_sleep(10); --",
    ];
    for h in hostile {
        // as values they are just text that matches nothing
        assert!(
            list(
                &mut conn,
                ListParams::default().filter(format!("main_name:{h}"))
            )
            .await?
            .is_empty()
        );
        assert!(
            list(&mut conn, ListParams::default().filter(h))
                .await
                .map_or(true, |r| r.is_empty())
        );
        // as column names and sort keys they are rejected
        assert_invalid(list(&mut conn, ListParams::default().filter(format!("{h}:x"))).await);
        assert_invalid(list(&mut conn, ListParams::default().sort(h)).await);
        assert_invalid(
            list(
                &mut conn,
                ListParams::default().sort(format!("main_name:{h}")),
            )
            .await,
        );
        assert_invalid(orders::list(&mut conn, ALPHA.shop, &ListParams::default().sort(h)).await);
        assert_invalid(
            users::list(&mut conn, &ListParams::default().filter(format!("{h}:x"))).await,
        );
    }
    // nothing was dropped or deleted
    assert_eq!(
        products::list(&mut conn, ALPHA.shop, &ListParams::default())
            .await?
            .total,
        5
    );
    assert_eq!(
        orders::list(&mut conn, ALPHA.shop, &ListParams::default())
            .await?
            .total,
        1
    );
    Ok(())
}

#[tokio::test]
async fn pages_carry_the_total_and_a_content_range() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    catalog(&mut conn).await?;
    let page = products::list(
        &mut conn,
        ALPHA.shop,
        &ListParams::default()
            .sort("stock:DESC")
            .sort("main_name")
            .page(1, 2),
    )
    .await?;
    assert_eq!(page.total, 5);
    assert_eq!(names(&page.items), ["Red Hat", "Red Shirt"]);
    assert_eq!(page.content_range.to_string(), "products 1-2/5");
    let all = products::list(
        &mut conn,
        ALPHA.shop,
        &ListParams::default().page(0, MAX_LIMIT),
    )
    .await?;
    assert_eq!(all.items.len(), 5);
    assert_eq!(all.content_range.to_string(), "products 0-4/5");
    let past = products::list(&mut conn, ALPHA.shop, &ListParams::default().page(10, 5)).await?;
    assert!(past.items.is_empty());
    assert_eq!(past.content_range.to_string(), "products */5");
    let filtered = products::list(
        &mut conn,
        ALPHA.shop,
        &ListParams::default().filter("main_name:red"),
    )
    .await?;
    assert_eq!(filtered.content_range.to_string(), "products 0-1/2");
    // limits are 1..=MAX_LIMIT: "0 = all", negative and overflowing limits are refused
    for (skip, limit) in [
        (-1, 10),
        (0, 0),
        (0, -1),
        (0, MAX_LIMIT + 1),
        (0, i64::MAX),
        (i64::MAX, i64::MAX),
    ] {
        assert_invalid(
            products::list(
                &mut conn,
                ALPHA.shop,
                &ListParams::default().page(skip, limit),
            )
            .await,
        );
    }

    // every entity lists with defaults
    assert_eq!(
        categories::list(&mut conn, ALPHA.shop, &ListParams::default())
            .await?
            .content_range
            .to_string(),
        "categories 0-0/1"
    );
    assert_eq!(
        attributes::list(&mut conn, ALPHA.shop, &ListParams::default())
            .await?
            .total,
        1
    );
    assert_eq!(
        attribute_options::list(&mut conn, ALPHA.shop, &ListParams::default())
            .await?
            .total,
        1
    );
    assert_eq!(
        product_attribute_values::list(&mut conn, ALPHA.shop, &ListParams::default())
            .await?
            .total,
        1
    );
    assert_eq!(
        users::list(&mut conn, &ListParams::default().filter("username:alpha"))
            .await?
            .total,
        1
    );
    assert_eq!(
        roles::list(&mut conn, &ListParams::default()).await?.total,
        0
    );
    assert_eq!(
        early_access::list(&mut conn, &ListParams::default())
            .await?
            .total,
        0
    );
    assert_eq!(faq::list(&mut conn, &ListParams::default()).await?.total, 0);
    assert_eq!(
        licenses::list_global(&mut conn, &ListParams::default())
            .await?
            .total,
        0
    );
    Ok(())
}

#[tokio::test]
async fn keyset_pages_walk_every_product_once() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    for i in 0..10 {
        product(&mut conn, &format!("Item {i:02}"), None, i % 2 == 0, 1).await?;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<Cursor> = None;
    let mut pages = 0;
    loop {
        let page = products::list_after(&mut conn, ALPHA.shop, &[], cursor.as_ref(), 4).await?;
        pages += 1;
        seen.extend(page.items.iter().map(|p| p.item.id));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 3); // 11 products: 4 + 4 + 3
    let all = products::list(
        &mut conn,
        ALPHA.shop,
        &ListParams::default().sort("created_at"),
    )
    .await?;
    assert_eq!(
        seen,
        all.items.iter().map(|p| p.item.id).collect::<Vec<_>>()
    );

    // filters apply to keyset pages too
    let featured =
        products::list_after(&mut conn, ALPHA.shop, &["featured:true".into()], None, 100).await?;
    assert_eq!(featured.items.len(), 5);
    assert!(featured.next.is_none());
    let garbage: Cursor = "garbage".parse()?;
    assert_invalid(products::list_after(&mut conn, ALPHA.shop, &[], Some(&garbage), 4).await);
    assert_invalid(products::list_after(&mut conn, ALPHA.shop, &[], None, i64::MAX).await);
    assert_invalid(products::list_after(&mut conn, ALPHA.shop, &[], None, 0).await);
    Ok(())
}

#[tokio::test]
async fn keyset_pages_walk_orders_newest_first() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    for _ in 0..6 {
        orders::create(&mut conn, ALPHA.shop, &Default::default(), None).await?;
    }
    let mut numbers = Vec::new();
    let mut cursor: Option<Cursor> = None;
    loop {
        let page = orders::list_after(&mut conn, ALPHA.shop, &[], cursor.as_ref(), 3).await?;
        numbers.extend(page.items.iter().map(|o| o.customer_order_id));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(numbers, [7, 6, 5, 4, 3, 2, 1]);
    Ok(())
}

#[tokio::test]
async fn products_filter_by_attributes() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    let colour = attributes::create(
        &mut conn,
        ALPHA.shop,
        &attributes::AttributeFields {
            name: "colour".into(),
            unit: None,
            translation: Some(shared_db::shop::tags::NameTranslationInput {
                main_name: "Colour".into(),
                alt1_name: Some("Kleur".into()),
                alt2_name: None,
            }),
        },
    )
    .await?
    .item;
    let red = attribute_options::create(&mut *conn, ALPHA.shop, colour.id, "red").await?;
    let large = attribute_options::create(&mut *conn, ALPHA.shop, ALPHA.attribute, "large").await?;

    let small_red = product(&mut conn, "Small red", None, false, 1).await?;
    let large_red = product(&mut conn, "Large red", None, false, 1).await?;
    let plain = product(&mut conn, "Plain", None, false, 1).await?;
    let _ = plain;
    for (p, attr, opt) in [
        (small_red, ALPHA.attribute, ALPHA.option),
        (small_red, colour.id, red.id),
        (large_red, ALPHA.attribute, large.id),
        (large_red, colour.id, red.id),
    ] {
        product_attribute_values::create(&mut *conn, ALPHA.shop, p, attr, Some(opt)).await?;
    }
    let p = ListParams::default().sort("main_name");
    // by attribute id: the fixture's socks (size small) and both new products
    assert_eq!(
        sorted(
            &mut conn,
            p.clone()
                .filter(format!("attribute_id:{}", ALPHA.attribute))
        )
        .await?,
        ["Large red", "Small red", "alpha socks"]
    );
    // several option ids: all must match
    assert_eq!(
        sorted(
            &mut conn,
            p.clone()
                .filter(format!("option_id:{}", ALPHA.option))
                .filter(format!("option_id:{}", red.id))
        )
        .await?,
        ["Small red"]
    );
    assert_eq!(
        sorted(&mut conn, p.clone().filter(format!("option_id:{}", red.id))).await?,
        ["Large red", "Small red"]
    );
    // by option value key
    assert_eq!(
        sorted(&mut conn, p.clone().filter("option_value_key:LARG")).await?,
        ["Large red"]
    );
    // by attribute name in any language
    assert_eq!(
        sorted(&mut conn, p.clone().filter("attribute_name:kleur")).await?,
        ["Large red", "Small red"]
    );
    assert_eq!(
        sorted(&mut conn, p.clone().filter("attribute_name:maat")).await?,
        ["Large red", "Small red", "alpha socks"]
    );
    // combined with other filters
    assert_eq!(
        sorted(
            &mut conn,
            p.clone()
                .filter("attribute_name:colour")
                .filter("option_value_key:small")
        )
        .await?,
        ["Small red"]
    );
    Ok(())
}
