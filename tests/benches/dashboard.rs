//! `platform dashboard` benchmark; writes the `dashboard` section of BENCHMARKS.md.
//!
//! ```text
//! cargo bench -p e2e --bench dashboard
//! ```
//!
//! What does watching the stack cost? On a copy of the dev stack under `platform load` (orders
//! and product reads through the gateway), in one run:
//! - the dashboard in a real terminal (tmux, 150×45, overview, 4 refreshes a second) for
//!   `BENCH_SECS`: its CPU time (from `/proc`), its peak RSS (VmHWM) and frame times (p50, p99,
//!   max, from `--frame-stats`);
//! - the baseline: `platform status --json` polled at the same rate (4 a second, one after
//!   another) for the same time: the CPU time of all those processes and the peak RSS of one.
//!
//! Knobs (environment): `BENCH_SECS` (default 30), `BENCH_RATE` (load, requests/s, default 40),
//! `BENCH_WRITE=0` to print without writing.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use e2e::tmux::Session;
use e2e::{Platform, TestStack};
use testkit::benchmarks::{cpu_seconds, env_u64, status_bytes};

const UP_LIMIT: Duration = Duration::from_secs(600);
/// The dashboard's redraw period, and the baseline's polling period.
const REFRESH: Duration = Duration::from_millis(250);

fn main() -> anyhow::Result<()> {
    e2e::measure::block_on(run())
}

/// One measured watcher.
struct Row {
    what: String,
    /// Screens drawn or status reads made.
    reads: u64,
    cpu_percent: f64,
    cpu_ms_per_read: f64,
    peak_rss_mib: f64,
    frames: Option<serde_json::Value>,
}

async fn run() -> anyhow::Result<()> {
    let secs = env_u64("BENCH_SECS", 30);
    let rate = env_u64("BENCH_RATE", 40);
    let platform = Platform::locate()?;
    let stack = TestStack::dev_copy(&platform, "dashb")?;
    let s = stack.arg().to_string();
    platform
        .run(&["up", "--stack", &s], UP_LIMIT)
        .await?
        .success()?;
    // Load for both phases and the gaps between them.
    let load_secs = 2 * secs + 60;
    let load_duration = format!("{load_secs}s");
    let rate_arg = rate.to_string();
    let mut load = platform.spawn(&[
        "load",
        "--stack",
        &s,
        "--rate",
        &rate_arg,
        "--duration",
        &load_duration,
        "--mix",
        "orders=50,products=50",
    ])?;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let load_before = testkit::benchmarks::load_average().unwrap_or_default();

    let dash = {
        let (platform, s) = (platform.clone(), s.clone());
        tokio::task::spawn_blocking(move || dashboard(&platform, &s, secs)).await??
    };
    let status = {
        let (platform, s) = (platform.clone(), s.clone());
        tokio::task::spawn_blocking(move || status_polling(&platform, &s, secs)).await??
    };
    let load_after = testkit::benchmarks::load_average().unwrap_or_default();
    let _ = load.kill().await;

    let mut report = format!(
        "`cargo bench -p e2e --bench dashboard` (BENCH_SECS={secs}, BENCH_RATE={rate}); {}; load average before {load_before}, after {load_after}.\n\n\
         On a copy of the dev stack (every container with its limits) under `platform load` at {rate} requests/s \
         (orders=50,products=50) through the published gateway. The dashboard runs in tmux (150×45, overview, \
         refresh {}ms) with every collector on (Docker stats and events, registry, breakers, broker offsets, \
         traces, faults, logs); the baseline polls `platform status --json` at the same rate, one after another. \
         CPU is user+system time over the wall time (100 % = one core).\n\n\
         | watcher | reads | CPU % | CPU ms per read | peak RSS MiB | frame p50 / p99 / max ms |\n\
         |---|---|---|---|---|---|\n",
        testkit::benchmarks::cpu_model().unwrap_or_else(|| "unknown CPU".into()),
        REFRESH.as_millis()
    );
    for r in [&dash, &status] {
        let frames = r.frames.as_ref().map_or("-".to_string(), |f| {
            let ms = |k: &str| f[k].as_f64().unwrap_or(0.0);
            format!(
                "{:.2} / {:.2} / {:.2}",
                ms("p50_ms"),
                ms("p99_ms"),
                ms("max_ms")
            )
        });
        report.push_str(&format!(
            "| {} | {} | {:.1} | {:.2} | {:.1} | {frames} |\n",
            r.what, r.reads, r.cpu_percent, r.cpu_ms_per_read, r.peak_rss_mib
        ));
    }
    report.push_str(&format!(
        "\nThe dashboard costs {:.2}x the CPU of polling `platform status --json` at its refresh rate.\n",
        dash.cpu_percent / status.cpu_percent.max(0.001)
    ));
    println!("{report}");
    if std::env::var("BENCH_WRITE").as_deref() != Ok("0") {
        let path = testkit::benchmarks::write_section("dashboard", &report)?;
        eprintln!("wrote {}", path.display());
    }
    drop(stack);
    Ok(())
}

