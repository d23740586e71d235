//! Secrets stay put and stay hidden; logging in does not tell which accounts exist.

use std::time::{Duration, Instant};

use shared_db::shop::shops::{self, Secret, ShopFields};
use shared_db::shop::users::{self, UserFields};

use super::{ALPHA, assert_not_found, two_shops};

#[tokio::test]
async fn an_update_without_secrets_keeps_them_and_clearing_is_explicit() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    let mut fields = ShopFields::named("gamma");
    fields.stripe_secret_key = Some("sk_live_topsecret".into());
    fields.discord_webhook = Some("https://discord.example/api/webhooks/1/token".into());
    let shop = shops::create(&mut *conn, &fields).await?;

    // the webhook is a secret: not serialized, redacted in Debug
    let json = serde_json::to_string(&shop)?;
    assert!(
        !json.contains("discord.example") && !json.contains("sk_live"),
        "{json}"
    );
    assert!(!format!("{shop:?}").contains("discord.example"));
    assert!(!format!("{fields:?}").contains("discord.example"));

    // the natural round trip: a form built from what a read serializes has no secrets
    let mut edit = ShopFields::named("gamma");
    edit.description = Some("now with a description".into());
    let updated = shops::update(&mut conn, shop.id, shop.version, &edit).await?;
    assert_eq!(
        updated.stripe_secret_key.as_deref(),
        Some("sk_live_topsecret")
    );
    assert_eq!(
        updated.discord_webhook.as_deref(),
        Some("https://discord.example/api/webhooks/1/token")
    );

    shops::clear_secret(&mut *conn, shop.id, Secret::StripeSecretKey).await?;
    shops::clear_secret(&mut *conn, shop.id, Secret::DiscordWebhook).await?;
    let cleared = shops::get(&mut *conn, shop.id).await?;
    assert_eq!(
        (cleared.stripe_secret_key, cleared.discord_webhook),
        (None, None)
    );
    assert_eq!(
        cleared.description.as_deref(),
        Some("now with a description")
    );
    Ok(())
}

async fn timed(f: impl Future<Output = shared_db::Result<users::User>>) -> Duration {
    let start = Instant::now();
    assert_not_found(f.await);
    start.elapsed()
}

#[tokio::test]
async fn an_unknown_email_costs_the_same_bcrypt_work_as_a_wrong_password() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let mut conn = t.pool().acquire().await?;
    users::create(
        &mut *conn,
        &UserFields {
            email: Some("known@example.com".into()),
            password: Some("the right one".into()),
            active: true,
            ..Default::default()
        },
    )
    .await?;
    // warm up both paths (connection, prepared statements)
    let _ = users::authenticate(&mut *conn, "known@example.com", "wrong").await;
    let _ = users::authenticate(&mut *conn, "nobody@example.com", "wrong").await;
    let (mut wrong, mut unknown) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..3 {
        wrong += timed(users::authenticate(
            &mut *conn,
            "known@example.com",
            "wrong",
        ))
        .await;
        unknown += timed(users::authenticate(
            &mut *conn,
            "nobody@example.com",
            "wrong",
        ))
        .await;
    }
    // one bcrypt verification each: the same order of time (without the dummy verification an
    // unknown e-mail answers in a fraction of a millisecond, hundreds of times faster)
    let ratio = unknown.as_secs_f64() / wrong.as_secs_f64();
    assert!(
        (0.3..=3.0).contains(&ratio),
        "unknown {unknown:?} vs wrong password {wrong:?} (ratio {ratio:.2})"
    );
    // and the user that exists but has no password behaves the same
    assert_not_found(users::authenticate(&mut *conn, "alpha-admin@example.com", "x").await);
    let _ = ALPHA;
    Ok(())
}

/// Polls `work` together with a future that counts how often the runtime's only thread was free
/// while `work` was unfinished. Zero means `work` held the thread to the end (ran inline).
async fn turns_while(work: impl Future<Output = ()>) -> u64 {
    use std::cell::Cell;
    let done = Cell::new(false);
    let turns = Cell::new(0_u64);
    tokio::join!(
        async {
            work.await;
            done.set(true);
        },
        async {
            while !done.get() {
                turns.set(turns.get() + 1);
                tokio::task::yield_now().await;
            }
        }
    );
    turns.get()
}

#[tokio::test(flavor = "current_thread")]
async fn bcrypt_runs_off_the_async_thread() -> anyhow::Result<()> {
    let t = two_shops().await?;
    let user = users::create(
        t.pool(),
        &UserFields {
            email: Some("known@example.com".into()),
            password: Some("the right one".into()),
            active: true,
            ..Default::default()
        },
    )
    .await?;
    // on a single-threaded runtime, the other future gets turns only if bcrypt is elsewhere
    assert!(turns_while(async { users::hash_password("pw").await.map(drop).unwrap() }).await > 0);
    assert!(
        turns_while(async { assert!(user.verify_password("the right one").await.unwrap()) }).await
            > 0
    );
    let pool = t.pool().clone();
    assert!(
        turns_while(async {
            let _ = users::authenticate(&pool, "nobody@example.com", "x").await;
        })
        .await
            > 0
    );
    Ok(())
}
