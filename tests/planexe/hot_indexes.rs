//! Every hot predicate has its index, shown by the plans PostgreSQL chose for the statements the
//! library actually ran (auto_explain, `FORMAT JSON`), on a ledger of 200k rows and 200k plans.
//! A plan-shape test, not a timing test: it fails when a statement scans a table it should seek.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::Value;
use shared_db::planexe::credit_history::{self, PlanUsage};
use shared_db::planexe::feedback_item;
use shared_db::planexe::plans;
use shared_db::planexe::{Keyset, PageRequest};
use shared_db::testing::TestDatabase;
use sqlx::PgConnection;
use sqlx::Postgres;
use sqlx::pool::PoolConnection;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

use crate::user_with_credits;

/// 200k ledger rows over 50k plans (four sources each), 200k finished plans and three processing
/// ones (two of them stale), 20k feedback items; statistics fresh.
const SEED: &str = r#"
INSERT INTO credit_history (id, user_id, delta, reason, source, external_id, created_at)
SELECT gen_random_uuid(), '00000000-0000-4000-8000-00000000aaaa', -0.01, 'seed',
       (ARRAY['usage_billing_progress', 'usage_billing_settled', 'usage_billing', 'admin'])[1 + g % 4],
       md5((g / 4)::text)::uuid::text, now() AT TIME ZONE 'utc'
FROM generate_series(0, 199999) g;
INSERT INTO plans (id, timestamp_created, state, prompt, user_id, stop_requested)
SELECT gen_random_uuid(), (now() AT TIME ZONE 'utc') - make_interval(secs => g), 'completed', 'p',
       'seed-user', false
FROM generate_series(1, 200000) g;
INSERT INTO plans (id, timestamp_created, state, prompt, user_id, stop_requested, last_progress_at)
SELECT gen_random_uuid(), (now() AT TIME ZONE 'utc') - interval '2 hours', 'processing', 'p',
       'seed-user', false, (now() AT TIME ZONE 'utc') - make_interval(mins => m)
FROM unnest(ARRAY[90, 60, 0]) m;
INSERT INTO feedback_item (id, received_at, category, message, plan_id, user_id)
SELECT gen_random_uuid()::text, now() AT TIME ZONE 'utc', 'general', 'm',
       md5(g::text)::uuid::text, 'user-' || (g % 5000)
FROM generate_series(1, 20000) g;
ANALYZE credit_history;
ANALYZE plans;
ANALYZE feedback_item;
"#;

/// One scan node of an explained plan.
#[derive(Debug, Clone, PartialEq)]
struct Scan {
    node: String,
    relation: Option<String>,
    index: Option<String>,
}

/// One statement auto_explain reported: its text and every node of its plan.
#[derive(Debug)]
struct Explained {
    query: String,
    scans: Vec<Scan>,
}

impl Explained {
    fn uses_index(&self, index: &str) -> bool {
        self.scans.iter().any(|s| s.index.as_deref() == Some(index))
    }
    fn seq_scans(&self, relation: &str) -> usize {
        self.scans
            .iter()
            .filter(|s| s.node == "Seq Scan" && s.relation.as_deref() == Some(relation))
            .count()
    }
}

fn collect_scans(value: &Value, out: &mut Vec<Scan>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(node)) = map.get("Node Type") {
                out.push(Scan {
                    node: node.clone(),
                    relation: map
                        .get("Relation Name")
                        .and_then(Value::as_str)
                        .map(Into::into),
                    index: map
                        .get("Index Name")
                        .and_then(Value::as_str)
                        .map(Into::into),
                });
            }
            map.values().for_each(|v| collect_scans(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_scans(v, out)),
        _ => {}
    }
}

/// Keeps the auto_explain NOTICEs sqlx reports as tracing events (target `sqlx::postgres::notice`).
#[derive(Clone, Default)]
struct Notices(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> Layer<S> for Notices {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        struct Message(Option<String>);
        impl Visit for Message {
            fn record_str(&mut self, field: &Field, value: &str) {
                if field.name() == "message" {
                    self.0 = Some(value.to_owned());
                }
            }
            fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" && self.0.is_none() {
                    self.0 = Some(format!("{value:?}"));
                }
            }
        }
        if event.metadata().target() != "sqlx::postgres::notice" {
            return;
        }
        let mut message = Message(None);
        event.record(&mut message);
        self.0.lock().unwrap().extend(message.0);
    }
}

