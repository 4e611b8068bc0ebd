//! `platform` benchmark; writes the `platform` section of BENCHMARKS.md.
//!
//! ```text
//! cargo bench -p e2e --bench platform
//! ```
//!
//! Drives the release `platform` binary (as the end-to-end test does: a copy of the dev stack
//! under its own name, the gateway on a free loopback port) and measures, in one run:
//! - `platform up` to all healthy, wall clock from starting the command to its exit: cold (every
//!   image `platform` built removed first, so `up` builds them, MariaDB's base by debootstrap
//!   with the machine's package cache kept), warm with fresh volumes (the median of
//!   `BENCH_WARM_RUNS`), warm with the volumes of the previous run, and on a stack already up;
//! - two baselines of the same kind: one container of the discovery-server image created and
//!   started through the engine API until its health probe passes, and `platform up
//!   discovery-server` (network and that one service);
//! - each container's memory from the Docker stats API (RSS and `docker stats`' usage), idle
//!   and under load: three `platform smoke` runs while `BENCH_LOAD_ORDERS` orders go through the
//!   gateway, four at a time, on loopback, for at most `BENCH_LOAD_SECS`; MariaDB and the broker, measured
//!   in the same run, are the non-Rust baselines. The stats API's RSS is cross-checked with
//!   VmRSS in `/proc` of each container's main process.
//!
//! Bounded: 5 to 16 minutes on 2 cores with the cold run, depending on what else runs.
//! Knobs (environment): `BENCH_COLD=0` skips the cold run (it removes every `platform.image`
//! image that no container uses; images in use stay, and the report says so), `BENCH_WARM_RUNS`
//! (default 5), `BENCH_LOAD_ORDERS` (default 5000), `BENCH_LOAD_SECS` (default 30),
//! `BENCH_WRITE=0` to print without writing BENCHMARKS.md.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bollard::models::{ContainerCreateBody, HealthConfig, HealthStatusEnum};
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use e2e::docker::{self, INSTANCE_LABEL, Memory, SERVICE_LABEL, STACK_LABEL};
use e2e::{Platform, Run, TestStack};

/// A cold `up` builds every image; MariaDB's base alone is minutes.
const COLD_LIMIT: Duration = Duration::from_secs(900);
const WARM_LIMIT: Duration = Duration::from_secs(300);
const COMMAND_LIMIT: Duration = Duration::from_secs(180);
/// The Rust services the memory goal is about (the stand-ins are reported, not counted).
const RUST_SERVICES: [&str; 6] = [
    "api-gateway",
    "discovery-server",
    "inventory-service",
    "notification-service",
    "order-service",
    "product-service",
];
/// How many `platform smoke` runs the load includes.
const SMOKE_RUNS: usize = 3;
/// Concurrent order placers during the load.
const LOAD_CONCURRENCY: u64 = 4;
/// The goal for a warm `up`.
const WARM_GOAL_SECS: f64 = 15.0;
/// The goal for the six Rust services together, idle.
const MEMORY_GOAL_MB: f64 = 100.0;
const MIB: f64 = 1024.0 * 1024.0;

use testkit::benchmarks::{self, env_u64};

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

/// Times of one kind of run.
#[derive(Debug, Default)]
struct Timings(Vec<f64>);

impl Timings {
    fn row(&self, what: &str) -> String {
        let Some(median) = self.median() else {
            return format!("| {what} | 0 | not measured | | |");
        };
        let min = self.0.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.0.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!(
            "| {what} | {} | {median:.1} s | {min:.1} s | {max:.1} s |",
            self.0.len()
        )
    }

    fn median(&self) -> Option<f64> {
        benchmarks::median(self.0.iter().copied())
    }
}

