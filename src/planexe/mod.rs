//! The PlanExe schema, shared with the PlanExe Python services (`database_api`).
//!
//! One module per table, named after it; each holds the row struct(s) and the free functions that read
//! and write that table. Everything here is wire-compatible with the Python services that keep running
//! against the same database (see `migrations/0001_planexe_schema.sql`):
//!
//! * **Timestamps** are `timestamp without time zone` columns holding UTC wall-clock time. They surface as
//!   [`DateTime<Utc>`](chrono::DateTime) (mapped once in `sqlx.toml`); "now" is computed in SQL as
//!   `now() AT TIME ZONE 'utc'`, and bound values are converted with [`DateTime::naive_utc`](chrono::DateTime::naive_utc).
//! * **JSON** columns are `json`, not `jsonb`. Values are bound as text (`$1::text::json`), so the stored
//!   text is exactly what `serde_json` produced (sqlx would bind a `Json<T>` as `jsonb`, which PostgreSQL
//!   re-serialises). SQL NULL and the JSON text `null` both read as `None` ([`json_absent`]).
//! * **Enums** [`PlanState`] and [`EventType`] store the member NAMES. Labels we do not know (older
//!   databases carry `import_pending`) decode into [`Error::UnknownEnumLabel`], never a panic.
//!   `planstate` is called `taskstate` on legacy databases, so no query binds a `PlanState` parameter:
//!   states are written as SQL literals (`state = 'pending'`), which PostgreSQL types after the column,
//!   whatever the type's name.
//! * **Credits** are exact [`Decimal`]s rounded to 9 places ([`round_credits`]).
//! * **Text** written to the database has NUL bytes stripped and is truncated to the column width.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgTypeInfo, PgValueRef};
use sqlx::{Decode, Encode, Postgres, Type};

use crate::error::Error;

pub mod credit_history;
pub mod events;
pub mod feedback_item;
pub mod nonces;
pub mod payment_record;
pub mod plans;
pub mod token_metrics;
pub mod user_account;
pub mod user_api_key;
pub mod user_provider;
pub mod workers;

/// State of a plan: Postgres enum `planstate` (legacy name `taskstate`), labels are the member names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanState {
    /// Waiting in the queue.
    Pending,
    /// Claimed by a worker.
    Processing,
    /// Finished successfully.
    Completed,
    /// Finished with an error.
    Failed,
    /// Stopped on request.
    Stopped,
}

impl PlanState {
    /// The label as stored in PostgreSQL.
    pub const fn as_str(self) -> &'static str {
        match self {
            PlanState::Pending => "pending",
            PlanState::Processing => "processing",
            PlanState::Completed => "completed",
            PlanState::Failed => "failed",
            PlanState::Stopped => "stopped",
        }
    }
}

impl fmt::Display for PlanState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PlanState {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(match s {
            "pending" => PlanState::Pending,
            "processing" => PlanState::Processing,
            "completed" => PlanState::Completed,
            "failed" => PlanState::Failed,
            "stopped" => PlanState::Stopped,
            other => {
                return Err(Error::UnknownEnumLabel {
                    type_name: "planstate",
                    value: other.to_owned(),
                });
            }
        })
    }
}

/// Decode-only: accepts both type names (`planstate`, legacy `taskstate`). There is deliberately no
/// `Encode`, because a bound parameter would be typed by name and fail on the other type name.
impl Type<Postgres> for PlanState {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_name("planstate")
    }
    fn compatible(ty: &PgTypeInfo) -> bool {
        matches!(ty.to_string().as_str(), "planstate" | "taskstate")
    }
}

impl<'r> Decode<'r, Postgres> for PlanState {
    fn decode(value: PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let label = <&str as Decode<Postgres>>::decode(value)?;
        Ok(label.parse::<PlanState>()?)
    }
}

