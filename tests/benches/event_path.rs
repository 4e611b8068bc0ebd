//! `event-path` benchmark: order → notification on the dev stack as users run it; writes the
//! `event-path` section of BENCHMARKS.md.
//!
//! ```text
//! cargo bench -p e2e --bench event_path
//! ```
//!
//! Brings up a copy of the dev stack with the release `platform` (like the end-to-end tests: its
//! own stack name, the gateway and the broker on free loopback ports), then, in one run:
//! - the broker container's CPU (share of one core, from `/proc` of its process) and RSS while
//!   the stack is idle: notification-service's consumer waits on an empty `order-placed`;
//! - orders through the published gateway with a real token, paced at `BENCH_RATE` a second
//!   (default 100) for `BENCH_SECS` (default 20): the time from sending each order to its
//!   notification's `sentAt` (read back through the gateway), p50/p99/max, and the orders/s the
//!   stack took;
//! - `platform status`'s consumer lag of the group afterwards (from the broker).
//!
//! The host and the containers share one clock, so `sentAt` minus the send time is a true
//! latency (it includes the gateway, order-service, the outbox relay's poll, the broker and the
//! consumer). Needs the release build (`cargo build --workspace --release`) and Docker; on a shared
//! machine run it holding the stack lock (`/tmp/docker-stack.lock`). `BENCH_WRITE=0` prints only.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use e2e::{Platform, TestStack};
use parking_lot::Mutex;
use serde_json::Value;
use testkit::benchmarks::{cpu_model, cpu_seconds, env_u64, load_average, status_bytes};

