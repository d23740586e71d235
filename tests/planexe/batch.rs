//! The batch queue: `claim_next_batch` and `finish_completed_batch` keep every guarantee of the
//! single-plan calls (one owner per plan, one attempt per run, the reaper, events, billing).

use std::collections::HashSet;
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::json;
use shared_db::Error;
use shared_db::planexe::credit_history::{self, FinalBilling, PlanUsage};
use shared_db::planexe::plans::{self, Attempt, Completion, FinishOutcome};
use shared_db::planexe::{EventType, PlanState, events, workers};
use shared_db::testing::TestDatabase;
use uuid::Uuid;

use crate::{queue_plan, user_with_credits};

async fn queue_plans(pool: &sqlx::PgPool, user: &str, n: usize) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(queue_plan(pool, user, &format!("plan {i}")).await);
        // distinct creation times: the queue order is the creation order
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    ids
}

#[tokio::test]
async fn a_batch_claim_hands_out_the_oldest_plans_each_with_its_own_attempt() -> anyhow::Result<()>
{
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let queued = queue_plans(pool, "alice", 5).await;

    let batch = plans::claim_next_batch(pool, "w1", 3).await?;
    assert_eq!(
        batch.iter().map(|c| c.plan.id).collect::<Vec<_>>(),
        queued[..3],
        "the three oldest, in queue order"
    );
    let tokens: HashSet<Uuid> = batch.iter().map(|c| c.attempt.token).collect();
    assert_eq!(tokens.len(), 3, "one attempt per plan");
    for claimed in &batch {
        assert_eq!(claimed.attempt.plan_id, claimed.plan.id);
        assert_eq!(claimed.plan.state, Some(PlanState::Processing));
        assert_eq!(
            claimed.plan.progress_message.as_deref(),
            Some("Picked up by server")
        );
        let evs = events::list_by_plan(pool, claimed.plan.id, 10).await?;
        assert_eq!(
            evs.iter().map(|e| e.event_type).collect::<Vec<_>>(),
            [EventType::TaskPending, EventType::TaskProcessing]
        );
    }
    let worker = workers::list(pool, 200).await?;
    assert_eq!(worker[0].current_task_id, Some(queued[0].to_string()));

    // each attempt owns its own run: finishing one with another's token is refused
    let wrong = Attempt {
        plan_id: batch[0].plan.id,
        token: batch[1].attempt.token,
    };
    assert!(matches!(
        plans::finish_completed(pool, wrong, None).await,
        Err(Error::Superseded { .. })
    ));

    let rest = plans::claim_next_batch(pool, "w2", 10).await?;
    assert_eq!(
        rest.iter().map(|c| c.plan.id).collect::<Vec<_>>(),
        queued[3..],
        "fewer than asked when the queue holds fewer"
    );
    assert!(plans::claim_next_batch(pool, "w3", 10).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_batch_size_out_of_bounds_is_refused_and_nothing_is_claimed() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    queue_plans(pool, "alice", 2).await;
    for n in [0, plans::MAX_CLAIM_BATCH + 1] {
        match plans::claim_next_batch(pool, "w1", n).await {
            Err(Error::BatchSize { requested, max }) => {
                assert_eq!((requested, max), (n, plans::MAX_CLAIM_BATCH));
            }
            other => panic!("batch of {n}: {other:?}"),
        }
    }
    assert_eq!(plans::count_pending(pool).await?, 2);
    assert!(matches!(
        plans::finish_completed_batch(pool, &[]).await,
        Err(Error::BatchSize { requested: 0, .. })
    ));
    Ok(())
}

#[tokio::test]
async fn concurrent_batch_claims_never_share_a_plan() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    sqlx::raw_sql(
        "INSERT INTO plans (id, timestamp_created, state, prompt, stop_requested, user_id)
         SELECT gen_random_uuid(), (now() AT TIME ZONE 'utc') + make_interval(secs => g),
                'pending', 'plan ' || g, false, 'alice'
         FROM generate_series(1, 300) g",
    )
    .execute(pool)
    .await?;

    let mut tasks = Vec::new();
    for w in 0..8 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = plans::claim_next_batch(&pool, &format!("w{w}"), 7).await?;
                if batch.is_empty() {
                    return anyhow::Ok(mine);
                }
                let runs: Vec<Completion> = batch
                    .iter()
                    .map(|c| Completion {
                        attempt: c.attempt,
                        event_context: None,
                    })
                    .collect();
                for (id, outcome) in plans::finish_completed_batch(&pool, &runs).await? {
                    assert_eq!(outcome, FinishOutcome::Completed, "plan {id}");
                    mine.push(id);
                }
            }
        }));
    }
    let mut seen = HashSet::new();
    for t in tasks {
        for id in t.await?? {
            assert!(seen.insert(id), "plan {id} completed by two workers");
        }
    }
    assert_eq!(seen.len(), 300);
    let (claims, completions): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE event_type = 'TASK_PROCESSING'),
                count(*) FILTER (WHERE event_type = 'TASK_COMPLETED')
         FROM events",
    )
    .fetch_one(pool)
    .await?;
    assert_eq!(
        (claims, completions),
        (300, 300),
        "one claim and one completion per plan"
    );
    Ok(())
}

