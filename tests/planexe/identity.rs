//! Identity: OAuth sign-in, the admin account, API keys in the Python format.

use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use shared_db::Error;
use shared_db::planexe::user_account::{self, OAuthProfile};
use shared_db::planexe::user_api_key::{self, ApiKeySecret, KeyOptions, RawApiKey};
use shared_db::planexe::user_provider;
use shared_db::testing::TestDatabase;
use uuid::Uuid;

use crate::user_with_credits;

#[tokio::test]
async fn a_key_has_the_python_format_and_authenticates_until_revoked() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let user = user_with_credits(pool, "keyholder", Decimal::new(3, 0)).await;
    let secret = ApiKeySecret::new("prod-secret");
    let mut conn = pool.acquire().await?;
    let issued = user_api_key::create(
        &mut conn,
        &secret,
        user,
        &RawApiKey::generate()?,
        Some("laptop"),
        KeyOptions::default(),
    )
    .await?;

    let raw = issued.raw.expose().to_owned();
    assert_eq!(raw.len(), 36);
    assert!(raw.starts_with("pex_"));
    assert!(
        raw[4..]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    );
    assert_eq!(issued.key.key_prefix, raw[..10]);
    let python_hash = hex::encode(Sha256::digest(format!("prod-secret:{raw}").as_bytes()));
    assert_eq!(issued.key.key_hash, python_hash);
    assert_eq!(
        issued.key.key_plaintext, None,
        "plaintext is off by default"
    );
    assert_eq!(issued.key.label.as_deref(), Some("laptop"));

    // Secrets never serialize nor print.
    let json = serde_json::to_string(&issued.key)?;
    assert!(!json.contains(&python_hash) && !json.contains("key_plaintext"));
    assert!(!format!("{:?}", issued).contains(&python_hash));
    assert!(!format!("{:?}", issued).contains(&raw));

    let auth = user_api_key::authenticate(pool, &secret, &issued.raw)
        .await?
        .expect("valid key");
    assert_eq!(
        (auth.user_id, auth.api_key_id, auth.credits_balance),
        (user, issued.key.id, Decimal::new(3, 0))
    );
    let first_use =
        user_api_key::list_for_user(pool, user, Default::default()).await?[0].last_used_at;
    assert!(first_use.is_some());
    // Within the granularity the hot path does not write again.
    user_api_key::authenticate(pool, &secret, &issued.raw)
        .await?
        .expect("still valid");
    assert_eq!(
        user_api_key::list_for_user(pool, user, Default::default()).await?[0].last_used_at,
        first_use
    );
    assert!(
        user_api_key::authenticate(pool, &ApiKeySecret::new("other"), &issued.raw)
            .await?
            .is_none()
    );

    let renamed = user_api_key::rename(pool, user, issued.key.id, Some("desktop")).await?;
    assert_eq!(renamed.label.as_deref(), Some("desktop"));

    // Reset: a new key on the same row; the old one stops working.
    let reset = user_api_key::reset(
        pool,
        &secret,
        user,
        issued.key.id,
        KeyOptions {
            store_plaintext: true,
        },
    )
    .await?;
    assert_eq!(reset.key.id, issued.key.id);
    assert_eq!(reset.key.key_plaintext.as_deref(), Some(reset.raw.expose()));
    assert!(
        user_api_key::authenticate(pool, &secret, &issued.raw)
            .await?
            .is_none()
    );
    assert!(
        user_api_key::authenticate(pool, &secret, &reset.raw)
            .await?
            .is_some()
    );

    user_api_key::revoke(pool, user, issued.key.id).await?;
    assert!(
        user_api_key::authenticate(pool, &secret, &reset.raw)
            .await?
            .is_none()
    );
    assert!(matches!(
        user_api_key::revoke(pool, Uuid::new_v4(), issued.key.id).await,
        Err(Error::NotFound)
    ));
    Ok(())
}

#[tokio::test]
async fn a_key_made_by_the_python_frontend_authenticates_here() -> anyhow::Result<()> {
    let db =
        TestDatabase::with_fixture(include_str!("../fixtures/planexe/legacy_rows.sql")).await?;
    let raw = RawApiKey::from_presented("pex_AAECAwQFBgcICQoLDA0ODxAREhMUFRYX");
    let auth =
        user_api_key::authenticate(db.pool(), &ApiKeySecret::new("dev-api-key-secret"), &raw)
            .await?
            .expect("python key accepted");
    assert_eq!(
        auth.user_id,
        "00000000-0000-4000-8000-0000000000b1".parse::<Uuid>()?
    );
    assert_eq!(raw.prefix(), "pex_AAECAw");
    Ok(())
}

#[tokio::test]
async fn sign_in_overwrites_profile_fields_only_with_non_empty_values() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let first = user_account::sign_in(
        pool,
        &OAuthProfile {
            provider: "discord",
            provider_user_id: "77",
            email: Some("zed@example.com"),
            name: Some("Zed"),
            locale: Some("de"),
            raw_profile: Some(&serde_json::json!({ "id": "77" })),
            ..Default::default()
        },
    )
    .await?;
    assert!(first.created);
    let again = user_account::sign_in(
        pool,
        &OAuthProfile {
            provider: "discord",
            provider_user_id: "77",
            email: Some(""),
            name: Some("Zed Z."),
            ..Default::default()
        },
    )
    .await?;
    assert!(!again.created);
    assert_eq!(again.user.id, first.user.id);
    assert_eq!(again.user.email.as_deref(), Some("zed@example.com"));
    assert_eq!(again.user.name.as_deref(), Some("Zed Z."));
    assert_eq!(again.user.locale.as_deref(), Some("de"));
    assert!(again.user.last_login_at >= first.user.last_login_at);
    let link = user_provider::get_by_identity(pool, "discord", "77").await?;
    assert_eq!(link.user_id, first.user.id);
    assert_eq!(
        user_account::get(pool, first.user.id)
            .await?
            .credits_balance,
        Decimal::ZERO
    );
    Ok(())
}

#[tokio::test]
async fn an_orphaned_oauth_link_gets_its_user_back_instead_of_a_second_user() -> anyhow::Result<()>
{
    let db =
        TestDatabase::with_fixture(include_str!("../fixtures/planexe/legacy_rows.sql")).await?;
    let signed = user_account::sign_in(
        db.pool(),
        &OAuthProfile {
            provider: "github",
            provider_user_id: "orphan-42",
            name: Some("Orphan"),
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(
        signed.user.id,
        "00000000-0000-4000-8000-0000000000c2".parse::<Uuid>()?
    );
    assert!(signed.created);
    assert_eq!(signed.user.email.as_deref(), None);
    assert_eq!(
        user_provider::list_for_user(db.pool(), signed.user.id)
            .await?
            .len(),
        1
    );
    Ok(())
}

#[tokio::test]
async fn the_admin_account_has_the_python_deterministic_id() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    // uuid.uuid5(uuid.NAMESPACE_URL, "planexe-admin-pref:admin") in Python.
    let expected: Uuid = "21c9382e-efcc-5c4b-a500-2667a038a86c".parse()?;
    assert_eq!(user_account::admin_id("admin"), expected);
    let admin = user_account::ensure_admin(db.pool(), "admin").await?;
    assert_eq!(admin.id, expected);
    assert!(admin.is_admin);
    assert_eq!(
        user_account::ensure_admin(db.pool(), "admin").await?.id,
        expected
    );
    Ok(())
}
