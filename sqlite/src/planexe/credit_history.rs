//! `credit_history` + `user_account.credits_balance` on SQLite: the credit ledger and the balance
//! it explains, with the invariant and the replay contract of
//! [`shared_db::planexe::credit_history`] (`credits_balance == SUM(delta)` for every user written
//! only here; a repeated idempotency key answers the first outcome and moves nothing).
//!
//! Each operation is one `BEGIN IMMEDIATE` transaction: the key lookup, the balance read, the
//! ledger row and the balance write all happen under the write lock, so concurrent charges (in
//! any process on the file) see each other's results and cannot overdraw or apply a key twice.
//! The arithmetic is done on exact [`Decimal`]s in Rust (see [`super`] for why not in SQL).
//!
//! Usage billing is per plan *attempt*, as on PostgreSQL: incremental rows
//! (`usage_billing_progress`, [`bill_usage_progress`]) during the run, one final row
//! (`usage_billing`, [`bill_usage_final`], unique per plan among open rows:
//! `uq_credit_history_usage_billing_final`) at its end; each row carries a key naming the attempt,
//! so a worker that repeats a report after an unknown outcome is answered the first outcome and
//! billed nothing. Retry, resume and the reaper close the attempt's rows by the one settle rule,
//! `settle_open_usage`, so the next attempt is billed afresh.

use rust_decimal::Decimal;
use shared_db::planexe::credit_history::{
    BalanceChange, Charge, FinalBilling, PlanUsage, Prior, Request, SOURCE_ADMIN,
    SOURCE_USAGE_FINAL, SOURCE_USAGE_PROGRESS, caller_key, charged_by, replay,
};
use shared_db::planexe::{clean_opt, clean_text, credit_amount, ident, ident_opt};
use shared_db::{Error, Result};
use sqlx::SqliteConnection;
use uuid::Uuid;

use super::{MAX_CREDITS, credits, credits_opt, credits_text, hex, nine_places, uuid};
use crate::error::from_sqlx;
use crate::tx::transaction;

/// The ledger row a stored idempotency key names.
async fn prior_by_key(conn: &mut SqliteConnection, key: &str) -> Result<Option<Prior>> {
    let row = sqlx::query!(
        r#"SELECT id AS "id!", CAST(delta AS TEXT) AS "delta!: String", reason AS "reason!",
                  source AS "source!", external_id AS "external_id?", api_key_id AS "api_key_id?",
                  CAST(balance_after AS TEXT) AS "balance_after?: String"
           FROM credit_history WHERE idempotency_key = ?1"#,
        key,
    )
    .fetch_optional(conn)
    .await
    .map_err(from_sqlx)?;
    row.map(|r| {
        Ok(Prior {
            id: uuid(&r.id)?,
            delta: credits(&r.delta)?,
            reason: r.reason,
            source: r.source,
            external_id: r.external_id,
            api_key_id: r.api_key_id,
            balance_after: credits_opt(r.balance_after.as_deref())?,
        })
    })
    .transpose()
}

/// The user's balance, read inside the caller's write transaction; [`Error::NotFound`] without
/// the user.
async fn balance_of(conn: &mut SqliteConnection, user_id: Uuid) -> Result<Decimal> {
    let text = sqlx::query_scalar!(
        r#"SELECT CAST(credits_balance AS TEXT) AS "b!: String" FROM user_account WHERE id = ?1"#,
        hex(user_id),
    )
    .fetch_optional(conn)
    .await
    .map_err(from_sqlx)?
    .ok_or(Error::NotFound)?;
    credits(&text)
}

/// The row and the balance move of one request, written together.
struct Entry<'a> {
    user_id: Uuid,
    delta: Decimal,
    new_balance: Decimal,
    reason: &'a str,
    source: &'a str,
    external_id: Option<&'a str>,
    api_key_id: Option<&'a str>,
    key: Option<&'a str>,
}

