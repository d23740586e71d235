//! `shared-db demo`: one realistic day of the services that share the database, played through
//! the library's public API and printed section by section.
//!
//! Which database: with no `DATABASE_URL`, a fresh database `shared_db_demo_<UTC timestamp>` on
//! the embedded cluster, so every run starts empty (and older runs stay around for a look; they
//! go with `cargo run -- embedded stop` + `rm -rf target/shared-db-postgres`). With
//! `DATABASE_URL`, that database as given: everything the demo writes (OAuth identity, payment id,
//! shop name, e-mails) carries a per-run suffix, so reruns never collide with earlier runs or with
//! other data. The closing invariants are checked over the whole database. The plan queue is
//! shared, so the demo refuses (exit 2) to start when it already holds pending plans: its
//! workers would claim them.
//!
//! The demo runs no SQL of its own.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::TryStreamExt;
use rust_decimal::Decimal;
use serde_json::json;
use shared_db::planexe::plans::{self, NewPlan, Progress, ProgressAck};
use shared_db::planexe::user_account::{self, OAuthProfile};
use shared_db::planexe::user_api_key::{self, ApiKeySecret, KeyOptions, RawApiKey};
use shared_db::planexe::{EventType, credit_history, events, payment_record};
use shared_db::planexe::{user_provider, workers};
use shared_db::schema::SchemaStatus;
use shared_db::shop::{
    Lang, ListParams, ShopId, accounts, attribute_options, attributes, categories, orders,
    product_attribute_values, products, products_to_tags, shops, shops_users, tags, users,
};
use shared_db::{Config, Database, Error};
use tokio::sync::{Barrier, mpsc, watch};
use uuid::Uuid;

/// Plans in the worker section (the API server's one plus these).
const EXTRA_PLANS: usize = 4;
/// Pipeline steps each plan goes through.
const STEPS: [&str; 4] = ["Outline", "Research", "Drafting", "Review"];
/// Pause between pipeline steps (the "work").
const STEP_TIME: Duration = Duration::from_millis(120);
/// Heartbeat age after which the reaper treats a worker as dead.
const REAPER_THRESHOLD: Duration = Duration::from_secs(2);
/// Products the shop admin creates.
const PRODUCTS: usize = 30;

/// Entry point of the subcommand.
pub async fn run(config: &Config) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let run_id = chrono::Utc::now().format("%Y%m%d%H%M%S%3f").to_string();
    let (config, where_) = database_for_run(config, &run_id).await?;
    println!("shared-db demo · run {run_id}");
    println!("database: {where_}");
    let db = Database::connect(&config).await.context("cannot connect")?;
    let outcome = db.sync().await.context("migration failed")?;
    println!("migrations: {}", sync_text(&outcome));

    // The plan queue is global: the demo's workers claim whatever is pending. Refuse rather than
    // work (and complete) plans that other services queued in this database.
    let waiting = plans::count_pending(db.pool()).await?;
    if waiting > 0 {
        eprintln!(
            "the plan queue of this database already holds {waiting} pending plan(s) from elsewhere; \
             the demo's workers would process them. Run it on a database with an empty queue, \
             or without DATABASE_URL (a fresh embedded database)."
        );
        return Ok(ExitCode::from(2));
    }

    let mut checks = Checks::default();
    let frontend = frontend(&db, &run_id, &mut checks).await?;
    let api = api_server(&db, &frontend, &mut checks).await?;
    let plan_ids = workers_section(&db, &frontend, &api, &mut checks).await?;
    let shop_id = shop_admin(&db, &run_id, &mut checks).await?;
    closing(&db, &plan_ids, shop_id, &mut checks).await?;

    println!();
    println!(
        "demo finished in {:.1} s: {} check(s) passed, {} failed",
        started.elapsed().as_secs_f64(),
        checks.passed,
        checks.failed.len()
    );
    db.close().await;
    if checks.failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        for f in &checks.failed {
            println!("FAILED: {f}");
        }
        Ok(ExitCode::from(1))
    }
}

