//! Scoping: through beta's scope, every row of alpha is absent — for reads, updates and deletes —
//! and alpha's rows are untouched afterwards. Links across shops cannot be made.

use shared_db::shop::{ListParams, categories::CategoryFields, products::ProductFields};
use shared_db::shop::{
    accounts, attribute_options, attributes, categories, info_requests, orders,
    product_attribute_values, products, products_to_tags, shops_users, tags,
};

use super::{ALPHA, BETA, assert_not_found, two_shops};

#[tokio::test]
async fn categories_of_another_shop_are_not_found() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    assert_not_found(categories::get(&mut *conn, BETA.shop, ALPHA.category).await);
    assert_not_found(
        categories::name(&mut *conn, BETA.shop, ALPHA.category, Default::default()).await,
    );
    let mut new = CategoryFields::default();
    new.translation.main_name = "stolen".into();
    new.translation.main_description = "stolen".into();
    assert_not_found(categories::update(&mut conn, BETA.shop, ALPHA.category, 1, &new).await);
    assert_not_found(
        categories::swap_order(&mut *conn, BETA.shop, ALPHA.category, BETA.category).await,
    );
    assert_not_found(categories::delete(&mut *conn, BETA.shop, ALPHA.category).await);
    let page = categories::list(&mut conn, BETA.shop, &ListParams::default()).await?;
    assert!(page.items.iter().all(|c| c.item.shop_id == BETA.shop));
    assert_eq!(page.total, 1);
    let alpha = categories::get(&mut *conn, ALPHA.shop, ALPHA.category).await?;
    assert_eq!(alpha.translation.unwrap().main_name, "alpha clothes");
    Ok(())
}

#[tokio::test]
async fn products_of_another_shop_are_not_found() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    assert_not_found(products::get(&mut *conn, BETA.shop, ALPHA.product).await);
    assert_not_found(
        products::name(&mut *conn, BETA.shop, ALPHA.product, Default::default()).await,
    );
    let mut new = ProductFields::new(Some(BETA.category), Default::default());
    new.translation.main_name = "stolen".into();
    new.translation.main_description = "stolen".into();
    new.translation.main_description_short = "stolen".into();
    assert_not_found(products::update(&mut conn, BETA.shop, ALPHA.product, 1, &new).await);
    assert_not_found(
        products::swap_order(&mut *conn, BETA.shop, ALPHA.product, BETA.product).await,
    );
    assert_not_found(products::delete(&mut *conn, BETA.shop, ALPHA.product).await);
    // a product of beta cannot be put in alpha's category, neither on create nor on update
    new.category_id = Some(ALPHA.category);
    assert_not_found(products::create(&mut conn, BETA.shop, &new, 1).await);
    assert_not_found(products::update(&mut conn, BETA.shop, BETA.product, 1, &new).await);
    let page = products::list(&mut conn, BETA.shop, &ListParams::default()).await?;
    assert_eq!(page.total, 1);
    assert_eq!(page.items[0].item.id, BETA.product);
    let keyset = products::list_after(&mut conn, BETA.shop, &[], None, 10).await?;
    assert_eq!(keyset.items.len(), 1);
    let alpha = products::get(&mut *conn, ALPHA.shop, ALPHA.product).await?;
    assert_eq!(alpha.translation.unwrap().main_name, "alpha socks");
    Ok(())
}

