//! `payment_record`: Stripe and Telegram payments (`PaymentRecord`), applied exactly once.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::Value;
use sqlx::PgExecutor;
use uuid::Uuid;

use super::{clean_text, json_absent, json_text, round_credits};
use crate::error::{Error, Result};

/// One row of `payment_record`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PaymentRecord {
    /// Primary key.
    pub id: Uuid,
    /// The `user_account` credited.
    pub user_id: Uuid,
    /// `stripe` or `telegram`.
    pub provider: String,
    /// Stripe checkout session id, or Telegram `telegram_payment_charge_id`.
    pub provider_payment_id: String,
    /// Credits added to the balance.
    pub credits: Decimal,
    /// Amount paid in minor units (cents, Telegram Stars).
    pub amount: i32,
    /// Currency of `amount`: `usd`, `XTR`, ...
    pub currency: String,
    /// Always `completed`.
    pub status: String,
    /// The provider's payload as received; SQL NULL and JSON `null` read as `None`.
    pub raw_payload: Option<Value>,
    /// UTC.
    pub created_at: Option<DateTime<Utc>>,
}

/// A payment to apply.
#[derive(Debug, Clone, Default)]
pub struct NewPayment<'a> {
    /// The user credited.
    pub user_id: Uuid,
    /// `stripe` or `telegram` (also the ledger `source`).
    pub provider: &'a str,
    /// The provider's payment id (the idempotency key together with `provider`).
    pub provider_payment_id: &'a str,
    /// Credits bought (positive; rounded to 9 places).
    pub credits: Decimal,
    /// Amount paid in minor units.
    pub amount: i32,
    /// Currency of `amount` (`usd`, `XTR`).
    pub currency: &'a str,
    /// The provider's payload, stored as received; `None` writes SQL NULL.
    pub raw_payload: Option<&'a Value>,
}

/// What [`apply`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum PaymentOutcome {
    /// Recorded and credited.
    Applied {
        /// The new `payment_record` row.
        payment_id: Uuid,
        /// The user's balance afterwards.
        new_balance: Decimal,
    },
    /// This provider payment was applied before (or concurrently); nothing changed.
    Duplicate,
}

/// Apply a payment once: the `payment_record` row (status `completed`), the ledger row
/// (`credits_purchased`, source = provider, external id = provider payment id), the balance increment
/// and a `GENERIC_EVENT` are written by one statement. The insert is gated by
/// `uq_payment_record_provider_payment_id` with `ON CONFLICT DO NOTHING`: the same payment delivered
/// again — concurrently (webhook + success page) or later — credits nothing and returns
/// [`PaymentOutcome::Duplicate`]. [`Error::NotFound`] if the user does not exist (nothing is
/// written). One round trip.
#[tracing::instrument(skip_all)]
pub async fn apply(ex: impl PgExecutor<'_>, payment: &NewPayment<'_>) -> Result<PaymentOutcome> {
    let credits = round_credits(payment.credits);
    if credits <= Decimal::ZERO {
        return Err(Error::invalid_input("payment credits must be positive"));
    }
    if payment.provider.is_empty() || payment.provider_payment_id.is_empty() {
        return Err(Error::invalid_input(
            "provider and provider payment id are required",
        ));
    }
    let row = sqlx::query!(
        r#"WITH usr AS (SELECT id FROM user_account WHERE id = $1),
           pay AS (
               INSERT INTO payment_record (id, user_id, provider, provider_payment_id, credits,
                                           amount, currency, status, raw_payload, created_at)
               SELECT gen_random_uuid(), usr.id, $2, $3, $4, $5, $6, 'completed', $7::text::json,
                      now() AT TIME ZONE 'utc'
               FROM usr
               ON CONFLICT (provider, provider_payment_id) DO NOTHING
               RETURNING id, user_id, credits),
           ledger AS (
               INSERT INTO credit_history (id, user_id, delta, reason, source, external_id,
                                           created_at)
               SELECT gen_random_uuid(), pay.user_id, pay.credits, 'credits_purchased', $2, $3,
                      now() AT TIME ZONE 'utc'
               FROM pay),
           bal AS (
               UPDATE user_account a
                  SET credits_balance = a.credits_balance + pay.credits,
                      updated_at = now() AT TIME ZONE 'utc'
               FROM pay WHERE a.id = pay.user_id
               RETURNING a.credits_balance),
           event AS (
               INSERT INTO events ("timestamp", event_type, message, context)
               SELECT now() AT TIME ZONE 'utc', 'GENERIC_EVENT', 'Credits purchased',
                      json_build_object('user_id', pay.user_id::text, 'provider', $2::text,
                                        'provider_payment_id', $3::text, 'credits', pay.credits)
               FROM pay)
           SELECT EXISTS (SELECT 1 FROM usr) AS "user_exists!",
                  (SELECT id FROM pay) AS payment_id,
                  (SELECT credits_balance FROM bal) AS new_balance"#,
        payment.user_id,
        clean_text(payment.provider, 32),
        clean_text(payment.provider_payment_id, 256),
        credits,
        payment.amount,
        clean_text(payment.currency, 16),
        json_text(payment.raw_payload),
    )
    .fetch_one(ex)
    .await?;
    match (row.user_exists, row.payment_id, row.new_balance) {
        (false, _, _) => Err(Error::NotFound),
        (true, Some(payment_id), Some(new_balance)) => Ok(PaymentOutcome::Applied {
            payment_id,
            new_balance,
        }),
        (true, _, _) => Ok(PaymentOutcome::Duplicate),
    }
}

/// A payment by provider and provider payment id. [`Error::NotFound`] if absent. One round trip.
#[tracing::instrument(skip_all)]
pub async fn get_by_provider_id(
    ex: impl PgExecutor<'_>,
    provider: &str,
    provider_payment_id: &str,
) -> Result<PaymentRecord> {
    sqlx::query_as!(
        PaymentRecord,
        r#"SELECT id, user_id, provider, provider_payment_id, credits, amount, currency, status,
                  raw_payload, created_at
           FROM payment_record WHERE provider = $1 AND provider_payment_id = $2"#,
        provider,
        provider_payment_id,
    )
    .fetch_optional(ex)
    .await?
    .map(|mut p| {
        p.raw_payload = json_absent(p.raw_payload);
        p
    })
    .ok_or(Error::NotFound)
}

/// A user's payments, newest first. One round trip.
#[tracing::instrument(skip_all, fields(%user_id))]
pub async fn list_for_user(ex: impl PgExecutor<'_>, user_id: Uuid) -> Result<Vec<PaymentRecord>> {
    let rows = sqlx::query_as!(
        PaymentRecord,
        r#"SELECT id, user_id, provider, provider_payment_id, credits, amount, currency, status,
                  raw_payload, created_at
           FROM payment_record WHERE user_id = $1 ORDER BY created_at DESC NULLS LAST, id"#,
        user_id,
    )
    .fetch_all(ex)
    .await?;
    Ok(rows
        .into_iter()
        .map(|mut p| {
            p.raw_payload = json_absent(p.raw_payload);
            p
        })
        .collect())
}
