//! What OpenTelemetry spans cost a W4-like workload: `plans::status` of a random plan on held
//! connections, with the `tracing-opentelemetry` bridge, `shared_db::otel::layer()` and the
//! SDK's batch exporter switched on and off in alternating rounds of the same run (the order
//! off-on-on-off repeated, so a drifting machine weighs on both sides alike).
//!
//! ```sh
//! cargo run --release --example otel_overhead --features embedded,otel
//! ```
//!
//! Knobs: `OVERHEAD_CLIENTS` (default 4), `OVERHEAD_SECS` per round (default 3),
//! `OVERHEAD_BLOCKS` (default 3; each block is 4 rounds), `OVERHEAD_PLANS` (default 5000),
//! `OVERHEAD_READS` (a cap on each client's reads per round: with a long `OVERHEAD_SECS` and
//! `OVERHEAD_WARMUP_SECS`, every run does the same reads, for instruction counts under
//! callgrind), `OVERHEAD_LEAN=1` (the bridge without its per-poll busy/idle timing, thread and
//! source-location attributes), `OVERHEAD_SAMPLE` (the fraction of traces kept, default 1: every
//! span exported).
//! `DATABASE_URL` selects the server (the embedded cluster when unset). "On" exports every
//! span to an exporter that discards it after the SDK's batch processor has handed it over, so
//! the figure is what the process pays, without a collector's network on the other side.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter};
use shared_db::planexe::plans::{self, NewPlan};
use shared_db::{Config, Database};
use tracing::Level;
use tracing_subscriber::filter::dynamic_filter_fn;
use tracing_subscriber::prelude::*;

static ON: AtomicBool = AtomicBool::new(false);

/// Counts and drops what the batch processor exports.
#[derive(Debug, Clone, Default)]
struct Discard(Arc<AtomicU64>);

impl SpanExporter for Discard {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        self.0.fetch_add(batch.len() as u64, Ordering::Relaxed);
        async { Ok(()) }
    }
}

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// CPU time this process has used (user + system, all threads, the exporter's included), from
/// `/proc/self/stat`, in seconds.
fn cpu_secs() -> f64 {
    process_cpu_secs("self")
}

/// CPU time (user + system) of process `pid` (`self`, or a server backend's pid), in seconds.
fn process_cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name
    (ticks(11) + ticks(12)) / 100.0
}