#[tokio::test]
async fn tags_and_their_product_links_of_another_shop_are_not_found() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    assert_not_found(tags::get(&mut *conn, BETA.shop, ALPHA.tag).await);
    let new = tags::TagFields {
        name: Some("x".into()),
        translation: tags::NameTranslationInput::main("x"),
    };
    assert_not_found(tags::update(&mut conn, BETA.shop, ALPHA.tag, &new).await);
    assert_not_found(tags::delete(&mut *conn, BETA.shop, ALPHA.tag).await);

    assert_not_found(products_to_tags::get(&mut *conn, BETA.shop, ALPHA.link).await);
    assert_not_found(products_to_tags::delete(&mut *conn, BETA.shop, ALPHA.link).await);
    assert_not_found(
        products_to_tags::unlink(&mut *conn, BETA.shop, ALPHA.product, ALPHA.tag).await,
    );
    // no link across shops, from either side
    assert_not_found(products_to_tags::link(&mut *conn, BETA.shop, ALPHA.product, BETA.tag).await);
    assert_not_found(products_to_tags::link(&mut *conn, BETA.shop, BETA.product, ALPHA.tag).await);
    assert_not_found(products_to_tags::link(&mut *conn, ALPHA.shop, ALPHA.product, BETA.tag).await);
    let page = products_to_tags::list(&mut conn, BETA.shop, &ListParams::default()).await?;
    assert_eq!(page.total, 1);
    assert_eq!(page.items[0].id, BETA.link);
    assert_eq!(
        products_to_tags::get(&mut *conn, ALPHA.shop, ALPHA.link)
            .await?
            .tag_id,
        ALPHA.tag
    );
    assert!(tags::get(&mut *conn, ALPHA.shop, ALPHA.tag).await.is_ok());
    Ok(())
}

#[tokio::test]
async fn attributes_options_and_values_of_another_shop_are_not_found() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    assert_not_found(attributes::get(&mut *conn, BETA.shop, ALPHA.attribute).await);
    let new = attributes::AttributeFields {
        name: "colour".into(),
        unit: None,
        translation: None,
    };
    assert_not_found(attributes::update(&mut conn, BETA.shop, ALPHA.attribute, &new).await);
    assert_not_found(attributes::delete(&mut *conn, BETA.shop, ALPHA.attribute).await);

    assert_not_found(attribute_options::get(&mut *conn, BETA.shop, ALPHA.option).await);
    assert_not_found(attribute_options::update(&mut *conn, BETA.shop, ALPHA.option, "huge").await);
    assert_not_found(attribute_options::delete(&mut *conn, BETA.shop, ALPHA.option).await);
    assert_not_found(
        attribute_options::create(&mut *conn, BETA.shop, ALPHA.attribute, "huge").await,
    );

    assert_not_found(product_attribute_values::get(&mut *conn, BETA.shop, ALPHA.pav).await);
    assert_not_found(
        product_attribute_values::set_option(&mut *conn, BETA.shop, ALPHA.pav, None).await,
    );
    assert_not_found(product_attribute_values::delete(&mut *conn, BETA.shop, ALPHA.pav).await);
    assert_not_found(
        product_attribute_values::create(
            &mut *conn,
            BETA.shop,
            ALPHA.product,
            BETA.attribute,
            None,
        )
        .await,
    );
    assert_not_found(
        product_attribute_values::create(
            &mut *conn,
            BETA.shop,
            BETA.product,
            ALPHA.attribute,
            None,
        )
        .await,
    );
    for total in [
        attributes::list(&mut conn, BETA.shop, &ListParams::default())
            .await?
            .total,
        attribute_options::list(&mut conn, BETA.shop, &ListParams::default())
            .await?
            .total,
        product_attribute_values::list(&mut conn, BETA.shop, &ListParams::default())
            .await?
            .total,
    ] {
        assert_eq!(total, 1);
    }
    assert_eq!(
        product_attribute_values::get(&mut *conn, ALPHA.shop, ALPHA.pav)
            .await?
            .option_id,
        Some(ALPHA.option)
    );
    assert_eq!(
        attribute_options::get(&mut *conn, ALPHA.shop, ALPHA.option)
            .await?
            .value_key,
        "small"
    );
    Ok(())
}

