//! Web frontend: sign-in, purchase, API key.

use rust_decimal::Decimal;
use serde_json::json;
use shared_db::Database;
use shared_db::planexe::payment_record;
use shared_db::planexe::user_account::{self, OAuthProfile};
use shared_db::planexe::user_api_key::{self, ApiKeySecret, KeyOptions, RawApiKey};
use shared_db::planexe::user_provider;
use uuid::Uuid;

use super::{Checks, heading};

pub(super) struct Frontend {
    pub(super) user_id: Uuid,
    pub(super) secret: ApiKeySecret,
    pub(super) raw_key: RawApiKey,
    pub(super) api_key_id: Uuid,
}

/// Web frontend: sign-in, purchase, API key.
pub(super) async fn run(
    db: &Database,
    run_id: &str,
    checks: &mut Checks,
) -> anyhow::Result<Frontend> {
    heading("frontend (web app)");
    let email = format!("ada+{run_id}@example.com");
    let provider_user_id = format!("google-{run_id}");
    let raw_profile = json!({ "sub": provider_user_id, "email": email });
    let profile = OAuthProfile {
        provider: "google",
        provider_user_id: &provider_user_id,
        email: Some(&email),
        name: Some("Ada Lovelace"),
        given_name: Some("Ada"),
        family_name: Some("Lovelace"),
        locale: Some("en"),
        raw_profile: Some(&raw_profile),
        ..Default::default()
    };
    let first = user_account::sign_in(db.pool(), &profile).await?;
    println!(
        "Ada signs in with Google: user {} (created: {})",
        first.user.id, first.created
    );
    let second = user_account::sign_in(db.pool(), &profile).await?;
    println!(
        "Ada signs in again:       user {} (created: {})",
        second.user.id, second.created
    );
    let links = user_provider::list_for_user(db.pool(), first.user.id).await?;
    checks.check(
        first.created && !second.created && first.user.id == second.user.id && links.len() == 1,
        format!(
            "one account, {} provider link(s) after two sign-ins",
            links.len()
        ),
    );
    let user_id = first.user.id;

    // The payment provider delivers the same webhook twice, concurrently (webhook + success page).
    let payment_id = format!("pi_demo_{run_id}");
    let payload = json!({ "id": payment_id, "amount": 2000, "currency": "usd" });
    let payment = payment_record::NewPayment {
        user_id,
        provider: "stripe",
        provider_payment_id: &payment_id,
        credits: Decimal::from(100),
        amount: 2000,
        currency: "usd",
        raw_payload: Some(&payload),
    };
    let (mut conn_a, mut conn_b) = (db.pool().acquire().await?, db.pool().acquire().await?);
    let (a, b) = tokio::join!(
        payment_record::apply(&mut conn_a, &payment),
        payment_record::apply(&mut conn_b, &payment)
    );
    drop((conn_a, conn_b));
    let outcomes = [a?, b?];
    for (i, o) in outcomes.iter().enumerate() {
        match o {
            payment_record::PaymentOutcome::Applied { new_balance, .. } => println!(
                "webhook delivery {}: payment applied, balance {new_balance} credits",
                i + 1
            ),
            payment_record::PaymentOutcome::Duplicate { .. } => {
                println!("webhook delivery {}: recorded by another writer", i + 1)
            }
        }
    }
    // Both deliveries answer the one outcome (the replay contract): the same payment row.
    let one_outcome = outcomes[0] == outcomes[1]
        && matches!(outcomes[0], payment_record::PaymentOutcome::Applied { .. });
    let user = user_account::get(db.pool(), user_id).await?;
    checks.check(
        one_outcome && user.credits_balance == Decimal::from(100),
        format!(
            "payment delivered twice, credited once (balance {})",
            user.credits_balance
        ),
    );

    let secret = ApiKeySecret::new(format!("demo-secret-{run_id}"));
    let mut conn = db.acquire().await?;
    let issued = user_api_key::create(
        &mut conn,
        &secret,
        user_id,
        &RawApiKey::generate()?,
        Some("demo script"),
        KeyOptions::default(),
    )
    .await?;
    drop(conn);
    println!(
        "API key created (shown once, only its hash is stored): {}",
        issued.raw.expose()
    );
    let listed = user_api_key::list_for_user(db.pool(), user_id, Default::default()).await?;
    checks.check(
        listed.len() == 1 && listed[0].key_plaintext.is_none(),
        format!(
            "key listed by prefix {}…, plaintext not stored",
            listed[0].key_prefix
        ),
    );
    Ok(Frontend {
        user_id,
        secret,
        raw_key: issued.raw,
        api_key_id: issued.key.id,
    })
}