/// The dashboard in tmux for `secs` after its first full screen.
fn dashboard(platform: &Platform, s: &str, secs: u64) -> anyhow::Result<Row> {
    let dir = tempfile::tempdir()?;
    let stats = dir.path().join("frames.json");
    let refresh = format!("{}ms", REFRESH.as_millis());
    let line = platform.shell_line(&[
        "dashboard",
        "--stack",
        s,
        "--refresh",
        &refresh,
        "--frame-stats",
        &stats.to_string_lossy(),
    ]);
    let tmux = Session::start("dashb", 150, 45, &line)?;
    tmux.wait_for("the services", Duration::from_secs(60), |screen| {
        screen.contains("order-service-1")
    })?;
    let pid = tmux.pid()?;
    let cpu_start = cpu_seconds(pid).context("the dashboard's /proc entry")?;
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let cpu = cpu_seconds(pid).context("the dashboard's /proc entry")? - cpu_start;
    let wall = started.elapsed().as_secs_f64();
    let peak = status_bytes(pid, "VmHWM").unwrap_or(0);
    tmux.type_text("q")?;
    tmux.wait_exit(Duration::from_secs(20))?;
    let frames: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&stats).with_context(|| format!("read {}", stats.display()))?,
    )?;
    // Frames drawn in the measured time: one per refresh (plus one per key, and none is typed).
    let reads = (wall / REFRESH.as_secs_f64()).round() as u64;
    Ok(Row {
        what: "platform dashboard".into(),
        reads,
        cpu_percent: cpu * 100.0 / wall,
        cpu_ms_per_read: cpu * 1000.0 / reads.max(1) as f64,
        peak_rss_mib: peak as f64 / (1024.0 * 1024.0),
        frames: Some(frames),
    })
}

/// `platform status --json` every 250 ms (or back to back when one takes longer) for `secs`.
fn status_polling(platform: &Platform, s: &str, secs: u64) -> anyhow::Result<Row> {
    let status = platform.shell_line(&["status", "--stack", s, "--json"]);
    // GNU time prints the one read's peak RSS (KiB) on stdout; `timed` adds up its CPU time.
    let one = format!(
        "/usr/bin/time -f %M sh -c {} 2>&1",
        e2e::cli::quote(&format!("{status} >/dev/null 2>&1"))
    );
    let (mut reads, mut cpu, mut peak_kib) = (0u64, 0.0, 0u64);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(secs) {
        let due = Instant::now() + REFRESH;
        let (out, used) = e2e::measure::timed(&one)?;
        cpu += used;
        reads += 1;
        let kib = out.lines().last().and_then(|l| l.trim().parse().ok());
        peak_kib = peak_kib.max(kib.unwrap_or(0));
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    let wall = started.elapsed().as_secs_f64();
    Ok(Row {
        what: "`platform status --json` every 250 ms".into(),
        reads,
        cpu_percent: cpu * 100.0 / wall,
        cpu_ms_per_read: cpu * 1000.0 / reads.max(1) as f64,
        peak_rss_mib: peak_kib as f64 / 1024.0,
        frames: None,
    })
}
