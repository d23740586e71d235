//! `feedback_item` on SQLite: feedback submitted through the MCP server and its summaries, with
//! the library's [`FeedbackItem`] / [`FeedbackSummary`] rows and input rules
//! ([`NewFeedback::clean`](shared_db::planexe::feedback_item::NewFeedback::clean)).

use chrono::{DateTime, Utc};
use shared_db::Result;
use shared_db::planexe::feedback_item::{FeedbackItem, FeedbackSummary, NewFeedback};
use shared_db::planexe::{Keyset, MAX_PAGE_ROWS};
use sqlx::SqliteConnection;
use uuid::Uuid;

use super::{END_OF_TIME, time_text};
use crate::error::from_sqlx;

/// Record feedback, as [`shared_db::planexe::feedback_item::record`] (id: a hyphenated uuid4
/// string, as the MCP server writes it). [`shared_db::Error::InvalidInput`] without a category or
/// message. One statement.
pub async fn record(conn: &mut SqliteConnection, f: &NewFeedback<'_>) -> Result<FeedbackItem> {
    let c = f.clean()?;
    sqlx::query_as!(
        FeedbackItem,
        r#"INSERT INTO feedback_item (id, received_at, category, message, plan_id, rating,
                                     user_id, plan_progress_pct, plan_state, plan_current_step)
           VALUES (?1, strftime('%Y-%m-%d %H:%M:%f000', 'now'), ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
           RETURNING id AS "id!", received_at AS "received_at!: DateTime<Utc>",
                     category AS "category!", message AS "message!", plan_id AS "plan_id?",
                     rating AS "rating?: i32", user_id AS "user_id?",
                     plan_progress_pct AS "plan_progress_pct?: f64", plan_state AS "plan_state?",
                     plan_current_step AS "plan_current_step?""#,
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
    .fetch_one(conn)
    .await
    .map_err(from_sqlx)
}

/// Feedback on one plan: items, rated items, their mean rating (`None` when none is rated), the
/// latest receipt time.
pub async fn summary_for_plan(
    conn: &mut SqliteConnection,
    plan_id: Uuid,
) -> Result<FeedbackSummary> {
    sqlx::query_as!(
        FeedbackSummary,
        r#"SELECT count(*) AS "count!: i64", count(rating) AS "rated!: i64",
                  avg(rating) AS "average_rating?: f64",
                  max(received_at) AS "latest_at?: DateTime<Utc>"
           FROM feedback_item WHERE plan_id = ?1"#,
        plan_id.to_string(),
    )
    .fetch_one(conn)
    .await
    .map_err(from_sqlx)
}

/// Feedback of one user (the user id string as stored), summarised as [`summary_for_plan`].
pub async fn summary_for_user(
    conn: &mut SqliteConnection,
    user_id: &str,
) -> Result<FeedbackSummary> {
    sqlx::query_as!(
        FeedbackSummary,
        r#"SELECT count(*) AS "count!: i64", count(rating) AS "rated!: i64",
                  avg(rating) AS "average_rating?: f64",
                  max(received_at) AS "latest_at?: DateTime<Utc>"
           FROM feedback_item WHERE user_id = ?1"#,
        user_id,
    )
    .fetch_one(conn)
    .await
    .map_err(from_sqlx)
}

/// Feedback on one plan, newest first (ties by id, descending), by keyset: at most `page.limit`
/// (clamped to 1..=[`MAX_PAGE_ROWS`]) after `page.after`, read from
/// `ix_feedback_item_plan_id_received_at_desc` starting at the cursor.
pub async fn list_for_plan(
    conn: &mut SqliteConnection,
    plan_id: Uuid,
    page: Keyset<String>,
) -> Result<Vec<FeedbackItem>> {
    let (at, id) = cursor(&page);
    sqlx::query_as!(
        FeedbackItem,
        r#"SELECT id AS "id!", received_at AS "received_at!: DateTime<Utc>",
                  category AS "category!", message AS "message!", plan_id AS "plan_id?",
                  rating AS "rating?: i32", user_id AS "user_id?",
                  plan_progress_pct AS "plan_progress_pct?: f64", plan_state AS "plan_state?",
                  plan_current_step AS "plan_current_step?"
           FROM feedback_item
           WHERE plan_id = ?1
             AND received_at <= coalesce(?2, ?5)
             AND (received_at < coalesce(?2, ?5) OR id < ?3)
           ORDER BY received_at DESC, id DESC LIMIT ?4"#,
        plan_id.to_string(),
        at,
        id,
        page.limit.clamp(1, MAX_PAGE_ROWS),
        END_OF_TIME,
    )
    .fetch_all(conn)
    .await
    .map_err(from_sqlx)
}

/// Feedback of one user (the user id string as stored), newest first (ties by id, descending),
/// including feedback that names no plan, by keyset: at most `page.limit` (clamped to
/// 1..=[`MAX_PAGE_ROWS`]) after `page.after`, read from
/// `ix_feedback_item_user_id_received_at_desc` starting at the cursor.
pub async fn list_for_user(
    conn: &mut SqliteConnection,
    user_id: &str,
    page: Keyset<String>,
) -> Result<Vec<FeedbackItem>> {
    let (at, id) = cursor(&page);
    sqlx::query_as!(
        FeedbackItem,
        r#"SELECT id AS "id!", received_at AS "received_at!: DateTime<Utc>",
                  category AS "category!", message AS "message!", plan_id AS "plan_id?",
                  rating AS "rating?: i32", user_id AS "user_id?",
                  plan_progress_pct AS "plan_progress_pct?: f64", plan_state AS "plan_state?",
                  plan_current_step AS "plan_current_step?"
           FROM feedback_item
           WHERE user_id = ?1
             AND received_at <= coalesce(?2, ?5)
             AND (received_at < coalesce(?2, ?5) OR id < ?3)
           ORDER BY received_at DESC, id DESC LIMIT ?4"#,
        user_id,
        at,
        id,
        page.limit.clamp(1, MAX_PAGE_ROWS),
        END_OF_TIME,
    )
    .fetch_all(conn)
    .await
    .map_err(from_sqlx)
}

/// A keyset's cursor as bound: its time as the column text, its id.
fn cursor(page: &Keyset<String>) -> (Option<String>, Option<&str>) {
    let after = page.after.as_ref();
    (
        after.and_then(|c| c.at).map(time_text),
        after.map(|c| c.id.as_str()),
    )
}
