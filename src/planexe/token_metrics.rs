//! `token_metrics`: one row per LLM call (`TokenMetrics`), and usage aggregates.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgExecutor;
use uuid::Uuid;

use super::json::LossyJson;
use super::plans::Attempt;
use super::{Cursor, Keyset, clean_opt, clean_text, json_absent, json_text};
use crate::error::{Error, Result};

/// One row of `token_metrics`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenMetric {
    /// Serial id.
    pub id: i32,
    /// Time of the call.
    pub timestamp: DateTime<Utc>,
    /// Model name as configured.
    pub llm_model: String,
    /// Plan id string.
    pub task_id: Option<String>,
    /// User id string.
    pub user_id: Option<String>,
    /// API key id string.
    pub api_key_id: Option<String>,
    /// Upstream provider (e.g. openrouter).
    pub upstream_provider: Option<String>,
    /// Upstream model.
    pub upstream_model: Option<String>,
    /// Prompt tokens.
    pub input_tokens: Option<i32>,
    /// Completion tokens.
    pub output_tokens: Option<i32>,
    /// Reasoning tokens.
    pub thinking_tokens: Option<i32>,
    /// Cost in USD.
    pub cost_usd: Option<f64>,
    /// Call duration.
    pub duration_seconds: Option<f64>,
    /// Whether the call succeeded.
    pub success: bool,
    /// Error text of a failed call.
    pub error_message: Option<String>,
    /// The provider's raw usage block.
    pub raw_usage_data: Option<LossyJson>,
}

/// What [`record`] writes.
#[derive(Debug, Clone, Default)]
pub struct NewTokenMetric<'a> {
    /// Model name (required).
    pub llm_model: &'a str,
    /// Plan.
    pub plan_id: Option<Uuid>,
    /// User id as stored on the plan.
    pub user_id: Option<&'a str>,
    /// API key.
    pub api_key_id: Option<Uuid>,
    /// Upstream provider.
    pub upstream_provider: Option<&'a str>,
    /// Upstream model.
    pub upstream_model: Option<&'a str>,
    /// Prompt tokens.
    pub input_tokens: Option<i32>,
    /// Completion tokens.
    pub output_tokens: Option<i32>,
    /// Reasoning tokens.
    pub thinking_tokens: Option<i32>,
    /// Cost in USD.
    pub cost_usd: Option<f64>,
    /// Duration.
    pub duration_seconds: Option<f64>,
    /// Success.
    pub success: bool,
    /// Error text.
    pub error_message: Option<&'a str>,
    /// Raw usage block.
    pub raw_usage_data: Option<&'a Value>,
    /// The worker's run the call belongs to. When set, the metric is recorded only while the run
    /// owns its plan (its `task_id` is the run's plan): a superseded run records nothing
    /// ([`Error::Superseded`]).
    pub attempt: Option<Attempt>,
}

/// The text columns of a [`NewTokenMetric`] as stored, after the input rules of [`record`] (one
/// home for both backends): the model required, content cut to its column (255 characters) and
/// NUL-stripped, ids hyphenated, the usage block as JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct CleanTokenMetric {
    /// The plan recorded: the run's plan when an attempt is given, else `plan_id`.
    pub plan_id: Option<Uuid>,
    /// `llm_model`.
    pub llm_model: String,
    /// `task_id`: [`CleanTokenMetric::plan_id`] hyphenated.
    pub task_id: Option<String>,
    /// `user_id`.
    pub user_id: Option<String>,
    /// `api_key_id`, hyphenated.
    pub api_key_id: Option<String>,
    /// `upstream_provider`.
    pub upstream_provider: Option<String>,
    /// `upstream_model`.
    pub upstream_model: Option<String>,
    /// `error_message`.
    pub error_message: Option<String>,
    /// `raw_usage_data` as JSON text (`None` = SQL NULL).
    pub raw_usage_data: Option<String>,
}

impl NewTokenMetric<'_> {
    /// The metric after the input rules: [`Error::InvalidInput`] without a model, or with a
    /// `plan_id` that is not the plan of its `attempt`.
    pub fn clean(&self) -> Result<CleanTokenMetric> {
        if self.llm_model.is_empty() {
            return Err(Error::invalid_input("llm_model is required"));
        }
        let plan_id = match (self.attempt, self.plan_id) {
            (Some(run), Some(plan)) if plan != run.plan_id => {
                return Err(Error::invalid_input(
                    "token metric plan id is not the plan of its run attempt",
                ));
            }
            (Some(run), _) => Some(run.plan_id),
            (None, plan) => plan,
        };
        Ok(CleanTokenMetric {
            plan_id,
            llm_model: clean_text(self.llm_model, 255),
            task_id: plan_id.map(|p| p.to_string()),
            user_id: clean_opt(self.user_id, 255),
            api_key_id: self.api_key_id.map(|k| k.to_string()),
            upstream_provider: clean_opt(self.upstream_provider, 255),
            upstream_model: clean_opt(self.upstream_model, 255),
            error_message: self.error_message.map(|e| clean_text(e, usize::MAX)),
            raw_usage_data: json_text(self.raw_usage_data),
        })
    }
}

