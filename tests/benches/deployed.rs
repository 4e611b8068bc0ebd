//! `deployed` benchmark: orders through the gateway of the dev stack as users deploy it, beside
//! the same release binaries as processes on loopback, in one run; writes the `deployed` section
//! of BENCHMARKS.md (issue 15).
//!
//! ```text
//! cargo bench -p e2e --bench deployed
//! ```
//!
//! 1. **Outside Docker** (the baseline): the release binaries the stack images, as processes on
//!    loopback (`testkit::loopback`): MariaDB and the broker (testkit), discovery-server,
//!    identity-provider (the dev realm), trace-collector, inventory-, product-, order- and
//!    notification-service and the api-gateway; JWT at the edge, every service sampling all
//!    traces (`TRACE_SAMPLE_RATIO=1.0`) into the collector, order prices checked against the
//!    catalogue; services log at `warn`.
//! 2. **Deployed**: a copy of `stacks/dev.toml` brought up by the release `platform` binary (its
//!    own stack name, the gateway on a free loopback port), the same load through the published
//!    port with a token from `platform token`.
//! 3. **Rounds**: both sides stay up together and take the load in turns, `BENCH_ROUNDS`
//!    (default 3) rounds, the side that goes first alternating (ABBA). The host's speed drifts
//!    over minutes (other work, CPU steal): two sides measured one after the other carried that
//!    drift into their ratio (0.72 to 0.87 between runs of the same commit). The ratio reported is
//!    the median of the rounds' ratios.
//! 4. **Idle**: after the last load has drained (`BENCH_DRAIN_SECS`, default 5), `BENCH_IDLE_SECS`
//!    (default 60: /proc counts in 10 ms ticks, so one tick is 0.017 % of a core in 60 s) with no
//!    requests, both sides read over the same window: CPU share of one core per process /
//!    container and of the Docker daemon's processes. The daemon's processes are also read for
//!    as long before the deployed stack is up: what they spend then (containerd's own timers,
//!    with no container at all) is not the stack's, and the stack's share is the difference.
//!
//! Load, the same for both: wrk with `BENCH_CONNS` (default 32) connections, `POST /api/order`
//! with alice's token, one unit of one of `BENCH_SKUS` (default 20) SKUs listed at 4.50 with a
//! billion in stock; `BENCH_WARMUP_SECS` (default 5) of warm-up, then `BENCH_SECS` (default 20)
//! measured, in each round.
//!
//! CPU per order: user + system time during the measured window divided by the orders accepted.
//! Outside Docker from `/proc/<pid>/stat` of each process; deployed from each container's cgroup
//! (its own file under `/sys/fs/cgroup`, where the daemon's layout is known, else the Docker stats
//! API: every process in the container, health-check execs included; a stats call costs the
//! daemon's processes CPU that the idle rows would count) and, for the Docker daemon's own processes (dockerd, containerd, the
//! containerd-shims, docker-proxy, fuse-overlayfs), `/proc` by name. A container's row is its main
//! process (`/proc`); what its cgroup used besides is the health checks' execs, one row for all.
//! A shim's exited children (runc for each exec, and the exec'd probe, counted in the execs' row)
//! show in its `cutime + cstime`: that minus the execs is the runc row. wrk's own CPU time comes
//! from the shell that ran it. The machine's busy time (`/proc/stat`) over the same window is the
//! cross-check: what it has beyond the rows is kernel work charged to no process (softirq of the
//! veth/bridge traffic, ...) and whatever else runs on the machine.
//!
//! Knobs: `BENCH_ROUNDS`, `BENCH_SECS`, `BENCH_CONNS`, `BENCH_WARMUP_SECS`, `BENCH_IDLE_SECS`, `BENCH_DRAIN_SECS`,
//! `BENCH_SKUS`, `BENCH_WRITE=0` (print only), `BENCH_ONLY=loopback|deployed` (one side only,
//! printed, never written), `BENCH_DOCKER_LOCK=<dir>` (taken with `mkdir` while the stack is up:
//! a shared machine's convention). Variants of the deployed stack, to measure one candidate cost
//! each (the report says which are set, and is written to the sub-section `deployed/<variant>`):
//! `BENCH_STACK_RUST_LOG` (RUST_LOG of every service container; the stack's default is the
//! services' `info`), `BENCH_DOCKER_HEALTH=<interval>` (the checks that the dev stack runs from
//! outside, `docker = false`, are run by Docker inside the containers instead, every
//! `<interval>`: what the stack's own checks used to cost), `BENCH_SAMPLE_RATIO` (both sides' `TRACE_SAMPLE_RATIO`, default 1.0).
//! `BENCH_BROKER` (`nisshi` or `tansu`: both sides run that broker instead of kafka-broker; the
//! stack copy's `kafka` service images it by its recipe, as the dev stack did before kafka-broker).
//! `BENCH_MARIADB_FLUSH=<0|1|2>` (the stack's MariaDB at that `innodb_flush_log_at_trx_commit`
//! instead of the stack file's 2; the baseline's testkit MariaDB runs at 2).
//! `BENCH_LOOPBACK_RUST_LOG` sets the baseline's services' RUST_LOG (default `warn`).
//!
//! Needs the release build (`./install.sh`, or `cargo build --workspace --release`), Docker and
//! wrk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bollard::Docker;
use e2e::shop::{PRICE, Shop};
use e2e::{Platform, TestStack};
use testkit::benchmarks::{self, Wrk, env_u64};
use testkit::{BrokerKind, loopback};

const COMMAND_LIMIT: Duration = Duration::from_secs(180);
const UP_LIMIT: Duration = Duration::from_secs(900);
/// Stock of each SKU: never the limit.
const STOCK: u64 = 1_000_000_000;

