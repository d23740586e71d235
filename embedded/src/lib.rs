//! A private, throwaway PostgreSQL cluster under `target/` for development, tests, examples and
//! benchmarks. Never used by `shared_db` unless asked for (its `embedded` feature).
//!
//! The cluster is created with the PostgreSQL server binaries already on the machine (`PATH`, `SHARED_DB_PG_BIN`, or
//! Debian's `/usr/lib/postgresql/<version>/bin`). It listens on `127.0.0.1` only, on a port
//! picked when the cluster is created, with a random superuser password kept in a `0600` file,
//! and on a unix socket in `root/socket` (a `0700` directory, so only the cluster's owner and
//! root reach it), for tests of socket connection strings.
//! Durability is traded for speed (`fsync = off`): it is for development and tests, never data
//! you want to keep.
//!
//! PostgreSQL refuses to run as root. When invoked by root, the cluster is owned by and run as
//! the `postgres` system user that Debian's package creates (via `runuser`).
//!
//! Why not a crate: `postgresql_embedded` and `pg-embed` download server builds at run time
//! (not possible on machines that reach only package registries), and neither handles the
//! root → `postgres` hand-over; `pgtemp` makes a new cluster per use instead of reusing one.
//! What remains is a few calls to `initdb` and `pg_ctl`.
//!
//! This crate is separate from `shared-db` and uses no compile-time-checked queries, so that
//! its binary (`shared-db-embedded url <db>`) builds while `.sqlx` is stale: `.ci/prepare` gets
//! the database it regenerates `.sqlx` against from it.
//!
//! Location: `SHARED_DB_EMBEDDED_DIR`, else `<target dir>/shared-db-postgres`, where the target
//! dir is `CARGO_TARGET_DIR` or the `target` directory the running executable was built in.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

mod action;
pub mod citus;
mod error;

pub use action::{Action, Outcome};
pub use error::{Error, Result};

const SUPERUSER: &str = "postgres";
const DEBIAN_PG_ROOT: &str = "/usr/lib/postgresql";

/// A cluster location: `root/data` is `PGDATA`, `root/server.log` the server log.
#[derive(Debug, Clone)]
pub struct Cluster {
    root: PathBuf,
    /// How this cluster's server differs from a plain one (a Citus node, say).
    server: Server,
}

/// The server a [`Cluster`] runs: the plain PostgreSQL binaries, or another `postgres`
/// executable with extra settings (a Citus node, see [`citus`]).
#[derive(Debug, Clone, Default)]
struct Server {
    /// The `postgres` executable `pg_ctl` starts instead of its sibling.
    postgres: Option<PathBuf>,
    /// Lines appended to `postgresql.conf` when the cluster is created.
    extra_conf: String,
    /// The superuser password to create the cluster with (else a random one).
    password: Option<String>,
    /// Clients connect without TLS (a Citus node serves a certificate rustls refuses).
    no_tls: bool,
}

/// Connection facts of a running cluster.
#[derive(Clone)]
pub struct Running {
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// The directory of the server's unix socket (`.s.PGSQL.<port>` inside).
    pub socket_dir: PathBuf,
    password: String,
    /// `sslmode=disable` in URLs and connect options (Citus nodes, see [`citus`]).
    no_tls: bool,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("port", &self.port)
            .field("socket_dir", &self.socket_dir)
            .finish_non_exhaustive()
    }
}

impl Running {
    /// URL of `database` on the cluster, as the superuser.
    pub fn url(&self, database: &str) -> String {
        let query = if self.no_tls { "?sslmode=disable" } else { "" };
        format!(
            "postgres://{SUPERUSER}:{}@127.0.0.1:{}/{database}{query}",
            self.password, self.port
        )
    }

    /// The superuser's password (for tests that build connection strings or password files
    /// of their own).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Connect options for `database` on the cluster, as the superuser.
    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        let options = PgConnectOptions::new_without_pgpass()
            .host("127.0.0.1")
            .port(self.port)
            .username(SUPERUSER)
            .password(&self.password)
            .database(database);
        if self.no_tls {
            options.ssl_mode(sqlx::postgres::PgSslMode::Disable)
        } else {
            options
        }
    }

    /// Creates `database` if it does not exist yet.
    pub async fn ensure_database(&self, database: &str) -> Result<()> {
        let mut conn = PgConnection::connect_with(&self.connect_options("postgres")).await?;
        // Not `query_scalar!`: this crate must build without `.sqlx` (see the crate docs).
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(database)
                .fetch_one(&mut conn)
                .await?;
        if !exists {
            let sql = format!("CREATE DATABASE {}", quote_ident(database));
            match sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
            {
                // Another process won the race, which is fine. It shows as duplicate_database,
                // or, when both got past the catalog check together, as a unique violation of
                // the catalog's name index.
                Err(sqlx::Error::Database(e))
                    if e.code().as_deref() == Some("42P04")
                        || e.constraint() == Some("pg_database_datname_index") => {}
                other => {
                    other?;
                }
            }
        }
        conn.close().await?;
        Ok(())
    }
}

