//! Real PostgreSQL topologies for the HA stories, built from the installed server packages:
//! a streaming replica of the embedded primary (`pg_basebackup -R`), and a pg_auto_failover
//! formation (monitor, primary, secondary). Everything runs as the `postgres` system user when
//! the tests run as root, lives under cargo's per-target temporary directory, and is stopped
//! when its value is dropped. A missing package is a test failure, never a skip.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sqlx::{Connection, PgConnection};

/// Debian's server binaries.
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// Debian's server extension libraries (pg_auto_failover's monitor extension lives here).
const PG_LIB: &str = "/usr/lib/postgresql/15/lib";

/// uid/gid of the `postgres` user when we are root (PostgreSQL refuses to run as root).
fn run_as() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let root = std::fs::metadata("/proc/self").ok().map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.uid() == 0
    })?;
    if !root {
        return None;
    }
    let line = passwd.lines().find(|l| l.starts_with("postgres:"))?;
    let f: Vec<&str> = line.split(':').collect();
    Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
}

/// A command run as the server's user, with `dir` as its home and the server binaries first
/// on `PATH`.
pub fn server_command(program: &str, dir: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(dir)
        .env("HOME", dir)
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("XDG_DATA_HOME", dir.join("share"))
        .env("XDG_RUNTIME_DIR", dir.join("run"))
        // Local connections go through sockets in the work directory (see `init_cluster`), as
        // the superuser `postgres` that `init_cluster` creates, whoever runs the tests.
        .env("PGHOST", dir.join("run"))
        .env("PGUSER", "postgres")
        .env(
            "PATH",
            format!("{PG_BIN}:{}", std::env::var("PATH").unwrap_or_default()),
        )
        .env("PG_CONFIG", format!("{PG_BIN}/pg_config"))
        .env_remove("PGDATA");
    if let Some((uid, gid)) = run_as() {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

/// The path of `program` (in the server binaries' directory or on `PATH`), or an error that
/// names the Debian `package` providing it. Checked before anything is created, so a machine
/// without the package fails at once with what to install, never with a spawn error halfway.
pub fn require_program(program: &str, package: &str) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::iter::once(PathBuf::from(PG_BIN))
        .chain(std::env::split_paths(&path))
        .map(|dir| dir.join(program))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .ok_or_else(|| {
            missing(
                &format!("`{program}` (looked in {PG_BIN} and on PATH)"),
                package,
            )
        })
}

/// [`require_program`] for a file another package installs (a server extension's library).
pub fn require_file(path: &str, package: &str) -> anyhow::Result<()> {
    if Path::new(path).is_file() {
        Ok(())
    } else {
        Err(missing(path, package))
    }
}

fn missing(what: &str, package: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{what} is not installed: install the Debian package {package}. Every prerequisite of \
         `cargo test` is in system-packages.txt and in the README's install line (\"Two \
         commands\")"
    )
}

/// Runs `cmd` to completion; its output goes into the error when it fails.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("spawn {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A fresh directory owned by the server's user.
pub fn work_dir(name: &str) -> anyhow::Result<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "{name}-{}-{}",
        std::process::id(),
        free_port()?
    ));
    let _ = std::fs::remove_dir_all(&dir);
    for sub in ["", "config", "share", "run"] {
        std::fs::create_dir_all(dir.join(sub))?;
        if let Some((uid, gid)) = run_as() {
            std::os::unix::fs::chown(dir.join(sub), Some(uid), Some(gid))?;
        }
    }
    Ok(dir)
}

