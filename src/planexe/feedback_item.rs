//! `feedback_item`: feedback submitted through the MCP server (`FeedbackItem`), and aggregates.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;
use uuid::Uuid;

use super::{Cursor, Keyset, PlanState, clean_opt, clean_text};
use crate::error::{Error, Result};

/// One row of `feedback_item`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeedbackItem {
    /// UUID string.
    pub id: String,
    /// Receipt time.
    pub received_at: DateTime<Utc>,
    /// Category (≤32 chars).
    pub category: String,
    /// The feedback text.
    pub message: String,
    /// Plan id string.
    pub plan_id: Option<String>,
    /// Rating.
    pub rating: Option<i32>,
    /// User id string.
    pub user_id: Option<String>,
    /// The plan's progress at submission.
    pub plan_progress_pct: Option<f64>,
    /// The plan's state label at submission.
    pub plan_state: Option<String>,
    /// The plan's step at submission.
    pub plan_current_step: Option<String>,
}

/// What [`record`] writes.
#[derive(Debug, Clone, Default)]
pub struct NewFeedback<'a> {
    /// Category (required, ≤32 chars).
    pub category: &'a str,
    /// Text (required).
    pub message: &'a str,
    /// Plan.
    pub plan_id: Option<Uuid>,
    /// Rating.
    pub rating: Option<i32>,
    /// User id string (≤36 chars).
    pub user_id: Option<&'a str>,
    /// Plan snapshot: progress.
    pub plan_progress_pct: Option<f64>,
    /// Plan snapshot: state, stored as its label (varchar(16): the label of a
    /// [`PlanState::Unknown`] is cut to 16 characters, like other content).
    pub plan_state: Option<PlanState>,
    /// Plan snapshot: step.
    pub plan_current_step: Option<&'a str>,
}

/// The text columns of a [`NewFeedback`] as stored, after the input rules of [`record`] (one home
/// for both backends): category and message required, content cut to its column and
/// NUL-stripped, the plan id hyphenated, the plan state as its label.
#[derive(Debug, Clone, PartialEq)]
pub struct CleanFeedback {
    /// `category` (≤32 characters).
    pub category: String,
    /// `message`.
    pub message: String,
    /// `plan_id`, hyphenated.
    pub plan_id: Option<String>,
    /// `user_id` (≤36 characters).
    pub user_id: Option<String>,
    /// `plan_state`: the label, ≤16 characters.
    pub plan_state: Option<String>,
    /// `plan_current_step` (≤128 characters).
    pub plan_current_step: Option<String>,
}

impl NewFeedback<'_> {
    /// The feedback after the input rules: [`Error::InvalidInput`] without a category or message.
    pub fn clean(&self) -> Result<CleanFeedback> {
        if self.category.is_empty() || self.message.is_empty() {
            return Err(Error::invalid_input(
                "feedback category and message are required",
            ));
        }
        Ok(CleanFeedback {
            category: clean_text(self.category, 32),
            message: clean_text(self.message, usize::MAX),
            plan_id: self.plan_id.map(|p| p.to_string()),
            user_id: clean_opt(self.user_id, 36),
            plan_state: self.plan_state.as_ref().map(|s| clean_text(s.as_str(), 16)),
            plan_current_step: clean_opt(self.plan_current_step, 128),
        })
    }
}

/// Record feedback. One round trip.
#[tracing::instrument(skip_all)]
pub async fn record(ex: impl PgExecutor<'_>, f: &NewFeedback<'_>) -> Result<FeedbackItem> {
    let c = f.clean()?;
    Ok(sqlx::query_as!(
        FeedbackItem,
        r#"INSERT INTO feedback_item (id, received_at, category, message, plan_id, rating,
                                     user_id, plan_progress_pct, plan_state, plan_current_step)
           VALUES ($1, now() AT TIME ZONE 'utc', $2, $3, $4, $5, $6, $7, $8, $9)
           RETURNING id, received_at, category, message, plan_id, rating, user_id,
                     plan_progress_pct, plan_state, plan_current_step"#,
        Uuid::new_v4().to_string(),
        c.category,
        c.message,
        c.plan_id,
        f.rating,
        c.user_id,
        f.plan_progress_pct,
        c.plan_state,
        c.plan_current_step,
    )
    .fetch_one(ex)
    .await?)
}