/// The database this run uses, and how to describe it.
async fn database_for_run(config: &Config, run_id: &str) -> anyhow::Result<(Config, String)> {
    match &config.database_url {
        Some(url) => Ok((
            config.clone(),
            format!(
                "{} (DATABASE_URL; this run's rows carry the suffix {run_id})",
                shared_db::config::redact_url(url)
            ),
        )),
        None => {
            let cluster = shared_db::embedded::Cluster::default_location()?;
            let running = cluster.ensure_running().await?;
            let name = format!("shared_db_demo_{run_id}");
            running.ensure_database(&name).await?;
            let mut config = config.clone();
            config.database_url = Some(running.url(&name));
            Ok((
                config,
                format!(
                    "fresh database {name} on the embedded cluster in {}",
                    cluster.root().display()
                ),
            ))
        }
    }
}

fn sync_text(outcome: &shared_db::schema::SyncOutcome) -> String {
    use shared_db::schema::SyncOutcome::*;
    match outcome {
        Created { applied } => format!("created the schema ({} migrations)", applied.len()),
        Upgraded { applied } => format!("upgraded ({} migrations applied)", applied.len()),
        AlreadyUpToDate => "already up to date".into(),
    }
}

/// Invariant and expectation checks; any failure makes the exit code 1.
#[derive(Default)]
struct Checks {
    passed: usize,
    failed: Vec<String>,
}

impl Checks {
    fn check(&mut self, ok: bool, what: impl Into<String>) {
        let what = what.into();
        if ok {
            self.passed += 1;
            println!("  ✔ {what}");
        } else {
            println!("  ✘ {what}");
            self.failed.push(what);
        }
    }
}

fn heading(title: &str) {
    println!();
    println!("== {title} ==");
}

fn short(id: Uuid) -> String {
    id.simple().to_string()[..8].to_owned()
}

struct Frontend {
    user_id: Uuid,
    secret: ApiKeySecret,
    raw_key: RawApiKey,
    api_key_id: Uuid,
}

/// Web frontend: sign-in, purchase, API key.
async fn frontend(db: &Database, run_id: &str, checks: &mut Checks) -> anyhow::Result<Frontend> {
    heading("frontend (web app)");
    let email = format!("ada+{run_id}@example.com");
    let provider_user_id = format!("google-{run_id}");
    let raw_profile = json!({ "sub": provider_user_id, "email": email });
    let profile = OAuthProfile {
        provider: "google",
        provider_user_id: &provider_user_id,
        email: Some(&email),
        name: Some("Ada Lovelace"),
        given_name: Some("Ada"),
        family_name: Some("Lovelace"),
        locale: Some("en"),
        raw_profile: Some(&raw_profile),
        ..Default::default()
    };
    let first = user_account::sign_in(db.pool(), &profile).await?;
    println!(
        "Ada signs in with Google: user {} (created: {})",
        first.user.id, first.created
    );
    let second = user_account::sign_in(db.pool(), &profile).await?;
    println!(
        "Ada signs in again:       user {} (created: {})",
        second.user.id, second.created
    );
    let links = user_provider::list_for_user(db.pool(), first.user.id).await?;
    checks.check(
        first.created && !second.created && first.user.id == second.user.id && links.len() == 1,
        format!(
            "one account, {} provider link(s) after two sign-ins",
            links.len()
        ),
    );
    let user_id = first.user.id;

    // The payment provider delivers the same webhook twice, concurrently (webhook + success page).
    let payment_id = format!("pi_demo_{run_id}");
    let payload = json!({ "id": payment_id, "amount": 2000, "currency": "usd" });
    let payment = payment_record::NewPayment {
        user_id,
        provider: "stripe",
        provider_payment_id: &payment_id,
        credits: Decimal::from(100),
        amount: 2000,
        currency: "usd",
        raw_payload: Some(&payload),
    };
    let (a, b) = tokio::join!(
        payment_record::apply(db.pool(), &payment),
        payment_record::apply(db.pool(), &payment)
    );
    let outcomes = [a?, b?];
    for (i, o) in outcomes.iter().enumerate() {
        match o {
            payment_record::PaymentOutcome::Applied { new_balance, .. } => println!(
                "webhook delivery {}: applied, balance now {new_balance} credits",
                i + 1
            ),
            payment_record::PaymentOutcome::Duplicate => {
                println!("webhook delivery {}: duplicate, nothing credited", i + 1)
            }
        }
    }
    let applied = outcomes
        .iter()
        .filter(|o| matches!(o, payment_record::PaymentOutcome::Applied { .. }))
        .count();
    let user = user_account::get(db.pool(), user_id).await?;
    checks.check(
        applied == 1 && user.credits_balance == Decimal::from(100),
        format!(
            "payment delivered twice, credited once (balance {})",
            user.credits_balance
        ),
    );

    let secret = ApiKeySecret::new(format!("demo-secret-{run_id}"));
    let mut conn = db.acquire().await?;
    let issued = user_api_key::create(
        &mut conn,
        &secret,
        user_id,
        Some("demo script"),
        KeyOptions::default(),
    )
    .await?;
    drop(conn);
    println!(
        "API key created (shown once, only its hash is stored): {}",
        issued.raw.expose()
    );
    let listed = user_api_key::list_for_user(db.pool(), user_id).await?;
    checks.check(
        listed.len() == 1 && listed[0].key_plaintext.is_none(),
        format!(
            "key listed by prefix {}…, plaintext not stored",
            listed[0].key_prefix
        ),
    );
    Ok(Frontend {
        user_id,
        secret,
        raw_key: issued.raw,
        api_key_id: issued.key.id,
    })
}

