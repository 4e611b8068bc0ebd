//! The cost of tracing on the order path; writes the `tracing/sampling` sub-section of
//! BENCHMARKS.md (inside the `tracing` section, beside `tracing/collector`).
//!
//! ```text
//! cargo bench -p api-gateway --bench tracing
//! ```
//!
//! Orders placed through the gateway (`POST /api/order` with a bearer token: edge check,
//! order-service, its reservation at inventory-service, the order's transaction with its
//! outbox row, the relay's publish to Kafka, notification-service storing the notification)
//! with every service sampling all traces (`TRACE_SAMPLE_RATIO=1.0`, about 9 spans per
//! order exported to the trace-collector) and none (`0.0`: trace ids and propagation still
//! happen, no span is recorded or exported), in the same run, by the same load generator
//! (wrk, keep-alive, `BENCH_CONNS` connections, one order line of one of 20 SKUs).
//!
//! Shared by every run: MariaDB (testkit), the registry, the identity provider and the
//! trace-collector, release builds, on loopback (`testkit::loopback`; product-service is not
//! started and order-service takes the line's price as sent, `PRICE_CHECK=off`). Per run: fresh databases, a fresh tansu
//! broker and fresh gateway, order-, inventory- and notification-service processes started
//! with the run's ratio (so no run inherits another's tables, consumer group or warm
//! caches), 3 s of warm-up, 5 s idle (the services' background CPU rate), then the
//! measurement. Runs alternate (1.0, 0.0, 0.0, 1.0, ...) so a drift of the shared machine
//! weighs on both ratios alike. Besides wrk's figures, the CPU time (user + system, from
//! /proc) of the four services and of the collector is divided by the orders placed: on a
//! shared 2-core machine it is steadier than orders/s.
//!
//! Knobs: `BENCH_DURATION` (wrk's `-d`, default `15s`), `BENCH_CONNS` (default 16),
//! `BENCH_ROUNDS` (pairs of runs, default 2), `BENCH_NO_WRITE=1` prints without writing
//! BENCHMARKS.md, `BENCH_BIN_DIR=<dir>` runs the binaries found there instead of the release
//! ones (a build with symbols, to profile). It builds the release binaries it runs first
//! (`cargo build --release`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use testkit::{benchmarks, loopback};

/// The services started per run, in start order.
const SERVICES: [&str; 4] = [
    "inventory-service",
    "order-service",
    "notification-service",
    "api-gateway",
];
/// SKUs the load spreads over, so orders do not queue on one stock row's lock.
const SKUS: usize = 20;
/// Each order line's price (taken as sent: this bench runs without product-service).
const PRICE: &str = "10.00";

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?
        .block_on(run())
}

/// One measured run.
#[derive(Debug, Clone)]
struct Run {
    ratio: f64,
    orders: u64,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    /// CPU time of the four services per order, µs.
    services_cpu_us: f64,
    /// Of which the services' idle rate (measured just before) accounts for.
    idle_cpu_us: f64,
    /// The same per service, in [`SERVICES`] order.
    cpu_by_service_us: Vec<f64>,
    /// CPU time of the trace-collector per order, µs.
    collector_cpu_us: f64,
    /// Spans the services exported per order.
    spans_per_order: f64,
    /// Spans dropped by the services' bounded export queues.
    dropped: u64,
}

