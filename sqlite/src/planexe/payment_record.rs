//! `payment_record` on SQLite: Stripe and Telegram payments, applied exactly once ([`apply`]),
//! and read back ([`get_by_provider_id`], [`list_for_user`]), with the row types, replay contract
//! and errors of [`shared_db::planexe::payment_record`].
//!
//! [`apply`] is one `BEGIN IMMEDIATE` transaction: the lookup of the provider payment id, the
//! payment row, the ledger row, the balance and the purchase event are written under the write
//! lock, so a webhook and the success page delivering the same payment at once (in one process
//! or in several on the file) credit it once: the second finds the first's row and answers its
//! outcome. `uq_payment_record_provider_payment_id` backs this for writers that do not take the
//! lock first (a Python service): their duplicate fails instead of crediting twice.
//!
//! Credits are exact [`Decimal`](rust_decimal::Decimal)s, stored and read as [`super`] describes
//! (the SQLite range is ±[`MAX_CREDITS`](super::MAX_CREDITS)). The provider's payload is stored
//! as received and never logged or put in an error.

use chrono::{DateTime, Utc};
use serde_json::json;
use shared_db::planexe::payment_record::{
    CleanPayment, NewPayment, PaymentOutcome, PaymentRecord, same_payment,
};
use shared_db::planexe::{EventType, Keyset, MAX_PAGE_ROWS, ident, json_text};
use shared_db::{Error, Result};
use sqlx::SqliteConnection;
use uuid::Uuid;

use super::{credits, credits_opt, credits_text, hex, json, time_text, uuid};
use crate::error::from_sqlx;
use crate::tx::transaction;

/// The ledger reason of a purchase (the Python frontend's).
const REASON_PURCHASE: &str = "credits_purchased";

/// A `payment_record` row as SQLite returns it; [`PaymentRow::into_record`] makes it the
/// library's [`PaymentRecord`].
struct PaymentRow {
    id: String,
    user_id: String,
    provider: String,
    provider_payment_id: String,
    credits: String,
    amount: i32,
    currency: String,
    status: String,
    raw_payload: Option<String>,
    created_at: Option<DateTime<Utc>>,
}

impl PaymentRow {
    fn into_record(self) -> Result<PaymentRecord> {
        Ok(PaymentRecord {
            id: uuid(&self.id)?,
            user_id: uuid(&self.user_id)?,
            provider: self.provider,
            provider_payment_id: self.provider_payment_id,
            credits: credits(&self.credits)?,
            amount: self.amount,
            currency: self.currency,
            status: self.status,
            raw_payload: json(self.raw_payload),
            created_at: self.created_at,
        })
    }
}

/// Apply a payment once, as [`shared_db::planexe::payment_record::apply`]: the `payment_record`
/// row (status `completed`), the ledger row (`credits_purchased`, source the provider, external
/// id the provider payment id, with the balance after it), the balance increment and a
/// `GENERIC_EVENT` "Credits purchased", in one `BEGIN IMMEDIATE` transaction.
///
/// The provider payment id, scoped to its provider, is the idempotency key: the same payment
/// delivered again (concurrently, later, or by `tx::retry` after an unknown outcome) credits
/// nothing and answers the first outcome, [`PaymentOutcome::Applied`] with the first call's
/// payment row and balance ([`PaymentOutcome::Duplicate`] when a Python service recorded it and
/// left no outcome). The same id with another user, credits, amount or currency is
/// [`Error::IdempotencyKeyReused`] naming the field; nothing is written.
///
/// Input rules as on PostgreSQL: a provider longer than 32, a payment id longer than 256 or a
/// currency longer than 16 characters, an empty provider or payment id, a negative amount paid,
/// credits that are not positive are [`Error::InvalidInput`]; so are credits, or a resulting
/// balance, beyond the SQLite range. [`Error::NotFound`] without the user. Nothing is written
/// on any error.
#[tracing::instrument(target = "shared_db_sqlite::planexe::payment_record", skip_all)]
pub async fn apply(
    conn: &mut SqliteConnection,
    payment: &NewPayment<'_>,
) -> Result<PaymentOutcome> {
    let CleanPayment {
        credits,
        provider,
        provider_payment_id,
        currency,
    } = payment.clean()?;
    credits_text("payment credits", credits)?;
    let raw_payload = json_text(payment.raw_payload);
    transaction(conn, async |tx| {
        // A payment already recorded (under the write lock: also one that committed while this
        // call waited for the lock) answers its first outcome.
        let prior = sqlx::query!(
            r#"SELECT p.id AS "id!", p.user_id AS "user_id!",
                      CAST(p.credits AS TEXT) AS "credits!: String", p.amount AS "amount!: i32",
                      p.currency AS "currency!",
                      (SELECT CAST(c.balance_after AS TEXT) FROM credit_history c
                       WHERE c.external_id = p.provider_payment_id AND c.source = p.provider
                         AND c.reason = 'credits_purchased' AND c.balance_after IS NOT NULL
                       ORDER BY c.created_at NULLS LAST LIMIT 1) AS "balance_after?: String"
               FROM payment_record p WHERE p.provider = ?1 AND p.provider_payment_id = ?2"#,
            provider,
            provider_payment_id,
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        if let Some(prior) = prior {
            same_payment(
                payment,
                &credits,
                &currency,
                (
                    uuid(&prior.user_id)?,
                    super::credits(&prior.credits)?,
                    prior.amount,
                    &prior.currency,
                ),
            )?;
            let payment_id = uuid(&prior.id)?;
            return Ok(match credits_opt(prior.balance_after.as_deref())? {
                Some(new_balance) => PaymentOutcome::Applied {
                    payment_id,
                    new_balance,
                },
                None => PaymentOutcome::Duplicate { payment_id },
            });
        }
        // The ledger row and the balance (NotFound without the user; the range checked).
        let change = super::credit_history::credit_in_transaction(
            &mut *tx,
            payment.user_id,
            credits,
            REASON_PURCHASE,
            &provider,
            Some(&provider_payment_id),
        )
        .await?;
        // The payment row.
        let payment_id = Uuid::new_v4();
        sqlx::query!(
            r#"INSERT INTO payment_record (id, user_id, provider, provider_payment_id, credits,
                                           amount, currency, status, raw_payload, created_at)
               VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'completed', ?8,
                       strftime('%Y-%m-%d %H:%M:%f000', 'now'))"#,
            hex(payment_id),
            hex(payment.user_id),
            provider,
            provider_payment_id,
            credits_text("payment credits", credits)?,
            payment.amount,
            currency,
            raw_payload,
        )
        .execute(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        // The purchase event; credits as a JSON number of the same value as PostgreSQL's
        // json_build_object writes (which keeps numeric's nine places: `10.000000000` there,
        // `10` here; a JSON reader gets the same number, Python an int here and a float there).
        let amount: serde_json::Number = credits_text("payment credits", credits)?
            .parse()
            .map_err(|e| Error::internal(format!("credits as JSON: {e}")))?;
        let context = json!({
            "user_id": payment.user_id.to_string(),
            "provider": provider,
            "provider_payment_id": provider_payment_id,
            "credits": amount,
        });
        super::events::append(
            &mut *tx,
            EventType::GenericEvent,
            "Credits purchased",
            Some(&context),
        )
        .await?;
        Ok(PaymentOutcome::Applied {
            payment_id,
            new_balance: change.new_balance,
        })
    })
    .await
}

