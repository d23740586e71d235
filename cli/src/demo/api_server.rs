//! API server: authenticate, submit, dedup.

use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use shared_db::Database;
use shared_db::planexe::plans::{self, NewPlan};
use shared_db::planexe::user_api_key::{self, RawApiKey};
use uuid::Uuid;

use super::frontend::Frontend;
use super::{Checks, heading, short};

pub(super) struct ApiServer {
    pub(super) plan_id: Uuid,
    pub(super) prompt: String,
}

/// API server: authenticate, submit, dedup.
pub(super) async fn run(
    db: &Database,
    fe: &Frontend,
    checks: &mut Checks,
) -> anyhow::Result<ApiServer> {
    heading("API server");
    let presented = RawApiKey::from_presented(fe.raw_key.expose());
    let auth = user_api_key::authenticate(db.pool(), &fe.secret, &presented)
        .await?
        .context("the fresh key does not authenticate")?;
    println!(
        "request with the raw key → user {}, key {}, balance {} credits",
        auth.user_id,
        short(auth.api_key_id),
        auth.credits_balance
    );
    let forged = RawApiKey::from_presented("pex_not-a-real-key-000000000000000");
    let rejected = user_api_key::authenticate(db.pool(), &fe.secret, &forged).await?;
    checks.check(
        auth.user_id == fe.user_id && rejected.is_none(),
        "the raw key authenticates its owner; an unknown key is rejected",
    );

    let user = fe.user_id.to_string();
    let prompt = "A business plan for a solar-powered coffee cart".to_owned();
    let params = json!({ "model_profile": "balanced" });
    let mut submitted = Vec::new();
    for attempt in 1..=2 {
        let dup = plans::find_duplicate(
            db.pool(),
            &user,
            &prompt,
            Some("balanced"),
            Duration::from_secs(600),
        )
        .await?;
        let id = match dup {
            Some(existing) => {
                println!(
                    "submission {attempt}: duplicate of plan {} (dedup lookup), nothing queued",
                    short(existing)
                );
                existing
            }
            None => {
                let q = plans::enqueue(
                    db.pool(),
                    &NewPlan {
                        prompt: &prompt,
                        user_id: Some(&user),
                        api_key_id: Some(fe.api_key_id),
                        parameters: Some(&params),
                        ..Default::default()
                    },
                )
                .await?;
                println!("submission {attempt}: queued plan {}", short(q.id));
                q.id
            }
        };
        submitted.push(id);
    }
    checks.check(
        submitted[0] == submitted[1],
        "the duplicate submission returned the first plan",
    );
    Ok(ApiServer {
        plan_id: submitted[0],
        prompt,
    })
}
