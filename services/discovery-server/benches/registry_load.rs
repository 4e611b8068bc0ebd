//! Registry load benchmark; writes the `discovery` section of BENCHMARKS.md.
//!
//! ```text
//! cargo bench -p discovery-server --bench registry_load
//! ```
//!
//! Starts the release `discovery-server` binary as a separate process on
//! loopback and measures, from `/proc/<pid>` of that process:
//! - its CPU share and RSS while idle (the baseline), with 1,000 and with
//!   10,000 instances renewing every 5 s, each instance with its own HTTP
//!   client and keep-alive connection, as separate processes would have;
//! - the same 10,000 with `RUST_LOG=warn` (no per-request access log), and
//!   through one client's connection pool (the registry's data without
//!   10,000 client connections);
//! - the time from a change (a registration or cancellation request sent)
//!   to a watching client (long-poll on `/eureka/watch`) having it, p50/p99
//!   over 200 changes, idle and under the 10,000-instance load.
//!
//! Bounded: about four minutes. Knobs (environment): `BENCH_INSTANCES`
//! (default 10000), `BENCH_WINDOW_SECS` (CPU window, default 20),
//! `BENCH_WRITE=0` to print without writing BENCHMARKS.md.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use kit::registry::model::{ActionType, InstanceEnvelope, InstanceInfo, WatchResponse};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

const RENEW: Duration = Duration::from_secs(5);
const WATCH_CHANGES: usize = 200;

use testkit::benchmarks::env_u64;

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

/// A registry process.
struct Registry {
    _child: testkit::ChildGuard,
    url: String,
    pid: u32,
}

async fn start_registry(log: &str) -> anyhow::Result<Registry> {
    let port = testkit::free_port()?.to_string();
    let child = testkit::spawn_process(
        env!("CARGO_BIN_EXE_discovery-server"),
        ["--port", &port, "--bind", "127.0.0.1"],
        [("ADMIN_TOKEN", "bench"), ("RUST_LOG", log)],
    )
    .await?;
    let url = format!("http://127.0.0.1:{port}");
    testkit::wait_for_http(&format!("{url}/health/ready"), Duration::from_secs(20)).await?;
    let pid = child.pid();
    Ok(Registry {
        _child: child,
        url,
        pid,
    })
}

/// utime + stime of `pid`, in seconds.
fn cpu_secs(pid: u32) -> anyhow::Result<f64> {
    testkit::benchmarks::cpu_seconds(pid).context("reading the registry's /proc/<pid>/stat")
}

/// (VmRSS, VmHWM) of `pid`, in MiB.
fn rss_mib(pid: u32) -> anyhow::Result<(f64, f64)> {
    let field = |name: &str| {
        testkit::benchmarks::status_bytes(pid, name)
            .map(|b| b as f64 / (1024.0 * 1024.0))
            .with_context(|| format!("reading {name} of the registry's /proc/<pid>/status"))
    };
    Ok((field("VmRSS")?, field("VmHWM")?))
}

/// One simulated instance: its own client (own keep-alive connection).
struct Instance {
    client: reqwest::Client,
    renew_url: String,
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
}

