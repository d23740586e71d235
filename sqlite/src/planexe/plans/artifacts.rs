//! The heavy columns: the report HTML. They are never part of
//! [`Plan`](shared_db::planexe::plans::Plan); like SQLAlchemy `deferred()` columns they are read
//! and written only here. Writes nothing outside `plans`.

use shared_db::planexe::clean_text;
use shared_db::planexe::plans::Attempt;
use shared_db::{Error, Result};
use sqlx::SqliteConnection;
use uuid::Uuid;

use super::ownership;
use crate::error::from_sqlx;
use crate::planexe::hex;
use crate::tx::transaction;

/// Store the run's report (a heavy, deferred column). [`Error::Superseded`], nothing written,
/// when `attempt` no longer owns the run; [`Error::NotFound`] without the plan.
pub async fn store_report_html(
    conn: &mut SqliteConnection,
    attempt: Attempt,
    html: &str,
) -> Result<()> {
    let html = clean_text(html, usize::MAX);
    transaction(conn, async |tx| {
        let done = sqlx::query!(
            "UPDATE plans SET generated_report_html = ?3 WHERE id = ?1 AND run_attempt = ?2",
            hex(attempt.plan_id),
            hex(attempt.token),
            html,
        )
        .execute(&mut *tx)
        .await
        .map_err(from_sqlx)?
        .rows_affected();
        if done == 0 {
            ownership(tx, attempt).await?;
        }
        Ok(())
    })
    .await
}

/// The report HTML (`None` if none is stored). [`Error::NotFound`] without the plan.
pub async fn fetch_report_html(conn: &mut SqliteConnection, id: Uuid) -> Result<Option<String>> {
    sqlx::query_scalar!(
        r#"SELECT generated_report_html AS "html?" FROM plans WHERE id = ?1"#,
        hex(id)
    )
    .fetch_optional(conn)
    .await
    .map_err(from_sqlx)?
    .ok_or(Error::NotFound)
}