impl Notices {
    /// The plans explained since the last call, in order.
    fn take(&self) -> Vec<Explained> {
        std::mem::take(&mut *self.0.lock().unwrap())
            .iter()
            .filter_map(|m| m.find('{').map(|at| &m[at..]))
            .filter_map(|json| serde_json::from_str::<Value>(json).ok())
            .map(|plan| {
                let mut scans = Vec::new();
                collect_scans(&plan["Plan"], &mut scans);
                Explained {
                    query: plan["Query Text"].as_str().unwrap_or_default().to_owned(),
                    scans,
                }
            })
            .collect()
    }

    /// The one explained statement whose text contains `needle`.
    fn statement(&self, needle: &str) -> Explained {
        let mut matching: Vec<_> = self
            .take()
            .into_iter()
            .filter(|e| e.query.contains(needle))
            .collect();
        assert_eq!(matching.len(), 1, "one statement containing {needle:?}");
        matching.remove(0)
    }
}

/// A pooled connection on which auto_explain reports the plan of every statement as a NOTICE.
async fn explaining(db: &TestDatabase) -> anyhow::Result<PoolConnection<Postgres>> {
    let mut conn = db.pool().acquire().await?;
    sqlx::raw_sql(
        "LOAD 'auto_explain';
         SET auto_explain.log_min_duration = 0;
         SET auto_explain.log_format = 'json';
         SET auto_explain.log_nested_statements = on;
         SET auto_explain.log_level = 'notice';",
    )
    .execute(&mut *conn)
    .await?;
    Ok(conn)
}