/// `initdb` of `data` with the superuser `postgres`, its Unix sockets in `dir/run`.
///
/// The packaged servers put their sockets in /var/run/postgresql, which only the `postgres`
/// system user may write to; a test run by an ordinary user could not start a server there.
/// pg_auto_failover keeps an existing cluster's settings, so the monitor and the first node are
/// made here and handed to `pg_autoctl create`; the second node is a base backup of the first
/// and inherits them.
fn init_cluster(dir: &Path, data: &Path) -> anyhow::Result<()> {
    run(server_command(&format!("{PG_BIN}/initdb"), dir)
        .args(["--auth=trust", "--username=postgres", "--no-sync", "-D"])
        .arg(data))?;
    let conf = data.join("postgresql.conf");
    let mut settings = std::fs::read_to_string(&conf)?;
    settings.push_str(&format!(
        "\nunix_socket_directories = '{}'\n",
        dir.join("run").display()
    ));
    std::fs::write(&conf, settings)?;
    Ok(())
}

/// A TCP port nobody listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `pg_ctl stop -m immediate`: the server dies as in a crash (no shutdown checkpoint).
pub fn stop_immediately(dir: &Path, data: &Path) -> anyhow::Result<()> {
    run(server_command(&format!("{PG_BIN}/pg_ctl"), dir)
        .args(["stop", "-m", "immediate", "-D"])
        .arg(data))
}