/// Record one LLM call. With [`NewTokenMetric::attempt`], only while that run owns its plan (the
/// plan row held `FOR SHARE` meanwhile), else [`Error::Superseded`] and nothing is written; a
/// `plan_id` that is not the run's plan is [`Error::InvalidInput`]. One round trip.
#[tracing::instrument(skip_all)]
pub async fn record(ex: impl PgExecutor<'_>, m: &NewTokenMetric<'_>) -> Result<TokenMetric> {
    let c = m.clean()?;
    let row = sqlx::query_as!(
        TokenMetric,
        r#"WITH run AS (
               -- the run still owns its plan (held against a re-queue while we write)
               SELECT id FROM plans WHERE id = $2::text::uuid AND run_attempt = $15 FOR SHARE)
           INSERT INTO token_metrics ("timestamp", llm_model, task_id, user_id, api_key_id,
                                     upstream_provider, upstream_model, input_tokens,
                                     output_tokens, thinking_tokens, cost_usd, duration_seconds,
                                     success, error_message, raw_usage_data)
           SELECT now() AT TIME ZONE 'utc', $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,
                  $13, $14::text::json
           WHERE $15::uuid IS NULL OR EXISTS (SELECT 1 FROM run)
           RETURNING id, "timestamp", llm_model, task_id, user_id, api_key_id, upstream_provider,
                     upstream_model, input_tokens, output_tokens, thinking_tokens, cost_usd,
                     duration_seconds, success, error_message, raw_usage_data"#,
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
        m.attempt.map(|a| a.token),
    )
    .fetch_optional(ex)
    .await?;
    match row {
        Some(row) => Ok(row.normalized()),
        None => Err(Error::Superseded {
            plan_id: c.plan_id.unwrap_or_default(),
        }),
    }
}

impl TokenMetric {
    fn normalized(mut self) -> Self {
        self.raw_usage_data = json_absent(self.raw_usage_data);
        self
    }
}

impl TokenMetric {
    /// This row's place in the list, for the next [`list_for_plan`] / [`list_for_user`] page.
    pub fn cursor(&self) -> Cursor<i32> {
        Cursor {
            at: Some(self.timestamp),
            id: self.id,
        }
    }
}

/// The calls of one plan, newest first (ties by id, newest first), by keyset: at most
/// `page.limit` rows after `page.after`, read from `ix_token_metrics_task_id_timestamp_desc`
/// (migration 0075) starting at the cursor. One round trip.
#[tracing::instrument(skip_all, fields(%plan_id))]
pub async fn list_for_plan(
    ex: impl PgExecutor<'_>,
    plan_id: Uuid,
    page: Keyset<i32>,
) -> Result<Vec<TokenMetric>> {
    let rows = sqlx::query_as!(
        TokenMetric,
        r#"SELECT id, "timestamp", llm_model, task_id, user_id, api_key_id, upstream_provider,
                  upstream_model, input_tokens, output_tokens, thinking_tokens, cost_usd,
                  duration_seconds, success, error_message, raw_usage_data
           FROM token_metrics
           WHERE task_id = $1
             AND "timestamp" <= coalesce($2, 'infinity'::timestamp)
             AND ("timestamp" < coalesce($2, 'infinity'::timestamp) OR id < $3)
           ORDER BY "timestamp" DESC, id DESC LIMIT $4"#,
        plan_id.to_string(),
        page.at(),
        page.id(),
        page.limit(),
    )
    .fetch_all(ex)
    .await?;
    Ok(rows.into_iter().map(TokenMetric::normalized).collect())
}