/// The Docker daemon's processes, by the start of their `comm` (15 characters at most).
const DAEMON: [&str; 6] = [
    "dockerd",
    "containerd",
    "containerd-shim",
    "docker-proxy",
    "fuse-overlayfs",
    "runc",
];

/// Row order of the tables: the stack's service names (the broker is `kafka` there), then wrk
/// and the daemon's rows.
const ROWS: [&str; 19] = [
    "api-gateway",
    "order-service",
    "inventory-service",
    "product-service",
    "notification-service",
    "discovery-server",
    "identity-provider",
    "trace-collector",
    "mariadb",
    "kafka",
    PROBES,
    "wrk",
    "dockerd",
    "containerd",
    "containerd-shim",
    SHIM_CHILDREN,
    "docker-proxy",
    "fuse-overlayfs",
    "runc",
];

/// The row of what ran in the containers besides their main process: the health checks' execs.
const PROBES: &str = "health-check execs (in the containers)";
/// The row of the shims' exited children, the execs in [`PROBES`] taken out: runc, mostly.
const SHIM_CHILDREN: &str = "runc (shims' exited children, execs excluded)";
/// Reading keys of a container's main process: this prefix and the service.
const MAIN: &str = "main:";

fn main() -> anyhow::Result<()> {
    e2e::measure::block_on(run())
}

#[derive(Debug, Clone)]
struct Knobs {
    secs: u64,
    rounds: usize,
    conns: u32,
    warmup: u64,
    idle: u64,
    drain: u64,
    skus: Vec<String>,
    ratio: f64,
    loopback_log: String,
    stack_log: Option<String>,
    /// `BENCH_DOCKER_HEALTH`: Docker runs the checks, every this often.
    docker_health: Option<String>,
    /// The broker of both sides; `None`: kafka-broker, the dev stack's.
    broker: Option<BrokerKind>,
    /// `BENCH_MARIADB_FLUSH`: the stack's MariaDB runs with this
    /// `innodb_flush_log_at_trx_commit` instead of the stack file's.
    mariadb_flush: Option<u8>,
}

impl Knobs {
    fn read() -> anyhow::Result<Knobs> {
        let text = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let ratio = match text("BENCH_SAMPLE_RATIO") {
            Some(v) => v.parse().context("BENCH_SAMPLE_RATIO")?,
            None => 1.0,
        };
        let mariadb_flush = match text("BENCH_MARIADB_FLUSH") {
            Some(v) => match v.trim() {
                "0" | "1" | "2" => v.trim().parse().ok(),
                _ => bail!("BENCH_MARIADB_FLUSH: `{v}` is not 0, 1 or 2"),
            },
            None => None,
        };
        Ok(Knobs {
            secs: env_u64("BENCH_SECS", 20).max(1),
            rounds: env_u64("BENCH_ROUNDS", 3).clamp(1, 20) as usize,
            conns: env_u64("BENCH_CONNS", 32).clamp(1, 10_000) as u32,
            warmup: env_u64("BENCH_WARMUP_SECS", 5),
            idle: env_u64("BENCH_IDLE_SECS", 60).max(1),
            drain: env_u64("BENCH_DRAIN_SECS", 5),
            skus: (0..env_u64("BENCH_SKUS", 20).max(1))
                .map(|i| format!("bench-sku-{i}"))
                .collect(),
            ratio,
            loopback_log: text("BENCH_LOOPBACK_RUST_LOG").unwrap_or_else(|| "warn".into()),
            stack_log: text("BENCH_STACK_RUST_LOG"),
            docker_health: text("BENCH_DOCKER_HEALTH"),
            broker: match text("BENCH_BROKER") {
                Some(v) => Some(BrokerKind::parse(&v).context("BENCH_BROKER")?)
                    .filter(|k| *k != BrokerKind::KafkaBroker),
                None => None,
            },
            mariadb_flush,
        })
    }

    /// The deployed stack's variant, `None` for the stack as it is (sampling 100 %).
    fn variant(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(log) = &self.stack_log {
            parts.push(format!("rust-log-{log}"));
        }
        if let Some(i) = &self.docker_health {
            parts.push(format!("docker-health-{i}"));
        }
        if (self.ratio - 1.0).abs() > 1e-9 {
            parts.push(format!("sampling-{}", self.ratio));
        }
        if let Some(b) = self.broker {
            parts.push(format!("broker-{}", b.name()));
        }
        if let Some(f) = self.mariadb_flush {
            parts.push(format!("mariadb-flush-{f}"));
        }
        if self.loopback_log != "warn" {
            parts.push(format!("loopback-log-{}", self.loopback_log));
        }
        (!parts.is_empty()).then(|| {
            parts
                .join("-")
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '.' {
                        c
                    } else {
                        '-'
                    }
                })
                .collect()
        })
    }
}

/// One measured load on one side.
#[derive(Debug, Clone, Default)]
struct Load {
    wrk: Wrk,
    /// The measured window, seconds.
    window: f64,
    /// CPU seconds per row during the window.
    cpu: BTreeMap<String, f64>,
    /// The machine's busy CPU seconds during the window.
    machine: f64,
}

impl Load {
    fn orders(&self) -> f64 {
        self.wrk.succeeded() as f64
    }

    fn total_ms(&self) -> f64 {
        self.cpu.values().sum::<f64>() * 1000.0 / self.orders()
    }
}

