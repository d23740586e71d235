//! `shared-db`: schema lifecycle, the embedded cluster and the demo from the command line.
//!
//! Reads `.env` (if present) and then the environment. Without `DATABASE_URL`, every command
//! uses the embedded PostgreSQL cluster under `target/`, and says so.
//!
//! Exit codes of `status`: 0 up to date, 1 upgrade available, 2 no information (unreachable or
//! never migrated), 3 diverged, 4 ahead (a newer release migrated it; compatible, ready),
//! 5 incompatible (a newer release's contract migration needs a newer binary); ready means 0 or
//! 4, so it can back a readiness probe directly.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use shared_db::embedded::{Action, Cluster};
use shared_db::planexe::retention::{self, Table};
use shared_db::schema::SchemaStatus;
use shared_db::{Config, Database};

mod demo;

#[derive(Parser)]
#[command(
    version,
    about = "shared-db: schema lifecycle for the shared PostgreSQL database"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending migrations (waits for any other migrating process).
    Migrate,
    /// Report the schema status. Exit code: 0 up to date, 1 upgrade available, 2 no info,
    /// 3 diverged, 4 ahead (ready), 5 incompatible.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Apply pending migrations and report what was done.
    Sync {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Play one day of the services that share the database and check the invariants
    /// (fresh database on the embedded cluster, or DATABASE_URL with per-run data). Exit code 1
    /// if an invariant fails.
    Demo,
    /// Housekeeping on a live database.
    Maintenance {
        #[command(subcommand)]
        command: MaintenanceCommand,
    },
    /// The shop schema.
    Shop {
        #[command(subcommand)]
        command: ShopCommand,
    },
    /// Manage the embedded PostgreSQL cluster used when DATABASE_URL is unset.
    Embedded {
        #[command(subcommand)]
        command: EmbeddedCommand,
    },
}

#[derive(Subcommand)]
enum MaintenanceCommand {
    /// Delete old events, idle nonces and old token metrics in small batches (safe beside live
    /// services; the credit ledger is never touched). Ages like `90d`, `12h`, `30days`.
    Purge {
        /// Delete events older than this.
        #[arg(long, value_parser = humantime::parse_duration)]
        events_older_than: Option<std::time::Duration>,
        /// Delete nonces not used for this long (PlanExe's own rule: 30 days).
        #[arg(long, value_parser = humantime::parse_duration)]
        nonces_older_than: Option<std::time::Duration>,
        /// Delete token metrics older than this.
        #[arg(long, value_parser = humantime::parse_duration)]
        token_metrics_older_than: Option<std::time::Duration>,
        /// Rows per batch (one short transaction each).
        #[arg(long, default_value_t = retention::DEFAULT_BATCH)]
        batch: u32,
    },
}

