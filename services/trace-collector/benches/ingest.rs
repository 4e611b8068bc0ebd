//! Collector ingest benchmark: spans/s over HTTP (JSON and gzip), memory per
//! stored span, steady state at the span limit, and query latency at size,
//! with two baselines measured in the same run (decode-only throughput in
//! process, and empty `[]` uploads for the HTTP floor).
//!
//! Run (release build, about a minute on 2 cores):
//!
//! ```text
//! cargo bench -p trace-collector --bench ingest
//! ```
//!
//! It starts the real `trace-collector` binary (release) on a free loopback
//! port, with registration off, and drives it from a load generator in this
//! process (4 concurrent keep-alive connections, 256 spans per upload, like
//! an OpenTelemetry batch exporter). Spans imitate one order through the
//! platform: 10 spans over 5 services, OpenTelemetry-style tags
//! (`http.*`, `db.*`, `messaging.*`, `code.*`, `busy_ns`...), unique ids.
//!
//! Memory per span is the collector's resident set growth divided by the
//! spans stored (so it includes indexes, interning and allocator overhead).
//!
//! Environment: `BENCH_SPANS` (default 200000) spans per phase;
//! `BENCH_NO_WRITE=1` prints without updating BENCHMARKS.md. The results
//! replace the `tracing/collector` sub-section inside the `tracing` section.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

const BATCH: usize = 256;
const CONCURRENCY: usize = 4;

/// A tiny xorshift generator: reproducible ids without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn nonzero(&mut self) -> u64 {
        loop {
            let v = self.next();
            if v != 0 {
                return v;
            }
        }
    }
}

struct Svc {
    name: &'static str,
    ip: &'static str,
    port: u16,
}

const GATEWAY: Svc = Svc {
    name: "api-gateway",
    ip: "172.18.0.5",
    port: 8080,
};
const ORDER: Svc = Svc {
    name: "order-service",
    ip: "172.18.0.6",
    port: 8082,
};
const INVENTORY: Svc = Svc {
    name: "inventory-service",
    ip: "172.18.0.7",
    port: 8083,
};
const NOTIFICATION: Svc = Svc {
    name: "notification-service",
    ip: "172.18.0.8",
    port: 8084,
};

fn endpoint(s: &Svc) -> String {
    format!(
        r#"{{"serviceName":"{}","ipv4":"{}","port":{}}}"#,
        s.name, s.ip, s.port
    )
}

