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
//! trace-collector, release builds, on loopback. Per run: fresh databases, a fresh tansu
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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

/// The services started per run, in start order.
const SERVICES: [&str; 4] = [
    "inventory-service",
    "order-service",
    "notification-service",
    "api-gateway",
];
/// SKUs the load spreads over, so orders do not queue on one stock row's lock.
const SKUS: usize = 20;

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
    let db = testkit::MariaDb::start().await.context("MariaDB")?;
    let registry = Process::start(&bin, "discovery-server", &[], &[]).await?;
    let idp_port = testkit::free_port()?;
    let idp_base = format!("http://127.0.0.1:{idp_port}");
    let realm = testkit::workspace_root().join("keycloak/realm.json");
    let idp = Process::start_on(
        &bin,
        "identity-provider",
        idp_port,
        &[
            "--no-register",
            "--realm-file",
            realm.to_str().context("realm path")?,
            "--issuer-base-url",
            &idp_base,
            "--key-activation-delay",
            "1s",
        ],
        &[],
    )
    .await?;
    let issuer = format!("{idp_base}/realms/platform");
    let collector = Process::start(&bin, "trace-collector", &["--no-register"], &[]).await?;
    let endpoint = format!("{}/api/v2/spans", collector.base);

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
            let setup = RunSetup {
                bin: &bin,
                db: &db,
                registry: &registry.base,
                issuer: &issuer,
                endpoint: &endpoint,
                collector_pid: collector.child.pid(),
                index,
            };
            let r = measure(&setup, ratio, &duration, conns).await?;
            eprintln!(
                "run {index}: ratio {ratio}: {:.0} orders/s, p50 {:.1} ms, p99 {:.1} ms, {:.0} µs CPU/order, {:.1} spans/order",
                r.rps, r.p50_ms, r.p99_ms, r.services_cpu_us, r.spans_per_order
            );
            runs.push(r);
        }
    }
    drop((registry, idp, collector));

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
    Ok(testkit::target_dir().join("release"))
}

/// A release binary running on a loopback port.
struct Process {
    base: String,
    child: testkit::ChildGuard,
}

impl Process {
    async fn start(
        bin: &Path,
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Process> {
        Process::start_on(bin, name, testkit::free_port()?, args, env).await
    }

    async fn start_on(
        bin: &Path,
        name: &str,
        port: u16,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Process> {
        let port = port.to_string();
        let mut all = vec!["--port", &port, "--bind", "127.0.0.1"];
        all.extend_from_slice(args);
        let mut vars = vec![("RUST_LOG", "warn")];
        vars.extend_from_slice(env);
        // BENCH_BIN_DIR: binaries found there win (e.g. builds with symbols, for perf).
        let program = std::env::var_os("BENCH_BIN_DIR")
            .map(|d| PathBuf::from(d).join(name))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| bin.join(name));
        let child = testkit::spawn_process(program, all, vars).await?;
        let base = format!("http://127.0.0.1:{port}");
        testkit::wait_for_http(&format!("{base}/health/ready"), Duration::from_secs(60))
            .await
            .with_context(|| format!("{name} not ready:\n{}", child.log_tail(20)))?;
        Ok(Process { base, child })
    }
}

/// What a run needs from the shared part.
struct RunSetup<'a> {
    bin: &'a Path,
    db: &'a testkit::MariaDb,
    registry: &'a str,
    issuer: &'a str,
    endpoint: &'a str,
    collector_pid: u32,
    index: u32,
}

