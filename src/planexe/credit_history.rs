//! `credit_history` + `user_account.credits_balance`: the credit ledger and the balance it explains.
//!
//! **Invariant:** for every user written only through this module, `credits_balance ==
//! SUM(credit_history.delta)`. Every function appends its ledger row and moves the balance by the
//! same amount *relatively* (`credits_balance = credits_balance + delta`) in one statement or one
//! transaction, so concurrent charges, grants and purchases cannot lose updates (the Python
//! read-modify-write can). Nothing is clamped: a charge that would go below zero is refused with
//! [`Error::InsufficientCredits`], except usage billing, which bills work already done and may
//! leave a negative balance (a debt that the next purchase pays back) — the balance still equals the
//! ledger sum. [`reconcile`] lists users for whom it does not hold (e.g. rows written by the Python
//! services, which clamp purchases and grants at 0).
//!
//! Usage billing is per plan *attempt*: incremental rows (`usage_billing_progress`) during the run,
//! one final row (`usage_billing`, unique per plan among unsettled rows:
//! `uq_credit_history_usage_billing_final`) at the end, also when the run fails or is stopped (the
//! usage already incurred, once). Retry, resume and the reaper settle the attempt's rows
//! (`source = 'usage_billing_settled'`) by the one settle rule ([`settle_plan_usage`]), so the
//! next attempt is billed afresh.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::plans::Attempt;
use super::{
    Cursor, Keyset, MAX_CREDITS, clean_opt, clean_text, credit_amount, ident, ident_opt,
    round_credits,
};
use crate::error::{Error, Result};

/// `source` of incremental usage rows.
pub const SOURCE_USAGE_PROGRESS: &str = "usage_billing_progress";
/// `source` of the final usage row of an attempt.
pub const SOURCE_USAGE_FINAL: &str = "usage_billing";
/// `source` of usage rows of a finished (retried/resumed/reaped) attempt.
pub const SOURCE_USAGE_SETTLED: &str = "usage_billing_settled";
/// `source` of admin grants.
pub const SOURCE_ADMIN: &str = "admin";

/// One row of `credit_history`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CreditEntry {
    /// Primary key.
    pub id: Uuid,
    /// The `user_account` whose balance moved.
    pub user_id: Uuid,
    /// Signed amount in credits: positive for purchases and grants, negative for usage.
    pub delta: Decimal,
    /// `plan_usage_in_progress`, `plan_created_with_usage_cost`, `credits_purchased`, ...
    pub reason: String,
    /// `usage_billing_progress`, `usage_billing`, `usage_billing_settled`, `stripe`, `telegram`, `admin`.
    pub source: String,
    /// Plan id (usage) or provider payment id (purchase).
    pub external_id: Option<String>,
    /// `user_api_key.id` as text; `None` for charges not made through a key.
    pub api_key_id: Option<String>,
    /// UTC.
    pub created_at: Option<DateTime<Utc>>,
}

/// A ledger row appended and the balance it produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BalanceChange {
    /// The new ledger row.
    pub entry_id: Uuid,
    /// Signed amount in credits (negative for a charge).
    pub delta: Decimal,
    /// The user's balance afterwards.
    pub new_balance: Decimal,
}

/// The longest idempotency key a caller may give ([`Charge::idempotency_key`], [`grant`]), in
/// characters. A longer key is refused with [`Error::InvalidInput`] naming the field, never cut.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 128;

/// The stored form of a caller's idempotency key: `caller:<user id>:<key>`, so that a key is
/// scoped to its user (two users' equal keys are two keys, and one user's key never answers for
/// another). Usage billing stores keys of its own (`usage_progress:…`, `usage_final:…`).
/// 1..=[`MAX_IDEMPOTENCY_KEY_CHARS`] characters after NUL bytes are stripped.
pub fn caller_key(user_id: Uuid, key: Option<&str>) -> Result<Option<String>> {
    let Some(key) = ident_opt("idempotency key", key, MAX_IDEMPOTENCY_KEY_CHARS)? else {
        return Ok(None);
    };
    if key.is_empty() {
        return Err(Error::invalid_input("idempotency key must not be empty"));
    }
    Ok(Some(format!("caller:{user_id}:{key}")))
}

/// The form releases before the per-user scope stored the same key in (`caller:<key>`). During a
/// rolling deploy a request may reach an older pod and its retry a newer one; the newer one
/// treats a row of that form **for the same user** as the first outcome, so the retry applies
/// nothing. (The opposite order, a request on a newer pod retried on an older one, is not
/// covered: the older code cannot know the new form.)
fn legacy_caller_key(key: Option<&str>) -> Option<String> {
    key.map(|k| format!("caller:{}", clean_text(k, usize::MAX)))
}

