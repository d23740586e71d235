//! A Citus test cluster on this machine: a coordinator and two workers, each a [`Cluster`] of
//! its own (own data directory, own port on 127.0.0.1), started with
//! `shared_preload_libraries = 'citus'`.
//!
//! **The extension.** No Debian package ships Citus. [`CitusInstall::ensure`] builds it from the
//! release tarball kept next to the repository (`../shared/vendor/citus-<version>-src.tar.gz`, or
//! `SHARED_DB_CITUS_TARBALL`), checksum pinned, into a cache under `target/tools/` the first time
//! (~1 min on 2 cores; later runs find it there). The build needs `gcc`, `make`,
//! `postgresql-server-dev-15` and the `-dev` packages of the README's install line.
//!
//! **Installing without root.** PostgreSQL 15 looks for extension control files only in its
//! share directory, which it locates relative to its own executable, and `make install` writes
//! into the system directories. So the build is installed with `DESTDIR` into a private tree that
//! mirrors the system installation's paths: a copy of the `postgres` executable (a copy, since
//! PostgreSQL resolves symlinks to find itself), symbolic links to every system library and
//! share file, and Citus's own files. The nodes are started from that copy (`pg_ctl -p`); the
//! system installation is not touched.
//!
//! **Node-to-node authentication.** All three nodes share one superuser password, given to
//! Citus in `pg_dist_authinfo` (node id 0: every node), so the coordinator's connections to the
//! workers authenticate like any client.
//!
//! **TLS.** `CREATE EXTENSION citus` turns on `ssl` with a self-signed X.509 *version 1*
//! certificate, which rustls refuses even without verification. The nodes listen on 127.0.0.1
//! only, so clients of this test cluster connect with `sslmode=disable` ([`Running::url`] and
//! [`Running::connect_options`] of a node say so); a production cluster needs v3 certificates.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sqlx::{Connection, PgConnection};

use crate::{Cluster, Error, Result, Running, Server, find_bin_dir, io_err, quote_ident};

/// The Citus release built (13.2 is the last line that supports PostgreSQL 15).
pub const VERSION: &str = "13.2.2";
/// sha256 of `citus-13.2.2-src.tar.gz` (the upstream `v13.2.2` tag trimmed for building).
const TARBALL_SHA256: &str = "2c70efbd844969b2b48ee3ee92000a1272ad0c35a853178ceeb8a5a4c0f45b9e";
/// Debian packages the build needs besides the PostgreSQL server (checked before building, so
/// that a missing one is named instead of failing deep inside `configure`).
const BUILD_PACKAGES: [&str; 7] = [
    "gcc",
    "make",
    "postgresql-server-dev-15",
    "libcurl4-openssl-dev",
    "liblz4-dev",
    "libzstd-dev",
    "libkrb5-dev",
];
/// Workers of the test cluster.
pub const WORKERS: usize = 2;

/// Citus built into a private copy of the PostgreSQL installation under `target/tools/`.
#[derive(Debug, Clone)]
pub struct CitusInstall {
    /// The `postgres` executable of the private tree.
    postgres: PathBuf,
}

/// The facts of the system installation the private tree mirrors (from `pg_config`).
struct PgPaths {
    bindir: PathBuf,
    sharedir: PathBuf,
    pkglibdir: PathBuf,
    pg_config: PathBuf,
}

