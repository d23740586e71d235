//! One conformance suite, two backends: each story below is written once against [`Backend`] and
//! runs as `<story>::postgres` (the library on a fresh database of the embedded cluster) and
//! `<story>::sqlite` (this crate on a fresh file). What a story asserts is what a service may rely
//! on whichever backend it runs on.

#[macro_use]
mod backend;
mod accounts;
mod lifecycle;
mod other_writer;
mod plans;
mod telemetry;

use std::collections::HashSet;
use std::time::Duration;

use backend::{Backend, ChargeArgs};
use rust_decimal::Decimal;
use shared_db::Error;
use shared_db::planexe::plans::ProgressAck;
use shared_db::planexe::user_api_key::RawApiKey;
use shared_db::planexe::{EventType, PlanState};
use shared_db::schema::SchemaStatus;

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

conformance!(
    a_fresh_database_is_up_to_date,
    the_queue_hands_out_plans_oldest_first_and_each_once,
    concurrent_workers_never_share_a_plan,
    a_worker_that_lost_its_run_writes_nothing_and_the_reaper_requeues_it,
    a_plan_that_keeps_losing_workers_fails_instead_of_cycling,
    the_report_is_deferred_and_flagged,
    balance_equals_the_ledger_sum_under_concurrent_charges_and_grants,
    a_charge_never_overdraws,
    a_repeated_idempotency_key_replays_the_first_outcome,
    concurrent_duplicates_of_one_key_apply_once,
    api_keys_are_hashed_shown_once_and_revocable,
    input_rules_refuse_what_they_refuse_on_both_backends,
);

async fn a_fresh_database_is_up_to_date<B: Backend>(b: B) {
    let status = b.status().await;
    assert!(
        matches!(status, SchemaStatus::UpToDate { .. }),
        "{status:?}"
    );
    assert_eq!(status.exit_code(), 0);
}

async fn the_queue_hands_out_plans_oldest_first_and_each_once<B: Backend>(b: B) {
    let first = b.enqueue("first", Some("alice")).await.unwrap();
    let second = b.enqueue("second", Some("alice")).await.unwrap();
    assert_eq!(b.count_pending().await.unwrap(), 2);

    let claimed = b.claim("w1").await.unwrap().expect("a plan");
    assert_eq!(claimed.plan.id, first, "oldest first");
    assert_eq!(claimed.plan.state, Some(PlanState::Processing));
    assert_eq!(
        claimed.plan.progress_message.as_deref(),
        Some("Picked up by server")
    );
    assert_eq!(claimed.plan.prompt.as_deref(), Some("first"));
    assert_eq!(claimed.plan.user_id.as_deref(), Some("alice"));
    let next = b.claim("w2").await.unwrap().expect("a plan");
    assert_eq!(next.plan.id, second);
    assert!(b.claim("w3").await.unwrap().is_none(), "queue empty");
    assert_eq!(b.count_pending().await.unwrap(), 0);

    // The plan's story is in its events, in order, named by the hyphenated id.
    let events = b.events(first).await.unwrap();
    let kinds: Vec<_> = events.iter().map(|e| e.event_type).collect();
    assert_eq!(kinds, [EventType::TaskPending, EventType::TaskProcessing]);
    assert_eq!(
        events[1].context.as_ref().unwrap()["worker_id"],
        serde_json::json!("w1")
    );

    b.complete(claimed.attempt).await.unwrap();
    let done = b.plan(first).await.unwrap();
    assert_eq!(done.state, Some(PlanState::Completed));
    assert_eq!(done.progress_percentage, Some(Decimal::ONE_HUNDRED));
    // Completing twice is a refused transition, not a second completion.
    let again = b.complete(claimed.attempt).await.unwrap_err();
    assert!(
        matches!(again, Error::InvalidTransition { .. }),
        "{again:?}"
    );
}