/// The request fields a keyed charge or grant is compared on when its key was used before.
#[allow(missing_docs)]
pub struct Request<'a> {
    pub delta: Decimal,
    pub reason: &'a str,
    pub source: &'a str,
    pub external_id: Option<&'a str>,
    pub api_key_id: Option<&'a str>,
}

/// The ledger row a key already names.
#[allow(missing_docs)]
pub struct Prior {
    pub id: Uuid,
    pub delta: Decimal,
    pub reason: String,
    pub source: String,
    pub external_id: Option<String>,
    pub api_key_id: Option<String>,
    pub balance_after: Option<Decimal>,
}

/// What a usage debit of `delta` (never positive) charged: `-delta`, with a zero debit answered
/// as `0`, not `-0` (a negated `Decimal` zero keeps its sign and prints `-0.000000000`), so a
/// first answer and its replay print and serialise alike. Shared with the SQLite backend.
pub fn charged_by(delta: Decimal) -> Decimal {
    let mut charged = -delta;
    if charged.is_zero() {
        charged.set_sign_positive(true);
    }
    charged
}

/// The replay rule of the module docs for a charge or grant whose key names `prior`: the first
/// outcome when the request is the same, else [`Error::IdempotencyKeyReused`] naming the first
/// field that differs.
pub fn replay(
    request: &Request<'_>,
    prior: Prior,
    current_balance: Option<Decimal>,
) -> Result<BalanceChange> {
    let differs = if prior.delta != request.delta {
        Some("amount")
    } else if prior.source != request.source {
        Some("source")
    } else if prior.external_id.as_deref() != request.external_id {
        Some("external id")
    } else if prior.api_key_id.as_deref() != request.api_key_id {
        Some("api key")
    } else if prior.reason != request.reason {
        Some("reason")
    } else {
        None
    };
    if let Some(field) = differs {
        return Err(Error::idempotency_key_reused(field));
    }
    Ok(BalanceChange {
        entry_id: prior.id,
        delta: prior.delta,
        new_balance: prior.balance_after.or(current_balance).unwrap_or_default(),
    })
}

/// The ledger row an idempotency key names (in its per-user form `key`, or in the older form
/// `legacy` on a row of `user_id`), read under a fresh snapshot (so a first request that
/// committed while this one waited for it is seen).
async fn prior_by_key(
    conn: &mut PgConnection,
    key: &str,
    legacy: Option<&str>,
    user_id: Uuid,
) -> Result<Option<Prior>> {
    Ok(sqlx::query_as!(
        Prior,
        r#"SELECT id, delta, reason, source, external_id, api_key_id, balance_after
           FROM credit_history
           WHERE idempotency_key = $1 OR (idempotency_key = $2 AND user_id = $3)
           ORDER BY idempotency_key = $1 DESC
           LIMIT 1"#,
        key,
        legacy,
        user_id,
    )
    .fetch_optional(&mut *conn)
    .await?)
}

