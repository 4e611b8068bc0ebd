//! Order flow benchmark; writes the `domain` section of BENCHMARKS.md.
//!
//! ```text
//! cargo bench -p order-service --bench domain
//! ```
//!
//! Starts a throwaway MariaDB and tansu (testkit), the registry,
//! inventory-service and notification-service in this process, and the
//! release `order-service` binary as its own process, all on loopback, and
//! measures from a Rust load generator (pooled keep-alive connections,
//! bounded concurrency):
//! 1. baseline: `GET /health/live` of the same order-service process;
//! 2. `POST /api/order` straight to order-service (one line, 20 SKUs with
//!    ample stock): orders/s, p50/p99;
//! 3. the fallback while the breaker refuses calls (forced open through
//!    `POST /admin/breakers/inventory-service/state`): p50/p99;
//! 4. paced orders (100/s): client send → event consumed from Kafka, and
//!    client send → notification stored by notification-service
//!    (its `sentAt`), p50/p99.
//!
//! Services log at `warn` (no per-request access log). Bounded: a
//! few minutes. Knobs: `BENCH_ORDERS` (default 3000), `BENCH_CONCURRENCY`
//! (default 32), `BENCH_WRITE=0` to print without writing BENCHMARKS.md,
//! `BENCH_ORDER_LOG` (order-service's `RUST_LOG`, default `warn`) and
//! `BENCH_KEEP_LOG=<file>` to keep order-service's log.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use parking_lot::Mutex;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use serde_json::{Value, json};
use testkit::InProcess;
use tokio_util::sync::CancellationToken;

const ADMIN: &str = "Bearer bench-admin-token";
const SKUS: usize = 20;

use testkit::benchmarks::env_u64;

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

/// Latency figures of one measurement.
struct Figures {
    what: String,
    requests: usize,
    concurrency: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    errors: usize,
}

