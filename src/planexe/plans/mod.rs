//! `plans`: the plan queue and its artifacts (Python model `PlanItem`).
//!
//! The three heavy columns (`generated_report_html`, `run_zip_snapshot` up to ~40 MB,
//! `run_track_activity_jsonl`) are never part of [`Plan`]; like SQLAlchemy `deferred()` columns they
//! are read and written only by the `*_artifact*`/`fetch_*` functions. Lists and status reads select
//! `<column> IS NOT NULL` flags instead.
//!
//! State transitions (all refused with [`Error::InvalidTransition`] from any other state):
//!
//! | action | from | to |
//! | --- | --- | --- |
//! | [`claim_next`], [`claim_next_batch`] | pending (no stop request) | processing |
//! | [`finish_completed`], [`finish_completed_batch`] | processing | completed |
//! | [`finish_failed`] | processing; stopped | failed, or stopped when a stop was requested |
//! | [`finish_stopped`] | processing; stopped | stopped |
//! | [`request_stop`] | pending, processing (stopped: no-op) | stopped |
//! | [`retry`] | failed, stopped | pending (artifacts and diagnostics cleared) |
//! | [`resume`] | failed, stopped (pipeline version 2) | pending (artifacts kept) |
//! | [`requeue_stale`] (reaper) | processing, worker heartbeat lost | pending, or failed (`worker_lost`) after `max_requeues` |
//!
//! A state this release does not know ([`PlanState::Unknown`]: a newer release's or another
//! service's label) is in no `from` column: the statements name the states they accept as SQL
//! literals, so such a plan is never claimed or reaped, and every action refuses it with
//! [`Error::InvalidTransition`] whose `from` is the stored label. Reads return it like any plan.
//!
//! **Run ownership.** [`claim_next`] stamps the run with a fresh [`Attempt`]; retry, resume and the
//! reaper clear it. The worker's writes ([`update_progress`], [`finish_completed`],
//! [`finish_failed`], [`finish_stopped`], [`store_artifacts`], [`store_zip_snapshot`],
//! [`store_zip_snapshot_chunked`], usage billing in `credit_history`, and
//! [`workers::heartbeat`](super::workers::heartbeat) naming its plan) take the attempt and are
//! refused with [`Error::Superseded`] once it is no longer the plan's, writing nothing. The Python
//! services do not know the column: a plan claimed by a Python worker has no attempt and cannot
//! be written through these functions; one that a Python service re-queues keeps the last Rust
//! stamp until the next claim here replaces it.
//!
//! One module per concern, all re-exported here (`planexe::plans::claim_next`):
//!
//! * [`queue`]: enqueue, duplicate lookup, claim, queue depth, the reaper;
//! * [`lifecycle`]: progress and the state transitions after the claim;
//! * [`artifacts`]: the report, zip snapshot and activity log;
//! * [`reads`]: a plan, its status, a user's list;
//! * [`wakeup`]: `LISTEN` for plans becoming claimable, so idle workers need not poll.
//!
//! **Writes to other tables.** Several functions write `workers`, `events` or `credit_history` in the
//! same statement as the plan; each module lists its own at the top. Whoever changes billing or the
//! event stream starts there.
//!
//! A worker's loop, in short:
//!
//! ```no_run
//! use shared_db::planexe::plans::{self, Progress, ProgressAck};
//! use rust_decimal::Decimal;
//!
//! # async fn worker(db: &shared_db::Database) -> shared_db::Result<()> {
//! while let Some(claimed) = plans::claim_next(db.pool(), "worker-1").await? {
//!     let run = claimed.attempt;
//!     let step = Progress { percentage: Decimal::from(50), message: "Halfway", ..Default::default() };
//!     match plans::update_progress(db.pool(), run, &step).await {
//!         Ok(ProgressAck::Recorded) => plans::finish_completed(db.pool(), run, None).await?,
//!         Ok(ProgressAck::Abort { .. }) => plans::finish_stopped(db.pool(), run, None).await?,
//!         // The run was taken from us (stop + retry, or the reaper): drop it.
//!         Err(shared_db::Error::Superseded { .. }) => continue,
//!         Err(e) => return Err(e),
//!     }
//! }
//! # Ok(()) }

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::json::LossyJson;
use super::{PlanState, json_absent, json_string};
use crate::error::Error;