/// Locks the user row ([`Error::NotFound`] if it does not exist); usage billing serialises all
/// billing of a user on it.
async fn lock_user(conn: &mut PgConnection, user_id: Uuid) -> Result<()> {
    sqlx::query_scalar!(
        "SELECT id FROM user_account WHERE id = $1 FOR UPDATE",
        user_id
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(Error::NotFound)?;
    Ok(())
}

/// Grant credits (admin "add credits"): ledger row (`source = 'admin'`, reason defaults to
/// `admin_grant`) and balance move in one statement.
///
/// With an `idempotency_key` (the caller's, at most [`MAX_IDEMPOTENCY_KEY_CHARS`] characters,
/// scoped to `user_id`) the grant follows the replay contract of the [module docs](super): a
/// repeat returns the first outcome without moving the balance again, also while the first is
/// still in flight (it waits for it on the user row); the key used with another amount or reason
/// is [`Error::IdempotencyKeyReused`] naming the field. [`Error::InvalidInput`], nothing written,
/// when the amount is not positive or the balance would leave `numeric(18,9)`; [`Error::NotFound`]
/// if the user does not exist. One round trip; a repeat reads the first outcome in a second one.
#[tracing::instrument(skip_all, fields(%user_id))]
pub async fn grant(
    conn: &mut PgConnection,
    user_id: Uuid,
    amount: Decimal,
    reason: Option<&str>,
    idempotency_key: Option<&str>,
) -> Result<BalanceChange> {
    let amount = credit_amount("grant amount", amount)?;
    let key = caller_key(user_id, idempotency_key)?;
    let legacy = legacy_caller_key(idempotency_key);
    let reason = clean_opt(reason, 128)
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "admin_grant".to_owned());
    let row = sqlx::query!(
        r#"WITH usr AS (
               -- lock the user: a request of the user in flight (a duplicate among them) is
               -- waited for, and the balance read is the newest
               SELECT id, credits_balance FROM user_account WHERE id = $1 FOR UPDATE),
           l AS (
               -- the ledger row, if the range allows it; a key already used writes nothing
               INSERT INTO credit_history (id, user_id, delta, reason, source, created_at,
                                           idempotency_key, balance_after)
               SELECT gen_random_uuid(), usr.id, $2, $3, 'admin', now() AT TIME ZONE 'utc', $4,
                      usr.credits_balance + $2
               FROM usr WHERE usr.credits_balance + $2 <= $5
                 -- nor does the same key in the older release's form, for this user
                 AND NOT EXISTS (SELECT 1 FROM credit_history h
                                 WHERE h.idempotency_key = $6 AND h.user_id = $1)
               ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
               RETURNING id, balance_after),
           u AS (
               -- move the balance by the row written
               UPDATE user_account a
                  SET credits_balance = a.credits_balance + $2,
                      updated_at = now() AT TIME ZONE 'utc'
               FROM l WHERE a.id = $1
               RETURNING a.credits_balance)
           SELECT (SELECT id FROM l) AS entry_id,
                  (SELECT credits_balance FROM u) AS new_balance,
                  (SELECT credits_balance FROM usr) AS current_balance"#,
        user_id,
        amount,
        reason,
        key,
        MAX_CREDITS,
        legacy,
    )
    .fetch_one(&mut *conn)
    .await?;
    match (row.entry_id, row.new_balance, row.current_balance) {
        (Some(entry_id), Some(new_balance), _) => Ok(BalanceChange {
            entry_id,
            delta: amount,
            new_balance,
        }),
        (_, _, None) => Err(Error::NotFound),
        (_, _, Some(_)) => {
            if let Some(key) = &key
                && let Some(prior) = prior_by_key(conn, key, legacy.as_deref(), user_id).await?
            {
                let request = Request {
                    delta: amount,
                    reason: &reason,
                    source: SOURCE_ADMIN,
                    external_id: None,
                    api_key_id: None,
                };
                return replay(&request, prior, row.current_balance);
            }
            Err(Error::invalid_input(format!(
                "the grant would take the balance above {MAX_CREDITS} (numeric(18,9))"
            )))
        }
    }
}

/// A charge for [`charge`].
#[derive(Debug, Clone, Default)]
pub struct Charge<'a> {
    /// The `user_account` charged.
    pub user_id: Uuid,
    /// Positive amount in credits, rounded to 9 places; at most [`MAX_CREDITS`].
    pub amount: Decimal,
    /// Ledger reason (content: cut to 128 characters).
    pub reason: &'a str,
    /// Ledger source, an identifier of at most 32 characters (refused, never cut).
    pub source: &'a str,
    /// Plan id or other reference, at most 256 characters (refused, never cut).
    pub external_id: Option<&'a str>,
    /// The API key charged.
    pub api_key_id: Option<Uuid>,
    /// Usage billing after the fact: allow the balance to go negative instead of refusing.
    pub allow_negative: bool,
    /// Makes the charge safe to repeat (at most [`MAX_IDEMPOTENCY_KEY_CHARS`] characters, chosen
    /// by the caller, e.g. the request id; scoped to [`Charge::user_id`]): see the replay contract
    /// in the [module docs](super).
    pub idempotency_key: Option<&'a str>,
}

