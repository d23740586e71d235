//! `payment_record`: Stripe and Telegram payments (`PaymentRecord`), applied exactly once.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::json::LossyJson;
use super::{Cursor, Keyset, MAX_CREDITS, credit_amount, ident, json_absent, json_text};
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
    pub raw_payload: Option<LossyJson>,
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

/// A [`NewPayment`] after the input rules of [`apply`].
#[derive(Debug, Clone, PartialEq)]
pub struct CleanPayment {
    /// Credits bought, rounded to 9 places; positive.
    pub credits: Decimal,
    /// The provider, NUL bytes removed; 1..=32 characters.
    pub provider: String,
    /// The provider's payment id, NUL bytes removed; 1..=256 characters.
    pub provider_payment_id: String,
    /// The currency, NUL bytes removed; at most 16 characters.
    pub currency: String,
}

impl NewPayment<'_> {
    /// The payment after the input rules (the one home of them; the SQLite backend applies them
    /// too): [`Error::InvalidInput`] for credits that are not positive or do not fit
    /// `numeric(18,9)`, an empty or overlong provider or payment id, an overlong currency, or a
    /// negative amount paid.
    pub fn clean(&self) -> Result<CleanPayment> {
        let credits = credit_amount("payment credits", self.credits)?;
        let provider = ident("payment provider", self.provider, 32)?;
        let provider_payment_id = ident("provider payment id", self.provider_payment_id, 256)?;
        let currency = ident("payment currency", self.currency, 16)?;
        if provider.is_empty() || provider_payment_id.is_empty() {
            return Err(Error::invalid_input(
                "provider and provider payment id are required",
            ));
        }
        if self.amount < 0 {
            return Err(Error::invalid_input("payment amount must not be negative"));
        }
        Ok(CleanPayment {
            credits,
            provider,
            provider_payment_id,
            currency,
        })
    }
}

/// The replay rule of [`apply`] (shared with the SQLite backend): `Ok` when the payment its
/// provider payment id already names, `(user, credits, amount, currency)`, is this one
/// (`credits` and `currency` as cleaned), else [`Error::IdempotencyKeyReused`] naming the
/// first field that differs.
pub fn same_payment(
    payment: &NewPayment<'_>,
    credits: &Decimal,
    currency: &str,
    prior: (Uuid, Decimal, i32, &str),
) -> Result<()> {
    let (user_id, prior_credits, amount, prior_currency) = prior;
    let differs = if user_id != payment.user_id {
        "user"
    } else if prior_credits != *credits {
        "credits"
    } else if amount != payment.amount {
        "amount"
    } else if prior_currency != currency {
        "currency"
    } else {
        return Ok(());
    };
    Err(Error::idempotency_key_reused(differs))
}

/// What [`apply`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum PaymentOutcome {
    /// Recorded and credited: by this call, or, for a repeat of the same payment, by the first
    /// call, whose outcome (its payment row and the balance right after it) this is.
    Applied {
        /// The `payment_record` row.
        payment_id: Uuid,
        /// The user's balance right after the payment was credited.
        new_balance: Decimal,
    },
    /// The same payment was recorded by another writer (a Python service), which keeps no
    /// outcome to replay; nothing changed.
    Duplicate {
        /// The `payment_record` row that writer made.
        payment_id: Uuid,
    },
}