/// Registers instances `range`, 256 at a time, each with its own client
/// (own connection) or, with `shared`, all through one pooled client.
async fn register(
    url: &str,
    range: std::ops::Range<usize>,
    shared: Option<&reqwest::Client>,
) -> anyhow::Result<(Vec<Instance>, Duration)> {
    let start = Instant::now();
    let results: Vec<anyhow::Result<Instance>> = futures::stream::iter(range)
        .map(|n| {
            let url = url.to_string();
            let shared = shared.cloned();
            async move {
                let client = match shared {
                    Some(c) => c,
                    None => reqwest::Client::builder()
                        .pool_max_idle_per_host(1)
                        .timeout(Duration::from_secs(10))
                        .build()?,
                };
                let app = format!("bench-{}", n % 50);
                let id = format!("bench-{n}");
                let mut i = InstanceInfo::new(
                    &app,
                    &id,
                    "127.0.0.1",
                    "127.0.0.1",
                    20_000 + (n % 40_000) as u16,
                );
                i.metadata.insert("version".into(), "1".into());
                let res = client
                    .post(format!("{url}/eureka/apps/{}", i.app))
                    .json(&InstanceEnvelope {
                        instance: i.clone(),
                    })
                    .send()
                    .await?;
                if res.status() != 204 {
                    bail!("register {id}: {}", res.status());
                }
                Ok(Instance {
                    client,
                    renew_url: format!(
                        "{url}/eureka/apps/{}/{id}?status=UP&lastDirtyTimestamp=0",
                        i.app
                    ),
                })
            }
        })
        .buffer_unordered(256)
        .collect()
        .await;
    let instances = results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    Ok((instances, start.elapsed()))
}

/// Renews every instance every 5 s, spread evenly over the interval, until `stop`.
fn renew_forever(instances: Vec<Instance>, counts: Arc<Counts>, stop: CancellationToken) {
    let n = instances.len().max(1);
    for (k, inst) in instances.into_iter().enumerate() {
        let counts = counts.clone();
        let stop = stop.clone();
        let offset = RENEW.mul_f64(k as f64 / n as f64);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + offset, RENEW);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = ticker.tick() => {}
                }
                match inst.client.put(&inst.renew_url).send().await {
                    Ok(r) if r.status() == 200 => counts.ok.fetch_add(1, Ordering::Relaxed),
                    _ => counts.failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
    }
}

/// CPU share (% of one core), RSS and HWM (MiB), renewals ok/failed per second over `window`.
struct Sample {
    cpu_pct: f64,
    rss: f64,
    hwm: f64,
    ok_per_s: f64,
    failed_per_s: f64,
}

async fn sample(pid: u32, counts: &Counts, window: Duration) -> anyhow::Result<Sample> {
    let (c0, t0) = (cpu_secs(pid)?, Instant::now());
    let (ok0, f0) = (
        counts.ok.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed),
    );
    tokio::time::sleep(window).await;
    let (c1, wall) = (cpu_secs(pid)?, t0.elapsed().as_secs_f64());
    let (ok1, f1) = (
        counts.ok.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed),
    );
    let (rss, hwm) = rss_mib(pid)?;
    Ok(Sample {
        cpu_pct: (c1 - c0) / wall * 100.0,
        rss,
        hwm,
        ok_per_s: (ok1 - ok0) as f64 / wall,
        failed_per_s: (f1 - f0) as f64 / wall,
    })
}