/// Charge credits: ledger row and balance move in one statement, refused with
/// [`Error::InsufficientCredits`] when the balance would go below zero (unless
/// [`Charge::allow_negative`]). The statement locks the user row and tests the balance it holds,
/// so concurrent charges can never overdraw.
///
/// With [`Charge::idempotency_key`] the charge follows the replay contract of the
/// [module docs](super): a repeat (a client's retry, `tx::retry` after the connection was lost at
/// COMMIT) returns the first outcome and charges nothing, also while the first call is still in
/// flight (the repeat waits for it on the user row, then answers its result); the key used with
/// another amount, source, external id, API key or reason is [`Error::IdempotencyKeyReused`]
/// naming the field, nothing written. [`Error::InvalidInput`], nothing written, for an amount
/// outside `numeric(18,9)`, an overlong key, source or external id, or a negative balance beyond
/// `-MAX_CREDITS`; [`Error::NotFound`] if the user does not exist. One round trip; a repeat reads
/// the first outcome in a second one.
#[tracing::instrument(skip_all)]
pub async fn charge(conn: &mut PgConnection, charge: &Charge<'_>) -> Result<BalanceChange> {
    let amount = credit_amount("charge amount", charge.amount)?;
    let key = caller_key(charge.user_id, charge.idempotency_key)?;
    let legacy = legacy_caller_key(charge.idempotency_key);
    let source = ident("ledger source", charge.source, 32)?;
    let external_id = ident_opt("ledger external id", charge.external_id, 256)?;
    let reason = clean_text(charge.reason, 128);
    let api_key_id = charge.api_key_id.map(|k| k.to_string());
    let row = sqlx::query!(
        r#"WITH usr AS (
               -- lock the user: a request of the user in flight (a duplicate among them) is
               -- waited for, and the balance tested is the newest
               SELECT id, credits_balance FROM user_account WHERE id = $1 FOR UPDATE),
           l AS (
               -- the ledger row, if the balance allows it; a key already used writes nothing
               INSERT INTO credit_history (id, user_id, delta, reason, source, external_id,
                                           api_key_id, created_at, idempotency_key, balance_after)
               SELECT gen_random_uuid(), usr.id, -$2::numeric, $3, $4, $5, $6,
                      now() AT TIME ZONE 'utc', $8, usr.credits_balance - $2
               FROM usr
               WHERE ($7 OR usr.credits_balance >= $2)
                 AND usr.credits_balance - $2 >= -$9::numeric
                 -- nor does the same key in the older release's form, for this user
                 AND NOT EXISTS (SELECT 1 FROM credit_history h
                                 WHERE h.idempotency_key = $10 AND h.user_id = $1)
               ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
               RETURNING id),
           u AS (
               -- move the balance by the row written
               UPDATE user_account a
                  SET credits_balance = a.credits_balance - $2,
                      updated_at = now() AT TIME ZONE 'utc'
               FROM l WHERE a.id = $1
               RETURNING a.credits_balance)
           SELECT (SELECT id FROM l) AS entry_id,
                  (SELECT credits_balance FROM u) AS new_balance,
                  (SELECT credits_balance FROM usr) AS current_balance"#,
        charge.user_id,
        amount,
        reason,
        source,
        external_id,
        api_key_id,
        charge.allow_negative,
        key,
        MAX_CREDITS,
        legacy,
    )
    .fetch_one(&mut *conn)
    .await?;
    let balance = match (row.entry_id, row.new_balance, row.current_balance) {
        (Some(entry_id), Some(new_balance), _) => {
            return Ok(BalanceChange {
                entry_id,
                delta: -amount,
                new_balance,
            });
        }
        (_, _, None) => return Err(Error::NotFound),
        (_, _, Some(balance)) => balance,
    };
    // Nothing written: the key names an earlier request (also one that committed while this one
    // waited for it), or the balance refused the charge.
    if let Some(key) = &key
        && let Some(prior) = prior_by_key(conn, key, legacy.as_deref(), charge.user_id).await?
    {
        let request = Request {
            delta: -amount,
            reason: &reason,
            source: &source,
            external_id: external_id.as_deref(),
            api_key_id: api_key_id.as_deref(),
        };
        return replay(&request, prior, Some(balance));
    }
    if charge.allow_negative {
        // With `allow_negative` the only condition left to fail is the range.
        Err(Error::invalid_input(format!(
            "the charge would take the balance below -{MAX_CREDITS} (numeric(18,9))"
        )))
    } else {
        Err(Error::InsufficientCredits {
            user_id: charge.user_id,
            balance,
            requested: amount,
        })
    }
}

/// Usage of one plan attempt, for [`bill_usage_progress`] and [`bill_usage_final`].
#[derive(Debug, Clone)]
pub struct PlanUsage {
    /// Who pays (see [`billing_user_for_plan`](super::user_account::billing_user_for_plan)).
    pub user_id: Uuid,
    /// The run billed, as [`claim_next`](super::plans::claim_next) handed it out.
    pub attempt: Attempt,
    /// The API key charged.
    pub api_key_id: Option<Uuid>,
    /// Cost of the attempt so far in credits (progress), or in total including the success fee
    /// (final). Rounded to 9 places; 0..=[`MAX_CREDITS`].
    pub cost: Decimal,
    /// Final billing only: whether the run succeeded (selects the ledger reason).
    pub succeeded: bool,
}

fn usage_cost(cost: Decimal) -> Result<Decimal> {
    let cost = round_credits(cost);
    if cost < Decimal::ZERO || cost > MAX_CREDITS {
        return Err(Error::invalid_input(format!(
            "usage cost must be within 0..={MAX_CREDITS} (numeric(18,9))"
        )));
    }
    Ok(cost)
}

