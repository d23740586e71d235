//! Telemetry and account stories on both backends: nonces (accepted once, also under concurrent
//! consumers), token metrics and their usage sums, feedback summaries, the event lists, worker
//! liveness, and API-key rename/reset/list. Each story also reads back rows written the way the
//! Python services write them on that backend (reference planexe.md §2.4–§2.7: hyphenated or
//! hex ids, microsecond UTC times, JSON `null`, 0/1 booleans), since both sides share the tables.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use shared_db::planexe::events::Event;
use shared_db::planexe::feedback_item::{FeedbackItem, FeedbackSummary, NewFeedback};
use shared_db::planexe::nonces::{Nonce, NonceUse};
use shared_db::planexe::plans::Attempt;
use shared_db::planexe::token_metrics::{NewTokenMetric, TokenMetric, TokenUsage};
use shared_db::planexe::user_api_key::{IssuedKey, KeyOptions, RawApiKey, UserApiKey};
use shared_db::planexe::workers::Worker;
use shared_db::planexe::{EventType, Keyset, PageRequest, PlanState};
use shared_db::{Error, Result};
use uuid::Uuid;

use crate::backend::{Backend, Postgres, Sqlite, secret};

/// The operations these stories need beyond [`Backend`].
pub trait TelemetryBackend: Backend {
    /// Run SQL another writer (Python) would run: `postgres` on PostgreSQL, `sqlite` on SQLite.
    fn python_writes(&self, postgres: String, sqlite: String) -> impl Future<Output = ()> + Send;

    fn consume_nonce(
        &self,
        key: &str,
        context: Option<&Value>,
    ) -> impl Future<Output = Result<NonceUse>> + Send;
    fn nonce(&self, key: &str) -> impl Future<Output = Result<Nonce>> + Send;
    fn recent_nonces(&self, page: PageRequest) -> impl Future<Output = Result<Vec<Nonce>>> + Send;
    fn purge_nonces(&self, age: Duration) -> impl Future<Output = Result<u64>> + Send;

