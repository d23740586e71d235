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
//!   re-serialises). They read as [`LossyJson`](json::LossyJson), which tolerates the lone surrogates
//!   Python writes for a cut-off emoji (U+FFFD in their place). SQL NULL and the JSON text `null` both
//!   read as `None` ([`json_absent`]).
//! * **Enums** [`PlanState`] and [`EventType`] store the member NAMES. A label we do not know (a newer
//!   release's, another service's, the orphan `import_pending` of older databases) reads as the
//!   `Unknown` variant carrying it, so such a row never fails a read or a list; only caller input
//!   ([`FromStr`](std::str::FromStr), `Deserialize`) refuses it ([`Error::UnknownEnumLabel`]).
//!   `planstate` is called `taskstate` on legacy databases, so no query binds a `PlanState` parameter:
//!   states are written as SQL literals (`state = 'pending'`), which PostgreSQL types after the column,
//!   whatever the type's name.
//! * **Credits** are exact [`Decimal`]s rounded to 9 places ([`round_credits`]). An amount, or a
//!   balance an operation would produce, beyond ±[`MAX_CREDITS`] (`numeric(18,9)`) is refused with
//!   [`Error::InvalidInput`] before anything is written.
//! * **NUL bytes** are stripped from every text input: stored text, identifiers, lookup keys, and
//!   every string and key inside JSON. It is the one rule PlanExe applies to prompts, and PostgreSQL
//!   cannot hold NUL in `text` (nor turn a `\u0000` inside `json` into text). A lookup with a NUL
//!   therefore finds what a write with the same input stored.
//! * **Identifiers** (payment ids, provider user ids, plan owners, ledger sources, worker ids, ...)
//!   are never cut: longer than their column, they are refused with [`Error::InvalidInput`] naming
//!   the field, since two different ids with a common prefix would otherwise become one.
//!   **Content** (prompts, progress text, error messages, labels, profile fields) is cut to its
//!   column width, as PlanExe cuts it.
//!
//! # The replay contract
//!
//! Every write that takes an idempotency key, or has a natural one, answers a repeat the way
//! Stripe and TigerBeetle do. The writes: [`credit_history::charge`] and [`credit_history::grant`]
//! (the caller's key), [`payment_record::apply`] (the provider payment id),
//! [`credit_history::bill_usage_progress`] and [`credit_history::bill_usage_final`] (the run
//! attempt, and for progress its cumulative cost), [`user_api_key::create`] (the raw key, made
//! once by the caller), [`user_account::claim_free_plan`] (the caller's claim key), and
//! [`shop::orders::create`](crate::shop::orders::create) (the caller's key).
//!
//! 1. **Same key, same request: the original result.** Whether the first call committed long ago,
//!    a moment ago, or is still in flight, a repeat returns what the first returned and applies
//!    nothing. A concurrent duplicate waits for the first (on the row the first holds: the user,
//!    the payment's unique key, the shop's order key) and then answers its result; it never gets
//!    [`Error::Conflict`]. If the first rolled back, the repeat is a first call.
//! 2. **Same key, different request: a typed error naming the field.** The key used again with
//!    another amount, source, external id, API key, reason, user, credits, currency or label is
//!    [`Error::IdempotencyKeyReused`] with that `field`; nothing is written and the first outcome
//!    stands.
//! 3. **Keys are scoped to their user (or shop).** One user's key never collides with another's,
//!    and an answer never reveals that another user used a key. (A provider payment id is scoped
//!    to its provider: the payment is the provider's, so the same id for another user is refused
//!    naming `user`.)
//! 4. **Keys have a length limit and are never cut.** A caller's key is at most 128 characters
//!    ([`credit_history::MAX_IDEMPOTENCY_KEY_CHARS`],
//!    [`user_account::MAX_FREE_PLAN_CLAIM_KEY_CHARS`]); a provider payment id at most 256. A longer
//!    key is refused with [`Error::InvalidInput`] naming the field, never truncated (two keys with
//!    a common prefix would become one).
//!
//! # Safe to retry
//!
//! `tx::retry` repeats an operation after a retryable error, and a lost connection is retryable even
//! when the server had already committed (the client cannot know). These operations may be
//! repeated after such an unknown outcome and still apply once:
//!
//! | operation | how |
//! | --- | --- |
//! | [`credit_history::charge`], [`credit_history::grant`] | with a caller's idempotency key: the replay contract (`uq_credit_history_idempotency_key`, key `caller:<user>:<key>`) |
//! | [`credit_history::bill_usage_progress`] | key derived from the run attempt and cumulative cost: a repeat returns the first answer |
//! | [`credit_history::bill_usage_final`] | key derived from the run attempt: a repeat returns the first `Charged` |
//! | [`payment_record::apply`] | the provider payment id: a repeat answers the first `Applied`, credited once |
//! | [`user_api_key::create`] | the caller generates the raw key once, outside the retry; a repeat returns the same key |
//! | [`user_account::claim_free_plan`] | the caller's claim key: a repeat of the claim that used the free plan answers `true` again |
//! | [`user_account::sign_in`], [`user_account::ensure_admin`] | upserts |
//! | [`plans::update_progress`], [`plans::store_artifacts`], [`plans::store_zip_snapshot`], [`workers::heartbeat`] | overwrite with the same values |
//! | [`plans::finish_completed_batch`] | per plan: a repeat answers `NotProcessing { completed }` for the plans the first call completed, and completes the rest |
//!
//! Not idempotent, so not to be retried blindly after an unknown outcome: [`plans::enqueue`] (a
//! repeat queues a second plan: check [`plans::find_duplicate`] first), [`plans::claim_next`] and
//! [`plans::claim_next_batch`] (a repeat claims other plans; the first ones are re-queued by the
//! reaper), a charge or grant
//! *without* an idempotency key, and the `finish_*`/[`plans::retry`]/[`plans::resume`] transitions,
//! whose repeat is refused with [`Error::InvalidTransition`] after the first one went through (read
//! the plan's state to learn the outcome).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgTypeInfo;
use sqlx::{Encode, Postgres, Type};