async fn run() -> anyhow::Result<()> {
    let duration = env_or("BENCH_DURATION", "15s");
    let conns: u32 = env_or("BENCH_CONNS", "16").parse().context("BENCH_CONNS")?;
    let rounds: u32 = env_or("BENCH_ROUNDS", "2")
        .parse()
        .context("BENCH_ROUNDS")?;
    let loadavg = testkit::benchmarks::load_average().unwrap_or_default();
    let bin = build_release()?;

    eprintln!("starting MariaDB, registry, identity provider, trace-collector...");
    let infra = loopback::Infra::start(&bin).await?;

    let mut runs = Vec::new();
    let mut index = 0;
    for round in 0..rounds {
        let ratios = if round % 2 == 0 {
            [1.0, 0.0]
        } else {
            [0.0, 1.0]
        };
        for ratio in ratios {
            index += 1;
            let r = measure(&infra, index, ratio, &duration, conns).await?;
            eprintln!(
                "run {index}: ratio {ratio}: {:.0} orders/s, p50 {:.1} ms, p99 {:.1} ms, {:.0} µs CPU/order, {:.1} spans/order",
                r.rps, r.p50_ms, r.p99_ms, r.services_cpu_us, r.spans_per_order
            );
            runs.push(r);
        }
    }
    drop(infra);

    let report = report(&runs, &duration, conns, &loadavg);
    println!("{report}");
    if std::env::var_os("BENCH_NO_WRITE").is_none() {
        let path = testkit::benchmarks::write_section("tracing/sampling", &report)
            .context("writing BENCHMARKS.md")?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Builds the release binaries the benchmark runs; returns their directory.
fn build_release() -> anyhow::Result<PathBuf> {
    eprintln!("building release binaries...");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.args(["build", "--release", "-q"]);
    for p in SERVICES
        .iter()
        .chain(&["trace-collector", "identity-provider", "discovery-server"])
    {
        cmd.args(["-p", p]);
    }
    let status = cmd
        .current_dir(testkit::workspace_root())
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build --release failed");
    }
    Ok(loopback::release_dir())
}

async fn measure(
    infra: &loopback::Infra,
    index: u32,
    ratio: f64,
    duration: &str,
    conns: u32,
) -> anyhow::Result<Run> {
    // A fresh broker, databases and services per run: no consumer group carries over from the
    // previous run. Without product-service: order-service takes the order's price as sent.
    let options = loopback::Options {
        tag: index.to_string(),
        sample_ratio: ratio,
        catalog: false,
        env: Vec::new(),
        broker: None,
    };
    let services = loopback::Services::start(infra, &options).await?;
    let http = reqwest::Client::new();
    let admin = loopback::token(&http, &infra.issuer, "admin").await?;
    let skus: Vec<String> = (0..SKUS).map(|i| format!("sku-{i}")).collect();
    services
        .stock(&http, &admin, &skus, PRICE, 1_000_000_000)
        .await?;
    let user = loopback::token(&http, &infra.issuer, "alice").await?;
    // The gateway finds order-service and inventory through the registry.
    services
        .wait_for_orders(&http, &user, &skus[0], PRICE)
        .await?;
    let processes: Vec<&testkit::Started> = SERVICES
        .iter()
        .map(|name| services.get(name).context("a service is missing"))
        .collect::<anyhow::Result<_>>()?;

    let dir = tempfile::tempdir()?;
    let script = dir.path().join("order.lua");
    std::fs::write(&script, benchmarks::order_script(&user, &skus, PRICE))?;
    let url = format!("{}/api/order", services.gateway());
    benchmarks::wrk(&script, &url, conns, "3s").await?;

    let pids: Vec<u32> = processes.iter().map(|p| p.process.pid()).collect();
    // What the services burn with no orders at all (registry renewals, Kafka clients'
    // polling...), to tell it apart from the cost of an order.
    let idle_start = (cpu_seconds(&pids)?, std::time::Instant::now());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle_cpu_per_s =
        (cpu_seconds(&pids)? - idle_start.0) / idle_start.1.elapsed().as_secs_f64();
    let started = std::time::Instant::now();
    let before_cpu: Vec<f64> = pids
        .iter()
        .map(|p| cpu_seconds(&[*p]))
        .collect::<Result<_, _>>()?;
    let collector_pid = infra.collector.process.pid();
    let before_collector = cpu_seconds(&[collector_pid])?;
    let before_export = export_counters(&http, &processes).await?;
    let w = benchmarks::wrk(&script, &url, conns, duration).await?;
    let after_cpu: Vec<f64> = pids
        .iter()
        .map(|p| cpu_seconds(&[*p]))
        .collect::<Result<_, _>>()?;
    let after_collector = cpu_seconds(&[collector_pid])?;
    let loaded_s = started.elapsed().as_secs_f64();
    // Spans wait up to TRACE_EXPORT_DELAY (500 ms) before they are sent.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after_export = export_counters(&http, &processes).await?;

    let orders = w.succeeded();
    let us = 1e6;
    let run = Run {
        ratio,
        orders,
        rps: w.rps,
        p50_ms: w.p50_ms,
        p99_ms: w.p99_ms,
        errors: w.errors,
        services_cpu_us: (after_cpu.iter().sum::<f64>() - before_cpu.iter().sum::<f64>()) * us
            / orders as f64,
        idle_cpu_us: idle_cpu_per_s * loaded_s * us / orders as f64,
        cpu_by_service_us: after_cpu
            .iter()
            .zip(&before_cpu)
            .map(|(a, b)| (a - b) * us / orders as f64)
            .collect(),
        collector_cpu_us: (after_collector - before_collector) * us / orders as f64,
        spans_per_order: (after_export.0 - before_export.0) as f64 / orders as f64,
        dropped: after_export.1 - before_export.1,
    };
    services.stop().await;
    Ok(run)
}

/// utime + stime of `pids`, in seconds.
fn cpu_seconds(pids: &[u32]) -> anyhow::Result<f64> {
    benchmarks::cpu_seconds_of(pids).context("reading /proc/<pid>/stat")
}

/// Spans exported and dropped, summed over the services.
async fn export_counters(
    http: &reqwest::Client,
    processes: &[&testkit::Started],
) -> anyhow::Result<(u64, u64)> {
    let (mut exported, mut dropped) = (0, 0);
    for p in processes {
        let text = http
            .get(format!("{}/metrics", p.base))
            .send()
            .await?
            .text()
            .await?;
        exported += metric(&text, "tracing_spans_exported_total");
        dropped += metric(&text, "tracing_spans_dropped_total");
    }
    Ok((exported, dropped))
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or(0)
}

/// The median of `f` over `runs` (the mean of the middle two for an even count).
fn median(runs: &[&Run], f: impl Fn(&Run) -> f64) -> f64 {
    benchmarks::median(runs.iter().map(|r| f(r))).unwrap_or(0.0)
}

fn report(runs: &[Run], duration: &str, conns: u32, loadavg: &str) -> String {
    let cpu = testkit::benchmarks::cpu_model().unwrap_or_else(|| "unknown CPU".into());
    let mut out = String::new();
    out.push_str("### Sampling cost on the order path\n\n");
    out.push_str(&format!(
        "Run `cargo bench -p api-gateway --bench tracing` (measured {}, {cpu}, 2 cores shared by wrk, MariaDB, tansu, \
         the collector, the services and whatever else runs on the machine: load average before the run {loadavg}; \
         release builds; loopback). `POST /api/order` through the gateway with a bearer token (edge check, \
         order-service, reservation at inventory-service, the order's transaction with its outbox row, the relay's \
         publish to Kafka, notification-service storing the notification), wrk with {conns} connections for \
         {duration} per run after 3 s of warm-up, one order line of one of {SKUS} SKUs. Every service runs with \
         `TRACE_SAMPLE_RATIO=1.0` (all traces exported to the trace-collector) or `0.0` (ids and propagation \
         only); fresh databases, broker and service processes per run; runs alternated (1.0, 0.0, 0.0, 1.0, ...). \
         CPU per order: user + system time of the four services (and separately of the collector) during the \
         measurement divided by the orders placed; \"idle\" is the part the services' own idle rate (measured for \
         5 s just before, no load) accounts for.\n\n",
        today()
    ));
    out.push_str("| run | sampling | orders | orders/s | p50 ms | p99 ms | services CPU µs/order | of which idle | collector CPU µs/order | spans exported/order | dropped | errors |\n");
    out.push_str("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (i, r) in runs.iter().enumerate() {
        out.push_str(&format!(
            "| {} | {:.0} % | {} | {:.0} | {:.1} | {:.1} | {:.0} | {:.0} | {:.0} | {:.1} | {} | {} |\n",
            i + 1,
            r.ratio * 100.0,
            r.orders,
            r.rps,
            r.p50_ms,
            r.p99_ms,
            r.services_cpu_us,
            r.idle_cpu_us,
            r.collector_cpu_us,
            r.spans_per_order,
            r.dropped,
            r.errors
        ));
    }
    let on: Vec<&Run> = runs.iter().filter(|r| r.ratio > 0.5).collect();
    let off: Vec<&Run> = runs.iter().filter(|r| r.ratio < 0.5).collect();
    let spread = |runs: &[&Run], f: &dyn Fn(&Run) -> f64| {
        let v: Vec<f64> = runs.iter().map(|r| f(r)).collect();
        let (lo, hi) = v
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
        (lo, hi)
    };
    let (rps_on, rps_off) = (median(&on, |r| r.rps), median(&off, |r| r.rps));
    let (cpu_on, cpu_off) = (
        median(&on, |r| r.services_cpu_us),
        median(&off, |r| r.services_cpu_us),
    );
    let net = |r: &Run| r.services_cpu_us - r.idle_cpu_us;
    let (net_on, net_off) = (median(&on, net), median(&off, net));
    let (p50_on, p50_off) = (median(&on, |r| r.p50_ms), median(&off, |r| r.p50_ms));
    let collector_on = median(&on, |r| r.collector_cpu_us);
    let spans = median(&on, |r| r.spans_per_order);
    let throughput_cost = (1.0 - rps_on / rps_off) * 100.0;
    let cpu_cost = (cpu_on / cpu_off - 1.0) * 100.0;
    let net_cost = (net_on / net_off - 1.0) * 100.0;
    let (off_lo, off_hi) = spread(&off, &|r| r.rps);
    let (off_cpu_lo, off_cpu_hi) = spread(&off, &|r| r.services_cpu_us);
    let verdict = |cost: f64| if cost <= 10.0 { "within" } else { "over" };
    out.push_str(&format!(
        "\n- Throughput (medians of {} runs each): {rps_on:.0} orders/s sampling everything vs {rps_off:.0} orders/s \
         sampling nothing: tracing costs **{throughput_cost:.1} %** of throughput ({} the 10 % goal). p50 \
         {p50_on:.1} ms vs {p50_off:.1} ms. For scale, the unsampled runs alone ranged {off_lo:.0} to {off_hi:.0} \
         orders/s and {off_cpu_lo:.0} to {off_cpu_hi:.0} µs CPU per order.\n",
        on.len(),
        verdict(throughput_cost)
    ));
    out.push_str(&format!(
        "- CPU of the services per order: {cpu_on:.0} µs vs {cpu_off:.0} µs (**{cpu_cost:+.1} %**, {} the 10 % goal); \
         net of their idle rate {net_on:.0} µs vs {net_off:.0} µs ({net_cost:+.1} %). About {spans:.1} spans per \
         order are exported. The collector adds {collector_on:.0} µs per order when it ingests every trace (the \
         sink: in production it runs elsewhere, here it shares the two cores).\n",
        verdict(cpu_cost)
    ));
    out.push_str("\n| CPU µs/order by service (medians) | sampling 100 % | sampling 0 % | difference |\n|---|---:|---:|---:|\n");
    for (i, name) in SERVICES.iter().enumerate() {
        let (a, b) = (
            median(&on, |r| r.cpu_by_service_us[i]),
            median(&off, |r| r.cpu_by_service_us[i]),
        );
        out.push_str(&format!("| {name} | {a:.0} | {b:.0} | {:+.0} |\n", a - b));
    }
    out
}

fn today() -> String {
    std::process::Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