async fn measure(s: &RunSetup<'_>, ratio: f64, duration: &str, conns: u32) -> anyhow::Result<Run> {
    let ratio_text = format!("{ratio:.1}");
    let env = [
        ("ZIPKIN_ENDPOINT", s.endpoint),
        ("TRACE_SAMPLE_RATIO", ratio_text.as_str()),
    ];
    // A fresh broker per run: no consumer group carries over from the previous run.
    let kafka = testkit::Broker::start().await.context("broker")?;
    kafka.create_topic("order-placed", 3).await?;
    let bootstrap = kafka.bootstrap_servers();
    let mut urls = BTreeMap::new();
    for db in ["inventory", "orders", "notifications"] {
        let access = s.db.create_database(&format!("{db}_{}", s.index)).await?;
        urls.insert(db, access.url);
    }
    let common = [
        "--advertise-host",
        "127.0.0.1",
        "--registry-url",
        s.registry,
        "--issuer-url",
        s.issuer,
    ];
    let mut processes = Vec::new();
    for name in SERVICES {
        let mut args: Vec<&str> = common.to_vec();
        match name {
            "inventory-service" => args.extend(["--database-url", &urls["inventory"]]),
            "order-service" => args.extend([
                "--database-url",
                &urls["orders"],
                "--kafka-bootstrap-servers",
                &bootstrap,
            ]),
            "notification-service" => args.extend([
                "--database-url",
                &urls["notifications"],
                "--kafka-bootstrap-servers",
                &bootstrap,
            ]),
            // The export counters are read from every service's /metrics, the
            // gateway's included (private by default; this runs on loopback).
            "api-gateway" => args.push("--public-observability"),
            _ => {}
        }
        processes.push(Process::start(s.bin, name, &args, &env).await?);
    }
    let http = reqwest::Client::new();
    let admin = token(&http, s.issuer, "admin").await?;
    for i in 0..SKUS {
        let res = http
            .put(format!("{}/admin/inventory/sku-{i}", processes[0].base))
            .bearer_auth(&admin)
            .json(&json!({"quantity": 1_000_000_000u64}))
            .send()
            .await?;
        if !res.status().is_success() {
            bail!("setting stock: {}", res.status());
        }
    }
    let gateway = &processes[3].base;
    let user = token(&http, s.issuer, "alice").await?;
    // The gateway finds order-service and inventory through the registry.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let res = http
            .get(format!("{gateway}/api/order"))
            .bearer_auth(&user)
            .send()
            .await?;
        if res.status().is_success() {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the gateway does not reach order-service: {}", res.status());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let dir = tempfile::tempdir()?;
    let script = dir.path().join("order.lua");
    std::fs::write(&script, lua_script(&user))?;
    let url = format!("{gateway}/api/order");
    wrk(&script, &url, conns, "3s").await?;

    let pids: Vec<u32> = processes.iter().map(|p| p.child.pid()).collect();
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
    let before_collector = cpu_seconds(&[s.collector_pid])?;
    let before_export = export_counters(&http, &processes).await?;
    let out = wrk(&script, &url, conns, duration).await?;
    let after_cpu: Vec<f64> = pids
        .iter()
        .map(|p| cpu_seconds(&[*p]))
        .collect::<Result<_, _>>()?;
    let after_collector = cpu_seconds(&[s.collector_pid])?;
    let loaded_s = started.elapsed().as_secs_f64();
    // Spans wait up to TRACE_EXPORT_DELAY (500 ms) before they are sent.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after_export = export_counters(&http, &processes).await?;

    let w = parse_wrk(&out)?;
    let orders = w.requests.saturating_sub(w.errors).max(1);
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
    for mut p in processes.into_iter().rev() {
        let _ = p.child.stop(Duration::from_secs(10)).await;
    }
    Ok(run)
}

async fn token(http: &reqwest::Client, issuer: &str, user: &str) -> anyhow::Result<String> {
    let res: Value = http
        .post(format!("{issuer}/protocol/openid-connect/token"))
        .form(&[
            ("grant_type", "password"),
            ("client_id", "platform-cli"),
            ("username", user),
            ("password", user),
        ])
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    res["access_token"]
        .as_str()
        .map(str::to_string)
        .context("no access_token")
}

/// wrk's request script: a one-line order of a random SKU, with the bearer token.
fn lua_script(token: &str) -> String {
    format!(
        r#"wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {token}"
math.randomseed(os.time())
request = function()
  local sku = "sku-" .. math.random(0, {last})
  return wrk.format(nil, nil, nil, '{{"lines":[{{"skuCode":"' .. sku .. '","price":"10.00","quantity":1}}]}}')
end
"#,
        last = SKUS - 1
    )
}

async fn wrk(script: &Path, url: &str, conns: u32, duration: &str) -> anyhow::Result<String> {
    let threads = conns.clamp(1, 2).to_string();
    let out = tokio::process::Command::new("wrk")
        .args([
            "-t",
            &threads,
            "-c",
            &conns.to_string(),
            "-d",
            duration,
            "--latency",
            "-s",
        ])
        .arg(script)
        .arg(url)
        .output()
        .await
        .context("running wrk (Debian package wrk)")?;
    if !out.status.success() {
        bail!("wrk failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The figures read from wrk's output.
#[derive(Debug, PartialEq)]
struct Wrk {
    requests: u64,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

fn parse_wrk(out: &str) -> anyhow::Result<Wrk> {
    let ms = |v: &str| -> Option<f64> {
        let (num, unit) = v.split_at(v.find(|c: char| c.is_alphabetic())?);
        let n: f64 = num.parse().ok()?;
        Some(match unit {
            "us" => n / 1000.0,
            "ms" => n,
            "s" => n * 1000.0,
            _ => return None,
        })
    };
    let mut w = Wrk {
        requests: 0,
        rps: 0.0,
        p50_ms: 0.0,
        p99_ms: 0.0,
        errors: 0,
    };
    for line in out.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", v] => w.p50_ms = ms(v).context("p50")?,
            ["99%", v] => w.p99_ms = ms(v).context("p99")?,
            ["Requests/sec:", v] => w.rps = v.parse()?,
            [n, "requests", "in", ..] => w.requests = n.parse()?,
            ["Non-2xx", "or", "3xx", "responses:", n] => w.errors += n.parse::<u64>()?,
            ["Socket", "errors:", rest @ ..] => {
                for n in rest
                    .iter()
                    .filter_map(|t| t.trim_end_matches(',').parse::<u64>().ok())
                {
                    w.errors += n;
                }
            }
            _ => {}
        }
    }
    if w.requests == 0 {
        bail!("no requests in wrk's output:\n{out}");
    }
    Ok(w)
}

/// utime + stime of `pids`, in seconds.
fn cpu_seconds(pids: &[u32]) -> anyhow::Result<f64> {
    pids.iter()
        .map(|&pid| testkit::benchmarks::cpu_seconds(pid).context("reading /proc/<pid>/stat"))
        .sum()
}

/// Spans exported and dropped, summed over the services.
async fn export_counters(
    http: &reqwest::Client,
    processes: &[Process],
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
    let mut v: Vec<f64> = runs.iter().map(|r| f(r)).collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
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