struct ApiServer {
    plan_id: Uuid,
    prompt: String,
}

/// API server: authenticate, submit, dedup.
async fn api_server(
    db: &Database,
    fe: &Frontend,
    checks: &mut Checks,
) -> anyhow::Result<ApiServer> {
    heading("API server");
    let presented = RawApiKey::from_presented(fe.raw_key.expose());
    let auth = user_api_key::authenticate(db.pool(), &fe.secret, &presented)
        .await?
        .context("the fresh key does not authenticate")?;
    println!(
        "request with the raw key → user {}, key {}, balance {} credits",
        auth.user_id,
        short(auth.api_key_id),
        auth.credits_balance
    );
    let forged = RawApiKey::from_presented("pex_not-a-real-key-000000000000000");
    let rejected = user_api_key::authenticate(db.pool(), &fe.secret, &forged).await?;
    checks.check(
        auth.user_id == fe.user_id && rejected.is_none(),
        "the raw key authenticates its owner; an unknown key is rejected",
    );

    let user = fe.user_id.to_string();
    let prompt = "A business plan for a solar-powered coffee cart".to_owned();
    let params = json!({ "model_profile": "balanced" });
    let mut submitted = Vec::new();
    for attempt in 1..=2 {
        let dup = plans::find_duplicate(
            db.pool(),
            &user,
            &prompt,
            Some("balanced"),
            Duration::from_secs(600),
        )
        .await?;
        let id = match dup {
            Some(existing) => {
                println!(
                    "submission {attempt}: duplicate of plan {} (dedup lookup), nothing queued",
                    short(existing)
                );
                existing
            }
            None => {
                let q = plans::enqueue(
                    db.pool(),
                    &NewPlan {
                        prompt: &prompt,
                        user_id: Some(&user),
                        api_key_id: Some(fe.api_key_id),
                        parameters: Some(&params),
                        ..Default::default()
                    },
                )
                .await?;
                println!("submission {attempt}: queued plan {}", short(q.id));
                q.id
            }
        };
        submitted.push(id);
    }
    checks.check(
        submitted[0] == submitted[1],
        "the duplicate submission returned the first plan",
    );
    Ok(ApiServer {
        plan_id: submitted[0],
        prompt,
    })
}

/// What a worker task reports to the section.
#[derive(Debug)]
enum WorkerNote {
    Claimed {
        worker: String,
        plan: Uuid,
    },
    Finished {
        worker: String,
        plan: Uuid,
        charged: Decimal,
    },
    Died {
        worker: String,
        plan: Uuid,
        step: usize,
    },
}

