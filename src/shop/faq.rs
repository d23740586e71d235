//! `shop.faq`: frequently asked questions (global, not per shop). Questions are unique.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::list::{self, ListParams, Page, Spec, sort_col, text_col};
use crate::{Error, Result};

/// A row of `shop.faq`.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct Faq {
    /// Primary key.
    pub id: Uuid,
    /// Question, unique.
    pub question: String,
    /// Answer.
    pub answer: String,
    /// Category label.
    pub category: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last modification (maintained by a trigger).
    pub modified_at: DateTime<Utc>,
}

/// Fields of an FAQ entry.
#[derive(Debug, Clone, Deserialize)]
pub struct NewFaq {
    /// Question.
    pub question: String,
    /// Answer.
    pub answer: String,
    /// Category label.
    pub category: String,
}

/// List definition: filter and sort `question`, `answer`, `category`; sort `created_at`,
/// `modified_at`; bare search over question and answer.
pub static LIST: Spec = Spec {
    unit: "faq",
    select: "f.*",
    from: "shop.faq f",
    shop_column: None,
    id: "f.id",
    columns: &[
        text_col!("question", "f.question"),
        text_col!("answer", "f.answer"),
        text_col!("category", "f.category"),
        sort_col!("created_at", "f.created_at"),
        sort_col!("modified_at", "f.modified_at"),
    ],
    search: &["f.question", "f.answer"],
};

/// Creates an entry; a question asked before is [`Error::Conflict`] `uq_faq_question`.
#[tracing::instrument(skip_all)]
pub async fn create(exec: impl PgExecutor<'_>, new: &NewFaq) -> Result<Faq> {
    Ok(sqlx::query_as!(
        Faq,
        "INSERT INTO shop.faq (question, answer, category) VALUES ($1, $2, $3) RETURNING *",
        new.question,
        new.answer,
        new.category
    )
    .fetch_one(exec)
    .await?)
}

/// Fetches an entry.
#[tracing::instrument(skip_all, fields(%id))]
pub async fn get(exec: impl PgExecutor<'_>, id: Uuid) -> Result<Faq> {
    sqlx::query_as!(Faq, "SELECT * FROM shop.faq WHERE id = $1", id)
        .fetch_optional(exec)
        .await?
        .ok_or(Error::NotFound)
}

/// Replaces an entry (`modified_at` set by the database).
#[tracing::instrument(skip_all, fields(%id))]
pub async fn update(exec: impl PgExecutor<'_>, id: Uuid, new: &NewFaq) -> Result<Faq> {
    sqlx::query_as!(
        Faq,
        "UPDATE shop.faq SET question = $2, answer = $3, category = $4 WHERE id = $1 RETURNING *",
        id,
        new.question,
        new.answer,
        new.category
    )
    .fetch_optional(exec)
    .await?
    .ok_or(Error::NotFound)
}

/// Deletes an entry.
#[tracing::instrument(skip_all, fields(%id))]
pub async fn delete(exec: impl PgExecutor<'_>, id: Uuid) -> Result<()> {
    let done = sqlx::query!("DELETE FROM shop.faq WHERE id = $1", id)
        .execute(exec)
        .await?;
    super::one_row(done.rows_affected())
}

/// Lists entries.
#[tracing::instrument(skip_all)]
pub async fn list(conn: &mut PgConnection, params: &ListParams) -> Result<Page<Faq>> {
    list::fetch(conn, &LIST, None, params).await
}