async fn run() -> anyhow::Result<()> {
    let platform = Platform::locate()?;
    let docker = docker::connect().await?;
    e2e::stack::remove_orphans(&platform, &docker).await?;
    let mut stack = TestStack::dev_copy(&platform, "bench")?;
    let s = stack.arg().to_string();
    let warm_runs = env_u64("BENCH_WARM_RUNS", 5).max(1);
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!("bench: stack {} ({})", stack.name, stack.file.display());
    let mut notes = Vec::new();

    // ---- cold: no image of ours, then `up` builds every one
    let mut cold = Timings::default();
    let mut cold_builds = Vec::new();
    if env_u64("BENCH_COLD", 1) != 0 {
        let left = docker::remove_platform_images(&docker).await?;
        if !left.is_empty() {
            let names: Vec<String> = left
                .iter()
                .map(|i| i.tags.first().cloned().unwrap_or_else(|| i.id.clone()))
                .collect();
            notes.push(format!(
                "The cold run was not fully cold: {} image(s) in use by other containers stayed ({}).",
                left.len(),
                names.join(", ")
            ));
        }
        eprintln!("bench: cold up (every image built)");
        let up = platform
            .run(&["up", "--stack", &s], COLD_LIMIT)
            .await?
            .success()?;
        cold.0.push(up.seconds());
        cold_builds = built_lines(&up);
        down(&platform, &s, true).await?;
    } else {
        platform
            .run(&["build", "--no-cargo", "--stack", &s], COLD_LIMIT)
            .await?
            .success()?;
        notes.push("The cold run was skipped (`BENCH_COLD=0`).".to_string());
    }

    // ---- baselines: one container of the registry image, through the engine and through `up`
    let mut engine_one = Timings::default();
    let mut lone_registry = None;
    for i in 0..warm_runs {
        let (secs, memory) = engine_baseline(&docker, &stack.name, i).await?;
        engine_one.0.push(secs);
        lone_registry = Some(memory);
    }
    let mut up_one = Timings::default();
    for _ in 0..warm_runs {
        let up = platform
            .run(&["up", "discovery-server", "--stack", &s], WARM_LIMIT)
            .await?
            .success()?;
        up_one.0.push(up.seconds());
        down(&platform, &s, true).await?;
    }

    // ---- warm: fresh volumes each run, then kept volumes, then a no-op `up`
    let mut warm = Timings::default();
    let mut waves: Vec<(f64, String)> = Vec::new();
    for i in 0..warm_runs {
        eprintln!("bench: warm up {}/{warm_runs}", i + 1);
        let up = platform
            .run(&["up", "--stack", &s], WARM_LIMIT)
            .await?
            .success()?;
        warm.0.push(up.seconds());
        waves.push((up.seconds(), ready_lines(&up, stack.services())));
        down(&platform, &s, i + 1 < warm_runs).await?;
    }
    let mut kept = Timings::default();
    for i in 0..warm_runs.min(3) {
        eprintln!("bench: up with kept volumes {}", i + 1);
        let up = platform
            .run(&["up", "--stack", &s], WARM_LIMIT)
            .await?
            .success()?;
        kept.0.push(up.seconds());
        if i + 1 < warm_runs.min(3) {
            down(&platform, &s, false).await?;
        }
    }
    let mut again = Timings::default();
    let up = platform
        .run(&["up", "--stack", &s], WARM_LIMIT)
        .await?
        .success()?;
    again.0.push(up.seconds());

    // ---- memory: idle, then under load
    eprintln!("bench: settling 20 s before the idle samples");
    tokio::time::sleep(Duration::from_secs(20)).await;
    let containers: Vec<(String, String)> = docker::owned(&docker, &stack.name)
        .await?
        .containers
        .into_iter()
        .map(|c| (c.service, c.name))
        .collect();
    let mut idle_samples: BTreeMap<String, Vec<Memory>> = BTreeMap::new();
    for _ in 0..5 {
        for (service, m) in sample(&docker, &containers).await? {
            idle_samples.entry(service).or_default().push(m);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let idle: BTreeMap<String, Memory> = idle_samples
        .into_iter()
        .map(|(k, mut v)| {
            v.sort_by_key(|m| m.rss_bytes);
            (k, v[v.len() / 2])
        })
        .collect();
    let cross_check = cross_check(&docker, &containers).await;
    let load = load(&platform, &docker, &stack, &containers).await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = sample(&docker, &containers).await?;
    let limits = memory_limits(&stack)?;
    down(&platform, &s, true).await?;
    stack.disarm();

    // ---- the section
    let section = render(Report {
        warm_runs,
        engine_one,
        up_one,
        warm,
        kept,
        again,
        cold,
        cold_builds,
        waves,
        idle,
        load,
        after,
        lone_registry,
        cross_check,
        limits,
        notes,
        load_before,
        docker_version: docker
            .version()
            .await
            .ok()
            .and_then(|v| v.version)
            .unwrap_or_default(),
    });
    println!("{section}");
    if env_u64("BENCH_WRITE", 1) != 0 {
        let path = testkit::benchmarks::write_section("platform", &section)
            .context("writing BENCHMARKS.md")?;
        eprintln!("wrote the platform section of {}", path.display());
    }
    Ok(())
}

/// `platform down` (with `--volumes` when `volumes`).
async fn down(platform: &Platform, stack: &str, volumes: bool) -> anyhow::Result<Run> {
    let mut args = vec!["down", "--stack", stack];
    if volumes {
        args.push("--volumes");
    }
    platform.run(&args, COMMAND_LIMIT).await?.success()
}

/// `built <tag> (<secs>s)` lines `up` printed while building images.
fn built_lines(up: &Run) -> Vec<String> {
    up.stderr
        .lines()
        .filter_map(|l| l.strip_prefix("built "))
        .map(str::to_string)
        .collect()
}

/// The `<service>: <ready> (<secs>s)` lines `up` printed, in order, joined.
fn ready_lines(up: &Run, services: &[String]) -> String {
    up.stderr
        .lines()
        .filter(|l| {
            services.iter().any(|s| {
                l.strip_prefix(s.as_str())
                    .is_some_and(|r| r.starts_with(": "))
            })
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// One container of the discovery-server image, labelled with the bench stack (so `down`
/// removes it if the bench dies), created and started through the engine API with the stack's
/// probe settings; returns the seconds to healthy and its memory once healthy.
async fn engine_baseline(
    docker: &bollard::Docker,
    stack: &str,
    n: u64,
) -> anyhow::Result<(f64, Memory)> {
    let image = docker::platform_images(docker)
        .await?
        .into_iter()
        .find(|i| i.name == "discovery-server" && !i.tags.is_empty())
        .context("no discovery-server image (the cold run or `platform build` makes it)")?;
    let name = format!("platform-{stack}-baseline-{n}");
    let body = ContainerCreateBody {
        image: Some(image.tags[0].clone()),
        env: Some(vec!["LOG_FORMAT=json".to_string()]),
        labels: Some(HashMap::from([
            (STACK_LABEL.to_string(), stack.to_string()),
            (SERVICE_LABEL.to_string(), "baseline".to_string()),
            (INSTANCE_LABEL.to_string(), n.to_string()),
        ])),
        healthcheck: Some(HealthConfig {
            test: Some(vec![
                "CMD".to_string(),
                "/app/discovery-server".to_string(),
                "--probe".to_string(),
            ]),
            interval: Some(500_000_000),
            timeout: Some(3_000_000_000),
            retries: Some(60),
            start_period: Some(0),
            start_interval: None,
        }),
        ..Default::default()
    };
    let started = Instant::now();
    docker
        .create_container(
            Some(CreateContainerOptionsBuilder::new().name(&name).build()),
            body,
        )
        .await
        .context("create the baseline container")?;
    docker
        .start_container(&name, None)
        .await
        .context("start the baseline container")?;
    let secs = loop {
        let inspect = docker.inspect_container(&name, None).await?;
        let health = inspect.state.and_then(|s| s.health).and_then(|h| h.status);
        if health == Some(HealthStatusEnum::HEALTHY) {
            break started.elapsed().as_secs_f64();
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the baseline container did not get healthy in 60 s ({health:?})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let memory = docker::memory(docker, &name).await?;
    docker
        .remove_container(
            &name,
            Some(RemoveContainerOptionsBuilder::new().force(true).build()),
        )
        .await
        .context("remove the baseline container")?;
    Ok((secs, memory))
}

/// One memory sample of every container, by service.
async fn sample(
    docker: &bollard::Docker,
    containers: &[(String, String)],
) -> anyhow::Result<BTreeMap<String, Memory>> {
    let reads = containers
        .iter()
        .map(|(_, name)| docker::memory(docker, name));
    let mut out = BTreeMap::new();
    for ((service, _), m) in containers
        .iter()
        .zip(futures::future::join_all(reads).await)
    {
        out.insert(service.clone(), m?);
    }
    Ok(out)
}

/// What the load did and the peak memory while it ran.
#[derive(Debug, Default)]
struct Load {
    orders_ok: u64,
    orders_failed: u64,
    seconds: f64,
    smokes_passed: usize,
    smokes: usize,
    peak: BTreeMap<String, u64>,
}

/// Three smoke runs while orders go through the gateway, sampling memory every second.
async fn load(
    platform: &Platform,
    docker: &bollard::Docker,
    stack: &TestStack,
    containers: &[(String, String)],
) -> anyhow::Result<Load> {
    let s = stack.arg();
    let orders = env_u64("BENCH_LOAD_ORDERS", 5000);
    let limit = Duration::from_secs(env_u64("BENCH_LOAD_SECS", 30));
    let sku = format!("{}-load", stack.name);
    let shop = e2e::shop::stocked(platform, stack, &sku, orders + 10, COMMAND_LIMIT).await?;

    let next = AtomicU64::new(0);
    let (ok, failed) = (AtomicU64::new(0), AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let deadline = started + limit;
    let placers = (0..LOAD_CONCURRENCY).map(|_| async {
        while next.fetch_add(1, Ordering::Relaxed) < orders && Instant::now() < deadline {
            match shop.place_order(&sku).await {
                Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                Err(_) => failed.fetch_add(1, Ordering::Relaxed),
            };
        }
    });
    let smokes = async {
        let mut passed = 0;
        for _ in 0..SMOKE_RUNS {
            if let Ok(run) = platform
                .run(&["smoke", "--stack", s, "--timeout", "60s"], COMMAND_LIMIT)
                .await
                && run.code == Some(0)
            {
                passed += 1;
            }
        }
        passed
    };
    let work = async {
        let (_, passed) = tokio::join!(futures::future::join_all(placers), smokes);
        done.store(true, Ordering::Relaxed);
        passed
    };
    let sampler = async {
        let mut peak: BTreeMap<String, u64> = BTreeMap::new();
        while !done.load(Ordering::Relaxed) {
            if let Ok(now) = sample(docker, containers).await {
                for (service, m) in now {
                    let p = peak.entry(service).or_default();
                    *p = (*p).max(m.rss_bytes);
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        peak
    };
    let (smokes_passed, peak) = tokio::join!(work, sampler);
    Ok(Load {
        orders_ok: ok.load(Ordering::Relaxed),
        orders_failed: failed.load(Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
        smokes_passed,
        smokes: SMOKE_RUNS,
        peak,
    })
}

/// Compares the stats API's RSS with VmRSS of each container's main process in `/proc`.
async fn cross_check(
    docker: &bollard::Docker,
    containers: &[(String, String)],
) -> Result<String, String> {
    let mut worst: Option<(f64, String)> = None;
    for (service, name) in containers {
        let proc = docker::proc_rss(docker, name)
            .await
            .map_err(|e| format!("{e:#}"))?;
        let stats = docker::memory(docker, name)
            .await
            .map_err(|e| format!("{e:#}"))?;
        let diff = (proc as f64 - stats.rss_bytes as f64).abs() / MIB;
        if worst.as_ref().is_none_or(|(w, _)| diff > *w) {
            worst = Some((diff, service.clone()));
        }
    }
    let (diff, service) = worst.ok_or("no containers")?;
    Ok(format!(
        "Cross-check: for every container the stats API's RSS is within {diff:.1} MiB of VmRSS of its main process in `/proc` (largest gap: {service})."
    ))
}

/// `resources.memory` of each service, as written in the stack file.
fn memory_limits(stack: &TestStack) -> anyhow::Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(&stack.file)?;
    let doc: toml::Table = text.parse()?;
    Ok(doc
        .get("services")
        .and_then(|s| s.as_table())
        .into_iter()
        .flatten()
        .filter_map(|(name, s)| {
            let m = s.get("resources")?.get("memory")?.as_str()?;
            Some((name.clone(), m.to_string()))
        })
        .collect())
}

struct Report {
    warm_runs: u64,
    engine_one: Timings,
    up_one: Timings,
    warm: Timings,
    kept: Timings,
    again: Timings,
    cold: Timings,
    cold_builds: Vec<String>,
    waves: Vec<(f64, String)>,
    idle: BTreeMap<String, Memory>,
    load: Load,
    after: BTreeMap<String, Memory>,
    lone_registry: Option<Memory>,
    /// How far the stats API's RSS is from `/proc` VmRSS, or why it could not be compared.
    cross_check: Result<String, String>,
    limits: BTreeMap<String, String>,
    notes: Vec<String>,
    load_before: String,
    docker_version: String,
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB)
}

fn render(r: Report) -> String {
    let date = chrono::Utc::now().format("%Y-%m-%d");
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=7", "HEAD"])
        .current_dir(testkit::workspace_root())
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let loadavg = r
        .load_before
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");

    let n = r.warm_runs;
    let rows = [
        r.engine_one.row(
            "baseline: one discovery-server container created and started through the engine API until its `--probe` health check passes (500 ms interval, as in the stack)",
        ),
        r.up_one
            .row("baseline: `platform up discovery-server` (network and that one service)"),
        r.warm.row(&format!(
            "`platform up`, whole dev stack (10 containers), warm images, fresh volumes (MariaDB initialises its data directory); {n} runs"
        )),
        r.kept
            .row("`platform up`, warm images, volumes kept from the previous run"),
        r.again
            .row("`platform up` on the running stack (converges: nothing to do)"),
        r.cold.row(
            "`platform up`, cold: every image `platform` built removed first, then built (MariaDB base by debootstrap; its package cache kept)",
        ),
    ];
    let warm_median = r.warm.median().unwrap_or(f64::NAN);
    let verdict = if warm_median <= WARM_GOAL_SECS {
        "met"
    } else {
        "not met"
    };
    let mut out = format!(
        "## platform: `up` time and container memory\n\n\
Run: `cargo bench -p e2e --bench platform` (Docker and the release build from install.sh; 5 to 16 minutes on 2 cores, depending on what else runs; rewrites this section; \
`BENCH_COLD=0` skips the cold run, which removes every image `platform` built that no container uses). \
Measured {date} on {cpu}, {cores} cores, Docker {dv}, commit `{commit}`; load average before the run {loadavg}.\n\n\
The stack is a copy of `stacks/dev.toml` under its own name (the gateway on a loopback port), driven through the release `platform` binary. \
Times are wall clock from starting the command to its exit, when every service is ready (healthy).\n\n\
### `platform up` to all healthy\n\n\
| what | runs | median | min | max |\n|---|---|---|---|---|\n{rows}\n\n\
- Warm `up` median {warm_median:.1} s against the goal of ≤ {WARM_GOAL_SECS:.0} s: {verdict}.\n",
        dv = r.docker_version,
        rows = rows.join("\n"),
    );
    if let Some((_, lines)) = r.waves.iter().min_by(|a, b| {
        (a.0 - warm_median)
            .abs()
            .total_cmp(&(b.0 - warm_median).abs())
    }) {
        out.push_str(&format!(
            "- Each service's wait in the warm run closest to the median, in the order `up` reported them (dependency waves): {lines}.\n"
        ));
    }
    if !r.cold_builds.is_empty() {
        out.push_str(&format!(
            "- The cold run's builds, as `up` showed them while building: {}.\n",
            r.cold_builds.join("; ")
        ));
    }
    for note in &r.notes {
        out.push_str(&format!("- {note}\n"));
    }

    out.push_str(
        "\n### Memory per container (Docker stats API)\n\n\
RSS is the resident memory of the container's processes from the stats API: anonymous memory plus mapped files (cgroup v1 `rss + mapped_file`, \
v2 `anon + file_mapped`), what `ps` calls RSS and the figure to set against a JVM's RSS; anonymous is the heap-and-stacks part alone; \
usage is what `docker stats` shows (usage minus inactive page cache). Idle: the median of five samples 2 s apart, 20 s after `up`. \
Under load: the peak of samples taken every second while the load ran; after: 5 s after it ended.\n\n\
| container | limit | idle RSS | idle anonymous | idle usage | peak RSS under load | RSS after load |\n|---|---|---|---|---|---|---|\n",
    );
    let mut rust_idle = 0u64;
    let mut rust_peak = 0u64;
    for (service, m) in &r.idle {
        let peak = r.load.peak.get(service).copied().unwrap_or(0);
        let after = r.after.get(service).map_or(0, |m| m.rss_bytes);
        let rust = RUST_SERVICES.contains(&service.as_str());
        if rust {
            rust_idle += m.rss_bytes;
            rust_peak += peak;
        }
        out.push_str(&format!(
            "| {service}{} | {} | {} | {} | {} | {} | {} |\n",
            if rust { " (Rust service)" } else { "" },
            r.limits.get(service).map_or("none", String::as_str),
            mib(m.rss_bytes),
            mib(m.anon_bytes),
            mib(m.usage_bytes),
            mib(peak),
            mib(after),
        ));
    }
    if let Some(m) = r.lone_registry {
        out.push_str(&format!(
            "| baseline: a lone discovery-server container (no stack, no clients), 3 s after healthy | none | {} | {} | {} | | |\n",
            mib(m.rss_bytes),
            mib(m.anon_bytes),
            mib(m.usage_bytes)
        ));
    }
    let rust_mb = rust_idle as f64 / 1e6;
    out.push_str(&format!(
        "\n- The six Rust services together, idle: {} ({rust_mb:.1} MB) against the goal of ≤ {MEMORY_GOAL_MB:.0} MB: {}. \
Peak under load: {} together. Anchor: a Spring Boot service is about 150–190 MB RSS each, 900–1,140 MB for six.\n",
        mib(rust_idle),
        if rust_mb <= MEMORY_GOAL_MB { "met" } else { "not met" },
        mib(rust_peak),
    ));
    match &r.cross_check {
        Ok(line) => out.push_str(&format!("- {line}\n")),
        Err(why) => out.push_str(&format!("- No cross-check with `/proc`: {why}.\n")),
    }
    out.push_str(&format!(
        "- Load: {}/{} `platform smoke` runs passed while {} orders went through the gateway ({LOAD_CONCURRENCY} at a time, one SKU, \
loopback; {} failed) in {:.1} s ({:.0} orders/s).\n",
        r.load.smokes_passed,
        r.load.smokes,
        r.load.orders_ok,
        r.load.orders_failed,
        r.load.seconds,
        r.load.orders_ok as f64 / r.load.seconds.max(0.001),
    ));
    out
}