/// Locks the user row (serialising all billing of the user), then holds the plan row `FOR SHARE`
/// so that no retry, resume or reaper can take the run while it is billed. [`Error::Superseded`]
/// when the attempt no longer owns the plan.
async fn lock_user_and_run(conn: &mut PgConnection, usage: &PlanUsage) -> Result<()> {
    lock_user(&mut *conn, usage.user_id).await?;
    let owner = sqlx::query_scalar!(
        "SELECT run_attempt FROM plans WHERE id = $1 FOR SHARE",
        usage.attempt.plan_id
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(Error::NotFound)?;
    if owner != Some(usage.attempt.token) {
        return Err(usage.attempt.superseded());
    }
    Ok(())
}

/// Incremental usage billing after a pipeline step: charges `cost − already charged for this
/// attempt` if positive (row `usage_billing_progress` / `plan_usage_in_progress`; the balance may go
/// negative). Returns the amount charged now (zero if nothing was due). The user row is locked first,
/// so concurrent billing of the user's plans is serialised and never double-counts.
///
/// Safe to repeat: the row carries the key `usage_progress:<attempt>:<cost>`, so a repeat of the
/// same report returns the first answer and charges nothing. [`Error::Superseded`], nothing
/// billed, when the attempt no longer owns the plan. One transaction: two locks + one statement
/// (5 round trips with BEGIN/COMMIT).
#[tracing::instrument(skip_all, fields(plan_id = %usage.attempt.plan_id))]
pub async fn bill_usage_progress(conn: &mut PgConnection, usage: &PlanUsage) -> Result<Decimal> {
    let cost = usage_cost(usage.cost)?;
    let key = format!("usage_progress:{}:{cost}", usage.attempt.token);
    crate::tx::transaction(conn, async |tx| {
        lock_user_and_run(&mut *tx, usage).await?;
        let charged = sqlx::query_scalar!(
            r#"WITH prior AS (SELECT delta FROM credit_history WHERE idempotency_key = $5),
               already AS (
                   SELECT coalesce(-sum(delta), 0) AS amt FROM credit_history
                   WHERE source = 'usage_billing_progress' AND external_id = $2),
               due AS (SELECT round($3 - already.amt, 9) AS amt FROM already),
               l AS (
                   INSERT INTO credit_history (id, user_id, delta, reason, source, external_id,
                                               api_key_id, created_at, idempotency_key)
                   SELECT gen_random_uuid(), $1, -due.amt, 'plan_usage_in_progress',
                          'usage_billing_progress', $2, $4, now() AT TIME ZONE 'utc', $5
                   FROM due WHERE due.amt > 0 AND NOT EXISTS (SELECT 1 FROM prior)
                   RETURNING delta),
               u AS (
                   UPDATE user_account
                      SET credits_balance = credits_balance + l.delta,
                          updated_at = now() AT TIME ZONE 'utc'
                   FROM l WHERE id = $1)
               SELECT coalesce((SELECT -delta FROM prior), (SELECT -delta FROM l), 0)
                      AS "charged!""#,
            usage.user_id,
            usage.attempt.plan_id.to_string(),
            cost,
            usage.api_key_id.map(|k| k.to_string()),
            key,
        )
        .fetch_one(&mut *tx)
        .await?;
        Ok(charged)
    })
    .await
}

/// What [`bill_usage_final`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FinalBilling {
    /// The final row of this attempt was written (by this call or, for a repeat, by the first call
    /// with the same attempt); `charged` (possibly zero) was taken from the balance.
    Charged {
        /// Amount taken, in credits.
        charged: Decimal,
    },
    /// The plan was already billed by someone else (a Python worker); nothing changed.
    AlreadyBilled,
}

