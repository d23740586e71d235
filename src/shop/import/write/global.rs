//! Global rows besides users and licences: roles and their members, the FAQ and the
//! early-access sign-ups (no shop; written in the global unit's transaction).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{Insert, col};
use crate::Result;

pub(crate) struct Role {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
}

impl Insert for Role {
    async fn insert(conn: &mut PgConnection, _: Option<Uuid>, rows: &[Self]) -> Result<u64> {
        let r = sqlx::query!(
            "INSERT INTO shop.roles (id, name, description)
             SELECT r.id, r.name, r.description
             FROM UNNEST($1::uuid[], $2::text[], $3::text[]) AS r(id, name, description)
             ON CONFLICT (id) DO NOTHING",
            &col(rows, |r| r.id),
            &col(rows, |r| r.name.clone()),
            &col(rows, |r| r.description.clone()) as &[Option<String>],
        )
        .execute(conn)
        .await?;
        Ok(r.rows_affected())
    }
}

pub(crate) struct RoleUser {
    pub id: Uuid,
    pub user_id: Uuid,
    pub role_id: Uuid,
}

impl Insert for RoleUser {
    async fn insert(conn: &mut PgConnection, _: Option<Uuid>, rows: &[Self]) -> Result<u64> {
        let r = sqlx::query!(
            "INSERT INTO shop.roles_users (id, user_id, role_id)
             SELECT l.id, l.user_id, l.role_id
             FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[]) AS l(id, user_id, role_id)
             ON CONFLICT (id) DO NOTHING",
            &col(rows, |r| r.id),
            &col(rows, |r| r.user_id),
            &col(rows, |r| r.role_id),
        )
        .execute(conn)
        .await?;
        Ok(r.rows_affected())
    }
}

pub(crate) struct Faq {
    pub id: Uuid,
    pub question: String,
    pub answer: String,
    pub category: String,
    pub created_at: DateTime<Utc>,
    pub modified_at: DateTime<Utc>,
}

impl Insert for Faq {
    async fn insert(conn: &mut PgConnection, _: Option<Uuid>, rows: &[Self]) -> Result<u64> {
        let r = sqlx::query!(
            "INSERT INTO shop.faq (id, question, answer, category, created_at, modified_at)
             SELECT f.id, f.question, f.answer, f.category, f.created_at, f.modified_at
             FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
                         $6::timestamptz[])
                  AS f(id, question, answer, category, created_at, modified_at)
             ON CONFLICT (id) DO NOTHING",
            &col(rows, |r| r.id),
            &col(rows, |r| r.question.clone()),
            &col(rows, |r| r.answer.clone()),
            &col(rows, |r| r.category.clone()),
            &col(rows, |r| r.created_at),
            &col(rows, |r| r.modified_at),
        )
        .execute(conn)
        .await?;
        Ok(r.rows_affected())
    }
}

pub(crate) struct EarlyAccess {
    pub id: Uuid,
    pub email: String,
    pub created_at: DateTime<Utc>,
}

impl Insert for EarlyAccess {
    async fn insert(conn: &mut PgConnection, _: Option<Uuid>, rows: &[Self]) -> Result<u64> {
        let r = sqlx::query!(
            "INSERT INTO shop.early_access (id, email, created_at)
             SELECT e.id, e.email, e.created_at
             FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[]) AS e(id, email, created_at)
             ON CONFLICT (id) DO NOTHING",
            &col(rows, |r| r.id),
            &col(rows, |r| r.email.clone()),
            &col(rows, |r| r.created_at),
        )
        .execute(conn)
        .await?;
        Ok(r.rows_affected())
    }
}