pub mod artifacts;
pub mod lifecycle;
pub mod queue;
pub mod reads;
pub mod wakeup;

// The submodules' spans name `shared_db::planexe::plans` as their target, so logs and metrics keep one name per
// function (its public path) whichever file holds it.
pub use artifacts::*;
pub use lifecycle::*;
pub use queue::*;
pub use reads::*;
pub use wakeup::{ListenOn, PENDING_CHANNEL, Wake, Wakeups};

/// Proof that a worker owns one run of a plan, handed out by [`claim_next`].
///
/// Every worker write ([`update_progress`], `finish_*`, `store_*`, usage billing, the heartbeat's
/// current plan) names it and is refused with [`Error::Superseded`] once the run was taken away
/// (stop then retry or resume, or the reaper), so a worker that lost its plan writes and bills
/// nothing. Stored in `plans.run_attempt`, which the Python services ignore. Serializable, so a
/// worker can hand it to a child process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Attempt {
    /// The plan.
    pub plan_id: Uuid,
    /// The run's token (`plans.run_attempt`), fresh for every claim.
    pub token: Uuid,
}

impl Attempt {
    /// [`Error::Superseded`] for a write of this attempt, which no longer owns the plan.
    pub(crate) fn superseded(self) -> Error {
        Error::Superseded {
            plan_id: self.plan_id,
        }
    }
}

/// A plan [`claim_next`] handed to a worker, and the attempt that proves the worker owns the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Claimed {
    /// Pass to every write of this run.
    pub attempt: Attempt,
    /// The plan as claimed (`processing`, "Picked up by server", 0 %).
    pub plan: Plan,
}

/// The pipeline version a resumable plan must carry in `parameters.pipeline_version`.
pub const PIPELINE_VERSION: i64 = 2;

/// One row of `plans`, without the three heavy artifact columns. Every column is nullable in the
/// shared schema, so a row written by another service may leave any `Option` here `None`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// Primary key.
    pub id: Uuid,
    /// UTC; the FIFO key of the queue ([`retry`] moves it to now, to the back of the queue).
    pub timestamp_created: Option<DateTime<Utc>>,
    /// `None` only if another writer left the column NULL; such a plan is never claimed.
    pub state: Option<PlanState>,
    /// As submitted, NUL bytes stripped.
    pub prompt: Option<String>,
    /// Percent, 0–100 with two decimals.
    pub progress_percentage: Option<Decimal>,
    /// At most 128 characters.
    pub progress_message: Option<String>,
    /// Pipeline steps finished so far.
    pub steps_completed: Option<i32>,
    /// Pipeline steps of the whole run; `None` until the worker knows.
    pub steps_total: Option<i32>,
    /// Name of the pipeline step running now; at most 128 characters.
    pub current_step: Option<String>,
    /// UTC time the browser last polled the plan (a keep-alive the worker only logs).
    pub last_seen_timestamp: Option<DateTime<Utc>>,
    /// A NULL column reads as `false`.
    pub stop_requested: bool,
    /// UTC; `None` when no stop was requested.
    pub stop_requested_timestamp: Option<DateTime<Utc>>,
    /// Owner: a `user_account` UUID string, the admin username, an opaque MachAI id, ...
    pub user_id: Option<String>,
    /// `user_api_key.id` as text; `None` for plans created without a key.
    pub api_key_id: Option<String>,
    /// A JSON object (`model_profile`, `speed_vs_detail`, `pipeline_version`, `resume`, ...); SQL
    /// NULL and JSON `null` both read as `None`.
    pub parameters: Option<LossyJson>,
    /// Bytes of the activity log.
    pub run_track_activity_bytes: Option<i32>,
    /// JSON object including `total_cost` (credits); SQL NULL and JSON `null` read as `None`.
    pub run_activity_overview_json: Option<LossyJson>,
    /// The worker writes [`ARTIFACT_LAYOUT_VERSION`]; `None` before artifacts are stored.
    pub run_artifact_layout_version: Option<i32>,
    /// `generation_error`, `worker_error`, `version_mismatch`, `inactivity_timeout`,
    /// `worker_lost`, ...; at most 64 characters, `None` unless the plan failed.
    pub failure_reason: Option<String>,
    /// The step running when the plan failed.
    pub failed_step: Option<String>,
    /// At most 256 characters.
    pub error_message: Option<String>,
    /// Whether a retry may succeed; `None` unless the plan failed.
    pub recoverable: Option<bool>,
    /// UTC time of the last progress write; the reaper's stall clock.
    pub last_progress_at: Option<DateTime<Utc>>,
    /// A report is stored ([`fetch_report_html`]).
    pub has_generated_report_html: bool,
    /// A zip snapshot is stored ([`fetch_zip_snapshot`]).
    pub has_run_zip_snapshot: bool,
    /// An activity log is stored ([`fetch_track_activity_jsonl`]).
    pub has_run_track_activity_jsonl: bool,
}

