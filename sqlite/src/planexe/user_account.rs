//! `user_account` on SQLite: users as the Python services create them, and the balance.

use rust_decimal::Decimal;
use shared_db::planexe::clean_opt;
use shared_db::{Error, Result};
use sqlx::SqliteConnection;
use uuid::Uuid;

use super::{credits, hex};
use crate::error::from_sqlx;

/// Create a user with a fresh id, a zero balance and the Python defaults (not admin, free plan
/// unused), as the frontend's sign-up does; `email` cut to 256 characters.
pub async fn create(conn: &mut SqliteConnection, email: Option<&str>) -> Result<Uuid> {
    let id = Uuid::new_v4();
    let email = clean_opt(email, 256);
    sqlx::query!(
        r#"INSERT INTO user_account (id, created_at, updated_at, email, is_admin, free_plan_used,
                                     credits_balance)
           VALUES (?1, strftime('%Y-%m-%d %H:%M:%f000', 'now'),
                   strftime('%Y-%m-%d %H:%M:%f000', 'now'), ?2, 0, 0, 0)"#,
        hex(id),
        email,
    )
    .execute(conn)
    .await
    .map_err(from_sqlx)?;
    Ok(id)
}

/// The user's balance, exact. [`Error::NotFound`] without the user.
pub async fn balance(conn: &mut SqliteConnection, id: Uuid) -> Result<Decimal> {
    let text = sqlx::query_scalar!(
        r#"SELECT CAST(credits_balance AS TEXT) AS "b!: String" FROM user_account WHERE id = ?1"#,
        hex(id),
    )
    .fetch_optional(conn)
    .await
    .map_err(from_sqlx)?
    .ok_or(Error::NotFound)?;
    credits(&text)
}
