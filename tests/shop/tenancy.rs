//! Tenant integrity lives in the schema: raw SQL from any writer cannot link two shops' rows.

use shared_db::Error;

use crate::{ALPHA, BETA, two_shops};

/// Runs raw SQL and returns the library error it maps to.
async fn refused(pool: &sqlx::PgPool, sql: String) -> Error {
    match sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(pool).await {
        Ok(_) => panic!("the database accepted a cross-shop write"),
        Err(e) => e.into(),
    }
}

#[tokio::test]
async fn an_attribute_value_cannot_link_two_shops() -> anyhow::Result<()> {
    let t = two_shops().await?;
    // alpha's product with beta's attribute, under either shop id
    for shop in [ALPHA.shop, BETA.shop] {
        let e = refused(
            t.pool(),
            format!(
                "INSERT INTO shop.product_attribute_values (shop_id, product_id, attribute_id)
                 VALUES ('{shop}', '{}', '{}')",
                ALPHA.product, BETA.attribute
            ),
        )
        .await;
        assert!(matches!(e, Error::ForeignKey { .. }), "{e:?}");
    }
    // moving an existing value to the other shop's attribute
    let e = refused(
        t.pool(),
        format!(
            "UPDATE shop.product_attribute_values SET attribute_id = '{}', option_id = NULL WHERE id = '{}'",
            BETA.attribute, ALPHA.pav
        ),
    )
    .await;
    assert!(
        matches!(&e, Error::ForeignKey { constraint } if constraint == "fk_product_attribute_values_attribute_id_attributes"),
        "{e:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_licence_belongs_to_the_shop_of_its_order() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let e = refused(
        t.pool(),
        format!(
            "INSERT INTO shop.licenses (name, is_recurring, improviser_user, seats, order_id, shop_id)
             VALUES ('Pro', false, gen_random_uuid(), 1, '{}', '{}')",
            BETA.order, ALPHA.shop
        ),
    )
    .await;
    assert!(
        matches!(&e, Error::ForeignKey { constraint } if constraint == "fk_licenses_order_id_orders"),
        "{e:?}"
    );
    // leaving the shop out does not switch the check off
    let e = refused(
        t.pool(),
        format!(
            "INSERT INTO shop.licenses (name, is_recurring, improviser_user, seats, order_id)
             VALUES ('Pro', false, gen_random_uuid(), 1, '{}')",
            BETA.order
        ),
    )
    .await;
    assert!(
        matches!(&e, Error::Check { constraint } if constraint == "ck_licenses_order_has_shop"),
        "{e:?}"
    );
    // the library fills the shop from the order
    let licence = shared_db::shop::licenses::create(
        t.pool(),
        &shared_db::shop::licenses::LicenseFields {
            name: "Pro".into(),
            is_recurring: false,
            start_date: None,
            end_date: None,
            improviser_user: uuid::Uuid::new_v4(),
            seats: 1,
            order_id: Some(BETA.order),
        },
    )
    .await?;
    assert_eq!(licence.shop_id, Some(BETA.shop));
    Ok(())
}

#[tokio::test]
async fn completed_by_must_be_a_member_of_the_shop() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let e = refused(
        t.pool(),
        format!(
            "UPDATE shop.orders SET status = 'complete', completed_at = now(), completed_by = '{}'
             WHERE id = '{}'",
            BETA.user, ALPHA.order
        ),
    )
    .await;
    assert!(
        matches!(&e, Error::ForeignKey { constraint } if constraint == "fk_orders_completed_by_shops_users"),
        "{e:?}"
    );
    // a member may; when they leave the shop the order keeps its completion but forgets them
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "UPDATE shop.orders SET status = 'complete', completed_at = now(), completed_by = '{}'
         WHERE id = '{}'",
        ALPHA.user, ALPHA.order
    )))
    .execute(t.pool())
    .await?;
    shared_db::shop::shops_users::remove(t.pool(), ALPHA.shop, ALPHA.user).await?;
    let order = shared_db::shop::orders::get(t.pool(), ALPHA.shop, ALPHA.order).await?;
    assert_eq!(order.completed_by, None);
    assert!(order.completed_at.is_some());
    Ok(())
}
