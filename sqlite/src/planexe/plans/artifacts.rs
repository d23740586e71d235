//! The three heavy columns: report HTML, run zip snapshot (a BLOB, up to ~40 MB) and activity
//! log. They are never part of [`Plan`](shared_db::planexe::plans::Plan); like SQLAlchemy
//! `deferred()` columns they are read and written only here. Every write names its [`Attempt`]
//! and is [`Error::Superseded`], writing nothing, once the attempt no longer owns the run.
//! Writes nothing outside `plans`.

use shared_db::planexe::plans::{ARTIFACT_LAYOUT_VERSION, Artifacts, Attempt, ZIP_CHUNK_BYTES};
use shared_db::planexe::{clean_text, json_text};
use shared_db::{Error, Result};
use sqlx::Connection;
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

/// Store a run's artifacts, as [`shared_db::planexe::plans::store_artifacts`]: the report (kept
/// when [`Artifacts::report_html`] is `None`), the zip snapshot, the activity log and its size
/// (each cleared when `None`), the overview (SQL NULL when `None`) and
/// `run_artifact_layout_version = 2`, in one statement. [`Error::Superseded`], nothing written,
/// when `attempt` no longer owns the run; [`Error::NotFound`] without the plan.
#[tracing::instrument(target = "shared_db_sqlite::planexe::plans", skip_all)]
pub async fn store_artifacts(
    conn: &mut SqliteConnection,
    attempt: Attempt,
    artifacts: &Artifacts<'_>,
) -> Result<()> {
    let report = artifacts.report_html.map(|s| clean_text(s, usize::MAX));
    let track = artifacts
        .track_activity_jsonl
        .map(|s| clean_text(s, usize::MAX));
    let overview = json_text(artifacts.activity_overview);
    transaction(conn, async |tx| {
        let done = sqlx::query!(
            r#"UPDATE plans
                  SET generated_report_html = coalesce(?3, generated_report_html),
                      run_zip_snapshot = ?4, run_track_activity_jsonl = ?5,
                      run_track_activity_bytes = ?6, run_activity_overview_json = ?7,
                      run_artifact_layout_version = ?8
               WHERE id = ?1 AND run_attempt = ?2"#,
            hex(attempt.plan_id),
            hex(attempt.token),
            report,
            artifacts.zip_snapshot,
            track,
            artifacts.track_activity_bytes,
            overview,
            ARTIFACT_LAYOUT_VERSION,
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

/// Store the periodic zip snapshot, as [`shared_db::planexe::plans::store_zip_snapshot`].
/// [`Error::Superseded`], nothing written, when `attempt` no longer owns the run;
/// [`Error::NotFound`] without the plan.
///
/// There is no chunked store on SQLite: PostgreSQL's `store_zip_snapshot_chunked` builds the
/// value in a server-side large object, and SQLite's SQL has no positional write into a BLOB
/// (`||` makes TEXT), so the zip goes in one bound value, as the Python services write it.
#[tracing::instrument(target = "shared_db_sqlite::planexe::plans", skip_all)]
pub async fn store_zip_snapshot(
    conn: &mut SqliteConnection,
    attempt: Attempt,
    zip: &[u8],
) -> Result<()> {
    transaction(conn, async |tx| {
        let done = sqlx::query!(
            "UPDATE plans SET run_zip_snapshot = ?3 WHERE id = ?1 AND run_attempt = ?2",
            hex(attempt.plan_id),
            hex(attempt.token),
            zip,
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

/// The run zip snapshot, byte for byte (`None` if there is none). [`Error::NotFound`] without the
/// plan.
#[tracing::instrument(target = "shared_db_sqlite::planexe::plans", skip_all)]
pub async fn fetch_zip_snapshot(conn: &mut SqliteConnection, id: Uuid) -> Result<Option<Vec<u8>>> {
    sqlx::query_scalar!(
        r#"SELECT run_zip_snapshot AS "zip?: Vec<u8>" FROM plans WHERE id = ?1"#,
        hex(id)
    )
    .fetch_optional(conn)
    .await
    .map_err(from_sqlx)?
    .ok_or(Error::NotFound)
}

/// [`fetch_zip_snapshot`] in [`ZIP_CHUNK_BYTES`] slices (`substr` on a BLOB counts bytes) into a
/// buffer of the snapshot's size, so the process holds it about once plus one slice, as
/// [`shared_db::planexe::plans::fetch_zip_snapshot_chunked`]. The slices are read in one read
/// transaction (a deferred `BEGIN`: one WAL snapshot, writers not blocked), so they always belong
/// to one snapshot. `None` if there is none; [`Error::NotFound`] without the plan.
#[tracing::instrument(target = "shared_db_sqlite::planexe::plans", skip_all)]
pub async fn fetch_zip_snapshot_chunked(
    conn: &mut SqliteConnection,
    id: Uuid,
) -> Result<Option<Vec<u8>>> {
    let id = hex(id);
    let mut tx = conn.begin().await.map_err(from_sqlx)?;
    let len = sqlx::query_scalar!(
        r#"SELECT length(CAST(run_zip_snapshot AS BLOB)) AS "len?: i64" FROM plans WHERE id = ?1"#,
        id
    )
    .fetch_optional(&mut *tx)
    .await
    .map_err(from_sqlx)?
    .ok_or(Error::NotFound)?;
    let Some(len) = len else {
        tx.rollback().await.map_err(from_sqlx)?;
        return Ok(None);
    };
    let mut zip = Vec::with_capacity(usize::try_from(len).unwrap_or_default());
    let mut from: i64 = 1;
    while from <= len {
        let slice = sqlx::query_scalar!(
            r#"SELECT substr(CAST(run_zip_snapshot AS BLOB), ?2, ?3) AS "slice!: Vec<u8>"
               FROM plans WHERE id = ?1"#,
            id,
            from,
            ZIP_CHUNK_BYTES,
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        zip.extend_from_slice(&slice);
        from += i64::from(ZIP_CHUNK_BYTES);
    }
    tx.rollback().await.map_err(from_sqlx)?;
    Ok(Some(zip))
}

/// The activity log (`None` if there is none). [`Error::NotFound`] without the plan.
#[tracing::instrument(target = "shared_db_sqlite::planexe::plans", skip_all)]
pub async fn fetch_track_activity_jsonl(
    conn: &mut SqliteConnection,
    id: Uuid,
) -> Result<Option<String>> {
    sqlx::query_scalar!(
        r#"SELECT run_track_activity_jsonl AS "jsonl?" FROM plans WHERE id = ?1"#,
        hex(id)
    )
    .fetch_optional(conn)
    .await
    .map_err(from_sqlx)?
    .ok_or(Error::NotFound)
}
