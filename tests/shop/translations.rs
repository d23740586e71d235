//! Translations are written with their parent in one transaction, read with it in one query,
//! and hold descriptions of any size.

use rust_decimal::Decimal;
use shared_db::shop::attributes::{self, AttributeFields};
use shared_db::shop::categories::{self, CategoryFields, CategoryTranslationInput};
use shared_db::shop::products::{self, ProductFields, ProductTranslationInput};
use shared_db::shop::tags::{self, NameTranslationInput, TagFields};
use shared_db::shop::{Lang, ListParams};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{ALPHA, assert_invalid, two_shops};

fn product_translation(name: &str) -> ProductTranslationInput {
    ProductTranslationInput {
        main_name: name.into(),
        main_description: format!("{name}, described"),
        main_description_short: name.into(),
        ..Default::default()
    }
}

async fn count(conn: &mut PgConnection, table: &str) -> anyhow::Result<i64> {
    let n = match table {
        "products" => {
            sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM shop.products"#)
                .fetch_one(conn)
                .await?
        }
        "categories" => {
            sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM shop.categories"#)
                .fetch_one(conn)
                .await?
        }
        "tags" => {
            sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM shop.tags"#)
                .fetch_one(conn)
                .await?
        }
        "attributes" => {
            sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM shop.attributes"#)
                .fetch_one(conn)
                .await?
        }
        _ => unreachable!(),
    };
    Ok(n)
}

#[tokio::test]
async fn a_failing_translation_leaves_no_parent_behind() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    // names longer than their varchar columns: the parent insert succeeds, the translation
    // insert fails in the database, and the whole create is rolled back
    let too_long = "x".repeat(300);

    let before = count(&mut conn, "products").await?;
    let new = ProductFields::new(Some(ALPHA.category), product_translation(&too_long));
    assert!(
        products::create(&mut conn, ALPHA.shop, &new, 1)
            .await
            .is_err()
    );
    assert_eq!(count(&mut conn, "products").await?, before);

    let before = count(&mut conn, "categories").await?;
    let new = CategoryFields {
        translation: CategoryTranslationInput {
            main_name: too_long.clone(),
            main_description: "d".into(),
            ..Default::default()
        },
        ..Default::default()
    };
    assert!(
        categories::create(&mut conn, ALPHA.shop, &new)
            .await
            .is_err()
    );
    assert_eq!(count(&mut conn, "categories").await?, before);

    let before = count(&mut conn, "tags").await?;
    let new = TagFields {
        name: Some("ok".into()),
        translation: NameTranslationInput::main(too_long.clone()),
    };
    assert!(tags::create(&mut conn, ALPHA.shop, &new).await.is_err());
    assert_eq!(count(&mut conn, "tags").await?, before);

    let before = count(&mut conn, "attributes").await?;
    let new = AttributeFields {
        name: "colour".into(),
        unit: None,
        translation: Some(NameTranslationInput::main(too_long.clone())),
    };
    assert!(
        attributes::create(&mut conn, ALPHA.shop, &new)
            .await
            .is_err()
    );
    assert_eq!(count(&mut conn, "attributes").await?, before);

    // an update whose translation fails leaves the parent as it was
    let mut new = ProductFields::new(Some(ALPHA.category), product_translation(&too_long));
    new.price = Some(Decimal::new(999, 0));
    assert!(
        products::update(&mut conn, ALPHA.shop, ALPHA.product, 1, &new)
            .await
            .is_err()
    );
    let product = products::get(&mut *conn, ALPHA.shop, ALPHA.product).await?;
    assert_eq!(product.item.price, Some(Decimal::new(1000, 2)));
    assert_eq!(product.translation.unwrap().main_name, "alpha socks");
    Ok(())
}

#[tokio::test]
async fn main_is_required_and_empty_alternatives_are_stored_as_null() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    let before = count(&mut conn, "products").await?;
    assert_invalid(
        products::create(
            &mut conn,
            ALPHA.shop,
            &ProductFields::new(None, product_translation("")),
            1,
        )
        .await,
    );
    assert_eq!(count(&mut conn, "products").await?, before);

    let mut translation = product_translation("Boots");
    translation.alt1_name = Some(String::new());
    translation.alt2_name = Some("Stiefel".into());
    translation.alt1_description = Some(String::new());
    let created = products::create(
        &mut conn,
        ALPHA.shop,
        &ProductFields::new(Some(ALPHA.category), translation),
        1,
    )
    .await?;
    let read = products::get(&mut *conn, ALPHA.shop, created.item.id).await?;
    let tr = read.translation.as_ref().unwrap();
    assert_eq!(tr.alt1_name, None);
    assert_eq!(tr.alt1_description, None);
    // the name in a chosen language, falling back to main, in Rust and in SQL
    assert_eq!(read.name(Lang::Alt2), Some("Stiefel"));
    assert_eq!(read.name(Lang::Alt1), Some("Boots"));
    assert_eq!(
        products::name(&mut *conn, ALPHA.shop, created.item.id, Lang::Alt1).await?,
        "Boots"
    );
    assert_eq!(
        products::name(&mut *conn, ALPHA.shop, created.item.id, Lang::Alt2).await?,
        "Stiefel"
    );
    let alpha_cat = categories::get(&mut *conn, ALPHA.shop, ALPHA.category).await?;
    assert_eq!(alpha_cat.name(Lang::Alt2), Some("alpha clothes"));
    Ok(())
}

