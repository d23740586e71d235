//! The three heavy columns: report HTML, run zip snapshot (up to ~40 MB) and activity log. They are
//! never part of [`Plan`](super::Plan); like SQLAlchemy `deferred()` columns they are read and
//! written only here. Writes nothing outside `plans`.

use serde_json::Value;
use sqlx::PgExecutor;
use uuid::Uuid;

use super::Attempt;
use crate::error::{Error, Result};
use crate::planexe::{clean_text, json_text};

/// Artifacts written when a run ends ([`store_artifacts`]).
#[derive(Debug, Clone, Default)]
pub struct Artifacts<'a> {
    /// The report; `None` keeps the stored one (the worker writes it only if it exists).
    pub report_html: Option<&'a str>,
    /// The run directory as a zip; `None` clears the stored snapshot.
    pub zip_snapshot: Option<&'a [u8]>,
    /// The activity log, one JSON object per line; `None` clears the stored log.
    pub track_activity_jsonl: Option<&'a str>,
    /// Bytes of the activity log.
    pub track_activity_bytes: Option<i32>,
    /// JSON object including `total_cost` (credits); `None` writes SQL NULL.
    pub activity_overview: Option<&'a Value>,
}

/// The artifact layout version written by [`store_artifacts`] (as the Python worker).
pub const ARTIFACT_LAYOUT_VERSION: i32 = 2;

/// Store a run's artifacts in one statement (one round trip); sets
/// `run_artifact_layout_version = 2`. [`Error::Superseded`] (nothing written) when `attempt` no
/// longer owns the run; [`Error::NotFound`] if the plan does not exist.
#[tracing::instrument(target = "shared_db::planexe::plans", skip_all, fields(id = %attempt.plan_id))]
pub async fn store_artifacts(
    ex: impl PgExecutor<'_>,
    attempt: Attempt,
    artifacts: &Artifacts<'_>,
) -> Result<()> {
    let row = sqlx::query!(
        r#"WITH upd AS (
               UPDATE plans
                  SET generated_report_html = coalesce($2, generated_report_html),
                      run_zip_snapshot = $3, run_track_activity_jsonl = $4,
                      run_track_activity_bytes = $5, run_activity_overview_json = $6::text::json,
                      run_artifact_layout_version = $7
               WHERE id = $1 AND run_attempt = $8
               RETURNING id)
           SELECT EXISTS (SELECT 1 FROM upd) AS "stored!",
                  EXISTS (SELECT 1 FROM plans WHERE id = $1) AS "exists!""#,
        attempt.plan_id,
        artifacts.report_html.map(|s| clean_text(s, usize::MAX)),
        artifacts.zip_snapshot,
        artifacts
            .track_activity_jsonl
            .map(|s| clean_text(s, usize::MAX)),
        artifacts.track_activity_bytes,
        json_text(artifacts.activity_overview),
        ARTIFACT_LAYOUT_VERSION,
        attempt.token,
    )
    .fetch_one(ex)
    .await?;
    stored(attempt, row.stored, row.exists)
}

fn stored(attempt: Attempt, stored: bool, exists: bool) -> Result<()> {
    match (stored, exists) {
        (true, _) => Ok(()),
        (false, true) => Err(attempt.superseded()),
        (false, false) => Err(Error::NotFound),
    }
}

/// Store the periodic zip snapshot (every few steps, so the run's files can be listed while it
/// runs). [`Error::Superseded`] (nothing written) when `attempt` no longer owns the run. One round
/// trip.
#[tracing::instrument(target = "shared_db::planexe::plans", skip_all, fields(id = %attempt.plan_id))]
pub async fn store_zip_snapshot(
    ex: impl PgExecutor<'_>,
    attempt: Attempt,
    zip: &[u8],
) -> Result<()> {
    let row = sqlx::query!(
        r#"WITH upd AS (
               UPDATE plans SET run_zip_snapshot = $2 WHERE id = $1 AND run_attempt = $3
               RETURNING id)
           SELECT EXISTS (SELECT 1 FROM upd) AS "stored!",
                  EXISTS (SELECT 1 FROM plans WHERE id = $1) AS "exists!""#,
        attempt.plan_id,
        zip,
        attempt.token,
    )
    .fetch_one(ex)
    .await?;
    stored(attempt, row.stored, row.exists)
}

/// The report HTML (`None` if there is none). [`Error::NotFound`] if the plan does not exist.
/// One round trip.
#[tracing::instrument(target = "shared_db::planexe::plans", skip_all, fields(%id))]
pub async fn fetch_report_html(ex: impl PgExecutor<'_>, id: Uuid) -> Result<Option<String>> {
    sqlx::query_scalar!("SELECT generated_report_html FROM plans WHERE id = $1", id)
        .fetch_optional(ex)
        .await?
        .ok_or(Error::NotFound)
}

/// The run zip snapshot (`None` if there is none). [`Error::NotFound`] if the plan does not exist.
/// One round trip.
#[tracing::instrument(target = "shared_db::planexe::plans", skip_all, fields(%id))]
pub async fn fetch_zip_snapshot(ex: impl PgExecutor<'_>, id: Uuid) -> Result<Option<Vec<u8>>> {
    sqlx::query_scalar!("SELECT run_zip_snapshot FROM plans WHERE id = $1", id)
        .fetch_optional(ex)
        .await?
        .ok_or(Error::NotFound)
}

