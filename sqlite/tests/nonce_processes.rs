//! Several OS processes on one SQLite file consume the same form nonces at the same time: each
//! nonce is accepted (`is_new`) by exactly one process, every other use is a replay, and no use
//! is lost (`request_count` counts them all). No call may fail: a lock wait ends within
//! `busy_timeout`, never as "database is locked" or as a unique-key conflict.
//!
//! The consumer processes are this test binary itself, run with `--ignored --exact
//! consumer_process` and the file named in the environment.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{beside, fresh_file, open, wait_for};
use serde_json::json;
use shared_db_sqlite::planexe::nonces;

const FILE: &str = "SHARED_DB_SQLITE_NONCE_FILE";
const CHILD: &str = "SHARED_DB_SQLITE_NONCE_CHILD";
const PROCESSES: usize = 4;
const NONCES: usize = 120;

/// The keys every process submits: one form each, as the frontend names them.
fn key(i: usize) -> String {
    format!("CREATE_00000000-0000-4000-8000-{i:012}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_accept_each_nonce_once() {
    let path = fresh_file("nonces");
    let db = open(&path, 2).await;
    db.migrate().await.unwrap();

    let children: Vec<_> = (0..PROCESSES)
        .map(|n| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--ignored", "--exact", "consumer_process", "--nocapture"])
                .env(FILE, &path)
                .env(CHILD, n.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Start them together, once every one has its connection open.
    let started = Instant::now();
    while !(0..PROCESSES).all(|n| beside(&path, &format!(".ready{n}")).exists()) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "children never ready"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    std::fs::write(beside(&path, ".go"), b"go").unwrap();

    // Which process accepted each key.
    let mut accepted: HashMap<String, usize> = HashMap::new();
    let mut per_process = Vec::new();
    for (n, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "consumer process {n} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mine: Vec<&str> = stdout
            .lines()
            .filter_map(|l| l.strip_prefix("ACCEPTED "))
            .collect();
        per_process.push(mine.len());
        for key in mine {
            if let Some(other) = accepted.insert(key.to_owned(), n) {
                panic!("nonce {key} accepted by processes {other} and {n}");
            }
        }
    }
    assert_eq!(accepted.len(), NONCES, "every nonce accepted exactly once");
    assert!(
        per_process.iter().filter(|n| **n > 0).count() > 1,
        "the processes raced for the same keys: {per_process:?}"
    );
    let mut conn = db.acquire().await.unwrap();
    for i in 0..NONCES {
        let nonce = nonces::get(&mut conn, &key(i)).await.unwrap();
        assert_eq!(
            nonce.request_count,
            PROCESSES as i32,
            "no use lost: {}",
            key(i)
        );
    }
}

/// One consumer process of the story above (run by it, never on its own): submits every key
/// once. Two processes start at the first key and two at the middle one, so pairs race for
/// the same key at the same moment, and more than one process gets to accept some.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of four_processes_accept_each_nonce_once"]
async fn consumer_process() {
    let path = PathBuf::from(std::env::var(FILE).expect("run by the parent story"));
    let n: usize = std::env::var(CHILD).unwrap().parse().unwrap();
    let db = open(&path, 2).await;
    let mut conn = db.acquire().await.unwrap();
    std::fs::write(beside(&path, &format!(".ready{n}")), b"ready").unwrap();
    wait_for(&beside(&path, ".go")).await;
    let offset = (n % 2) * NONCES / 2;
    let context = json!({ "user_agent": format!("process-{}", std::process::id()) });
    for i in 0..NONCES {
        let key = key((i + offset) % NONCES);
        let used = nonces::consume(&mut conn, &key, Some(&context))
            .await
            .unwrap();
        if used.is_new {
            println!("ACCEPTED {key}");
        }
        // A form is submitted now and then, not in a tight loop: the processes stay side by side
        // however the machine schedules them.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