impl CitusInstall {
    /// The installation under `<target>/tools/citus-<version>`, built first if missing. Safe to
    /// call from several processes at once: a file lock lets one build while the others wait.
    /// Returns how long the build took, `None` when the cache was already there.
    pub fn ensure(target: &Path) -> Result<(CitusInstall, Option<std::time::Duration>)> {
        let tools = target.join("tools");
        fs::create_dir_all(&tools).map_err(|e| io_err("create", &tools, e))?;
        let lock_path = tools.join("citus.lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_err("open", &lock_path, e))?;
        lock.lock().map_err(|e| io_err("lock", &lock_path, e))?;

        let paths = pg_paths()?;
        let root = absolute(&tools)?.join(format!("citus-{VERSION}"));
        let tree = root.join("pg");
        let install = CitusInstall {
            postgres: under(&tree, &paths.bindir).join("postgres"),
        };
        let done = root.join("installed");
        if done.is_file() {
            return Ok((install, None));
        }
        let started = std::time::Instant::now();
        check_build_packages()?;
        let tarball = tarball()?;
        verify_sha256(&tarball)?;
        if root.exists() {
            fs::remove_dir_all(&root).map_err(|e| io_err("remove", &root, e))?;
        }
        let src = root.join("src");
        fs::create_dir_all(&src).map_err(|e| io_err("create", &src, e))?;
        run(Command::new("tar")
            .arg("xzf")
            .arg(&tarball)
            .arg("-C")
            .arg(&src)
            .arg("--strip-components=1"))?;
        // No LLVM bitcode: the nodes run without JIT for Citus's code (35 s instead of 55 s).
        run(Command::new("./configure")
            .arg(format!("PG_CONFIG={}", paths.pg_config.display()))
            .current_dir(&src))?;
        run(Command::new("make")
            .args(["-j2", "with_llvm=no"])
            .current_dir(&src))?;
        run(Command::new("make")
            .args(["install", "with_llvm=no"])
            .arg(format!("DESTDIR={}", tree.display()))
            .current_dir(&src))?;
        assemble_tree(&tree, &paths)?;
        fs::remove_dir_all(&src).map_err(|e| io_err("remove", &src, e))?;
        fs::write(&done, VERSION).map_err(|e| io_err("write", &done, e))?;
        Ok((install, Some(started.elapsed())))
    }

    /// The private tree's `postgres` executable, with Citus in its library and share
    /// directories.
    pub fn postgres(&self) -> &Path {
        &self.postgres
    }
}

/// A coordinator and [`WORKERS`] workers under one root directory.
#[derive(Debug, Clone)]
pub struct CitusCluster {
    root: PathBuf,
    install: CitusInstall,
}

/// The running nodes of a [`CitusCluster`].
#[derive(Debug, Clone)]
pub struct CitusRunning {
    /// The coordinator: applications and migrations connect here.
    pub coordinator: Running,
    /// The workers, which hold the shards.
    pub workers: Vec<Running>,
}

impl CitusCluster {
    /// The cluster under `root` (nodes in `root/coordinator`, `root/worker-1`, …), run with
    /// `install`.
    pub fn at(root: impl Into<PathBuf>, install: CitusInstall) -> Self {
        CitusCluster {
            root: root.into(),
            install,
        }
    }

    /// The default location: `SHARED_DB_CITUS_DIR`, else `shared-db-citus` beside the embedded
    /// cluster ([`Cluster::default_location`], by default `<target dir>/shared-db-citus`), with
    /// Citus built into `tools/` beside it if missing (blocking: about a minute on first use).
    pub fn default_location() -> Result<Self> {
        let base = default_base()?;
        let (install, _) = CitusInstall::ensure(&base)?;
        let root = std::env::var_os("SHARED_DB_CITUS_DIR")
            .filter(|d| !d.is_empty())
            .map_or_else(|| base.join("shared-db-citus"), PathBuf::from);
        Ok(CitusCluster::at(root, install))
    }

    /// The cluster's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn nodes(&self) -> Result<Vec<Cluster>> {
        let password_file = self.root.join("password");
        fs::create_dir_all(&self.root).map_err(|e| io_err("create", &self.root, e))?;
        if !password_file.is_file() {
            crate::write_private(&password_file, &uuid::Uuid::new_v4().simple().to_string())?;
        }
        let password = fs::read_to_string(&password_file)
            .map_err(|e| io_err("read", &password_file, e))?
            .trim()
            .to_owned();
        let names = std::iter::once("coordinator".to_owned())
            .chain((1..=WORKERS).map(|i| format!("worker-{i}")));
        Ok(names
            .map(|name| Cluster {
                root: self.root.join(name),
                server: Server {
                    postgres: Some(self.install.postgres.clone()),
                    extra_conf: "shared_preload_libraries = 'citus'\n\
                                 max_prepared_transactions = 100\n\
                                 max_worker_processes = 64\n"
                        .into(),
                    password: Some(password.clone()),
                    no_tls: true,
                },
            })
            .collect())
    }

