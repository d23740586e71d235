//! Input rules checked before any SQL: identifiers are refused when too long (never cut), credit
//! amounts must fit `numeric(18,9)`, and NUL bytes are stripped from every text input (stored
//! text, lookup keys and JSON alike), the one rule PlanExe applies to prompts.

use rust_decimal::Decimal;
use serde_json::json;
use shared_db::Error;
use shared_db::planexe::credit_history::{self, Charge, PlanUsage};
use shared_db::planexe::payment_record::{self, NewPayment, PaymentOutcome};
use shared_db::planexe::user_account::{self, OAuthProfile};
use shared_db::planexe::{MAX_CREDITS, plans, user_provider};
use shared_db::testing::TestDatabase;
use sqlx::PgPool;
use uuid::Uuid;

use crate::user_with_credits;

fn refused_naming(result: Result<impl std::fmt::Debug, Error>, field: &str) {
    match result {
        Err(Error::InvalidInput(message)) => {
            assert!(message.contains(field), "{message:?} names {field}")
        }
        other => panic!("expected InvalidInput naming {field}, got {other:?}"),
    }
}

async fn rows(pool: &PgPool) -> anyhow::Result<(i64, i64, i64, i64)> {
    let r = sqlx::query!(
        r#"SELECT (SELECT count(*) FROM credit_history) AS "ledger!",
                  (SELECT count(*) FROM payment_record) AS "payments!",
                  (SELECT count(*) FROM user_provider) AS "links!",
                  (SELECT count(*) FROM plans) AS "plans!""#
    )
    .fetch_one(pool)
    .await?;
    Ok((r.ledger, r.payments, r.links, r.plans))
}

fn payment<'a>(user_id: Uuid, id: &'a str, credits: Decimal) -> NewPayment<'a> {
    NewPayment {
        user_id,
        provider: "stripe",
        provider_payment_id: id,
        credits,
        amount: 100,
        currency: "usd",
        raw_payload: None,
    }
}

#[tokio::test]
async fn identifiers_that_are_too_long_are_refused_by_name_and_never_cut() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let user = user_with_credits(pool, "buyer", Decimal::ZERO).await;
    let before = rows(pool).await?;

    // Two different payment ids that share their first 256 characters are two payments.
    let prefix = "p".repeat(255);
    let (a, b) = (format!("{prefix}a"), format!("{prefix}b"));
    for id in [&a, &b] {
        assert!(matches!(
            payment_record::apply(
                &mut *pool.acquire().await?,
                &payment(user, id, Decimal::ONE)
            )
            .await?,
            PaymentOutcome::Applied { .. }
        ));
    }
    let too_long = format!("{prefix}ab");
    refused_naming(
        payment_record::apply(
            &mut *pool.acquire().await?,
            &payment(user, &too_long, Decimal::ONE),
        )
        .await,
        "provider payment id",
    );
    refused_naming(
        payment_record::get_by_provider_id(pool, "stripe", &too_long).await,
        "provider payment id",
    );
    refused_naming(
        user_account::sign_in(
            pool,
            &OAuthProfile {
                provider: "github",
                provider_user_id: &"9".repeat(257),
                ..Default::default()
            },
        )
        .await,
        "provider user id",
    );
    refused_naming(
        user_provider::get_by_identity(pool, "github", &"9".repeat(257)).await,
        "provider user id",
    );
    let owner = "u".repeat(257);
    refused_naming(
        plans::enqueue(
            pool,
            &plans::NewPlan {
                prompt: "p",
                user_id: Some(&owner),
                ..Default::default()
            },
        )
        .await,
        "plan user id",
    );
    refused_naming(
        credit_history::charge(
            &mut *pool.acquire().await?,
            &Charge {
                user_id: user,
                amount: Decimal::ONE,
                reason: "r",
                source: "a-source-name-longer-than-32-chars",
                allow_negative: true,
                ..Default::default()
            },
        )
        .await,
        "ledger source",
    );
    let (ledger, payments, links, plans) = rows(pool).await?;
    assert_eq!(
        (ledger, payments, links, plans),
        (before.0 + 2, before.1 + 2, before.2, before.3),
        "only the two valid payments were written"
    );
    Ok(())
}