/// Final usage billing of a plan attempt: charges `cost − incremental charges of this attempt`
/// (not below zero) in a `usage_billing` row (`plan_created_with_usage_cost` or
/// `plan_failed_usage_cost`), always writing the row (zero delta if nothing is due) so that it
/// guards the attempt.
///
/// Safe to repeat (the replay contract of the [module docs](super)): the row carries the key
/// `usage_final:<attempt>`, so a repeat of the same report returns the first
/// [`FinalBilling::Charged`], also while the first is in flight (it waits on the user row); a
/// repeat with another cost or outcome is [`Error::IdempotencyKeyReused`] (`cost`, `succeeded`). A final row written by someone else (a Python worker) hits
/// `uq_credit_history_usage_billing_final` (`ON CONFLICT DO NOTHING`): [`FinalBilling::AlreadyBilled`].
/// [`Error::Superseded`], nothing billed, when the attempt no longer owns the plan. One
/// transaction: two locks + one statement (5 round trips).
#[tracing::instrument(skip_all, fields(plan_id = %usage.attempt.plan_id))]
pub async fn bill_usage_final(conn: &mut PgConnection, usage: &PlanUsage) -> Result<FinalBilling> {
    let cost = usage_cost(usage.cost)?;
    let key = format!("usage_final:{}", usage.attempt.token);
    let reason = if usage.succeeded {
        "plan_created_with_usage_cost"
    } else {
        "plan_failed_usage_cost"
    };
    crate::tx::transaction(conn, async |tx| {
        lock_user_and_run(&mut *tx, usage).await?;
        let row = sqlx::query!(
            r#"WITH prior AS (
                   -- this attempt's final row, if billed before (the user lock is held)
                   SELECT delta, reason FROM credit_history WHERE idempotency_key = $6),
               already AS (
                   -- what the attempt's progress rows took
                   SELECT coalesce(-sum(delta), 0) AS amt FROM credit_history
                   WHERE source = 'usage_billing_progress' AND external_id = $2),
               l AS (
                   -- the final row: the rest of the cost, not below zero
                   INSERT INTO credit_history (id, user_id, delta, reason, source, external_id,
                                               api_key_id, created_at, idempotency_key)
                   SELECT gen_random_uuid(), $1, -greatest(round($3 - already.amt, 9), 0), $5,
                          'usage_billing', $2, $4, now() AT TIME ZONE 'utc', $6
                   FROM already WHERE NOT EXISTS (SELECT 1 FROM prior)
                   ON CONFLICT (external_id) WHERE source = 'usage_billing' DO NOTHING
                   RETURNING delta),
               u AS (
                   UPDATE user_account
                      SET credits_balance = credits_balance + l.delta,
                          updated_at = now() AT TIME ZONE 'utc'
                   FROM l WHERE id = $1 AND l.delta <> 0)
               SELECT (SELECT delta FROM prior) AS prior_delta,
                      (SELECT reason FROM prior) AS prior_reason,
                      (SELECT -greatest(round($3 - already.amt, 9), 0) FROM already)
                          AS expected_delta,
                      (SELECT delta FROM l) AS delta"#,
            usage.user_id,
            usage.attempt.plan_id.to_string(),
            cost,
            usage.api_key_id.map(|k| k.to_string()),
            reason,
            key,
        )
        .fetch_one(&mut *tx)
        .await?;
        if let Some(prior) = row.prior_delta {
            // A repeat: the same report answers the first outcome (replay contract).
            if row.prior_reason.as_deref() != Some(reason) {
                return Err(Error::idempotency_key_reused("succeeded"));
            }
            if row.expected_delta != Some(prior) {
                return Err(Error::idempotency_key_reused("cost"));
            }
            return Ok(FinalBilling::Charged {
                charged: charged_by(prior),
            });
        }
        Ok(match row.delta {
            Some(d) => FinalBilling::Charged {
                charged: charged_by(d),
            },
            None => FinalBilling::AlreadyBilled,
        })
    })
    .await
}

/// Settle a plan's open usage rows (`usage_billing_progress` and `usage_billing` →
/// `usage_billing_settled`), closing the attempt, so that the next attempt is billed afresh.
///
/// **The settle rule** lives in one place, the SQL function `planexe_settle_plan_usage`
/// (migration 0071), and every path that ends an attempt to queue the plan again uses it in the
/// same statement as its state change: [`retry`](super::plans::retry),
/// [`resume`](super::plans::resume), the reaper ([`requeue_stale`](super::plans::requeue_stale))
/// and this function, for callers that re-queue by other means (a Python service's retry).
///
/// Refused with [`Error::InvalidTransition`] (`from` = `processing`) while the plan is
/// processing: its live attempt would otherwise bill its whole cumulative cost again. A removed
/// plan is [`Error::NotFound`]. Holds the plan row `FOR UPDATE`, so billing of the attempt
/// (which holds it `FOR SHARE`) is never settled half-way. Returns the rows settled. One round
/// trip.
#[tracing::instrument(skip_all, fields(%plan_id))]
pub async fn settle_plan_usage(ex: impl PgExecutor<'_>, plan_id: Uuid) -> Result<u64> {
    let row = sqlx::query!(
        r#"WITH cur AS (
               -- the plan, locked against billing and claims while it is settled
               SELECT id, state::text AS state FROM plans WHERE id = $1 FOR UPDATE)
           SELECT cur.state,
                  CASE WHEN cur.state IS DISTINCT FROM 'processing'
                       THEN planexe_settle_plan_usage(cur.id::text) END AS settled
           FROM cur"#,
        plan_id,
    )
    .fetch_optional(ex)
    .await?
    .ok_or(Error::NotFound)?;
    match row.settled {
        Some(n) => Ok(u64::try_from(n).unwrap_or_default()),
        None => Err(Error::InvalidTransition {
            from: row.state.unwrap_or_else(|| "NULL".to_owned()),
            to: "settled (usage billing)".to_owned(),
        }),
    }
}

/// Spend of one API key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeySpend {
    /// The key id (as stored).
    pub api_key_id: String,
    /// Credits spent (positive).
    pub spent: Decimal,
}

/// Credits spent per API key (sum of negative deltas), for the keys given. One round trip.
#[tracing::instrument(skip_all)]
pub async fn spend_by_api_key(ex: impl PgExecutor<'_>, key_ids: &[Uuid]) -> Result<Vec<KeySpend>> {
    let ids: Vec<String> = key_ids.iter().map(Uuid::to_string).collect();
    Ok(sqlx::query_as!(
        KeySpend,
        r#"SELECT api_key_id AS "api_key_id!", -sum(delta) AS "spent!"
           FROM credit_history WHERE api_key_id = ANY($1) AND delta < 0
           GROUP BY api_key_id ORDER BY api_key_id"#,
        &ids,
    )
    .fetch_all(ex)
    .await?)
}