/// [`store_zip_snapshot`] for big snapshots: sends the zip in [`ZIP_CHUNK_BYTES`] slices into a
/// temporary large object, moves it into the column with one `UPDATE` and unlinks the large
/// object, all in one transaction (a savepoint inside the caller's), so readers see the old
/// snapshot or the new one, never a part. Beyond the caller's buffer the process holds about one
/// slice (≈0.3× of a 40 MB zip) instead of sqlx's argument and write buffers around the whole
/// value (≈3×, see BENCHMARKS.md); the price is 4 + ⌈size / 4 MiB⌉ statements and a second copy
/// on the server (`pg_largeobject`, then the column). [`Error::NotFound`] if the plan does not
/// exist and [`Error::Superseded`] when `attempt` no longer owns the run (nothing is written).
#[tracing::instrument(target = "shared_db::planexe::plans", skip_all, fields(id = %attempt.plan_id, bytes = zip.len()))]
pub async fn store_zip_snapshot_chunked(
    conn: &mut sqlx::PgConnection,
    attempt: Attempt,
    zip: &[u8],
) -> Result<()> {
    let id = attempt.plan_id;
    crate::tx::transaction(conn, async |tx| {
        let owner =
            sqlx::query_scalar!("SELECT run_attempt FROM plans WHERE id = $1 FOR UPDATE", id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(Error::NotFound)?;
        if owner != Some(attempt.token) {
            return Err(attempt.superseded());
        }
        let lo = sqlx::query_scalar!(r#"SELECT lo_create(0) AS "oid!""#)
            .fetch_one(&mut *tx)
            .await?;
        for (i, slice) in zip.chunks(ZIP_CHUNK_BYTES as usize).enumerate() {
            let offset = i as i64 * i64::from(ZIP_CHUNK_BYTES);
            sqlx::query_scalar!(
                r#"SELECT true AS "put!" FROM (SELECT lo_put($1, $2, $3)) AS p"#,
                lo,
                offset,
                slice
            )
            .fetch_one(&mut *tx)
            .await?;
        }
        sqlx::query!(
            "UPDATE plans SET run_zip_snapshot = lo_get($2) WHERE id = $1",
            id,
            lo
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query_scalar!(r#"SELECT lo_unlink($1) AS "unlinked!""#, lo)
            .fetch_one(&mut *tx)
            .await?;
        Ok(())
    })
    .await
}

/// Slice size of [`fetch_zip_snapshot_chunked`] (4 MiB).
pub const ZIP_CHUNK_BYTES: i32 = 4 * 1024 * 1024;

/// [`fetch_zip_snapshot`] for big snapshots: reads the zip in [`ZIP_CHUNK_BYTES`] slices into a
/// buffer of its final size, so the process holds it about once plus one slice (≈1.2× its size)
/// instead of once in sqlx's receive buffer and once more in the returned `Vec` (≈3.5× for 40 MB,
/// see BENCHMARKS.md). The row is locked `FOR SHARE` first, in a transaction (a savepoint inside
/// the caller's), so a concurrent store waits and the slices always belong to one snapshot.
/// `None` if there is no snapshot; [`Error::NotFound`] if the plan does not exist.
/// 1 + ⌈size / 4 MiB⌉ statements, plus BEGIN/COMMIT.
#[tracing::instrument(target = "shared_db::planexe::plans", skip_all, fields(%id))]
pub async fn fetch_zip_snapshot_chunked(
    conn: &mut sqlx::PgConnection,
    id: Uuid,
) -> Result<Option<Vec<u8>>> {
    crate::tx::transaction(conn, async |tx| {
        let len = sqlx::query_scalar!(
            "SELECT octet_length(run_zip_snapshot) FROM plans WHERE id = $1 FOR SHARE",
            id
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(Error::NotFound)?;
        let Some(len) = len else {
            return Ok(None);
        };
        let mut zip = Vec::with_capacity(len as usize);
        let mut from = 1;
        while from <= len {
            let slice = sqlx::query_scalar!(
                r#"SELECT substring(run_zip_snapshot FROM $2 FOR $3) AS "slice!"
                   FROM plans WHERE id = $1"#,
                id,
                from,
                ZIP_CHUNK_BYTES,
            )
            .fetch_one(&mut *tx)
            .await?;
            zip.extend_from_slice(&slice);
            from += ZIP_CHUNK_BYTES;
        }
        Ok(Some(zip))
    })
    .await
}

/// The activity log (`None` if there is none). [`Error::NotFound`] if the plan does not exist.
/// One round trip.
#[tracing::instrument(target = "shared_db::planexe::plans", skip_all, fields(%id))]
pub async fn fetch_track_activity_jsonl(
    ex: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<String>> {
    sqlx::query_scalar!(
        "SELECT run_track_activity_jsonl FROM plans WHERE id = $1",
        id
    )
    .fetch_optional(ex)
    .await?
    .ok_or(Error::NotFound)
}