async fn concurrent_workers_never_share_a_plan<B: Backend>(b: B) {
    let mut queued = HashSet::new();
    for i in 0..60 {
        queued.insert(b.enqueue(&format!("plan {i}"), None).await.unwrap());
    }
    let workers: Vec<_> = (0..6)
        .map(|w| {
            let b = b.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                while let Some(c) = b.claim(&format!("worker-{w}")).await.unwrap() {
                    b.complete(c.attempt).await.unwrap();
                    mine.push(c.plan.id);
                }
                mine
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for w in workers {
        claimed.extend(w.await.unwrap());
    }
    let distinct: HashSet<_> = claimed.iter().copied().collect();
    assert_eq!(claimed.len(), 60, "every plan claimed once");
    assert_eq!(distinct, queued);
}

async fn a_worker_that_lost_its_run_writes_nothing_and_the_reaper_requeues_it<B: Backend>(b: B) {
    let plan = b.enqueue("long run", None).await.unwrap();
    let lost = b.claim("lost-worker").await.unwrap().unwrap();
    assert_eq!(
        b.progress(lost.attempt, d("10")).await.unwrap(),
        ProgressAck::Recorded
    );

    // A live worker's heartbeat keeps the reaper away.
    b.heartbeat("lost-worker", Some(lost.attempt))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let reaped = b.reap(Duration::from_secs(30), 3).await.unwrap();
    assert!(reaped.requeued.is_empty(), "{reaped:?}");

    // It goes silent: past the threshold the plan is re-queued and its attempt revoked.
    let reaped = b.reap(Duration::from_secs(1), 3).await.unwrap();
    assert_eq!(reaped.requeued, [plan]);
    let requeued = b.plan(plan).await.unwrap();
    assert_eq!(requeued.state, Some(PlanState::Pending));

    // The lost worker comes back: every write of its attempt is refused, nothing written.
    for err in [
        b.progress(lost.attempt, d("50")).await.unwrap_err(),
        b.complete(lost.attempt).await.unwrap_err(),
        b.store_report(lost.attempt, "<html>stale</html>")
            .await
            .unwrap_err(),
        b.heartbeat("lost-worker", Some(lost.attempt))
            .await
            .unwrap_err(),
    ] {
        assert!(
            matches!(err, Error::Superseded { plan_id } if plan_id == plan),
            "{err:?}"
        );
    }
    assert_eq!(b.report(plan).await.unwrap(), None);

    // A new claim gets a new attempt, which owns the run.
    let fresh = b.claim("new-worker").await.unwrap().unwrap();
    assert_eq!(fresh.plan.id, plan);
    assert_ne!(fresh.attempt, lost.attempt);
    b.complete(fresh.attempt).await.unwrap();
}

async fn a_plan_that_keeps_losing_workers_fails_instead_of_cycling<B: Backend>(b: B) {
    let plan = b.enqueue("poison", None).await.unwrap();
    for round in 0..2 {
        let c = b.claim("w").await.unwrap().unwrap();
        assert_eq!(c.plan.id, plan, "round {round}");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        b.heartbeat("w", None).await.unwrap(); // alive, but no longer on the plan
        let reaped = b.reap(Duration::from_secs(1), 1).await.unwrap();
        if round == 0 {
            assert_eq!(reaped.requeued, [plan]);
        } else {
            assert_eq!(reaped.failed, [plan]);
        }
    }
    let failed = b.plan(plan).await.unwrap();
    assert_eq!(failed.state, Some(PlanState::Failed));
    assert_eq!(failed.failure_reason.as_deref(), Some("worker_lost"));
    assert_eq!(failed.recoverable, Some(true));
}

async fn the_report_is_deferred_and_flagged<B: Backend>(b: B) {
    let plan = b.enqueue("report", None).await.unwrap();
    let c = b.claim("w").await.unwrap().unwrap();
    assert!(!c.plan.has_generated_report_html);
    assert_eq!(b.report(plan).await.unwrap(), None);
    let html = format!("<html>{}</html>", "x".repeat(800_000));
    b.store_report(c.attempt, &html).await.unwrap();
    let read = b.plan(plan).await.unwrap();
    assert!(read.has_generated_report_html, "flag without the column");
    assert_eq!(
        b.report(plan).await.unwrap().as_deref(),
        Some(html.as_str())
    );
}

async fn balance_equals_the_ledger_sum_under_concurrent_charges_and_grants<B: Backend>(b: B) {
    let user = b.new_user().await.unwrap();
    b.grant(user, d("100"), None).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let b = b.clone();
            tokio::spawn(async move {
                for i in 0..15 {
                    if (t + i) % 3 == 0 {
                        b.grant(user, d("0.333333333"), None).await.unwrap();
                    } else {
                        let args = ChargeArgs {
                            user,
                            amount: d("0.1"),
                            ..Default::default()
                        };
                        b.charge(&args).await.unwrap();
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let grants = (0..8)
        .flat_map(|t| (0..15).map(move |i| (t + i) % 3 == 0))
        .filter(|g| *g)
        .count() as i64;
    let charges = 120 - grants;
    let expected =
        d("100") + d("0.333333333") * Decimal::from(grants) - d("0.1") * Decimal::from(charges);
    let (rows, sum) = b.ledger(user).await.unwrap();
    assert_eq!(rows, 121);
    assert_eq!(sum, expected, "exact, no float drift");
    assert_eq!(b.balance(user).await.unwrap(), expected);
}

async fn a_charge_never_overdraws<B: Backend>(b: B) {
    let user = b.new_user().await.unwrap();
    b.grant(user, d("1"), None).await.unwrap();
    // Twenty concurrent charges of 0.1 against a balance of 1: exactly ten go through.
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let b = b.clone();
            tokio::spawn(async move {
                let args = ChargeArgs {
                    user,
                    amount: d("0.1"),
                    ..Default::default()
                };
                b.charge(&args).await
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(Error::InsufficientCredits { .. }) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(ok, 10);
    assert_eq!(b.balance(user).await.unwrap(), Decimal::ZERO);
    assert_eq!(b.ledger(user).await.unwrap(), (11, Decimal::ZERO));
}

async fn a_repeated_idempotency_key_replays_the_first_outcome<B: Backend>(b: B) {
    let user = b.new_user().await.unwrap();
    b.grant(user, d("10"), Some("grant-1")).await.unwrap();
    let replayed = b.grant(user, d("10"), Some("grant-1")).await.unwrap();
    assert_eq!(replayed.new_balance, d("10"));
    let args = ChargeArgs {
        user,
        amount: d("2.5"),
        key: Some("req-1".into()),
        ..Default::default()
    };
    let first = b.charge(&args).await.unwrap();
    b.grant(user, d("1"), None).await.unwrap(); // the balance moves on
    let again = b.charge(&args).await.unwrap();
    assert_eq!(again, first, "the first outcome, not a second charge");
    assert_eq!(b.balance(user).await.unwrap(), d("8.5"));

    let other = ChargeArgs {
        amount: d("3"),
        ..args.clone()
    };
    let err = b.charge(&other).await.unwrap_err();
    assert!(
        matches!(err, Error::IdempotencyKeyReused { field: "amount" }),
        "{err:?}"
    );
    assert_eq!(b.ledger(user).await.unwrap(), (3, d("8.5")));

    // Keys are scoped to their user.
    let someone = b.new_user().await.unwrap();
    b.grant(someone, d("5"), Some("req-1")).await.unwrap();
    assert_eq!(b.balance(someone).await.unwrap(), d("5"));
}

async fn concurrent_duplicates_of_one_key_apply_once<B: Backend>(b: B) {
    let user = b.new_user().await.unwrap();
    b.grant(user, d("100"), None).await.unwrap();
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let b = b.clone();
            tokio::spawn(async move {
                let args = ChargeArgs {
                    user,
                    amount: d("7"),
                    key: Some("checkout-42".into()),
                    ..Default::default()
                };
                b.charge(&args).await.unwrap()
            })
        })
        .collect();
    let mut outcomes = HashSet::new();
    for t in tasks {
        outcomes.insert(t.await.unwrap().entry_id);
    }
    assert_eq!(outcomes.len(), 1, "every duplicate answers the one entry");
    assert_eq!(b.balance(user).await.unwrap(), d("93"));
    assert_eq!(b.ledger(user).await.unwrap(), (2, d("93")));
}

async fn api_keys_are_hashed_shown_once_and_revocable<B: Backend>(b: B) {
    let user = b.new_user().await.unwrap();
    b.grant(user, d("4.2"), None).await.unwrap();
    let raw = RawApiKey::generate().unwrap();
    let issued = b.create_key(user, &raw, Some("laptop")).await.unwrap();
    assert_eq!(
        issued.raw.expose(),
        raw.expose(),
        "shown once, to the caller"
    );
    let (hash, plaintext) = b.stored_key(issued.key.id).await;
    assert_eq!(hash, raw.hash(&backend::secret()), "the one hash scheme");
    assert_eq!(plaintext, None, "the raw key is not stored");
    assert_eq!(issued.key.key_prefix, raw.expose()[..10]);

    // Creating it again (a retry) is the same key; another label is a reused key.
    let again = b.create_key(user, &raw, Some("laptop")).await.unwrap();
    assert_eq!(again.key.id, issued.key.id);
    let err = b.create_key(user, &raw, Some("phone")).await.unwrap_err();
    assert!(
        matches!(err, Error::IdempotencyKeyReused { field: "label" }),
        "{err:?}"
    );

    let auth = b.authenticate(&raw).await.unwrap().expect("authenticated");
    assert_eq!(auth.user_id, user);
    assert_eq!(auth.api_key_id, issued.key.id);
    assert_eq!(auth.credits_balance, d("4.2"));
    let stranger = RawApiKey::generate().unwrap();
    assert_eq!(b.authenticate(&stranger).await.unwrap(), None);

    b.revoke(user, issued.key.id).await.unwrap();
    assert_eq!(b.authenticate(&raw).await.unwrap(), None, "revoked");

    // At most ten active keys.
    for _ in 0..10 {
        b.create_key(user, &RawApiKey::generate().unwrap(), None)
            .await
            .unwrap();
    }
    let err = b
        .create_key(user, &RawApiKey::generate().unwrap(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::TooManyApiKeys { limit: 10, .. }),
        "{err:?}"
    );
}

async fn input_rules_refuse_what_they_refuse_on_both_backends<B: Backend>(b: B) {
    let user = b.new_user().await.unwrap();
    let invalid = |e: Error| assert!(matches!(e, Error::InvalidInput(_)), "{e:?}");
    invalid(b.enqueue("p", Some(&"u".repeat(257))).await.unwrap_err());
    invalid(b.claim("").await.unwrap_err());
    invalid(b.claim(&"w".repeat(256)).await.unwrap_err());
    invalid(b.grant(user, d("0"), None).await.unwrap_err());
    invalid(b.grant(user, d("-1"), None).await.unwrap_err());
    invalid(
        b.grant(user, d("1"), Some(&"k".repeat(129)))
            .await
            .unwrap_err(),
    );
    invalid(b.grant(user, d("1"), Some("")).await.unwrap_err());
    let not_generated = RawApiKey::from_presented("pex_short");
    invalid(b.create_key(user, &not_generated, None).await.unwrap_err());
    // NUL bytes are stripped, never stored.
    let plan = b.enqueue("with\0nul", Some("bo\0b")).await.unwrap();
    let read = b.plan(plan).await.unwrap();
    assert_eq!(read.prompt.as_deref(), Some("withnul"));
    assert_eq!(read.user_id.as_deref(), Some("bob"));
    // A user that does not exist is not found, on every money path.
    let ghost = uuid::Uuid::new_v4();
    assert!(matches!(
        b.grant(ghost, d("1"), None).await,
        Err(Error::NotFound)
    ));
    let args = ChargeArgs {
        user: ghost,
        amount: d("1"),
        ..Default::default()
    };
    assert!(matches!(b.charge(&args).await, Err(Error::NotFound)));
}