    /// Creates the nodes if needed and starts those that do not run (blocking; a few seconds).
    pub fn ensure_running_blocking(&self) -> Result<CitusRunning> {
        let mut running = self
            .nodes()?
            .iter()
            .map(Cluster::ensure_running_blocking)
            .collect::<Result<Vec<_>>>()?;
        let coordinator = running.remove(0);
        Ok(CitusRunning {
            coordinator,
            workers: running,
        })
    }

    /// [`CitusCluster::ensure_running_blocking`] off the async threads.
    pub async fn ensure_running(&self) -> Result<CitusRunning> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.ensure_running_blocking())
            .await
            .map_err(|e| Error::Cluster(format!("start-up task failed: {e}")))?
    }

    /// Stops every node that runs. Returns whether any was running.
    pub fn stop(&self) -> Result<bool> {
        let mut any = false;
        for node in self.nodes()? {
            any |= node.stop()?;
        }
        Ok(any)
    }
}

impl CitusRunning {
    /// Creates `database` on every node (if missing), creates the `citus` extension in each,
    /// and registers the coordinator and the workers in the coordinator's metadata. Idempotent.
    pub async fn ensure_database(&self, database: &str) -> Result<()> {
        // One database set up at a time in this process: several at once (parallel tests)
        // made Citus fail a node's connection ("failure on connection marked as essential").
        static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _turn = ONE_AT_A_TIME.lock().await;
        for node in std::iter::once(&self.coordinator).chain(&self.workers) {
            node.ensure_database(database).await?;
            let mut conn = PgConnection::connect_with(&node.connect_options(database)).await?;
            sqlx::raw_sql("CREATE EXTENSION IF NOT EXISTS citus")
                .execute(&mut conn)
                .await?;
            // Node id 0: these credentials are used for connections to every node.
            let authinfo = format!(
                "INSERT INTO pg_dist_authinfo (nodeid, rolename, authinfo) \
                 VALUES (0, 'postgres', 'password={}') ON CONFLICT DO NOTHING",
                node.password().replace('\'', "''")
            );
            sqlx::raw_sql(sqlx::AssertSqlSafe(authinfo))
                .execute(&mut conn)
                .await?;
            conn.close().await?;
        }
        let mut conn =
            PgConnection::connect_with(&self.coordinator.connect_options(database)).await?;
        sqlx::query("SELECT citus_set_coordinator_host('127.0.0.1', $1)")
            .bind(i32::from(self.coordinator.port))
            .execute(&mut conn)
            .await?;
        for worker in &self.workers {
            let known: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_dist_node \
                 WHERE nodename = '127.0.0.1' AND nodeport = $1)",
            )
            .bind(i32::from(worker.port))
            .fetch_one(&mut conn)
            .await?;
            if !known {
                sqlx::query("SELECT citus_add_node('127.0.0.1', $1)")
                    .bind(i32::from(worker.port))
                    .execute(&mut conn)
                    .await?;
            }
        }
        conn.close().await?;
        Ok(())
    }

    /// Drops `database` on every node (if it exists).
    pub async fn drop_database(&self, database: &str) -> Result<()> {
        for node in std::iter::once(&self.coordinator).chain(&self.workers) {
            let mut conn = PgConnection::connect_with(&node.connect_options("postgres")).await?;
            let sql = format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(database)
            );
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await?;
            conn.close().await?;
        }
        Ok(())
    }
}

/// The directory holding the embedded cluster (by default the cargo target directory): the
/// Citus build goes into its `tools/`, the Citus cluster beside the embedded one.
pub fn default_base() -> Result<PathBuf> {
    let embedded = Cluster::default_location()?;
    let root = absolute(embedded.root())?;
    Ok(root
        .parent()
        .map_or_else(|| root.clone(), Path::to_path_buf))
}