/// Kind of an event: Postgres enum `eventtype`, labels are the member names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventType {
    /// An error not tied to a plan transition.
    GenericError,
    /// Any other event (e.g. a purchase step).
    GenericEvent,
    /// A plan was queued (enqueue, retry, resume, reaper).
    TaskPending,
    /// A plan was claimed.
    TaskProcessing,
    /// A plan failed or was stopped.
    TaskFailed,
    /// A plan completed.
    TaskCompleted,
}

impl EventType {
    /// The label as stored in PostgreSQL.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventType::GenericError => "GENERIC_ERROR",
            EventType::GenericEvent => "GENERIC_EVENT",
            EventType::TaskPending => "TASK_PENDING",
            EventType::TaskProcessing => "TASK_PROCESSING",
            EventType::TaskFailed => "TASK_FAILED",
            EventType::TaskCompleted => "TASK_COMPLETED",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(match s {
            "GENERIC_ERROR" => EventType::GenericError,
            "GENERIC_EVENT" => EventType::GenericEvent,
            "TASK_PENDING" => EventType::TaskPending,
            "TASK_PROCESSING" => EventType::TaskProcessing,
            "TASK_FAILED" => EventType::TaskFailed,
            "TASK_COMPLETED" => EventType::TaskCompleted,
            other => {
                return Err(Error::UnknownEnumLabel {
                    type_name: "eventtype",
                    value: other.to_owned(),
                });
            }
        })
    }
}

impl Type<Postgres> for EventType {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_name("eventtype")
    }
    fn compatible(ty: &PgTypeInfo) -> bool {
        ty.to_string() == "eventtype"
    }
}

impl<'r> Decode<'r, Postgres> for EventType {
    fn decode(value: PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let label = <&str as Decode<Postgres>>::decode(value)?;
        Ok(label.parse::<EventType>()?)
    }
}

impl Encode<'_, Postgres> for EventType {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <&str as Encode<Postgres>>::encode_by_ref(&self.as_str(), buf)
    }
}

/// SQL NULL and the JSON text `null` both mean "absent" (the Python services write either).
pub fn json_absent(value: Option<serde_json::Value>) -> Option<serde_json::Value> {
    value.filter(|v| !v.is_null())
}

/// The text bound into a `json` column (`$n::text::json`): `None` writes SQL NULL; `Some(Value::Null)`
/// writes the JSON text `null`.
pub(crate) fn json_text(value: Option<&serde_json::Value>) -> Option<String> {
    value.map(|v| v.to_string())
}

/// Round a credit amount to the column scale (9 places), half-to-even like Python's `Decimal.quantize`.
pub fn round_credits(amount: Decimal) -> Decimal {
    amount.round_dp(9)
}

/// Strip NUL bytes (PostgreSQL text cannot hold them) and cut to `max_chars` characters (varchar(n)
/// counts characters).
pub(crate) fn clean_text(text: &str, max_chars: usize) -> String {
    text.chars()
        .filter(|c| *c != '\0')
        .take(max_chars)
        .collect()
}

/// [`clean_text`] for optional values.
pub(crate) fn clean_opt(text: Option<&str>, max_chars: usize) -> Option<String> {
    text.map(|t| clean_text(t, max_chars))
}

/// A duration as seconds for `make_interval(secs => $n)`.
pub(crate) fn secs(d: std::time::Duration) -> f64 {
    d.as_secs_f64()
}

/// Which slice of a list to return (a request; planexe lists are offset-paged): `limit` rows after
/// skipping `offset`. Not to be confused with shop's `Page<T>`, a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// Maximum rows returned (clamped to 1..=200).
    pub limit: i64,
    /// Rows skipped.
    pub offset: i64,
}

impl Default for PageRequest {
    fn default() -> Self {
        PageRequest {
            limit: 50,
            offset: 0,
        }
    }
}

impl PageRequest {
    pub(crate) fn limit(&self) -> i64 {
        self.limit.clamp(1, 200)
    }
    pub(crate) fn offset(&self) -> i64 {
        self.offset.max(0)
    }
}