fn remote(name: &str) -> String {
    format!(r#","remoteEndpoint":{{"serviceName":"{name}"}}"#)
}

/// Tags every span gets from tracing-opentelemetry.
fn code_tags(rng: &mut Rng, module: &str, line: u32) -> String {
    format!(
        r#""code.filepath":"services/{module}/src/handlers.rs","code.lineno":"{line}","code.namespace":"{module}::handlers","thread.id":"{}","thread.name":"tokio-runtime-worker","busy_ns":"{}","idle_ns":"{}","otel.library.name":"tracing-opentelemetry","otel.library.version":"0.34.0""#,
        rng.next() % 4 + 1,
        rng.next() % 900_000 + 10_000,
        rng.next() % 5_000_000
    )
}

/// One order's trace: 10 spans over 5 services, as JSON objects.
fn order_trace(rng: &mut Rng, start_us: u64, out: &mut Vec<String>) {
    let trace = format!("{:016x}{:016x}", rng.nonzero(), rng.nonzero());
    let ids: Vec<u64> = (0..10).map(|_| rng.nonzero()).collect();
    let order_no = format!("{:08x}-{:04x}", rng.next() as u32, rng.next() as u16);
    let span = |id: usize,
                parent: Option<usize>,
                kind: Option<&str>,
                name: &str,
                offset: u64,
                dur: u64,
                local: &Svc,
                rest: String| {
        let parent = parent
            .map(|p| format!(r#","parentId":"{:016x}""#, ids[p]))
            .unwrap_or_default();
        let kind = kind
            .map(|k| format!(r#","kind":"{k}""#))
            .unwrap_or_default();
        format!(
            r#"{{"traceId":"{trace}"{parent},"id":"{:016x}"{kind},"name":"{name}","timestamp":{},"duration":{dur},"localEndpoint":{}{rest}}}"#,
            ids[id],
            start_us + offset,
            endpoint(local)
        )
    };
    let t = |rng: &mut Rng, module: &str, line: u32, extra: &str| -> String {
        format!(r#","tags":{{{extra}{}}}"#, code_tags(rng, module, line))
    };
    let tags = t(
        rng,
        "api_gateway",
        88,
        r#""http.method":"POST","http.route":"/api/order","http.status_code":"201","http.scheme":"http","net.peer.ip":"172.18.0.1","user_agent.original":"curl/7.88.1","#,
    );
    out.push(span(
        0,
        None,
        Some("SERVER"),
        "POST /api/order",
        0,
        48_000,
        &GATEWAY,
        tags,
    ));
    let tags = t(
        rng,
        "api_gateway",
        140,
        r#""http.method":"POST","http.url":"http://order-service:8082/api/order","http.status_code":"201","#,
    );
    out.push(span(
        1,
        Some(0),
        Some("CLIENT"),
        "POST",
        900,
        46_000,
        &GATEWAY,
        format!("{}{tags}", remote("order-service")),
    ));
    let tags = t(
        rng,
        "order_service",
        52,
        r#""http.method":"POST","http.route":"/api/order","http.status_code":"201","#,
    );
    out.push(span(
        2,
        Some(1),
        Some("SERVER"),
        "POST /api/order",
        1_400,
        44_000,
        &ORDER,
        tags,
    ));
    let tags = t(
        rng,
        "order_service",
        77,
        &format!(r#""order.number":"{order_no}","order.items":"2","#),
    );
    out.push(span(
        3,
        Some(2),
        None,
        "place_order",
        1_600,
        42_000,
        &ORDER,
        tags,
    ));
    let tags = t(
        rng,
        "order_service",
        121,
        r#""http.method":"GET","http.url":"http://inventory-service:8083/api/inventory?skuCode=iphone_15&skuCode=pixel_8","http.status_code":"200","#,
    );
    out.push(span(
        4,
        Some(3),
        Some("CLIENT"),
        "GET",
        2_000,
        9_000,
        &ORDER,
        format!("{}{tags}", remote("inventory-service")),
    ));
    let tags = t(
        rng,
        "inventory_service",
        40,
        r#""http.method":"GET","http.route":"/api/inventory","http.status_code":"200","#,
    );
    out.push(span(
        5,
        Some(4),
        Some("SERVER"),
        "GET /api/inventory",
        2_600,
        7_500,
        &INVENTORY,
        tags,
    ));
    let tags = t(
        rng,
        "inventory_service",
        63,
        r#""db.system":"mysql","db.name":"inventory","db.operation":"SELECT","db.statement":"SELECT sku_code, quantity FROM inventory WHERE sku_code IN (?, ?)","#,
    );
    out.push(span(
        6,
        Some(5),
        Some("CLIENT"),
        "SELECT inventory",
        3_000,
        5_200,
        &INVENTORY,
        format!("{}{tags}", remote("mysql")),
    ));
    let tags = t(
        rng,
        "order_service",
        98,
        r#""db.system":"mysql","db.name":"order","db.operation":"INSERT","db.statement":"INSERT INTO orders (order_number, sku_code, price, quantity) VALUES (?, ?, ?, ?)","#,
    );
    out.push(span(
        7,
        Some(3),
        Some("CLIENT"),
        "INSERT orders",
        12_000,
        21_000,
        &ORDER,
        format!("{}{tags}", remote("mysql")),
    ));
    let tags = t(
        rng,
        "order_service",
        160,
        &format!(
            r#""messaging.system":"kafka","messaging.destination.name":"order-placed","messaging.kafka.message.key":"{order_no}","#
        ),
    );
    out.push(span(
        8,
        Some(3),
        Some("PRODUCER"),
        "order-placed send",
        36_000,
        2_500,
        &ORDER,
        format!("{}{tags}", remote("kafka")),
    ));
    let tags = t(
        rng,
        "notification_service",
        31,
        r#""messaging.system":"kafka","messaging.destination.name":"order-placed","messaging.kafka.consumer.group":"notification-service","#,
    );
    out.push(span(
        9,
        Some(8),
        Some("CONSUMER"),
        "order-placed receive",
        52_000,
        6_000,
        &NOTIFICATION,
        format!(
            r#"{},"annotations":[{{"timestamp":{},"value":"email sent"}}]{tags}"#,
            remote("kafka"),
            start_us + 57_000
        ),
    ));
}

/// Upload bodies of `BATCH` spans each, `total` spans in all.
fn make_batches(total: usize, seed: u64) -> Vec<Bytes> {
    let mut rng = Rng(seed);
    let now_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    let mut spans = Vec::with_capacity(total + 10);
    let mut i = 0u64;
    while spans.len() < total {
        // Orders spread over the last ten minutes, oldest first.
        order_trace(&mut rng, now_us - 600_000_000 + i * 1_000, &mut spans);
        i += 1;
    }
    spans.truncate(total);
    spans
        .chunks(BATCH)
        .map(|c| Bytes::from(format!("[{}]", c.join(","))))
        .collect()
}

fn gzip_all(batches: &[Bytes]) -> Vec<Bytes> {
    batches
        .iter()
        .map(|b| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            let _ = e.write_all(b);
            Bytes::from(e.finish().unwrap_or_default())
        })
        .collect()
}

fn rss_bytes(pid: u32) -> u64 {
    testkit::benchmarks::status_bytes(pid, "VmRSS").unwrap_or(0)
}

/// The collector binary as a child process; killed (by its own handle) on drop.
struct Collector {
    child: Child,
    base: String,
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Collector {
    async fn start(max_spans: usize, client: &reqwest::Client) -> Collector {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let child = Command::new(env!("CARGO_BIN_EXE_trace-collector"))
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .env("REGISTRY_DISABLED", "true")
            .env("MAX_SPANS", max_spans.to_string())
            .env("ADMIN_TOKEN", "bench")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start trace-collector");
        let c = Collector {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        for _ in 0..200 {
            if let Ok(r) = client.get(format!("{}/health/ready", c.base)).send().await
                && r.status().is_success()
            {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("trace-collector did not become ready");
    }

    fn rss(&self) -> u64 {
        rss_bytes(self.child.id())
    }

    async fn metric(&self, client: &reqwest::Client, name: &str) -> f64 {
        let text = client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(f64::NAN)
    }
}

/// Posts every body with `CONCURRENCY` connections; returns the elapsed time.
async fn post_all(
    client: &reqwest::Client,
    url: &str,
    bodies: Arc<Vec<Bytes>>,
    gzip: bool,
) -> Duration {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let client = client.clone();
            let url = url.to_string();
            let bodies = bodies.clone();
            let next = next.clone();
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else { break };
                    let mut req = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone());
                    if gzip {
                        req = req.header("content-encoding", "gzip");
                    }
                    let res = req.send().await.expect("upload");
                    assert_eq!(res.status().as_u16(), 202, "upload refused");
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("worker");
    }
    start.elapsed()
}

async fn median_latency(client: &reqwest::Client, url: &str, n: usize) -> Duration {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let res = client.get(url).send().await.expect("query");
        assert!(res.status().is_success(), "{url}: {}", res.status());
        let _ = res.bytes().await;
        times.push(t.elapsed());
    }
    times.sort();
    times[n / 2]
}

fn mib(b: f64) -> f64 {
    b / (1024.0 * 1024.0)
}

fn main() {
    // `cargo test --all-targets` and test runners listing tests also start
    // this binary; only `cargo bench` (which passes --bench) runs it.
    if !std::env::args().any(|a| a == "--bench") {
        println!("ingest benchmark: run it with `cargo bench -p trace-collector --bench ingest`");
        return;
    }
    let total: usize = std::env::var("BENCH_SPANS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let report = rt.block_on(run(total));
    println!("{report}");
    if std::env::var_os("BENCH_NO_WRITE").is_none() {
        match testkit::benchmarks::write_section("tracing/collector", &report) {
            Ok(path) => println!("updated {}", path.display()),
            Err(e) => eprintln!("BENCHMARKS.md not updated: {e}"),
        }
    }
}

/// The 1-minute load average, to tell a quiet run from one sharing the cores.
fn load_average() -> String {
    testkit::benchmarks::load_average()
        .and_then(|l| l.split(' ').next().map(String::from))
        .unwrap_or_else(|| "unknown".into())
}

async fn run(total: usize) -> String {
    let load_at_start = load_average();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .expect("client");

    // Load, generated before anything is timed.
    let json = Arc::new(make_batches(total, 0x5eed_1234_abcd_ef01));
    let json2 = Arc::new(make_batches(total, 0x0ddb_a11c_afe0_0001));
    let gz = Arc::new(gzip_all(&json2));
    let json_bytes: usize = json.iter().map(|b| b.len()).sum();
    let gz_bytes: usize = gz.iter().map(|b| b.len()).sum();
    let bytes_per_span = json_bytes as f64 / total as f64;

    // Baseline 1: decode and validate only, in process, one thread.
    let t = Instant::now();
    let mut decoded = 0usize;
    for b in json.iter() {
        decoded += trace_collector::decode::decode_json(b, Default::default())
            .expect("valid spans")
            .len();
    }
    let decode_rate = decoded as f64 / t.elapsed().as_secs_f64();
    assert_eq!(decoded, total, "every generated span decodes");
    let t = Instant::now();
    let mut decoded = 0usize;
    for b in gz.iter() {
        let raw = trace_collector::api::gunzip(b, usize::MAX).expect("gzip");
        decoded += trace_collector::decode::decode_json(&raw, Default::default())
            .expect("valid")
            .len();
    }
    assert_eq!(decoded, total, "every gzipped span decodes");
    let gunzip_decode_rate = total as f64 / t.elapsed().as_secs_f64();

    // Phase A: JSON uploads into a store large enough to keep everything.
    let c = Collector::start(total * 2, &client).await;
    let url = format!("{}/api/v2/spans", c.base);
    // Baseline 2: the HTTP floor, empty lists (no spans to decode or store).
    let empties = Arc::new(vec![Bytes::from_static(b"[]"); 20_000]);
    post_all(&client, &url, empties.clone(), false).await; // warm-up
    let rss_before = c.rss();
    let empty_time = post_all(&client, &url, empties.clone(), false).await;
    let empty_rate = empties.len() as f64 / empty_time.as_secs_f64();
    let json_time = post_all(&client, &url, json.clone(), false).await;
    let json_rate = total as f64 / json_time.as_secs_f64();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_after = c.rss();
    let stored = c.metric(&client, "trace_collector_spans_stored").await;
    let estimated = c
        .metric(&client, "trace_collector_span_bytes_estimated")
        .await;
    let rss_per_span = (rss_after.saturating_sub(rss_before)) as f64 / stored;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let traces_q = median_latency(&client, &format!("{}/api/v2/traces?limit=10", c.base), 21).await;
    let service_q = median_latency(
        &client,
        &format!("{}/api/v2/traces?serviceName=notification-service&annotationQuery=messaging.system%3Dkafka&limit=10", c.base),
        21,
    )
    .await;
    let deps_q = median_latency(
        &client,
        &format!(
            "{}/api/v2/dependencies?endTs={now_ms}&lookback=3600000",
            c.base
        ),
        5,
    )
    .await;
    drop(c);

    // Phase B: gzip uploads into a fresh collector.
    let c = Collector::start(total * 2, &client).await;
    let url = format!("{}/api/v2/spans", c.base);
    post_all(&client, &url, empties.clone(), false).await;
    let gz_time = post_all(&client, &url, gz.clone(), true).await;
    let gz_rate = total as f64 / gz_time.as_secs_f64();
    drop(c);

    // Phase C: steady state at the limit: a store of total/4 spans fed 2x total spans.
    let limit = total / 4;
    let c = Collector::start(limit, &client).await;
    let url = format!("{}/api/v2/spans", c.base);
    post_all(&client, &url, empties.clone(), false).await;
    let rss_empty = c.rss();
    let mut evict_time = post_all(&client, &url, json.clone(), false).await;
    evict_time += post_all(&client, &url, json2.clone(), false).await;
    let evict_rate = (2 * total) as f64 / evict_time.as_secs_f64();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_full = c.rss();
    let stored_c = c.metric(&client, "trace_collector_spans_stored").await;
    let evicted = c
        .metric(&client, "trace_collector_spans_evicted_total")
        .await;
    let steady_per_span = (rss_full.saturating_sub(rss_empty)) as f64 / stored_c;
    drop(c);

    let mut r = String::new();
    let _ = writeln!(r, "### Collector\n");
    let _ = writeln!(
        r,
        "Ingest into the trace-collector over HTTP on loopback, measured by \
         `cargo bench -p trace-collector --bench ingest` (release build; the load generator \
         shares the 2 cores with the collector). Load: {total} spans per phase, one order \
         through the platform per 10 spans (5 services, OpenTelemetry-style tags), \
         {BATCH} spans per upload, {CONCURRENCY} concurrent connections; {bytes_per_span:.0} bytes \
         of JSON per span, {:.0} gzipped. Load average (1 min) at start {load_at_start}, at end {}: \
         other work on the machine lowers the throughput figures, not the memory ones.\n",
        gz_bytes as f64 / total as f64,
        load_average()
    );
    let _ = writeln!(r, "| measurement | result |");
    let _ = writeln!(r, "| --- | --- |");
    let _ = writeln!(
        r,
        "| baseline: decode + validate only, in process, 1 thread | {decode_rate:.0} spans/s ({:.0} MiB/s) |",
        mib(decode_rate * bytes_per_span)
    );
    let _ = writeln!(
        r,
        "| baseline: gunzip + decode + validate only, 1 thread | {gunzip_decode_rate:.0} spans/s |"
    );
    let _ = writeln!(
        r,
        "| baseline: empty uploads (`[]`), HTTP floor | {empty_rate:.0} uploads/s ({:.0} spans/s at {BATCH} per upload) |",
        empty_rate * BATCH as f64
    );
    let _ = writeln!(
        r,
        "| ingest JSON (`POST /api/v2/spans`, 202) | **{json_rate:.0} spans/s** ({:.0} MiB/s) |",
        mib(json_rate * bytes_per_span)
    );
    let _ = writeln!(
        r,
        "| ingest gzip JSON (`Content-Encoding: gzip`) | **{gz_rate:.0} spans/s** |"
    );
    let _ = writeln!(
        r,
        "| ingest at the limit (MAX_SPANS={limit}, evicting oldest traces) | {evict_rate:.0} spans/s, {evicted:.0} evicted |"
    );
    let _ = writeln!(
        r,
        "| memory per stored span (RSS growth / {stored:.0} spans) | **{rss_per_span:.0} bytes** (service's own estimate of span structs: {:.0} B; Zipkin in-memory ≈ 1 KB) |",
        estimated / stored
    );
    let _ = writeln!(
        r,
        "| RSS at the limit ({stored_c:.0} spans stored) | {:.1} MiB ({:.1} MiB idle), {:.0} bytes per span |",
        mib(rss_full as f64),
        mib(rss_empty as f64),
        steady_per_span
    );
    let _ = writeln!(
        r,
        "| query at {stored:.0} spans: `/api/v2/traces?limit=10`, median | {:.2} ms |",
        traces_q.as_secs_f64() * 1000.0
    );
    let _ = writeln!(
        r,
        "| query: `serviceName` + `annotationQuery`, median | {:.2} ms |",
        service_q.as_secs_f64() * 1000.0
    );
    let _ = writeln!(
        r,
        "| `/api/v2/dependencies` over all {stored:.0} spans, median | {:.0} ms |",
        deps_q.as_secs_f64() * 1000.0
    );
    let _ = writeln!(
        r,
        "\nThe default MAX_SPANS is 500000 (Zipkin's MEM_MAX_SPANS): about {:.0} MiB for a store \
         filled once, up to about {:.0} MiB once eviction churns it (freed span memory is \
         fragmented, so the steady state costs more per span). Stacks that need less can set \
         MAX_SPANS.",
        mib(500_000.0 * rss_per_span),
        mib(500_000.0 * steady_per_span)
    );
    r
}
