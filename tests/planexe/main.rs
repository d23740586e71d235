//! planexe stories, each against a freshly migrated PostgreSQL database of its own.

mod attempt_billing;
mod batch;
mod concurrency;
mod credits;
mod exactly_once;
mod hot_indexes;
mod identity;
mod input_rules;
mod legacy;
mod liveness;
mod other_writers;
mod ownership;
mod python_json;
mod python_writers;
mod queue;
mod reads;
mod reconcile;
mod replay;
mod retention;
mod schema;
mod telemetry;
mod wakeups;

use rust_decimal::Decimal;
use shared_db::planexe::plans::{self, NewPlan};
use shared_db::planexe::user_account::{self, OAuthProfile};
use sqlx::PgPool;
use uuid::Uuid;

/// A signed-in user with `credits` granted (or none when zero).
pub async fn user_with_credits(pool: &PgPool, name: &str, credits: Decimal) -> Uuid {
    let signed = user_account::sign_in(
        pool,
        &OAuthProfile {
            provider: "github",
            provider_user_id: name,
            name: Some(name),
            ..Default::default()
        },
    )
    .await
    .expect("sign in");
    if credits > Decimal::ZERO {
        shared_db::planexe::credit_history::grant(
            &mut pool.acquire().await.expect("a connection"),
            signed.user.id,
            credits,
            None,
            None,
        )
        .await
        .expect("grant");
    }
    signed.user.id
}

/// Queue a plan for `user` with pipeline version 2.
pub async fn queue_plan(pool: &PgPool, user: &str, prompt: &str) -> Uuid {
    let params = serde_json::json!({ "pipeline_version": 2, "model_profile": "baseline" });
    plans::enqueue(
        pool,
        &NewPlan {
            prompt,
            user_id: Some(user),
            parameters: Some(&params),
            ..Default::default()
        },
    )
    .await
    .expect("enqueue")
    .id
}

/// Claim the next plan as `worker`; its run's attempt.
pub async fn claim(pool: &PgPool, worker: &str) -> plans::Attempt {
    plans::claim_next(pool, worker)
        .await
        .expect("claim")
        .expect("a pending plan")
        .attempt
}