/// Workers: heartbeat, race, progress, billing, death, reaper.
async fn workers_section(
    db: &Database,
    fe: &Frontend,
    api: &ApiServer,
    checks: &mut Checks,
) -> anyhow::Result<Vec<Uuid>> {
    heading("workers");
    let user = fe.user_id.to_string();
    let mut plan_ids = vec![api.plan_id];
    let topics = [
        "a bakery in Lisbon",
        "a bike repair subscription",
        "a board-game café",
        "a language-exchange app",
    ];
    for topic in topics.iter().take(EXTRA_PLANS) {
        let prompt = format!("A business plan for {topic}");
        let q = plans::enqueue(
            db.pool(),
            &NewPlan {
                prompt: &prompt,
                user_id: Some(&user),
                api_key_id: Some(fe.api_key_id),
                ..Default::default()
            },
        )
        .await?;
        plan_ids.push(q.id);
    }
    println!(
        "{} plans pending ({}); 3 workers start",
        plan_ids.len(),
        plan_ids
            .iter()
            .map(|p| short(*p))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let balance_before = user_account::get(db.pool(), fe.user_id)
        .await?
        .credits_balance;

    let (note_tx, mut note_rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let barrier = Arc::new(Barrier::new(3));
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 1..=3 {
        let worker = Worker {
            db: db.clone(),
            id: format!("demo-worker-{n}"),
            dies_on_first_plan: n == 2,
            show_progress_of: api.plan_id,
            notes: note_tx.clone(),
            stop: stop_rx.clone(),
            barrier: barrier.clone(),
            t0,
        };
        tasks.spawn(worker.run());
    }
    drop(note_tx);

    // Supervisor: collect notes, run the reaper, stop the workers when every plan is done.
    let mut claims: Vec<(String, Uuid)> = Vec::new();
    let mut finished: BTreeMap<Uuid, String> = BTreeMap::new();
    let mut reaped: Vec<Uuid> = Vec::new();
    let mut died: Option<Uuid> = None;
    let mut reaper = tokio::time::interval(Duration::from_millis(250));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !plan_ids.iter().all(|p| finished.contains_key(p)) {
        if Instant::now() > deadline {
            bail!("workers did not finish the queue within 30 s");
        }
        tokio::select! {
            note = note_rx.recv() => match note {
                Some(WorkerNote::Claimed { worker, plan }) => {
                    println!("  {:>5.2}s {worker} claimed plan {}", t0.elapsed().as_secs_f64(), short(plan));
                    claims.push((worker, plan));
                }
                Some(WorkerNote::Finished { worker, plan, charged }) => {
                    println!(
                        "  {:>5.2}s {worker} completed plan {} (billed {charged} credits)",
                        t0.elapsed().as_secs_f64(),
                        short(plan)
                    );
                    finished.insert(plan, worker);
                }
                Some(WorkerNote::Died { worker, plan, step }) => {
                    println!(
                        "  {:>5.2}s {worker} crashed during step {step} of plan {} (no more heartbeats)",
                        t0.elapsed().as_secs_f64(),
                        short(plan)
                    );
                    died = Some(plan);
                }
                None => bail!("every worker stopped before the queue was done"),
            },
            _ = reaper.tick() => {
                let ids = plans::requeue_stale(db.pool(), REAPER_THRESHOLD).await?;
                for id in ids {
                    println!(
                        "  {:>5.2}s reaper: plan {} held by a worker silent for > {}s → re-queued",
                        t0.elapsed().as_secs_f64(),
                        short(id),
                        REAPER_THRESHOLD.as_secs()
                    );
                    reaped.push(id);
                }
            }
        }
    }
    let _ = stop_tx.send(true);
    while let Some(joined) = tasks.join_next().await {
        joined.context("worker task panicked")??;
    }
    println!(
        "queue drained in {:.1} s; workers shut down gracefully",
        t0.elapsed().as_secs_f64()
    );

    let first_round: Vec<Uuid> = claims.iter().take(3).map(|(_, p)| *p).collect();
    let mut distinct = first_round.clone();
    distinct.sort();
    distinct.dedup();
    checks.check(
        distinct.len() == 3,
        "the three workers' simultaneous first claims got three different plans",
    );
    let rescued_by = died.and_then(|p| finished.get(&p));
    checks.check(
        died.is_some_and(|p| reaped.contains(&p)) && rescued_by.is_some(),
        format!(
            "the dead worker's plan was re-queued by the reaper and finished by {}",
            rescued_by.map(String::as_str).unwrap_or("nobody")
        ),
    );
    let balance_after = user_account::get(db.pool(), fe.user_id)
        .await?
        .credits_balance;
    println!(
        "Ada's balance: {balance_before} → {balance_after} credits (usage billing, incl. the crashed attempt's steps)"
    );

    let showcase = died.unwrap_or(api.plan_id);
    println!(
        "events timeline of plan {} (the re-queued one):",
        short(showcase)
    );
    let timeline = events::list_by_plan(db.pool(), showcase, 50).await?;
    let origin = timeline.first().map(|e| e.timestamp);
    for e in &timeline {
        let at = origin
            .map(|o| (e.timestamp - o).num_milliseconds() as f64 / 1000.0)
            .unwrap_or(0.0);
        let worker = e
            .context
            .as_ref()
            .and_then(|c| c.get("worker_id"))
            .and_then(|w| w.as_str())
            .map(|w| format!(" [{w}]"))
            .unwrap_or_default();
        println!(
            "  +{at:>5.2}s {:<16} {}{worker}",
            e.event_type.as_str(),
            e.message
        );
    }
    let status = plans::status(db.pool(), api.plan_id).await?;
    println!(
        "API client polls plan {} (\"{}\"): {} {}%",
        short(api.plan_id),
        api.prompt,
        status.state.map(|s| s.as_str()).unwrap_or("?"),
        status.progress_percentage.unwrap_or_default()
    );
    Ok(plan_ids)
}

struct Worker {
    db: Database,
    id: String,
    dies_on_first_plan: bool,
    show_progress_of: Uuid,
    notes: mpsc::UnboundedSender<WorkerNote>,
    stop: watch::Receiver<bool>,
    barrier: Arc<Barrier>,
    t0: Instant,
}

impl Worker {
    /// The queue loop of a PlanExe-style worker (see also `examples/worker.rs`).
    async fn run(mut self) -> anyhow::Result<()> {
        let pool = self.db.pool().clone();
        workers::heartbeat(&pool, &self.id, None).await?;
        self.barrier.wait().await; // all three claim at the same moment
        while !*self.stop.borrow() {
            let Some(plan) = plans::claim_next(&pool, &self.id).await? else {
                workers::heartbeat(&pool, &self.id, None).await?;
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = self.stop.changed() => {}
                }
                continue;
            };
            let _ = self.notes.send(WorkerNote::Claimed {
                worker: self.id.clone(),
                plan: plan.id,
            });
            let payer = user_account::billing_user_for_plan(&pool, plan.user_id.as_deref())
                .await?
                .context("no user to bill")?;
            let api_key_id = plan.api_key_id.as_deref().and_then(|k| k.parse().ok());
            let mut cost = Decimal::ZERO;
            for (i, step) in STEPS.iter().enumerate() {
                if self.dies_on_first_plan && i == 2 {
                    let _ = self.notes.send(WorkerNote::Died {
                        worker: self.id.clone(),
                        plan: plan.id,
                        step: i + 1,
                    });
                    return Ok(()); // the process is gone: no finish, no heartbeat
                }
                tokio::time::sleep(STEP_TIME).await;
                workers::heartbeat(&pool, &self.id, Some(plan.id)).await?;
                let done = i as i32 + 1;
                let pct = Decimal::from(done * 100) / Decimal::from(STEPS.len() as i32);
                let ack = plans::update_progress(
                    &pool,
                    plan.id,
                    &Progress {
                        percentage: pct,
                        message: step,
                        steps_completed: Some(done),
                        steps_total: Some(STEPS.len() as i32),
                        current_step: Some(step),
                    },
                )
                .await?;
                if let ProgressAck::Abort { state, .. } = ack {
                    bail!("plan {} aborted in state {state:?}", plan.id);
                }
                cost += Decimal::new(25, 2); // 0.25 credits per step
                let mut conn = pool.acquire().await?;
                credit_history::bill_usage_progress(
                    &mut conn,
                    &credit_history::PlanUsage {
                        user_id: payer,
                        plan_id: plan.id,
                        api_key_id,
                        cost,
                        succeeded: false,
                    },
                )
                .await?;
                if plan.id == self.show_progress_of {
                    println!(
                        "  {:>5.2}s {} progress {}: step {done}/{} {step:<9} {pct:>3}%  (billed so far {cost})",
                        self.t0.elapsed().as_secs_f64(),
                        self.id,
                        short(plan.id),
                        STEPS.len()
                    );
                }
            }
            let total = cost + Decimal::ONE; // success fee
            let mut conn = pool.acquire().await?;
            let billing = credit_history::bill_usage_final(
                &mut conn,
                &credit_history::PlanUsage {
                    user_id: payer,
                    plan_id: plan.id,
                    api_key_id,
                    cost: total,
                    succeeded: true,
                },
            )
            .await?;
            drop(conn);
            plans::finish_completed(
                &pool,
                plan.id,
                Some(&json!({ "billed_credits": total.to_string(), "billing": billing })),
            )
            .await?;
            let _ = self.notes.send(WorkerNote::Finished {
                worker: self.id.clone(),
                plan: plan.id,
                charged: total,
            });
        }
        workers::heartbeat(&pool, &self.id, None).await?;
        Ok(())
    }
}

/// Shop admin: catalog, lists, translations, last-item race, stock.
async fn shop_admin(db: &Database, run_id: &str, checks: &mut Checks) -> anyhow::Result<ShopId> {
    heading("shop admin");
    let shop = shops::create(
        db.pool(),
        &shops::ShopFields::named(format!("Demo poster shop {run_id}")),
    )
    .await?;
    println!("shop created: {} ({})", shop.name, short(shop.id.get()));
    let admin = users::create(
        db.pool(),
        &users::UserFields {
            email: Some(format!("admin+{run_id}@example.com")),
            username: Some(format!("admin-{run_id}")),
            first_name: Some("Grace".into()),
            password: Some("correct horse battery staple".into()),
            ..Default::default()
        },
    )
    .await?;
    shops_users::add(db.pool(), shop.id, admin.id).await?;
    println!(
        "admin user {} can manage it",
        admin.email.as_deref().unwrap_or("?")
    );

    let mut conn = db.acquire().await?;
    let mut cats = Vec::new();
    for (main, alt1) in [
        ("Mugs", "Mokken"),
        ("Shirts", "Shirts"),
        ("Posters", "Posters"),
    ] {
        let c = categories::create(
            &mut conn,
            shop.id,
            &categories::CategoryFields {
                translation: categories::CategoryTranslationInput {
                    main_name: main.into(),
                    main_description: format!("All our {}", main.to_lowercase()),
                    alt1_name: Some(alt1.into()),
                    alt1_description: Some(format!("Al onze {}", alt1.to_lowercase())),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await?;
        cats.push((main, c.item.id));
    }
    let mut tag_ids = Vec::new();
    for (main, alt1) in [("sale", "uitverkoop"), ("gift", "cadeau")] {
        let t = tags::create(
            &mut conn,
            shop.id,
            &tags::TagFields {
                name: Some(main.into()),
                translation: tags::NameTranslationInput {
                    main_name: main.into(),
                    alt1_name: Some(alt1.into()),
                    alt2_name: None,
                },
            },
        )
        .await?;
        tag_ids.push(t.item.id);
    }
    let colour = attributes::create(
        &mut conn,
        shop.id,
        &attributes::AttributeFields {
            name: "colour".into(),
            unit: None,
            translation: Some(tags::NameTranslationInput {
                main_name: "Colour".into(),
                alt1_name: Some("Kleur".into()),
                alt2_name: None,
            }),
        },
    )
    .await?;
    let mut options = Vec::new();
    for key in ["red", "blue", "black"] {
        options.push(
            attribute_options::create(db.pool(), shop.id, colour.item.id, key)
                .await?
                .id,
        );
    }
    println!(
        "{} categories, {} tags, attribute \"colour\" with {} options",
        cats.len(),
        tag_ids.len(),
        options.len()
    );

    let adjectives = [
        "Classic", "Retro", "Minimal", "Bold", "Vintage", "Neon", "Pastel", "Nordic", "Urban",
        "Tiny",
    ];
    let mut product_ids = Vec::new();
    for i in 0..PRODUCTS {
        let (cat_name, cat_id) = cats[i % cats.len()];
        let singular = cat_name.trim_end_matches('s');
        let adjective = adjectives[i / cats.len()];
        let last_item = i == PRODUCTS - 1;
        let main_name = if last_item {
            "Signed limited-edition poster".to_owned()
        } else {
            format!("{adjective} {}", singular.to_lowercase())
        };
        // every tenth product has no alt1 name: shown in alt1 it falls back to the main name
        let alt1_name = (i % 10 != 4).then(|| format!("{main_name} (NL)"));
        let mut new = products::ProductFields::new(
            Some(cat_id),
            products::ProductTranslationInput {
                main_name: main_name.clone(),
                main_description: format!(
                    "A {} {}.",
                    adjective.to_lowercase(),
                    singular.to_lowercase()
                ),
                main_description_short: adjective.into(),
                alt1_name,
                alt1_description: Some(format!("Een {} product.", adjective.to_lowercase())),
                ..Default::default()
            },
        );
        new.price = Some(Decimal::new(950 + (i as i64 * 7 % 23) * 100, 2));
        let stock = if last_item { 1 } else { 5 + (i as i32 % 7) };
        new.featured = i % 4 == 0;
        new.new_product = i % 5 == 0;
        let p = products::create(&mut conn, shop.id, &new, stock).await?;
        if i % 3 == 0 {
            products_to_tags::link(db.pool(), shop.id, p.item.id, tag_ids[0]).await?;
        }
        if i % 7 == 0 {
            products_to_tags::link(db.pool(), shop.id, p.item.id, tag_ids[1]).await?;
        }
        product_attribute_values::create(
            db.pool(),
            shop.id,
            p.item.id,
            colour.item.id,
            Some(options[(i / cats.len()) % options.len()]),
        )
        .await?;
        product_ids.push(p.item.id);
        if (i + 1) % 10 == 0 {
            println!("  products created: {}/{PRODUCTS}", i + 1);
        }
    }

    let shirts = cats[1].1;
    for skip in [0, 5] {
        let params = ListParams::default()
            .filter(format!("category_id:{shirts}"))
            .filter("option_value_key:bl") // colour blue or black
            .sort("price:DESC")
            .page(skip, 5);
        let page = products::list(&mut conn, shop.id, &params).await?;
        println!(
            "GET /products?filter=category_id:Shirts&filter=option_value_key:bl&sort=price:DESC&skip={skip}&limit=5 → Content-Range: {}",
            page.content_range
        );
        for p in &page.items {
            println!(
                "    {:<22} {:>6.2}  stock {}",
                p.name(Lang::Main).unwrap_or("?"),
                p.item.price.unwrap_or_default(),
                p.item.stock
            );
        }
    }
    let all = products::list(&mut conn, shop.id, &ListParams::default().page(0, 10)).await?;
    checks.check(
        all.total == PRODUCTS as i64
            && all.content_range.to_string() == format!("products 0-9/{PRODUCTS}"),
        format!(
            "first page of all products: Content-Range: {}",
            all.content_range
        ),
    );

    let translated = products::get(db.pool(), shop.id, product_ids[0]).await?;
    let untranslated = products::get(db.pool(), shop.id, product_ids[4]).await?;
    println!(
        "in alt1: {:?} (main {:?}); {:?} has no alt1 name → falls back to {:?}",
        translated.name(Lang::Alt1).unwrap_or("?"),
        translated.name(Lang::Main).unwrap_or("?"),
        untranslated.name(Lang::Main).unwrap_or("?"),
        products::name(db.pool(), shop.id, product_ids[4], Lang::Alt1).await?
    );

    // Two customers race for the last signed poster.
    let last = *product_ids.last().expect("products");
    let last_name = products::name(db.pool(), shop.id, last, Lang::Main).await?;
    let mut placed = Vec::new();
    for customer in ["Alice", "Bob"] {
        let account = accounts::create(db.pool(), shop.id, Some(customer), None).await?;
        let order = orders::create(
            &mut conn,
            shop.id,
            &orders::OrderFields {
                account_id: Some(account.id),
                items: vec![orders::OrderItem {
                    description: None,
                    price: Decimal::new(49, 0),
                    product_id: last,
                    product_name: last_name.clone(),
                    quantity: 1,
                }],
                total: Some(Decimal::new(49, 0)),
                ..Default::default()
            },
            None,
        )
        .await?;
        println!(
            "{customer} orders the last \"{last_name}\": order #{}",
            order.customer_order_id
        );
        placed.push((customer, order.id));
    }
    drop(conn);
    let (mut c1, mut c2) = (db.acquire().await?, db.acquire().await?);
    let (r1, r2) = tokio::join!(
        orders::complete(&mut c1, shop.id, placed[0].1, admin.id),
        orders::complete(&mut c2, shop.id, placed[1].1, admin.id)
    );
    drop((c1, c2));
    let mut won = 0;
    for ((customer, order_id), result) in placed.iter().zip([r1, r2]) {
        match result {
            Ok(o) => {
                won += 1;
                println!(
                    "  {customer}'s order completed at {}",
                    o.completed_at.map(|t| t.to_rfc3339()).unwrap_or_default()
                );
            }
            Err(Error::InsufficientStock {
                requested,
                available,
                ..
            }) => {
                println!(
                    "  {customer}'s order refused: wanted {requested}, {available} left; order cancelled"
                );
                let mut conn = db.acquire().await?;
                orders::cancel(&mut conn, shop.id, *order_id).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let after = products::get(db.pool(), shop.id, last).await?;
    checks.check(
        won == 1 && after.item.stock == 0,
        format!(
            "exactly one customer got the last item (stock now {})",
            after.item.stock
        ),
    );

    // A regular order: two mugs.
    let mug = product_ids[0];
    let before = products::get(db.pool(), shop.id, mug).await?;
    let mut conn = db.acquire().await?;
    let order = orders::create(
        &mut conn,
        shop.id,
        &orders::OrderFields {
            items: vec![orders::OrderItem {
                description: Some("gift wrap".into()),
                price: before.item.price.unwrap_or_default(),
                product_id: mug,
                product_name: before.name(Lang::Main).unwrap_or("?").to_owned(),
                quantity: 2,
            }],
            total: before.item.price.map(|p| p * Decimal::TWO),
            ..Default::default()
        },
        None,
    )
    .await?;
    let done = orders::complete(&mut conn, shop.id, order.id, admin.id).await?;
    let mug_after = products::get(db.pool(), shop.id, mug).await?;
    println!(
        "order #{} for 2 × {:?}: {:?}; stock {} → {}",
        done.customer_order_id,
        before.name(Lang::Main).unwrap_or("?"),
        done.status,
        before.item.stock,
        mug_after.item.stock
    );
    checks.check(
        mug_after.item.stock == before.item.stock - 2,
        "completing the order took the stock",
    );
    Ok(shop.id)
}

/// Closing: schema status and invariants.
async fn closing(
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

    let drift = credit_history::reconcile(db.pool()).await?;
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
    let all: Vec<_> = products::export(&mut conn, shop_id).try_collect().await?;
    let negative = all.iter().filter(|p| p.item.stock < 0).count();
    let total_stock: i64 = all.iter().map(|p| i64::from(p.item.stock)).sum();
    checks.check(
        negative == 0 && all.len() == PRODUCTS,
        format!(
            "stock never negative ({} products, {total_stock} units in stock)",
            all.len()
        ),
    );
    Ok(())
}
