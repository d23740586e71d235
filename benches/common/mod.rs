//! What the benchmarks share: a database of their own for one run, the SQL text shared-db sends
//! (from `.sqlx/`), pgbench, a small random source, percentiles.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use shared_db::Config;
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// A benchmark's own database, `<prefix>_<unix time>`, on the server of `DATABASE_URL` (else the
/// embedded cluster, started if needed); [`Scratch::finish`] drops it.
pub struct Scratch {
    pub name: String,
    /// `name` on the server.
    pub url: String,
    /// Connected to the server's `postgres` database, for the `CREATE` and the `DROP`.
    admin: PgConnection,
}

impl Scratch {
    pub async fn create(base: &Config, prefix: &str) -> anyhow::Result<Self> {
        let server_url = match &base.database_url {
            Some(u) => u.expose().to_owned(),
            None => {
                let cluster = shared_db::embedded::Cluster::default_location()?;
                cluster.ensure_running().await?.url("postgres")
            }
        };
        let name = format!(
            "{prefix}_{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs()
        );
        let url = with_database(&server_url, &name);
        let mut admin = PgConnection::connect_with(
            &PgConnectOptions::from_str(&server_url)?.database("postgres"),
        )
        .await?;
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await?;
        Ok(Scratch { name, url, admin })
    }

    /// Drops the database, unless the environment variable `keep` is `1` (then says it kept it).
    pub async fn finish(mut self, keep: &str) -> anyhow::Result<()> {
        if std::env::var(keep).is_ok_and(|v| v == "1") {
            eprintln!("kept database {}", self.name);
        } else {
            sqlx::raw_sql(AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            )))
            .execute(&mut self.admin)
            .await?;
        }
        Ok(())
    }
}

/// pgbench ships with the server binaries: `PATH`, `SHARED_DB_PG_BIN`, or Debian's
/// `/usr/lib/postgresql/<version>/bin` (newest first), as the embedded cluster finds `initdb`.
pub fn find_pgbench() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("SHARED_DB_PG_BIN") {
        return Ok(Path::new(&dir).join("pgbench"));
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("pgbench").is_file() {
                return Ok(dir.join("pgbench"));
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let p = e.path().join("bin/pgbench");
            p.is_file().then_some((v, p))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, p)| p)
        .context("pgbench not found (PATH, SHARED_DB_PG_BIN, /usr/lib/postgresql/*/bin)")
}

/// The query texts compiled into shared-db, from `.sqlx/` (CI's `prepare --check` keeps it equal).
pub struct Queries(Vec<String>);

impl Queries {
    pub fn load() -> anyhow::Result<Self> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(".sqlx");
        let mut v = Vec::new();
        for e in std::fs::read_dir(&dir).with_context(|| dir.display().to_string())? {
            let text = std::fs::read_to_string(e?.path())?;
            let json: serde_json::Value = serde_json::from_str(&text)?;
            if let Some(q) = json["query"].as_str() {
                v.push(q.to_owned());
            }
        }
        Ok(Queries(v))
    }
    /// The one query matching `pred` (`what` names it in the error).
    pub fn find(&self, what: &str, pred: impl Fn(&str) -> bool) -> anyhow::Result<&str> {
        let hits: Vec<&String> = self.0.iter().filter(|q| pred(q)).collect();
        ensure!(
            hits.len() == 1,
            "{} queries match {what} in .sqlx",
            hits.len()
        );
        Ok(hits[0])
    }
}

/// The same SQL for pgbench: `$n` → `:<vars[n-1]>`, and sqlx's nullability markers dropped from
/// column aliases (`"x!"` → `"x"`: pgbench's `\gset` wants plain names; labels do not change the
/// plan or the work).
pub fn for_pgbench(sql: &str, vars: &[&str]) -> String {
    let mut s = sql.replace("!\"", "\"").replace("?\"", "\"");
    for (i, v) in vars.iter().enumerate().rev() {
        s = s.replace(&format!("${}", i + 1), &format!(":{v}"));
    }
    s
}