async fn append(conn: &mut SqliteConnection, e: &Entry<'_>) -> Result<BalanceChange> {
    let id = Uuid::new_v4();
    let delta = credits_text("delta", e.delta)?;
    let balance = credits_text("balance", e.new_balance)?;
    let user = hex(e.user_id);
    sqlx::query!(
        r#"INSERT INTO credit_history (id, user_id, delta, reason, source, external_id, api_key_id,
                                       created_at, idempotency_key, balance_after)
           VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, strftime('%Y-%m-%d %H:%M:%f000', 'now'), ?8, ?9)"#,
        hex(id),
        user,
        delta,
        e.reason,
        e.source,
        e.external_id,
        e.api_key_id,
        e.key,
        balance,
    )
    .execute(&mut *conn)
    .await
    .map_err(from_sqlx)?;
    sqlx::query!(
        r#"UPDATE user_account
              SET credits_balance = ?2, updated_at = strftime('%Y-%m-%d %H:%M:%f000', 'now')
           WHERE id = ?1"#,
        user,
        balance,
    )
    .execute(&mut *conn)
    .await
    .map_err(from_sqlx)?;
    Ok(BalanceChange {
        entry_id: id,
        delta: e.delta,
        new_balance: e.new_balance,
    })
}

/// Charge credits, as [`shared_db::planexe::credit_history::charge`]: ledger row and balance
/// move in one transaction; [`Error::InsufficientCredits`] when the balance would go below zero
/// (unless [`Charge::allow_negative`]); with [`Charge::idempotency_key`] a repeat returns the
/// first outcome and charges nothing, and the key reused for another request is
/// [`Error::IdempotencyKeyReused`] naming the field. [`Error::InvalidInput`], nothing written,
/// for an amount or a resulting balance beyond ±[`MAX_CREDITS`] (the SQLite range).
pub async fn charge(conn: &mut SqliteConnection, charge: &Charge<'_>) -> Result<BalanceChange> {
    let amount = credit_amount("charge amount", charge.amount)?;
    credits_text("charge amount", amount)?;
    let key = caller_key(charge.user_id, charge.idempotency_key)?;
    let source = ident("ledger source", charge.source, 32)?;
    let external_id = ident_opt("ledger external id", charge.external_id, 256)?;
    let reason = clean_text(charge.reason, 128);
    let api_key_id = charge.api_key_id.map(|k| k.to_string());
    transaction(conn, async |tx| {
        let balance = balance_of(&mut *tx, charge.user_id).await?;
        if let Some(key) = &key
            && let Some(prior) = prior_by_key(&mut *tx, key).await?
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
        let new_balance = balance - amount;
        if !charge.allow_negative && new_balance < Decimal::ZERO {
            return Err(Error::InsufficientCredits {
                user_id: charge.user_id,
                balance,
                requested: amount,
            });
        }
        if new_balance < -MAX_CREDITS {
            return Err(Error::invalid_input(format!(
                "the charge would take the balance below -{MAX_CREDITS} (the SQLite range)"
            )));
        }
        append(
            tx,
            &Entry {
                user_id: charge.user_id,
                delta: -amount,
                new_balance,
                reason: &reason,
                source: &source,
                external_id: external_id.as_deref(),
                api_key_id: api_key_id.as_deref(),
                key: key.as_deref(),
            },
        )
        .await
    })
    .await
}

