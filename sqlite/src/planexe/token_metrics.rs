//! `token_metrics` on SQLite: one row per LLM call and the usage aggregates, with the library's
//! [`TokenMetric`] / [`TokenUsage`] rows and its input rules
//! ([`NewTokenMetric::clean`](shared_db::planexe::token_metrics::NewTokenMetric::clean)).
//!
//! The sums are SQLite's: token counts are exact integer sums (`sum`, which raises rather than
//! wraps on overflow), costs and durations `total()` of the stored doubles (0.0 when there are
//! none, like PostgreSQL's `coalesce(sum(..), 0)`).

use chrono::{DateTime, Utc};
use shared_db::planexe::token_metrics::{NewTokenMetric, TokenMetric, TokenUsage};
use shared_db::planexe::{Keyset, MAX_PAGE_ROWS};
use shared_db::{Error, Result};
use sqlx::SqliteConnection;
use uuid::Uuid;

use super::{END_OF_TIME, hex, json, time_text};
use crate::error::from_sqlx;

/// A `token_metrics` row as SQLite returns it.
struct MetricRow {
    id: i64,
    timestamp: DateTime<Utc>,
    llm_model: String,
    task_id: Option<String>,
    user_id: Option<String>,
    api_key_id: Option<String>,
    upstream_provider: Option<String>,
    upstream_model: Option<String>,
    input_tokens: Option<i32>,
    output_tokens: Option<i32>,
    thinking_tokens: Option<i32>,
    cost_usd: Option<f64>,
    duration_seconds: Option<f64>,
    success: bool,
    error_message: Option<String>,
    raw_usage_data: Option<String>,
}

impl MetricRow {
    fn into_metric(self) -> Result<TokenMetric> {
        Ok(TokenMetric {
            id: i32::try_from(self.id)
                .map_err(|_| Error::internal(format!("stored metric id {} beyond i32", self.id)))?,
            timestamp: self.timestamp,
            llm_model: self.llm_model,
            task_id: self.task_id,
            user_id: self.user_id,
            api_key_id: self.api_key_id,
            upstream_provider: self.upstream_provider,
            upstream_model: self.upstream_model,
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            thinking_tokens: self.thinking_tokens,
            cost_usd: self.cost_usd,
            duration_seconds: self.duration_seconds,
            success: self.success,
            error_message: self.error_message,
            raw_usage_data: json(self.raw_usage_data),
        })
    }
}

/// Record one LLM call, as [`shared_db::planexe::token_metrics::record`]. With
/// [`NewTokenMetric::attempt`] the row is written only while that run owns its plan, tested in the
/// same statement (`INSERT … SELECT … WHERE EXISTS`, atomic under SQLite's one writer), else
/// [`Error::Superseded`] and nothing is written. [`Error::InvalidInput`] without a model, or for a
/// `plan_id` that is not the run's plan.
#[tracing::instrument(target = "shared_db_sqlite::planexe::token_metrics", skip_all)]
pub async fn record(conn: &mut SqliteConnection, m: &NewTokenMetric<'_>) -> Result<TokenMetric> {
    let c = m.clean()?;
    let run_plan = m.attempt.map(|a| hex(a.plan_id));
    let run_token = m.attempt.map(|a| hex(a.token));
    let row = sqlx::query_as!(
        MetricRow,
        r#"INSERT INTO token_metrics ("timestamp", llm_model, task_id, user_id, api_key_id,
                                     upstream_provider, upstream_model, input_tokens,
                                     output_tokens, thinking_tokens, cost_usd, duration_seconds,
                                     success, error_message, raw_usage_data)
           SELECT strftime('%Y-%m-%d %H:%M:%f000', 'now'), ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9,
                  ?10, ?11, ?12, ?13, ?14
           -- without a run, always; with one, only while it still owns its plan
           WHERE ?15 IS NULL
              OR EXISTS (SELECT 1 FROM plans WHERE id = ?16 AND run_attempt = ?15)
           RETURNING id AS "id!: i64", "timestamp" AS "timestamp!: DateTime<Utc>",
                     llm_model AS "llm_model!", task_id AS "task_id?", user_id AS "user_id?",
                     api_key_id AS "api_key_id?", upstream_provider AS "upstream_provider?",
                     upstream_model AS "upstream_model?", input_tokens AS "input_tokens?: i32",
                     output_tokens AS "output_tokens?: i32",
                     thinking_tokens AS "thinking_tokens?: i32", cost_usd AS "cost_usd?: f64",
                     duration_seconds AS "duration_seconds?: f64", success AS "success!: bool",
                     error_message AS "error_message?", raw_usage_data AS "raw_usage_data?""#,
        c.llm_model,
        c.task_id,
        c.user_id,
        c.api_key_id,
        c.upstream_provider,
        c.upstream_model,
        m.input_tokens,
        m.output_tokens,
        m.thinking_tokens,
        m.cost_usd,
        m.duration_seconds,
        m.success,
        c.error_message,
        c.raw_usage_data,
        run_token,
        run_plan,
    )
    .fetch_optional(conn)
    .await
    .map_err(from_sqlx)?;
    match row {
        Some(row) => row.into_metric(),
        None => Err(Error::Superseded {
            plan_id: c.plan_id.unwrap_or_default(),
        }),
    }
}

