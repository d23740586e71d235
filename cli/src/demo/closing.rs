//! Closing: schema status and invariants.

use shared_db::Database;
use shared_db::planexe::{EventType, credit_history, events};
use shared_db::schema::SchemaStatus;
use shared_db::shop::{ListParams, MAX_LIMIT, ShopId, products};
use uuid::Uuid;

use super::shop_admin::PRODUCTS;
use super::{Checks, heading, short};

/// Closing: schema status and invariants.
pub(super) async fn run(
    db: &Database,
    plan_ids: &[Uuid],
    shop_id: ShopId,
    checks: &mut Checks,
) -> anyhow::Result<()> {
    heading("closing");
    let status = db.status().await;
    match &status {
        SchemaStatus::UpToDate { version } => println!(
            "schema status: up to date (version {})",
            version
                .map(|v| v.to_string())
                .unwrap_or_else(|| "none".into())
        ),
        other => println!("schema status: {}", serde_json::to_string(other)?),
    }
    checks.check(
        matches!(status, SchemaStatus::UpToDate { .. }),
        "schema is up to date",
    );

    let drift = credit_history::reconcile(&mut *db.acquire().await?).await?;
    for d in &drift {
        println!(
            "  user {}: balance {} but ledger sums to {}",
            d.user_id, d.balance, d.ledger_sum
        );
    }
    checks.check(drift.is_empty(), "ledger sum equals balance for every user");

    // A plan is claimed again only after the reaper re-queued it: per plan, claims = 1 + re-queues,
    // and it completed exactly once.
    let mut bad = Vec::new();
    for id in plan_ids {
        let evs = events::list_by_plan(db.pool(), *id, 200).await?;
        let count = |t: EventType| evs.iter().filter(|e| e.event_type == t).count();
        let requeues = evs
            .iter()
            .filter(|e| {
                e.event_type == EventType::TaskPending
                    && e.context.as_ref().and_then(|c| c.get("reaped")).is_some()
            })
            .count();
        let claims = count(EventType::TaskProcessing);
        let completions = count(EventType::TaskCompleted);
        if claims != 1 + requeues || completions != 1 {
            bad.push(format!(
                "{}: {claims} claims, {requeues} re-queues, {completions} completions",
                short(*id)
            ));
        }
    }
    checks.check(
        bad.is_empty(),
        format!(
            "no plan claimed twice ({} plans: one claim each, plus one per reaper re-queue){}",
            plan_ids.len(),
            if bad.is_empty() {
                String::new()
            } else {
                format!(": {}", bad.join("; "))
            }
        ),
    );

    let mut conn = db.acquire().await?;
    // the demo shop's 30 products fit in one page of the largest size
    let all = products::list(
        &mut conn,
        shop_id,
        &ListParams::default().page(0, MAX_LIMIT),
    )
    .await?;
    let negative = all.items.iter().filter(|p| p.item.stock < 0).count();
    let total_stock: i64 = all.items.iter().map(|p| i64::from(p.item.stock)).sum();
    checks.check(
        negative == 0 && all.items.len() == PRODUCTS && all.total == PRODUCTS as i64,
        format!(
            "stock never negative ({} products, {total_stock} units in stock)",
            all.items.len()
        ),
    );
    Ok(())
}
