//! The README's main command, end to end: `shared-db demo` against a freshly migrated database
//! of its own exits 0 and prints every section of the report.

use std::process::Command;

use shared_db::testing::TestDatabase;

#[tokio::test(flavor = "multi_thread")]
async fn demo_plays_every_section_and_all_invariants_hold() {
    let test_db = TestDatabase::new().await.expect("test database");
    let url = test_db.url().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_shared-db"))
            .arg("demo")
            .env("DATABASE_URL", url)
            .env("SHARED_DB_LOG", "warn")
            .output()
            .expect("run shared-db demo")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "demo exited with {:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    for heading in [
        "== frontend (web app) ==",
        "== API server ==",
        "== workers ==",
        "== shop admin ==",
        "== closing ==",
    ] {
        assert!(
            stdout.contains(heading),
            "missing {heading:?} in:\n{stdout}"
        );
    }
    for invariant in [
        "✔ ledger sum equals balance for every user",
        "✔ no plan claimed twice",
        "✔ stock never negative",
    ] {
        assert!(
            stdout.contains(invariant),
            "missing {invariant:?} in:\n{stdout}"
        );
    }
    assert!(!stdout.contains('✘'), "a check failed:\n{stdout}");
    assert!(
        stdout.contains("Content-Range: products 0-9/30"),
        "{stdout}"
    );
}

/// The README's SQLite line: `DATABASE_URL=sqlite://demo.db shared-db demo` creates the file,
/// plays the planexe sections and their invariants, and says why the shop is skipped.
#[test]
fn the_sqlite_demo_plays_the_planexe_sections_on_a_new_file_and_all_invariants_hold() {
    let dir = std::env::temp_dir().join(format!("shared-db-sqlite-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("demo.db").display());
    let output = Command::new(env!("CARGO_BIN_EXE_shared-db"))
        .arg("demo")
        .env("DATABASE_URL", url)
        .env("SHARED_DB_LOG", "warn")
        .output()
        .expect("run shared-db demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "demo exited with {:?}\n--- stdout\n{stdout}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    for line in [
        "migrations: created the schema",
        "the shop sections need PostgreSQL",
        "✔ one account, 1 provider link(s) after two sign-ins",
        "✔ both deliveries answer the one outcome; credited once",
        "✔ the lost worker's late write is refused (superseded), nothing written",
        "✔ balance = ledger sum = 10 − 6 × 0.5, exact",
        ", 0 failed",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    assert!(!stdout.contains('✘'), "a check failed:\n{stdout}");
    std::fs::remove_dir_all(&dir).unwrap();
}
