//! Deletes follow the declared behaviour: owned rows go with their owner, and a row still
//! referenced is a Conflict naming what holds it, with nothing deleted.

use shared_db::shop::licenses::{self, LicenseFields};
use shared_db::shop::{
    ListParams, accounts, attribute_options, attributes, categories, early_access, faq,
    info_requests, orders, product_attribute_values, products, products_to_tags, roles, shops,
    tags,
};
use uuid::Uuid;

use super::{ALPHA, BETA, assert_conflict, assert_not_found, two_shops};

#[tokio::test]
async fn a_category_with_products_is_not_deleted() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    assert_conflict(
        categories::delete(&mut *conn, ALPHA.shop, ALPHA.category).await,
        "fk_products_category_id_categories",
    );
    assert!(
        categories::get(&mut *conn, ALPHA.shop, ALPHA.category)
            .await?
            .translation
            .is_some()
    );
    // once the product is gone the category goes, with its translation
    products::delete(&mut *conn, ALPHA.shop, ALPHA.product).await?;
    categories::delete(&mut *conn, ALPHA.shop, ALPHA.category).await?;
    assert_not_found(categories::get(&mut *conn, ALPHA.shop, ALPHA.category).await);
    let orphans = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM shop.category_translations WHERE category_id = $1"#,
        ALPHA.category
    )
    .fetch_one(&mut *conn)
    .await?;
    assert_eq!(orphans, 0);
    Ok(())
}

#[tokio::test]
async fn an_attribute_in_use_is_not_deleted_at_all() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    let r = attributes::delete(&mut *conn, ALPHA.shop, ALPHA.attribute).await;
    assert!(
        matches!(&r, Err(shared_db::Error::Conflict { constraint })
            if constraint.starts_with("fk_product_attribute_values_")),
        "{r:?}"
    );
    // not half-done: attribute, translation and options are all still there
    assert!(
        attributes::get(&mut *conn, ALPHA.shop, ALPHA.attribute)
            .await?
            .translation
            .is_some()
    );
    assert_eq!(
        attribute_options::get(&mut *conn, ALPHA.shop, ALPHA.option)
            .await?
            .value_key,
        "small"
    );
    assert_conflict(
        attribute_options::delete(&mut *conn, ALPHA.shop, ALPHA.option).await,
        "fk_product_attribute_values_option_id_attribute_options",
    );
    // unused, it goes with its options
    product_attribute_values::delete(&mut *conn, ALPHA.shop, ALPHA.pav).await?;
    attributes::delete(&mut *conn, ALPHA.shop, ALPHA.attribute).await?;
    assert_not_found(attribute_options::get(&mut *conn, ALPHA.shop, ALPHA.option).await);
    Ok(())
}

#[tokio::test]
async fn deleting_a_product_takes_its_links_and_keeps_info_requests() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    products::delete(&mut *conn, ALPHA.shop, ALPHA.product).await?;
    assert_not_found(products_to_tags::get(&mut *conn, ALPHA.shop, ALPHA.link).await);
    assert_not_found(product_attribute_values::get(&mut *conn, ALPHA.shop, ALPHA.pav).await);
    assert_eq!(
        info_requests::get(&mut *conn, ALPHA.shop, ALPHA.info)
            .await?
            .product_id,
        None
    );
    assert!(tags::get(&mut *conn, ALPHA.shop, ALPHA.tag).await.is_ok());
    // deleting the tag takes its links too
    tags::delete(&mut *conn, BETA.shop, BETA.tag).await?;
    assert_not_found(products_to_tags::get(&mut *conn, BETA.shop, BETA.link).await);
    assert_not_found(products::delete(&mut *conn, ALPHA.shop, ALPHA.product).await);
    Ok(())
}

