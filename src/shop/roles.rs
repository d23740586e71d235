//! `shop.roles` and `shop.roles_users`: roles and who holds them. Holding the role named
//! `admin` makes a user a superuser.

use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::input;
use super::list::{self, ListPage, ListParams, Spec, text_col};
use crate::{Error, Result};

/// Name of the superuser role.
pub const ADMIN: &str = "admin";

/// A row of `shop.roles`.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Role {
    /// Primary key.
    pub id: Uuid,
    /// Unique name; [`ADMIN`] makes its holders superusers.
    pub name: String,
    /// What holding the role allows, for the admin UI.
    pub description: Option<String>,
}

/// A row of `shop.roles_users`.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct RoleUser {
    /// Primary key.
    pub id: Uuid,
    /// The user holding the role.
    pub user_id: Uuid,
    /// The role held.
    pub role_id: Uuid,
}

/// List definition: filter and sort `name`, `description`; bare search over both.
pub static LIST: Spec = Spec {
    unit: "roles",
    select: "r.id, r.name, r.description",
    from: "shop.roles r",
    shop_column: None,
    id: "r.id",
    columns: &[
        text_col!("name", "r.name"),
        text_col!("description", "r.description"),
    ],
    search: &["r.name", "r.description"],
};

fn check(name: &str, description: Option<&str>) -> Result<()> {
    input::name("name", name, 80)?;
    input::opt_text("description", description, 255)
}

/// Creates a role; a taken name is [`Error::Conflict`] (`uq_roles_name`).
#[tracing::instrument(skip_all)]
pub async fn create(
    exec: impl PgExecutor<'_>,
    name: &str,
    description: Option<&str>,
) -> Result<Role> {
    check(name, description)?;
    Ok(sqlx::query_as!(
        Role,
        "INSERT INTO shop.roles (name, description) VALUES ($1, $2) RETURNING id, name, description",
        name,
        description
    )
    .fetch_one(exec)
    .await?)
}

/// Fetches a role.
#[tracing::instrument(skip_all, fields(%id))]
pub async fn get(exec: impl PgExecutor<'_>, id: Uuid) -> Result<Role> {
    sqlx::query_as!(
        Role,
        "SELECT id, name, description FROM shop.roles WHERE id = $1",
        id
    )
    .fetch_optional(exec)
    .await?
    .ok_or(Error::NotFound)
}

/// Fetches a role by name.
#[tracing::instrument(skip_all)]
pub async fn get_by_name(exec: impl PgExecutor<'_>, name: &str) -> Result<Role> {
    input::text("name", name, 80)?;
    sqlx::query_as!(
        Role,
        "SELECT id, name, description FROM shop.roles WHERE name = $1",
        name
    )
    .fetch_optional(exec)
    .await?
    .ok_or(Error::NotFound)
}

/// Renames / re-describes a role.
#[tracing::instrument(skip_all, fields(%id))]
pub async fn update(
    exec: impl PgExecutor<'_>,
    id: Uuid,
    name: &str,
    description: Option<&str>,
) -> Result<Role> {
    check(name, description)?;
    sqlx::query_as!(
        Role,
        "UPDATE shop.roles SET name = $2, description = $3 WHERE id = $1 RETURNING id, name, description",
        id,
        name,
        description
    )
    .fetch_optional(exec)
    .await?
    .ok_or(Error::NotFound)
}

/// Deletes a role; a role still held by a user is [`Error::Conflict`]
/// (`fk_roles_users_role_id_roles`).
#[tracing::instrument(skip_all, fields(%id))]
pub async fn delete(exec: impl PgExecutor<'_>, id: Uuid) -> Result<()> {
    let done = sqlx::query!("DELETE FROM shop.roles WHERE id = $1", id)
        .execute(exec)
        .await
        .map_err(super::still_referenced)?;
    super::one_row(done.rows_affected())
}

/// Lists roles.
#[tracing::instrument(skip_all)]
pub async fn list(conn: &mut PgConnection, params: &ListParams) -> Result<ListPage<Role>> {
    list::fetch::<Role, _>(conn, &LIST, None, params).await
}

/// Gives a user a role (idempotent). A missing user or role is [`Error::NotFound`].
#[tracing::instrument(skip_all, fields(%user_id, %role_id))]
pub async fn grant(exec: impl PgExecutor<'_>, user_id: Uuid, role_id: Uuid) -> Result<RoleUser> {
    sqlx::query_as!(
        RoleUser,
        r#"WITH ins AS (
               INSERT INTO shop.roles_users (user_id, role_id) VALUES ($1, $2)
               ON CONFLICT (user_id, role_id) DO NOTHING
               RETURNING id, user_id, role_id)
           SELECT id AS "id!", user_id AS "user_id!", role_id AS "role_id!" FROM ins
           UNION ALL
           SELECT id, user_id, role_id FROM shop.roles_users WHERE user_id = $1 AND role_id = $2"#,
        user_id,
        role_id
    )
    .fetch_one(exec)
    .await
    .map_err(|e| match Error::from(e) {
        Error::ForeignKey { .. } => Error::NotFound,
        e => e,
    })
}

/// Takes a role away; [`Error::NotFound`] if the user did not hold it.
#[tracing::instrument(skip_all, fields(%user_id, %role_id))]
pub async fn revoke(exec: impl PgExecutor<'_>, user_id: Uuid, role_id: Uuid) -> Result<()> {
    let done = sqlx::query!(
        "DELETE FROM shop.roles_users WHERE user_id = $1 AND role_id = $2",
        user_id,
        role_id
    )
    .execute(exec)
    .await?;
    super::one_row(done.rows_affected())
}

/// The roles a user holds, by name.
#[tracing::instrument(skip_all, fields(%user_id))]
pub async fn of_user(exec: impl PgExecutor<'_>, user_id: Uuid) -> Result<Vec<Role>> {
    Ok(sqlx::query_as!(
        Role,
        r#"SELECT r.id, r.name, r.description
           FROM shop.roles r JOIN shop.roles_users ru ON ru.role_id = r.id
           WHERE ru.user_id = $1
           ORDER BY r.name"#,
        user_id
    )
    .fetch_all(exec)
    .await?)
}

/// Whether the user holds the `admin` role.
#[tracing::instrument(skip_all, fields(%user_id))]
pub async fn is_admin(exec: impl PgExecutor<'_>, user_id: Uuid) -> Result<bool> {
    Ok(sqlx::query_scalar!(
        r#"SELECT EXISTS (
               SELECT 1 FROM shop.roles_users ru JOIN shop.roles r ON r.id = ru.role_id
               WHERE ru.user_id = $1 AND r.name = $2) AS "admin!""#,
        user_id,
        ADMIN
    )
    .fetch_one(exec)
    .await?)
}