/// The calls of one user (the user id string as stored on the plan), newest first (ties by id,
/// newest first), by keyset: at most `page.limit` rows after `page.after`, read from
/// `ix_token_metrics_user_id_timestamp_desc` (migration 0076) starting at the cursor. One round
/// trip.
#[tracing::instrument(skip_all, fields(%user_id))]
pub async fn list_for_user(
    ex: impl PgExecutor<'_>,
    user_id: &str,
    page: Keyset<i32>,
) -> Result<Vec<TokenMetric>> {
    let rows = sqlx::query_as!(
        TokenMetric,
        r#"SELECT id, "timestamp", llm_model, task_id, user_id, api_key_id, upstream_provider,
                  upstream_model, input_tokens, output_tokens, thinking_tokens, cost_usd,
                  duration_seconds, success, error_message, raw_usage_data
           FROM token_metrics
           WHERE user_id = $1
             AND "timestamp" <= coalesce($2, 'infinity'::timestamp)
             AND ("timestamp" < coalesce($2, 'infinity'::timestamp) OR id < $3)
           ORDER BY "timestamp" DESC, id DESC LIMIT $4"#,
        user_id,
        page.at(),
        page.id(),
        page.limit(),
    )
    .fetch_all(ex)
    .await?;
    Ok(rows.into_iter().map(TokenMetric::normalized).collect())
}

/// Aggregate usage of a set of calls.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenUsage {
    /// What was grouped on: plan id, user id or model name.
    pub key: String,
    /// Number of calls.
    pub calls: i64,
    /// Failed calls.
    pub failed_calls: i64,
    /// Sum of input tokens.
    pub input_tokens: i64,
    /// Sum of output tokens.
    pub output_tokens: i64,
    /// Sum of thinking tokens.
    pub thinking_tokens: i64,
    /// Sum of costs in USD.
    pub cost_usd: f64,
    /// Sum of durations.
    pub duration_seconds: f64,
}

/// Usage of one plan. `None` if it has no calls. One round trip.
#[tracing::instrument(skip_all, fields(%plan_id))]
pub async fn usage_for_plan(ex: impl PgExecutor<'_>, plan_id: Uuid) -> Result<Option<TokenUsage>> {
    Ok(sqlx::query_as!(
        TokenUsage,
        r#"SELECT task_id AS "key!", count(*) AS "calls!",
                  count(*) FILTER (WHERE NOT success) AS "failed_calls!",
                  coalesce(sum(input_tokens), 0)::bigint AS "input_tokens!",
                  coalesce(sum(output_tokens), 0)::bigint AS "output_tokens!",
                  coalesce(sum(thinking_tokens), 0)::bigint AS "thinking_tokens!",
                  coalesce(sum(cost_usd), 0) AS "cost_usd!",
                  coalesce(sum(duration_seconds), 0) AS "duration_seconds!"
           FROM token_metrics WHERE task_id = $1 GROUP BY task_id"#,
        plan_id.to_string(),
    )
    .fetch_optional(ex)
    .await?)
}

/// Usage of one user. `None` if they have no calls. One round trip.
#[tracing::instrument(skip_all, fields(%user_id))]
pub async fn usage_for_user(ex: impl PgExecutor<'_>, user_id: &str) -> Result<Option<TokenUsage>> {
    Ok(sqlx::query_as!(
        TokenUsage,
        r#"SELECT user_id AS "key!", count(*) AS "calls!",
                  count(*) FILTER (WHERE NOT success) AS "failed_calls!",
                  coalesce(sum(input_tokens), 0)::bigint AS "input_tokens!",
                  coalesce(sum(output_tokens), 0)::bigint AS "output_tokens!",
                  coalesce(sum(thinking_tokens), 0)::bigint AS "thinking_tokens!",
                  coalesce(sum(cost_usd), 0) AS "cost_usd!",
                  coalesce(sum(duration_seconds), 0) AS "duration_seconds!"
           FROM token_metrics WHERE user_id = $1 GROUP BY user_id"#,
        user_id,
    )
    .fetch_optional(ex)
    .await?)
}

/// Usage per model within `[from, to)`, most expensive first. One round trip.
#[tracing::instrument(skip_all)]
pub async fn usage_by_model(
    ex: impl PgExecutor<'_>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<TokenUsage>> {
    Ok(sqlx::query_as!(
        TokenUsage,
        r#"SELECT llm_model AS "key!", count(*) AS "calls!",
                  count(*) FILTER (WHERE NOT success) AS "failed_calls!",
                  coalesce(sum(input_tokens), 0)::bigint AS "input_tokens!",
                  coalesce(sum(output_tokens), 0)::bigint AS "output_tokens!",
                  coalesce(sum(thinking_tokens), 0)::bigint AS "thinking_tokens!",
                  coalesce(sum(cost_usd), 0) AS "cost_usd!",
                  coalesce(sum(duration_seconds), 0) AS "duration_seconds!"
           FROM token_metrics WHERE "timestamp" >= $1 AND "timestamp" < $2
           GROUP BY llm_model ORDER BY 7 DESC, 1"#,
        from.naive_utc(),
        to.naive_utc(),
    )
    .fetch_all(ex)
    .await?)
}