/// Grant credits (admin "add credits", `source = 'admin'`, reason defaulting to `admin_grant`),
/// as [`shared_db::planexe::credit_history::grant`], with the same replay contract.
pub async fn grant(
    conn: &mut SqliteConnection,
    user_id: Uuid,
    amount: Decimal,
    reason: Option<&str>,
    idempotency_key: Option<&str>,
) -> Result<BalanceChange> {
    let amount = credit_amount("grant amount", amount)?;
    credits_text("grant amount", amount)?;
    let key = caller_key(user_id, idempotency_key)?;
    let reason = clean_opt(reason, 128)
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "admin_grant".to_owned());
    transaction(conn, async |tx| {
        let balance = balance_of(&mut *tx, user_id).await?;
        if let Some(key) = &key
            && let Some(prior) = prior_by_key(&mut *tx, key).await?
        {
            let request = Request {
                delta: amount,
                reason: &reason,
                source: SOURCE_ADMIN,
                external_id: None,
                api_key_id: None,
            };
            return replay(&request, prior, Some(balance));
        }
        let new_balance = balance + amount;
        if new_balance > MAX_CREDITS {
            return Err(Error::invalid_input(format!(
                "the grant would take the balance above {MAX_CREDITS} (the SQLite range)"
            )));
        }
        append(
            tx,
            &Entry {
                user_id,
                delta: amount,
                new_balance,
                reason: &reason,
                source: SOURCE_ADMIN,
                external_id: None,
                api_key_id: None,
                key: key.as_deref(),
            },
        )
        .await
    })
    .await
}

/// The user's ledger: the number of rows and the exact sum of their deltas (added as decimals in
/// Rust, not as doubles in SQL). For a user written only through this module the sum equals the
/// balance.
pub async fn ledger_sum(conn: &mut SqliteConnection, user_id: Uuid) -> Result<(i64, Decimal)> {
    let deltas = sqlx::query_scalar!(
        r#"SELECT CAST(delta AS TEXT) AS "d!: String" FROM credit_history WHERE user_id = ?1"#,
        hex(user_id),
    )
    .fetch_all(conn)
    .await
    .map_err(from_sqlx)?;
    let mut sum = Decimal::ZERO;
    for d in &deltas {
        sum += credits(d)?;
    }
    Ok((deltas.len() as i64, sum))
}

/// **The settle rule** on SQLite (PostgreSQL's `planexe_settle_plan_usage`): the plan's open
/// usage rows (`usage_billing_progress` and `usage_billing`, whose `external_id` is the plan's
/// hyphenated id) become `usage_billing_settled`, closing the attempt so that the next one is
/// billed afresh. Run inside the write transaction of whatever ends the attempt (retry, resume,
/// the reaper, [`settle_plan_usage`]); the one home of the rule on this backend. Returns the
/// rows settled.
pub(crate) async fn settle_open_usage(conn: &mut SqliteConnection, plan_id: Uuid) -> Result<u64> {
    let plan = plan_id.to_string();
    Ok(sqlx::query!(
        r#"UPDATE credit_history SET source = 'usage_billing_settled'
           WHERE external_id = ?1
             AND source IN ('usage_billing_progress', 'usage_billing')"#,
        plan,
    )
    .execute(conn)
    .await
    .map_err(from_sqlx)?
    .rows_affected())
}

