//! The storefront catalog page: products in (order_number, id) order with their main name, price
//! and tag names; offset pages and keyset pages agree, and keyset pages walk every product once.

use rust_decimal::Decimal;
use shared_db::shop::products::{self, ProductFields, ProductTranslationInput};
use shared_db::shop::tags::{self, NameTranslationInput, TagFields};
use shared_db::shop::{Cursor, ProductId, categories, products_to_tags};

use super::{ALPHA, BETA, assert_invalid, two_shops};

#[tokio::test]
async fn catalog_pages_agree_and_keyset_walks_every_product_once() -> anyhow::Result<()> {
    let db = two_shops().await?;
    let mut conn = db.pool().acquire().await?;
    // A second category: its order numbers restart at 0, so (order_number, id) has ties to break.
    let other = categories::create(
        &mut conn,
        ALPHA.shop,
        &categories::CategoryFields {
            translation: categories::CategoryTranslationInput {
                main_name: "alpha hats".into(),
                main_description: "On your head".into(),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await?
    .item
    .id;
    let blue = tags::create(
        &mut conn,
        ALPHA.shop,
        &TagFields {
            name: Some("blue".into()),
            translation: NameTranslationInput::main("Blue"),
        },
    )
    .await?
    .item
    .id;
    let mut made = vec![ALPHA.product];
    for (i, name) in ["Cap", "Beanie", "Scarf", "Gloves", "Boots"]
        .iter()
        .enumerate()
    {
        let category = if i % 2 == 0 { other } else { ALPHA.category };
        let new = ProductFields::new(
            Some(category),
            ProductTranslationInput {
                main_name: (*name).into(),
                main_description: format!("About {name}"),
                main_description_short: (*name).into(),
                ..Default::default()
            },
        );
        let id = products::create(&mut conn, ALPHA.shop, &new, 1)
            .await?
            .item
            .id;
        products_to_tags::link(&mut *conn, ALPHA.shop, id, blue).await?;
        if i == 0 {
            products_to_tags::link(&mut *conn, ALPHA.shop, id, ALPHA.tag).await?;
        }
        made.push(id);
    }

    let all = products::catalog_page(&mut *conn, ALPHA.shop, 0, 100).await?;
    assert_eq!(all.len(), 6, "alpha's products only, never beta's");
    let keys: Vec<(i32, ProductId)> = all.iter().map(|e| (e.order_number, e.id)).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "ordered by order number, then id");
    let cap = all.iter().find(|e| e.id == made[1]).unwrap();
    assert_eq!(cap.main_name.as_deref(), Some("Cap"));
    assert_eq!(cap.tag_names, ["Blue", "Sale"], "tag names, sorted");
    let socks = all.iter().find(|e| e.id == ALPHA.product).unwrap();
    assert_eq!(socks.price, Some(Decimal::new(1000, 2)));
    assert_eq!(socks.tag_names, ["Sale"]);

    // Offset pages of two are slices of the full list.
    let second = products::catalog_page(&mut *conn, ALPHA.shop, 2, 2).await?;
    assert_eq!(second, all[2..4]);

    // Keyset pages of two walk everything once, in order, and end with no cursor.
    let mut walked = Vec::new();
    let mut after: Option<Cursor> = None;
    loop {
        let page = products::catalog_page_after(&mut *conn, ALPHA.shop, after.as_ref(), 2).await?;
        walked.extend(page.items);
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(walked, all);

    // Beta sees only its own product; bad input is refused.
    let beta = products::catalog_page(&mut *conn, BETA.shop, 0, 50).await?;
    assert_eq!(
        beta.iter().map(|e| e.id).collect::<Vec<_>>(),
        [BETA.product]
    );
    assert_invalid(products::catalog_page(&mut *conn, ALPHA.shop, 0, 0).await);
    let nope: Cursor = "nope".parse()?;
    assert_invalid(products::catalog_page_after(&mut *conn, ALPHA.shop, Some(&nope), 2).await);
    assert_invalid(products::catalog_page(&mut *conn, ALPHA.shop, 0, i64::MAX).await);
    assert_invalid(products::catalog_page_after(&mut *conn, ALPHA.shop, None, i64::MAX).await);
    Ok(())
}
