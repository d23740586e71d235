//! What the tests that put several OS processes (this test binary again, or a Python process) on
//! one SQLite file share: the file, how each process opens it, the start signals beside it, and
//! the pinned Python interpreter. Each test binary uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use shared_db::Config;
use shared_db_sqlite::Database;

/// A database path of this test process (`<name>-<pid>.db` under the target's temporary
/// directory), with whatever an earlier run left there removed: the file, its WAL and every
/// signal file beside it.
pub fn fresh_file(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sqlite-files");
    std::fs::create_dir_all(&dir).unwrap();
    let file = format!("{name}-{}.db", std::process::id());
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with(&file) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    dir.join(file)
}

/// `path` with `suffix` appended: a signal file beside the database (`.go`, `.ready0`, …).
pub fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.to_path_buf().into_os_string();
    p.push(suffix);
    PathBuf::from(p)
}

/// Wait (up to a minute) until `signal` exists: how a child process waits for the parent's
/// start signal, so that every process begins at once.
pub async fn wait_for(signal: &Path) {
    let started = Instant::now();
    while !signal.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never signalled: {}",
            signal.display()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The file as one process of a test opens it: `connections` pooled connections, and a busy
/// timeout long enough that four processes contending never see `SQLITE_BUSY`.
pub async fn open(path: &Path, connections: u32) -> Database {
    Database::connect(&Config {
        max_connections: connections,
        sqlite_busy_timeout: Duration::from_secs(30),
        ..Config::new(format!("sqlite://{}", path.display()))
    })
    .await
    .unwrap()
}

/// The virtualenv's `python`, with the PlanExe services' SQLAlchemy pinned in
/// `.ci/python-sqlite` (which installs it under `target/tools` when it is missing).
pub fn python() -> PathBuf {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../.ci/python-sqlite");
    let out = Command::new(script)
        .output()
        .expect("run .ci/python-sqlite");
    assert!(
        out.status.success(),
        ".ci/python-sqlite failed (python3 with venv is in system-packages.txt): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}