const COMMAND_LIMIT: Duration = Duration::from_secs(180);
const UP_LIMIT: Duration = Duration::from_secs(900);

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let rate = env_u64("BENCH_RATE", 100).max(1);
    let secs = env_u64("BENCH_SECS", 20);
    let idle_secs = env_u64("BENCH_IDLE_SECS", 20);
    let platform = Platform::locate()?;
    let stack = TestStack::dev_copy(&platform, "evt")?;
    let s = stack.arg().to_string();
    let load_before = load_average().unwrap_or_default();
    let up = Instant::now();
    platform
        .run(&["up", "--stack", &s], UP_LIMIT)
        .await?
        .success()?;
    println!("up in {:.0} s", up.elapsed().as_secs_f64());

    let sku = format!("{}-evt", stack.name);
    let shop =
        e2e::shop::stocked(&platform, &stack, &sku, rate * secs + 100, COMMAND_LIMIT).await?;
    let token = shop.token().to_string();
    for _ in 0..20 {
        shop.place_order(&sku).await?;
    }

    // Idle: the broker while notification-service's consumer waits on an empty topic.
    let docker = e2e::docker::connect().await?;
    let broker_container = format!("platform-{}-kafka-1", stack.name);
    let pid = docker
        .inspect_container(&broker_container, None)
        .await?
        .state
        .and_then(|s| s.pid)
        .filter(|p| *p > 0)
        .context("the broker container has no process")? as u32;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let cpu0 = cpu_seconds(pid).unwrap_or_default();
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let idle_cpu =
        (cpu_seconds(pid).unwrap_or_default() - cpu0) / t0.elapsed().as_secs_f64() * 100.0;
    let idle_rss = status_bytes(pid, "VmRSS").unwrap_or_default() as f64 / 1048576.0;
    println!("broker idle: {idle_cpu:.1} % of a core, {idle_rss:.1} MiB");

    // Paced orders through the gateway.
    // (order number, sent at, answered at), ms since the epoch.
    let sent: Arc<Mutex<Vec<(String, u64, u64)>>> = Arc::new(Mutex::new(Vec::new()));
    let failed = Arc::new(Mutex::new(0u64));
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate as u32);
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    let cpu_load0 = cpu_seconds(pid).unwrap_or_default();
    for _ in 0..rate * secs {
        tick.tick().await;
        let (shop, sku, sent, failed) = (shop.clone(), sku.clone(), sent.clone(), failed.clone());
        tasks.spawn(async move {
            let at = now_millis();
            match shop.place_order(&sku).await {
                Ok(number) => sent.lock().push((number, at, now_millis())),
                Err(_) => *failed.lock() += 1,
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let took = started.elapsed().as_secs_f64();
    let broker_cpu_load = (cpu_seconds(pid).unwrap_or_default() - cpu_load0) / took * 100.0;
    let sent = sent.lock().clone();
    let failed = *failed.lock();

    // Each order's notification, read back through the gateway.
    let mut latencies = Vec::with_capacity(sent.len());
    // The two parts: the order's HTTP answer (client side), and the event path proper: from the
    // order's creation in order-service (the event's `occurredAt`) to the notification's `sentAt`.
    let mut answers: Vec<u64> = sent
        .iter()
        .map(|(_, at, answered)| answered.saturating_sub(*at))
        .collect();
    let mut event_path = Vec::with_capacity(sent.len());
    let mut missing = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    for (number, at, _) in &sent {
        loop {
            let url = format!(
                "{}/api/notifications?orderNumber={number}",
                stack.gateway_url()
            );
            let page: Value = shop
                .http()
                .get(&url)
                .bearer_auth(&token)
                .send()
                .await?
                .json()
                .await?;
            if let Some(sent_at) = page["items"][0]["sentAt"].as_str() {
                let sent_at = chrono::DateTime::parse_from_rfc3339(sent_at)?.timestamp_millis();
                latencies.push((sent_at - *at as i64).max(0) as u64);
                if let Some(occurred) = page["items"][0]["occurredAt"].as_str() {
                    let occurred =
                        chrono::DateTime::parse_from_rfc3339(occurred)?.timestamp_millis();
                    event_path.push((sent_at - occurred).max(0) as u64);
                }
                break;
            }
            if Instant::now() > deadline {
                missing += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let (p50, p99, max) = percentiles(&mut latencies);
    let (a50, a99, amax) = percentiles(&mut answers);
    let (n50, n99, nmax) = percentiles(&mut event_path);
    println!(
        "{} orders in {took:.1} s, {failed} failed, {missing} without notification; order → notification p50 {p50} ms, p99 {p99} ms, max {max} ms",
        sent.len()
    );

    let after = platform
        .run(&["status", "--json", "--stack", &s], COMMAND_LIMIT)
        .await?
        .success()?
        .json()?;
    let lag = after["kafka"]["groups"]
        .as_array()
        .and_then(|g| {
            g.iter()
                .find(|g| g["groupId"] == "notification-service")
                .map(|g| g["totalLag"].clone())
        })
        .unwrap_or(Value::Null);
    let load_after = load_average().unwrap_or_default();
    let consumer = &after_env(&platform, &s).await;

    let report = format!(
        "## event-path: order → notification on the dev stack\n\n\
         Run: `cargo bench -p e2e --bench event_path` (release build and Docker; a few minutes; rewrites this \
         section). Measured {} on {}, 2 cores; load average {load_before} before, {load_after} after (other work \
         on the machine shows here; re-measure on a quiet machine). A copy of the dev stack (kafka-broker, the \
         services' release images with their memory limits), orders through the published gateway with a real \
         token, one unit each, paced at {rate}/s for {secs} s; latency is from sending the order to the \
         notification's `sentAt` (host and containers share the clock). notification-service: {consumer}.\n\n\
         | measurement | value |\n|---|---|\n\
         | orders sent / accepted / failed | {} / {} / {failed} |\n\
         | orders/s taken | {:.0} |\n\
         | order → notification p50 / p99 / max | {p50} ms / {p99} ms / {max} ms (goal: p99 ≤ 50 ms) |\n\
         | of which the order's HTTP answer (sent → 201) p50 / p99 / max | {a50} ms / {a99} ms / {amax} ms |\n\
         | the event path: order created in order-service (`occurredAt`) → `sentAt` (commit, outbox relay, broker, consumer, {ne} orders) p50 / p99 / max | {n50} ms / {n99} ms / {nmax} ms |\n\
         | orders without a notification after 120 s | {missing} |\n\
         | broker CPU while idle ({idle_secs} s, one consumer waiting) | {idle_cpu:.1} % of one core (goal ≤ 1 %) |\n\
         | broker RSS while idle | {idle_rss:.1} MiB |\n\
         | broker CPU under the paced load | {broker_cpu_load:.1} % of one core |\n\
         | group lag after the run (`platform status`) | {lag} |\n",
        chrono::Utc::now().format("%Y-%m-%d"),
        cpu_model().unwrap_or_else(|| "this machine".into()),
        rate * secs,
        sent.len(),
        sent.len() as f64 / took,
        ne = event_path.len(),
    );
    println!("{report}");
    if env_u64("BENCH_WRITE", 1) == 1 {
        testkit::benchmarks::write_section("event-path", &report)?;
    }
    if missing > 0 {
        bail!("{missing} orders got no notification");
    }
    Ok(())
}

/// notification-service's Kafka settings in the stack file, for the report.
async fn after_env(platform: &Platform, stack: &str) -> String {
    let text = platform
        .run(&["stack", "show", "--stack", stack], COMMAND_LIMIT)
        .await
        .map(|r| r.stdout)
        .unwrap_or_default();
    let find = |key: &str| {
        text.lines()
            .find(|l| l.contains(key))
            .and_then(|l| l.split('=').nth(1))
            .map(|v| v.trim().trim_matches('"').to_string())
            .unwrap_or_else(|| "default".into())
    };
    format!(
        "session timeout {}, fetch wait {}",
        find("KAFKA_SESSION_TIMEOUT"),
        find("KAFKA_FETCH_WAIT_MAX")
    )
}

/// p50, p99 and max of `v` (sorted in place), 0 when empty.
fn percentiles(v: &mut [u64]) -> (u64, u64, u64) {
    v.sort_unstable();
    let pct = |q: f64| {
        v.get(((v.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    (pct(0.5), pct(0.99), pct(1.0))
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
