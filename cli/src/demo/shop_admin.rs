//! Shop admin: catalog, lists, translations, last-item race, stock.

use rust_decimal::Decimal;
use shared_db::shop::{
    Lang, ListParams, ShopId, accounts, attribute_options, attributes, categories, orders,
    product_attribute_values, products, products_to_tags, shops, shops_users, tags, users,
};
use shared_db::{Database, Error};

use super::{Checks, heading, short};

/// Products the shop admin creates.
pub(super) const PRODUCTS: usize = 30;

/// Shop admin: catalog, lists, translations, last-item race, stock.
pub(super) async fn run(
    db: &Database,
    run_id: &str,
    checks: &mut Checks,
) -> anyhow::Result<ShopId> {
    heading("shop admin");
    let shop = shops::create(
        db.pool(),
        &shops::ShopFields::named(format!("Demo poster shop {run_id}")),
    )
    .await?;
    println!("shop created: {} ({})", shop.name, short(shop.id.get()));
    let admin = users::create(
        db.pool(),
        &users::UserFields {
            email: Some(format!("admin+{run_id}@example.com")),
            username: Some(format!("admin-{run_id}")),
            first_name: Some("Grace".into()),
            password: Some("correct horse battery staple".into()),
            ..Default::default()
        },
    )
    .await?;
    shops_users::add(db.pool(), shop.id, admin.id).await?;
    println!(
        "admin user {} can manage it",
        admin.email.as_deref().unwrap_or("?")
    );

    let mut conn = db.acquire().await?;
    let mut cats = Vec::new();
    for (main, alt1) in [
        ("Mugs", "Mokken"),
        ("Shirts", "Shirts"),
        ("Posters", "Posters"),
    ] {
        let c = categories::create(
            &mut conn,
            shop.id,
            &categories::CategoryFields {
                translation: categories::CategoryTranslationInput {
                    main_name: main.into(),
                    main_description: format!("All our {}", main.to_lowercase()),
                    alt1_name: Some(alt1.into()),
                    alt1_description: Some(format!("Al onze {}", alt1.to_lowercase())),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await?;
        cats.push((main, c.item.id));
    }
    let mut tag_ids = Vec::new();
    for (main, alt1) in [("sale", "uitverkoop"), ("gift", "cadeau")] {
        let t = tags::create(
            &mut conn,
            shop.id,
            &tags::TagFields {
                name: Some(main.into()),
                translation: tags::NameTranslationInput {
                    main_name: main.into(),
                    alt1_name: Some(alt1.into()),
                    alt2_name: None,
                },
            },
        )
        .await?;
        tag_ids.push(t.item.id);
    }
    let colour = attributes::create(
        &mut conn,
        shop.id,
        &attributes::AttributeFields {
            name: "colour".into(),
            unit: None,
            translation: Some(tags::NameTranslationInput {
                main_name: "Colour".into(),
                alt1_name: Some("Kleur".into()),
                alt2_name: None,
            }),
        },
    )
    .await?;
    let mut options = Vec::new();
    for key in ["red", "blue", "black"] {
        options.push(
            attribute_options::create(db.pool(), shop.id, colour.item.id, key)
                .await?
                .id,
        );
    }
    println!(
        "{} categories, {} tags, attribute \"colour\" with {} options",
        cats.len(),
        tag_ids.len(),
        options.len()
    );

    let adjectives = [
        "Classic", "Retro", "Minimal", "Bold", "Vintage", "Neon", "Pastel", "Nordic", "Urban",
        "Tiny",
    ];
    let mut product_ids = Vec::new();
    for i in 0..PRODUCTS {
        let (cat_name, cat_id) = cats[i % cats.len()];
        let singular = cat_name.trim_end_matches('s');
        let adjective = adjectives[i / cats.len()];
        let last_item = i == PRODUCTS - 1;
        let main_name = if last_item {
            "Signed limited-edition poster".to_owned()
        } else {
            format!("{adjective} {}", singular.to_lowercase())
        };
        // every tenth product has no alt1 name: shown in alt1 it falls back to the main name
        let alt1_name = (i % 10 != 4).then(|| format!("{main_name} (NL)"));
        let mut new = products::ProductFields::new(
            Some(cat_id),
            products::ProductTranslationInput {
                main_name: main_name.clone(),
                main_description: format!(
                    "A {} {}.",
                    adjective.to_lowercase(),
                    singular.to_lowercase()
                ),
                main_description_short: adjective.into(),
                alt1_name,
                alt1_description: Some(format!("Een {} product.", adjective.to_lowercase())),
                ..Default::default()
            },
        );
        new.price = Some(Decimal::new(950 + (i as i64 * 7 % 23) * 100, 2));
        let stock = if last_item { 1 } else { 5 + (i as i32 % 7) };
        new.featured = i % 4 == 0;
        new.new_product = i % 5 == 0;
        let p = products::create(&mut conn, shop.id, &new, stock).await?;
        if i % 3 == 0 {
            products_to_tags::link(db.pool(), shop.id, p.item.id, tag_ids[0]).await?;
        }
        if i % 7 == 0 {
            products_to_tags::link(db.pool(), shop.id, p.item.id, tag_ids[1]).await?;
        }
        product_attribute_values::create(
            db.pool(),
            shop.id,
            p.item.id,
            colour.item.id,
            Some(options[(i / cats.len()) % options.len()]),
        )
        .await?;
        product_ids.push(p.item.id);
        if (i + 1) % 10 == 0 {
            println!("  products created: {}/{PRODUCTS}", i + 1);
        }
    }

    let shirts = cats[1].1;
    for skip in [0, 5] {
        let params = ListParams::default()
            .filter(format!("category_id:{shirts}"))
            .filter("option_value_key:bl") // colour blue or black
            .sort("price:DESC")
            .page(skip, 5);
        let page = products::list(&mut conn, shop.id, &params).await?;
        println!(
            "GET /products?filter=category_id:Shirts&filter=option_value_key:bl&sort=price:DESC&skip={skip}&limit=5 → Content-Range: {}",
            page.content_range
        );
        for p in &page.items {
            println!(
                "    {:<22} {:>6.2}  stock {}",
                p.name(Lang::Main).unwrap_or("?"),
                p.item.price.unwrap_or_default(),
                p.item.stock
            );
        }
    }
    let all = products::list(&mut conn, shop.id, &ListParams::default().page(0, 10)).await?;
    checks.check(
        all.total == PRODUCTS as i64
            && all.content_range.to_string() == format!("products 0-9/{PRODUCTS}"),
        format!(
            "first page of all products: Content-Range: {}",
            all.content_range
        ),
    );

    let translated = products::get(db.pool(), shop.id, product_ids[0]).await?;
    let untranslated = products::get(db.pool(), shop.id, product_ids[4]).await?;
    println!(
        "in alt1: {:?} (main {:?}); {:?} has no alt1 name → falls back to {:?}",
        translated.name(Lang::Alt1).unwrap_or("?"),
        translated.name(Lang::Main).unwrap_or("?"),
        untranslated.name(Lang::Main).unwrap_or("?"),
        products::name(db.pool(), shop.id, product_ids[4], Lang::Alt1).await?
    );

    // Two customers race for the last signed poster.
    let last = *product_ids.last().expect("products");
    let last_name = products::name(db.pool(), shop.id, last, Lang::Main).await?;
    let mut placed = Vec::new();
    for customer in ["Alice", "Bob"] {
        let account = accounts::create(db.pool(), shop.id, Some(customer), None).await?;
        let order = orders::create(
            &mut conn,
            shop.id,
            &orders::OrderFields {
                account_id: Some(account.id),
                items: vec![orders::OrderItem {
                    description: None,
                    price: Decimal::new(49, 0),
                    product_id: last,
                    product_name: last_name.clone(),
                    quantity: 1,
                }],
                total: Some(Decimal::new(49, 0)),
                ..Default::default()
            },
            None,
        )
        .await?;
        println!(
            "{customer} orders the last \"{last_name}\": order #{}",
            order.customer_order_id
        );
        placed.push((customer, order.id));
    }
    drop(conn);
    let (mut c1, mut c2) = (db.acquire().await?, db.acquire().await?);
    let (r1, r2) = tokio::join!(
        orders::complete(&mut c1, shop.id, placed[0].1, admin.id),
        orders::complete(&mut c2, shop.id, placed[1].1, admin.id)
    );
    drop((c1, c2));
    let mut won = 0;
    for ((customer, order_id), result) in placed.iter().zip([r1, r2]) {
        match result {
            Ok(o) => {
                won += 1;
                println!(
                    "  {customer}'s order completed at {}",
                    o.completed_at.map(|t| t.to_rfc3339()).unwrap_or_default()
                );
            }
            Err(Error::InsufficientStock {
                requested,
                available,
                ..
            }) => {
                println!(
                    "  {customer}'s order refused: wanted {requested}, {available} left; order cancelled"
                );
                let mut conn = db.acquire().await?;
                orders::cancel(&mut conn, shop.id, *order_id).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let after = products::get(db.pool(), shop.id, last).await?;
    checks.check(
        won == 1 && after.item.stock == 0,
        format!(
            "exactly one customer got the last item (stock now {})",
            after.item.stock
        ),
    );

    // A regular order: two mugs.
    let mug = product_ids[0];
    let before = products::get(db.pool(), shop.id, mug).await?;
    let mut conn = db.acquire().await?;
    let order = orders::create(
        &mut conn,
        shop.id,
        &orders::OrderFields {
            items: vec![orders::OrderItem {
                description: Some("gift wrap".into()),
                price: before.item.price.unwrap_or_default(),
                product_id: mug,
                product_name: before.name(Lang::Main).unwrap_or("?").to_owned(),
                quantity: 2,
            }],
            total: before.item.price.map(|p| p * Decimal::TWO),
            ..Default::default()
        },
        None,
    )
    .await?;
    let done = orders::complete(&mut conn, shop.id, order.id, admin.id).await?;
    let mug_after = products::get(db.pool(), shop.id, mug).await?;
    println!(
        "order #{} for 2 × {:?}: {:?}; stock {} → {}",
        done.customer_order_id,
        before.name(Lang::Main).unwrap_or("?"),
        done.status,
        before.item.stock,
        mug_after.item.stock
    );
    checks.check(
        mug_after.item.stock == before.item.stock - 2,
        "completing the order took the stock",
    );
    Ok(shop.id)
}