/// `pg_config`'s directories of the installed server.
fn pg_paths() -> Result<PgPaths> {
    let pg_config = std::env::var_os("SHARED_DB_PG_CONFIG")
        .map(PathBuf::from)
        .or_else(|| {
            let beside = find_bin_dir().ok()?.join("pg_config");
            beside.is_file().then_some(beside)
        })
        .ok_or_else(|| {
            Error::Cluster(format!(
                "no pg_config next to the PostgreSQL server binaries: building Citus needs the \
                 Debian packages {} (the README's install line)",
                BUILD_PACKAGES.join(" ")
            ))
        })?;
    let ask = |what: &str| -> Result<PathBuf> {
        let out = Command::new(&pg_config)
            .arg(what)
            .output()
            .map_err(|e| Error::Cluster(format!("cannot run {}: {e}", pg_config.display())))?;
        Ok(PathBuf::from(
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        ))
    };
    Ok(PgPaths {
        bindir: ask("--bindir")?,
        sharedir: ask("--sharedir")?,
        pkglibdir: ask("--pkglibdir")?,
        pg_config,
    })
}

fn check_build_packages() -> Result<()> {
    let missing: Vec<&str> = BUILD_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg")
                .args(["-s", p])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::Cluster(format!(
            "Citus is not built yet and cannot be built here: missing Debian package(s) {}. \
             Every prerequisite of cargo test is in system-packages.txt and the README's \
             install line",
            missing.join(" ")
        )))
    }
}

/// The source tarball: `SHARED_DB_CITUS_TARBALL`, else `../shared/vendor/` beside the workspace.
fn tarball() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("SHARED_DB_CITUS_TARBALL").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let name = format!("citus-{VERSION}-src.tar.gz");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let candidate = workspace.join("../shared/vendor").join(&name);
    if candidate.is_file() {
        return Ok(candidate);
    }
    Err(Error::Cluster(format!(
        "the Citus source tarball {name} is not at {} (set SHARED_DB_CITUS_TARBALL)",
        candidate.display()
    )))
}

fn verify_sha256(path: &Path) -> Result<()> {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .map_err(|e| Error::Cluster(format!("cannot run sha256sum: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.split_whitespace().next() {
        Some(sum) if sum == TARBALL_SHA256 => Ok(()),
        other => Err(Error::Cluster(format!(
            "{}: sha256 {} is not the pinned {TARBALL_SHA256}",
            path.display(),
            other.unwrap_or("?")
        ))),
    }
}

/// Completes the private tree that `make install DESTDIR=tree` started: the `postgres`
/// executable copied, every other system library and share file linked.
fn assemble_tree(tree: &Path, paths: &PgPaths) -> Result<()> {
    let bindir = under(tree, &paths.bindir);
    fs::create_dir_all(&bindir).map_err(|e| io_err("create", &bindir, e))?;
    let postgres = bindir.join("postgres");
    fs::copy(paths.bindir.join("postgres"), &postgres).map_err(|e| io_err("copy", &postgres, e))?;
    link_missing(&paths.pkglibdir, &under(tree, &paths.pkglibdir))?;
    let sharedir = under(tree, &paths.sharedir);
    link_missing(&paths.sharedir, &sharedir)?;
    Ok(())
}

/// Links each entry of `from` into `to` unless `to` has it; recurses into directories that
/// both have (so `extension/` holds the system's files and Citus's).
fn link_missing(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to).map_err(|e| io_err("create", to, e))?;
    for entry in fs::read_dir(from).map_err(|e| io_err("read", from, e))? {
        let entry = entry.map_err(|e| io_err("read", from, e))?;
        let dest = to.join(entry.file_name());
        if dest.is_dir() && entry.path().is_dir() && !dest.is_symlink() {
            link_missing(&entry.path(), &dest)?;
        } else if !dest.exists() {
            std::os::unix::fs::symlink(entry.path(), &dest)
                .map_err(|e| io_err("link", &dest, e))?;
        }
    }
    Ok(())
}

/// `abs` re-rooted under `tree`.
fn under(tree: &Path, abs: &Path) -> PathBuf {
    tree.join(abs.strip_prefix("/").unwrap_or(abs))
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|e| io_err("resolve", path, e))
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .output()
        .map_err(|e| Error::Cluster(format!("cannot run {:?}: {e}", cmd.get_program())))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    Err(Error::Cluster(format!(
        "building Citus: {:?} failed:\n{}",
        cmd.get_program(),
        lines[lines.len().saturating_sub(20)..].join("\n")
    )))
}