/// Quotes an SQL identifier (for the few DDL statements that cannot take bind parameters).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl Cluster {
    /// A cluster rooted at `root` (created on first use).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Cluster {
            root: root.into(),
            server: Server::default(),
        }
    }

    /// The default location (see the [module docs](self)).
    pub fn default_location() -> Result<Self> {
        if let Some(dir) = std::env::var_os("SHARED_DB_EMBEDDED_DIR").filter(|d| !d.is_empty()) {
            return Ok(Cluster::at(dir));
        }
        Ok(Cluster::at(target_dir()?.join("shared-db-postgres")))
    }

    /// The cluster's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `PGDATA`.
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The directory of the server's unix socket (used from the next start on).
    pub fn socket_dir(&self) -> PathBuf {
        self.root.join("socket")
    }

    /// The server log.
    pub fn log_file(&self) -> PathBuf {
        self.root.join("server.log")
    }

    /// Initialises the cluster if needed and starts it if it is not running. Safe to call from
    /// several processes at once (a file lock serialises them).
    pub async fn ensure_running(&self) -> Result<Running> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.ensure_running_blocking())
            .await
            .map_err(|e| Error::Cluster(format!("start-up task failed: {e}")))?
    }

    /// Blocking form of [`Cluster::ensure_running`].
    pub fn ensure_running_blocking(&self) -> Result<Running> {
        let _lock = self.lock()?;
        let bin = find_bin_dir()?;
        let runner = Runner::detect()?;
        if !self.data_dir().join("PG_VERSION").exists() {
            self.init(&bin, &runner)?;
        }
        let running = self.read_running()?;
        if !self.is_running(&bin, &runner)? {
            let socket_dir = self.socket_dir();
            fs::create_dir_all(&socket_dir).map_err(|e| io_err("create", &socket_dir, e))?;
            fs::set_permissions(&socket_dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| io_err("chmod", &socket_dir, e))?;
            runner.hand_over(&socket_dir)?;
            let mut pg_ctl = Command::new(bin.join("pg_ctl"));
            if let Some(postgres) = &self.server.postgres {
                pg_ctl.arg("-p").arg(postgres);
            }
            let out = runner.run(
                pg_ctl
                    .arg("start")
                    .arg("-D")
                    .arg(self.data_dir())
                    .arg("-l")
                    .arg(self.log_file())
                    // pg_ctl hands -o to a shell: quote the directory
                    .arg("-o")
                    .arg(format!(
                        "-k '{}'",
                        socket_dir.display().to_string().replace('\'', "'\\''")
                    ))
                    .args(["-w", "-t", "60", "-s"]),
            )?;
            if !out.status.success() {
                return Err(Error::Cluster(format!(
                    "pg_ctl start failed: {}\n--- last lines of {} ---\n{}",
                    String::from_utf8_lossy(&out.stderr).trim(),
                    self.log_file().display(),
                    tail(&self.log_file(), 15)
                )));
            }
            tracing::info!(port = running.port, root = %self.root.display(), "embedded PostgreSQL started");
        }
        Ok(running)
    }

    /// Stops the cluster if it runs. Returns whether it was running.
    pub fn stop(&self) -> Result<bool> {
        let _lock = self.lock()?;
        if !self.data_dir().join("PG_VERSION").exists() {
            return Ok(false);
        }
        let bin = find_bin_dir()?;
        let runner = Runner::detect()?;
        if !self.is_running(&bin, &runner)? {
            return Ok(false);
        }
        let out = runner.run(
            Command::new(bin.join("pg_ctl"))
                .arg("stop")
                .arg("-D")
                .arg(self.data_dir())
                .args(["-m", "fast", "-w", "-s"]),
        )?;
        if !out.status.success() {
            return Err(Error::Cluster(format!(
                "pg_ctl stop failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(true)
    }

    /// Whether the server is running (per `pg_ctl status`).
    pub fn running(&self) -> Result<Option<Running>> {
        if !self.data_dir().join("PG_VERSION").exists() {
            return Ok(None);
        }
        let bin = find_bin_dir()?;
        let runner = Runner::detect()?;
        if self.is_running(&bin, &runner)? {
            Ok(Some(self.read_running()?))
        } else {
            Ok(None)
        }
    }

    fn lock(&self) -> Result<File> {
        fs::create_dir_all(&self.root).map_err(|e| io_err("create", &self.root, e))?;
        let path = self.root.with_extension("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io_err("open", &path, e))?;
        file.lock().map_err(|e| io_err("lock", &path, e))?;
        Ok(file)
    }

    fn is_running(&self, bin: &Path, runner: &Runner) -> Result<bool> {
        let out = runner.run(
            Command::new(bin.join("pg_ctl"))
                .arg("status")
                .arg("-D")
                .arg(self.data_dir()),
        )?;
        // 0: running; 3: not running; 4: no accessible data directory
        Ok(out.status.code() == Some(0))
    }

    fn read_running(&self) -> Result<Running> {
        let port_file = self.root.join("port");
        let pw_file = self.root.join("password");
        let port = fs::read_to_string(&port_file)
            .map_err(|e| io_err("read", &port_file, e))?
            .trim()
            .parse()
            .map_err(|e| Error::Cluster(format!("{}: {e}", port_file.display())))?;
        let password = fs::read_to_string(&pw_file)
            .map_err(|e| io_err("read", &pw_file, e))?
            .trim()
            .to_owned();
        Ok(Running {
            port,
            socket_dir: self.socket_dir(),
            password,
            no_tls: self.server.no_tls,
        })
    }

    fn init(&self, bin: &Path, runner: &Runner) -> Result<()> {
        let data = self.data_dir();
        if data.exists() {
            // a half-made data directory from an interrupted initdb
            fs::remove_dir_all(&data).map_err(|e| io_err("remove", &data, e))?;
        }
        let port = free_port()?;
        let password = self
            .server
            .password
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        write_private(&self.root.join("port"), &port.to_string())?;
        write_private(&self.root.join("password"), &password)?;
        // initdb reads the password from a file, which must be readable by the server's user.
        let pwfile = self.root.join("initdb-password");
        write_private(&pwfile, &password)?;
        runner.hand_over(&self.root)?;
        runner.hand_over(&pwfile)?;
        let out = runner.run(
            Command::new(bin.join("initdb"))
                .arg("-D")
                .arg(&data)
                .args(["-U", SUPERUSER, "-A", "scram-sha-256", "-E", "UTF8"])
                .args(["--locale=C.UTF-8", "--no-instructions"])
                .arg(format!("--pwfile={}", pwfile.display())),
        );
        let _ = fs::remove_file(&pwfile);
        let out = out?;
        if !out.status.success() {
            return Err(Error::Cluster(format!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&out.stderr).trim(),
                runner.hint()
            )));
        }
        let conf = format!(
            "\n# shared-db embedded cluster: local, throwaway, fast\n\
             listen_addresses = '127.0.0.1'\n\
             port = {port}\n\
             unix_socket_directories = ''\n\
             max_connections = 300\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n\
             timezone = 'UTC'\n\
             log_timezone = 'UTC'\n{}",
            self.server.extra_conf
        );
        let conf_path = data.join("postgresql.conf");
        let mut f = OpenOptions::new()
            .append(true)
            .open(&conf_path)
            .map_err(|e| io_err("open", &conf_path, e))?;
        f.write_all(conf.as_bytes())
            .map_err(|e| io_err("write", &conf_path, e))?;
        tracing::info!(root = %self.root.display(), port, "embedded PostgreSQL cluster created");
        Ok(())
    }
}

/// How server commands are run: directly, or as the `postgres` user when we are root.
enum Runner {
    Direct,
    AsPostgres {
        uid: u32,
        gid: u32,
        /// `runuser`, found on `PATH` or in the sbin directories (which a root shell's `PATH`
        /// does not always include).
        runuser: PathBuf,
    },
}

impl Runner {
    fn detect() -> Result<Self> {
        if !is_root() {
            return Ok(Runner::Direct);
        }
        let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
        let entry = passwd
            .lines()
            .find(|l| l.starts_with("postgres:"))
            .ok_or_else(|| {
                Error::Cluster(
                    "running as root, and PostgreSQL refuses to run as root, but there is no \
                     `postgres` system user to run it as (install Debian's postgresql package, \
                     or run as an ordinary user, or set DATABASE_URL)"
                        .into(),
                )
            })?;
        let fields: Vec<&str> = entry.split(':').collect();
        let (uid, gid) = match (fields.get(2), fields.get(3)) {
            (Some(u), Some(g)) => (
                u.parse()
                    .map_err(|_| Error::Cluster("bad /etc/passwd entry".into()))?,
                g.parse()
                    .map_err(|_| Error::Cluster("bad /etc/passwd entry".into()))?,
            ),
            _ => return Err(Error::Cluster("bad /etc/passwd entry for postgres".into())),
        };
        let runuser = find_runuser().ok_or_else(|| {
            Error::Cluster(
                "running as root, and PostgreSQL refuses to run as root, but `runuser` (util-linux) \
                 was not found to run it as `postgres`; install util-linux, run as an ordinary \
                 user, or set DATABASE_URL"
                    .into(),
            )
        })?;
        Ok(Runner::AsPostgres { uid, gid, runuser })
    }

    fn run(&self, cmd: &mut Command) -> Result<Output> {
        let program = cmd.get_program().to_string_lossy().into_owned();
        let output = match self {
            Runner::Direct => cmd.output(),
            Runner::AsPostgres { runuser, .. } => {
                let mut wrapped = Command::new(runuser);
                wrapped
                    .args(["-u", "postgres", "--"])
                    .arg(cmd.get_program());
                wrapped.args(cmd.get_args());
                // runuser keeps the environment; keep a neutral working directory the
                // postgres user can enter.
                wrapped.current_dir("/");
                wrapped.output()
            }
        };
        output.map_err(|e| Error::Cluster(format!("could not run {program}: {e}")))
    }

    /// Gives `path` to the postgres user (root only).
    fn hand_over(&self, path: &Path) -> Result<()> {
        if let Runner::AsPostgres { uid, gid, .. } = self {
            std::os::unix::fs::chown(path, Some(*uid), Some(*gid))
                .map_err(|e| io_err("chown", path, e))?;
        }
        Ok(())
    }

    fn hint(&self) -> &'static str {
        match self {
            Runner::Direct => "",
            Runner::AsPostgres { .. } => {
                " (running as root: the cluster runs as `postgres`, which needs to traverse every \
                 parent directory of the cluster; set SHARED_DB_EMBEDDED_DIR to a directory it can \
                 reach if that is the problem)"
            }
        }
    }
}

fn find_runuser() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join("runuser"))
        .find(|p| p.is_file())
}

