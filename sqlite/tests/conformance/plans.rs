//! The rest of the plan operations, written once and run on both backends: the state machine after
//! the claim (stop, fail, retry, resume), attempt ownership of every worker write, batch claims and
//! completions, duplicate lookup, reads and keyset pages, the heavy artifact columns, and usage
//! billing per attempt.

use std::collections::HashSet;
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::{Value, json};
use shared_db::Error;
use shared_db::Result;
use shared_db::planexe::credit_history::{FinalBilling, PlanUsage};
use shared_db::planexe::plans::{
    Artifacts, Attempt, Claimed, Completion, Failure, FinishOutcome, NewPlan, PlanListItem,
    PlanStatus, Requeued, StopOutcome,
};
use shared_db::planexe::{Keyset, PageRequest, PlanState};
use uuid::Uuid;

use crate::backend::{Backend, Postgres, Sqlite};

/// The artifacts a story stores (owned, so the trait's futures need not borrow them).
#[derive(Debug, Clone, Default)]
pub struct ArtifactArgs {
    pub report_html: Option<String>,
    pub zip: Option<Vec<u8>>,
    pub jsonl: Option<String>,
    pub bytes: Option<i32>,
    pub overview: Option<Value>,
}

impl ArtifactArgs {
    fn artifacts(&self) -> Artifacts<'_> {
        Artifacts {
            report_html: self.report_html.as_deref(),
            zip_snapshot: self.zip.as_deref(),
            track_activity_jsonl: self.jsonl.as_deref(),
            track_activity_bytes: self.bytes,
            activity_overview: self.overview.as_ref(),
        }
    }
}

fn failure(reason: &str) -> Failure<'_> {
    Failure {
        reason,
        failed_step: None,
        error_message: "the step raised",
        recoverable: true,
    }
}

fn usage(user: Uuid, attempt: Attempt, cost: &str, succeeded: bool) -> PlanUsage {
    PlanUsage {
        user_id: user,
        attempt,
        api_key_id: None,
        cost: cost.parse().unwrap(),
        succeeded,
    }
}

/// The plan operations of these stories, on one database.
pub trait PlansBackend: Backend {
    fn enqueue_with(
        &self,
        prompt: &str,
        user: Option<&str>,
        parameters: Option<Value>,
    ) -> impl Future<Output = Result<Uuid>> + Send;
    fn fail(
        &self,
        attempt: Attempt,
        reason: &str,
    ) -> impl Future<Output = Result<PlanState>> + Send;
    fn stopped(&self, attempt: Attempt) -> impl Future<Output = Result<()>> + Send;
    fn stop(&self, id: Uuid) -> impl Future<Output = Result<StopOutcome>> + Send;
    fn retry(&self, id: Uuid) -> impl Future<Output = Result<Requeued>> + Send;
    fn resume(&self, id: Uuid) -> impl Future<Output = Result<Requeued>> + Send;
    fn claim_batch(
        &self,
        worker: &str,
        n: usize,
    ) -> impl Future<Output = Result<Vec<Claimed>>> + Send;
    fn complete_batch(
        &self,
        runs: Vec<Attempt>,
    ) -> impl Future<Output = Result<Vec<(Uuid, FinishOutcome)>>> + Send;
    fn find_duplicate(
        &self,
        user: &str,
        prompt: &str,
        profile: Option<&str>,
    ) -> impl Future<Output = Result<Option<Uuid>>> + Send;
    fn status_of(&self, id: Uuid) -> impl Future<Output = Result<PlanStatus>> + Send;
    fn list(
        &self,
        user: &str,
        page: PageRequest,
    ) -> impl Future<Output = Result<Vec<PlanListItem>>> + Send;
    fn list_keyset(
        &self,
        user: &str,
        page: Keyset<Uuid>,
    ) -> impl Future<Output = Result<Vec<PlanListItem>>> + Send;
    fn store_artifacts(
        &self,
        attempt: Attempt,
        args: ArtifactArgs,
    ) -> impl Future<Output = Result<()>> + Send;
    fn store_zip(&self, attempt: Attempt, zip: Vec<u8>) -> impl Future<Output = Result<()>> + Send;
    fn zip(&self, id: Uuid) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send;
    fn zip_chunked(&self, id: Uuid) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send;
    fn track_jsonl(&self, id: Uuid) -> impl Future<Output = Result<Option<String>>> + Send;
    fn bill_progress(&self, usage: PlanUsage) -> impl Future<Output = Result<Decimal>> + Send;
    fn bill_final(&self, usage: PlanUsage) -> impl Future<Output = Result<FinalBilling>> + Send;
    fn settle(&self, id: Uuid) -> impl Future<Output = Result<u64>> + Send;
    /// A plan as another writer may leave it: only id, owner and prompt; state, creation time,
    /// stop flag and the rest NULL.
    fn insert_foreign_plan(&self, user: &str) -> impl Future<Output = Uuid> + Send;
}

use shared_db::planexe as pg;

