//! `shared-db migrate` and `status` as deploy scripts use them: two processes migrating one
//! database at once both succeed, and `status` reports the outcome through its exit code.

use std::process::Command;

use shared_db::testing::TestDatabase;

fn cli(database_url: &str, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_shared-db"))
        .args(args)
        .env("DATABASE_URL", database_url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the shared-db binary")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_migrating_at_once_both_succeed_and_the_cli_reports_it() {
    let test_db = TestDatabase::empty().await.unwrap();
    let url = test_db.url().to_owned();

    let before = cli(&url, &["status"]).wait_with_output().unwrap();
    assert_eq!(before.status.code(), Some(2), "never migrated → exit 2");

    let a = cli(&url, &["migrate"]);
    let b = cli(&url, &["migrate"]);
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));

    let after = cli(&url, &["status", "--json"]).wait_with_output().unwrap();
    assert_eq!(
        after.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&after.stdout)
    );
    let json: serde_json::Value = serde_json::from_slice(&after.stdout).unwrap();
    assert_eq!(json["status"], "up_to_date");

    // Every migration of the binary is recorded exactly once.
    let recorded: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(test_db.pool())
            .await
            .unwrap();
    let expected: Vec<i64> = shared_db::MIGRATOR.iter().map(|m| m.version).collect();
    assert_eq!(recorded, expected);
}

#[test]
fn four_processes_migrating_one_sqlite_file_at_once_all_succeed_and_apply_each_migration_once() {
    let dir = std::env::temp_dir().join(format!("shared-db-sqlite-migrate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("app.db");
    let url = format!("sqlite://{}", file.display());

    let before = cli(&url, &["status"]).wait_with_output().unwrap();
    assert_eq!(before.status.code(), Some(2), "never migrated → exit 2");

    let migrators: Vec<_> = (0..4).map(|_| cli(&url, &["migrate"])).collect();
    for m in migrators {
        let out = m.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let after = cli(&url, &["status", "--json"]).wait_with_output().unwrap();
    assert_eq!(
        after.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&after.stdout)
    );
    let json: serde_json::Value = serde_json::from_slice(&after.stdout).unwrap();
    assert_eq!(json["status"], "up_to_date");
    let synced = cli(&url, &["sync"]).wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&synced.stdout).trim(),
        "already up to date"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