/// The calls of one plan, newest first (ties by id, newest first), by keyset: at most
/// `page.limit` (clamped to 1..=[`MAX_PAGE_ROWS`]) after `page.after`, read from
/// `ix_token_metrics_task_id_timestamp_desc` starting at the cursor.
pub async fn list_for_plan(
    conn: &mut SqliteConnection,
    plan_id: Uuid,
    page: Keyset<i32>,
) -> Result<Vec<TokenMetric>> {
    let (at, id) = cursor(&page);
    let rows = sqlx::query_as!(
        MetricRow,
        r#"SELECT id AS "id!: i64", "timestamp" AS "timestamp!: DateTime<Utc>",
                  llm_model AS "llm_model!", task_id AS "task_id?", user_id AS "user_id?",
                  api_key_id AS "api_key_id?", upstream_provider AS "upstream_provider?",
                  upstream_model AS "upstream_model?", input_tokens AS "input_tokens?: i32",
                  output_tokens AS "output_tokens?: i32",
                  thinking_tokens AS "thinking_tokens?: i32", cost_usd AS "cost_usd?: f64",
                  duration_seconds AS "duration_seconds?: f64", success AS "success!: bool",
                  error_message AS "error_message?", raw_usage_data AS "raw_usage_data?"
           FROM token_metrics
           WHERE task_id = ?1
             AND "timestamp" <= coalesce(?2, ?5)
             AND ("timestamp" < coalesce(?2, ?5) OR id < ?3)
           ORDER BY "timestamp" DESC, id DESC LIMIT ?4"#,
        plan_id.to_string(),
        at,
        id,
        page.limit.clamp(1, MAX_PAGE_ROWS),
        END_OF_TIME,
    )
    .fetch_all(conn)
    .await
    .map_err(from_sqlx)?;
    rows.into_iter().map(MetricRow::into_metric).collect()
}

/// The calls of one user (the user id string as stored), newest first (ties by id, newest first),
/// by keyset: at most `page.limit` (clamped to 1..=[`MAX_PAGE_ROWS`]) after `page.after`, read
/// from `ix_token_metrics_user_id_timestamp_desc` starting at the cursor.
pub async fn list_for_user(
    conn: &mut SqliteConnection,
    user_id: &str,
    page: Keyset<i32>,
) -> Result<Vec<TokenMetric>> {
    let (at, id) = cursor(&page);
    let rows = sqlx::query_as!(
        MetricRow,
        r#"SELECT id AS "id!: i64", "timestamp" AS "timestamp!: DateTime<Utc>",
                  llm_model AS "llm_model!", task_id AS "task_id?", user_id AS "user_id?",
                  api_key_id AS "api_key_id?", upstream_provider AS "upstream_provider?",
                  upstream_model AS "upstream_model?", input_tokens AS "input_tokens?: i32",
                  output_tokens AS "output_tokens?: i32",
                  thinking_tokens AS "thinking_tokens?: i32", cost_usd AS "cost_usd?: f64",
                  duration_seconds AS "duration_seconds?: f64", success AS "success!: bool",
                  error_message AS "error_message?", raw_usage_data AS "raw_usage_data?"
           FROM token_metrics
           WHERE user_id = ?1
             AND "timestamp" <= coalesce(?2, ?5)
             AND ("timestamp" < coalesce(?2, ?5) OR id < ?3)
           ORDER BY "timestamp" DESC, id DESC LIMIT ?4"#,
        user_id,
        at,
        id,
        page.limit.clamp(1, MAX_PAGE_ROWS),
        END_OF_TIME,
    )
    .fetch_all(conn)
    .await
    .map_err(from_sqlx)?;
    rows.into_iter().map(MetricRow::into_metric).collect()
}