impl PlansBackend for Postgres {
    async fn enqueue_with(
        &self,
        prompt: &str,
        user: Option<&str>,
        parameters: Option<Value>,
    ) -> Result<Uuid> {
        let new = NewPlan {
            prompt,
            user_id: user,
            parameters: parameters.as_ref(),
            ..Default::default()
        };
        Ok(pg::plans::enqueue(self.0.pool(), &new).await?.id)
    }
    async fn fail(&self, attempt: Attempt, reason: &str) -> Result<PlanState> {
        pg::plans::finish_failed(self.0.pool(), attempt, &failure(reason), None).await
    }
    async fn stopped(&self, attempt: Attempt) -> Result<()> {
        pg::plans::finish_stopped(self.0.pool(), attempt, None).await
    }
    async fn stop(&self, id: Uuid) -> Result<StopOutcome> {
        pg::plans::request_stop(self.0.pool(), id).await
    }
    async fn retry(&self, id: Uuid) -> Result<Requeued> {
        pg::plans::retry(self.0.pool(), id).await
    }
    async fn resume(&self, id: Uuid) -> Result<Requeued> {
        pg::plans::resume(self.0.pool(), id).await
    }
    async fn claim_batch(&self, worker: &str, n: usize) -> Result<Vec<Claimed>> {
        pg::plans::claim_next_batch(self.0.pool(), worker, n).await
    }
    async fn complete_batch(&self, runs: Vec<Attempt>) -> Result<Vec<(Uuid, FinishOutcome)>> {
        let runs: Vec<_> = runs
            .into_iter()
            .map(|attempt| Completion {
                attempt,
                event_context: None,
            })
            .collect();
        pg::plans::finish_completed_batch(self.0.pool(), &runs).await
    }
    async fn find_duplicate(
        &self,
        user: &str,
        prompt: &str,
        profile: Option<&str>,
    ) -> Result<Option<Uuid>> {
        let window = Duration::from_secs(600);
        pg::plans::find_duplicate(self.0.pool(), user, prompt, profile, window).await
    }
    async fn status_of(&self, id: Uuid) -> Result<PlanStatus> {
        pg::plans::status(self.0.pool(), id).await
    }
    async fn list(&self, user: &str, page: PageRequest) -> Result<Vec<PlanListItem>> {
        pg::plans::list_by_user(self.0.pool(), user, page).await
    }
    async fn list_keyset(&self, user: &str, page: Keyset<Uuid>) -> Result<Vec<PlanListItem>> {
        pg::plans::list_by_user_keyset(self.0.pool(), user, page).await
    }
    async fn store_artifacts(&self, attempt: Attempt, args: ArtifactArgs) -> Result<()> {
        pg::plans::store_artifacts(self.0.pool(), attempt, &args.artifacts()).await
    }
    async fn store_zip(&self, attempt: Attempt, zip: Vec<u8>) -> Result<()> {
        pg::plans::store_zip_snapshot(self.0.pool(), attempt, &zip).await
    }
    async fn zip(&self, id: Uuid) -> Result<Option<Vec<u8>>> {
        pg::plans::fetch_zip_snapshot(self.0.pool(), id).await
    }
    async fn zip_chunked(&self, id: Uuid) -> Result<Option<Vec<u8>>> {
        let mut c = self.0.db().acquire().await?;
        pg::plans::fetch_zip_snapshot_chunked(&mut c, id).await
    }
    async fn track_jsonl(&self, id: Uuid) -> Result<Option<String>> {
        pg::plans::fetch_track_activity_jsonl(self.0.pool(), id).await
    }
    async fn bill_progress(&self, usage: PlanUsage) -> Result<Decimal> {
        let mut c = self.0.db().acquire().await?;
        pg::credit_history::bill_usage_progress(&mut c, &usage).await
    }
    async fn bill_final(&self, usage: PlanUsage) -> Result<FinalBilling> {
        let mut c = self.0.db().acquire().await?;
        pg::credit_history::bill_usage_final(&mut c, &usage).await
    }
    async fn settle(&self, id: Uuid) -> Result<u64> {
        pg::credit_history::settle_plan_usage(self.0.pool(), id).await
    }
    async fn insert_foreign_plan(&self, user: &str) -> Uuid {
        let id = Uuid::new_v4();
        // A runtime query: this crate's query macros check against the SQLite schema.
        sqlx::query(
            "INSERT INTO plans (id, user_id, prompt) VALUES ($1, $2, 'left by another writer')",
        )
        .bind(id)
        .bind(user)
        .execute(self.0.pool())
        .await
        .unwrap();
        id
    }
}

use shared_db_sqlite::planexe as lite;

