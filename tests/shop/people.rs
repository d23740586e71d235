//! Users, roles, accounts and the reference data step.

use shared_db::shop::users::{self, UserFields};
use shared_db::shop::{accounts, reference_data, roles, shops};
use uuid::Uuid;

use super::{ALPHA, assert_not_found, two_shops};

#[tokio::test]
async fn passwords_are_bcrypt_hashes_and_old_hashes_still_verify() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    let user = users::create(
        &mut *conn,
        &UserFields {
            email: Some("new@example.com".into()),
            username: Some("new".into()),
            password: Some("s3cret!".into()),
            active: true,
            ..Default::default()
        },
    )
    .await?;
    let hash = user.password.clone().unwrap();
    assert!(hash.starts_with("$2b$") && !hash.contains("s3cret"));
    assert!(user.verify_password("s3cret!").await?);
    assert!(!user.verify_password("wrong").await?);
    // the secret never serializes and is redacted in Debug
    let json = serde_json::to_string(&user)?;
    assert!(!json.contains("password") && !json.contains(&hash));
    assert!(!format!("{user:?}").contains(&hash));
    assert!(
        users::authenticate(&mut *conn, "new@example.com", "s3cret!")
            .await
            .is_ok()
    );
    assert_not_found(users::authenticate(&mut *conn, "new@example.com", "nope").await);

    // hashes written by the existing backend (passlib/bcrypt, $2b$ and $2a$) verify unchanged
    for legacy in [
        "$2b$04$9Yd29mHR9ESj8XSh/zofSO/dVLQpiEOUcjvfFNgbsmgz/1Am10GJe",
        "$2a$04$iTUlSOqjfuwSgUHqKuz1y.LA3W0THp/qY4UbWHuD4gPML0/WmC82S",
    ] {
        sqlx::query!(
            "UPDATE shop.users SET password = $2 WHERE id = $1",
            ALPHA.user,
            legacy
        )
        .execute(&mut *conn)
        .await?;
        let old = users::get(&mut *conn, ALPHA.user).await?;
        assert!(old.verify_password("correct horse battery staple").await?);
        assert!(!old.verify_password("Correct horse battery staple").await?);
    }
    Ok(())
}

#[tokio::test]
async fn stripe_secrets_never_serialize() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    let mut new = shops::ShopFields::named("gamma");
    new.stripe_secret_key = Some("sk_live_topsecret".into());
    new.stripe_public_key = Some("pk_live_public".into());
    let shop = shops::create(&mut *conn, &new).await?;
    assert_eq!(shop.stripe_secret_key.as_deref(), Some("sk_live_topsecret"));
    let json = serde_json::to_string(&shop)?;
    assert!(!json.contains("sk_live") && json.contains("pk_live_public"));
    assert!(!format!("{shop:?}").contains("sk_live"));
    assert!(!format!("{new:?}").contains("sk_live"));
    // configs must be objects (the old backend found double-encoded strings)
    new.name = "delta".into();
    new.config = serde_json::json!("{\"double\": \"encoded\"}");
    assert!(matches!(
        shops::create(&mut *conn, &new).await,
        Err(shared_db::Error::InvalidInput(_))
    ));
    Ok(())
}

#[tokio::test]
async fn anonymising_an_account_replaces_the_name_by_its_hash() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    let details = serde_json::json!({"stripe_customer_id": "cus_123"});
    accounts::update(
        &mut *conn,
        ALPHA.shop,
        ALPHA.account,
        Some("customer@alpha.example"),
        Some(&details),
    )
    .await?;
    let found = accounts::get_by_stripe_customer_id(&mut *conn, ALPHA.shop, "cus_123").await?;
    assert_eq!(found.id, ALPHA.account);
    let anon = accounts::anonymise(&mut *conn, ALPHA.shop, ALPHA.account).await?;
    // sha256("customer@alpha.example") in hex, computed independently
    let name = anon.name.clone().unwrap();
    assert_eq!(
        name,
        "020fd7cb1f57abc3438ec1180c7c1d9c3985705b9df8efcaf018da3eb761d558"
    );
    assert_eq!(anon.hash_name.as_deref(), Some(name.as_str()));
    assert!(anon.details.is_none());
    // idempotent: anonymising again keeps the same hash
    let again = accounts::anonymise(&mut *conn, ALPHA.shop, ALPHA.account).await?;
    assert_eq!(again.name, anon.name);
    Ok(())
}

#[tokio::test]
async fn roles_make_admins() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    assert!(!roles::is_admin(&mut *conn, ALPHA.user).await?);
    let installed = reference_data::install(&mut conn).await?;
    let grant = roles::grant(&mut *conn, ALPHA.user, installed.admin_role_id).await?;
    let again = roles::grant(&mut *conn, ALPHA.user, installed.admin_role_id).await?;
    assert_eq!(grant.id, again.id);
    assert!(roles::is_admin(&mut *conn, ALPHA.user).await?);
    assert_eq!(
        roles::of_user(&mut *conn, ALPHA.user).await?[0].name,
        "admin"
    );
    assert_not_found(roles::grant(&mut *conn, Uuid::new_v4(), installed.admin_role_id).await);
    roles::revoke(&mut *conn, ALPHA.user, installed.admin_role_id).await?;
    assert!(!roles::is_admin(&mut *conn, ALPHA.user).await?);
    assert_not_found(roles::revoke(&mut *conn, ALPHA.user, installed.admin_role_id).await);
    // deleting a user takes their memberships with them
    users::delete(&mut conn, ALPHA.user).await?;
    assert!(!shared_db::shop::shops_users::is_member(&mut *conn, ALPHA.shop, ALPHA.user).await?);
    assert_not_found(users::delete(&mut conn, ALPHA.user).await);
    Ok(())
}

#[tokio::test]
async fn reference_data_is_a_separate_idempotent_step() -> anyhow::Result<()> {
    // the schema migrations alone leave the tables empty
    let t = super::fresh().await?;
    let mut conn = t.pool().acquire().await?;
    assert_not_found(shops::get_by_name(&mut *conn, reference_data::DEFAULT_SHOP_NAME).await);
    assert_not_found(roles::get_by_name(&mut *conn, roles::ADMIN).await);
    let first = reference_data::install(&mut conn).await?;
    let second = reference_data::install(&mut conn).await?;
    assert_eq!(first, second);
    let shop = shops::get(&mut *conn, first.default_shop_id).await?;
    assert_eq!(shop.description.as_deref(), Some("Default shop"));
    assert_eq!(
        [
            shop.vat_standard,
            shop.vat_lower_1,
            shop.vat_lower_2,
            shop.vat_lower_3,
            shop.vat_special,
            shop.vat_zero
        ],
        [21.0, 15.0, 10.0, 5.0, 2.0, 0.0]
    );
    assert_eq!(
        roles::get(&mut *conn, first.admin_role_id).await?.name,
        "admin"
    );
    Ok(())
}