fn is_root() -> bool {
    // The owner of /proc/self is the effective uid of this process.
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// Finds the directory holding `initdb` and `pg_ctl`.
fn find_bin_dir() -> Result<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("SHARED_DB_PG_BIN").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        if has_tools(&dir) {
            return Ok(dir);
        }
        return Err(Error::Cluster(format!(
            "SHARED_DB_PG_BIN={} does not contain initdb and pg_ctl",
            dir.display()
        )));
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if has_tools(&dir) {
                // resolve symlinks (Debian links /usr/local/bin/initdb → /usr/lib/postgresql/..)
                let initdb = fs::canonicalize(dir.join("initdb")).unwrap_or(dir.join("initdb"));
                return Ok(initdb.parent().map_or(dir, Path::to_path_buf));
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir(DEBIAN_PG_ROOT)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, bin)| has_tools(bin))
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).ok_or_else(|| {
        Error::Cluster(format!(
            "no PostgreSQL server binaries found (looked for initdb and pg_ctl on PATH, in \
             SHARED_DB_PG_BIN and in {DEBIAN_PG_ROOT}/*/bin). Install them (Debian: `apt-get \
             install postgresql`) or set DATABASE_URL to an existing server."
        ))
    })
}

/// The cargo target directory this executable was built in.
fn target_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe()
        .map_err(|e| Error::Cluster(format!("cannot locate the running executable: {e}")))?;
    exe.ancestors()
        .find(|p| p.join("CACHEDIR.TAG").is_file() || p.file_name().is_some_and(|n| n == "target"))
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            Error::Cluster(format!(
                "{} is not inside a cargo target directory; set SHARED_DB_EMBEDDED_DIR",
                exe.display()
            ))
        })
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::Cluster(format!("cannot find a free port: {e}")))?;
    Ok(listener
        .local_addr()
        .map_err(|e| Error::Cluster(e.to_string()))?
        .port())
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_err("write", path, e))?;
    f.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(|e| io_err("chmod", path, e))?;
    f.write_all(contents.as_bytes())
        .map_err(|e| io_err("write", path, e))
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Cluster(format!("cannot {what} {}: {e}", path.display()))
}