    fn record_metric(
        &self,
        m: &NewTokenMetric<'_>,
    ) -> impl Future<Output = Result<TokenMetric>> + Send;
    fn metrics_for_plan(
        &self,
        plan: Uuid,
        page: Keyset<i32>,
    ) -> impl Future<Output = Result<Vec<TokenMetric>>> + Send;
    fn metrics_for_user(
        &self,
        user: &str,
        page: Keyset<i32>,
    ) -> impl Future<Output = Result<Vec<TokenMetric>>> + Send;
    fn usage_for_plan(&self, plan: Uuid)
    -> impl Future<Output = Result<Option<TokenUsage>>> + Send;
    fn usage_for_user(&self, user: &str)
    -> impl Future<Output = Result<Option<TokenUsage>>> + Send;
    fn usage_by_model(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<TokenUsage>>> + Send;

    fn record_feedback(
        &self,
        f: &NewFeedback<'_>,
    ) -> impl Future<Output = Result<FeedbackItem>> + Send;
    fn feedback_summary_for_plan(
        &self,
        plan: Uuid,
    ) -> impl Future<Output = Result<FeedbackSummary>> + Send;
    fn feedback_summary_for_user(
        &self,
        user: &str,
    ) -> impl Future<Output = Result<FeedbackSummary>> + Send;
    fn feedback_for_plan(
        &self,
        plan: Uuid,
        page: Keyset<String>,
    ) -> impl Future<Output = Result<Vec<FeedbackItem>>> + Send;
    fn feedback_for_user(
        &self,
        user: &str,
        page: Keyset<String>,
    ) -> impl Future<Output = Result<Vec<FeedbackItem>>> + Send;

    fn append_event(
        &self,
        kind: EventType,
        message: &str,
        context: Option<&Value>,
    ) -> impl Future<Output = Result<Event>> + Send;
    fn append_for_run(
        &self,
        attempt: Attempt,
        kind: EventType,
        message: &str,
        context: Option<&Value>,
    ) -> impl Future<Output = Result<Event>> + Send;
    fn events_by_type(
        &self,
        kind: EventType,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<Event>>> + Send;
    fn events_in_range(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<Event>>> + Send;
    fn events_since(
        &self,
        after_id: i32,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<Event>>> + Send;

    fn workers(&self, limit: i64) -> impl Future<Output = Result<Vec<Worker>>> + Send;
    fn stale_workers(
        &self,
        threshold: Duration,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<Worker>>> + Send;

    fn list_keys(
        &self,
        user: Uuid,
        page: Keyset<Uuid>,
    ) -> impl Future<Output = Result<Vec<UserApiKey>>> + Send;
    fn rename_key(
        &self,
        user: Uuid,
        key: Uuid,
        label: Option<&str>,
    ) -> impl Future<Output = Result<UserApiKey>> + Send;
    fn reset_key(&self, user: Uuid, key: Uuid) -> impl Future<Output = Result<IssuedKey>> + Send;
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: the library.

use shared_db::planexe as pg;

impl TelemetryBackend for Postgres {
    async fn python_writes(&self, postgres: String, _sqlite: String) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(postgres))
            .execute(self.0.pool())
            .await
            .unwrap();
    }
    async fn consume_nonce(&self, key: &str, context: Option<&Value>) -> Result<NonceUse> {
        pg::nonces::consume(self.0.pool(), key, context).await
    }
    async fn nonce(&self, key: &str) -> Result<Nonce> {
        pg::nonces::get(self.0.pool(), key).await
    }
    async fn recent_nonces(&self, page: PageRequest) -> Result<Vec<Nonce>> {
        pg::nonces::list_recent(self.0.pool(), page).await
    }
    async fn purge_nonces(&self, age: Duration) -> Result<u64> {
        pg::nonces::purge_older_than(self.0.pool(), age).await
    }
    async fn record_metric(&self, m: &NewTokenMetric<'_>) -> Result<TokenMetric> {
        pg::token_metrics::record(self.0.pool(), m).await
    }
    async fn metrics_for_plan(&self, plan: Uuid, page: Keyset<i32>) -> Result<Vec<TokenMetric>> {
        pg::token_metrics::list_for_plan(self.0.pool(), plan, page).await
    }
    async fn metrics_for_user(&self, user: &str, page: Keyset<i32>) -> Result<Vec<TokenMetric>> {
        pg::token_metrics::list_for_user(self.0.pool(), user, page).await
    }
    async fn usage_for_plan(&self, plan: Uuid) -> Result<Option<TokenUsage>> {
        pg::token_metrics::usage_for_plan(self.0.pool(), plan).await
    }
    async fn usage_for_user(&self, user: &str) -> Result<Option<TokenUsage>> {
        pg::token_metrics::usage_for_user(self.0.pool(), user).await
    }
    async fn usage_by_model(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<TokenUsage>> {
        pg::token_metrics::usage_by_model(self.0.pool(), from, to).await
    }
    async fn record_feedback(&self, f: &NewFeedback<'_>) -> Result<FeedbackItem> {
        pg::feedback_item::record(self.0.pool(), f).await
    }
    async fn feedback_summary_for_plan(&self, plan: Uuid) -> Result<FeedbackSummary> {
        pg::feedback_item::summary_for_plan(self.0.pool(), plan).await
    }
    async fn feedback_summary_for_user(&self, user: &str) -> Result<FeedbackSummary> {
        pg::feedback_item::summary_for_user(self.0.pool(), user).await
    }
    async fn feedback_for_plan(
        &self,
        plan: Uuid,
        page: Keyset<String>,
    ) -> Result<Vec<FeedbackItem>> {
        pg::feedback_item::list_for_plan(self.0.pool(), plan, page).await
    }
    async fn feedback_for_user(
        &self,
        user: &str,
        page: Keyset<String>,
    ) -> Result<Vec<FeedbackItem>> {
        pg::feedback_item::list_for_user(self.0.pool(), user, page).await
    }
    async fn append_event(
        &self,
        kind: EventType,
        message: &str,
        context: Option<&Value>,
    ) -> Result<Event> {
        pg::events::append(self.0.pool(), kind, message, context).await
    }
    async fn append_for_run(
        &self,
        attempt: Attempt,
        kind: EventType,
        message: &str,
        context: Option<&Value>,
    ) -> Result<Event> {
        pg::events::append_for_run(self.0.pool(), attempt, kind, message, context).await
    }
    async fn events_by_type(&self, kind: EventType, limit: i64) -> Result<Vec<Event>> {
        pg::events::list_by_type(self.0.pool(), kind, limit).await
    }
    async fn events_in_range(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Event>> {
        pg::events::list_in_range(self.0.pool(), from, to, limit).await
    }
    async fn events_since(&self, after_id: i32, limit: i64) -> Result<Vec<Event>> {
        pg::events::list_since(self.0.pool(), after_id, limit).await
    }
    async fn workers(&self, limit: i64) -> Result<Vec<Worker>> {
        pg::workers::list(self.0.pool(), limit).await
    }
    async fn stale_workers(&self, threshold: Duration, limit: i64) -> Result<Vec<Worker>> {
        pg::workers::list_stale(self.0.pool(), threshold, limit).await
    }
    async fn list_keys(&self, user: Uuid, page: Keyset<Uuid>) -> Result<Vec<UserApiKey>> {
        pg::user_api_key::list_for_user(self.0.pool(), user, page).await
    }
    async fn rename_key(&self, user: Uuid, key: Uuid, label: Option<&str>) -> Result<UserApiKey> {
        pg::user_api_key::rename(self.0.pool(), user, key, label).await
    }
    async fn reset_key(&self, user: Uuid, key: Uuid) -> Result<IssuedKey> {
        pg::user_api_key::reset(self.0.pool(), &secret(), user, key, KeyOptions::default()).await
    }
}

// ---------------------------------------------------------------------------------------------
// SQLite: this crate.

use shared_db_sqlite::planexe as lite;

impl TelemetryBackend for Sqlite {
    async fn python_writes(&self, _postgres: String, sqlite: String) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sqlite))
            .execute(self.db.pool())
            .await
            .unwrap();
    }
    async fn consume_nonce(&self, key: &str, context: Option<&Value>) -> Result<NonceUse> {
        let mut c = self.db.acquire().await?;
        lite::nonces::consume(&mut c, key, context).await
    }
    async fn nonce(&self, key: &str) -> Result<Nonce> {
        let mut c = self.db.acquire().await?;
        lite::nonces::get(&mut c, key).await
    }
    async fn recent_nonces(&self, page: PageRequest) -> Result<Vec<Nonce>> {
        let mut c = self.db.acquire().await?;
        lite::nonces::list_recent(&mut c, page).await
    }
    async fn purge_nonces(&self, age: Duration) -> Result<u64> {
        let mut c = self.db.acquire().await?;
        lite::nonces::purge_older_than(&mut c, age).await
    }
    async fn record_metric(&self, m: &NewTokenMetric<'_>) -> Result<TokenMetric> {
        let mut c = self.db.acquire().await?;
        lite::token_metrics::record(&mut c, m).await
    }
    async fn metrics_for_plan(&self, plan: Uuid, page: Keyset<i32>) -> Result<Vec<TokenMetric>> {
        let mut c = self.db.acquire().await?;
        lite::token_metrics::list_for_plan(&mut c, plan, page).await
    }
    async fn metrics_for_user(&self, user: &str, page: Keyset<i32>) -> Result<Vec<TokenMetric>> {
        let mut c = self.db.acquire().await?;
        lite::token_metrics::list_for_user(&mut c, user, page).await
    }
    async fn usage_for_plan(&self, plan: Uuid) -> Result<Option<TokenUsage>> {
        let mut c = self.db.acquire().await?;
        lite::token_metrics::usage_for_plan(&mut c, plan).await
    }
    async fn usage_for_user(&self, user: &str) -> Result<Option<TokenUsage>> {
        let mut c = self.db.acquire().await?;
        lite::token_metrics::usage_for_user(&mut c, user).await
    }
    async fn usage_by_model(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<TokenUsage>> {
        let mut c = self.db.acquire().await?;
        lite::token_metrics::usage_by_model(&mut c, from, to).await
    }
    async fn record_feedback(&self, f: &NewFeedback<'_>) -> Result<FeedbackItem> {
        let mut c = self.db.acquire().await?;
        lite::feedback_item::record(&mut c, f).await
    }
    async fn feedback_summary_for_plan(&self, plan: Uuid) -> Result<FeedbackSummary> {
        let mut c = self.db.acquire().await?;
        lite::feedback_item::summary_for_plan(&mut c, plan).await
    }
    async fn feedback_summary_for_user(&self, user: &str) -> Result<FeedbackSummary> {
        let mut c = self.db.acquire().await?;
        lite::feedback_item::summary_for_user(&mut c, user).await
    }
    async fn feedback_for_plan(
        &self,
        plan: Uuid,
        page: Keyset<String>,
    ) -> Result<Vec<FeedbackItem>> {
        let mut c = self.db.acquire().await?;
        lite::feedback_item::list_for_plan(&mut c, plan, page).await
    }
    async fn feedback_for_user(
        &self,
        user: &str,
        page: Keyset<String>,
    ) -> Result<Vec<FeedbackItem>> {
        let mut c = self.db.acquire().await?;
        lite::feedback_item::list_for_user(&mut c, user, page).await
    }
    async fn append_event(
        &self,
        kind: EventType,
        message: &str,
        context: Option<&Value>,
    ) -> Result<Event> {
        let mut c = self.db.acquire().await?;
        lite::events::append(&mut c, kind, message, context).await
    }
    async fn append_for_run(
        &self,
        attempt: Attempt,
        kind: EventType,
        message: &str,
        context: Option<&Value>,
    ) -> Result<Event> {
        let mut c = self.db.acquire().await?;
        lite::events::append_for_run(&mut c, attempt, kind, message, context).await
    }
    async fn events_by_type(&self, kind: EventType, limit: i64) -> Result<Vec<Event>> {
        let mut c = self.db.acquire().await?;
        lite::events::list_by_type(&mut c, kind, limit).await
    }
    async fn events_in_range(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Event>> {
        let mut c = self.db.acquire().await?;
        lite::events::list_in_range(&mut c, from, to, limit).await
    }
    async fn events_since(&self, after_id: i32, limit: i64) -> Result<Vec<Event>> {
        let mut c = self.db.acquire().await?;
        lite::events::list_since(&mut c, after_id, limit).await
    }
    async fn workers(&self, limit: i64) -> Result<Vec<Worker>> {
        let mut c = self.db.acquire().await?;
        lite::workers::list(&mut c, limit).await
    }
    async fn stale_workers(&self, threshold: Duration, limit: i64) -> Result<Vec<Worker>> {
        let mut c = self.db.acquire().await?;
        lite::workers::list_stale(&mut c, threshold, limit).await
    }
    async fn list_keys(&self, user: Uuid, page: Keyset<Uuid>) -> Result<Vec<UserApiKey>> {
        let mut c = self.db.acquire().await?;
        lite::user_api_key::list_for_user(&mut c, user, page).await
    }
    async fn rename_key(&self, user: Uuid, key: Uuid, label: Option<&str>) -> Result<UserApiKey> {
        let mut c = self.db.acquire().await?;
        lite::user_api_key::rename(&mut c, user, key, label).await
    }
    async fn reset_key(&self, user: Uuid, key: Uuid) -> Result<IssuedKey> {
        let mut c = self.db.acquire().await?;
        lite::user_api_key::reset(&mut c, &secret(), user, key, KeyOptions::default()).await
    }
}

// ---------------------------------------------------------------------------------------------
// The stories.

conformance!(
    a_nonce_is_accepted_once_even_by_concurrent_consumers,
    token_usage_sums_are_exactly_what_was_recorded,
    feedback_summaries_count_and_average_exactly,
    event_lists_are_ordered_and_bounded,
    api_keys_are_renamed_reset_and_listed_newest_first,
    silent_workers_are_listed_longest_silent_first,
);

/// SQL for a time as Python's SQLAlchemy writes it on each backend: UTC, some time before now
/// (a PostgreSQL interval such as `2 hours`, the SQLite modifier `-2 hours`); on SQLite the
/// text `YYYY-MM-DD HH:MM:SS.ffffff`.
fn python_time(pg_interval: &str, sqlite_modifier: &str) -> (String, String) {
    (
        format!("(now() AT TIME ZONE 'utc') - interval '{pg_interval}'"),
        format!("strftime('%Y-%m-%d %H:%M:%S', 'now', '{sqlite_modifier}') || '.654321'"),
    )
}

fn invalid(e: Error) {
    assert!(matches!(e, Error::InvalidInput(_)), "{e:?}");
}

async fn a_nonce_is_accepted_once_even_by_concurrent_consumers<B: TelemetryBackend>(b: B) {
    // Sixteen submissions of one form race: exactly one is the first use.
    let key = format!("CREATE_{}", Uuid::new_v4());
    let racers: Vec<_> = (0..16)
        .map(|i| {
            let (b, key) = (b.clone(), key.clone());
            tokio::spawn(async move {
                let ctx = json!({ "ip_address": format!("10.0.0.{i}") });
                b.consume_nonce(&key, Some(&ctx)).await.unwrap()
            })
        })
        .collect();
    let mut uses = Vec::new();
    for r in racers {
        uses.push(r.await.unwrap());
    }
    assert_eq!(uses.iter().filter(|u| u.is_new).count(), 1, "accepted once");
    let counts: HashSet<i32> = uses.iter().map(|u| u.nonce.request_count).collect();
    assert_eq!(counts, (1..=16).collect(), "each use saw its own count");
    let stored = b.nonce(&key).await.unwrap();
    assert_eq!(stored.request_count, 16);
    assert_eq!(stored.nonce_key, key);
    assert!(stored.last_accessed_at >= stored.created_at);

    // A replay later is still a replay, and its context replaces the old one.
    let replay = b
        .consume_nonce(&key, Some(&json!({ "user_id": "alice" })))
        .await
        .unwrap();
    assert!(!replay.is_new);
    assert_eq!(replay.nonce.request_count, 17);
    assert_eq!(
        replay.nonce.context.as_deref(),
        Some(&json!({ "user_id": "alice" }))
    );

    // A nonce the Python frontend stored (context JSON `null`) reads back, and is a replay here.
    let python_key = format!("DEMO_{}", Uuid::new_v4());
    let (pg_at, lite_at) = python_time("2 hours", "-2 hours");
    b.python_writes(
        format!(
            "INSERT INTO nonces (nonce_key, created_at, last_accessed_at, request_count, context)
             VALUES ('{python_key}', {pg_at}, {pg_at}, 1, 'null')"
        ),
        format!(
            "INSERT INTO nonces (nonce_key, created_at, last_accessed_at, request_count, context)
             VALUES ('{python_key}', {lite_at}, {lite_at}, 1, 'null')"
        ),
    )
    .await;
    let python = b.nonce(&python_key).await.unwrap();
    assert_eq!(python.request_count, 1);
    assert_eq!(python.context, None, "JSON null reads as absent");
    assert!(Utc::now() - python.created_at > chrono::Duration::minutes(119));
    let used = b.consume_nonce(&python_key, None).await.unwrap();
    assert!(!used.is_new);
    assert_eq!(used.nonce.request_count, 2);

    // Recent first, bounded, paged without overlap.
    let fresh = format!("CREATE_{}", Uuid::new_v4());
    tokio::time::sleep(Duration::from_millis(5)).await;
    b.consume_nonce(&fresh, None).await.unwrap();
    let page = |offset| PageRequest { limit: 2, offset };
    let first: Vec<String> = b
        .recent_nonces(page(0))
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.nonce_key)
        .collect();
    let second: Vec<String> = b
        .recent_nonces(page(2))
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.nonce_key)
        .collect();
    assert_eq!(first, [fresh.as_str(), python_key.as_str()]);
    assert_eq!(second, [key.as_str()]);
    let all = b
        .recent_nonces(PageRequest {
            limit: 1_000_000,
            offset: -5,
        })
        .await
        .unwrap();
    assert_eq!(
        all.len(),
        3,
        "a huge limit and a negative offset are clamped"
    );
    let one = b
        .recent_nonces(PageRequest {
            limit: 0,
            offset: 0,
        })
        .await
        .unwrap();
    assert_eq!(one.len(), 1, "a zero limit is clamped to one row");

    // Input rules.
    invalid(b.consume_nonce("", None).await.unwrap_err());
    invalid(b.consume_nonce(&"k".repeat(256), None).await.unwrap_err());
    invalid(b.consume_nonce("bad\0key", None).await.unwrap_err());
    b.consume_nonce(&"k".repeat(255), None).await.unwrap();
    assert!(matches!(b.nonce("never-used").await, Err(Error::NotFound)));

    // Purging: only what is older than the age goes.
    assert_eq!(b.purge_nonces(Duration::from_secs(3600)).await.unwrap(), 1);
    assert!(matches!(b.nonce(&python_key).await, Err(Error::NotFound)));
    assert_eq!(b.nonce(&key).await.unwrap().request_count, 17);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(b.purge_nonces(Duration::ZERO).await.unwrap(), 3);
    assert!(
        b.recent_nonces(PageRequest::default())
            .await
            .unwrap()
            .is_empty()
    );
}

async fn token_usage_sums_are_exactly_what_was_recorded<B: TelemetryBackend>(b: B) {
    let plan = b.enqueue("metered", Some("carol")).await.unwrap();
    let run = b.claim("w").await.unwrap().unwrap().attempt;
    let start = Utc::now() - chrono::Duration::minutes(1);
    let usage = json!({ "prompt_tokens": 100, "completion_tokens": 20 });
    // Costs and durations are binary fractions, so any order of addition is exact.
    let calls = [
        ("model-a", 100, 20, 5, 0.25, 1.5, true),
        ("model-a", 300, 40, 0, 0.125, 2.25, true),
        ("model-b", 50, 0, 0, 0.5, 0.75, false),
        ("model-a", 7, 1, 2, 0.0625, 0.5, true),
    ];
    let mut recorded = Vec::new();
    for (model, input, output, thinking, cost, secs, success) in calls {
        let m = NewTokenMetric {
            llm_model: model,
            user_id: Some("carol"),
            upstream_provider: Some("openrouter"),
            input_tokens: Some(input),
            output_tokens: Some(output),
            thinking_tokens: Some(thinking),
            cost_usd: Some(cost),
            duration_seconds: Some(secs),
            success,
            error_message: (!success).then_some("rate limited"),
            raw_usage_data: Some(&usage),
            attempt: Some(run),
            ..Default::default()
        };
        let row = b.record_metric(&m).await.unwrap();
        assert_eq!(
            row.task_id,
            Some(plan.to_string()),
            "the run's plan, hyphenated"
        );
        assert_eq!(row.raw_usage_data.as_deref(), Some(&usage));
        recorded.push(row);
    }
    // One call without a run, by the same user on no plan.
    let other = NewTokenMetric {
        llm_model: "model-b",
        user_id: Some("carol"),
        input_tokens: Some(1000),
        cost_usd: Some(2.0),
        success: true,
        ..Default::default()
    };
    b.record_metric(&other).await.unwrap();

    // A run that no longer owns its plan records nothing; inconsistent input is refused.
    let stranger = Attempt {
        plan_id: plan,
        token: Uuid::new_v4(),
    };
    let lost = NewTokenMetric {
        llm_model: "model-a",
        input_tokens: Some(999_999),
        attempt: Some(stranger),
        ..Default::default()
    };
    let err = b.record_metric(&lost).await.unwrap_err();
    assert!(
        matches!(err, Error::Superseded { plan_id } if plan_id == plan),
        "{err:?}"
    );
    invalid(
        b.record_metric(&NewTokenMetric {
            llm_model: "",
            ..Default::default()
        })
        .await
        .unwrap_err(),
    );
    invalid(
        b.record_metric(&NewTokenMetric {
            plan_id: Some(Uuid::new_v4()),
            ..lost.clone()
        })
        .await
        .unwrap_err(),
    );

    // A call the Python worker recorded two days ago (success 0/false, usage JSON null).
    let (pg_at, lite_at) = python_time("2 days", "-2 days");
    let columns = "\"timestamp\", llm_model, task_id, user_id, input_tokens, output_tokens, \
                   thinking_tokens, cost_usd, duration_seconds, success, raw_usage_data";
    b.python_writes(
        format!(
            "INSERT INTO token_metrics ({columns})
             VALUES ({pg_at}, 'model-c', '{plan}', 'carol', 10, 10, NULL, 1.0, 0.5, false, 'null')"
        ),
        format!(
            "INSERT INTO token_metrics ({columns})
             VALUES ({lite_at}, 'model-c', '{plan}', 'carol', 10, 10, NULL, 1.0, 0.5, 0, 'null')"
        ),
    )
    .await;

    let usage_of_plan = b.usage_for_plan(plan).await.unwrap().expect("calls");
    assert_eq!(
        usage_of_plan,
        TokenUsage {
            key: plan.to_string(),
            calls: 5,
            failed_calls: 2,
            input_tokens: 100 + 300 + 50 + 7 + 10,
            output_tokens: 20 + 40 + 1 + 10,
            thinking_tokens: 5 + 2,
            cost_usd: 0.25 + 0.125 + 0.5 + 0.0625 + 1.0,
            duration_seconds: 1.5 + 2.25 + 0.75 + 0.5 + 0.5,
        }
    );
    let usage_of_user = b.usage_for_user("carol").await.unwrap().expect("calls");
    assert_eq!(usage_of_user.calls, 6);
    assert_eq!(usage_of_user.input_tokens, 467 + 1000);
    assert_eq!(usage_of_user.cost_usd, 1.9375 + 2.0);
    assert_eq!(b.usage_for_plan(Uuid::new_v4()).await.unwrap(), None);
    assert_eq!(b.usage_for_user("nobody").await.unwrap(), None);

    // Per model in a window: the Python call of two days ago is outside it.
    let by_model = b
        .usage_by_model(start, Utc::now() + chrono::Duration::minutes(1))
        .await
        .unwrap();
    let summary: Vec<_> = by_model
        .iter()
        .map(|u| (u.key.as_str(), u.calls, u.input_tokens, u.cost_usd))
        .collect();
    assert_eq!(
        summary,
        [("model-b", 2, 1050, 2.5), ("model-a", 3, 407, 0.4375)],
        "most expensive first"
    );

    // The plan's calls, newest first, paged by keyset: every call once, the Python one last.
    let mut seen = Vec::new();
    let mut page = Keyset::first(2);
    loop {
        let rows = b.metrics_for_plan(plan, page.clone()).await.unwrap();
        let Some(last) = rows.last() else { break };
        assert!(rows.len() <= 2);
        page = Keyset::after(2, last.cursor());
        seen.extend(rows);
    }
    let expected: Vec<i32> = recorded.iter().rev().map(|r| r.id).collect();
    assert_eq!(seen.len(), 5);
    let python = seen.pop().unwrap();
    assert_eq!(seen.iter().map(|r| r.id).collect::<Vec<_>>(), expected);
    assert_eq!(python.llm_model, "model-c");
    assert!(!python.success);
    assert_eq!(python.raw_usage_data, None, "JSON null reads as absent");
    assert_eq!(python.thinking_tokens, None);
    assert_eq!(python.cost_usd, Some(1.0));
    let user_rows = b
        .metrics_for_user("carol", Keyset::first(200))
        .await
        .unwrap();
    assert_eq!(user_rows.len(), 6);
    assert_eq!(
        user_rows[0].task_id, None,
        "the call without a plan is the newest"
    );
    assert!(
        user_rows
            .windows(2)
            .all(|w| w[0].timestamp >= w[1].timestamp)
    );
}

async fn feedback_summaries_count_and_average_exactly<B: TelemetryBackend>(b: B) {
    let plan = Uuid::new_v4();
    let empty = b.feedback_summary_for_plan(plan).await.unwrap();
    assert_eq!(
        empty,
        FeedbackSummary {
            count: 0,
            rated: 0,
            average_rating: None,
            latest_at: None
        }
    );

    let mut items = Vec::new();
    for (rating, message) in [
        (Some(5), "great plan"),
        (None, "no rating"),
        (Some(2), "too long"),
    ] {
        let f = NewFeedback {
            category: "plan_quality",
            message,
            plan_id: Some(plan),
            rating,
            user_id: Some("dave"),
            plan_progress_pct: Some(42.5),
            plan_state: Some(PlanState::Processing),
            plan_current_step: Some("wbs"),
        };
        items.push(b.record_feedback(&f).await.unwrap());
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    // Feedback of the same user on nothing in particular; content is cut and NUL-stripped.
    let general = b
        .record_feedback(&NewFeedback {
            category: &"c\0".repeat(40),
            message: "hello\0",
            rating: Some(5),
            user_id: Some("dave"),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(general.category, "c".repeat(32));
    assert_eq!(general.message, "hello");
    assert_eq!(general.plan_id, None);
    assert_eq!(items[0].plan_state.as_deref(), Some("processing"));
    assert_eq!(items[0].plan_id, Some(plan.to_string()));
    invalid(
        b.record_feedback(&NewFeedback {
            category: "",
            message: "x",
            ..Default::default()
        })
        .await
        .unwrap_err(),
    );
    invalid(
        b.record_feedback(&NewFeedback {
            category: "x",
            message: "",
            ..Default::default()
        })
        .await
        .unwrap_err(),
    );

    // A rating the MCP server (Python) stored yesterday, on the same plan.
    let python_id = Uuid::new_v4().to_string();
    let (pg_at, lite_at) = python_time("1 day", "-1 day");
    let columns = "id, received_at, category, message, plan_id, rating, user_id, \
                   plan_progress_pct, plan_state";
    b.python_writes(
        format!(
            "INSERT INTO feedback_item ({columns})
             VALUES ('{python_id}', {pg_at}, 'bug', 'from python', '{plan}', 2, 'erin', 100.0,
                     'completed')"
        ),
        format!(
            "INSERT INTO feedback_item ({columns})
             VALUES ('{python_id}', {lite_at}, 'bug', 'from python', '{plan}', 2, 'erin', 100.0,
                     'completed')"
        ),
    )
    .await;

    let on_plan = b.feedback_summary_for_plan(plan).await.unwrap();
    assert_eq!(on_plan.count, 4);
    assert_eq!(on_plan.rated, 3);
    // Ratings whose mean is a binary fraction, so both backends' averages are exact.
    assert_eq!(on_plan.average_rating, Some(3.0));
    assert_eq!(on_plan.latest_at, Some(items[2].received_at));
    let of_user = b.feedback_summary_for_user("dave").await.unwrap();
    assert_eq!(
        (of_user.count, of_user.rated, of_user.average_rating),
        (4, 3, Some(4.0))
    );
    assert_eq!(of_user.latest_at, Some(general.received_at));

    // Newest first, by keyset pages of two: every item once, the Python one last.
    let mut seen = Vec::new();
    let mut page = Keyset::first(2);
    loop {
        let rows = b.feedback_for_plan(plan, page.clone()).await.unwrap();
        let Some(last) = rows.last() else { break };
        page = Keyset::after(2, last.cursor());
        seen.extend(rows.into_iter().map(|f| f.id));
    }
    let mut expected: Vec<String> = items.iter().rev().map(|f| f.id.clone()).collect();
    expected.push(python_id.clone());
    assert_eq!(seen, expected);
    let python = b
        .feedback_for_user("erin", Keyset::first(10))
        .await
        .unwrap();
    assert_eq!(python.len(), 1);
    assert_eq!(python[0].plan_state.as_deref(), Some("completed"));
    assert_eq!(python[0].rating, Some(2));
    assert_eq!(python[0].plan_progress_pct, Some(100.0));
    let dave: Vec<String> = b
        .feedback_for_user("dave", Keyset::first(200))
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.id)
        .collect();
    assert_eq!(dave[0], general.id, "feedback on no plan is listed too");
    assert_eq!(dave.len(), 4);
}

async fn event_lists_are_ordered_and_bounded<B: TelemetryBackend>(b: B) {
    // An event Python logged an hour ago, before this story's events.
    let (pg_at, lite_at) = python_time("1 hour", "-1 hours");
    b.python_writes(
        format!(
            "INSERT INTO events (\"timestamp\", event_type, message, context)
             VALUES ({pg_at}, 'GENERIC_EVENT', 'from python', 'null')"
        ),
        format!(
            "INSERT INTO events (\"timestamp\", event_type, message, context)
             VALUES ({lite_at}, 'GENERIC_EVENT', 'from python', 'null')"
        ),
    )
    .await;
    let start = Utc::now() - chrono::Duration::seconds(5);
    let mut appended = Vec::new();
    for i in 0..205 {
        let kind = if i % 50 == 7 {
            EventType::GenericError
        } else {
            EventType::GenericEvent
        };
        let e = b
            .append_event(kind, &format!("event {i}"), Some(&json!({ "i": i })))
            .await
            .unwrap();
        appended.push(e);
    }
    let ids: Vec<i32> = appended.iter().map(|e| e.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase");

    // Polling by id: in order, bounded to 200 a page, and the next page starts after the last.
    let python = b.events_since(0, 1).await.unwrap();
    assert_eq!(python.len(), 1, "a page of one");
    assert_eq!(python[0].message, "from python");
    assert_eq!(python[0].context, None, "JSON null reads as absent");
    let page1 = b.events_since(python[0].id, 10_000).await.unwrap();
    assert_eq!(page1.len(), 200, "clamped to MAX_PAGE_ROWS");
    assert_eq!(page1.iter().map(|e| e.id).collect::<Vec<_>>(), ids[..200]);
    let page2 = b.events_since(page1[199].id, 200).await.unwrap();
    assert_eq!(page2.iter().map(|e| e.id).collect::<Vec<_>>(), ids[200..]);
    assert!(b.events_since(ids[204], 200).await.unwrap().is_empty());
    assert_eq!(
        b.events_since(0, 0).await.unwrap().len(),
        1,
        "zero is clamped to one"
    );

    // By type: newest first, bounded.
    let errors = b
        .events_by_type(EventType::GenericError, 200)
        .await
        .unwrap();
    let expected: Vec<String> = [157, 107, 57, 7]
        .iter()
        .map(|i| format!("event {i}"))
        .collect();
    assert_eq!(
        errors.iter().map(|e| e.message.clone()).collect::<Vec<_>>(),
        expected
    );
    let latest = b.events_by_type(EventType::GenericEvent, 3).await.unwrap();
    assert_eq!(
        latest.iter().map(|e| e.id).collect::<Vec<_>>(),
        [ids[204], ids[203], ids[202]]
    );

    // By time: [from, to), oldest first, bounded; the Python event is before the range.
    let in_range = b
        .events_in_range(start, Utc::now() + chrono::Duration::seconds(5), 10)
        .await
        .unwrap();
    assert_eq!(in_range.iter().map(|e| e.id).collect::<Vec<_>>(), ids[..10]);
    let earlier = b
        .events_in_range(start - chrono::Duration::hours(2), start, 200)
        .await
        .unwrap();
    assert_eq!(earlier.len(), 1);
    assert_eq!(earlier[0].id, python[0].id);
    let at = appended[100].timestamp;
    let from_100 = b
        .events_in_range(at, at + chrono::Duration::hours(1), 200)
        .await
        .unwrap();
    assert!(from_100.iter().all(|e| e.timestamp >= at));
    assert!(
        from_100.iter().any(|e| e.id == ids[100]),
        "from is inclusive"
    );
    assert!(
        b.events_in_range(at, at, 200).await.unwrap().is_empty(),
        "to is exclusive"
    );

    // A run's events carry its plan and are written only while it owns the plan.
    let plan = b.enqueue("evented", None).await.unwrap();
    let run = b.claim("w").await.unwrap().unwrap().attempt;
    let e = b
        .append_for_run(
            run,
            EventType::GenericEvent,
            "step done",
            Some(&json!({ "step": 3 })),
        )
        .await
        .unwrap();
    assert_eq!(
        e.context.as_deref(),
        Some(&json!({ "step": 3, "task_id": plan.to_string() }))
    );
    let stale = Attempt {
        plan_id: plan,
        token: Uuid::new_v4(),
    };
    let err = b
        .append_for_run(stale, EventType::GenericEvent, "ghost", None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Superseded { plan_id } if plan_id == plan),
        "{err:?}"
    );
    let of_plan: Vec<String> = b
        .events(plan)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.message)
        .collect();
    assert_eq!(
        of_plan.last().map(String::as_str),
        Some("step done"),
        "{of_plan:?}"
    );
    assert!(!of_plan.iter().any(|m| m == "ghost"));
}

async fn api_keys_are_renamed_reset_and_listed_newest_first<B: TelemetryBackend>(b: B) {
    let user = b.new_user().await.unwrap();
    let mut keys = Vec::new();
    for label in ["laptop", "phone", "ci"] {
        let raw = RawApiKey::generate().unwrap();
        keys.push((b.create_key(user, &raw, Some(label)).await.unwrap(), raw));
        tokio::time::sleep(Duration::from_millis(3)).await;
    }

    // Rename: the label changes, nothing else; another user's key is not found.
    let (laptop, laptop_raw) = &keys[0];
    let renamed = b
        .rename_key(
            user,
            laptop.key.id,
            Some(&format!("work\0{}", "x".repeat(200))),
        )
        .await
        .unwrap();
    assert_eq!(renamed.label, Some(format!("work{}", "x".repeat(124))));
    assert_eq!(renamed.key_hash, laptop.key.key_hash);
    let cleared = b.rename_key(user, laptop.key.id, None).await.unwrap();
    assert_eq!(cleared.label, None);
    let someone = b.new_user().await.unwrap();
    assert!(matches!(
        b.rename_key(someone, laptop.key.id, Some("mine")).await,
        Err(Error::NotFound)
    ));

    // Reset: a new secret, shown once; the old one stops authenticating at once.
    let reset = b.reset_key(user, laptop.key.id).await.unwrap();
    assert_eq!(reset.key.id, laptop.key.id, "the same key row");
    assert_ne!(reset.raw.expose(), laptop_raw.expose());
    assert_eq!(reset.key.key_prefix, reset.raw.expose()[..10]);
    assert_eq!(
        b.authenticate(laptop_raw).await.unwrap(),
        None,
        "old secret refused"
    );
    let auth = b
        .authenticate(&reset.raw)
        .await
        .unwrap()
        .expect("new secret works");
    assert_eq!(auth.api_key_id, laptop.key.id);
    let (hash, plaintext) = b.stored_key(laptop.key.id).await;
    assert_eq!(hash, reset.raw.hash(&secret()));
    assert_eq!(plaintext, None, "shown once: not stored");
    assert!(matches!(
        b.reset_key(someone, laptop.key.id).await,
        Err(Error::NotFound)
    ));
    let (ci, ci_raw) = &keys[2];
    b.revoke(user, ci.key.id).await.unwrap();
    assert!(
        matches!(b.reset_key(user, ci.key.id).await, Err(Error::NotFound)),
        "revoked"
    );
    assert_eq!(b.authenticate(ci_raw).await.unwrap(), None);

    // A key the Python frontend stored without a creation time (hex id on SQLite).
    let python_key = Uuid::new_v4();
    let hash = RawApiKey::generate().unwrap().hash(&secret());
    b.python_writes(
        format!(
            "INSERT INTO user_api_key (id, user_id, key_hash, key_prefix, label)
             VALUES ('{python_key}', '{user}', '{hash}', 'pex_python', 'legacy')"
        ),
        format!(
            "INSERT INTO user_api_key (id, user_id, key_hash, key_prefix, label)
             VALUES ('{}', '{}', '{hash}', 'pex_python', 'legacy')",
            python_key.simple(),
            user.simple()
        ),
    )
    .await;

    // Newest first, keys without a time last, pages of two that neither overlap nor skip.
    let mut seen = Vec::new();
    let mut page = Keyset::first(2);
    loop {
        let rows = b.list_keys(user, page.clone()).await.unwrap();
        let Some(last) = rows.last() else { break };
        assert!(rows.len() <= 2);
        page = Keyset::after(2, last.cursor());
        seen.extend(rows);
    }
    let ids: Vec<Uuid> = seen.iter().map(|k| k.id).collect();
    assert_eq!(
        ids,
        [
            keys[2].0.key.id,
            keys[1].0.key.id,
            laptop.key.id,
            python_key
        ]
    );
    assert!(seen[0].revoked_at.is_some(), "revoked keys are listed");
    assert_eq!(seen[3].label.as_deref(), Some("legacy"));
    assert_eq!(seen[3].created_at, None);
    assert!(
        b.list_keys(someone, Keyset::first(10))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn silent_workers_are_listed_longest_silent_first<B: TelemetryBackend>(b: B) {
    // Two workers of the Python service that went silent an hour and two hours ago.
    for (id, pg_age, lite_age) in [
        ("eu_1", "1 hour", "-1 hours"),
        ("eu_2", "2 hours", "-2 hours"),
    ] {
        let (pg_at, lite_at) = python_time(pg_age, lite_age);
        b.python_writes(
            format!(
                "INSERT INTO workers (id, started_at, last_heartbeat_at, current_task_id)
                 VALUES ('{id}', {pg_at}, {pg_at}, NULL)"
            ),
            format!(
                "INSERT INTO workers (id, started_at, last_heartbeat_at, current_task_id)
                 VALUES ('{id}', {lite_at}, {lite_at}, NULL)"
            ),
        )
        .await;
    }
    let plan = b.enqueue("busy", None).await.unwrap();
    let run = b.claim("live").await.unwrap().unwrap().attempt;
    b.heartbeat("live", Some(run)).await.unwrap();
    b.heartbeat("idle", None).await.unwrap();

    let stale = b.stale_workers(Duration::from_secs(60), 200).await.unwrap();
    let ids: Vec<&str> = stale.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(ids, ["eu_2", "eu_1"], "longest silent first");
    assert!(stale[0].last_heartbeat_at < stale[1].last_heartbeat_at);
    let stale = b
        .stale_workers(Duration::from_secs(90 * 60), 200)
        .await
        .unwrap();
    assert_eq!(
        stale.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(),
        ["eu_2"]
    );
    assert_eq!(
        b.stale_workers(Duration::from_secs(60), 1)
            .await
            .unwrap()
            .len(),
        1
    );

    let all = b.workers(200).await.unwrap();
    assert_eq!(all.len(), 4);
    let live: HashSet<&str> = all[..2].iter().map(|w| w.id.as_str()).collect();
    assert_eq!(
        live,
        HashSet::from(["live", "idle"]),
        "most recent heartbeat first"
    );
    assert_eq!(all[2].id, "eu_1");
    assert_eq!(all[3].id, "eu_2");
    let busy = all.iter().find(|w| w.id == "live").unwrap();
    assert_eq!(busy.current_task_id, Some(plan.to_string()));
    assert_eq!(b.workers(0).await.unwrap().len(), 1, "bounded below by one");
}