/// One side's figures: its loads (one per round) and its idle window.
#[derive(Debug, Clone, Default)]
struct Side {
    loads: Vec<Load>,
    /// CPU seconds per row, all loads together.
    cpu: BTreeMap<String, f64>,
    /// The machine's busy CPU seconds, all loads together.
    machine: f64,
    /// The loads' windows together, seconds.
    window: f64,
    /// CPU share of one core per row while idle (0.25 = 25 %).
    idle: BTreeMap<String, f64>,
    /// The machine's busy share of one core while idle.
    idle_machine: f64,
    idle_secs: f64,
    /// The Docker daemon's processes' share of one core per row before the stack was up
    /// (deployed side only): what the daemon costs without it.
    daemon_before: BTreeMap<String, f64>,
}

impl Side {
    fn push(&mut self, load: Load) {
        for (row, s) in &load.cpu {
            *self.cpu.entry(row.clone()).or_default() += s;
        }
        self.machine += load.machine;
        self.window += load.window;
        self.loads.push(load);
    }

    fn orders(&self) -> f64 {
        self.loads.iter().map(Load::orders).sum::<f64>().max(1.0)
    }

    /// Requests per second over all loads (wrk's own durations).
    fn rps(&self) -> f64 {
        let requests: u64 = self.loads.iter().map(|l| l.wrk.requests).sum();
        let secs: f64 = self
            .loads
            .iter()
            .filter(|l| l.wrk.rps > 0.0)
            .map(|l| l.wrk.requests as f64 / l.wrk.rps)
            .sum();
        requests as f64 / secs.max(1e-9)
    }

    fn errors(&self) -> u64 {
        self.loads.iter().map(|l| l.wrk.errors).sum()
    }

    /// The median over the loads of `f`.
    fn median(&self, f: impl Fn(&Load) -> f64) -> f64 {
        benchmarks::median(self.loads.iter().map(f)).unwrap_or(0.0)
    }

    /// Every row's CPU per order, ms.
    fn ms_per_order(&self, row: &str) -> Option<f64> {
        self.cpu.get(row).map(|s| s * 1000.0 / self.orders())
    }

    fn total_ms(&self) -> f64 {
        self.cpu.values().sum::<f64>() * 1000.0 / self.orders()
    }
}

/// Deployed / outside orders/s of each round, in round order.
fn round_ratios(outside: &Side, deployed: &Side) -> Vec<f64> {
    outside
        .loads
        .iter()
        .zip(&deployed.loads)
        .map(|(a, b)| b.wrk.rps / a.wrk.rps.max(1e-9))
        .collect()
}

async fn run() -> anyhow::Result<()> {
    let knobs = Knobs::read()?;
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let platform = Platform::locate()?;
    // The binaries `platform up` images: the same files for both sides.
    let bin_dir = platform
        .bin()
        .parent()
        .context("the platform binary has no directory")?
        .to_path_buf();
    let load_before = benchmarks::load_average().unwrap_or_default();
    let commit = git_commit();

    // Both sides are up together and take the load in turns, round after round: the host's
    // speed drifts over minutes (other work, CPU steal), and two sides measured one after the
    // other would carry that drift into their ratio.
    let mut targets = Vec::new();
    let mut daemon_before = Reading::new();
    if only.is_empty() || only == "loopback" {
        targets.push(outside_docker(&bin_dir, &knobs).await?);
    }
    if only.is_empty() || only == "deployed" {
        daemon_before = daemon_idle(&knobs).await;
        targets.push(deployed(&platform, &knobs).await?);
    }
    let mut sides = vec![Side::default(); targets.len()];
    if let Some(i) = targets
        .iter()
        .position(|t| matches!(t.kind, Kind::Deployed(_)))
    {
        sides[i].daemon_before = daemon_before;
    }
    let names: Vec<&str> = targets.iter().map(|t| t.name).collect();
    for round in 0..knobs.rounds {
        // ABBA: the side that goes first alternates, so neither always runs after the other.
        let mut order: Vec<usize> = (0..targets.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let load = load(&knobs, &targets[i]).await?;
            eprintln!(
                "round {}: {}: {:.0} orders/s, p50 {:.1} ms, p99 {:.1} ms, {} errors, {:.2} ms CPU/order",
                round + 1,
                targets[i].name,
                load.wrk.rps,
                load.wrk.p50_ms,
                load.wrk.p99_ms,
                load.wrk.errors,
                load.total_ms()
            );
            sides[i].push(load);
        }
    }
    tokio::time::sleep(Duration::from_secs(knobs.drain)).await;
    idle(&knobs, &targets, &mut sides).await?;
    for t in targets.drain(..) {
        t.stop().await;
    }
    for (side, name) in sides.iter().zip(names) {
        print_side(name, side);
    }
    let [outside, deployed] = &sides[..] else {
        return Ok(());
    };
    let load_after = benchmarks::load_average().unwrap_or_default();
    let report = report(
        &knobs,
        outside,
        deployed,
        &load_before,
        &load_after,
        &commit,
    );
    println!("{report}");
    if env_u64("BENCH_WRITE", 1) == 1 {
        let section = match knobs.variant() {
            Some(v) => format!("deployed/{v}"),
            None => "deployed".to_string(),
        };
        let path = benchmarks::write_section(&section, &report)?;
        eprintln!("wrote section {section} of {}", path.display());
    }
    Ok(())
}

/// A side that is up and ready for load.
struct Target {
    name: &'static str,
    url: String,
    /// wrk's order script with this side's token.
    script: PathBuf,
    kind: Kind,
    _dir: tempfile::TempDir,
}

/// What a side is made of.
#[allow(clippy::large_enum_variant)] // two values in all, one per side
enum Kind {
    Outside {
        pids: Vec<(String, u32)>,
        services: loopback::Services,
        infra: loopback::Infra,
    },
    Deployed(Deployed),
}

