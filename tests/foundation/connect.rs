//! Connecting: no URL is a configuration error, never some other database; a server that does
//! not answer and a pool that stays busy are timeouts of their own, safe to retry.

use std::time::Duration;

use shared_db::testing::TestDatabase;
use shared_db::{Config, Database, Error};
use sqlx::Connection;

#[tokio::test]
async fn without_a_url_connect_fails_with_a_configuration_error_naming_database_url() {
    let config = Config::from_lookup(|_| None).expect("defaults");
    let err = Database::connect(&config).await.unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert!(err.to_string().contains("DATABASE_URL"), "{err}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_server_that_never_answers_is_a_connect_timeout_with_the_password_hidden() {
    // A socket that accepts connections (the kernel's backlog) and never speaks.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let mut config = Config::new(format!("postgres://app:hunter2@127.0.0.1:{port}/db"));
    config.connect_timeout = Duration::from_millis(300);

    let err = Database::connect(&config).await.unwrap_err();
    assert!(
        matches!(&err, Error::ConnectTimeout { timeout, .. } if *timeout == config.connect_timeout),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert!(!err.to_string().contains("hunter2"), "{err}");
    drop(silent);
}

#[tokio::test]
async fn a_pool_that_stays_busy_is_a_pool_timeout() -> anyhow::Result<()> {
    let test_db = TestDatabase::new().await?;
    let mut config = Config::new(test_db.url());
    config.max_connections = 1;
    // Wide enough for a debug build to open a connection (SCRAM authentication is slow).
    config.acquire_timeout = Duration::from_secs(2);
    let db = Database::connect(&config).await?;

    let held = db.acquire().await?;
    assert_eq!(db.pending_requests(), 0);
    let waiter = tokio::spawn({
        let db = db.clone();
        async move { db.acquire().await.map(drop) }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        db.pending_requests(),
        1,
        "one caller waits for a connection"
    );
    let err = waiter.await?.unwrap_err();
    assert!(matches!(err, Error::PoolTimeout), "{err:?}");
    assert!(err.is_retryable(), "nothing was sent");
    assert_eq!(db.pending_requests(), 0);
    drop(held);
    db.close().await;
    Ok(())
}

/// The embedded cluster, with the unix socket these tests connect through.
async fn cluster() -> anyhow::Result<shared_db::embedded::Running> {
    let running = shared_db::embedded::Cluster::default_location()?
        .ensure_running()
        .await?;
    let socket = running
        .socket_dir
        .join(format!(".s.PGSQL.{}", running.port));
    anyhow::ensure!(
        socket.exists(),
        "no socket at {}: the embedded cluster was started by an older build; restart it \
         (`cargo run -- embedded stop`, the next test starts it again)",
        socket.display()
    );
    Ok(running)
}

fn percent_encode_path(path: &str) -> String {
    path.bytes()
        .map(|b| match b {
            b'/' => "%2F".to_owned(),
            _ => (b as char).to_string(),
        })
        .collect()
}

#[tokio::test]
async fn unix_socket_strings_reach_the_server_in_every_spelling_and_mixed_with_tcp()
-> anyhow::Result<()> {
    let test_db = TestDatabase::new().await?;
    let pg = cluster().await?;
    let dir = pg.socket_dir.display().to_string();
    let (port, pw, name) = (pg.port, pg.password(), test_db.name());
    let socket = format!("{dir}/.s.PGSQL.{port}");
    for (url, serving) in [
        (
            format!("host={dir} port={port} user=postgres password={pw} dbname={name}"),
            None,
        ),
        (
            format!("postgres://postgres:{pw}@/{name}?host={dir}&port={port}"),
            None,
        ),
        (
            format!(
                "postgres://postgres:{pw}@{}:{port}/{name}",
                percent_encode_path(&dir)
            ),
            None,
        ),
        // a socket directory with no server first: libpq moves on to the next host
        (
            format!(
                "host=/nonexistent/shared-db,{dir} port={port} user=postgres password={pw} \
                 dbname={name}"
            ),
            Some(socket.clone()),
        ),
        // TCP first, then the socket, with a target: the first primary serves
        (
            format!(
                "host=127.0.0.1,{dir} port=1,{port} user=postgres password={pw} dbname={name} \
                 target_session_attrs=read-write"
            ),
            Some(socket.clone()),
        ),
    ] {
        let mut config = Config::new(url.as_str());
        config.connect_timeout = Duration::from_secs(10);
        let db = Database::connect(&config).await?;
        let over_socket: bool = sqlx::query_scalar("SELECT inet_server_addr() IS NULL")
            .fetch_one(db.pool())
            .await?;
        let shown = shared_db::config::redact_url(&url);
        assert!(over_socket, "{shown}: not connected over the socket");
        assert_eq!(db.serving_host(), serving, "{shown}");
        assert!(!format!("{db:?}").contains(pw), "{db:?}");
        db.close().await;
    }
    Ok(())
}

/// Runs [`pg_environment_and_password_file_apply_as_in_libpq`] (its child side) in a process of its own with `env` (the
/// `PG*` variables are process-wide, so they cannot be set inside this test process).
fn connect_in_child(url: &str, database: &str, env: &[(&str, String)]) -> bool {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "connect::pg_environment_and_password_file_apply_as_in_libpq",
        "--nocapture",
        "--test-threads=1",
    ]);
    for var in [
        "DATABASE_URL",
        "PGHOST",
        "PGHOSTADDR",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGPASSWORD",
        "PGPASSFILE",
        "PGSERVICE",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("SHARED_DB_CHILD_URL", url)
        .env("SHARED_DB_CHILD_DATABASE", database);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run the test binary");
    if !out.status.success() {
        eprintln!(
            "child for {url:?} failed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    out.status.success()
}

#[tokio::test]
async fn pg_environment_and_password_file_apply_as_in_libpq() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // The same test in a child process (see `connect_in_child`): connect with the environment
    // it was given, and report through the exit status.
    if let Ok(url) = std::env::var("SHARED_DB_CHILD_URL") {
        return connect_with_the_pg_environment(&url).await;
    }
    let test_db = TestDatabase::new().await?;
    let pg = cluster().await?;
    let (port, pw, name) = (pg.port, pg.password(), test_db.name().to_owned());
    let dir = pg.socket_dir.display().to_string();
    let scratch = std::env::temp_dir().join(format!("shared-db-pgpass-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let passfile = scratch.join("pgpass");
    // host:port:database:user:password, matched as libpq does
    std::fs::write(
        &passfile,
        format!(
            "127.0.0.1:{port}:{name}:postgres:{pw}\n\
             pgpass-name.invalid:{port}:*:postgres:{pw}\n\
             {dir}:{port}:*:postgres:{pw}\n"
        ),
    )?;
    std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(0o600))?;
    let empty = scratch.join("empty");
    std::fs::write(&empty, "")?;
    std::fs::set_permissions(&empty, std::fs::Permissions::from_mode(0o600))?;
    let file = passfile.display().to_string();
    let env = |pairs: &[(&'static str, &str)]| -> Vec<(&'static str, String)> {
        pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
    };
    let port_s = port.to_string();
    // Everything from the environment, the password from the file (searched for host, port,
    // database and user).
    let all_from_env = env(&[
        ("PGHOST", "127.0.0.1"),
        ("PGPORT", &port_s),
        ("PGUSER", "postgres"),
        ("PGDATABASE", &name),
        ("PGPASSFILE", &file),
    ]);
    assert!(connect_in_child("postgres://", &name, &all_from_env));
    // hostaddr is where it connects; the file is searched for the host name
    let named = env(&[
        ("PGPORT", &port_s),
        ("PGUSER", "postgres"),
        ("PGDATABASE", &name),
        ("PGPASSFILE", &file),
    ]);
    assert!(connect_in_child(
        "host=pgpass-name.invalid hostaddr=127.0.0.1",
        &name,
        &named
    ));
    // PGHOST names a socket directory
    let socket = env(&[
        ("PGHOST", &dir),
        ("PGPORT", &port_s),
        ("PGUSER", "postgres"),
        ("PGPASSFILE", &file),
    ]);
    assert!(connect_in_child(&format!("dbname={name}"), &name, &socket));
    // and it is the file that supplied the password: without the line, the same fails
    let no_password = env(&[
        ("PGHOST", "127.0.0.1"),
        ("PGPORT", &port_s),
        ("PGUSER", "postgres"),
        ("PGDATABASE", &name),
        ("PGPASSFILE", &empty.display().to_string()),
    ]);
    assert!(!connect_in_child("postgres://", &name, &no_password));
    std::fs::remove_dir_all(&scratch)?;
    Ok(())
}

/// The child's side of [`pg_environment_and_password_file_apply_as_in_libpq`]: connects to
/// `url` with the `PG*` variables its parent set, and checks it reached the expected database as
/// `postgres`.
async fn connect_with_the_pg_environment(url: &str) -> anyhow::Result<()> {
    let mut config = Config::new(url);
    config.connect_timeout = Duration::from_secs(5);
    let db = Database::connect(&config).await?;
    let (user, database): (String, String) =
        sqlx::query_as("SELECT current_user::text, current_database()::text")
            .fetch_one(db.pool())
            .await?;
    assert_eq!(user, "postgres");
    assert_eq!(database, std::env::var("SHARED_DB_CHILD_DATABASE")?);
    db.close().await;
    Ok(())
}

#[tokio::test]
async fn failures_before_a_connection_exists_are_retryable_for_any_operation() {
    // a socket directory with no server in it, at start-up
    let mut config = Config::new("host=/nonexistent/shared-db dbname=x user=u password=hunter2");
    config.connect_timeout = Duration::from_secs(2);
    let err = Database::connect(&config).await.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(err.is_retryable() && !err.is_outcome_unknown(), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("hunter2"), "{err:?}");

    // from a bare executor: a missing socket and a name that does not resolve (RFC 6761
    // reserves `.invalid`) can only happen before a connection exists
    for url in [
        "postgres://u@%2Fnonexistent%2Fshared-db/x",
        "postgres://u@shared-db-test.invalid/x",
    ] {
        let e = tokio::time::timeout(Duration::from_secs(20), sqlx::PgConnection::connect(url))
            .await
            .expect("the resolver answers")
            .unwrap_err();
        let err = Error::from(e);
        assert!(
            err.is_retryable() && !err.is_outcome_unknown(),
            "{url}: {err:?}"
        );
    }
}

#[tokio::test]
async fn a_replica_url_that_names_a_primary_is_refused_with_a_clear_error() -> anyhow::Result<()> {
    let test_db = TestDatabase::new().await?;
    let mut config = Config::new(test_db.url());
    config.replica_url = Some(test_db.url().into());
    let err = Database::connect(&config).await.unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("DATABASE_REPLICA_URL") && message.contains("standby"),
        "{message}"
    );
    assert!(
        message.contains(":***@"),
        "the URL is shown redacted: {message}"
    );
    Ok(())
}

#[tokio::test]
async fn a_lost_watcher_connection_does_not_retire_the_pool_of_a_host_that_still_serves()
-> anyhow::Result<()> {
    let test_db = TestDatabase::new().await?;
    let pg = cluster().await?;
    let url = format!(
        "postgres://postgres:{}@127.0.0.1:{},127.0.0.1:1/{}?target_session_attrs=read-write",
        pg.password(),
        pg.port,
        test_db.name()
    );
    let mut config = Config::new(url);
    config.failover_check_interval = Duration::from_millis(100);
    config.max_connections = 2;
    let db = Database::connect(&config).await?;
    let pids = async |db: &Database| -> anyhow::Result<Vec<i32>> {
        let mut a = db.acquire().await?;
        let mut b = db.acquire().await?;
        let mut pids = vec![
            sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()")
                .fetch_one(&mut *a)
                .await?,
            sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()")
                .fetch_one(&mut *b)
                .await?,
        ];
        pids.sort_unstable();
        Ok(pids)
    };
    let before = pids(&db).await?;
    // The watcher's own session (its role checks); a loaded debug build may need a while.
    let watcher_pid = async || -> anyhow::Result<Option<i32>> {
        Ok(sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1 \
             AND datname = current_database()",
        )
        .bind(shared_db::failover::MONITOR_APPLICATION_NAME)
        .fetch_optional(test_db.pool())
        .await?)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let cut = loop {
        if let Some(pid) = watcher_pid().await? {
            break pid;
        }
        assert!(std::time::Instant::now() < deadline, "no watcher session");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Cut it, as a network blip would.
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(cut)
        .execute(test_db.pool())
        .await?;
    // The watcher notices, probes the hosts, finds the same primary and opens a new session.
    loop {
        if watcher_pid().await?.is_some_and(|pid| pid != cut) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the watcher did not come back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        db.serving_host().as_deref(),
        Some(&*format!("127.0.0.1:{}", pg.port))
    );
    assert_eq!(
        pids(&db).await?,
        before,
        "the pooled connections were retired"
    );
    db.close().await;
    Ok(())
}

#[tokio::test]
async fn debug_of_a_database_shows_where_it_connects_and_no_password() -> anyhow::Result<()> {
    let test_db = TestDatabase::new().await?;
    let password = test_db
        .url()
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, pw)| pw.to_owned())
        .expect("the test URL has a password");
    let mut config = Config::new(test_db.url());
    config.migration_url = Some(test_db.url().into());
    let db = Database::connect(&config).await?;
    let shown = format!("{db:?} {config:?}");
    assert!(!shown.contains(&password), "{shown}");
    assert!(shown.contains(test_db.name()), "{shown}");
    db.close().await;
    Ok(())
}
