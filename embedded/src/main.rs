//! `shared-db-embedded start|stop|status|url [database]`: the embedded cluster from the shell.
//!
//! Builds without the `shared-db` library and its checked queries, so `.ci/prepare` can get a
//! database URL from it while `.sqlx` is stale.

use std::process::ExitCode;

use shared_db_embedded::{Action, Cluster};

const USAGE: &str = "usage: shared-db-embedded start | stop | status | url [database] | citus start | citus stop | citus url <database>";

fn main() -> ExitCode {
    let words: Vec<String> = std::env::args().skip(1).collect();
    let Some(action) = Action::parse(&words) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start a runtime: {e}");
            return ExitCode::from(10);
        }
    };
    let outcome = runtime.block_on(async { action.run(&Cluster::default_location()?).await });
    match outcome {
        Ok(outcome) => {
            println!("{}", outcome.text);
            if outcome.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(10)
        }
    }
}