struct Deployed {
    docker: Docker,
    /// (service, container id)
    containers: Vec<(String, String)>,
    /// Each container's main process, to tell it from the health checks' execs.
    mains: Vec<(String, u32)>,
    /// Taken down when dropped.
    stack: TestStack,
    _lock: DockerLock,
}

impl Target {
    fn new(
        name: &'static str,
        url: String,
        token: &str,
        knobs: &Knobs,
        kind: Kind,
    ) -> anyhow::Result<Target> {
        let dir = tempfile::tempdir()?;
        let script = dir.path().join("order.lua");
        std::fs::write(&script, benchmarks::order_script(token, &knobs.skus, PRICE))?;
        Ok(Target {
            name,
            url,
            script,
            kind,
            _dir: dir,
        })
    }

    /// Cumulative CPU seconds per row, read at one instant.
    async fn read(&self) -> anyhow::Result<Reading> {
        match &self.kind {
            Kind::Outside { pids, .. } => Ok(process_cpu(pids)),
            Kind::Deployed(d) => {
                let mut cpu = container_cpu(&d.docker, &d.containers).await?;
                cpu.extend(process_cpu(&d.mains));
                cpu.extend(daemon_cpu());
                Ok(cpu)
            }
        }
    }

    async fn stop(self) {
        match self.kind {
            Kind::Outside {
                services, infra, ..
            } => {
                services.stop().await;
                drop(infra);
            }
            Kind::Deployed(d) => {
                // `platform down` when dropped; blocking, so off the runtime's threads.
                let Deployed { stack, _lock, .. } = d;
                let _ = tokio::task::spawn_blocking(move || drop(stack)).await;
                drop(_lock);
            }
        }
    }
}

/// The baseline: the release binaries as processes on loopback.
async fn outside_docker(bin_dir: &Path, knobs: &Knobs) -> anyhow::Result<Target> {
    eprintln!("outside Docker: starting MariaDB, registry, identity provider, collector...");
    let infra = loopback::Infra::start(bin_dir).await?;
    let options = loopback::Options {
        tag: "deployed".into(),
        sample_ratio: knobs.ratio,
        catalog: true,
        env: vec![("RUST_LOG".into(), knobs.loopback_log.clone())],
        broker: Some(knobs.broker.unwrap_or(BrokerKind::KafkaBroker)),
    };
    let services = loopback::Services::start(&infra, &options).await?;
    let http = reqwest::Client::new();
    let admin = loopback::token(&http, &infra.issuer, "admin").await?;
    services
        .stock(&http, &admin, &knobs.skus, PRICE, STOCK)
        .await?;
    let user = loopback::token(&http, &infra.issuer, "alice").await?;
    services
        .wait_for_orders(&http, &user, &knobs.skus[0], PRICE)
        .await?;
    let mut pids: Vec<(String, u32)> = infra.pids();
    pids.extend(services.pids());
    let pids: Vec<(String, u32)> = pids
        .into_iter()
        .map(|(name, pid)| {
            let row = match name.as_str() {
                "MariaDB" => "mariadb".to_string(),
                "broker" => "kafka".to_string(),
                _ => name,
            };
            (row, pid)
        })
        .collect();
    let url = format!("{}/api/order", services.gateway());
    Target::new(
        "outside Docker",
        url,
        &user,
        knobs,
        Kind::Outside {
            pids,
            services,
            infra,
        },
    )
}