impl PlansBackend for Sqlite {
    async fn enqueue_with(
        &self,
        prompt: &str,
        user: Option<&str>,
        parameters: Option<Value>,
    ) -> Result<Uuid> {
        let new = NewPlan {
            prompt,
            user_id: user,
            parameters: parameters.as_ref(),
            ..Default::default()
        };
        let mut c = self.db.acquire().await?;
        Ok(lite::plans::enqueue(&mut c, &new).await?.id)
    }
    async fn fail(&self, attempt: Attempt, reason: &str) -> Result<PlanState> {
        let mut c = self.db.acquire().await?;
        lite::plans::finish_failed(&mut c, attempt, &failure(reason), None).await
    }
    async fn stopped(&self, attempt: Attempt) -> Result<()> {
        let mut c = self.db.acquire().await?;
        lite::plans::finish_stopped(&mut c, attempt, None).await
    }
    async fn stop(&self, id: Uuid) -> Result<StopOutcome> {
        let mut c = self.db.acquire().await?;
        lite::plans::request_stop(&mut c, id).await
    }
    async fn retry(&self, id: Uuid) -> Result<Requeued> {
        let mut c = self.db.acquire().await?;
        lite::plans::retry(&mut c, id).await
    }
    async fn resume(&self, id: Uuid) -> Result<Requeued> {
        let mut c = self.db.acquire().await?;
        lite::plans::resume(&mut c, id).await
    }
    async fn claim_batch(&self, worker: &str, n: usize) -> Result<Vec<Claimed>> {
        let mut c = self.db.acquire().await?;
        lite::plans::claim_next_batch(&mut c, worker, n).await
    }
    async fn complete_batch(&self, runs: Vec<Attempt>) -> Result<Vec<(Uuid, FinishOutcome)>> {
        let runs: Vec<_> = runs
            .into_iter()
            .map(|attempt| Completion {
                attempt,
                event_context: None,
            })
            .collect();
        let mut c = self.db.acquire().await?;
        lite::plans::finish_completed_batch(&mut c, &runs).await
    }
    async fn find_duplicate(
        &self,
        user: &str,
        prompt: &str,
        profile: Option<&str>,
    ) -> Result<Option<Uuid>> {
        let window = Duration::from_secs(600);
        let mut c = self.db.acquire().await?;
        lite::plans::find_duplicate(&mut c, user, prompt, profile, window).await
    }
    async fn status_of(&self, id: Uuid) -> Result<PlanStatus> {
        let mut c = self.db.acquire().await?;
        lite::plans::status(&mut c, id).await
    }
    async fn list(&self, user: &str, page: PageRequest) -> Result<Vec<PlanListItem>> {
        let mut c = self.db.acquire().await?;
        lite::plans::list_by_user(&mut c, user, page).await
    }
    async fn list_keyset(&self, user: &str, page: Keyset<Uuid>) -> Result<Vec<PlanListItem>> {
        let mut c = self.db.acquire().await?;
        lite::plans::list_by_user_keyset(&mut c, user, page).await
    }
    async fn store_artifacts(&self, attempt: Attempt, args: ArtifactArgs) -> Result<()> {
        let mut c = self.db.acquire().await?;
        lite::plans::store_artifacts(&mut c, attempt, &args.artifacts()).await
    }
    async fn store_zip(&self, attempt: Attempt, zip: Vec<u8>) -> Result<()> {
        let mut c = self.db.acquire().await?;
        lite::plans::store_zip_snapshot(&mut c, attempt, &zip).await
    }
    async fn zip(&self, id: Uuid) -> Result<Option<Vec<u8>>> {
        let mut c = self.db.acquire().await?;
        lite::plans::fetch_zip_snapshot(&mut c, id).await
    }
    async fn zip_chunked(&self, id: Uuid) -> Result<Option<Vec<u8>>> {
        let mut c = self.db.acquire().await?;
        lite::plans::fetch_zip_snapshot_chunked(&mut c, id).await
    }
    async fn track_jsonl(&self, id: Uuid) -> Result<Option<String>> {
        let mut c = self.db.acquire().await?;
        lite::plans::fetch_track_activity_jsonl(&mut c, id).await
    }
    async fn bill_progress(&self, usage: PlanUsage) -> Result<Decimal> {
        let mut c = self.db.acquire().await?;
        lite::credit_history::bill_usage_progress(&mut c, &usage).await
    }
    async fn bill_final(&self, usage: PlanUsage) -> Result<FinalBilling> {
        let mut c = self.db.acquire().await?;
        lite::credit_history::bill_usage_final(&mut c, &usage).await
    }
    async fn settle(&self, id: Uuid) -> Result<u64> {
        let mut c = self.db.acquire().await?;
        lite::credit_history::settle_plan_usage(&mut c, id).await
    }
    async fn insert_foreign_plan(&self, user: &str) -> Uuid {
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO plans (id, user_id, prompt) VALUES (?1, ?2, 'left by another writer')",
        )
        .bind(lite::hex(id))
        .bind(user)
        .execute(self.db.pool())
        .await
        .unwrap();
        id
    }
}

conformance!(
    stop_retry_and_resume_follow_one_state_machine,
    a_stale_attempt_cannot_stop_fail_complete_store_or_bill_someone_elses_run,
    batches_claim_each_plan_once_and_finish_only_owned_runs,
    a_recent_twin_is_found_as_a_duplicate,
    keyset_pages_cover_every_plan_once_while_plans_are_inserted,
    artifacts_round_trip_byte_exact_and_stay_deferred,
    usage_billing_charges_each_attempt_once_and_balance_equals_the_ledger,
    rows_another_writer_left_are_read_listed_last_and_refused_by_name,
);

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn refused(err: Error, from: &str, to: &str) {
    assert!(
        matches!(&err, Error::InvalidTransition { from: f, to: t } if f == from && t == to),
        "expected {from} -> {to} refused, got {err:?}"
    );
}