/// Latencies from sending a change to a long-polling watcher having it.
async fn watch_latency(url: &str, changes: usize) -> anyhow::Result<Vec<Duration>> {
    let http = reqwest::Client::new();
    let seen: Arc<Mutex<HashMap<(String, bool), Instant>>> = Arc::default();
    let first: WatchResponse = http
        .get(format!("{url}/eureka/watch?since=0&timeoutSecs=0"))
        .send()
        .await?
        .json()
        .await?;
    let stop = CancellationToken::new();
    let watcher = {
        let (http, url, seen, stop) = (http.clone(), url.to_string(), seen.clone(), stop.clone());
        let mut since = first.version;
        tokio::spawn(async move {
            loop {
                let req = http
                    .get(format!("{url}/eureka/watch?since={since}&timeoutSecs=30"))
                    .send();
                let res = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = req => r,
                };
                let Ok(res) = res else { continue };
                let Ok(answer) = res.json::<WatchResponse>().await else {
                    continue;
                };
                let now = Instant::now();
                let mut seen = seen.lock();
                for c in &answer.changes {
                    if c.instance.instance_id.starts_with("probe-") {
                        let key = (
                            c.instance.instance_id.clone(),
                            c.action == ActionType::Deleted,
                        );
                        seen.entry(key).or_insert(now);
                    }
                }
                since = answer.version;
            }
        })
    };
    let mut sent: Vec<((String, bool), Instant)> = Vec::with_capacity(changes);
    for k in 0..changes / 2 {
        let id = format!("probe-{k}");
        let i = InstanceInfo::new("probe", &id, "127.0.0.1", "127.0.0.1", 9);
        sent.push(((id.clone(), false), Instant::now()));
        http.post(format!("{url}/eureka/apps/PROBE"))
            .json(&InstanceEnvelope { instance: i })
            .send()
            .await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
        sent.push(((id.clone(), true), Instant::now()));
        http.delete(format!("{url}/eureka/apps/PROBE/{id}"))
            .send()
            .await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.lock().len() < sent.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    let _ = watcher.await;
    let seen = seen.lock();
    let mut latencies = Vec::with_capacity(sent.len());
    for (key, at) in &sent {
        match seen.get(key) {
            Some(t) => latencies.push(t.saturating_duration_since(*at)),
            None => bail!("the watcher never saw {key:?}"),
        }
    }
    latencies.sort();
    Ok(latencies)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn admin(url: &str) -> anyhow::Result<serde_json::Value> {
    Ok(reqwest::Client::new()
        .get(format!("{url}/admin/registry"))
        .bearer_auth("bench")
        .send()
        .await?
        .json()
        .await?)
}

fn row(label: &str, instances: usize, s: &Sample) -> String {
    format!(
        "| {label} | {instances} | {:.0} / {:.0} | {:.1} % | {:.1} MiB | {:.1} MiB |",
        s.ok_per_s, s.failed_per_s, s.cpu_pct, s.rss, s.hwm
    )
}

fn latency_row(label: &str, l: &[Duration]) -> String {
    format!(
        "| {label} | {} | {} | {} | {} |",
        l.len(),
        ms(pct(l, 0.5)),
        ms(pct(l, 0.99)),
        ms(*l.last().unwrap_or(&Duration::ZERO))
    )
}

async fn run() -> anyhow::Result<()> {
    let total = env_u64("BENCH_INSTANCES", 10_000) as usize;
    let small = (total / 10).max(1);
    let window = Duration::from_secs(env_u64("BENCH_WINDOW_SECS", 20));
    let settle = RENEW + Duration::from_secs(1);
    let mut rows = Vec::new();
    let mut latency_rows = Vec::new();
    let mut notes = Vec::new();

    eprintln!("[1/5] idle registry (baseline)");
    let reg = start_registry("info").await?;
    let counts = Arc::new(Counts::default());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = sample(reg.pid, &counts, window).await?;
    rows.push(row("idle (baseline)", 0, &idle));
    let idle_latency = watch_latency(&reg.url, WATCH_CHANGES).await?;
    latency_rows.push(latency_row("idle registry", &idle_latency));

    eprintln!("[2/5] {small} instances renewing every 5 s");
    let stop = CancellationToken::new();
    let (first, took_small) = register(&reg.url, 0..small, None).await?;
    renew_forever(first, counts.clone(), stop.clone());
    tokio::time::sleep(settle).await;
    let s_small = sample(reg.pid, &counts, window).await?;
    rows.push(row(&format!("{small} instances"), small, &s_small));

    eprintln!("[3/5] {total} instances renewing every 5 s");
    let (rest, took_rest) = register(&reg.url, small..total, None).await?;
    let reg_rate = (total - small) as f64 / took_rest.as_secs_f64();
    renew_forever(rest, counts.clone(), stop.clone());
    tokio::time::sleep(settle).await;
    let s_total = sample(reg.pid, &counts, window).await?;
    rows.push(row(&format!("{total} instances"), total, &s_total));
    let loaded_latency = watch_latency(&reg.url, WATCH_CHANGES).await?;
    latency_rows.push(latency_row(
        &format!("{total} instances renewing"),
        &loaded_latency,
    ));
    let a = admin(&reg.url).await?;
    notes.push(format!(
        "At the end of this phase the registry held {} instances in {} applications; evictions {}, self-preservation active: {}, renewals answered 404: {}.",
        a["instances"], a["applications"], a["totals"]["evictions"], a["selfPreservation"]["active"], a["totals"]["renewalsUnknown"]
    ));
    notes.push(format!(
        "Registering: {small} instances in {:.2} s, then {} more in {:.2} s ({reg_rate:.0} registrations/s, 256 concurrent clients, each registration a new connection).",
        took_small.as_secs_f64(),
        total - small,
        took_rest.as_secs_f64()
    ));
    stop.cancel();
    drop(reg);
    tokio::time::sleep(Duration::from_secs(1)).await;

    eprintln!("[4/5] {total} instances, RUST_LOG=warn");
    let reg = start_registry("warn").await?;
    let counts = Arc::new(Counts::default());
    let stop = CancellationToken::new();
    let (all, _) = register(&reg.url, 0..total, None).await?;
    renew_forever(all, counts.clone(), stop.clone());
    tokio::time::sleep(settle).await;
    let s_quiet = sample(reg.pid, &counts, window).await?;
    rows.push(row(
        &format!("{total} instances, `RUST_LOG=warn`"),
        total,
        &s_quiet,
    ));
    stop.cancel();
    drop(reg);
    tokio::time::sleep(Duration::from_secs(1)).await;

    eprintln!("[5/5] {total} instances over 64 shared connections");
    let reg = start_registry("info").await?;
    let counts = Arc::new(Counts::default());
    let stop = CancellationToken::new();
    let pooled = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(10))
        .build()?;
    let (all, _) = register(&reg.url, 0..total, Some(&pooled)).await?;
    renew_forever(all, counts.clone(), stop.clone());
    tokio::time::sleep(settle).await;
    let s_pooled = sample(reg.pid, &counts, window).await?;
    rows.push(row(
        &format!("{total} instances over one client's pool of keep-alive connections (registry data without 10,000 client connections)"),
        total,
        &s_pooled,
    ));
    stop.cancel();
    drop(reg);

    let cpu = testkit::benchmarks::cpu_model().unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(testkit::workspace_root())
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let date = chrono::Utc::now().format("%Y-%m-%d");

    let section = format!(
        "## discovery: the registry under {total} renewing instances\n\n\
Run: `cargo bench -p discovery-server --bench registry_load` (release build, about 4 minutes, loopback only; \
rewrites this section). Measured {date} on {cpu}, {cores} cores, commit `{commit}`.\n\n\
The registry is the release `discovery-server` binary as its own process with default flags (`RUST_LOG=info`, \
so every request is access-logged to a file); CPU share and RSS are read from `/proc/<pid>` of that process over \
a {win} s window in steady state. Each simulated instance has its own HTTP client and keep-alive connection and \
renews every 5 s, spread evenly over the interval. The load generator shares the same cores.\n\n\
| registry state | instances | renewals/s ok / failed | registry CPU (% of one core) | RSS | peak RSS |\n\
|---|---|---|---|---|---|\n{rows}\n\n\
Time from sending a change (a registration or a cancellation) to a client long-polling `/eureka/watch` having it \
(includes the change request itself):\n\n\
| registry state | changes | p50 | p99 | max |\n|---|---|---|---|---|\n{lat}\n\n{notes}\n",
        win = window.as_secs(),
        rows = rows.join("\n"),
        lat = latency_rows.join("\n"),
        notes = notes.join(" "),
    );
    println!("{section}");
    if env_u64("BENCH_WRITE", 1) != 0 {
        let path = testkit::benchmarks::write_section("discovery", &section)
            .context("writing BENCHMARKS.md")?;
        eprintln!("wrote the discovery section of {}", path.display());
    }
    Ok(())
}