/// Polls `connect` until it succeeds or `within` passes.
pub async fn wait_for_connection(url: &str, within: Duration) -> anyhow::Result<PgConnection> {
    let deadline = Instant::now() + within;
    loop {
        match PgConnection::connect(url).await {
            Ok(conn) => return Ok(conn),
            Err(e) if Instant::now() > deadline => {
                return Err(e).with_context(|| format!("no server at {url}"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// A hot standby of the embedded cluster on a port of its own.
pub struct Replica {
    dir: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The primary's URL and the replication slot the standby streams from (dropped with it).
    primary_url: url::Url,
    slot: String,
}

impl Replica {
    /// `pg_basebackup -R` of the server at `primary_url` (the embedded cluster), started on a
    /// second port; returns once it accepts connections.
    pub async fn of(primary_url: &str) -> anyhow::Result<Self> {
        require_program("pg_basebackup", "postgresql")?;
        let url = url::Url::parse(primary_url)?;
        let dir = work_dir("replica")?;
        let data = dir.join("data");
        let port = free_port()?;
        // A slot of its own (created before the backup starts) keeps the primary's WAL until
        // the standby has it: other tests' CREATE DATABASE writes WAL fast enough to recycle
        // segments during the backup otherwise.
        let replica = Replica {
            dir,
            port,
            primary_url: url.clone(),
            slot: format!("shared_db_test_replica_{port}"),
        };
        run(
            server_command(&format!("{PG_BIN}/pg_basebackup"), &replica.dir)
                .env("PGPASSWORD", url.password().unwrap_or_default())
                .args([
                    "-h",
                    "127.0.0.1",
                    "-U",
                    url.username(),
                    "-R",
                    "-X",
                    "stream",
                ])
                .args([
                    "--checkpoint=fast",
                    "--no-sync",
                    "-C",
                    "-S",
                    &replica.slot,
                    "-p",
                ])
                .arg(url.port().context("primary port")?.to_string())
                .arg("-D")
                .arg(&data),
        )?;
        run(server_command(&format!("{PG_BIN}/pg_ctl"), &replica.dir)
            .args(["start", "-w", "-D"])
            .arg(&data)
            .arg("-l")
            .arg(replica.dir.join("log"))
            .arg("-o")
            .arg(format!(
                "-p {port} -c unix_socket_directories= -c hot_standby=on"
            )))?;
        Ok(replica)
    }

    /// `primary_url` with the port swapped for the replica's.
    pub fn url_for(&self, primary_url: &str) -> String {
        let mut url = url::Url::parse(primary_url).expect("primary URL");
        url.set_port(Some(self.port)).expect("port");
        url.to_string()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = stop_immediately(&self.dir, &self.dir.join("data"));
        // The slot name is ours (letters, digits, underscores), not input.
        let _ = run(server_command(&format!("{PG_BIN}/psql"), &self.dir)
            .env(
                "PGPASSWORD",
                self.primary_url.password().unwrap_or_default(),
            )
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                self.primary_url.username(),
                "-d",
                "postgres",
            ])
            .arg("-p")
            .arg(self.primary_url.port().unwrap_or(5432).to_string())
            .arg("-c")
            .arg(format!(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                 WHERE slot_name = '{}'",
                self.slot
            )));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A pg_auto_failover formation on 127.0.0.1: a monitor, and two data nodes that it runs as
/// primary and synchronous secondary.
pub struct Formation {
    dir: PathBuf,
    /// The `pg_autoctl` binary, found before anything started.
    pg_autoctl: PathBuf,
    /// Monitor port.
    pub monitor_port: u16,
    /// Data node ports: `[node1, node2]`; node1 starts as primary.
    pub ports: [u16; 2],
    keepers: Vec<Child>,
}

impl Formation {
    /// Creates and starts the formation and waits until node1 is primary and node2 secondary.
    /// The monitor's health checks are tuned down from their production defaults (20 s before
    /// a node is unhealthy, 30 s before an unreachable primary counts as demoted) to about a
    /// second each, so the test measures our side of the failover rather than those waits.
    pub async fn start(database: &str) -> anyhow::Result<Self> {
        let pg_autoctl = require_program("pg_autoctl", "pg-auto-failover-cli")?;
        require_file(
            &format!("{}/pgautofailover.so", PG_LIB),
            "postgresql-15-auto-failover",
        )?;
        let dir = work_dir("formation")?;
        let mut formation = Formation {
            dir,
            pg_autoctl,
            monitor_port: free_port()?,
            ports: [free_port()?, free_port()?],
            keepers: Vec::new(),
        };
        init_cluster(&formation.dir, &formation.dir.join("monitor"))?;
        init_cluster(&formation.dir, &formation.dir.join("node1"))?;
        let monitor_data = formation.dir.join("monitor").display().to_string();
        formation.spawn_keeper(&[
            "create",
            "monitor",
            "--pgdata",
            &monitor_data,
            "--pgport",
            &formation.monitor_port.to_string(),
        ])?;
        let mut monitor = wait_for_connection(&formation.monitor_url(), Duration::from_secs(60))
            .await
            .context("pg_auto_failover monitor did not come up")?;
        // The server accepts connections before pg_autoctl has installed its extension in it
        // (the cluster is ours, so it starts early): wait for the monitor's catalog.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready: Option<bool> =
                sqlx::query_scalar("SELECT to_regclass('pgautofailover.node') IS NOT NULL")
                    .fetch_optional(&mut monitor)
                    .await?;
            if ready == Some(true) {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "the pg_auto_failover extension never appeared in the monitor; logs in {}",
                    formation.dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for (name, value) in [
            ("health_check_period", "500"),
            ("health_check_timeout", "500"),
            ("health_check_max_retries", "1"),
            ("health_check_retry_delay", "200"),
            ("node_considered_unhealthy_timeout", "1000"),
            ("primary_demote_timeout", "2000"),
        ] {
            // ALTER SYSTEM takes no parameters; the names and values are the constants above.
            let sql = format!("ALTER SYSTEM SET pgautofailover.{name} = {value}");
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut monitor)
                .await?;
        }
        sqlx::raw_sql("SELECT pg_reload_conf()")
            .execute(&mut monitor)
            .await?;
        for (i, port) in formation.ports.into_iter().enumerate() {
            let name = format!("node{}", i + 1);
            let data = formation.dir.join(&name).display().to_string();
            formation.spawn_keeper(&[
                "create",
                "postgres",
                "--pgdata",
                &data,
                "--name",
                &name,
                "--pgport",
                &port.to_string(),
                "--dbname",
                database,
                "--monitor",
                &format!(
                    "postgres://autoctl_node@127.0.0.1:{}/pg_auto_failover?sslmode=disable",
                    formation.monitor_port
                ),
            ])?;
            let wanted: &[&str] = if i == 0 {
                &["single", "wait_primary", "primary"]
            } else {
                &["secondary"]
            };
            formation
                .wait_for_state(&mut monitor, &name, wanted, Duration::from_secs(120))
                .await?;
        }
        formation
            .wait_for_state(&mut monitor, "node1", &["primary"], Duration::from_secs(60))
            .await?;
        Ok(formation)
    }

    fn spawn_keeper(&mut self, args: &[&str]) -> anyhow::Result<()> {
        let log =
            std::fs::File::create(self.dir.join(format!("keeper{}.log", self.keepers.len())))?;
        let child = server_command(&self.pg_autoctl.display().to_string(), &self.dir)
            .args(args)
            .args([
                "--hostname",
                "127.0.0.1",
                "--auth",
                "trust",
                "--no-ssl",
                "--run",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| format!("spawn {}", self.pg_autoctl.display()))?;
        self.keepers.push(child);
        Ok(())
    }

    /// Waits until the monitor reports `node` in one of `states`. While a standby is being
    /// built, asks the primary for an immediate checkpoint now and then: pg_autoctl's
    /// `pg_basebackup` otherwise waits for a spread checkpoint (minutes on an idle server).
    async fn wait_for_state(
        &self,
        monitor: &mut PgConnection,
        node: &str,
        states: &[&str],
        within: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            // The monitor's own catalog; not part of our schema, so not macro-checked.
            let state: Option<String> = sqlx::query_scalar(
                "SELECT reportedstate::text FROM pgautofailover.node WHERE nodename = $1",
            )
            .bind(node)
            .fetch_optional(&mut *monitor)
            .await?;
            if state.as_deref().is_some_and(|s| states.contains(&s)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{node} is {state:?}, not one of {states:?}, after {within:?}; logs in {}",
                    self.dir.display()
                );
            }
            if let Ok(mut primary) = PgConnection::connect(&self.node_url(0, "postgres")).await {
                let _ = sqlx::raw_sql("CHECKPOINT").execute(&mut primary).await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// URL of the monitor's database.
    pub fn monitor_url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/pg_auto_failover",
            self.monitor_port
        )
    }

    /// URL of one data node's `database`.
    pub fn node_url(&self, node: usize, database: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{database}",
            self.ports[node]
        )
    }

    /// The libpq multi-host URL of both data nodes.
    pub fn multi_host_url(&self, database: &str, target: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/{database}?target_session_attrs={target}",
            self.ports[0], self.ports[1]
        )
    }

    /// Kills node1 as a crash would: its keeper first (or it would restart PostgreSQL), then
    /// `pg_ctl stop -m immediate`.
    pub fn crash_node1(&mut self) -> anyhow::Result<()> {
        let keeper = &self.keepers[1];
        kill_keepers(keeper.id())?;
        stop_immediately(&self.dir, &self.dir.join("node1"))
    }
}

/// SIGKILLs the pg_autoctl processes of the process group `group` (a keeper and its
/// sub-processes), leaving the PostgreSQL server they supervise running.
fn kill_keepers(group: u32) -> anyhow::Result<()> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let Ok(pid) = entry?.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...
        let Some((comm, rest)) = stat.split_once(") ") else {
            continue;
        };
        let pgrp = rest.split(' ').nth(2).and_then(|p| p.parse::<u32>().ok());
        if pgrp == Some(group) && comm.ends_with("(pg_autoctl") {
            pids.push(pid.to_string());
        }
    }
    if pids.is_empty() {
        bail!("no pg_autoctl process in group {group}");
    }
    run(Command::new("kill").arg("-KILL").args(&pids))
}

impl Drop for Formation {
    fn drop(&mut self) {
        for keeper in &self.keepers {
            let _ = kill_keepers(keeper.id());
        }
        for keeper in &mut self.keepers {
            let _ = keeper.wait();
        }
        for data in ["monitor", "node1", "node2"] {
            let _ = stop_immediately(&self.dir, &self.dir.join(data));
        }
        if std::env::var_os("SHARED_DB_TEST_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