async fn stop_retry_and_resume_follow_one_state_machine<B: PlansBackend>(b: B) {
    let v2 = json!({ "pipeline_version": 2, "model_profile": "fast" });
    let plan = b
        .enqueue_with("state machine", Some("sam"), Some(v2))
        .await
        .unwrap();

    // A pending plan stops at once, and is never claimed; stopping again changes nothing.
    assert_eq!(b.stop(plan).await.unwrap(), StopOutcome::Stopped);
    assert_eq!(b.stop(plan).await.unwrap(), StopOutcome::AlreadyStopped);
    let stopped = b.status_of(plan).await.unwrap();
    assert_eq!(stopped.state, Some(PlanState::Stopped));
    assert!(stopped.stop_requested);
    assert!(b.claim("w").await.unwrap().is_none(), "a stopped plan");
    assert_eq!(b.count_pending().await.unwrap(), 0);

    // Retry puts it back in the queue, stop flag cleared.
    let again = b.retry(plan).await.unwrap();
    assert_eq!(again.from, PlanState::Stopped);
    assert_eq!(again.settled_billing_rows, 0);
    let pending = b.status_of(plan).await.unwrap();
    assert_eq!(pending.state, Some(PlanState::Pending));
    assert!(!pending.stop_requested);

    // Run one fails; failed is not stoppable and not completable.
    let run = b.claim("w").await.unwrap().unwrap();
    assert_eq!(run.plan.id, plan);
    b.store_artifacts(
        run.attempt,
        ArtifactArgs {
            report_html: Some("<p>partial</p>".into()),
            zip: Some(vec![1, 2, 3]),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        b.fail(run.attempt, "generation_error").await.unwrap(),
        PlanState::Failed
    );
    let failed = b.plan(plan).await.unwrap();
    assert_eq!(failed.failure_reason.as_deref(), Some("generation_error"));
    assert_eq!(failed.error_message.as_deref(), Some("the step raised"));
    assert_eq!(failed.recoverable, Some(true));
    refused(b.stop(plan).await.unwrap_err(), "failed", "stopped");
    refused(
        b.complete(run.attempt).await.unwrap_err(),
        "failed",
        "completed",
    );
    refused(
        b.fail(run.attempt, "again").await.unwrap_err(),
        "failed",
        "failed",
    );
    refused(
        b.stopped(run.attempt).await.unwrap_err(),
        "failed",
        "stopped",
    );

    // Resume keeps the artifacts and counts the resumes in the parameters.
    let resumed = b.resume(plan).await.unwrap();
    assert_eq!(resumed.from, PlanState::Failed);
    let plan_row = b.plan(plan).await.unwrap();
    assert_eq!(plan_row.state, Some(PlanState::Pending));
    assert_eq!(plan_row.failure_reason, None);
    assert!(plan_row.has_generated_report_html && plan_row.has_run_zip_snapshot);
    let params = plan_row.parameters.unwrap().into_inner();
    assert_eq!(params["resume"], json!(true));
    assert_eq!(params["resume_count"], json!(1));
    assert_eq!(params["model_profile"], json!("fast"), "other keys kept");

    // Run two is stopped while running: failing it now ends it stopped.
    let run2 = b.claim("w").await.unwrap().unwrap();
    assert_eq!(b.stop(plan).await.unwrap(), StopOutcome::Stopped);
    assert_eq!(
        b.progress(run2.attempt, d("40")).await.unwrap(),
        shared_db::planexe::plans::ProgressAck::Abort {
            state: Some(PlanState::Stopped),
            stop_requested: true,
        }
    );
    assert_eq!(
        b.fail(run2.attempt, "worker_error").await.unwrap(),
        PlanState::Stopped
    );
    b.stopped(run2.attempt).await.unwrap(); // stopped -> stopped is allowed

    // Retry starts from scratch: artifacts and diagnostics gone, back of the queue.
    let again = b.retry(plan).await.unwrap();
    assert_eq!(again.from, PlanState::Stopped);
    let fresh = b.plan(plan).await.unwrap();
    assert!(!fresh.has_generated_report_html && !fresh.has_run_zip_snapshot);
    assert_eq!(fresh.failure_reason, None);
    assert_eq!(fresh.run_activity_overview_json, None);
    assert_eq!(fresh.progress_percentage, Some(Decimal::ZERO));
    assert_eq!(b.zip(plan).await.unwrap(), None);

    // Completed is final: no stop, retry or resume.
    let run3 = b.claim("w").await.unwrap().unwrap();
    b.complete(run3.attempt).await.unwrap();
    refused(b.stop(plan).await.unwrap_err(), "completed", "stopped");
    refused(
        b.retry(plan).await.unwrap_err(),
        "completed",
        "pending (retry)",
    );
    refused(
        b.resume(plan).await.unwrap_err(),
        "completed",
        "pending (resume)",
    );
    refused(
        b.stopped(run3.attempt).await.unwrap_err(),
        "completed",
        "stopped",
    );

    // Resume needs pipeline version 2; a pending plan is neither retried nor resumed.
    let old = b
        .enqueue_with("old pipeline", None, Some(json!({ "pipeline_version": 1 })))
        .await
        .unwrap();
    refused(
        b.retry(old).await.unwrap_err(),
        "pending",
        "pending (retry)",
    );
    refused(
        b.resume(old).await.unwrap_err(),
        "pending",
        "pending (resume)",
    );
    b.stop(old).await.unwrap();
    let err = b.resume(old).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    assert_eq!(
        b.status_of(old).await.unwrap().state,
        Some(PlanState::Stopped)
    );

    // No such plan.
    let nobody = Uuid::new_v4();
    for err in [
        b.stop(nobody).await.unwrap_err(),
        b.retry(nobody).await.unwrap_err(),
        b.resume(nobody).await.unwrap_err(),
        b.status_of(nobody).await.unwrap_err(),
    ] {
        assert!(matches!(err, Error::NotFound), "{err:?}");
    }

    // The story is in the events: stop, retry, claim, fail, resume, ...
    let kinds: Vec<_> = b
        .events(plan)
        .await
        .unwrap()
        .iter()
        .map(|e| (e.event_type, e.message.clone()))
        .collect();
    let messages: Vec<&str> = kinds.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(
        messages,
        [
            "Plan queued",
            "Retry -> Pending",
            "Pending -> Processing",
            "Processing -> Failed",
            "Resume -> Pending",
            "Pending -> Processing",
            "Processing -> Stopped",
            "Processing -> Stopped",
            "Retry -> Pending",
            "Pending -> Processing",
            "Processing -> Completed",
        ]
    );
}

async fn a_stale_attempt_cannot_stop_fail_complete_store_or_bill_someone_elses_run<
    B: PlansBackend,
>(
    b: B,
) {
    let user = b.new_user().await.unwrap();
    b.grant(user, d("10"), None).await.unwrap();
    let plan = b.enqueue("contested", None).await.unwrap();
    let stale = b.claim("slow-worker").await.unwrap().unwrap().attempt;
    // The user stops and retries; another worker takes the new run.
    b.stop(plan).await.unwrap();
    b.retry(plan).await.unwrap();
    let owner = b.claim("fast-worker").await.unwrap().unwrap().attempt;
    assert_ne!(owner, stale);

    let superseded = |err: Error| {
        assert!(
            matches!(err, Error::Superseded { plan_id } if plan_id == plan),
            "{err:?}"
        )
    };
    superseded(b.fail(stale, "worker_error").await.unwrap_err());
    superseded(b.stopped(stale).await.unwrap_err());
    superseded(b.complete(stale).await.unwrap_err());
    superseded(b.progress(stale, d("99")).await.unwrap_err());
    let args = ArtifactArgs {
        report_html: Some("<p>stale</p>".into()),
        zip: Some(vec![0xde, 0xad]),
        jsonl: Some("{}\n".into()),
        ..Default::default()
    };
    superseded(b.store_artifacts(stale, args).await.unwrap_err());
    superseded(b.store_zip(stale, vec![0xbe, 0xef]).await.unwrap_err());
    superseded(
        b.bill_progress(usage(user, stale, "3", false))
            .await
            .unwrap_err(),
    );
    superseded(
        b.bill_final(usage(user, stale, "3", false))
            .await
            .unwrap_err(),
    );
    let batch = b.complete_batch(vec![stale]).await.unwrap();
    assert_eq!(batch, [(plan, FinishOutcome::Superseded)]);

    // Nothing of the stale worker's landed: the owner's run is intact and unbilled.
    let now = b.plan(plan).await.unwrap();
    assert_eq!(now.state, Some(PlanState::Processing));
    assert_eq!(now.failure_reason, None);
    assert!(!now.has_generated_report_html && !now.has_run_zip_snapshot);
    assert!(!now.has_run_track_activity_jsonl);
    assert_eq!(b.ledger(user).await.unwrap(), (1, d("10")));
    assert_eq!(b.balance(user).await.unwrap(), d("10"));

    // The owner finishes its run.
    assert_eq!(
        b.complete_batch(vec![owner]).await.unwrap(),
        [(plan, FinishOutcome::Completed)]
    );
    assert_eq!(
        b.plan(plan).await.unwrap().state,
        Some(PlanState::Completed)
    );
}

async fn batches_claim_each_plan_once_and_finish_only_owned_runs<B: PlansBackend>(b: B) {
    for n in [0, 1001] {
        let err = b.claim_batch("w", n).await.unwrap_err();
        assert!(matches!(err, Error::BatchSize { max: 1000, .. }), "{err:?}");
    }
    let err = b.complete_batch(vec![]).await.unwrap_err();
    assert!(matches!(err, Error::BatchSize { .. }), "{err:?}");

    // Oldest first, each plan with its own attempt.
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(b.enqueue(&format!("batch {i}"), None).await.unwrap());
    }
    let first = b.claim_batch("batcher", 3).await.unwrap();
    let got: Vec<Uuid> = first.iter().map(|c| c.plan.id).collect();
    assert_eq!(got, ids[..3]);
    let tokens: HashSet<Uuid> = first.iter().map(|c| c.attempt.token).collect();
    assert_eq!(tokens.len(), 3, "an attempt per plan");
    assert!(
        first
            .iter()
            .all(|c| c.plan.state == Some(PlanState::Processing))
    );

    // One stopped, one unknown, one duplicate: each answered on its own.
    b.stop(ids[1]).await.unwrap();
    let ghost = Attempt {
        plan_id: Uuid::new_v4(),
        token: Uuid::new_v4(),
    };
    let dup = b
        .complete_batch(vec![first[0].attempt, first[0].attempt])
        .await
        .unwrap_err();
    assert!(matches!(dup, Error::InvalidInput(_)), "{dup:?}");
    let outcomes = b
        .complete_batch(vec![
            first[2].attempt,
            first[1].attempt,
            ghost,
            first[0].attempt,
        ])
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        [
            (ids[2], FinishOutcome::Completed),
            (
                ids[1],
                FinishOutcome::NotProcessing {
                    state: Some("stopped".into())
                }
            ),
            (ghost.plan_id, FinishOutcome::NotFound),
            (ids[0], FinishOutcome::Completed),
        ]
    );
    assert_eq!(
        b.plan(ids[1]).await.unwrap().state,
        Some(PlanState::Stopped)
    );
    // Completing again is answered, not repeated.
    assert_eq!(
        b.complete_batch(vec![first[0].attempt]).await.unwrap(),
        [(
            ids[0],
            FinishOutcome::NotProcessing {
                state: Some("completed".into())
            }
        )]
    );

    // Concurrent batch claimers never share a plan.
    let mut queued: HashSet<Uuid> = ids[3..].iter().copied().collect();
    for i in 0..40 {
        queued.insert(b.enqueue(&format!("many {i}"), None).await.unwrap());
    }
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let b = b.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let batch = b.claim_batch(&format!("batch-{w}"), 3).await.unwrap();
                    if batch.is_empty() {
                        break mine;
                    }
                    let runs = batch.iter().map(|c| c.attempt).collect();
                    for (_, outcome) in b.complete_batch(runs).await.unwrap() {
                        assert_eq!(outcome, FinishOutcome::Completed);
                    }
                    mine.extend(batch.iter().map(|c| c.plan.id));
                }
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for w in workers {
        claimed.extend(w.await.unwrap());
    }
    assert_eq!(claimed.len(), queued.len(), "each plan claimed once");
    assert_eq!(claimed.into_iter().collect::<HashSet<_>>(), queued);
}