#[tokio::test]
async fn update_writes_parent_and_translation_together() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    let before = products::get(&mut *conn, ALPHA.shop, ALPHA.product).await?;
    let mut new = ProductFields::new(Some(ALPHA.category), product_translation("Wool socks"));
    new.translation.alt1_name = Some("Wollsocken".into());
    new.price = Some(Decimal::new(125, 1));
    let after = products::update(
        &mut conn,
        ALPHA.shop,
        ALPHA.product,
        before.item.version,
        &new,
    )
    .await?;
    assert_eq!(after.item.price, Some(Decimal::new(1250, 2)));
    assert_eq!(
        after.item.stock, before.item.stock,
        "an edit never writes stock"
    );
    assert_eq!(after.item.version, before.item.version + 1);
    assert_eq!(after.item.order_number, before.item.order_number);
    let tr = after.translation.unwrap();
    assert_eq!(tr.main_name, "Wool socks");
    assert_eq!(tr.alt1_name.as_deref(), Some("Wollsocken"));
    // modified_at is maintained by the database
    assert!(after.item.modified_at > before.item.modified_at);
    // the fixture's translation row was updated in place, not duplicated
    let rows = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM shop.product_translations WHERE product_id = $1"#,
        ALPHA.product.get(),
    )
    .fetch_one(&mut *conn)
    .await?;
    assert_eq!(rows, 1);
    // and the database refuses a second one outright
    let second = sqlx::query!(
        r#"INSERT INTO shop.product_translations (shop_id, product_id, main_name, main_description,
               main_description_short) VALUES ($2, $1, 'dup', 'dup', 'dup')"#,
        ALPHA.product.get(),
        ALPHA.shop.get(),
    )
    .execute(&mut *conn)
    .await;
    super::assert_conflict(
        second.map_err(shared_db::Error::from),
        "uq_product_translations_shop_id_product_id",
    );
    Ok(())
}

fn incompressible(bytes: usize) -> String {
    let mut s = String::with_capacity(bytes + 40);
    while s.len() < bytes {
        s.push_str(&Uuid::new_v4().simple().to_string());
    }
    s.truncate(bytes);
    s
}

#[tokio::test]
async fn a_100_kb_description_stores_and_reads_back() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    let description = incompressible(100 * 1024);
    let mut translation = product_translation("Encyclopedia");
    translation.main_description = description.clone();
    translation.alt1_description = Some(incompressible(100 * 1024));
    let created = products::create(
        &mut conn,
        ALPHA.shop,
        &ProductFields::new(Some(ALPHA.category), translation),
        1,
    )
    .await?;
    let read = products::get(&mut *conn, ALPHA.shop, created.item.id).await?;
    assert_eq!(read.translation.unwrap().main_description, description);

    let category = categories::create(
        &mut conn,
        ALPHA.shop,
        &CategoryFields {
            translation: CategoryTranslationInput {
                main_name: "Books".into(),
                main_description: description.clone(),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await?;
    let read = categories::get(&mut *conn, ALPHA.shop, category.item.id).await?;
    assert_eq!(read.translation.unwrap().main_description.len(), 100 * 1024);
    let listed = products::list(
        &mut conn,
        ALPHA.shop,
        &ListParams::default().filter("main_name:encyclo"),
    )
    .await?;
    assert_eq!(
        listed.items[0]
            .translation
            .as_ref()
            .unwrap()
            .main_description,
        description
    );
    Ok(())
}

#[tokio::test]
async fn a_product_another_service_left_without_translation_reads_with_none() -> anyhow::Result<()>
{
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    let with = products::get(&mut *conn, ALPHA.shop, ALPHA.product).await?;
    assert!(with.translation.is_some());
    let main_name = with.translation.as_ref().map(|tr| tr.main_name.clone());

    // The old backend could leave a product without its translation row.
    sqlx::query!(
        "DELETE FROM shop.product_translations WHERE product_id = $1",
        ALPHA.product.get(),
    )
    .execute(&mut *conn)
    .await?;

    let without = products::get(&mut *conn, ALPHA.shop, ALPHA.product).await?;
    assert_eq!(without.item.id, ALPHA.product);
    assert_eq!(
        without.item.stock, with.item.stock,
        "the parent's columns read back unchanged"
    );
    assert!(without.translation.is_none());
    assert_eq!(without.name(Lang::Alt1), None);
    assert!(main_name.is_some());
    Ok(())
}