impl Plan {
    fn normalized(mut self) -> Self {
        self.parameters = json_absent(self.parameters);
        self.run_activity_overview_json = json_absent(self.run_activity_overview_json);
        self
    }
}

/// The light columns a status poll reads (MCP `plan_status`); the fields mean what they mean on
/// [`Plan`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[allow(missing_docs)]
pub struct PlanStatus {
    pub id: Uuid,
    pub state: Option<PlanState>,
    pub progress_percentage: Option<Decimal>,
    pub progress_message: Option<String>,
    pub steps_completed: Option<i32>,
    pub steps_total: Option<i32>,
    pub current_step: Option<String>,
    pub stop_requested: bool,
    pub timestamp_created: Option<DateTime<Utc>>,
    pub last_progress_at: Option<DateTime<Utc>>,
    pub failure_reason: Option<String>,
    pub error_message: Option<String>,
    pub recoverable: Option<bool>,
    pub has_generated_report_html: bool,
    pub has_run_zip_snapshot: bool,
}

/// One line of a user's plan list; the fields mean what they mean on [`Plan`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[allow(missing_docs)]
pub struct PlanListItem {
    pub id: Uuid,
    pub state: Option<PlanState>,
    pub progress_percentage: Option<Decimal>,
    pub timestamp_created: Option<DateTime<Utc>>,
    /// The first [`PROMPT_PREVIEW_CHARS`] characters of the prompt.
    pub prompt_preview: Option<String>,
}

/// Characters of the prompt shown in [`list_by_user`] (the frontend's 240).
pub const PROMPT_PREVIEW_CHARS: i32 = 240;

/// The `context` text of an event: `base` (when it is a JSON object) with the keys of `extra` added
/// or replaced, NUL-stripped like every JSON the library writes ([`json_string`]).
pub fn event_context(base: Option<&Value>, extra: Value) -> String {
    let mut ctx = match base {
        Some(Value::Object(map)) => map.clone(),
        _ => serde_json::Map::new(),
    };
    if let Value::Object(extra) = extra {
        ctx.extend(extra);
    }
    json_string(&Value::Object(ctx))
}

/// The refused transition: `from` is the stored label (`NULL` if the column is NULL), `to` the
/// target of the refused action (`pending (retry)` / `pending (resume)` tell the two apart).
fn transition(from: Option<String>, to: &str) -> Error {
    Error::InvalidTransition {
        from: from.unwrap_or_else(|| "NULL".to_owned()),
        to: to.to_owned(),
    }
}
