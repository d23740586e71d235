//! `shop.faq`: frequently asked questions (global, not per shop). Questions are unique.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::input;
use super::list::{self, ListPage, ListParams, Spec, sort_col, text_col};
use crate::{Error, Result};

/// A row of `shop.faq`.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Faq {
    /// Primary key.
    pub id: Uuid,
    /// The question, unique.
    pub question: String,
    /// The answer shown under it.
    pub answer: String,
    /// Heading the entry is grouped under.
    pub category: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change (set by a trigger).
    pub modified_at: DateTime<Utc>,
}

/// Everything an FAQ entry's create and update write; none may be blank. Question and answer
/// hold at most 255 characters, the category 100.
#[derive(Debug, Clone, Deserialize)]
pub struct FaqFields {
    /// The question.
    pub question: String,
    /// The answer.
    pub answer: String,
    /// Heading to group under.
    pub category: String,
}

impl FaqFields {
    fn check(&self) -> Result<()> {
        input::name("question", &self.question, 255)?;
        input::name("answer", &self.answer, 255)?;
        input::name("category", &self.category, 100)
    }
}

/// List definition: filter and sort `question`, `answer`, `category`; sort `created_at`,
/// `modified_at`; bare search over question and answer.
pub static LIST: Spec = Spec {
    unit: "faq",
    select: "f.id, f.question, f.answer, f.category, f.created_at, f.modified_at",
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
pub async fn create(exec: impl PgExecutor<'_>, new: &FaqFields) -> Result<Faq> {
    new.check()?;
    Ok(sqlx::query_as!(
        Faq,
        "INSERT INTO shop.faq (question, answer, category) VALUES ($1, $2, $3) RETURNING id, question, answer, category, created_at, modified_at",
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
    sqlx::query_as!(Faq, "SELECT id, question, answer, category, created_at, modified_at FROM shop.faq WHERE id = $1", id)
        .fetch_optional(exec)
        .await?
        .ok_or(Error::NotFound)
}

/// Replaces an entry (`modified_at` set by the database).
#[tracing::instrument(skip_all, fields(%id))]
pub async fn update(exec: impl PgExecutor<'_>, id: Uuid, new: &FaqFields) -> Result<Faq> {
    new.check()?;
    sqlx::query_as!(
        Faq,
        "UPDATE shop.faq SET question = $2, answer = $3, category = $4 WHERE id = $1 RETURNING id, question, answer, category, created_at, modified_at",
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
pub async fn list(conn: &mut PgConnection, params: &ListParams) -> Result<ListPage<Faq>> {
    list::fetch::<Faq, _>(conn, &LIST, None, params).await
}