#[tokio::test]
async fn a_batch_finish_completes_owned_runs_and_reports_the_ones_taken_away() -> anyhow::Result<()>
{
    let db = TestDatabase::new().await?;
    let pool = db.pool();
    let payer = user_with_credits(pool, "payer", Decimal::from(100)).await;
    let queued = queue_plans(pool, &payer.to_string(), 3).await;
    let batch = plans::claim_next_batch(pool, "slow", 3).await?;
    assert_eq!(batch.len(), 3);

    // The worker names only the first plan of its batch; the second one has made no progress
    // for two minutes, so the reaper re-queues it and another worker claims it.
    sqlx::query(
        "UPDATE plans SET last_progress_at = (now() AT TIME ZONE 'utc') - interval '2 minutes'
         WHERE id = $1",
    )
    .bind(queued[1])
    .execute(pool)
    .await?;
    let reaped = plans::requeue_stale(pool, Duration::from_secs(60), 3).await?;
    assert_eq!(reaped.requeued, [queued[1]]);
    let taken = plans::claim_next(pool, "fast")
        .await?
        .expect("the re-queued plan");
    assert_eq!(taken.plan.id, queued[1]);

    // Billing still goes by attempt: the stale worker cannot bill the run it lost.
    let usage = |attempt| PlanUsage {
        user_id: payer,
        attempt,
        api_key_id: None,
        cost: Decimal::from(2),
        succeeded: true,
    };
    let mut conn = pool.acquire().await?;
    assert!(matches!(
        credit_history::bill_usage_final(&mut conn, &usage(batch[1].attempt)).await,
        Err(Error::Superseded { .. })
    ));
    for run in [batch[0].attempt, batch[2].attempt] {
        assert_eq!(
            credit_history::bill_usage_final(&mut conn, &usage(run)).await?,
            FinalBilling::Charged {
                charged: Decimal::from(2)
            }
        );
    }

    let ghost = Attempt {
        plan_id: Uuid::new_v4(),
        token: Uuid::new_v4(),
    };
    let ctx = json!({ "billed": "2" });
    let runs: Vec<Completion> = batch
        .iter()
        .map(|c| c.attempt)
        .chain([ghost])
        .map(|attempt| Completion {
            attempt,
            event_context: Some(&ctx),
        })
        .collect();
    let outcomes = plans::finish_completed_batch(pool, &runs).await?;
    assert_eq!(
        outcomes,
        [
            (queued[0], FinishOutcome::Completed),
            (queued[1], FinishOutcome::Superseded),
            (queued[2], FinishOutcome::Completed),
            (ghost.plan_id, FinishOutcome::NotFound),
        ]
    );
    // the re-queued plan is still the other worker's, untouched
    let other = plans::get(pool, queued[1]).await?;
    assert_eq!(other.state, Some(PlanState::Processing));
    plans::finish_completed(pool, taken.attempt, None).await?;

    // each completed plan has its own TASK_COMPLETED with its context, once
    for id in [queued[0], queued[2]] {
        let evs = events::list_by_plan(pool, id, 10).await?;
        let done: Vec<_> = evs
            .iter()
            .filter(|e| e.event_type == EventType::TaskCompleted)
            .collect();
        assert_eq!(done.len(), 1);
        let ctx = done[0].context.as_ref().expect("a context");
        assert_eq!(ctx.0["billed"], "2");
        assert_eq!(ctx.0["task_id"], id.to_string());
    }

    // a repeat of the batch writes nothing more and says why
    let again = plans::finish_completed_batch(pool, &runs[..1]).await?;
    assert_eq!(
        again,
        [(
            queued[0],
            FinishOutcome::NotProcessing {
                state: Some("completed".into())
            }
        )]
    );
    let twice = [runs[0], runs[0]];
    assert!(matches!(
        plans::finish_completed_batch(pool, &twice).await,
        Err(Error::InvalidInput(_))
    ));
    assert!(credit_history::reconcile(&mut conn).await?.is_empty());
    Ok(())
}