#[derive(Subcommand)]
enum ShopCommand {
    /// Import the old shop backend's database (its `public` tables) into `shop.*` of
    /// DATABASE_URL, keeping ids. Prints the report (every refused row, each shop's outcome).
    /// Exit code 0 when everything was imported, 1 when rows were refused or shops skipped.
    Import {
        /// URL of the old database (may be DATABASE_URL itself).
        #[arg(long)]
        from: String,
        /// Check and report only; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Import only this shop (repeatable; default every shop).
        #[arg(long = "shop", value_name = "ID")]
        shops: Vec<uuid::Uuid>,
        /// Also write the report as JSON to this file.
        #[arg(long, value_name = "FILE")]
        json: Option<std::path::PathBuf>,
    },
    /// On a Citus coordinator (DATABASE_URL), distribute the migrated shop schema: tables
    /// co-located by shop_id, reference tables for what every shop shares. Idempotent: a
    /// distributed schema is left as it is. Run `migrate` first. See docs/SCALING.md.
    Distribute {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum EmbeddedCommand {
    /// Start the cluster (creating it on first use) and print where it is.
    Start,
    /// Stop the cluster.
    Stop,
    /// Say whether the cluster runs, and where.
    Status,
    /// Print the URL of a database on the cluster (starting the cluster if needed).
    Url {
        /// Database name.
        #[arg(default_value = "shared_db")]
        database: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    // A missing .env is normal; a malformed one is worth a warning but not a failure.
    let dotenv = dotenvy::dotenv();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SHARED_DB_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = dotenv
        && !e.not_found()
    {
        tracing::warn!(error = %e, "ignoring unreadable .env file");
    }
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(10)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = Config::from_env()?;
    match cli.command {
        Command::Migrate => {
            let db = Lifecycle::connect(&config).await?;
            match db.sync().await.context("migration failed")? {
                shared_db::schema::SyncOutcome::Ahead { newer } => println!(
                    "nothing to apply: a newer release already applied {newer:?}; compatible"
                ),
                _ => println!("migrations applied; schema is up to date"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { json } => {
            let status = match Lifecycle::connect(&config).await {
                Ok(db) => db.status().await,
                Err(e) => SchemaStatus::NoInfo {
                    reason: format!("{e:#}"),
                },
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print_status(&status);
            }
            Ok(ExitCode::from(status.exit_code() as u8))
        }
        Command::Sync { json } => {
            let db = Lifecycle::connect(&config).await?;
            let outcome = db.sync().await.context("sync failed")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&outcome)?);
            } else {
                match outcome {
                    shared_db::schema::SyncOutcome::Created { applied } => {
                        println!(
                            "created: applied {} migration(s) {applied:?}",
                            applied.len()
                        )
                    }
                    shared_db::schema::SyncOutcome::Upgraded { applied } => {
                        println!(
                            "upgraded: applied {} migration(s) {applied:?}",
                            applied.len()
                        )
                    }
                    shared_db::schema::SyncOutcome::AlreadyUpToDate => {
                        println!("already up to date")
                    }
                    shared_db::schema::SyncOutcome::Ahead { newer } => {
                        println!(
                            "ahead: a newer release applied {newer:?}; nothing to apply, compatible"
                        )
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo => demo::run(&config).await,
        Command::Shop {
            command:
                ShopCommand::Import {
                    from,
                    dry_run,
                    shops,
                    json,
                },
        } => {
            let db = connect(&config).await?;
            let mut target = db.acquire().await?;
            let old = Database::connect(&Config {
                database_url: Some(from.into()),
                ..config.clone()
            })
            .await
            .context("cannot connect to the old database (--from)")?;
            let mut source = old.acquire().await?;
            let options = shared_db::shop::import::Options { dry_run, shops };
            let mut show = import_progress();
            let report = shared_db::shop::import::run_with_progress(
                &mut source,
                &mut target,
                &options,
                &mut show,
            )
            .await?;
            eprintln!();
            print!("{report}");
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            Ok(if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Shop {
            command: ShopCommand::Distribute { json },
        } => {
            let db = connect(&config).await?;
            let mut conn = db.acquire().await?;
            let done = shared_db::shop::distribute::distribute(&mut conn).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&done)?);
            } else {
                print!("{done}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Embedded { command } => embedded(command).await,
        Command::Maintenance {
            command:
                MaintenanceCommand::Purge {
                    events_older_than,
                    nonces_older_than,
                    token_metrics_older_than,
                    batch,
                },
        } => {
            let db = connect(&config).await?;
            let mut conn = db.acquire().await?;
            let jobs = [
                (Table::Events, events_older_than),
                (Table::Nonces, nonces_older_than),
                (Table::TokenMetrics, token_metrics_older_than),
            ];
            if jobs.iter().all(|(_, age)| age.is_none()) {
                anyhow::bail!("nothing to purge: give at least one --…-older-than");
            }
            for (table, age) in jobs {
                let Some(age) = age else { continue };
                let done = purge_with_progress(&mut conn, table, age, batch).await?;
                println!(
                    "{}: deleted {} rows older than {} in {} batch(es), {:.1} s ({:.0} rows/s)",
                    table.name(),
                    done.deleted,
                    age_text(age),
                    done.batches,
                    done.elapsed.as_secs_f64(),
                    done.rows_per_sec()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `90d` for whole days, else humantime's form (`12h 30m`).
fn age_text(age: std::time::Duration) -> String {
    let secs = age.as_secs();
    if secs > 0 && secs.is_multiple_of(86_400) && age.subsec_nanos() == 0 {
        format!("{}d", secs / 86_400)
    } else {
        humantime::format_duration(age).to_string()
    }
}

/// Progress of `shop import` on stderr: on a terminal one line rewritten at most 10 times a
/// second, otherwise a log line every 10 s; rows per second, the shop and table, refused so far.
fn import_progress() -> impl FnMut(&shared_db::shop::import::Progress<'_>) + Send {
    use std::io::{IsTerminal, Write};
    let terminal = std::io::stderr().is_terminal();
    let every = std::time::Duration::from_millis(if terminal { 100 } else { 10_000 });
    let mut last: Option<std::time::Instant> = None;
    move |p| {
        if last.is_some_and(|t| t.elapsed() < every) {
            return;
        }
        last = Some(std::time::Instant::now());
        let rate = p.rows as f64 / p.elapsed.as_secs_f64().max(0.001);
        let line = format!(
            "shop import: {} rows ({rate:.0} rows/s), {} refused; {} / {}",
            p.rows, p.refused, p.unit, p.table
        );
        if terminal {
            eprint!("\r\x1b[2K{line}");
            let _ = std::io::stderr().flush();
        } else {
            eprintln!("{line}");
        }
    }
}

/// One table's purge; on a terminal, a progress line rewritten after every batch.
async fn purge_with_progress(
    conn: &mut sqlx::PgConnection,
    table: Table,
    age: std::time::Duration,
    batch: u32,
) -> anyhow::Result<retention::Progress> {
    use std::io::{IsTerminal, Write};
    let terminal = std::io::stderr().is_terminal();
    let done = retention::purge(conn, table, age, batch, |p| {
        if terminal {
            eprint!(
                "\r{}: {} rows deleted, {:.0} rows/s   ",
                table.name(),
                p.deleted,
                p.rows_per_sec()
            );
            let _ = std::io::stderr().flush();
        }
    })
    .await
    .with_context(|| format!("purging {}", table.name()))?;
    if terminal {
        eprintln!();
    }
    Ok(done)
}

async fn connect(config: &Config) -> anyhow::Result<Database> {
    if config.database_url.is_none() {
        let cluster = Cluster::default_location()?;
        eprintln!(
            "DATABASE_URL is not set: using the embedded PostgreSQL cluster in {}",
            cluster.root().display()
        );
    }
    Ok(Database::connect_or_embedded(config).await?)
}

/// The database `migrate`, `status` and `sync` act on: PostgreSQL (the embedded cluster without
/// `DATABASE_URL`), or a SQLite file for a `sqlite:` URL. Both answer with the same states and
/// outcomes, so the commands and their exit codes do not depend on the backend.
enum Lifecycle {
    Postgres(Database),
    Sqlite(shared_db_sqlite::Database),
}

impl Lifecycle {
    async fn connect(config: &Config) -> anyhow::Result<Self> {
        Ok(match config.database_url.as_ref().map(|u| u.expose()) {
            Some(url) if shared_db_sqlite::connect::is_sqlite_url(url) => {
                Lifecycle::Sqlite(shared_db_sqlite::Database::connect(config).await?)
            }
            _ => Lifecycle::Postgres(connect(config).await?),
        })
    }

    async fn sync(&self) -> shared_db::Result<shared_db::schema::SyncOutcome> {
        match self {
            Lifecycle::Postgres(db) => db.sync().await,
            Lifecycle::Sqlite(db) => db.sync().await,
        }
    }

    async fn status(&self) -> SchemaStatus {
        match self {
            Lifecycle::Postgres(db) => db.status().await,
            Lifecycle::Sqlite(db) => db.status().await,
        }
    }
}

fn print_status(status: &SchemaStatus) {
    match status {
        SchemaStatus::UpToDate { version } => match version {
            Some(v) => println!("up to date (version {v})"),
            None => println!("up to date (no migrations)"),
        },
        SchemaStatus::UpgradeAvailable { pending } => {
            println!("upgrade available: {} pending migration(s)", pending.len());
            for m in pending {
                println!("  {:>4}  {}", m.version, m.description);
            }
        }
        SchemaStatus::NoInfo { reason } => println!("no information: {reason}"),
        SchemaStatus::Ahead { version, newer } => {
            println!(
                "ahead: a newer release applied {} migration(s) on top of this binary's {}; \
                 compatible, ready",
                newer.len(),
                version.map_or("none".into(), |v| format!("version {v}"))
            );
            for m in newer {
                println!("  {:>4}  {}", m.version, m.description);
            }
        }
        SchemaStatus::Incompatible {
            contract,
            requires_version,
            release,
            reason,
        } => {
            println!(
                "incompatible: migration {contract} ({reason}) needs a binary that knows \
                 migration {requires_version}; deploy {release} or newer"
            );
        }
        SchemaStatus::Diverged {
            changed,
            unknown,
            failed,
        } => {
            println!("diverged: the database and this binary disagree");
            if !changed.is_empty() {
                println!("  edited after being applied: {changed:?}");
            }
            if !unknown.is_empty() {
                println!("  applied but unknown to this binary: {unknown:?}");
            }
            if !failed.is_empty() {
                println!("  recorded as failed: {failed:?}");
            }
        }
    }
}

async fn embedded(command: EmbeddedCommand) -> anyhow::Result<ExitCode> {
    let action = match command {
        EmbeddedCommand::Start => Action::Start,
        EmbeddedCommand::Stop => Action::Stop,
        EmbeddedCommand::Status => Action::Status,
        EmbeddedCommand::Url { database } => Action::Url { database },
    };
    let outcome = action.run(&Cluster::default_location()?).await?;
    println!("{}", outcome.text);
    Ok(if outcome.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
