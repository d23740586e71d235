//! planexe on the Citus cluster, measured rather than reasoned about (docs/SCALING.md, "planexe:
//! one primary with replicas"). Its tables stay local tables of the coordinator, where every
//! guarantee holds as on one server; distributing them by user is refused by their own keys, and
//! a queue whose rows are spread over shards loses the claim that makes it a queue. The timings
//! are in BENCHMARKS.md (`bash benches/citus_planexe.sh`).

use std::collections::HashSet;

use rust_decimal::Decimal;
use shared_db::planexe::credit_history;
use shared_db::planexe::plans::{self, NewPlan};
use shared_db::planexe::user_account::{self, OAuthProfile};
use shared_db::testing::{Backend, TestDatabase};
use sqlx::PgPool;

/// The Citus error text of `sql`, failing the test when Citus accepts it.
async fn refusal(pool: &PgPool, sql: &'static str) -> String {
    match sqlx::raw_sql(sql).execute(pool).await {
        Ok(_) => panic!("Citus accepted: {sql}"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn planexe_runs_on_the_coordinator_as_local_tables_with_every_guarantee() -> anyhow::Result<()>
{
    let db = TestDatabase::on(Backend::Citus).await?;
    let pool = db.pool();
    // The shop is spread over the workers; no planexe table is.
    let spread: Vec<String> = sqlx::query_scalar(
        "SELECT logicalrelid::regclass::text FROM pg_dist_partition
         WHERE logicalrelid::regclass::text NOT LIKE 'shop.%'",
    )
    .fetch_all(pool)
    .await?;
    assert!(
        spread.is_empty(),
        "planexe tables in Citus metadata: {spread:?}"
    );

    // The queue: 40 plans, four claimers racing; each plan is claimed exactly once, oldest first
    // per claimer.
    let mut queued = HashSet::new();
    for i in 0..40 {
        let plan = plans::enqueue(
            pool,
            &NewPlan {
                prompt: &format!("plan {i}"),
                user_id: Some(&format!("user-{}", i % 7)),
                ..Default::default()
            },
        )
        .await?;
        queued.insert(plan.id);
    }
    let claimers = (0..4).map(|w| {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Some(claimed) = plans::claim_next(&pool, &format!("worker-{w}")).await? {
                mine.push(claimed.plan.id);
            }
            anyhow::Ok(mine)
        })
    });
    let mut claimed = Vec::new();
    for claimer in claimers {
        claimed.extend(claimer.await??);
    }
    assert_eq!(claimed.len(), queued.len(), "no plan claimed twice");
    assert_eq!(claimed.into_iter().collect::<HashSet<_>>(), queued);

    // The ledger: a grant and its replay move the balance once; balance = ledger sum.
    let user = user_account::sign_in(
        pool,
        &OAuthProfile {
            provider: "github",
            provider_user_id: "ada",
            name: Some("Ada"),
            ..Default::default()
        },
    )
    .await?
    .user
    .id;
    let mut conn = pool.acquire().await?;
    let ten = Decimal::from(10);
    let first = credit_history::grant(&mut conn, user, ten, None, Some("grant-1")).await?;
    let again = credit_history::grant(&mut conn, user, ten, None, Some("grant-1")).await?;
    assert_eq!((first.new_balance, again.new_balance), (ten, ten));
    assert!(credit_history::reconcile_full(&mut conn).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn distributing_planexe_by_user_is_refused_by_its_own_keys() -> anyhow::Result<()> {
    let db = TestDatabase::on(Backend::Citus).await?;
    let pool = db.pool();
    // `user_id` is the only tenant-like column; every primary key is the row id alone, and the
    // Python services' SQLAlchemy models declare them so.
    for sql in [
        "SELECT create_distributed_table('plans', 'user_id')",
        "SELECT create_distributed_table('credit_history', 'user_id')",
    ] {
        let error = refusal(pool, sql).await;
        // (Citus's detail: distributed relations cannot have UNIQUE, EXCLUDE, or PRIMARY KEY
        // constraints that do not include the partition column.)
        assert!(
            error.contains("cannot create constraint on"),
            "{sql}: {error}"
        );
        eprintln!("{sql}: {error}");
    }
    Ok(())
}

#[tokio::test]
async fn a_queue_spread_over_shards_cannot_claim_in_order_across_users() -> anyhow::Result<()> {
    let db = TestDatabase::on(Backend::Citus).await?;
    let pool = db.pool();
    // The queue as it would have to be to distribute at all: keyed by (user_id, id), user_id
    // required (planexe's user_id is nullable: anonymous plans would have no shard).
    sqlx::raw_sql(
        "CREATE TABLE plans_by_user (LIKE plans INCLUDING DEFAULTS);
         ALTER TABLE plans_by_user ALTER COLUMN user_id SET NOT NULL,
                                   ADD PRIMARY KEY (user_id, id);
         SELECT create_distributed_table('plans_by_user', 'user_id');
         INSERT INTO plans_by_user (id, timestamp_created, state, prompt, stop_requested, user_id)
         SELECT gen_random_uuid(), now() - make_interval(secs => g), 'pending', 'p', false,
                'user-' || (g % 16)
         FROM generate_series(1, 64) g;",
    )
    .execute(pool)
    .await?;
    let shards: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = 'plans_by_user'::regclass",
    )
    .fetch_one(pool)
    .await?;
    assert_eq!(shards, 32);

    // The claim's first step, the oldest pending plan of anyone, locked and skipping locked
    // rows: Citus refuses row locks on a statement that spans shards.
    let error = refusal(
        pool,
        "SELECT id FROM plans_by_user
         WHERE state = 'pending' AND stop_requested IS NOT TRUE
         ORDER BY timestamp_created LIMIT 1 FOR UPDATE SKIP LOCKED",
    )
    .await;
    assert!(error.contains("FOR UPDATE"), "{error}");
    eprintln!("the global claim: {error}");

    // What routes is a claim of one user's oldest plan: FIFO within a user only, and a worker
    // would have to try users (shards) one by one to find work.
    let per_user: Option<uuid::Uuid> = sqlx::query_scalar(
        "SELECT id FROM plans_by_user
         WHERE user_id = 'user-3' AND state = 'pending' AND stop_requested IS NOT TRUE
         ORDER BY timestamp_created LIMIT 1 FOR UPDATE SKIP LOCKED",
    )
    .fetch_optional(pool)
    .await?;
    assert!(per_user.is_some());
    Ok(())
}