/// Apply a payment once: the `payment_record` row (status `completed`), the ledger row
/// (`credits_purchased`, source = provider, external id = provider payment id, with the balance
/// after it), the balance increment and a `GENERIC_EVENT` are written by one statement.
///
/// The provider payment id is the payment's natural idempotency key, scoped to its provider, and
/// `apply` follows the replay contract of the [module docs](super): the same payment delivered
/// again — concurrently (webhook + success page; the repeat waits for the first on
/// `uq_payment_record_provider_payment_id`), later, or by `tx::retry` after a connection lost at
/// COMMIT — credits nothing and answers the first outcome, [`PaymentOutcome::Applied`] with the
/// first call's payment row and balance ([`PaymentOutcome::Duplicate`] when a Python service
/// recorded it). The same payment id with another user, credits, amount or currency is
/// [`Error::IdempotencyKeyReused`] naming the field; nothing is written.
///
/// Identifiers are never cut: a provider longer than 32, a payment id longer than 256 or a currency
/// longer than 16 characters is [`Error::InvalidInput`] naming the field. So is a negative amount
/// paid, and an amount of credits outside `numeric(18,9)` or one that would take the balance
/// beyond [`MAX_CREDITS`]; nothing is written. [`Error::NotFound`] if the user does not exist
/// (nothing is written). One round trip for a new payment, two for a repeat.
#[tracing::instrument(skip_all)]
pub async fn apply(conn: &mut PgConnection, payment: &NewPayment<'_>) -> Result<PaymentOutcome> {
    let CleanPayment {
        credits,
        provider,
        provider_payment_id,
        currency,
    } = payment.clean()?;
    let row = sqlx::query!(
        r#"WITH usr AS (
               -- the user, if the credits keep the balance in range
               SELECT id FROM user_account WHERE id = $1 AND credits_balance + $4 <= $8),
           pay AS (
               -- the payment row; a repeat (also one in flight) meets the unique index
               INSERT INTO payment_record (id, user_id, provider, provider_payment_id, credits,
                                           amount, currency, status, raw_payload, created_at)
               SELECT gen_random_uuid(), usr.id, $2, $3, $4, $5, $6, 'completed', $7::text::json,
                      now() AT TIME ZONE 'utc'
               FROM usr
               ON CONFLICT (provider, provider_payment_id) DO NOTHING
               RETURNING id, user_id, credits),
           bal AS (
               -- credit the balance
               UPDATE user_account a
                  SET credits_balance = a.credits_balance + pay.credits,
                      updated_at = now() AT TIME ZONE 'utc'
               FROM pay WHERE a.id = pay.user_id
               RETURNING a.credits_balance),
           ledger AS (
               -- the ledger row, with the balance after it: the outcome a repeat answers
               INSERT INTO credit_history (id, user_id, delta, reason, source, external_id,
                                           created_at, balance_after)
               SELECT gen_random_uuid(), pay.user_id, pay.credits, 'credits_purchased', $2, $3,
                      now() AT TIME ZONE 'utc', bal.credits_balance
               FROM pay, bal),
           event AS (
               -- the purchase event
               INSERT INTO events ("timestamp", event_type, message, context)
               SELECT now() AT TIME ZONE 'utc', 'GENERIC_EVENT', 'Credits purchased',
                      json_build_object('user_id', pay.user_id::text, 'provider', $2::text,
                                        'provider_payment_id', $3::text, 'credits', pay.credits)
               FROM pay)
           SELECT EXISTS (SELECT 1 FROM user_account WHERE id = $1) AS "user_exists!",
                  EXISTS (SELECT 1 FROM usr) AS "in_range!",
                  (SELECT id FROM pay) AS payment_id,
                  (SELECT credits_balance FROM bal) AS new_balance"#,
        payment.user_id,
        provider,
        provider_payment_id,
        credits,
        payment.amount,
        currency,
        json_text(payment.raw_payload),
        MAX_CREDITS,
    )
    .fetch_one(&mut *conn)
    .await?;
    if let (Some(payment_id), Some(new_balance)) = (row.payment_id, row.new_balance) {
        return Ok(PaymentOutcome::Applied {
            payment_id,
            new_balance,
        });
    }
    // Not written: the payment is known (this statement's fresh snapshot sees a first call that
    // committed while we waited), or the user is missing or would leave the range.
    let prior = sqlx::query!(
        r#"SELECT p.id, p.user_id, p.credits, p.amount, p.currency,
                  (SELECT c.balance_after FROM credit_history c
                   WHERE c.external_id = p.provider_payment_id AND c.source = p.provider
                     AND c.reason = 'credits_purchased' AND c.balance_after IS NOT NULL
                   ORDER BY c.created_at LIMIT 1) AS balance_after
           FROM payment_record p WHERE p.provider = $1 AND p.provider_payment_id = $2"#,
        provider,
        provider_payment_id,
    )
    .fetch_optional(&mut *conn)
    .await?;
    let Some(prior) = prior else {
        return Err(if !row.user_exists {
            Error::NotFound
        } else {
            Error::invalid_input(format!(
                "the payment would take the balance above {MAX_CREDITS} (numeric(18,9))"
            ))
        });
    };
    same_payment(
        payment,
        &credits,
        &currency,
        (prior.user_id, prior.credits, prior.amount, &prior.currency),
    )?;
    Ok(match prior.balance_after {
        Some(new_balance) => PaymentOutcome::Applied {
            payment_id: prior.id,
            new_balance,
        },
        None => PaymentOutcome::Duplicate {
            payment_id: prior.id,
        },
    })
}

