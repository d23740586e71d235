//! planexe on SQLite: the operations of [`shared_db::planexe`] on the tables of
//! `sqlite/migrations/0002_planexe_schema.sql`, with the library's row types, errors and input
//! rules (one home for each: [`shared_db::planexe`]), so a service can swap the backend and keep
//! its code's types.
//!
//! What differs from PostgreSQL, and why:
//!
//! * **Ids.** UUID columns hold 32 lowercase hex digits without hyphens (what SQLAlchemy writes
//!   on SQLite, reference planexe.md §2.7); varchar references to them (`plans.user_id`,
//!   `api_key_id`, `external_id`, `workers.current_task_id`, the events' `task_id`) hold the
//!   hyphenated string, as on PostgreSQL. [`hex`] is the one conversion.
//! * **Time.** "now" is `strftime('%Y-%m-%d %H:%M:%f000', 'now')` in SQL: UTC, fixed width with
//!   six fractional digits like SQLAlchemy's SQLite `DATETIME`, so text order is time order
//!   (bound times are formatted by [`time_text`]).
//! * **Credits.** SQLAlchemy's `Numeric` on SQLite stores a REAL and raises on TEXT, so credits
//!   are stored as numbers; they are exact because every amount stays below [`MAX_CREDITS`] (at
//!   most 15 significant digits, which a double carries and gives back). Rust never computes on
//!   them in SQL: it reads them as text ([`credits`]), adds exact [`Decimal`]s, and writes the
//!   result as text ([`credits_text`]), which SQLite stores as the nearest double.
//! * **Serialisation.** Every multi-statement operation runs in [`crate::tx::transaction`]
//!   (`BEGIN IMMEDIATE`): SQLite has one writer at a time, so a write transaction sees every
//!   earlier commit and no other writer until it ends. That is what `FOR UPDATE` and
//!   `SKIP LOCKED` give on PostgreSQL: the claim hands each plan to one worker, a charge tests the
//!   newest balance, a repeated idempotency key finds the first request's row.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use shared_db::{Error, Result};
use uuid::Uuid;

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

/// The largest credit magnitude stored on SQLite: 999 999.999999999, the 15 significant digits
/// a double holds exactly (the schema's CHECKs refuse more). Smaller than PostgreSQL's
/// [`shared_db::planexe::MAX_CREDITS`] (`numeric(18,9)`).
pub const MAX_CREDITS: Decimal = Decimal::from_parts(2_764_472_319, 232_830, 0, false, 9);

/// A uuid column's text: 32 lowercase hex digits, no hyphens (SQLAlchemy's `UUIDType` on SQLite).
pub fn hex(id: Uuid) -> String {
    id.simple().to_string()
}

/// Parses an id column ([`hex`], or hyphenated as other writers may leave a reference).
pub(crate) fn uuid(text: &str) -> Result<Uuid> {
    Uuid::parse_str(text).map_err(|e| Error::internal(format!("stored id {text:?}: {e}")))
}

/// A time as the `DATETIME` columns hold it: `YYYY-MM-DD HH:MM:SS.ffffff`, UTC.
pub fn time_text(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

/// The time `age` before now, as [`time_text`] (the earliest time for an age beyond chrono's
/// range, so a huge threshold matches nothing rather than panicking).
pub(crate) fn ago(age: std::time::Duration) -> String {
    let at = chrono::Duration::from_std(age)
        .ok()
        .and_then(|age| Utc::now().checked_sub_signed(age))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    time_text(at)
}

/// Above every stored time: the upper bound of a keyset's first page (PostgreSQL's
/// `'infinity'::timestamp`), in the text form of [`time_text`].
pub(crate) const END_OF_TIME: &str = "9999-12-31 23:59:59.999999";

/// A credit amount as written: `amount` rounded to 9 places, refused with
/// [`Error::InvalidInput`] naming `field` beyond ±[`MAX_CREDITS`].
pub fn credits_text(field: &'static str, amount: Decimal) -> Result<String> {
    let amount = shared_db::planexe::round_credits(amount);
    if amount.abs() > MAX_CREDITS {
        return Err(Error::invalid_input(format!(
            "{field} must be within ±{MAX_CREDITS} on SQLite"
        )));
    }
    Ok(amount.normalize().to_string())
}

/// A stored credit amount, read as `CAST(col AS TEXT)` (SQLite prints a double with 15
/// significant digits, in exponent form for small ones), as the exact 9-place decimal written,
/// with 9 decimal places as PostgreSQL's `numeric(18,9)` gives it back (`15.500000000`), so an
/// amount prints and serialises the same on both backends, and a replayed outcome the same as
/// the first.
pub fn credits(text: &str) -> Result<Decimal> {
    text.parse::<Decimal>()
        .or_else(|_| Decimal::from_scientific(text))
        .map(nine_places)
        .map_err(|e| Error::internal(format!("stored credit amount {text:?}: {e}")))
}

/// `amount` rounded to 9 places and written with all 9 (`1` → `1.000000000`), as
/// PostgreSQL's `numeric(18,9)` answers it: the one form of every credit amount this backend
/// reads or answers, so a first answer and its replay serialise alike.
pub(crate) fn nine_places(amount: Decimal) -> Decimal {
    let mut amount = shared_db::planexe::round_credits(amount);
    amount.rescale(9);
    amount
}

/// [`credits`] of a nullable column.
pub(crate) fn credits_opt(text: Option<&str>) -> Result<Option<Decimal>> {
    text.map(credits).transpose()
}

/// JSON column text as a value; unparseable text (another writer's) reads as absent, like JSON
/// `null` and SQL NULL ([`shared_db::planexe::json_absent`]).
pub(crate) fn json(text: Option<String>) -> Option<shared_db::planexe::json::LossyJson> {
    let value = text.and_then(|t| shared_db::planexe::json::LossyJson::parse(t.as_bytes()).ok());
    shared_db::planexe::json_absent(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_amount_in_range_survives_the_double_and_its_text() {
        for text in [
            "0.000000001",
            "-0.000000001",
            "10.5",
            "123456.123456789",
            "999999.999999999",
            "-999999.999999999",
            "0.1",
            "0.3",
        ] {
            let amount: Decimal = text.parse().unwrap();
            let stored: f64 = credits_text("x", amount).unwrap().parse().unwrap();
            // SQLite's CAST(REAL AS TEXT): 15 significant digits.
            let printed = format!("{stored:.14e}");
            assert_eq!(credits(&printed).unwrap(), amount, "{text}");
        }
        assert!(credits_text("x", MAX_CREDITS + Decimal::new(1, 9)).is_err());
        // Nine places, as numeric(18,9) reads on PostgreSQL.
        assert_eq!(credits("15.5").unwrap().to_string(), "15.500000000");
        assert_eq!(credits("1.0e-09").unwrap().to_string(), "0.000000001");
    }
}