impl Figures {
    fn from(
        what: &str,
        concurrency: usize,
        elapsed: Duration,
        mut lat: Vec<Duration>,
        errors: usize,
    ) -> Figures {
        lat.sort();
        Figures {
            what: what.to_string(),
            requests: lat.len() + errors,
            concurrency,
            elapsed,
            p50: pct(&lat, 0.50),
            p99: pct(&lat, 0.99),
            errors,
        }
    }

    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn row(&self) -> String {
        format!(
            "| {} | {} | {} | {:.0}/s | {} | {} | {} |",
            self.what,
            self.requests,
            self.concurrency,
            self.rate(),
            ms(self.p50),
            ms(self.p99),
            self.errors
        )
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Runs `n` requests built by `make`, `concurrency` at a time; `ok` judges each status.
async fn load<F>(
    what: &str,
    n: usize,
    concurrency: usize,
    make: F,
    ok: impl Fn(u16) -> bool,
) -> Figures
where
    F: Fn(usize) -> reqwest::RequestBuilder,
{
    let started = Instant::now();
    let results: Vec<(u16, Duration)> = futures::stream::iter(0..n)
        .map(|i| {
            let req = make(i);
            async move {
                let t = Instant::now();
                let status = match req.send().await {
                    Ok(r) => {
                        let s = r.status().as_u16();
                        let _ = r.bytes().await;
                        s
                    }
                    Err(_) => 0,
                };
                (status, t.elapsed())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let errors = results.iter().filter(|(s, _)| !ok(*s)).count();
    let lat = results
        .into_iter()
        .filter(|(s, _)| ok(*s))
        .map(|(_, d)| d)
        .collect();
    Figures::from(what, concurrency, elapsed, lat, errors)
}

/// `service` once its `/health/ready` answers.
async fn ready<E: Send + 'static>(service: InProcess<E>) -> anyhow::Result<InProcess<E>> {
    service.wait_ready(Duration::from_secs(30)).await?;
    Ok(service)
}

async fn run() -> anyhow::Result<()> {
    let orders = env_u64("BENCH_ORDERS", 3000) as usize;
    let concurrency = env_u64("BENCH_CONCURRENCY", 32) as usize;

    // Dependencies.
    let (db, kafka) = tokio::join!(testkit::MariaDb::start(), testkit::Broker::start());
    let (db, kafka) = (db?, kafka?);
    kafka.create_topic(events::ORDER_PLACED_TOPIC, 3).await?;
    let orders_db = db.create_database("orders").await?;
    let inventory_db = db.create_database("inventory").await?;
    let notifications_db = db.create_database("notifications").await?;
    let stop = CancellationToken::new();

    // Registry, inventory and notification-service in this process, stopped when dropped.
    let registry_service = testkit::registry().await?;
    let registry = registry_service.base().to_string();
    let inventory_service = {
        let mut config = inventory_service::Config::for_tests(&inventory_db.url, Some(&registry));
        config.common.admin_token = Some(secrecy::SecretString::from("bench-admin-token"));
        ready(
            InProcess::start(&inventory_service::SPEC, config.common.clone(), |s| {
                inventory_service::run(config, s)
            })
            .await?,
        )
        .await?
    };
    let inventory = inventory_service.base().to_string();
    let notification_service = {
        use clap::Parser as _;
        let port = testkit::free_port()?.to_string();
        let config = notification_service::Config::try_parse_from([
            "notification-service",
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--advertise-host",
            "127.0.0.1",
            "--registry-url",
            &registry,
            "--kafka-bootstrap-servers",
            &kafka.bootstrap_servers(),
            "--database-url",
            &notifications_db.url,
            "--admin-token",
            "bench-admin-token",
        ])?;
        ready(
            InProcess::start(&notification_service::SPEC, config.common.clone(), |s| {
                notification_service::run(config, s)
            })
            .await?,
        )
        .await?
    };
    let notifications = notification_service.base().to_string();

    // order-service, release binary, its own process.
    let port = testkit::free_port()?.to_string();
    let bootstrap = kafka.bootstrap_servers();
    let child_log = std::env::var("BENCH_ORDER_LOG").unwrap_or_else(|_| "warn".into());
    let mut child = testkit::spawn_process(
        env!("CARGO_BIN_EXE_order-service"),
        Vec::<&str>::new(),
        [
            ("PORT", port.as_str()),
            ("BIND_ADDR", "127.0.0.1"),
            ("ADVERTISE_HOST", "127.0.0.1"),
            ("REGISTRY_URL", registry.as_str()),
            ("DATABASE_URL", orders_db.url.as_str()),
            ("KAFKA_BOOTSTRAP_SERVERS", bootstrap.as_str()),
            ("ADMIN_TOKEN", "bench-admin-token"),
            // The benchmark measures the order path without a catalogue (no product-service).
            ("PRICE_CHECK", "off"),
            ("RUST_LOG", child_log.as_str()),
            ("LOG_FORMAT", "json"),
        ],
    )
    .await?;
    let order = format!("http://127.0.0.1:{port}");
    testkit::wait_for_http(&format!("{order}/health/ready"), Duration::from_secs(60)).await?;

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(30))
        .build()?;
    for k in 0..SKUS {
        let r = http
            .put(format!("{inventory}/admin/inventory/sku-{k}"))
            .header("authorization", ADMIN)
            .json(&json!({"quantity": 100_000_000}))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("setting stock: {}", r.status());
        }
    }
    // order-service must see inventory in the registry before the load.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v: Value = http
            .get(format!("{order}/admin/upstreams"))
            .header("authorization", ADMIN)
            .send()
            .await?
            .json()
            .await?;
        if v["inventory-service"]["instances"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
        {
            break;
        }
        if Instant::now() > deadline {
            bail!("order-service never saw inventory: {v}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let body = |i: usize| json!({"lines": [{"skuCode": format!("sku-{}", i % SKUS), "price": "19.99", "quantity": 1}]});
    let post = |i: usize| http.post(format!("{order}/api/order")).json(&body(i));

    // Warm-up: connections, pools, caches.
    load("warm-up", 500, concurrency, post, |s| s == 201).await;

    let live = load(
        "baseline: `GET /health/live` (order-service)",
        20_000,
        concurrency,
        |_| http.get(format!("{order}/health/live")),
        |s| s == 200,
    )
    .await;
    println!("{}", live.row());
    let watched = [
        ("order-service", Some(child.pid())),
        ("MariaDB (both services' databases)", db.pid()),
        ("tansu", kafka.pid()),
        (
            "bench process (load generator, registry, inventory-service, notification-service)",
            Some(std::process::id()),
        ),
    ];
    let root = sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(1)
        .connect(&db.url_root())
        .await
        .context("connecting to MariaDB as root")?;
    let sql_before = sql_counters(&root).await?;
    let cpu_before = cpu_seconds(&watched);
    let placed = load(
        "`POST /api/order` straight to order-service",
        orders,
        concurrency,
        post,
        |s| s == 201,
    )
    .await;
    println!("{}", placed.row());
    let cpu_placed = cpu_table(&watched, &cpu_before, placed.requests, placed.elapsed);
    println!("{cpu_placed}");
    let sql_placed = sql_table(&sql_counters(&root).await?, &sql_before, placed.requests);
    println!("{sql_placed}");

    // The breaker refusing: forced open (the same refusal path as OPEN).
    let force = |state: &'static str| {
        http.post(format!("{order}/admin/breakers/inventory-service/state"))
            .header("authorization", ADMIN)
            .json(&json!({ "state": state }))
            .send()
    };
    force("FORCED_OPEN").await?.error_for_status()?;
    let fallback = load(
        "fallback while the breaker is open (503)",
        20_000,
        concurrency,
        post,
        |s| s == 503,
    )
    .await;
    println!("{}", fallback.row());
    let fallback_1 = load(
        "fallback while the breaker is open (503), one at a time",
        5_000,
        1,
        post,
        |s| s == 503,
    )
    .await;
    println!("{}", fallback_1.row());
    force("CLOSED").await?.error_for_status()?;
    let live_1 = load(
        "baseline: `GET /health/live`, one at a time",
        5_000,
        1,
        |_| http.get(format!("{order}/health/live")),
        |s| s == 200,
    )
    .await;
    println!("{}", live_1.row());

    // Let the outbox drain first: the paced orders must not queue behind
    // the throughput phase's events.
    let drain_started = Instant::now();
    let backlog = outbox_pending(&http, &order).await?;
    loop {
        let pending = outbox_pending(&http, &order).await?;
        if pending == 0 {
            break;
        }
        if drain_started.elapsed() > Duration::from_secs(300) {
            bail!("the outbox did not drain in 5 minutes ({pending} pending)");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let drained_in = drain_started.elapsed();
    println!("outbox backlog of {backlog} events drained in {drained_in:?}");

    // Idle: what the processes cost with no orders (the consumers' polling).
    let idle_window = Duration::from_secs(3);
    let cpu_before = cpu_seconds(&watched);
    tokio::time::sleep(idle_window).await;
    let cpu_idle = cpu_table(&watched, &cpu_before, 0, idle_window);
    println!("{cpu_idle}");

    // Paced end-to-end: client send → Kafka consumer, client send → notification.
    let received = spawn_consumer(&bootstrap, stop.clone())?;
    // Let the consumer catch up with the backlog: wait until it has seen a marker order.
    let marker: Value = post(0).send().await?.json().await?;
    let marker = marker["orderNumber"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !received.lock().contains_key(&marker) {
        if Instant::now() > deadline {
            bail!("the bench consumer never caught up");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let paced_n = 1000usize;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut handles = Vec::with_capacity(paced_n);
    for i in 0..paced_n {
        tick.tick().await;
        let req = post(i);
        handles.push(tokio::spawn(async move {
            let t = SystemTime::now();
            let v: Value = req.send().await.ok()?.json().await.ok()?;
            let answered = SystemTime::now();
            Some((v["orderNumber"].as_str()?.to_string(), t, answered))
        }));
    }
    let mut started_at: HashMap<String, SystemTime> = HashMap::new();
    let mut answered_at: HashMap<String, SystemTime> = HashMap::new();
    for h in handles {
        if let Ok(Some((n, t, a))) = h.await {
            started_at.insert(n.clone(), t);
            answered_at.insert(n, a);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while started_at.keys().any(|k| !received.lock().contains_key(k)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let kafka_lat: Vec<Duration> = {
        let got = received.lock();
        started_at
            .iter()
            .filter_map(|(k, t0)| got.get(k)?.at.duration_since(*t0).ok())
            .collect()
    };
    let notified_at = notification_times(&http, &notifications, &started_at).await?;
    let notif_lat: Vec<Duration> = started_at
        .iter()
        .filter_map(|(n, t0)| {
            let at: SystemTime = (*notified_at.get(n)?).into();
            Some(at.duration_since(*t0).unwrap_or_default())
        })
        .collect();
    let hops = hop_table(&started_at, &answered_at, &received.lock(), &notified_at);
    println!("{hops}");
    let notif_empty = notif_lat.is_empty();
    let to_kafka = Figures::from(
        "order → event received by a Kafka consumer (paced 100/s)",
        1,
        Duration::from_secs(10),
        kafka_lat,
        0,
    );
    let to_notification = Figures::from(
        "order → notification sent and stored (paced 100/s)",
        1,
        Duration::from_secs(10),
        notif_lat,
        0,
    );
    println!("{}\n{}", to_kafka.row(), to_notification.row());

    let metrics = http
        .get(format!("{order}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let gauge = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let (lag_sum, lag_count) = (
        gauge("outbox_relay_lag_seconds_sum "),
        gauge("outbox_relay_lag_seconds_count "),
    );
    let relay_lag = format!(
        "mean relay lag (commit → broker ack) {:.2} s over {lag_count:.0} events, throughput phase included",
        if lag_count > 0.0 {
            lag_sum / lag_count
        } else {
            0.0
        }
    );
    let verdict = |ok: bool| if ok { "met" } else { "not met" };
    let verdicts = format!(
        "Verdict: ≥ 1,000 orders/s {} ({:.0}/s at concurrency {concurrency}); fallback p99 ≤ 1 ms {} one at a time ({}; {} at concurrency {concurrency}, where the `/health/live` baseline has {}); order→notification p99 ≤ 50 ms {} ({}; order→Kafka consumer p99 {}).",
        verdict(placed.rate() >= 1000.0),
        placed.rate(),
        verdict(fallback_1.p99 <= Duration::from_millis(1)),
        ms(fallback_1.p99),
        ms(fallback.p99),
        ms(live.p99),
        verdict(!notif_empty && to_notification.p99 <= Duration::from_millis(50)),
        if notif_empty {
            "no notification arrived".to_string()
        } else {
            ms(to_notification.p99)
        },
        ms(to_kafka.p99),
    );

    let section = format!(
        "## domain: order-service, inventory-service, notification-service\n\n\
Command: `cargo bench -p order-service --bench domain` (release build; a few minutes;\n\
`BENCH_ORDERS`, `BENCH_CONCURRENCY`, `BENCH_WRITE=0` to print only). Measured {date} on this\n\
machine (2 cores). Everything on loopback: a throwaway MariaDB 10.11 and tansu 0.6 (testkit),\n\
the registry, inventory-service and notification-service in the benchmark process, order-service\n\
as its own release process; services log at `warn`. Client: Rust (reqwest, keep-alive pool),\n\
bounded concurrency. Each order: breaker + registry pick + `POST` reservation at inventory\n\
(one MySQL transaction), then order + lines + outbox row in one MySQL transaction, then the\n\
relay publishes to tansu (idempotent producer, acks=all).\n\n\
| measurement | requests | concurrency | throughput | p50 | p99 | errors |\n\
|---|---|---|---|---|---|---|\n\
{}\n{}\n{}\n{}\n{}\n\
| {} | {} | paced | 100/s | {} | {} | - |\n\
| {} | {} | paced | 100/s | {} | {} | - |\n\n\
{verdicts}\n\n\
Where the paced orders' time goes (each hop's own p50/p99 over the same orders; the producer's\n\
message timestamp has millisecond resolution; a notification's `sentAt` is taken just before its\n\
insert):\n\n\
{hops}\n\
CPU during the throughput row (`/proc/<pid>/stat`, user + system; the relay's publishing during\n\
the row included), and with no orders for {idle:.0} s after it (notification-service's consumer\n\
polls the broker meanwhile; the bench's own consumer is not started yet):\n\n\
{cpu_placed}\n\
{cpu_idle}\n\
What MariaDB was asked during the throughput row, per order (server status counters, all\n\
clients: order-service with its relay, inventory-service, notification-service):\n\n\
{sql_placed}\n\
Relay: {relay_lag}; the outbox backlog left by the throughput row ({backlog} events) drained\n\
in {drained:.1} s before the paced rows.\n\n\
Reading the figures: everything shares the 2 cores (MariaDB, tansu, three services and the load\n\
generator, plus whatever else runs on the machine), so the concurrency-32 rows include queueing\n\
for the CPU; the one-at-a-time rows show a request's own cost. The throughput row saturates the\n\
machine: its events wait in the outbox meanwhile (relay lag above) and go out after it. The\n\
paced rows run after that backlog has drained.\n",
        live.row(),
        live_1.row(),
        placed.row(),
        fallback.row(),
        fallback_1.row(),
        to_kafka.what,
        to_kafka.requests,
        ms(to_kafka.p50),
        ms(to_kafka.p99),
        to_notification.what,
        to_notification.requests,
        ms(to_notification.p50),
        ms(to_notification.p99),
        date = Utc::now().format("%Y-%m-%d"),
        drained = drained_in.as_secs_f64(),
        idle = idle_window.as_secs_f64(),
    );
    println!("\n{section}");
    if std::env::var("BENCH_WRITE").as_deref() != Ok("0") {
        testkit::benchmarks::write_section("domain", &section).context("writing BENCHMARKS.md")?;
        println!("BENCHMARKS.md updated");
    }
    let outbox: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("outbox_"))
        .collect();
    eprintln!("order-service outbox metrics:\n{}", outbox.join("\n"));
    eprintln!("order-service log, last lines:\n{}", child.log_tail(20));
    if let Ok(file) = std::env::var("BENCH_KEEP_LOG") {
        let _ = std::fs::copy(child.log_path(), &file);
        let _ = std::fs::copy(kafka.log_path(), format!("{file}.tansu"));
    }
    child.stop(Duration::from_secs(10)).await?;
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(())
}

/// CPU seconds (user + system) each watched process has used so far;
/// `None` where its `/proc` entry cannot be read.
fn cpu_seconds(watched: &[(&str, Option<u32>)]) -> Vec<Option<f64>> {
    watched
        .iter()
        .map(|(_, pid)| testkit::benchmarks::cpu_seconds((*pid)?))
        .collect()
}

/// A Markdown table of the CPU each watched process used since `before`:
/// share of one core over `elapsed`, and per order when `orders` > 0.
fn cpu_table(
    watched: &[(&str, Option<u32>)],
    before: &[Option<f64>],
    orders: usize,
    elapsed: Duration,
) -> String {
    let after = cpu_seconds(watched);
    let mut out = if orders > 0 {
        String::from("| process | CPU (share of one core) | CPU per order |\n|---|---|---|\n")
    } else {
        String::from("| process, no orders | CPU (share of one core) |\n|---|---|\n")
    };
    let mut total = 0.0;
    for (((name, _), b), a) in watched.iter().zip(before).zip(&after) {
        let Some(used) = a.zip(*b).map(|(a, b)| a - b) else {
            continue;
        };
        total += used;
        let share = used / elapsed.as_secs_f64() * 100.0;
        if orders > 0 {
            let per = used / orders as f64 * 1e3;
            out.push_str(&format!("| {name} | {share:.0}% | {per:.2} ms |\n"));
        } else {
            out.push_str(&format!("| {name} | {share:.1}% |\n"));
        }
    }
    let share = total / elapsed.as_secs_f64() * 100.0;
    if orders > 0 {
        let per = total / orders as f64 * 1e3;
        out.push_str(&format!("| all of them | {share:.0}% | {per:.2} ms |\n"));
    } else {
        out.push_str(&format!("| all of them | {share:.1}% |\n"));
    }
    out
}

/// MariaDB's global command counters that show client round trips.
const SQL_COUNTERS: [(&str, &str); 9] = [
    (
        "Questions",
        "round trips (every statement and ping a client sent)",
    ),
    ("Com_admin_commands", "pings (a pool checking a connection)"),
    ("Com_begin", "BEGIN"),
    ("Com_commit", "COMMIT"),
    ("Com_rollback", "ROLLBACK"),
    ("Com_insert", "INSERT"),
    ("Com_update", "UPDATE"),
    ("Com_select", "SELECT"),
    ("Com_set_option", "SET"),
];

/// The current values of [`SQL_COUNTERS`].
async fn sql_counters(root: &sqlx::MySqlPool) -> anyhow::Result<HashMap<String, i64>> {
    let rows: Vec<(String, String)> = sqlx::query_as("SHOW GLOBAL STATUS")
        .fetch_all(root)
        .await
        .context("reading MariaDB's status counters")?;
    Ok(rows
        .into_iter()
        .filter(|(k, _)| SQL_COUNTERS.iter().any(|(c, _)| c.eq_ignore_ascii_case(k)))
        .filter_map(|(k, v)| Some((k.to_ascii_lowercase(), v.parse().ok()?)))
        .collect())
}

/// A Markdown table of the counters' growth per order. The root
/// connection's own two `SHOW GLOBAL STATUS` are left out.
fn sql_table(after: &HashMap<String, i64>, before: &HashMap<String, i64>, orders: usize) -> String {
    let mut out = String::from("| statement | per order |\n|---|---|\n");
    for (counter, what) in SQL_COUNTERS {
        let key = counter.to_ascii_lowercase();
        let mut grew =
            after.get(&key).copied().unwrap_or(0) - before.get(&key).copied().unwrap_or(0);
        if counter == "Questions" {
            grew -= 1;
        }
        out.push_str(&format!(
            "| {what} | {:.2} |\n",
            grew as f64 / orders.max(1) as f64
        ));
    }
    out
}

/// order-service's `outbox_pending` gauge.
async fn outbox_pending(http: &reqwest::Client, order: &str) -> anyhow::Result<i64> {
    let text = http
        .get(format!("{order}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("outbox_pending "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}

/// When the bench's consumer first saw an order's event.
struct Arrival {
    /// Received by the bench's consumer.
    at: SystemTime,
    /// The message's timestamp: when the relay handed it to its producer
    /// (librdkafka's CreateTime, milliseconds).
    produced: Option<SystemTime>,
}

/// A consumer reading `order-placed` from the beginning and noting when
/// each key arrived (the first time), until `stop`.
fn spawn_consumer(
    bootstrap: &str,
    stop: CancellationToken,
) -> anyhow::Result<Arc<Mutex<HashMap<String, Arrival>>>> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("bench-{}", uuid::Uuid::new_v4()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()?;
    consumer.subscribe(&[events::ORDER_PLACED_TOPIC])?;
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let out = seen.clone();
    tokio::spawn(async move {
        let mut stream = consumer.stream();
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => return,
                m = stream.next() => m,
            };
            let Some(Ok(m)) = next else { continue };
            let at = SystemTime::now();
            let produced = m
                .timestamp()
                .to_millis()
                .and_then(|ms| u64::try_from(ms).ok())
                .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms));
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            seen.lock().entry(key).or_insert(Arrival { at, produced });
        }
    });
    Ok(out)
}

/// The p50/p99 of each hop of the paced orders, as a Markdown table:
/// client send → 201 answer (inventory, the order's transaction, the
/// answer), 201 → the relay hands the event to its producer (relay wake-up
/// and the outbox read; the commit precedes the answer by a hair), producer
/// → the bench's consumer (linger, the broker's write and acknowledgement,
/// the fetch), producer → notification stored (the same through
/// notification-service's consumer and its insert).
fn hop_table(
    started: &HashMap<String, SystemTime>,
    answered: &HashMap<String, SystemTime>,
    received: &HashMap<String, Arrival>,
    notified: &HashMap<String, DateTime<Utc>>,
) -> String {
    let span = |from: SystemTime, to: SystemTime| to.duration_since(from).unwrap_or_default();
    let mut hops: [(&str, Vec<Duration>); 4] = [
        ("client send → 201 answer", Vec::new()),
        (
            "201 answer → relay hands the event to its producer",
            Vec::new(),
        ),
        ("producer → event received by a Kafka consumer", Vec::new()),
        ("producer → notification stored", Vec::new()),
    ];
    for (n, t0) in started {
        let a = answered.get(n);
        let produced = received.get(n).and_then(|r| r.produced);
        if let Some(a) = a {
            hops[0].1.push(span(*t0, *a));
            if let Some(p) = produced {
                hops[1].1.push(span(*a, p));
            }
        }
        if let (Some(p), Some(r)) = (produced, received.get(n)) {
            hops[2].1.push(span(p, r.at));
        }
        if let (Some(p), Some(s)) = (produced, notified.get(n)) {
            hops[3].1.push(span(p, (*s).into()));
        }
    }
    let mut out = String::from("| hop | orders | p50 | p99 |\n|---|---|---|---|\n");
    for (what, mut lat) in hops {
        lat.sort();
        out.push_str(&format!(
            "| {what} | {} | {} | {} |\n",
            lat.len(),
            ms(pct(&lat, 0.50)),
            ms(pct(&lat, 0.99))
        ));
    }
    out
}

/// Notification `sentAt` of every paced order that was notified.
async fn notification_times(
    http: &reqwest::Client,
    base: &str,
    started: &HashMap<String, SystemTime>,
) -> anyhow::Result<HashMap<String, DateTime<Utc>>> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut sent: HashMap<String, DateTime<Utc>> = HashMap::new();
    while sent.len() < started.len() && Instant::now() < deadline {
        sent.clear();
        let mut page = 0;
        loop {
            let v: Value = http
                .get(format!("{base}/api/notifications?page={page}&size=100"))
                .send()
                .await?
                .json()
                .await?;
            let items = v["items"].as_array().cloned().unwrap_or_default();
            for n in &items {
                if let (Some(o), Some(at)) = (n["orderNumber"].as_str(), n["sentAt"].as_str())
                    && started.contains_key(o)
                    && let Ok(at) = DateTime::parse_from_rfc3339(at)
                {
                    sent.insert(o.to_string(), at.with_timezone(&Utc));
                }
            }
            page += 1;
            if items.is_empty() || page as u64 >= v["totalPages"].as_u64().unwrap_or(0) {
                break;
            }
        }
        if sent.len() < started.len() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    if sent.len() < started.len() {
        let first: Value = http
            .get(format!("{base}/api/notifications?page=0&size=5"))
            .send()
            .await?
            .json()
            .await?;
        eprintln!(
            "only {} of {} paced orders were notified within 120 s; newest notifications: {first}",
            sent.len(),
            started.len()
        );
    }
    Ok(sent)
}