/// Settle a plan's open usage rows, as
/// [`shared_db::planexe::credit_history::settle_plan_usage`], for callers that re-queue a plan by
/// other means (a Python service's retry). Refused with [`Error::InvalidTransition`] (`from` =
/// `processing`) while the plan is processing: its live attempt would otherwise bill its whole
/// cost again. [`Error::NotFound`] without the plan. Returns the rows settled. One transaction.
#[tracing::instrument(target = "shared_db_sqlite::planexe::credit_history", skip_all)]
pub async fn settle_plan_usage(conn: &mut SqliteConnection, plan_id: Uuid) -> Result<u64> {
    transaction(conn, async |tx| {
        let state = sqlx::query!(
            r#"SELECT state AS "state?" FROM plans WHERE id = ?1"#,
            hex(plan_id),
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(from_sqlx)?
        .ok_or(Error::NotFound)?
        .state;
        if state.as_deref() == Some("processing") {
            return Err(Error::InvalidTransition {
                from: "processing".to_owned(),
                to: "settled (usage billing)".to_owned(),
            });
        }
        settle_open_usage(tx, plan_id).await
    })
    .await
}

/// A usage cost as billed: rounded to 9 places, within 0..=[`MAX_CREDITS`] (the SQLite range).
fn usage_cost(cost: Decimal) -> Result<Decimal> {
    let cost = shared_db::planexe::round_credits(cost);
    if cost < Decimal::ZERO || cost > MAX_CREDITS {
        return Err(Error::invalid_input(format!(
            "usage cost must be within 0..={MAX_CREDITS} on SQLite"
        )));
    }
    Ok(cost)
}

/// Inside the billing transaction: the payer's balance ([`Error::NotFound`] without the user or
/// the plan), and [`Error::Superseded`] when the attempt no longer owns the plan. The write lock
/// is held from `BEGIN`, so no retry, resume or reaper can take the run while it is billed.
async fn balance_of_run(conn: &mut SqliteConnection, usage: &PlanUsage) -> Result<Decimal> {
    let balance = balance_of(&mut *conn, usage.user_id).await?;
    let owned = sqlx::query_scalar!(
        r#"SELECT run_attempt IS ?2 AS "owned!: bool" FROM plans WHERE id = ?1"#,
        hex(usage.attempt.plan_id),
        Some(hex(usage.attempt.token)),
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(from_sqlx)?
    .ok_or(Error::NotFound)?;
    if !owned {
        return Err(Error::Superseded {
            plan_id: usage.attempt.plan_id,
        });
    }
    Ok(balance)
}

/// What the attempt's open progress rows took from the balance (positive).
async fn progress_billed(conn: &mut SqliteConnection, plan: &str) -> Result<Decimal> {
    let deltas = sqlx::query_scalar!(
        r#"SELECT CAST(delta AS TEXT) AS "d!: String" FROM credit_history
           WHERE source = 'usage_billing_progress' AND external_id = ?1"#,
        plan,
    )
    .fetch_all(conn)
    .await
    .map_err(from_sqlx)?;
    let mut taken = Decimal::ZERO;
    for d in &deltas {
        taken -= credits(d)?;
    }
    Ok(taken)
}

/// Incremental usage billing after a pipeline step, as
/// [`shared_db::planexe::credit_history::bill_usage_progress`]: charges `cost − already charged
/// for this attempt` if positive (row `usage_billing_progress` / `plan_usage_in_progress`; the
/// balance may go negative). Returns the amount charged now (zero if nothing was due).
///
/// Safe to repeat: the row carries the key `usage_progress:<attempt>:<cost>`, so a repeat of the
/// same report answers the first amount and charges nothing. [`Error::Superseded`], nothing
/// billed, when the attempt no longer owns the plan. One `BEGIN IMMEDIATE` transaction, so
/// concurrent billing of the user (in any process) is serialised and never double-counts.
#[tracing::instrument(target = "shared_db_sqlite::planexe::credit_history", skip_all)]
pub async fn bill_usage_progress(
    conn: &mut SqliteConnection,
    usage: &PlanUsage,
) -> Result<Decimal> {
    let cost = usage_cost(usage.cost)?;
    let key = format!("usage_progress:{}:{cost}", usage.attempt.token);
    let plan = usage.attempt.plan_id.to_string();
    let api_key_id = usage.api_key_id.map(|k| k.to_string());
    transaction(conn, async |tx| {
        let balance = balance_of_run(&mut *tx, usage).await?;
        if let Some(prior) = prior_by_key(&mut *tx, &key).await? {
            return Ok(charged_by(prior.delta));
        }
        let due = nine_places(cost - progress_billed(&mut *tx, &plan).await?);
        if due <= Decimal::ZERO {
            return Ok(Decimal::ZERO);
        }
        append(
            tx,
            &Entry {
                user_id: usage.user_id,
                delta: -due,
                new_balance: balance - due,
                reason: "plan_usage_in_progress",
                source: SOURCE_USAGE_PROGRESS,
                external_id: Some(&plan),
                api_key_id: api_key_id.as_deref(),
                key: Some(&key),
            },
        )
        .await?;
        Ok(due)
    })
    .await
}

/// Final usage billing of a plan attempt, as
/// [`shared_db::planexe::credit_history::bill_usage_final`]: charges `cost − incremental charges
/// of this attempt` (not below zero) in a `usage_billing` row (`plan_created_with_usage_cost` or
/// `plan_failed_usage_cost`), always writing the row (zero delta if nothing is due) so that it
/// guards the attempt.
///
/// Safe to repeat: the row carries the key `usage_final:<attempt>`, so a repeat of the same report
/// returns the first [`FinalBilling::Charged`]; a repeat with another cost or outcome is
/// [`Error::IdempotencyKeyReused`] (`cost`, `succeeded`). An open final row written by someone
/// else (a Python worker) answers [`FinalBilling::AlreadyBilled`]. [`Error::Superseded`],
/// nothing billed, when the attempt no longer owns the plan. One `BEGIN IMMEDIATE` transaction.
#[tracing::instrument(target = "shared_db_sqlite::planexe::credit_history", skip_all)]
pub async fn bill_usage_final(
    conn: &mut SqliteConnection,
    usage: &PlanUsage,
) -> Result<FinalBilling> {
    let cost = usage_cost(usage.cost)?;
    let key = format!("usage_final:{}", usage.attempt.token);
    let reason = if usage.succeeded {
        "plan_created_with_usage_cost"
    } else {
        "plan_failed_usage_cost"
    };
    let plan = usage.attempt.plan_id.to_string();
    let api_key_id = usage.api_key_id.map(|k| k.to_string());
    transaction(conn, async |tx| {
        let balance = balance_of_run(&mut *tx, usage).await?;
        let due = nine_places((cost - progress_billed(&mut *tx, &plan).await?).max(Decimal::ZERO));
        if let Some(prior) = prior_by_key(&mut *tx, &key).await? {
            // A repeat: the same report answers the first outcome (replay contract).
            if prior.reason != reason {
                return Err(Error::idempotency_key_reused("succeeded"));
            }
            if prior.delta != -due {
                return Err(Error::idempotency_key_reused("cost"));
            }
            return Ok(FinalBilling::Charged {
                charged: charged_by(prior.delta),
            });
        }
        let billed = sqlx::query_scalar!(
            r#"SELECT count(*) AS "n!: i64" FROM credit_history
               WHERE external_id = ?1 AND source = 'usage_billing'"#,
            plan,
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        if billed > 0 {
            return Ok(FinalBilling::AlreadyBilled);
        }
        append(
            tx,
            &Entry {
                user_id: usage.user_id,
                delta: -due,
                new_balance: balance - due,
                reason,
                source: SOURCE_USAGE_FINAL,
                external_id: Some(&plan),
                api_key_id: api_key_id.as_deref(),
                key: Some(&key),
            },
        )
        .await?;
        Ok(FinalBilling::Charged { charged: due })
    })
    .await
}

/// Credit `amount` (positive, already checked by the caller) to the user inside the caller's
/// transaction, with a reason and source of the caller's: the ledger row (with the balance after
/// it) and the balance move, written as [`grant`] writes them. Used by
/// [`super::payment_record::apply`] for a purchase (`credits_purchased`, source the provider,
/// external id the provider's payment id). [`Error::NotFound`] without the user;
/// [`Error::InvalidInput`] when the balance would go above [`MAX_CREDITS`] (the SQLite range).
/// Call it in [`transaction`], so the balance it reads is the newest.
pub(crate) async fn credit_in_transaction(
    conn: &mut SqliteConnection,
    user_id: Uuid,
    amount: Decimal,
    reason: &str,
    source: &str,
    external_id: Option<&str>,
) -> Result<BalanceChange> {
    let balance = balance_of(&mut *conn, user_id).await?;
    let new_balance = balance + amount;
    if new_balance > MAX_CREDITS {
        return Err(Error::invalid_input(format!(
            "the credit would take the balance above {MAX_CREDITS} (the SQLite range)"
        )));
    }
    append(
        conn,
        &Entry {
            user_id,
            delta: amount,
            new_balance,
            reason,
            source,
            external_id,
            api_key_id: None,
            key: None,
        },
    )
    .await
}