impl CreditEntry {
    /// This row's place in the ledger, for the next [`list_for_user`] page.
    pub fn cursor(&self) -> Cursor<Uuid> {
        Cursor {
            at: self.created_at,
            id: self.id,
        }
    }
}

/// A user's ledger, newest first (rows without a time last, ties by id descending), by keyset:
/// at most `page.limit` rows after `page.after`. Each part of the page is a range of
/// `ix_credit_history_user_id_created_at_desc` (migration 0072) starting at the cursor, so a deep
/// page costs what the first one costs. One round trip.
#[tracing::instrument(skip_all, fields(%user_id))]
pub async fn list_for_user(
    ex: impl PgExecutor<'_>,
    user_id: Uuid,
    page: Keyset<Uuid>,
) -> Result<Vec<CreditEntry>> {
    Ok(sqlx::query_as!(
        CreditEntry,
        r#"SELECT id AS "id!", user_id AS "user_id!", delta AS "delta!", reason AS "reason!",
                  source AS "source!", external_id, api_key_id,
                  created_at AS "created_at: DateTime<Utc>"
           FROM (
               -- rows with a time, from the cursor on (none once past them)
               (SELECT id, user_id, delta, reason, source, external_id, api_key_id, created_at
                FROM credit_history
                WHERE user_id = $1 AND NOT $5
                  AND created_at <= coalesce($2, 'infinity'::timestamp)
                  AND (created_at < coalesce($2, 'infinity'::timestamp) OR id < $3)
                ORDER BY created_at DESC NULLS LAST, id DESC
                LIMIT $4)
               UNION ALL
               -- then the rows without one (by id, in the index's order)
               (SELECT id, user_id, delta, reason, source, external_id, api_key_id, created_at
                FROM credit_history
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
    .await?)
}

/// A user whose balance differs from the ledger sum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    /// The user.
    pub user_id: Uuid,
    /// `user_account.credits_balance`.
    pub balance: Decimal,
    /// `SUM(credit_history.delta)`.
    pub ledger_sum: Decimal,
}

/// How much of the ledger [`reconcile`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum ReconcileScope {
    /// Only the ledger rows written since the last run's watermark, added to the per-user sums
    /// checkpointed then (the whole ledger on the very first run). Reads every user's balance
    /// (one row per user) but not the history.
    #[default]
    Incremental,
    /// The whole ledger, summed afresh; the checkpoint is rebuilt from it.
    Full,
}

/// Users whose balance differs from their ledger sum (empty when the invariant holds), ordered by
/// user id.
///
/// **Incremental** (the default, [`ReconcileScope::Incremental`]): a run reads only the ledger
/// rows written since the previous run and adds them to the per-user sums that run checkpointed
/// (`credit_reconcile_checkpoint`, migration 0080); the rest of the ledger is not read, so the
/// cost follows the number of users and of new rows, not the history. Which rows are "new" is
/// decided by the id of the transaction that wrote them (`credit_history.xact_id`, filled in by
/// the column default for every writer, Python included), never by row id or time: transactions
/// commit out of order, so a row with an older id or `created_at` can become visible after a
/// later one. The watermark is the run's snapshot xmin: every transaction below it has ended, so
/// no row below it can appear later. A run checks the rows of its snapshot up to the newest
/// visible one, but folds into the checkpoint only those below the new watermark; rows of
/// transactions still open (or committed above it) are read again by the next run.
///
/// What each scope sees:
/// * a balance changed without a ledger row (by any writer, at any time): **both** (every
///   user's balance is compared with checkpoint + new rows);
/// * a ledger row whose delta differs from the balance move it came with (Python's clamped
///   purchases): **both**, as long as the row is newer than the watermark when first checked;
/// * a ledger row that was already checkpointed and is later edited or deleted (its `delta`
///   changed, the row removed) without the balance following: **only [`ReconcileScope::Full`]**:
///   the incremental check trusts the checkpointed sums (ledger rows are append-only for every
///   writer of this library and of the Python services; the settle rule only changes `source`);
///   run the full check now and then (e.g. nightly) to catch history edits.
///
/// Runs are serialised on the watermark row (a second run waits for the first). One
/// transaction: 3 statements (the full scope deletes the checkpoint first: 4), plus BEGIN and
/// COMMIT.
#[tracing::instrument(skip_all, fields(?scope))]
pub async fn reconcile_with(conn: &mut PgConnection, scope: ReconcileScope) -> Result<Vec<Drift>> {
    crate::tx::transaction(conn, async |tx| {
        // lock the watermark (created on the first run); its value decides the scope
        let incremental = sqlx::query_scalar!(
            r#"INSERT INTO credit_reconcile_watermark (singleton) VALUES (true)
               ON CONFLICT (singleton) DO UPDATE SET singleton = true
               RETURNING below IS NOT NULL AS "has_checkpoint!""#
        )
        .fetch_one(&mut *tx)
        .await?;
        if incremental && scope == ReconcileScope::Incremental {
            reconcile_since_checkpoint(&mut *tx).await
        } else {
            reconcile_whole_ledger(&mut *tx).await
        }
    })
    .await
}

/// [`reconcile_with`] in the default scope, [`ReconcileScope::Incremental`].
pub async fn reconcile(conn: &mut PgConnection) -> Result<Vec<Drift>> {
    reconcile_with(conn, ReconcileScope::Incremental).await
}

/// [`reconcile_with`] reading the whole ledger, [`ReconcileScope::Full`].
pub async fn reconcile_full(conn: &mut PgConnection) -> Result<Vec<Drift>> {
    reconcile_with(conn, ReconcileScope::Full).await
}

/// The incremental scope; the watermark row is locked by the caller.
async fn reconcile_since_checkpoint(conn: &mut PgConnection) -> Result<Vec<Drift>> {
    Ok(sqlx::query_as!(
        Drift,
        r#"WITH wm AS (
               SELECT below FROM credit_reconcile_watermark WHERE singleton),
           snap AS (
               -- every transaction below xmin has ended: its rows are all visible now
               SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin),
           fresh AS (
               -- the rows since the watermark, per user: all of them, and those of ended
               -- transactions (which the checkpoint takes in)
               SELECT h.user_id, sum(h.delta) AS total,
                      coalesce(sum(h.delta) FILTER (WHERE h.xact_id < snap.xmin), 0) AS ended
               FROM credit_history h, wm, snap
               WHERE h.xact_id >= wm.below
               GROUP BY h.user_id),
           saved AS (
               -- move the checkpoint forward by the rows of ended transactions
               INSERT INTO credit_reconcile_checkpoint (user_id, ledger_sum, checked_at)
               SELECT f.user_id, coalesce(c.ledger_sum, 0) + f.ended, now()
               FROM fresh f LEFT JOIN credit_reconcile_checkpoint c ON c.user_id = f.user_id
               ON CONFLICT (user_id) DO UPDATE
                  SET ledger_sum = EXCLUDED.ledger_sum, checked_at = EXCLUDED.checked_at),
           mark AS (
               UPDATE credit_reconcile_watermark w
                  SET below = greatest(w.below, snap.xmin), checked_at = now()
               FROM snap WHERE w.singleton)
           -- every user's balance against checkpoint + new rows (both as of this snapshot)
           SELECT u.id AS user_id, u.credits_balance AS balance,
                  coalesce(c.ledger_sum, 0) + coalesce(f.total, 0) AS "ledger_sum!"
           FROM user_account u
           LEFT JOIN credit_reconcile_checkpoint c ON c.user_id = u.id
           LEFT JOIN fresh f ON f.user_id = u.id
           WHERE u.credits_balance <> coalesce(c.ledger_sum, 0) + coalesce(f.total, 0)
           ORDER BY u.id"#,
    )
    .fetch_all(&mut *conn)
    .await?)
}

/// The full scope: the checkpoint is rebuilt from the whole ledger; the watermark row is locked
/// by the caller.
async fn reconcile_whole_ledger(conn: &mut PgConnection) -> Result<Vec<Drift>> {
    sqlx::query!("DELETE FROM credit_reconcile_checkpoint")
        .execute(&mut *conn)
        .await?;
    Ok(sqlx::query_as!(
        Drift,
        r#"WITH snap AS (
               SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin),
           sums AS (
               -- the whole ledger per user, and the part the checkpoint takes in (rows written
               -- before migration 0080 have no xact_id and are as old as can be)
               SELECT h.user_id, sum(h.delta) AS total,
                      coalesce(sum(h.delta) FILTER (WHERE h.xact_id IS NULL
                                                       OR h.xact_id < snap.xmin), 0) AS ended
               FROM credit_history h, snap
               GROUP BY h.user_id),
           saved AS (
               INSERT INTO credit_reconcile_checkpoint (user_id, ledger_sum, checked_at)
               SELECT user_id, ended, now() FROM sums),
           mark AS (
               UPDATE credit_reconcile_watermark w
                  SET below = snap.xmin, full_at = now(), checked_at = now()
               FROM snap WHERE w.singleton)
           SELECT u.id AS user_id, u.credits_balance AS balance,
                  coalesce(s.total, 0) AS "ledger_sum!"
           FROM user_account u
           LEFT JOIN sums s ON s.user_id = u.id
           WHERE u.credits_balance <> coalesce(s.total, 0)
           ORDER BY u.id"#,
    )
    .fetch_all(&mut *conn)
    .await?)
}