async fn a_recent_twin_is_found_as_a_duplicate<B: PlansBackend>(b: B) {
    let fast = json!({ "model_profile": "fast" });
    let plan = b
        .enqueue_with("same prompt", Some("dana"), Some(fast.clone()))
        .await
        .unwrap();
    let newer = b
        .enqueue_with("same prompt", Some("dana"), Some(fast))
        .await
        .unwrap();
    let bare = b
        .enqueue_with("same prompt", Some("dana"), None)
        .await
        .unwrap();
    assert_eq!(
        b.find_duplicate("dana", "same prompt", Some("fast"))
            .await
            .unwrap(),
        Some(newer),
        "the newest twin"
    );
    assert_eq!(
        b.find_duplicate("dana", "same prompt", None).await.unwrap(),
        Some(bare),
        "no profile matches no profile"
    );
    assert_eq!(
        b.find_duplicate("dana", "same prompt", Some("slow"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        b.find_duplicate("erin", "same prompt", Some("fast"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        b.find_duplicate("dana", "other prompt", Some("fast"))
            .await
            .unwrap(),
        None
    );
    // Only pending or processing plans are twins.
    b.stop(newer).await.unwrap();
    assert_eq!(
        b.find_duplicate("dana", "same prompt", Some("fast"))
            .await
            .unwrap(),
        Some(plan)
    );
    let err = b
        .find_duplicate(&"u".repeat(257), "same prompt", None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
}

/// Every keyset page of `user`'s plans, `limit` a page, `pause` between pages; a list that never
/// ends (a row that comes back) fails instead of hanging.
async fn every_page<B: PlansBackend>(
    b: &B,
    user: &str,
    limit: i64,
    pause: Duration,
) -> Vec<PlanListItem> {
    let mut seen = Vec::new();
    let mut page = Keyset::first(limit);
    for _ in 0..1000 {
        let rows = b.list_keyset(user, page.clone()).await.unwrap();
        assert!(rows.len() as i64 <= limit);
        let Some(last) = rows.last() else {
            return seen;
        };
        page = Keyset::after(limit, last.cursor());
        seen.extend(rows);
        tokio::time::sleep(pause).await;
    }
    panic!("the pages never end: {} rows so far", seen.len());
}

async fn keyset_pages_cover_every_plan_once_while_plans_are_inserted<B: PlansBackend>(b: B) {
    let long_prompt = "é".repeat(300);
    let mut before = HashSet::new();
    for i in 0..45 {
        let prompt = if i == 0 {
            long_prompt.clone()
        } else {
            format!("plan {i}")
        };
        before.insert(b.enqueue(&prompt, Some("pager")).await.unwrap());
        b.enqueue("someone else's", Some("other")).await.unwrap();
    }

    // A writer keeps queueing plans for the same user while the pages are read.
    let writer = {
        let b = b.clone();
        tokio::spawn(async move {
            let mut added = Vec::new();
            for i in 0..30 {
                added.push(
                    b.enqueue(&format!("late {i}"), Some("pager"))
                        .await
                        .unwrap(),
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            added
        })
    };
    let seen = every_page(&b, "pager", 7, Duration::from_millis(3)).await;
    let added = writer.await.unwrap();

    let ids: Vec<Uuid> = seen.iter().map(|r| r.id).collect();
    let distinct: HashSet<Uuid> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), ids.len(), "no plan listed twice");
    assert!(before.is_subset(&distinct), "every earlier plan listed");
    let allowed: HashSet<Uuid> = before.iter().chain(&added).copied().collect();
    assert!(distinct.is_subset(&allowed), "only the user's plans");
    // Newest first, ties by id descending, across page boundaries.
    for pair in seen.windows(2) {
        let (a, z) = (&pair[0], &pair[1]);
        assert!(
            (a.timestamp_created, a.id) > (z.timestamp_created, z.id),
            "{a:?} before {z:?}"
        );
    }
    let preview = seen
        .iter()
        .find_map(|r| r.prompt_preview.as_ref().filter(|p| p.starts_with('é')))
        .expect("the long prompt");
    assert_eq!(preview.chars().count(), 240, "a preview of 240 characters");

    // The offset list is the same order, and bounded.
    let all = b
        .list(
            "pager",
            PageRequest {
                limit: 10_000,
                offset: 0,
            },
        )
        .await
        .unwrap();
    assert_eq!(all.len(), 75);
    let fresh_pages: Vec<Uuid> = every_page(&b, "pager", 200, Duration::ZERO)
        .await
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(
        all.iter().map(|r| r.id).collect::<Vec<_>>(),
        fresh_pages,
        "offset and keyset agree"
    );
    let second = b
        .list(
            "pager",
            PageRequest {
                limit: 5,
                offset: 5,
            },
        )
        .await
        .unwrap();
    assert_eq!(second, all[5..10]);
    for _ in 0..130 {
        b.enqueue("bulk", Some("pager")).await.unwrap();
    }
    let capped = b
        .list(
            "pager",
            PageRequest {
                limit: 10_000,
                offset: 0,
            },
        )
        .await
        .unwrap();
    assert_eq!(capped.len(), 200, "at most 200 rows a page");
    assert_eq!(
        b.list_keyset("pager", Keyset::first(10_000))
            .await
            .unwrap()
            .len(),
        200
    );
}

async fn artifacts_round_trip_byte_exact_and_stay_deferred<B: PlansBackend>(b: B) {
    let plan = b.enqueue("artifacts", None).await.unwrap();
    let run = b.claim("w").await.unwrap().unwrap();
    assert_eq!(b.zip(plan).await.unwrap(), None);
    assert_eq!(b.zip_chunked(plan).await.unwrap(), None);
    assert_eq!(b.track_jsonl(plan).await.unwrap(), None);

    // Every byte value, NULs included, over more than two 4 MiB slices.
    let zip: Vec<u8> = (0..9 * 1024 * 1024 + 17)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let jsonl = "{\"step\":\"ünïcödé ✓\"}\n{\"step\":2}\n".to_owned();
    let html = "<html>rapport – 完成</html>".to_owned();
    let overview = json!({ "total_cost": 1.25, "steps": 2 });
    b.store_artifacts(
        run.attempt,
        ArtifactArgs {
            report_html: Some(html.clone()),
            zip: Some(zip.clone()),
            jsonl: Some(jsonl.clone()),
            bytes: Some(jsonl.len() as i32),
            overview: Some(overview.clone()),
        },
    )
    .await
    .unwrap();
    assert_eq!(b.zip(plan).await.unwrap().as_deref(), Some(&zip[..]));
    assert_eq!(
        b.zip_chunked(plan).await.unwrap().as_deref(),
        Some(&zip[..])
    );
    assert_eq!(b.track_jsonl(plan).await.unwrap(), Some(jsonl.clone()));
    assert_eq!(b.report(plan).await.unwrap(), Some(html.clone()));

    // The plan carries flags and the light columns, never the heavy ones.
    let read = b.plan(plan).await.unwrap();
    assert!(read.has_generated_report_html && read.has_run_zip_snapshot);
    assert!(read.has_run_track_activity_jsonl);
    assert_eq!(read.run_track_activity_bytes, Some(jsonl.len() as i32));
    assert_eq!(read.run_artifact_layout_version, Some(2));
    assert_eq!(
        read.run_activity_overview_json.map(|j| j.into_inner()),
        Some(overview)
    );
    let status = b.status_of(plan).await.unwrap();
    assert!(status.has_generated_report_html && status.has_run_zip_snapshot);

    // A periodic snapshot replaces the zip; storing artifacts without a report keeps the report
    // and clears what it leaves out.
    let small = vec![0u8, 255, 0, 1];
    b.store_zip(run.attempt, small.clone()).await.unwrap();
    assert_eq!(b.zip_chunked(plan).await.unwrap(), Some(small));
    b.store_artifacts(run.attempt, ArtifactArgs::default())
        .await
        .unwrap();
    assert_eq!(b.report(plan).await.unwrap(), Some(html));
    assert_eq!(b.zip(plan).await.unwrap(), None);
    assert_eq!(b.track_jsonl(plan).await.unwrap(), None);
    let read = b.plan(plan).await.unwrap();
    assert!(!read.has_run_zip_snapshot && !read.has_run_track_activity_jsonl);
    assert_eq!(read.run_activity_overview_json, None);

    // An empty zip is a zip, not none.
    b.store_zip(run.attempt, Vec::new()).await.unwrap();
    assert_eq!(b.zip(plan).await.unwrap(), Some(Vec::new()));
    assert_eq!(b.zip_chunked(plan).await.unwrap(), Some(Vec::new()));

    let nobody = Uuid::new_v4();
    for err in [
        b.zip(nobody).await.unwrap_err(),
        b.zip_chunked(nobody).await.unwrap_err(),
        b.track_jsonl(nobody).await.unwrap_err(),
        b.store_zip(
            Attempt {
                plan_id: nobody,
                token: Uuid::new_v4(),
            },
            vec![1],
        )
        .await
        .unwrap_err(),
    ] {
        assert!(matches!(err, Error::NotFound), "{err:?}");
    }
}

async fn usage_billing_charges_each_attempt_once_and_balance_equals_the_ledger<B: PlansBackend>(
    b: B,
) {
    let user = b.new_user().await.unwrap();
    b.grant(user, d("10"), None).await.unwrap();
    let plan = b.enqueue("billed", None).await.unwrap();
    let run = b.claim("w").await.unwrap().unwrap().attempt;

    // Eight workers (or one worker retrying after lost answers) report the same step at once:
    // the step is charged once, and every caller hears the first answer.
    let report = |cost: &'static str| {
        let b = b.clone();
        tokio::spawn(async move { b.bill_progress(usage(user, run, cost, false)).await })
    };
    let answers: Vec<_> = (0..8).map(|_| report("1.5")).collect();
    for a in answers {
        assert_eq!(a.await.unwrap().unwrap(), d("1.5"));
    }
    assert_eq!(b.balance(user).await.unwrap(), d("8.5"));
    // The next step charges only what is new; an old report again charges nothing.
    assert_eq!(
        b.bill_progress(usage(user, run, "2", false)).await.unwrap(),
        d("0.5")
    );
    assert_eq!(
        b.bill_progress(usage(user, run, "1.5", false))
            .await
            .unwrap(),
        d("1.5"),
        "the first answer"
    );
    assert_eq!(
        b.bill_progress(usage(user, run, "1.75", false))
            .await
            .unwrap(),
        Decimal::ZERO,
        "nothing due"
    );
    assert_eq!(b.balance(user).await.unwrap(), d("8"));

    // Settling a running attempt is refused.
    refused(
        b.settle(plan).await.unwrap_err(),
        "processing",
        "settled (usage billing)",
    );

    // The final bill, repeated concurrently: charged once (total 3.25 − 2 already).
    let finals: Vec<_> = (0..6)
        .map(|_| {
            let b = b.clone();
            tokio::spawn(async move { b.bill_final(usage(user, run, "3.25", true)).await })
        })
        .collect();
    for f in finals {
        assert_eq!(
            f.await.unwrap().unwrap(),
            FinalBilling::Charged { charged: d("1.25") }
        );
    }
    let reused = |e: Error, field: &str| {
        assert!(
            matches!(&e, Error::IdempotencyKeyReused { field: f } if *f == field),
            "{e:?}"
        )
    };
    reused(
        b.bill_final(usage(user, run, "4", true)).await.unwrap_err(),
        "cost",
    );
    reused(
        b.bill_final(usage(user, run, "3.25", false))
            .await
            .unwrap_err(),
        "succeeded",
    );
    assert_eq!(b.balance(user).await.unwrap(), d("6.75"));
    assert_eq!(b.ledger(user).await.unwrap(), (4, d("6.75")));

    // The run fails; its retry settles the attempt's three usage rows, and the next attempt is
    // billed afresh.
    b.fail(run, "generation_error").await.unwrap();
    assert_eq!(b.retry(plan).await.unwrap().settled_billing_rows, 3);
    let run2 = b.claim("w").await.unwrap().unwrap().attempt;
    assert_eq!(
        b.bill_progress(usage(user, run2, "1.5", false))
            .await
            .unwrap(),
        d("1.5"),
        "a new attempt, a new charge"
    );
    let first = b.bill_final(usage(user, run2, "1", false)).await.unwrap();
    assert_eq!(
        first,
        FinalBilling::Charged {
            charged: Decimal::ZERO
        },
        "never below zero"
    );
    // Its repeat answers the first outcome, written alike (a negated zero would print `-0`).
    let again = b.bill_final(usage(user, run2, "1", false)).await.unwrap();
    assert_eq!(format!("{again:?}"), format!("{first:?}"));
    assert!(!format!("{again:?}").contains('-'), "{again:?}");
    b.complete(run2).await.unwrap();
    assert_eq!(b.settle(plan).await.unwrap(), 2);
    assert_eq!(b.settle(plan).await.unwrap(), 0, "settled once");

    // Usage may leave a debt, and the balance is still the ledger sum.
    let plan3 = b.enqueue("expensive", None).await.unwrap();
    let run3 = b.claim("w").await.unwrap().unwrap().attempt;
    assert_eq!(plan3, run3.plan_id);
    assert_eq!(
        b.bill_progress(usage(user, run3, "20", false))
            .await
            .unwrap(),
        d("20")
    );
    let balance = b.balance(user).await.unwrap();
    assert_eq!(balance, d("-14.75"));
    assert_eq!(b.ledger(user).await.unwrap(), (7, balance));
    let err = b
        .bill_progress(usage(user, run3, "-1", false))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    let err = b.settle(Uuid::new_v4()).await.unwrap_err();
    assert!(matches!(err, Error::NotFound), "{err:?}");
}

async fn rows_another_writer_left_are_read_listed_last_and_refused_by_name<B: PlansBackend>(b: B) {
    let mut queued = Vec::new();
    for i in 0..3 {
        queued.push(
            b.enqueue(&format!("queued {i}"), Some("mixed"))
                .await
                .unwrap(),
        );
    }
    let mut foreign = Vec::new();
    for _ in 0..4 {
        foreign.push(b.insert_foreign_plan("mixed").await);
    }

    // NULL columns read as absent, never as an error.
    let status = b.status_of(foreign[0]).await.unwrap();
    assert_eq!(status.state, None);
    assert!(!status.stop_requested);
    assert_eq!(status.timestamp_created, None);
    assert_eq!(status.progress_percentage, None);
    let plan = b.plan(foreign[0]).await.unwrap();
    assert_eq!((plan.state, plan.parameters), (None, None));

    // Lists: the dated plans newest first, then the undated ones by id descending; pages of two
    // cross from one part to the other without losing or repeating a row.
    let pages = every_page(&b, "mixed", 2, Duration::ZERO).await;
    let ids: Vec<Uuid> = pages.iter().map(|r| r.id).collect();
    let mut dated = Vec::new();
    for id in &queued {
        let at = b.status_of(*id).await.unwrap().timestamp_created;
        dated.push((at.expect("queued plans are dated"), *id));
    }
    dated.sort_unstable_by(|a, z| z.cmp(a));
    let mut undated = foreign.clone();
    undated.sort_unstable_by(|a, z| z.cmp(a));
    let expected: Vec<Uuid> = dated.iter().map(|(_, id)| *id).chain(undated).collect();
    assert_eq!(ids, expected);
    let listed = b
        .list(
            "mixed",
            PageRequest {
                limit: 50,
                offset: 0,
            },
        )
        .await
        .unwrap();
    assert_eq!(listed.iter().map(|r| r.id).collect::<Vec<_>>(), expected);

    // Such a plan is never claimed, and every transition refuses it by its (NULL) state.
    assert_eq!(b.count_pending().await.unwrap(), 3);
    for _ in 0..3 {
        b.claim("w").await.unwrap().unwrap();
    }
    assert!(b.claim("w").await.unwrap().is_none());
    let f = foreign[1];
    refused(b.stop(f).await.unwrap_err(), "NULL", "stopped");
    refused(b.retry(f).await.unwrap_err(), "NULL", "pending (retry)");
    refused(b.resume(f).await.unwrap_err(), "NULL", "pending (resume)");
    assert_eq!(b.settle(f).await.unwrap(), 0);
    assert_eq!(
        b.find_duplicate("mixed", "left by another writer", None)
            .await
            .unwrap(),
        None
    );
}
