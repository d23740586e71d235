//! `shared-db`: schema lifecycle, the embedded cluster and the demo from the command line.
//!
//! Reads `.env` (if present) and then the environment. Without `DATABASE_URL`, every command
//! uses the embedded PostgreSQL cluster under `target/`, and says so.
//!
//! Exit codes of `status`: 0 up to date, 1 upgrade available, 2 no information (unreachable or
//! never migrated), 3 diverged; so it can back a readiness probe directly.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use shared_db::embedded::{Action, Cluster};
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
    /// Report the schema status. Exit code: 0 up to date, 1 upgrade available, 2 no info, 3 diverged.
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
            let db = connect(&config).await?;
            db.migrate().await.context("migration failed")?;
            println!("migrations applied; schema is up to date");
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { json } => {
            let status = match connect(&config).await {
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
            let db = connect(&config).await?;
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
                database_url: Some(from),
                ..config.clone()
            })
            .await
            .context("cannot connect to the old database (--from)")?;
            let mut source = old.acquire().await?;
            let options = shared_db::shop::import::Options { dry_run, shops };
            let report = shared_db::shop::import::run(&mut source, &mut target, &options).await?;
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
        Command::Embedded { command } => embedded(command).await,
    }
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