#[tokio::test]
async fn amounts_outside_numeric_18_9_are_refused_before_anything_is_written() -> anyhow::Result<()>
{
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let user = user_with_credits(pool, "rich", Decimal::ZERO).await;
    let huge = Decimal::new(1_000_000_000, 0);
    let charge = |amount| Charge {
        user_id: user,
        amount,
        reason: "r",
        source: "api",
        allow_negative: true,
        ..Default::default()
    };

    refused_naming(
        credit_history::charge(&mut *pool.acquire().await?, &charge(Decimal::MAX)).await,
        "charge amount",
    );
    refused_naming(
        credit_history::grant(&mut *pool.acquire().await?, user, huge, None, None).await,
        "grant amount",
    );
    refused_naming(
        payment_record::apply(&mut *pool.acquire().await?, &payment(user, "cs_huge", huge)).await,
        "payment credits",
    );
    refused_naming(
        credit_history::grant(&mut *pool.acquire().await?, user, Decimal::MIN, None, None).await,
        "grant amount",
    );

    // The largest amount fits; one more credit would push the balance out of range.
    credit_history::grant(&mut *pool.acquire().await?, user, MAX_CREDITS, None, None).await?;
    let before = rows(pool).await?;
    refused_naming(
        credit_history::grant(&mut *pool.acquire().await?, user, Decimal::ONE, None, None).await,
        "balance",
    );
    refused_naming(
        payment_record::apply(
            &mut *pool.acquire().await?,
            &payment(user, "cs_one_more", Decimal::ONE),
        )
        .await,
        "balance",
    );
    // And a debt cannot go below -MAX either.
    let debtor = user_with_credits(pool, "debtor", Decimal::ZERO).await;
    credit_history::charge(
        &mut *pool.acquire().await?,
        &Charge {
            user_id: debtor,
            ..charge(MAX_CREDITS)
        },
    )
    .await?;
    let after_debt = rows(pool).await?;
    refused_naming(
        credit_history::charge(
            &mut *pool.acquire().await?,
            &Charge {
                user_id: debtor,
                ..charge(Decimal::ONE)
            },
        )
        .await,
        "balance",
    );
    assert_eq!(rows(pool).await?, after_debt, "nothing written");
    assert_eq!(after_debt.0, before.0 + 1, "only the debt itself");

    // Usage billing checks its cost the same way.
    crate::queue_plan(pool, &user.to_string(), "p").await;
    let run = crate::claim(pool, "w").await;
    let mut conn = pool.acquire().await?;
    refused_naming(
        credit_history::bill_usage_progress(
            &mut conn,
            &PlanUsage {
                user_id: user,
                attempt: run,
                api_key_id: None,
                cost: Decimal::new(-1, 0),
                succeeded: false,
            },
        )
        .await,
        "usage cost",
    );
    assert_eq!(
        user_account::get(pool, user).await?.credits_balance,
        MAX_CREDITS
    );
    assert!(
        credit_history::reconcile(&mut *pool.acquire().await?)
            .await?
            .is_empty()
    );
    Ok(())
}

#[tokio::test]
async fn nul_bytes_are_stripped_from_every_text_input_lookups_and_json_included()
-> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();

    // An identity written and looked up with a NUL is the identity without it.
    let signed = user_account::sign_in(
        pool,
        &OAuthProfile {
            provider: "git\0hub",
            provider_user_id: "ab\0c",
            name: Some("A\0nn"),
            raw_profile: Some(&json!({ "lo\0gin": "a\0nn" })),
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(signed.user.name.as_deref(), Some("Ann"));
    let link = user_provider::get_by_identity(pool, "github", "abc").await?;
    assert_eq!(link.raw_profile, Some(json!({ "login": "ann" }).into()));
    assert_eq!(
        user_provider::get_by_identity(pool, "git\0hub", "a\0bc")
            .await?
            .id,
        link.id
    );

    // Plan text, owner and parameters; the JSON stays usable in SQL (`->>`, a cast to jsonb).
    let params = json!({ "pipeline_version": 2, "model_profile": "base\0line", "tags": ["x\0"] });
    let event_extra = json!({ "sou\0rce": "we\0b" });
    let id = plans::enqueue(
        pool,
        &plans::NewPlan {
            prompt: "wr\0ite",
            user_id: Some("ow\0ner"),
            parameters: Some(&params),
            event_context: Some(&event_extra),
            ..Default::default()
        },
    )
    .await?
    .id;
    let window = std::time::Duration::from_secs(60);
    assert_eq!(
        plans::find_duplicate(pool, "own\0er", "writ\0e", Some("baseli\0ne"), window).await?,
        Some(id)
    );
    let stored = sqlx::query!(
        r#"SELECT prompt, user_id, parameters->>'model_profile' AS profile,
                  parameters::jsonb -> 'tags' ->> 0 AS tag
           FROM plans WHERE id = $1"#,
        id
    )
    .fetch_one(pool)
    .await?;
    assert_eq!(
        (stored.prompt, stored.user_id, stored.profile, stored.tag),
        (
            Some("write".into()),
            Some("owner".into()),
            Some("baseline".into()),
            Some("x".into())
        )
    );

    // The plan's event context (the caller's extra keys) likewise.
    let source = sqlx::query_scalar!(
        r#"SELECT context::jsonb ->> 'source' AS "source" FROM events
           WHERE planexe_event_task_id(context) = $1::uuid::text"#,
        id
    )
    .fetch_one(pool)
    .await?;
    assert_eq!(source.as_deref(), Some("web"));

    // A payment id and payload: applied and found with or without the NUL.
    let payload = json!({ "id": "cs\0_1" });
    let mut p = payment(signed.user.id, "cs\0_1", Decimal::ONE);
    p.raw_payload = Some(&payload);
    let first = payment_record::apply(&mut *pool.acquire().await?, &p).await?;
    let found = payment_record::get_by_provider_id(pool, "stripe", "cs_1").await?;
    assert_eq!(found.raw_payload, Some(json!({ "id": "cs_1" }).into()));
    assert_eq!(
        payment_record::apply(
            &mut *pool.acquire().await?,
            &payment(signed.user.id, "cs_1", Decimal::ONE)
        )
        .await?,
        first,
        "the same payment: the first outcome"
    );
    Ok(())
}