pub struct Xorshift(u64);
impl Xorshift {
    pub fn new(seed: u64) -> Self {
        Xorshift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

pub struct Pgbench<'a> {
    pub bin: &'a Path,
    pub url: &'a str,
    pub dir: &'a Path,
    pub threads: u32,
}

/// Executions of a prepared statement before it runs warm: the first prepares it, and
/// PostgreSQL's plan cache plans each of the first five anew before it may settle on a generic plan.
pub const COLD_RUNS: usize = 5;

pub struct PgbenchRun {
    pub tps: f64,
    pub transactions: u64,
    /// Per-transaction latencies, when the run was asked to log them.
    pub latencies: Vec<Duration>,
    /// The same without each script's first [`COLD_RUNS`] transactions on each client: with
    /// `-M prepared` pgbench prepares a script's statements on its first use and PostgreSQL plans
    /// them anew (custom plans) for their first five executions, so with one script file per
    /// sampled row a short run would time mostly `Parse` and planning. shared-db's side prepares
    /// one statement per connection and warms it up the same way.
    pub warm: Vec<Duration>,
}

impl Pgbench<'_> {
    /// Writes `scripts` (one file each, picked uniformly per transaction), runs pgbench with
    /// `-M prepared -c clients` and `limit` (`-T secs` or `-t per-client`), returns its tps
    /// (without initial connection time) and the transactions processed.
    pub fn run(
        &self,
        name: &str,
        scripts: &[String],
        defines: &[(String, String)],
        clients: u32,
        limit: &[&str],
        log_latencies: bool,
    ) -> anyhow::Result<PgbenchRun> {
        let mut cmd = Command::new(self.bin);
        cmd.args(["-n", "-M", "prepared", "-c", &clients.to_string()])
            .args(["-j", &self.threads.min(clients).to_string()])
            .args(limit);
        for (i, s) in scripts.iter().enumerate() {
            let path = self.dir.join(format!("{name}_{i}.sql"));
            std::fs::write(&path, s)?;
            cmd.arg("-f").arg(format!("{}@1", path.display()));
        }
        for (k, v) in defines {
            cmd.arg("-D").arg(format!("{k}={v}"));
        }
        let prefix = self.dir.join(format!("{name}_log"));
        if log_latencies {
            cmd.arg("-l")
                .arg(format!("--log-prefix={}", prefix.display()));
        }
        cmd.arg(self.url);
        let out = cmd.output().context("running pgbench")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() || stderr.contains("aborted") {
            bail!("pgbench {name} failed:\n{stdout}\n{stderr}");
        }
        let field = |prefix: &str| {
            stdout
                .lines()
                .find_map(|l| l.trim().strip_prefix(prefix))
                .and_then(|r| r.split_whitespace().next())
                .and_then(|v| v.split('/').next().map(str::to_owned))
                .with_context(|| format!("no `{prefix}` in pgbench output:\n{stdout}"))
        };
        let logged = if log_latencies {
            read_latencies(self.dir, &format!("{name}_log"))?
        } else {
            Vec::new()
        };
        let mut runs = std::collections::HashMap::new();
        let warm = logged
            .iter()
            .filter(|l| {
                let n = runs.entry((l.file, l.client, l.script)).or_insert(0);
                *n += 1;
                *n > COLD_RUNS
            })
            .map(|l| l.latency)
            .collect();
        Ok(PgbenchRun {
            tps: field("tps =")?.parse()?,
            transactions: field("number of transactions actually processed:")?.parse()?,
            latencies: logged.iter().map(|l| l.latency).collect(),
            warm,
        })
    }
}

/// One line of pgbench's per-transaction log.
struct Logged {
    /// Which log file (one per pgbench thread): client ids are per thread.
    file: usize,
    client: u32,
    script: u32,
    latency: Duration,
}

/// pgbench's per-transaction logs (`<prefix>.<pid>[.<thread>]`, columns `client transaction
/// latency-µs script …`), read in order and removed.
fn read_latencies(dir: &Path, prefix: &str) -> anyhow::Result<Vec<Logged>> {
    let mut out = Vec::new();
    for (file, entry) in std::fs::read_dir(dir)?.enumerate() {
        let path = entry?.path();
        let is_log = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(&format!("{prefix}.")));
        if !is_log {
            continue;
        }
        for line in std::fs::read_to_string(&path)?.lines() {
            let cols: Vec<u64> = line
                .split_whitespace()
                .take(4)
                .map(str::parse)
                .collect::<Result<_, _>>()
                .with_context(|| format!("pgbench log line {line:?}"))?;
            let [client, _, micros, script] = cols[..] else {
                bail!("pgbench log line {line:?}");
            };
            out.push(Logged {
                file,
                client: client as u32,
                script: script as u32,
                latency: Duration::from_micros(micros),
            });
        }
        std::fs::remove_file(&path)?;
    }
    Ok(out)
}

/// The `p` quantile (0..=1) of `sorted`, in milliseconds.
pub fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// `url` with its database replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let scheme_end = head.find("://").map_or(0, |i| i + 3);
    let base = match head[scheme_end..].find('/') {
        Some(i) => &head[..scheme_end + i],
        None => head,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}