/// A payment by provider and provider payment id. [`Error::NotFound`] if absent;
/// [`Error::InvalidInput`] for ids longer than [`apply`] accepts. One round trip.
#[tracing::instrument(skip_all)]
pub async fn get_by_provider_id(
    ex: impl PgExecutor<'_>,
    provider: &str,
    provider_payment_id: &str,
) -> Result<PaymentRecord> {
    let provider = ident("payment provider", provider, 32)?;
    let provider_payment_id = ident("provider payment id", provider_payment_id, 256)?;
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

impl PaymentRecord {
    /// This row's place in the list, for the next [`list_for_user`] page.
    pub fn cursor(&self) -> Cursor<Uuid> {
        Cursor {
            at: self.created_at,
            id: self.id,
        }
    }
}

/// A user's payments, newest first (rows without a time last, ties by id descending), by keyset:
/// at most `page.limit` rows after `page.after`, read from
/// `ix_payment_record_user_id_created_at_desc` (migration 0073) starting at the cursor. One round
/// trip.
#[tracing::instrument(skip_all, fields(%user_id))]
pub async fn list_for_user(
    ex: impl PgExecutor<'_>,
    user_id: Uuid,
    page: Keyset<Uuid>,
) -> Result<Vec<PaymentRecord>> {
    let rows = sqlx::query_as!(
        PaymentRecord,
        r#"SELECT id AS "id!", user_id AS "user_id!", provider AS "provider!",
                  provider_payment_id AS "provider_payment_id!", credits AS "credits!",
                  amount AS "amount!", currency AS "currency!", status AS "status!", raw_payload,
                  created_at AS "created_at: DateTime<Utc>"
           FROM (
               -- rows with a time, from the cursor on (none once past them)
               (SELECT id, user_id, provider, provider_payment_id, credits, amount, currency,
                       status, raw_payload, created_at
                FROM payment_record
                WHERE user_id = $1 AND NOT $5
                  AND created_at <= coalesce($2, 'infinity'::timestamp)
                  AND (created_at < coalesce($2, 'infinity'::timestamp) OR id < $3)
                ORDER BY created_at DESC NULLS LAST, id DESC
                LIMIT $4)
               UNION ALL
               -- then the rows without one (by id, in the index's order)
               (SELECT id, user_id, provider, provider_payment_id, credits, amount, currency,
                       status, raw_payload, created_at
                FROM payment_record
                WHERE user_id = $1 AND created_at IS NULL AND (NOT $5 OR id < $3)
                ORDER BY created_at DESC NULLS LAST, id DESC
                LIMIT $4)) page
           ORDER BY created_at DESC NULLS LAST, id DESC
           LIMIT $4"#,
        user_id,
        page.at(),
        page.id(),
        page.limit(),
        page.past_dated(),
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