/// The deployed side: a copy of the dev stack through the release `platform`.
async fn deployed(platform: &Platform, knobs: &Knobs) -> anyhow::Result<Target> {
    let lock = DockerLock::take()?;
    let stack = TestStack::dev_copy(platform, "dep")?;
    edit_stack(&stack.file, knobs)?;
    let s = stack.arg().to_string();
    let up = Instant::now();
    platform
        .run(&["up", "--stack", &s], UP_LIMIT)
        .await?
        .success()?;
    eprintln!("deployed: up in {:.0} s", up.elapsed().as_secs_f64());

    // Catalogue and stock as the admin, the load as alice.
    e2e::shop::stocked_all(platform, &stack, &knobs.skus, STOCK, COMMAND_LIMIT).await?;
    let user = e2e::shop::token(platform, &stack, &["--user", "alice"], COMMAND_LIMIT).await?;
    let alice = Shop::new(&stack.gateway_url(), &user)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = alice.place_order(&knobs.skus[0]).await {
        if Instant::now() > deadline {
            return Err(e.context("no order accepted through the deployed gateway in 30 s"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let docker = e2e::docker::connect().await?;
    let containers: Vec<(String, String)> = e2e::docker::owned(&docker, &stack.name)
        .await?
        .containers
        .into_iter()
        .map(|c| (c.service, c.id))
        .collect();
    let mut mains = Vec::new();
    for (service, id) in &containers {
        let pid = docker
            .inspect_container(id, None)
            .await?
            .state
            .and_then(|s| s.pid)
            .filter(|p| *p > 0)
            .with_context(|| format!("{service} has no process"))?;
        mains.push((format!("{MAIN}{service}"), pid as u32));
    }
    let url = format!("{}/api/order", stack.gateway_url());
    Target::new(
        "deployed",
        url,
        &user,
        knobs,
        Kind::Deployed(Deployed {
            docker,
            containers,
            mains,
            stack,
            _lock: lock,
        }),
    )
}

/// Cumulative CPU seconds per row, read at one instant.
type Reading = BTreeMap<String, f64>;

/// Warm-up, then the measured load, with the side's CPU read around it.
async fn load(knobs: &Knobs, target: &Target) -> anyhow::Result<Load> {
    let (script, url) = (&target.script, &target.url);
    if knobs.warmup > 0 {
        benchmarks::wrk(script, url, knobs.conns, &format!("{}s", knobs.warmup)).await?;
    }
    let (before, machine0, t0) = (target.read().await?, machine_busy()?, Instant::now());
    let wrk = benchmarks::wrk(script, url, knobs.conns, &format!("{}s", knobs.secs)).await?;
    let (after, machine1, window) = (target.read().await?, machine_busy()?, t0.elapsed());
    let mut cpu = split_execs(delta(&before, &after));
    cpu.insert("wrk".into(), wrk.cpu_seconds);
    Ok(Load {
        wrk,
        window: window.as_secs_f64(),
        cpu,
        machine: machine1 - machine0,
    })
}

/// The idle window, every side's CPU read around the same one (the machine's busy time is then
/// that of all sides together).
async fn idle(knobs: &Knobs, targets: &[Target], sides: &mut [Side]) -> anyhow::Result<()> {
    let mut before = Vec::new();
    for t in targets {
        before.push(t.read().await?);
    }
    let (machine0, t0) = (machine_busy()?, Instant::now());
    tokio::time::sleep(Duration::from_secs(knobs.idle)).await;
    let mut after = Vec::new();
    for t in targets {
        after.push(t.read().await?);
    }
    let (machine1, secs) = (machine_busy()?, t0.elapsed().as_secs_f64());
    for ((side, b), a) in sides.iter_mut().zip(&before).zip(&after) {
        side.idle = split_execs(per_second(delta(b, a), secs));
        side.idle_machine = (machine1 - machine0) / secs;
        side.idle_secs = secs;
    }
    Ok(())
}

fn machine_busy() -> anyhow::Result<f64> {
    benchmarks::machine_busy_seconds().context("reading /proc/stat")
}

/// `after - before` per row (rows only in `after` count whole).
fn delta(before: &Reading, after: &Reading) -> Reading {
    after
        .iter()
        .map(|(k, a)| {
            (
                k.clone(),
                (a - before.get(k).copied().unwrap_or(0.0)).max(0.0),
            )
        })
        .collect()
}

/// Every row of `r`, seconds of CPU over `secs`, as a share of one core.
fn per_second(r: Reading, secs: f64) -> Reading {
    r.into_iter().map(|(k, v)| (k, v / secs)).collect()
}

/// A container's row becomes its main process's time; what its cgroup used besides (the health
/// checks' execs) goes to [`PROBES`], and is taken out of [`SHIM_CHILDREN`] (the shims reap the
/// execs, so their time is in both). No change without main-process rows (outside Docker).
fn split_execs(mut r: Reading) -> Reading {
    let mains: Vec<String> = r.keys().filter(|k| k.starts_with(MAIN)).cloned().collect();
    if mains.is_empty() {
        return r;
    }
    let mut execs = 0.0;
    for key in mains {
        let main = r.remove(&key).unwrap_or(0.0);
        let service = &key[MAIN.len()..];
        if let Some(cgroup) = r.get_mut(service) {
            execs += (*cgroup - main).max(0.0);
            *cgroup = main;
        }
    }
    r.insert(PROBES.to_string(), execs);
    if let Some(children) = r.get_mut(SHIM_CHILDREN) {
        *children = (*children - execs).max(0.0);
    }
    r
}

/// utime + stime of each process, summed per row.
fn process_cpu(pids: &[(String, u32)]) -> Reading {
    let mut out = Reading::new();
    for (row, pid) in pids {
        if let Some(s) = benchmarks::cpu_seconds(*pid) {
            *out.entry(row.clone()).or_default() += s;
        }
    }
    out
}

/// Each container's CPU seconds so far (its cgroup's usage, from the stats API), per service.
async fn container_cpu(
    docker: &Docker,
    containers: &[(String, String)],
) -> anyhow::Result<Reading> {
    let reads = containers.iter().map(|(service, id)| async move {
        let s = e2e::docker::cpu_seconds(docker, id)
            .await
            .with_context(|| format!("CPU of {service}"))?;
        anyhow::Ok((service.clone(), s))
    });
    let mut out = Reading::new();
    for r in futures::future::join_all(reads).await {
        let (service, s) = r?;
        *out.entry(service).or_default() += s;
    }
    Ok(out)
}

/// The Docker daemon's processes' CPU seconds so far, per [`DAEMON`] name (their own time), and
/// the shims' exited children (`cutime + cstime`) as their own row.
fn daemon_cpu() -> Reading {
    let mut out = Reading::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Some((comm, own, children)) = proc_times(pid) else {
            continue;
        };
        let Some(row) = DAEMON.iter().find(|d| comm.starts_with(**d)) else {
            continue;
        };
        // `containerd` is also the start of `containerd-shim`: the longest match wins.
        let row = if comm.starts_with("containerd-shim") {
            "containerd-shim"
        } else {
            row
        };
        *out.entry(row.to_string()).or_default() += own;
        if row == "containerd-shim" {
            *out.entry(SHIM_CHILDREN.to_string()).or_default() += children;
        }
    }
    out
}

/// `comm`, own CPU seconds (utime + stime) and waited-for children's (cutime + cstime) of `pid`.
fn proc_times(pid: u32) -> Option<(String, f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let fields: Vec<f64> = stat
        .get(close + 2..)?
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    let tick = |i: usize| fields.get(i).copied().unwrap_or(0.0) / 100.0;
    Some((comm, tick(11) + tick(12), tick(13) + tick(14)))
}

/// The knobs' edits of the stack copy.
fn edit_stack(file: &Path, knobs: &Knobs) -> anyhow::Result<()> {
    let mut text = std::fs::read_to_string(file)?;
    if let Some(interval) = &knobs.docker_health {
        let from = "docker = false, interval = \"10s\"";
        if !text.contains(from) {
            bail!("stacks/dev.toml has no `{from}` health checks any more");
        }
        text = text.replace(from, &format!("interval = \"{interval}\""));
    }
    if let Some(broker) = knobs.broker {
        text = with_broker(&text, broker)?;
    }
    if let Some(flush) = knobs.mariadb_flush {
        let from = "\"--innodb-flush-log-at-trx-commit=2\"";
        if !text.contains(from) {
            bail!("stacks/dev.toml's MariaDB no longer has `{from}`");
        }
        text = text.replace(
            from,
            &format!("\"--innodb-flush-log-at-trx-commit={flush}\""),
        );
    }
    let mut env = Vec::new();
    if let Some(log) = &knobs.stack_log {
        env.push(format!("RUST_LOG = \"{log}\""));
    }
    if (knobs.ratio - 1.0).abs() > 1e-9 {
        env.push(format!("TRACE_SAMPLE_RATIO = \"{}\"", knobs.ratio));
    }
    if !env.is_empty() {
        // Every Rust service of the stack logs JSON: its env table has this line.
        let anchor = "LOG_FORMAT = \"json\"";
        if !text.contains(anchor) {
            bail!("stacks/dev.toml has no `{anchor}` lines any more");
        }
        text = text.replace(anchor, &format!("{anchor}\n{}", env.join("\n")));
    }
    std::fs::write(file, text)?;
    Ok(())
}

/// The stack text with its `kafka` service running `broker` (nisshi or tansu, imaged by their
/// `recipe`, as the dev stack ran them before kafka-broker) instead of kafka-broker.
fn with_broker(text: &str, broker: BrokerKind) -> anyhow::Result<String> {
    let build = "build = { binary = \"kafka-broker\" }";
    let env = "[services.kafka.env]";
    if !text.contains(build) || !text.contains(env) {
        bail!("stacks/dev.toml's kafka service no longer has `{build}` and `{env}`");
    }
    Ok(text
        .replacen(
            build,
            &format!(
                "build = {{ recipe = \"{}\" }}\ncommand = [\"broker\"]",
                broker.name()
            ),
            1,
        )
        .replacen(
            env,
            &format!(
                "{env}\nLISTENER_URL = \"tcp://0.0.0.0:${{self.port}}\"\n\
                 ADVERTISED_LISTENER_URL = \"tcp://${{self.host}}:${{self.port}}\"\n\
                 STORAGE_ENGINE = \"sqlite://{}.db\"",
                broker.name()
            ),
            1,
        ))
}

/// `mkdir $BENCH_DOCKER_LOCK` (polled every 10 s) while the stack is up; removed when dropped.
struct DockerLock(Option<PathBuf>);

impl DockerLock {
    fn take() -> anyhow::Result<DockerLock> {
        let Some(dir) = std::env::var_os("BENCH_DOCKER_LOCK").filter(|v| !v.is_empty()) else {
            return Ok(DockerLock(None));
        };
        let dir = PathBuf::from(dir);
        let mut said = false;
        loop {
            match std::fs::create_dir(&dir) {
                Ok(()) => return Ok(DockerLock(Some(dir))),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if !said {
                        eprintln!("waiting for the Docker lock {}...", dir.display());
                        said = true;
                    }
                    std::thread::sleep(Duration::from_secs(10));
                }
                Err(e) => return Err(e).with_context(|| format!("mkdir {}", dir.display())),
            }
        }
    }
}

impl Drop for DockerLock {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(testkit::workspace_root())
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn print_side(name: &str, side: &Side) {
    eprintln!(
        "{name}, {} rounds: {:.0} orders/s, median p50 {:.1} ms, median p99 {:.1} ms, {} errors, {:.2} ms CPU/order (machine {:.2})",
        side.loads.len(),
        side.rps(),
        side.median(|l| l.wrk.p50_ms),
        side.median(|l| l.wrk.p99_ms),
        side.errors(),
        side.total_ms(),
        side.machine * 1000.0 / side.orders()
    );
    for (row, s) in &side.cpu {
        eprintln!("  {row}: {:.3} ms/order", s * 1000.0 / side.orders());
    }
    eprintln!(
        "{name} idle: {:.2} % of a core (machine {:.2} %)",
        side.idle.values().sum::<f64>() * 100.0,
        side.idle_machine * 100.0,
    );
    if !side.daemon_before.is_empty() {
        eprintln!(
            "  the daemon's processes before the stack was up: {:.2} %",
            side.daemon_before.values().sum::<f64>() * 100.0
        );
    }
    for (row, s) in &side.idle {
        eprintln!("  {row}: {:.2} %", s * 100.0);
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.2}"))
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{:.2} %", v * 100.0))
}

fn rows_of(a: &Side, b: &Side) -> Vec<String> {
    let mut rows: Vec<String> = ROWS.iter().map(|r| r.to_string()).collect();
    for k in a.cpu.keys().chain(b.cpu.keys()).chain(b.idle.keys()) {
        if !rows.contains(k) {
            rows.push(k.clone());
        }
    }
    rows.retain(|r| {
        a.cpu.contains_key(r)
            || b.cpu.contains_key(r)
            || a.idle.contains_key(r)
            || b.idle.contains_key(r)
    });
    rows
}

fn report(
    knobs: &Knobs,
    outside: &Side,
    deployed: &Side,
    load_before: &str,
    load_after: &str,
    commit: &str,
) -> String {
    let cpu = benchmarks::cpu_model().unwrap_or_else(|| "this machine".into());
    let date = chrono::Utc::now().format("%Y-%m-%d");
    let variant = knobs.variant();
    let mut out = String::new();
    match &variant {
        None => out.push_str("## deployed: the dev stack as users run it, beside the same binaries outside Docker\n\n"),
        Some(v) => out.push_str(&format!("### variant `{v}`\n\n")),
    }
    out.push_str(&format!(
        "Run: `cargo bench -p e2e --bench deployed` (release build from install.sh, Docker, wrk; about 6 minutes; \
         rewrites this section, variants included: re-run them after). Measured {date} on {cpu}, 2 cores shared by \
         everything below and whatever else runs on the machine; load average {load_before} before, {load_after} after; \
         commit `{commit}`. Knobs: `BENCH_ROUNDS` ({rounds}), `BENCH_SECS` ({secs}), `BENCH_CONNS` ({conns}), `BENCH_WARMUP_SECS` ({warm}), \
         `BENCH_IDLE_SECS` ({idle}), `BENCH_SKUS` ({skus}), `BENCH_WRITE=0` prints only; variants \
         `BENCH_STACK_RUST_LOG`, `BENCH_DOCKER_HEALTH`, `BENCH_SAMPLE_RATIO`, `BENCH_BROKER`, `BENCH_MARIADB_FLUSH` write `deployed/<variant>`.\n\n",
        rounds = knobs.rounds,
        secs = knobs.secs,
        conns = knobs.conns,
        warm = knobs.warmup,
        idle = knobs.idle,
        skus = knobs.skus.len(),
    ));
    out.push_str(&format!(
        "Both sides: the same release binaries, up together; they take the load in turns, {rounds} rounds (ABBA: the side \
         that goes first alternates), each load wrk with {conns} connections, {warm} s warm-up then {secs} s, \
         `POST /api/order` through the gateway with alice's token (JWT checked at the edge), one unit of one of \
         {skus} SKUs (listed at {PRICE} in the catalogue, a billion in stock), every service sampling {ratio} % \
         of traces into the trace-collector. **Outside Docker**: processes on loopback (`testkit::loopback`: \
         MariaDB 10.11 (`innodb_flush_log_at_trx_commit=2`, as the dev stack's) and {broker} from testkit (kafka-broker: the same release build), services at RUST_LOG={llog}). **Deployed**: a copy of \
         `stacks/dev.toml` up through the release `platform` (ten containers, health checked from outside by `platform` unless a variant says otherwise, json-file logs, \
         the gateway's published loopback port, {broker} as `kafka`{slog}{health}{flush}). CPU per order = user + system time in the \
         window / orders accepted: processes from `/proc`; deployed, each container's main process from `/proc` \
         and the rest of its cgroup's usage (read from the cgroup's file, without asking the daemon) as the health checks' execs, the daemon's \
         processes from `/proc` by name (runc: the shims' exited children, execs excluded); \"machine\" is `/proc/stat`'s busy time over the same \
         window (everything, kernel included).\n\n",
        rounds = knobs.rounds,
        conns = knobs.conns,
        warm = knobs.warmup,
        secs = knobs.secs,
        skus = knobs.skus.len(),
        ratio = knobs.ratio * 100.0,
        llog = knobs.loopback_log,
        broker = knobs.broker.map_or("kafka-broker", BrokerKind::name),
        slog = knobs
            .stack_log
            .as_ref()
            .map(|l| format!(", RUST_LOG={l} in every service"))
            .unwrap_or_else(|| ", the services' default log level `info`".into()),
        health = knobs
            .docker_health
            .as_ref()
            .map(|i| format!(", health checks run by Docker in the containers every {i}"))
            .unwrap_or_default(),
        flush = knobs
            .mariadb_flush
            .map(|f| format!(", MariaDB at `innodb_flush_log_at_trx_commit={f}`"))
            .unwrap_or_default(),
    ));

    out.push_str("| run | round | orders | orders/s | p50 ms | p99 ms | errors | CPU ms/order, all rows | machine busy ms/order | machine busy, share of 2 cores |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for round in 0..outside.loads.len().max(deployed.loads.len()) {
        // In the order they ran (ABBA).
        let mut pair = [("outside Docker", outside), ("deployed", deployed)];
        if round % 2 == 1 {
            pair.reverse();
        }
        for (name, side) in pair {
            let Some(l) = side.loads.get(round) else {
                continue;
            };
            out.push_str(&format!(
                "| {name} | {} | {} | {:.0} | {:.1} | {:.1} | {} | {:.2} | {:.2} | {:.0} % |\n",
                round + 1,
                l.wrk.succeeded(),
                l.wrk.rps,
                l.wrk.p50_ms,
                l.wrk.p99_ms,
                l.wrk.errors,
                l.total_ms(),
                l.machine * 1000.0 / l.orders(),
                l.machine / l.window / 2.0 * 100.0,
            ));
        }
    }
    for (name, s) in [("outside Docker", outside), ("deployed", deployed)] {
        out.push_str(&format!(
            "| **{name}** | all | {:.0} | {:.0} | {:.1} (median) | {:.1} (median) | {} | {:.2} | {:.2} | {:.0} % |\n",
            s.orders(),
            s.rps(),
            s.median(|l| l.wrk.p50_ms),
            s.median(|l| l.wrk.p99_ms),
            s.errors(),
            s.total_ms(),
            s.machine * 1000.0 / s.orders(),
            s.machine / s.window / 2.0 * 100.0,
        ));
    }

    let ratios = round_ratios(outside, deployed);
    let ratio = benchmarks::median(ratios.iter().copied()).unwrap_or(0.0);
    let (p99_d, p99_o) = (
        deployed.median(|l| l.wrk.p99_ms),
        outside.median(|l| l.wrk.p99_ms),
    );
    let goal_met = deployed.rps() >= 1000.0 && p99_d <= 50.0;
    out.push_str(&format!(
        "\n- Deployed / outside Docker: **{ratio:.2}** of the orders/s, the median of the rounds' ratios ({}; all rounds \
         together {:.2}) (goal ≥ 0.9 where 1,000 orders/s at p99 ≤ 50 ms is not met; here {}), median p99 {p99_d:.1} ms \
         vs {p99_o:.1} ms, CPU per order {:.2} ms vs {:.2} ms ({:+.2} ms, ×{:.2}).\n",
        ratios
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(", "),
        deployed.rps() / outside.rps().max(1e-9),
        if goal_met {
            "1,000/s at p99 ≤ 50 ms is met".to_string()
        } else if ratio >= 0.9 {
            "1,000/s is not met, the ratio is".to_string()
        } else {
            "neither is met".to_string()
        },
        deployed.total_ms(),
        outside.total_ms(),
        deployed.total_ms() - outside.total_ms(),
        deployed.total_ms() / outside.total_ms().max(1e-9),
    ));

    out.push_str(
        "\nCPU per order by process (ms; deployed: by container, and the daemon's processes):\n\n",
    );
    out.push_str("| process | outside Docker | deployed | difference |\n|---|---:|---:|---:|\n");
    let rows = rows_of(outside, deployed);
    for row in &rows {
        let (a, b) = (outside.ms_per_order(row), deployed.ms_per_order(row));
        if a.is_none() && b.is_none() {
            continue;
        }
        let diff = b.unwrap_or(0.0) - a.unwrap_or(0.0);
        out.push_str(&format!("| {row} | {} | {} | {diff:+.2} |\n", ms(a), ms(b)));
    }
    let (ta, tb) = (outside.total_ms(), deployed.total_ms());
    out.push_str(&format!(
        "| **all rows** | **{ta:.2}** | **{tb:.2}** | **{:+.2}** |\n",
        tb - ta
    ));
    let (ma, mb) = (
        outside.machine * 1000.0 / outside.orders(),
        deployed.machine * 1000.0 / deployed.orders(),
    );
    out.push_str(&format!(
        "| machine busy (`/proc/stat`) | {ma:.2} | {mb:.2} | {:+.2} |\n| machine minus rows (kernel work of no process, the other side idling, other work on the machine) | {:.2} | {:.2} | {:+.2} |\n",
        mb - ma,
        ma - ta,
        mb - tb,
        (mb - tb) - (ma - ta)
    ));

    out.push_str(&format!(
        "\nIdle ({:.0} s, {} s after the load ended; share of one core):\n\n",
        deployed.idle_secs, knobs.drain
    ));
    out.push_str(
        "| process | outside Docker | deployed | deployed: the daemon before the stack was up |\n|---|---:|---:|---:|\n",
    );
    for row in &rows {
        let (a, b, c) = (
            outside.idle.get(row).copied(),
            deployed.idle.get(row).copied(),
            deployed.daemon_before.get(row).copied(),
        );
        if a.is_none() && b.is_none() {
            continue;
        }
        out.push_str(&format!(
            "| {row} | {} | {} | {} |\n",
            pct(a),
            pct(b),
            pct(c)
        ));
    }
    let (ia, ib, before) = (
        outside.idle.values().sum::<f64>(),
        deployed.idle.values().sum::<f64>(),
        deployed.daemon_before.values().sum::<f64>(),
    );
    let net = ib - before;
    out.push_str(&format!(
        "| **all rows** | **{}** | **{}** | **{}** |\n| machine busy (`/proc/stat`; both sides were up: one figure for the two) | {} | {} | |\n",
        pct(Some(ia)),
        pct(Some(ib)),
        pct(Some(before)),
        pct(Some(outside.idle_machine)),
        pct(Some(deployed.idle_machine)),
    ));
    let daemon: f64 = deployed
        .idle
        .iter()
        .filter(|(k, _)| is_daemon_row(k))
        .map(|(_, v)| v)
        .sum();
    let execs = deployed.idle.get(PROBES).copied().unwrap_or(0.0);
    out.push_str(&format!(
        "\n- Deployed stack idle: {} of one core with the Docker daemon's processes (runc included: {}) and \
         the health checks' execs inside the containers ({}). The daemon spent {} before the stack was up (its \
         own housekeeping, measured for {:.0} s just before `platform up`); the stack's share, the difference: \
         **{}** (goal ≤ 2 % for the whole stack with the daemon's share: {}).\n",
        pct(Some(ib)),
        pct(Some(daemon)),
        pct(Some(execs)),
        pct(Some(before)),
        knobs.idle,
        pct(Some(net)),
        if net <= 0.02 { "met" } else { "not met" }
    ));
    out
}

/// Whether `row` is one of the Docker daemon's processes (runc included).
fn is_daemon_row(row: &str) -> bool {
    DAEMON.iter().any(|d| row.starts_with(d)) || row == SHIM_CHILDREN
}

/// The Docker daemon's processes' share of one core per row over `BENCH_IDLE_SECS`, before the
/// deployed stack is up: containerd, for one, keeps its own timers with no container at all
/// (100 wake-ups a second, 0.4 % of a core, on the machine of 2026-12-07).
async fn daemon_idle(knobs: &Knobs) -> Reading {
    eprintln!(
        "the Docker daemon before the stack is up: {} s...",
        knobs.idle
    );
    let (before, t0) = (daemon_cpu(), Instant::now());
    tokio::time::sleep(Duration::from_secs(knobs.idle)).await;
    let (after, secs) = (daemon_cpu(), t0.elapsed().as_secs_f64());
    per_second(delta(&before, &after), secs)
}