#[tokio::test]
async fn an_account_goes_with_its_orders_unless_a_license_holds_one() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    let license = licenses::create(
        &mut *conn,
        ALPHA.shop,
        &LicenseFields {
            name: "Pro".into(),
            is_recurring: true,
            start_date: None,
            end_date: None,
            improviser_user: Uuid::new_v4(),
            seats: 3,
            order_id: Some(ALPHA.order),
        },
    )
    .await?;
    assert_conflict(
        accounts::delete(&mut *conn, ALPHA.shop, ALPHA.account).await,
        "fk_licenses_order_id_orders",
    );
    assert_conflict(
        orders::delete(&mut *conn, ALPHA.shop, ALPHA.order).await,
        "fk_licenses_order_id_orders",
    );
    assert!(
        orders::get(&mut *conn, ALPHA.shop, ALPHA.order)
            .await
            .is_ok()
    );
    licenses::delete(&mut *conn, ALPHA.shop, license.id).await?;
    accounts::delete(&mut *conn, ALPHA.shop, ALPHA.account).await?;
    assert_not_found(orders::get(&mut *conn, ALPHA.shop, ALPHA.order).await);
    Ok(())
}

#[tokio::test]
async fn a_shop_that_owns_rows_is_not_deleted() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    let r = shops::delete(&mut *conn, BETA.shop).await;
    assert!(
        matches!(&r, Err(shared_db::Error::Conflict { constraint }) if constraint.starts_with("fk_")),
        "{r:?}"
    );
    assert_eq!(shops::get(&mut *conn, BETA.shop).await?.name, "beta");
    let empty = shops::create(&mut *conn, &shops::ShopFields::named("empty")).await?;
    shared_db::shop::shops_users::add(&mut *conn, empty.id, ALPHA.user).await?;
    shops::delete(&mut *conn, empty.id).await?;
    assert_not_found(shops::get(&mut *conn, empty.id).await);
    Ok(())
}

#[tokio::test]
async fn duplicates_are_conflicts() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    early_access::create(&mut *conn, "first@example.com").await?;
    assert_conflict(
        early_access::create(&mut *conn, "first@example.com").await,
        "uq_early_access_email",
    );
    assert_eq!(
        early_access::list(&mut conn, &ListParams::default())
            .await?
            .total,
        1
    );

    let q = faq::FaqFields {
        question: "Do you ship abroad?".into(),
        answer: "Yes".into(),
        category: "shipping".into(),
    };
    faq::create(&mut *conn, &q).await?;
    assert_conflict(faq::create(&mut *conn, &q).await, "uq_faq_question");

    let new = attributes::AttributeFields {
        name: "size".into(),
        unit: None,
        translation: None,
    };
    assert_conflict(
        attributes::create(&mut conn, ALPHA.shop, &new).await,
        "uq_attributes_shop_id_name",
    );
    // the same attribute name in another shop is fine... but beta already has "size" too
    let new = attributes::AttributeFields {
        name: "weight".into(),
        unit: Some("kg".into()),
        translation: None,
    };
    let weight = attributes::create(&mut conn, BETA.shop, &new).await?;
    assert_eq!(weight.translation.unwrap().main_name, "weight");
    assert_conflict(
        attribute_options::create(&mut *conn, ALPHA.shop, ALPHA.attribute, "small").await,
        "uq_attribute_options_shop_id_attribute_id_value_key",
    );
    assert_conflict(
        product_attribute_values::create(
            &mut *conn,
            ALPHA.shop,
            ALPHA.product,
            ALPHA.attribute,
            Some(ALPHA.option),
        )
        .await,
        "uq_product_attribute_values_shop_product_attr_option",
    );
    // linking twice is idempotent
    let again = products_to_tags::link(&mut *conn, ALPHA.shop, ALPHA.product, ALPHA.tag).await?;
    assert_eq!(again.id, ALPHA.link);

    let admin = roles::create(&mut *conn, "admin", None).await?;
    assert_conflict(
        roles::create(&mut *conn, "admin", None).await,
        "uq_roles_name",
    );
    roles::grant(&mut *conn, ALPHA.user, admin.id).await?;
    assert_conflict(
        roles::delete(&mut *conn, admin.id).await,
        "fk_roles_users_role_id_roles",
    );
    Ok(())
}
