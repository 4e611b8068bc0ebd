//! Fault benchmark; writes the `faults` section of BENCHMARKS.md.
//!
//! ```text
//! cargo bench -p e2e --bench faults
//! ```
//!
//! On a copy of the dev stack driven through the release `platform` binary (as the end-to-end
//! test does), for each fault kind: the wall-clock time of `platform inject` (which returns once
//! the fault is in effect: container paused/exited, qdisc present, the service listing it) and of
//! `platform heal ID` (which returns once the revert is verified and the container is running
//! and healthy). Baselines in the same run: `platform faults --json` (what any fault command
//! pays before it works: process start, stack file, Docker connection), and the engine API alone
//! pausing and unpausing the same container.
//!
//! Bounded: about 2-4 minutes on 2 cores. Knobs: `BENCH_FAULT_RUNS` (default 3),
//! `BENCH_WRITE=0` to print without writing BENCHMARKS.md.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use e2e::{Platform, TestStack};
use testkit::benchmarks::env_u64;

const LIMIT: Duration = Duration::from_secs(300);

/// Each measured kind: its arguments (after `inject`), and a note.
const KINDS: [(&str, &[&str]); 12] = [
    ("kill", &["kill", "inventory-service"]),
    ("stop", &["stop", "inventory-service", "--grace", "10s"]),
    ("pause", &["pause", "inventory-service"]),
    ("restart", &["restart", "inventory-service"]),
    ("disconnect", &["disconnect", "inventory-service"]),
    (
        "latency",
        &["latency", "inventory-service", "--delay", "100ms"],
    ),
    ("loss", &["loss", "inventory-service", "--percent", "10"]),
    (
        "bandwidth",
        &["bandwidth", "inventory-service", "--rate", "1mbit"],
    ),
    (
        "app-latency",
        &["app-latency", "inventory-service", "--max", "100ms"],
    ),
    (
        "app-error",
        &["app-error", "inventory-service", "--status", "503"],
    ),
    ("kill-app", &["kill-app", "product-service"]),
    ("stop broker", &["stop", "broker"]),
];

fn main() -> anyhow::Result<()> {
    e2e::measure::block_on(run())
}

/// Sorted seconds -> "median (min-max)".
fn summary(v: &mut [f64]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.sort_by(f64::total_cmp);
    format!(
        "{:.2} s ({:.2}-{:.2})",
        v[v.len() / 2],
        v[0],
        v[v.len() - 1]
    )
}

async fn run() -> anyhow::Result<()> {
    let runs = env_u64("BENCH_FAULT_RUNS", 3) as usize;
    let load = testkit::benchmarks::load_average().unwrap_or_default();
    let platform = Platform::locate()?;
    let docker = e2e::docker::connect().await?;
    let stack = TestStack::dev_copy(&platform, "fbench")?;
    let s = stack.arg().to_string();
    platform
        .run(&["up", "--stack", &s], LIMIT)
        .await?
        .success()?;
    let mut rows = Vec::new();

    // Baselines.
    let mut fixed = Vec::new();
    for _ in 0..runs {
        fixed.push(
            platform
                .run(&["faults", "--json", "--stack", &s], LIMIT)
                .await?
                .success()?
                .seconds(),
        );
    }
    let container = format!("platform-{}-inventory-service-1", stack.name);
    let mut raw = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        docker.pause_container(&container).await?;
        docker.unpause_container(&container).await?;
        raw.push(t.elapsed().as_secs_f64());
    }
    rows.push(format!(
        "| baseline: `platform faults --json` (process, stack file, Docker connection) | {} | - |",
        summary(&mut fixed)
    ));
    rows.push(format!(
        "| baseline: engine API pause + unpause of the same container | {} | - |",
        summary(&mut raw)
    ));

    let mut notes = Vec::new();
    for (name, args) in KINDS {
        let (mut inject, mut heal) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let mut a = vec!["inject"];
            a.extend_from_slice(args);
            a.extend(["--duration", "10m", "--json", "--stack", &s]);
            let run = platform.run(&a, LIMIT).await?;
            if run.code != Some(0) {
                notes.push(format!(
                    "`{name}` could not be injected here: {}",
                    run.stderr
                        .lines()
                        .find(|l| l.starts_with("error"))
                        .unwrap_or("")
                        .trim()
                ));
                break;
            }
            inject.push(run.seconds());
            let records = run.json()?;
            let Some(id) = records
                .as_array()
                .and_then(|r| r.first())
                .and_then(|r| r["id"].as_str())
                .map(str::to_string)
            else {
                anyhow::bail!("{name}: no record printed");
            };
            if name == "restart" {
                // One-shot: nothing to heal; the inject returned once it was running again.
                continue;
            }
            let healed = platform
                .run(&["heal", &id, "--stack", &s], LIMIT)
                .await?
                .success()?;
            heal.push(healed.seconds());
        }
        rows.push(format!(
            "| `{name}` | {} | {} |",
            summary(&mut inject),
            summary(&mut heal)
        ));
    }
    platform
        .run(&["down", "--volumes", "--stack", &s], LIMIT)
        .await?
        .success()
        .context("down")?;

    let section = format!(
        "## faults: time to effect and to healthy again\n\n\
         Run: `cargo bench -p e2e --bench faults` (Docker, root, the release build; about 2-4 minutes; rewrites this section). \
         Measured {} on {}, load average before the run {load}; {runs} runs per kind, on inventory-service of a dev stack copy (kill-app on product-service, `stop broker` on the broker container, `kafka`).\n\n\
         `inject` is the wall clock of `platform inject` until it returns, which it does once the fault is in effect; \
         `heal` is `platform heal ID` until it returns, which it does once the revert is verified and the container is running and healthy \
         (for `restart`, `inject` already includes the container coming back).\n\n\
         | kind | inject to effective: median (min-max) | heal to healthy: median (min-max) |\n|---|---|---|\n{}\n{}",
        chrono_date(),
        testkit::benchmarks::cpu_model().unwrap_or_default(),
        rows.join("\n"),
        notes.iter().map(|n| format!("\n- {n}")).collect::<String>(),
    );
    println!("{section}");
    if env_u64("BENCH_WRITE", 1) == 1 {
        let path = testkit::benchmarks::write_section("faults", &section)?;
        eprintln!("wrote {}", path.display());
    }
    drop(stack);
    Ok(())
}

fn chrono_date() -> String {
    let out = std::process::Command::new("date").arg("+%Y-%m-%d").output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