#[tokio::test]
async fn accounts_of_another_shop_are_not_found() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    assert_not_found(accounts::get(&mut *conn, BETA.shop, ALPHA.account).await);
    assert_not_found(accounts::update(&mut *conn, BETA.shop, ALPHA.account, Some("x"), None).await);
    assert_not_found(accounts::anonymise(&mut *conn, BETA.shop, ALPHA.account).await);
    assert_not_found(accounts::delete(&mut *conn, BETA.shop, ALPHA.account).await);
    let page = accounts::list(&mut conn, BETA.shop, &ListParams::default()).await?;
    assert_eq!(page.total, 1);
    assert_eq!(
        accounts::get(&mut *conn, ALPHA.shop, ALPHA.account)
            .await?
            .name
            .as_deref(),
        Some("customer@alpha.example")
    );
    Ok(())
}

#[tokio::test]
async fn orders_of_another_shop_are_not_found() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    assert_not_found(orders::get(&mut *conn, BETA.shop, ALPHA.order).await);
    assert_not_found(orders::update(&mut conn, BETA.shop, ALPHA.order, &Default::default()).await);
    assert_not_found(orders::complete(&mut conn, BETA.shop, ALPHA.order, BETA.user).await);
    assert_not_found(orders::cancel(&mut conn, BETA.shop, ALPHA.order).await);
    assert_not_found(orders::delete(&mut *conn, BETA.shop, ALPHA.order).await);
    // an order of beta cannot be placed for alpha's customer
    let new = orders::OrderFields {
        account_id: Some(ALPHA.account),
        ..Default::default()
    };
    assert_not_found(orders::create(&mut conn, BETA.shop, &new, None).await);
    let page = orders::list(&mut conn, BETA.shop, &ListParams::default()).await?;
    assert_eq!(page.total, 1);
    assert_eq!(page.items[0].id, BETA.order);
    let alpha = orders::get(&mut *conn, ALPHA.shop, ALPHA.order).await?;
    assert_eq!(alpha.status, orders::OrderStatus::Pending);
    Ok(())
}

#[tokio::test]
async fn info_requests_of_another_shop_are_not_found() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    assert_not_found(info_requests::get(&mut *conn, BETA.shop, ALPHA.info).await);
    assert_not_found(info_requests::update(&mut *conn, BETA.shop, ALPHA.info, None, None).await);
    assert_not_found(info_requests::delete(&mut *conn, BETA.shop, ALPHA.info).await);
    assert_not_found(
        info_requests::create(
            &mut *conn,
            BETA.shop,
            Some("x@example.com"),
            Some(ALPHA.product),
        )
        .await,
    );
    let page = info_requests::list(&mut conn, BETA.shop, &ListParams::default()).await?;
    assert_eq!(page.total, 1);
    assert_eq!(
        info_requests::get(&mut *conn, ALPHA.shop, ALPHA.info)
            .await?
            .product_id,
        Some(ALPHA.product)
    );
    Ok(())
}

#[tokio::test]
async fn shop_membership_is_per_shop() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    assert!(shops_users::is_member(&mut *conn, ALPHA.shop, ALPHA.user).await?);
    assert!(!shops_users::is_member(&mut *conn, BETA.shop, ALPHA.user).await?);
    shops_users::require_member(&mut *conn, ALPHA.shop, ALPHA.user).await?;
    assert_not_found(shops_users::require_member(&mut *conn, BETA.shop, ALPHA.user).await);
    assert_not_found(shops_users::remove(&mut *conn, BETA.shop, ALPHA.user).await);
    let members = shops_users::list(&mut conn, BETA.shop, &ListParams::default()).await?;
    assert_eq!(members.items.len(), 1);
    assert_eq!(members.items[0].user_id, BETA.user);
    // adding is idempotent; the membership then holds
    let m1 = shops_users::add(&mut *conn, BETA.shop, ALPHA.user).await?;
    let m2 = shops_users::add(&mut *conn, BETA.shop, ALPHA.user).await?;
    assert_eq!(m1.id, m2.id);
    assert_eq!(
        shops_users::shops_of(&mut *conn, ALPHA.user).await?.len(),
        2
    );
    Ok(())
}