/// One timed round: `clients` tasks, each on a held connection, reading statuses until time is
/// up. Reads per second, this process's CPU microseconds per read, and the server's (the
/// backends of the held connections, read from `/proc`: the server must run on this machine).
async fn round(
    db: &Database,
    ids: &Arc<Vec<uuid::Uuid>>,
    clients: u64,
    secs: u64,
) -> (f64, f64, f64) {
    let max_reads = knob("OVERHEAD_READS", u64::MAX);
    let cpu_before = cpu_secs();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let db = db.clone();
        let ids = ids.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = db.acquire().await.expect("a connection");
            let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
                .fetch_one(&mut *conn)
                .await
                .expect("the backend's pid");
            let backend = backend.to_string();
            let server_before = process_cpu_secs(&backend);
            let mut x = 0x9E37_79B9_7F4A_7C15_u64 ^ (c + 1);
            let mut reads = 0u64;
            while Instant::now() < deadline && reads < max_reads {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let id = ids[(x % ids.len() as u64) as usize];
                plans::status(&mut *conn, id).await.expect("the plan");
                reads += 1;
            }
            (reads, process_cpu_secs(&backend) - server_before)
        }));
    }
    let (mut total, mut server_cpu) = (0, 0.0);
    for t in tasks {
        let (reads, cpu) = t.await.expect("client");
        total += reads;
        server_cpu += cpu;
    }
    let per_read = |cpu: f64| cpu * 1e6 / total.max(1) as f64;
    (
        total as f64 / secs as f64,
        per_read(cpu_secs() - cpu_before),
        per_read(server_cpu),
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let clients = knob("OVERHEAD_CLIENTS", 4);
    let secs = knob("OVERHEAD_SECS", 3);
    let blocks = knob("OVERHEAD_BLOCKS", 3);
    let plan_count = knob("OVERHEAD_PLANS", 5000);
    let lean = knob("OVERHEAD_LEAN", 0) == 1;
    let bridge = knob("OVERHEAD_BRIDGE", 0) == 1;

    let exported = Arc::new(AtomicU64::new(0));
    let ratio: f64 = std::env::var("OVERHEAD_SAMPLE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    let provider = SdkTracerProvider::builder()
        .with_sampler(Sampler::TraceIdRatioBased(ratio))
        .with_batch_exporter(Discard(exported.clone()))
        .build();
    // Per-layer filters read the switch on every span (`dynamic_filter_fn`: a plain `filter_fn`
    // is cached per call site), so "off" opens no span at all: the library as a service without
    // OpenTelemetry runs it. "On" exports at INFO, as a service would: sqlx's per-statement
    // DEBUG events would otherwise become span events, with the SQL text formatted each time.
    let tracer = provider.tracer("otel-overhead");
    tracing_subscriber::registry()
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(tracer.clone())
                // the bridge's per-poll busy/idle timing, thread and source-location
                // attributes: on by default, off with OVERHEAD_LEAN=1
                .with_tracked_inactivity(!lean)
                .with_threads(!lean)
                .with_location(!lean)
                .with_filter(dynamic_filter_fn(move |meta, _| {
                    ON.load(Ordering::Relaxed)
                        && *meta.level() <= Level::INFO
                        // OVERHEAD_BRIDGE=1: the bridge exports the repository spans too, and
                        // shared-db's layer only adds the conventions (the path before it had a
                        // span export of its own)
                        && (bridge || !shared_db::semconv::is_repository(meta.target()))
                })),
        )
        .with(
            shared_db::otel::layer(tracer)
                .with_filter(dynamic_filter_fn(|_, _| ON.load(Ordering::Relaxed))),
        )
        .init();

    let mut config = Config::from_env()?;
    config.max_connections = clients as u32 + 1;
    let db = match config.database_url {
        Some(_) => Database::connect(&config).await?,
        None => Database::connect_embedded(&config, "shared_db_otel_overhead").await?,
    };
    db.migrate().await?;
    let have: i64 = sqlx::query_scalar("SELECT count(*) FROM plans")
        .fetch_one(db.pool())
        .await?;
    if (have as u64) < plan_count {
        let mut tx = db.begin().await?;
        for i in have as u64..plan_count {
            plans::enqueue(
                &mut *tx,
                &NewPlan {
                    prompt: &format!("overhead {i}"),
                    ..Default::default()
                },
            )
            .await?;
        }
        tx.commit().await?;
    }
    let ids: Arc<Vec<uuid::Uuid>> = Arc::new(
        sqlx::query_scalar("SELECT id FROM plans")
            .fetch_all(db.pool())
            .await?,
    );
    println!(
        "W4-like: plans::status of a random one of {} plans, {clients} clients on held \
         connections, {secs} s rounds, {blocks} blocks of off/on/on/off, bridge {}, \
         sampling {ratio}",
        ids.len(),
        if lean { "lean" } else { "defaults" }
    );
    ON.store(false, Ordering::Relaxed);
    // warm-up: connections, statement cache, buffers (under callgrind, OVERHEAD_WARMUP_SECS=1000
    // with OVERHEAD_READS makes it as long in every run, so whole-process counts compare)
    let _ = round(&db, &ids, clients, knob("OVERHEAD_WARMUP_SECS", 1)).await;

    let (mut off, mut on, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut cpu_off, mut cpu_on) = (Vec::new(), Vec::new());
    let (mut server_off, mut server_on) = (Vec::new(), Vec::new());
    for block in 0..blocks {
        let (mut block_off, mut block_on) = (0.0, 0.0);
        let only = std::env::var("OVERHEAD_ONLY").ok();
        for enabled in [false, true, true, false]
            .into_iter()
            .filter(|e| only.as_deref().is_none_or(|o| (o == "on") == *e))
        {
            ON.store(enabled, Ordering::Relaxed);
            let (rate, cpu, server) = round(&db, &ids, clients, secs).await;
            println!(
                "block {block} exporter {:3}: {rate:>9.0} reads/s, CPU per read: {cpu:>5.1} µs \
                 here, {server:>5.1} µs in the server",
                if enabled { "on" } else { "off" }
            );
            if enabled { &mut cpu_on } else { &mut cpu_off }.push(cpu);
            if enabled {
                &mut server_on
            } else {
                &mut server_off
            }
            .push(server);
            if enabled { &mut on } else { &mut off }.push(rate);
            *if enabled {
                &mut block_on
            } else {
                &mut block_off
            } += rate;
        }
        ratios.push(block_on / block_off);
    }
    ON.store(false, Ordering::Relaxed);
    provider.force_flush()?;
    let (m_off, m_on) = (median(off), median(on));
    // Within a block the on and off rounds are neighbours in time, so the block's ratio is
    // the figure least moved by other load on the machine.
    println!(
        "median reads/s: off {m_off:.0}, on {m_on:.0} ({:.1} %); median of the blocks' on/off: \
         overhead {:.1} % (spans exported: {})",
        (1.0 - m_on / m_off) * 100.0,
        (1.0 - median(ratios)) * 100.0,
        exported.load(Ordering::Relaxed)
    );
    let (c_off, c_on) = (median(cpu_off), median(cpu_on));
    println!(
        "median CPU of this process per read: off {c_off:.1} µs, on {c_on:.1} µs \
         (+{:.1} µs per span)",
        c_on - c_off
    );
    // On a machine whose cores the client and the server share (this one), throughput is bound
    // by the CPU that one read takes on both sides: the figure least moved by other load.
    let (s_off, s_on) = (median(server_off), median(server_on));
    println!(
        "median CPU per read, client + server: off {:.1} µs, on {:.1} µs: overhead {:.1} %",
        c_off + s_off,
        c_on + s_on,
        ((c_on - c_off) / (c_off + s_off)) * 100.0
    );
    db.close().await;
    Ok(())
}
