//! What the `embedded` commands do, shared by `shared-db-embedded` and `shared-db embedded`.

use crate::{Cluster, Result};

/// One command on the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start the cluster (creating it on first use) and say where it is.
    Start,
    /// Stop the cluster.
    Stop,
    /// Say whether the cluster runs, and where.
    Status,
    /// Print the URL of `database` on the cluster (starting the cluster and creating the
    /// database if needed). The URL holds the superuser password.
    Url {
        /// Database name.
        database: String,
    },
    /// Build Citus into `target/tools` if missing, start the three-node Citus test cluster
    /// (creating it on first use) and say where it is and how long each step took.
    CitusStart,
    /// Stop the Citus test cluster.
    CitusStop,
    /// Print the coordinator URL of `database` on the Citus test cluster (starting it, creating
    /// the database on every node with the extension, registering the workers).
    CitusUrl {
        /// Database name.
        database: String,
    },
}

/// What a command reports: a line for standard output and whether it is a success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The line to print.
    pub text: String,
    /// False only for [`Action::Status`] on a cluster that does not run.
    pub ok: bool,
}

impl Action {
    /// Parses command-line words: `start`, `stop`, `status`, `url [database]` (default
    /// database `shared_db`), `citus start`, `citus stop`, `citus url <database>`. `None` for
    /// anything else.
    pub fn parse(words: &[String]) -> Option<Action> {
        match words {
            [cmd] if cmd == "start" => Some(Action::Start),
            [cmd] if cmd == "stop" => Some(Action::Stop),
            [cmd] if cmd == "status" => Some(Action::Status),
            [cmd] if cmd == "url" => Some(Action::Url {
                database: "shared_db".into(),
            }),
            [cmd, database] if cmd == "url" => Some(Action::Url {
                database: database.clone(),
            }),
            [citus, cmd] if citus == "citus" && cmd == "start" => Some(Action::CitusStart),
            [citus, cmd] if citus == "citus" && cmd == "stop" => Some(Action::CitusStop),
            [citus, cmd, database] if citus == "citus" && cmd == "url" => Some(Action::CitusUrl {
                database: database.clone(),
            }),
            _ => None,
        }
    }

    /// Runs the command on `cluster`.
    pub async fn run(self, cluster: &Cluster) -> Result<Outcome> {
        let ok = |text: String| Outcome { text, ok: true };
        match self {
            Action::Start => {
                let running = cluster.ensure_running().await?;
                Ok(ok(format!(
                    "embedded PostgreSQL running on 127.0.0.1:{} (data: {}, log: {})",
                    running.port,
                    cluster.data_dir().display(),
                    cluster.log_file().display()
                )))
            }
            Action::Stop => {
                let was_running = blocking(cluster, Cluster::stop).await?;
                let verb = if was_running {
                    "stopped"
                } else {
                    "was not running"
                };
                Ok(ok(format!(
                    "embedded PostgreSQL {verb} ({})",
                    cluster.root().display()
                )))
            }
            Action::Status => Ok(match blocking(cluster, Cluster::running).await? {
                Some(running) => ok(format!(
                    "running on 127.0.0.1:{} (data: {})",
                    running.port,
                    cluster.data_dir().display()
                )),
                None => Outcome {
                    text: format!("not running ({})", cluster.root().display()),
                    ok: false,
                },
            }),
            Action::Url { database } => {
                let running = cluster.ensure_running().await?;
                running.ensure_database(&database).await?;
                Ok(ok(running.url(&database)))
            }
            Action::CitusStart => {
                let target = crate::target_dir()?;
                let built = tokio::task::spawn_blocking(move || {
                    crate::citus::CitusInstall::ensure(&target)
                })
                .await
                .map_err(|e| crate::Error::Cluster(format!("task failed: {e}")))??;
                let citus = crate::citus::CitusCluster::default_location()?;
                let started = std::time::Instant::now();
                let running = citus.ensure_running().await?;
                running.ensure_database("postgres").await?;
                let build = match built.1 {
                    Some(took) => format!("built in {:.1} s", took.as_secs_f64()),
                    None => "already built".into(),
                };
                Ok(ok(format!(
                    "Citus {} ({build}): coordinator on 127.0.0.1:{}, workers on {}, started and registered in {:.1} s ({})",
                    crate::citus::VERSION,
                    running.coordinator.port,
                    running
                        .workers
                        .iter()
                        .map(|w| format!("127.0.0.1:{}", w.port))
                        .collect::<Vec<_>>()
                        .join(", "),
                    started.elapsed().as_secs_f64(),
                    citus.root().display()
                )))
            }
            Action::CitusStop => {
                let citus = crate::citus::CitusCluster::default_location()?;
                let was = tokio::task::spawn_blocking(move || citus.stop())
                    .await
                    .map_err(|e| crate::Error::Cluster(format!("task failed: {e}")))??;
                Ok(ok(format!(
                    "Citus test cluster {}",
                    if was { "stopped" } else { "was not running" }
                )))
            }
            Action::CitusUrl { database } => {
                let citus = crate::citus::CitusCluster::default_location()?;
                let running = citus.ensure_running().await?;
                running.ensure_database(&database).await?;
                Ok(ok(running.coordinator.url(&database)))
            }
        }
    }
}

/// Runs a blocking cluster operation off the async threads.
async fn blocking<T: Send + 'static>(
    cluster: &Cluster,
    op: fn(&Cluster) -> Result<T>,
) -> Result<T> {
    let cluster = cluster.clone();
    tokio::task::spawn_blocking(move || op(&cluster))
        .await
        .map_err(|e| crate::Error::Cluster(format!("task failed: {e}")))?
}
