//! Tenant integrity lives in the schema: raw SQL from any writer cannot link two shops' rows.

use shared_db::Error;
use shared_db::shop::ListParams;
use shared_db::shop::licenses::{self, LicenseFields};
use uuid::Uuid;

use super::{ALPHA, BETA, two_shops};

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
    // (on Citus the row has no distribution value and is refused before the check)
    if crate::BACKEND == shared_db::testing::Backend::Citus {
        assert!(
            e.to_string().contains("without a partition column value"),
            "{e:?}"
        );
    } else {
        assert!(
            matches!(&e, Error::Check { constraint } if constraint == "ck_licenses_order_has_shop"),
            "{e:?}"
        );
    }
    // through the library, a licence of beta can pay with beta's order only
    let licence = licenses::create(t.pool(), BETA.shop, &pro(Some(BETA.order))).await?;
    assert_eq!(licence.shop_id, Some(BETA.shop));
    assert_not_found(licenses::create(t.pool(), ALPHA.shop, &pro(Some(BETA.order))).await);
    Ok(())
}

fn pro(order_id: Option<Uuid>) -> LicenseFields {
    LicenseFields {
        name: "Pro".into(),
        is_recurring: false,
        start_date: None,
        end_date: None,
        improviser_user: Uuid::new_v4(),
        seats: 1,
        order_id,
    }
}

fn assert_not_found<T: std::fmt::Debug>(r: shared_db::Result<T>) {
    assert!(matches!(r, Err(Error::NotFound)), "{r:?}");
}

/// A shop-alpha admin who knows beta's order and licence ids can neither attach, move, read,
/// list nor delete beta's licences; beta's licence is unchanged afterwards.
#[tokio::test]
async fn another_shops_licence_is_not_found() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    let beta = licenses::create(&mut *conn, BETA.shop, &pro(Some(BETA.order))).await?;
    let alpha = licenses::create(&mut *conn, ALPHA.shop, &pro(Some(ALPHA.order))).await?;

    // read, update, delete beta's licence as alpha
    assert_not_found(licenses::get(&mut *conn, ALPHA.shop, beta.id).await);
    assert_not_found(
        licenses::update(&mut *conn, ALPHA.shop, beta.id, &pro(Some(ALPHA.order))).await,
    );
    assert_not_found(licenses::update(&mut *conn, ALPHA.shop, beta.id, &pro(None)).await);
    assert_not_found(licenses::delete(&mut *conn, ALPHA.shop, beta.id).await);
    // move alpha's own licence onto beta's order
    assert_not_found(
        licenses::update(&mut *conn, ALPHA.shop, alpha.id, &pro(Some(BETA.order))).await,
    );
    // the list shows alpha's only, even filtered by beta's order
    let page = licenses::list(&mut conn, ALPHA.shop, &ListParams::default()).await?;
    assert_eq!(
        page.items.iter().map(|l| l.id).collect::<Vec<_>>(),
        [alpha.id]
    );
    let by_order = ListParams::default().filter(format!("order_id:{}", BETA.order));
    assert_eq!(
        licenses::list(&mut conn, ALPHA.shop, &by_order)
            .await?
            .total,
        0
    );

    // beta's licence is untouched, alpha's still pays with alpha's order
    let after = licenses::get(&mut *conn, BETA.shop, beta.id).await?;
    assert_eq!(
        (after.order_id, after.shop_id, after.modified_at),
        (Some(BETA.order), Some(BETA.shop), beta.modified_at)
    );
    assert_eq!(
        licenses::get(&mut *conn, ALPHA.shop, alpha.id)
            .await?
            .order_id,
        Some(ALPHA.order)
    );
    // and its own shop can do all of it
    licenses::update(&mut *conn, BETA.shop, beta.id, &pro(None)).await?;
    licenses::delete(&mut *conn, BETA.shop, beta.id).await?;
    Ok(())
}

/// Global licences (no shop, no order) are only reached through the `*_global` functions, and
/// those never reach a shop's licence.
#[tokio::test]
async fn global_licences_and_shop_licences_do_not_mix() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    let global = licenses::create_global(&mut *conn, &pro(None)).await?;
    let shop = licenses::create(&mut *conn, ALPHA.shop, &pro(None)).await?;
    assert_eq!((global.shop_id, shop.shop_id), (None, Some(ALPHA.shop)));

    assert_not_found(licenses::get(&mut *conn, ALPHA.shop, global.id).await);
    assert_not_found(licenses::delete(&mut *conn, ALPHA.shop, global.id).await);
    assert_not_found(licenses::get_global(&mut *conn, shop.id).await);
    assert_not_found(licenses::update_global(&mut *conn, shop.id, &pro(None)).await);
    assert_not_found(licenses::delete_global(&mut *conn, shop.id).await);
    // a global licence cannot take an order (it would then belong to the order's shop)
    let e = licenses::create_global(&mut *conn, &pro(Some(ALPHA.order))).await;
    assert!(matches!(e, Err(Error::InvalidInput(_))), "{e:?}");
    let e = licenses::update_global(&mut *conn, global.id, &pro(Some(ALPHA.order))).await;
    assert!(matches!(e, Err(Error::InvalidInput(_))), "{e:?}");

    let ids = |page: shared_db::shop::ListPage<licenses::License>| {
        page.items.into_iter().map(|l| l.id).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(licenses::list_global(&mut conn, &ListParams::default()).await?),
        [global.id]
    );
    assert_eq!(
        ids(licenses::list(&mut conn, ALPHA.shop, &ListParams::default()).await?),
        [shop.id]
    );
    licenses::delete_global(&mut *conn, global.id).await?;
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