/// A payment by provider and provider payment id, as
/// [`shared_db::planexe::payment_record::get_by_provider_id`]: [`Error::NotFound`] if absent;
/// [`Error::InvalidInput`] for ids longer than [`apply`] accepts.
#[tracing::instrument(target = "shared_db_sqlite::planexe::payment_record", skip_all)]
pub async fn get_by_provider_id(
    conn: &mut SqliteConnection,
    provider: &str,
    provider_payment_id: &str,
) -> Result<PaymentRecord> {
    let provider = ident("payment provider", provider, 32)?;
    let provider_payment_id = ident("provider payment id", provider_payment_id, 256)?;
    sqlx::query_as!(
        PaymentRow,
        r#"SELECT id AS "id!", user_id AS "user_id!", provider AS "provider!",
                  provider_payment_id AS "provider_payment_id!",
                  CAST(credits AS TEXT) AS "credits!: String", amount AS "amount!: i32",
                  currency AS "currency!", status AS "status!", raw_payload AS "raw_payload?",
                  created_at AS "created_at?: DateTime<Utc>"
           FROM payment_record WHERE provider = ?1 AND provider_payment_id = ?2"#,
        provider,
        provider_payment_id,
    )
    .fetch_optional(conn)
    .await
    .map_err(from_sqlx)?
    .ok_or(Error::NotFound)?
    .into_record()
}

/// A user's payments, newest first (rows without a time last, ties by id descending), by keyset
/// as [`shared_db::planexe::payment_record::list_for_user`]: at most `page.limit` rows (clamped
/// to 1..=[`MAX_PAGE_ROWS`]) after `page.after` ([`PaymentRecord::cursor`] of the previous
/// page's last row), read from `ix_payment_record_user_id_created_at_desc`.
#[tracing::instrument(target = "shared_db_sqlite::planexe::payment_record", skip_all, fields(%user_id))]
pub async fn list_for_user(
    conn: &mut SqliteConnection,
    user_id: Uuid,
    page: Keyset<Uuid>,
) -> Result<Vec<PaymentRecord>> {
    let limit = page.limit.clamp(1, MAX_PAGE_ROWS);
    let after = page.after.as_ref();
    let at = after.and_then(|c| c.at).map(time_text);
    let id = after.map(|c| hex(c.id));
    // The previous page ended among the rows without a time: no dated row is left.
    let past_dated = after.is_some_and(|c| c.at.is_none());
    let rows = sqlx::query_as!(
        PaymentRow,
        r#"SELECT id AS "id!", user_id AS "user_id!", provider AS "provider!",
                  provider_payment_id AS "provider_payment_id!",
                  CAST(credits AS TEXT) AS "credits!: String", amount AS "amount!: i32",
                  currency AS "currency!", status AS "status!", raw_payload AS "raw_payload?",
                  created_at AS "created_at?: DateTime<Utc>"
           FROM payment_record
           WHERE user_id = ?1
             AND (
                 -- rows with a time, after the cursor (all on the first page)
                 (NOT ?4 AND created_at IS NOT NULL
                  AND (?2 IS NULL OR created_at < ?2 OR (created_at = ?2 AND id < ?3)))
                 -- then the rows without one, by id
                 OR (created_at IS NULL AND (NOT ?4 OR id < ?3)))
           ORDER BY created_at DESC NULLS LAST, id DESC
           LIMIT ?5"#,
        hex(user_id),
        at,
        id,
        past_dated,
        limit,
    )
    .fetch_all(conn)
    .await
    .map_err(from_sqlx)?;
    rows.into_iter().map(PaymentRow::into_record).collect()
}