#[tokio::test]
async fn billing_settle_the_reaper_plan_lists_and_feedback_reads_seek_their_index()
-> anyhow::Result<()> {
    let notices = Notices::default();
    let _capture = tracing_subscriber::registry()
        .with(notices.clone())
        .set_default();
    let db = TestDatabase::new().await?;
    sqlx::raw_sql(SEED).execute(db.pool()).await?;
    let user = user_with_credits(db.pool(), "payer", Decimal::from(10)).await;
    let mut conn = explaining(&db).await?;
    let conn: &mut PgConnection = &mut conn;
    notices.take();

    // Billing needs a run this worker owns: queue one plan and claim it (the seed has none pending).
    plans::enqueue(
        &mut *conn,
        &plans::NewPlan {
            prompt: "billed",
            ..Default::default()
        },
    )
    .await?;
    let claimed = plans::claim_next(&mut *conn, "billing-worker")
        .await?
        .expect("the plan just queued");
    let plan = claimed.attempt.plan_id;
    let usage = PlanUsage {
        user_id: user,
        attempt: claimed.attempt,
        api_key_id: None,
        cost: Decimal::new(5, 2),
        succeeded: false,
    };
    credit_history::bill_usage_progress(conn, &usage).await?;
    let progress = notices.statement("'plan_usage_in_progress'");
    assert!(
        progress.uses_index("ix_credit_history_external_id_source"),
        "{progress:#?}"
    );
    assert_eq!(progress.seq_scans("credit_history"), 0, "{progress:#?}");

    credit_history::bill_usage_final(
        conn,
        &PlanUsage {
            succeeded: true,
            ..usage
        },
    )
    .await?;
    let last = notices.statement("'usage_billing', $2");
    assert!(
        last.uses_index("ix_credit_history_external_id_source"),
        "{last:#?}"
    );
    assert_eq!(last.seq_scans("credit_history"), 0, "{last:#?}");

    // Settling waits until the run is over (a live attempt is refused).
    plans::finish_completed(&mut *conn, claimed.attempt, None).await?;
    notices.take();
    assert_eq!(
        credit_history::settle_plan_usage(&mut *conn, plan).await?,
        2
    );
    let settle = notices.statement("UPDATE credit_history");
    assert!(
        settle.uses_index("ix_credit_history_external_id_source"),
        "{settle:#?}"
    );
    assert_eq!(settle.seq_scans("credit_history"), 0, "{settle:#?}");

    let reaped = plans::requeue_stale(&mut *conn, Duration::from_secs(30 * 60), 3).await?;
    assert_eq!(
        reaped.requeued.len(),
        2,
        "the two plans without progress for 30 minutes"
    );
    let reaper = notices.statement("'Re-queued: worker lost'");
    assert!(
        reaper.uses_index("ix_plans_processing_last_progress_at"),
        "{reaper:#?}"
    );
    assert_eq!(reaper.seq_scans("plans"), 0, "{reaper:#?}");
    assert_eq!(reaper.seq_scans("credit_history"), 0, "{reaper:#?}");

    // a user with 200k plans: page 1 and page 50 come in the index's order, nothing is sorted
    for offset in [0, 49 * 20] {
        notices.take();
        let page =
            plans::list_by_user(&mut *conn, "seed-user", PageRequest { limit: 20, offset }).await?;
        assert_eq!(page.len(), 20);
        let list = notices.statement("FROM plans WHERE user_id");
        assert!(
            list.uses_index("ix_plans_user_id_timestamp_created_desc"),
            "{list:#?}"
        );
        assert!(list.scans.iter().all(|s| s.node != "Sort"), "{list:#?}");
    }

    // by keyset: a deep page (after the 2 500th plan) seeks to its cursor in the same index
    let deep = plans::list_by_user(
        &mut *conn,
        "seed-user",
        PageRequest {
            limit: 1,
            offset: 2_499,
        },
    )
    .await?
    .remove(0);
    notices.take();
    let page =
        plans::list_by_user_keyset(&mut *conn, "seed-user", Keyset::after(20, deep.cursor()))
            .await?;
    assert_eq!(page.len(), 20);
    let keyset = notices.statement("FROM plans");
    assert!(
        keyset.uses_index("ix_plans_user_id_timestamp_created_desc"),
        "{keyset:#?}"
    );
    assert_eq!(keyset.seq_scans("plans"), 0, "{keyset:#?}");

    // a user's ledger (200k rows) by keyset, in its own index
    let ledger_user: uuid::Uuid = "00000000-0000-4000-8000-00000000aaaa".parse()?;
    let first = credit_history::list_for_user(&mut *conn, ledger_user, Keyset::first(20)).await?;
    let ledger = notices.statement("FROM credit_history");
    assert!(
        ledger.uses_index("ix_credit_history_user_id_created_at_desc"),
        "{ledger:#?}"
    );
    assert_eq!(ledger.seq_scans("credit_history"), 0, "{ledger:#?}");
    let next = credit_history::list_for_user(
        &mut *conn,
        ledger_user,
        Keyset::after(20, first[19].cursor()),
    )
    .await?;
    assert_eq!(next.len(), 20);
    assert!(
        next.iter().all(|e| !first.contains(e)),
        "pages never overlap"
    );
    notices.take();

    let some_plan = sqlx::query_scalar!(r#"SELECT md5('7')::uuid AS "id!""#)
        .fetch_one(&mut *conn)
        .await?;
    notices.take();
    feedback_item::list_for_plan(&mut *conn, some_plan, Default::default()).await?;
    let by_plan = notices.statement("FROM feedback_item");
    assert!(
        by_plan.uses_index("ix_feedback_item_plan_id_received_at_desc"),
        "{by_plan:#?}"
    );
    feedback_item::list_for_user(&mut *conn, "user-7", Default::default()).await?;
    let by_user = notices.statement("FROM feedback_item");
    // Four items per user: the planner may take the narrower ix_feedback_item_user_id and sort
    // them; either way it seeks the user's rows and never scans the table.
    assert!(
        by_user.uses_index("ix_feedback_item_user_id_received_at_desc")
            || by_user.uses_index("ix_feedback_item_user_id"),
        "{by_user:#?}"
    );
    assert_eq!(by_user.seq_scans("feedback_item"), 0, "{by_user:#?}");
    Ok(())
}