/// A keyset's cursor as bound: its time as the column text, its id.
fn cursor(page: &Keyset<i32>) -> (Option<String>, Option<i32>) {
    let after = page.after.as_ref();
    (after.and_then(|c| c.at).map(time_text), after.map(|c| c.id))
}

/// Usage of one plan; `None` if it has no calls.
pub async fn usage_for_plan(
    conn: &mut SqliteConnection,
    plan_id: Uuid,
) -> Result<Option<TokenUsage>> {
    sqlx::query_as!(
        TokenUsage,
        r#"SELECT task_id AS "key!: String", count(*) AS "calls!: i64",
                  count(*) FILTER (WHERE NOT success) AS "failed_calls!: i64",
                  coalesce(sum(input_tokens), 0) AS "input_tokens!: i64",
                  coalesce(sum(output_tokens), 0) AS "output_tokens!: i64",
                  coalesce(sum(thinking_tokens), 0) AS "thinking_tokens!: i64",
                  total(cost_usd) AS "cost_usd!: f64",
                  total(duration_seconds) AS "duration_seconds!: f64"
           FROM token_metrics WHERE task_id = ?1 GROUP BY task_id"#,
        plan_id.to_string(),
    )
    .fetch_optional(conn)
    .await
    .map_err(from_sqlx)
}

/// Usage of one user (the user id string as stored); `None` if they have no calls.
pub async fn usage_for_user(
    conn: &mut SqliteConnection,
    user_id: &str,
) -> Result<Option<TokenUsage>> {
    sqlx::query_as!(
        TokenUsage,
        r#"SELECT user_id AS "key!: String", count(*) AS "calls!: i64",
                  count(*) FILTER (WHERE NOT success) AS "failed_calls!: i64",
                  coalesce(sum(input_tokens), 0) AS "input_tokens!: i64",
                  coalesce(sum(output_tokens), 0) AS "output_tokens!: i64",
                  coalesce(sum(thinking_tokens), 0) AS "thinking_tokens!: i64",
                  total(cost_usd) AS "cost_usd!: f64",
                  total(duration_seconds) AS "duration_seconds!: f64"
           FROM token_metrics WHERE user_id = ?1 GROUP BY user_id"#,
        user_id,
    )
    .fetch_optional(conn)
    .await
    .map_err(from_sqlx)
}

/// Usage per model of the calls within `[from, to)`, most expensive first (ties by model name).
pub async fn usage_by_model(
    conn: &mut SqliteConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<TokenUsage>> {
    sqlx::query_as!(
        TokenUsage,
        r#"SELECT llm_model AS "key!: String", count(*) AS "calls!: i64",
                  count(*) FILTER (WHERE NOT success) AS "failed_calls!: i64",
                  coalesce(sum(input_tokens), 0) AS "input_tokens!: i64",
                  coalesce(sum(output_tokens), 0) AS "output_tokens!: i64",
                  coalesce(sum(thinking_tokens), 0) AS "thinking_tokens!: i64",
                  total(cost_usd) AS "cost_usd!: f64",
                  total(duration_seconds) AS "duration_seconds!: f64"
           FROM token_metrics WHERE "timestamp" >= ?1 AND "timestamp" < ?2
           GROUP BY llm_model ORDER BY 7 DESC, 1"#,
        time_text(from),
        time_text(to),
    )
    .fetch_all(conn)
    .await
    .map_err(from_sqlx)
}