/// Aggregate feedback.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeedbackSummary {
    /// Number of items.
    pub count: i64,
    /// Items with a rating.
    pub rated: i64,
    /// Mean rating of the rated items.
    pub average_rating: Option<f64>,
    /// Latest item.
    pub latest_at: Option<DateTime<Utc>>,
}

/// Feedback on one plan. One round trip.
#[tracing::instrument(skip_all, fields(%plan_id))]
pub async fn summary_for_plan(ex: impl PgExecutor<'_>, plan_id: Uuid) -> Result<FeedbackSummary> {
    Ok(sqlx::query_as!(
        FeedbackSummary,
        r#"SELECT count(*) AS "count!", count(rating) AS "rated!",
                  avg(rating)::float8 AS average_rating,
                  max(received_at) AS "latest_at: DateTime<Utc>"
           FROM feedback_item WHERE plan_id = $1"#,
        plan_id.to_string(),
    )
    .fetch_one(ex)
    .await?)
}

/// Feedback of one user. One round trip.
#[tracing::instrument(skip_all, fields(%user_id))]
pub async fn summary_for_user(ex: impl PgExecutor<'_>, user_id: &str) -> Result<FeedbackSummary> {
    Ok(sqlx::query_as!(
        FeedbackSummary,
        r#"SELECT count(*) AS "count!", count(rating) AS "rated!",
                  avg(rating)::float8 AS average_rating,
                  max(received_at) AS "latest_at: DateTime<Utc>"
           FROM feedback_item WHERE user_id = $1"#,
        user_id,
    )
    .fetch_one(ex)
    .await?)
}

impl FeedbackItem {
    /// This row's place in the list, for the next [`list_for_plan`] / [`list_for_user`] page.
    pub fn cursor(&self) -> Cursor<String> {
        Cursor {
            at: Some(self.received_at),
            id: self.id.clone(),
        }
    }
}

/// Feedback on one plan, newest first (ties by id, descending), by keyset: at most `page.limit`
/// rows after `page.after`, read from `ix_feedback_item_plan_id_received_at_desc` (migration
/// 0077) starting at the cursor. One round trip.
#[tracing::instrument(skip_all, fields(%plan_id))]
pub async fn list_for_plan(
    ex: impl PgExecutor<'_>,
    plan_id: Uuid,
    page: Keyset<String>,
) -> Result<Vec<FeedbackItem>> {
    Ok(sqlx::query_as!(
        FeedbackItem,
        r#"SELECT id, received_at, category, message, plan_id, rating, user_id, plan_progress_pct,
                  plan_state, plan_current_step
           FROM feedback_item
           WHERE plan_id = $1
             AND received_at <= coalesce($2, 'infinity'::timestamp)
             AND (received_at < coalesce($2, 'infinity'::timestamp) OR id < $3)
           ORDER BY received_at DESC, id DESC LIMIT $4"#,
        plan_id.to_string(),
        page.at(),
        page.id(),
        page.limit(),
    )
    .fetch_all(ex)
    .await?)
}

/// Feedback of one user (the user id string as stored), newest first (ties by id, descending),
/// including feedback that names no plan, by keyset: at most `page.limit` rows after
/// `page.after`, read from `ix_feedback_item_user_id_received_at_desc` (migration 0078) starting
/// at the cursor. One round trip.
#[tracing::instrument(skip_all, fields(%user_id))]
pub async fn list_for_user(
    ex: impl PgExecutor<'_>,
    user_id: &str,
    page: Keyset<String>,
) -> Result<Vec<FeedbackItem>> {
    Ok(sqlx::query_as!(
        FeedbackItem,
        r#"SELECT id, received_at, category, message, plan_id, rating, user_id, plan_progress_pct,
                  plan_state, plan_current_step
           FROM feedback_item
           WHERE user_id = $1
             AND received_at <= coalesce($2, 'infinity'::timestamp)
             AND (received_at < coalesce($2, 'infinity'::timestamp) OR id < $3)
           ORDER BY received_at DESC, id DESC LIMIT $4"#,
        user_id,
        page.at(),
        page.id(),
        page.limit(),
    )
    .fetch_all(ex)
    .await?)
}
