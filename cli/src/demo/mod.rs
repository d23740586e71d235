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

mod api_server;
mod closing;
mod frontend;
mod shop_admin;
mod sqlite;
mod workers;

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use shared_db::planexe::plans;
use shared_db::{Config, Database};
use uuid::Uuid;

/// Entry point of the subcommand.
pub async fn run(config: &Config) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let run_id = chrono::Utc::now().format("%Y%m%d%H%M%S%3f").to_string();
    if let Some(url) = &config.database_url
        && shared_db_sqlite::connect::is_sqlite_url(url.expose())
    {
        println!("shared-db demo · run {run_id}");
        return sqlite::run(config, &run_id, started).await;
    }
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
    let frontend = frontend::run(&db, &run_id, &mut checks).await?;
    let api = api_server::run(&db, &frontend, &mut checks).await?;
    let plan_ids = workers::run(&db, &frontend, &api, &mut checks).await?;
    let shop_id = shop_admin::run(&db, &run_id, &mut checks).await?;
    closing::run(&db, &plan_ids, shop_id, &mut checks).await?;

    let elapsed = started.elapsed();
    db.close().await;
    Ok(checks.finish(elapsed))
}

/// The database this run uses, and how to describe it.
async fn database_for_run(config: &Config, run_id: &str) -> anyhow::Result<(Config, String)> {
    match &config.database_url {
        Some(url) => Ok((
            config.clone(),
            format!(
                "{} (DATABASE_URL; this run's rows carry the suffix {run_id})",
                url.redacted()
            ),
        )),
        None => {
            let name = format!("shared_db_demo_{run_id}");
            let mut config = config.clone();
            config.database_url = Some(shared_db::embedded::database_url(&name).await?.into());
            Ok((
                config,
                format!(
                    "fresh database {name} on the embedded cluster in {}",
                    shared_db::embedded::Cluster::default_location()?
                        .root()
                        .display()
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
        Ahead { newer } => format!(
            "ahead: a newer release applied {} more migration(s); nothing to apply",
            newer.len()
        ),
    }
}

/// Invariant and expectation checks; any failure makes the exit code 1.
#[derive(Default)]
pub(crate) struct Checks {
    passed: usize,
    failed: Vec<String>,
}

impl Checks {
    pub(crate) fn check(&mut self, ok: bool, what: impl Into<String>) {
        let what = what.into();
        if ok {
            self.passed += 1;
            println!("  ✔ {what}");
        } else {
            println!("  ✘ {what}");
            self.failed.push(what);
        }
    }

    /// The closing summary, every failed check again, and the exit code: 1 if any failed.
    pub(crate) fn finish(self, elapsed: std::time::Duration) -> ExitCode {
        println!();
        println!(
            "demo finished in {:.1} s: {} check(s) passed, {} failed",
            elapsed.as_secs_f64(),
            self.passed,
            self.failed.len()
        );
        if self.failed.is_empty() {
            return ExitCode::SUCCESS;
        }
        for f in &self.failed {
            println!("FAILED: {f}");
        }
        ExitCode::from(1)
    }
}

pub(crate) fn heading(title: &str) {
    println!();
    println!("== {title} ==");
}

pub(crate) fn short(id: Uuid) -> String {
    id.simple().to_string()[..8].to_owned()
}