use crate::enum_label::label_enum;
use crate::error::Error;

pub mod credit_history;
pub mod events;
pub mod feedback_item;
pub mod json;
pub mod nonces;
pub mod payment_record;
pub mod plans;
pub mod retention;
pub mod token_metrics;
pub mod user_account;
pub mod user_api_key;
pub mod user_provider;
pub mod workers;

label_enum! {
    /// State of a plan: Postgres enum `planstate` (legacy name `taskstate`), labels are the member
    /// names.
    ///
    /// A label this release does not know reads as [`PlanState::Unknown`] carrying it, never as an
    /// error: a newer release or another service may add one (`ALTER TYPE planstate ADD VALUE
    /// 'archived'`), and older databases still hold the orphan `import_pending`. Such a plan is
    /// listed and read like any other, but it is never claimed, and every transition refuses it
    /// with [`Error::InvalidTransition`] naming the label: its meaning belongs to its writer.
    pub enum PlanState: "planstate" {
        /// Waiting in the queue.
        Pending => "pending",
        /// Claimed by a worker.
        Processing => "processing",
        /// Finished successfully.
        Completed => "completed",
        /// Finished with an error.
        Failed => "failed",
        /// Stopped on request.
        Stopped => "stopped",
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

label_enum! {
    /// Kind of an event: Postgres enum `eventtype`, labels are the member names.
    ///
    /// A label this release does not know (added by a newer release or another service) reads as
    /// [`EventType::Unknown`] carrying it, never as an error, so an event list returns every row.
    /// Writing an `Unknown` value ([`events::append`]) writes its label back, which the database
    /// accepts as long as its `eventtype` has that label.
    pub enum EventType: "eventtype" {
        /// An error not tied to a plan transition.
        GenericError => "GENERIC_ERROR",
        /// Any other event (e.g. a purchase step).
        GenericEvent => "GENERIC_EVENT",
        /// A plan was queued (enqueue, retry, resume, reaper).
        TaskPending => "TASK_PENDING",
        /// A plan was claimed.
        TaskProcessing => "TASK_PROCESSING",
        /// A plan failed or was stopped.
        TaskFailed => "TASK_FAILED",
        /// A plan completed.
        TaskCompleted => "TASK_COMPLETED",
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

/// Writes the label; an `Unknown` value writes the label it carries (a pass-through).
impl Encode<'_, Postgres> for EventType {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <&str as Encode<Postgres>>::encode_by_ref(&self.as_str(), buf)
    }
}

/// SQL NULL and the JSON text `null` both mean "absent" (the Python services write either).
/// Works on [`serde_json::Value`] and on [`LossyJson`](json::LossyJson) alike.
pub fn json_absent<J: std::borrow::Borrow<serde_json::Value>>(value: Option<J>) -> Option<J> {
    value.filter(|v| !v.borrow().is_null())
}

/// The text bound into a `json` column (`$n::text::json`): `None` writes SQL NULL; `Some(Value::Null)`
/// writes the JSON text `null`. NUL characters are stripped from every string and key (the one NUL
/// rule): PostgreSQL stores `\u0000` in `json` but cannot turn it into text, so `->>` and a cast to
/// `jsonb` would fail on the row later.
pub fn json_text(value: Option<&serde_json::Value>) -> Option<String> {
    value.map(json_string)
}

/// [`json_text`] of a value that is present.
pub fn json_string(value: &serde_json::Value) -> String {
    let text = value.to_string();
    if text.contains("\\u0000") {
        without_nul(value).to_string()
    } else {
        text
    }
}

fn without_nul(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    let clean = |s: &str| clean_text(s, usize::MAX);
    match value {
        Value::String(s) => Value::String(clean(s)),
        Value::Array(items) => Value::Array(items.iter().map(without_nul).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (clean(k), without_nul(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Round a credit amount to the column scale (9 places), half-to-even like Python's `Decimal.quantize`.
pub fn round_credits(amount: Decimal) -> Decimal {
    amount.round_dp(9)
}

/// The largest magnitude a `numeric(18,9)` credit column holds: 999 999 999.999999999.
pub const MAX_CREDITS: Decimal = Decimal::from_parts(2_808_348_671, 232_830_643, 0, false, 9);

/// `amount` rounded to 9 places, refused with [`Error::InvalidInput`] naming `field` unless it is
/// positive and fits `numeric(18,9)`.
pub fn credit_amount(field: &'static str, amount: Decimal) -> Result<Decimal, Error> {
    let amount = round_credits(amount);
    if amount <= Decimal::ZERO {
        return Err(Error::invalid_input(format!("{field} must be positive")));
    }
    if amount > MAX_CREDITS {
        return Err(Error::invalid_input(format!(
            "{field} must be at most {MAX_CREDITS} (numeric(18,9))"
        )));
    }
    Ok(amount)
}

/// An identifier (payment id, provider user id, plan owner, source, ...) as written or looked up:
/// NUL bytes stripped (the one NUL rule), then refused with [`Error::InvalidInput`] naming `field`
/// when longer than `max_chars` characters. Identifiers are never cut: two different long ids with
/// the same prefix would become one.
pub fn ident(field: &'static str, value: &str, max_chars: usize) -> Result<String, Error> {
    let value = clean_text(value, usize::MAX);
    if value.chars().count() > max_chars {
        return Err(Error::invalid_input(format!(
            "{field} is longer than {max_chars} characters"
        )));
    }
    Ok(value)
}

/// [`ident`] for optional values.
pub fn ident_opt(
    field: &'static str,
    value: Option<&str>,
    max_chars: usize,
) -> Result<Option<String>, Error> {
    value.map(|v| ident(field, v, max_chars)).transpose()
}

/// Strip NUL bytes (PostgreSQL text cannot hold them) and cut to `max_chars` characters (varchar(n)
/// counts characters).
pub fn clean_text(text: &str, max_chars: usize) -> String {
    text.chars()
        .filter(|c| *c != '\0')
        .take(max_chars)
        .collect()
}

/// [`clean_text`] for optional values.
pub fn clean_opt(text: Option<&str>, max_chars: usize) -> Option<String> {
    text.map(|t| clean_text(t, max_chars))
}

/// A duration as seconds for `make_interval(secs => $n)`.
pub(crate) fn secs(d: std::time::Duration) -> f64 {
    d.as_secs_f64()
}

/// Which slice of a list to return by offset: `limit` rows after skipping `offset`. Only
/// [`plans::list_by_user`] still pages this way (a deep offset reads every row it skips); every
/// other list, and [`plans::list_by_user_keyset`], pages by [`Keyset`]. Not to be confused with
/// shop's `Page<T>`, a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// Maximum rows returned (clamped to 1..=[`MAX_PAGE_ROWS`]).
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
    /// The rows to return: `limit` clamped to 1..=[`MAX_PAGE_ROWS`] (the one bound of every
    /// backend's lists).
    pub fn limit(&self) -> i64 {
        self.limit.clamp(1, MAX_PAGE_ROWS)
    }
    /// The rows to skip: `offset`, not below zero.
    pub fn offset(&self) -> i64 {
        self.offset.max(0)
    }
}

/// The most rows one page of any planexe list returns; larger limits are clamped to it.
pub const MAX_PAGE_ROWS: i64 = 200;

/// Where a page of a newest-first list ended: the sort time and id of its last row (each list's
/// row type has a `cursor()`). Hand it back in [`Keyset::after`] for the next page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor<I> {
    /// The row's sort time (`created_at`, `timestamp_created`, `timestamp`, `received_at`);
    /// `None` for a row without one (sorted last).
    pub at: Option<DateTime<Utc>>,
    /// The row's id (ties on the time are ordered by id, descending).
    pub id: I,
}

/// A keyset page request for a list ordered newest first (time descending, rows without a time
/// last, ties by id descending): at most `limit` rows (clamped to 1..=[`MAX_PAGE_ROWS`]) that
/// sort after `after`, the [`Cursor`] of the previous page's last row (`None`: the first page).
///
/// Unlike an offset, a deep page costs what the first one costs: each list reads from an index
/// in its own order, starting at the cursor, and reads at most `limit` rows (plus `limit` rows
/// without a time, once the dated ones run out). Rows inserted while a client pages never shift
/// a page or repeat a row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keyset<I> {
    /// Maximum rows returned (clamped to 1..=[`MAX_PAGE_ROWS`]).
    pub limit: i64,
    /// The previous page's last row; `None` for the first page.
    pub after: Option<Cursor<I>>,
}

impl<I> Default for Keyset<I> {
    fn default() -> Self {
        Keyset {
            limit: 50,
            after: None,
        }
    }
}

impl<I> Keyset<I> {
    /// The first page of at most `limit` rows.
    pub fn first(limit: i64) -> Self {
        Keyset { limit, after: None }
    }

    /// The page of at most `limit` rows after `cursor`.
    pub fn after(limit: i64, cursor: Cursor<I>) -> Self {
        Keyset {
            limit,
            after: Some(cursor),
        }
    }

    /// The rows to return: `limit` clamped to 1..=[`MAX_PAGE_ROWS`] (the one bound of every
    /// backend's lists).
    pub fn limit(&self) -> i64 {
        self.limit.clamp(1, MAX_PAGE_ROWS)
    }

    /// The cursor's time as bound (`NULL` on the first page or after a row without a time).
    pub fn at(&self) -> Option<chrono::NaiveDateTime> {
        self.after
            .as_ref()
            .and_then(|c| c.at)
            .map(|t| t.naive_utc())
    }

    /// The cursor's id (`NULL` on the first page).
    pub fn id(&self) -> Option<&I> {
        self.after.as_ref().map(|c| &c.id)
    }

    /// Whether the previous page ended among the rows without a time (so no dated row is left).
    pub fn past_dated(&self) -> bool {
        matches!(&self.after, Some(Cursor { at: None, .. }))
    }
}
