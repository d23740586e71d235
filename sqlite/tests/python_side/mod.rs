//! What the Python+SQLite tests share: the pinned interpreter and a fresh file for each run.

use std::path::PathBuf;
use std::process::Command;

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

/// A database path of this test process (`<name>-<pid>.db` under the target's temporary
/// directory), with whatever an earlier run left there (the file, its WAL and the tests'
/// signal files) removed.
pub fn fresh_file(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sqlite-python");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}-{}.db", std::process::id()));
    for suffix in [
        "",
        "-wal",
        "-shm",
        ".migrate-lock",
        ".rust-done",
        ".python-ready",
    ] {
        let mut p = path.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
    path
}
