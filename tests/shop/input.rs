//! Bad input is a typed error naming the field, never a generic database error (a 500).

use shared_db::Error;
use shared_db::shop::attributes::{self, AttributeFields};
use shared_db::shop::categories::{self, CategoryFields, CategoryTranslationInput};
use shared_db::shop::orders::OrderStatus;
use shared_db::shop::products::{self, ProductFields, ProductTranslationInput};
use shared_db::shop::tags::{self, NameTranslationInput, TagFields};
use shared_db::shop::{ListParams, accounts, orders, shops, users};

use super::{ALPHA, two_shops};

/// Fails unless `r` is `InvalidInput` whose message names `field`.
#[track_caller]
fn assert_names<T: std::fmt::Debug>(r: shared_db::Result<T>, field: &str) {
    match r {
        Err(Error::InvalidInput(msg)) if msg.contains(field) => {}
        other => panic!("expected InvalidInput naming {field}, got {other:?}"),
    }
}

fn product(name: &str) -> ProductFields {
    ProductFields::new(
        None,
        ProductTranslationInput {
            main_name: name.into(),
            main_description: "d".into(),
            main_description_short: "d".into(),
            ..Default::default()
        },
    )
}

#[tokio::test]
async fn long_text_nul_bytes_and_blank_names_are_typed_errors_naming_the_field()
-> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    let ten_kb = "x".repeat(10 * 1024);

    // names: too long, NUL, blank — the same answer for every entity
    for (name, field) in [
        (ten_kb.as_str(), "translation.main_name"),
        ("so\0cks", "translation.main_name"),
        ("   ", "translation.main_name"),
    ] {
        assert_names(
            products::create(&mut conn, ALPHA.shop, &product(name), 1).await,
            field,
        );
        let category = CategoryFields {
            translation: CategoryTranslationInput {
                main_name: name.into(),
                main_description: "d".into(),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_names(
            categories::create(&mut conn, ALPHA.shop, &category).await,
            field,
        );
        let tag = TagFields {
            name: None,
            translation: NameTranslationInput::main(name),
        };
        assert_names(tags::create(&mut conn, ALPHA.shop, &tag).await, field);
        let attribute = AttributeFields {
            name: name.into(),
            ..Default::default()
        };
        assert_names(
            attributes::create(&mut conn, ALPHA.shop, &attribute).await,
            "name",
        );
        assert_names(
            shops::create(&mut *conn, &shops::ShopFields::named(name)).await,
            "name",
        );
    }
    // other fields, lookups, JSON and list filters
    let mut long_image = product("Mug");
    long_image.images[2] = Some(ten_kb.clone());
    assert_names(
        products::create(&mut conn, ALPHA.shop, &long_image, 1).await,
        "images[2]",
    );
    assert_names(
        users::get_by_email(&mut *conn, "a\0@example.com").await,
        "email",
    );
    assert_names(shops::get_by_name(&mut *conn, &ten_kb).await, "name");
    assert_names(
        accounts::get_by_stripe_customer_id(&mut *conn, ALPHA.shop, "cus\0").await,
        "stripe_customer_id",
    );
    assert_names(
        accounts::create(
            &mut *conn,
            ALPHA.shop,
            Some("c@example.com"),
            Some(&serde_json::json!({"note": "nul \u{0} inside"})),
        )
        .await,
        "details",
    );
    assert_names(
        products::list(
            &mut conn,
            ALPHA.shop,
            &ListParams::default().filter("main_name:a\0b"),
        )
        .await,
        "filter",
    );
    assert_names(
        orders::create(
            &mut conn,
            ALPHA.shop,
            &orders::OrderFields {
                notes: Some("\0".into()),
                ..Default::default()
            },
            None,
        )
        .await,
        "notes",
    );
    Ok(())
}

#[tokio::test]
async fn an_order_status_added_by_a_newer_migration_is_read_but_refused_as_input()
-> anyhow::Result<()> {
    let t = two_shops().await?;
    sqlx::raw_sql("ALTER TYPE shop.order_status ADD VALUE 'refunded'")
        .execute(t.pool())
        .await?;
    sqlx::raw_sql("UPDATE shop.orders SET status = 'refunded' WHERE id = 'aaaaaaaa-0000-0000-0000-000000000060'")
        .execute(t.pool())
        .await?;
    let mut conn = t.pool().acquire().await?;
    let refunded =
        |status: OrderStatus| matches!(status, OrderStatus::Unknown(l) if l == "refunded");

    // Read and listed as it is stored, and serialized as its label.
    let order = orders::get(&mut *conn, ALPHA.shop, ALPHA.order).await?;
    assert!(refunded(order.status));
    assert_eq!(serde_json::to_value(order.status)?, "refunded");
    let page = orders::list(&mut conn, ALPHA.shop, &ListParams::default()).await?;
    assert_eq!(page.items.len(), 1);
    assert!(refunded(page.items[0].status));

    // Never changed by a status it does not know.
    for r in [
        orders::complete(&mut conn, ALPHA.shop, ALPHA.order, ALPHA.user).await,
        orders::cancel(&mut conn, ALPHA.shop, ALPHA.order).await,
        orders::update(&mut conn, ALPHA.shop, ALPHA.order, &Default::default()).await,
    ] {
        match r {
            Err(Error::InvalidTransition { from, .. }) => assert_eq!(from, "refunded"),
            other => panic!("expected InvalidTransition, got {other:?}"),
        }
    }
    assert!(refunded(
        orders::get(&mut *conn, ALPHA.shop, ALPHA.order)
            .await?
            .status
    ));

    // A caller naming the status is refused: input takes the statuses this release knows.
    match "refunded".parse::<OrderStatus>() {
        Err(Error::UnknownEnumLabel { type_name, value }) => {
            assert_eq!(
                (type_name, value.as_str()),
                ("shop.order_status", "refunded")
            );
        }
        other => panic!("expected UnknownEnumLabel, got {other:?}"),
    }
    assert!(serde_json::from_value::<OrderStatus>(serde_json::json!("refunded")).is_err());
    Ok(())
}
