//! The Kafka-API brokers side by side, in one run on one machine: the workspace's own
//! kafka-broker (the dev stack's since it replaced nisshi), nisshi 0.6.0, and tansu 0.6.0 (the
//! baseline nisshi replaced),
//! each a throwaway testkit broker on loopback, clients from librdkafka (rdkafka) in this process.
//!
//! Per broker:
//! - produce → consume latency at 100 messages/s paced (one consumer group member, 3
//!   partitions), at several `fetch.wait.max.ms` values: the trade-off between the fetch wait,
//!   delivery latency and the broker's CPU while a consumer waits on an idle topic;
//! - the broker's CPU (share of one core) and RSS while one consumer waits on an idle topic;
//! - producer throughput (idempotent, acks=all) as fast as the broker takes it.
//!
//! `cargo bench -p testkit --bench brokers` (a few minutes; rewrites the `brokers` section of
//! BENCHMARKS.md unless `BENCH_WRITE=0`). Knobs: `BENCH_IDLE_SECS` (default 20),
//! `BENCH_PACED` (messages per latency run, default 1000), `BENCH_BURST` (default 20000).
//! tansu is skipped (and said so) when `.tools/bin/tansu` is absent (`./install.sh --with-tansu`);
//! kafka-broker is measured from the newest build in the target directory (build it with
//! `cargo build --release -p kafka-broker` first). `BENCH_BROKERS=kafka-broker,nisshi` measures
//! only those.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use testkit::benchmarks::{cpu_model, cpu_seconds, env_u64, load_average, status_bytes};
use testkit::{Broker, BrokerKind};

/// Fetch waits compared (ms); 500 is librdkafka's default.
const WAITS: [u64; 4] = [10, 50, 100, 500];
const TOPIC: &str = "bench";

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    if let Err(e) = runtime.block_on(run()) {
        eprintln!("brokers bench failed: {e}");
        std::process::exit(1);
    }
}

/// One broker's figures.
struct Figures {
    kind: BrokerKind,
    /// Per fetch wait: (idle CPU %, p50 ms, p99 ms, max ms).
    waits: Vec<(u64, f64, f64, f64, f64)>,
    idle_rss_mib: f64,
    /// Messages/s and p99 acknowledgement latency of the burst.
    burst: (f64, f64),
}

async fn run() -> Result<(), String> {
    let idle_secs = env_u64("BENCH_IDLE_SECS", 20);
    let paced = env_u64("BENCH_PACED", 1000);
    let burst = env_u64("BENCH_BURST", 20000);
    let started = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let load_before = load_average().unwrap_or_default();
    let mut all = Vec::new();
    let mut skipped = Vec::new();
    let only = std::env::var("BENCH_BROKERS").unwrap_or_default();
    let only: Vec<&str> = only
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    for kind in BrokerKind::ALL {
        if !only.is_empty() && !only.contains(&kind.name()) {
            skipped.push(format!("{kind}: not in BENCH_BROKERS, not measured"));
            continue;
        }
        if kind.binary().is_err() {
            skipped.push(format!("{kind}: binary not installed, not measured"));
            continue;
        }
        println!("== {kind}");
        all.push(measure(kind, idle_secs, paced, burst).await?);
    }
    let load_after = load_average().unwrap_or_default();
    let report = render(
        &all,
        &skipped,
        idle_secs,
        paced,
        burst,
        &started,
        &load_before,
        &load_after,
    );
    println!("{report}");
    if env_u64("BENCH_WRITE", 1) == 1 {
        let path =
            testkit::benchmarks::write_section("brokers", &report).map_err(|e| e.to_string())?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

async fn measure(
    kind: BrokerKind,
    idle_secs: u64,
    paced: u64,
    burst: u64,
) -> Result<Figures, String> {
    let broker = Broker::start_kind(kind).await.map_err(|e| e.to_string())?;
    broker
        .create_topic(TOPIC, 3)
        .await
        .map_err(|e| e.to_string())?;
    let pid = broker.pid().ok_or("the broker is not running")?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap_servers())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "1")
        .create()
        .map_err(|e| e.to_string())?;
    // Warm up: metadata, producer id, the topic's first writes.
    send(&producer, 0).await?;

    let mut waits = Vec::new();
    let mut idle_rss = 0.0;
    for wait in WAITS {
        let group = format!("g-{wait}");
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", broker.bootstrap_servers())
            .set("group.id", &group)
            .set("auto.offset.reset", "latest")
            .set("enable.auto.commit", "true")
            .set("session.timeout.ms", "10000")
            .set("fetch.wait.max.ms", wait.to_string())
            .create()
            .map_err(|e| e.to_string())?;
        consumer.subscribe(&[TOPIC]).map_err(|e| e.to_string())?;
        wait_assigned(&consumer).await?;
        let latencies = Arc::new(Mutex::new(Vec::new()));
        let receiving = {
            let latencies = latencies.clone();
            async move {
                loop {
                    match consumer.recv().await {
                        Ok(m) => {
                            let received = now_micros();
                            if let Some(sent) = m
                                .payload()
                                .and_then(|p| std::str::from_utf8(p).ok()?.parse::<u64>().ok())
                                && sent > 0
                            {
                                latencies.lock().push(received.saturating_sub(sent));
                            }
                        }
                        Err(e) => eprintln!("consumer: {e}"),
                    }
                }
            }
        };
        let measuring = async {
            // Idle: the consumer waits on a topic nobody writes to.
            let secs = if wait == 500 {
                idle_secs
            } else {
                idle_secs.min(10)
            };
            tokio::time::sleep(Duration::from_secs(2)).await;
            let cpu0 = cpu_seconds(pid).unwrap_or_default();
            let t0 = Instant::now();
            tokio::time::sleep(Duration::from_secs(secs)).await;
            let idle_cpu =
                (cpu_seconds(pid).unwrap_or_default() - cpu0) / t0.elapsed().as_secs_f64() * 100.0;
            let rss = status_bytes(pid, "VmRSS").unwrap_or_default() as f64 / 1048576.0;
            // Paced: 100 messages a second.
            let n = if wait == 500 { paced } else { paced.min(500) };
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            for _ in 0..n {
                tick.tick().await;
                send(&producer, now_micros()).await?;
            }
            // Let the last ones arrive (at most a few fetch waits).
            tokio::time::sleep(Duration::from_millis(3 * wait + 500)).await;
            Ok::<_, String>((idle_cpu, rss))
        };
        let (idle_cpu, rss) = tokio::select! {
            r = measuring => r?,
            _ = receiving => unreachable!("the receive loop never ends"),
        };
        let mut l = latencies.lock().clone();
        l.sort_unstable();
        let pct = |q: f64| {
            l.get(((l.len() as f64 - 1.0) * q).round() as usize)
                .map_or(f64::NAN, |v| *v as f64 / 1000.0)
        };
        println!(
            "  fetch wait {wait} ms: idle CPU {idle_cpu:.1} %, {} received, p50 {:.1} ms, p99 {:.1} ms",
            l.len(),
            pct(0.5),
            pct(0.99)
        );
        waits.push((wait, idle_cpu, pct(0.5), pct(0.99), pct(1.0)));
        if wait == 500 {
            idle_rss = rss;
        }
    }

    // Burst: as fast as the broker acknowledges, 256 in flight.
    let started = Instant::now();
    let acks = Arc::new(Mutex::new(Vec::with_capacity(burst as usize)));
    let mut inflight = tokio::task::JoinSet::new();
    for _ in 0..burst {
        while inflight.len() >= 256 {
            let _ = inflight.join_next().await;
        }
        let producer = producer.clone();
        let acks = acks.clone();
        inflight.spawn(async move {
            let t = Instant::now();
            if send(&producer, 0).await.is_ok() {
                acks.lock().push(t.elapsed().as_micros() as u64);
            }
        });
    }
    while inflight.join_next().await.is_some() {}
    let elapsed = started.elapsed().as_secs_f64();
    let mut a = acks.lock().clone();
    a.sort_unstable();
    let p99 = a
        .get(((a.len() as f64 - 1.0) * 0.99) as usize)
        .map_or(f64::NAN, |v| *v as f64 / 1000.0);
    let rate = a.len() as f64 / elapsed;
    println!("  burst: {rate:.0} messages/s, ack p99 {p99:.1} ms");
    Ok(Figures {
        kind,
        waits,
        idle_rss_mib: idle_rss,
        burst: (rate, p99),
    })
}

/// Sends one message whose payload is `stamp` (microseconds since the epoch, 0 for none).
async fn send(producer: &FutureProducer, stamp: u64) -> Result<(), String> {
    let payload = stamp.to_string();
    let key = format!("k{}", stamp % 97);
    producer
        .send(
            FutureRecord::to(TOPIC).key(&key).payload(&payload),
            Duration::from_secs(30),
        )
        .await
        .map(|_| ())
        .map_err(|(e, _)| e.to_string())
}

async fn wait_assigned(consumer: &StreamConsumer) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    // Polling drives the group join; nothing is produced yet, so nothing is lost.
    while consumer.assignment().map(|a| a.count()).unwrap_or(0) < 3 {
        if Instant::now() > deadline {
            return Err("the consumer never got the topic's 3 partitions".into());
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), consumer.recv()).await;
    }
    Ok(())
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[allow(clippy::too_many_arguments)]
fn render(
    all: &[Figures],
    skipped: &[String],
    idle_secs: u64,
    paced: u64,
    burst: u64,
    date: &str,
    load_before: &str,
    load_after: &str,
) -> String {
    let mut out = String::new();
    out.push_str("## brokers: nisshi 0.6.0, tansu 0.6.0 and kafka-broker\n\n");
    out.push_str(&format!(
        "Run: `cargo bench -p testkit --bench brokers` (a few minutes; loopback only; rewrites this section). \
         Measured {date} on {}, 2 cores; load average {load_before} before, {load_after} after (other work on the \
         machine shows here: figures from a busy machine are noise, re-measure on a quiet one). Each broker is a \
         throwaway testkit broker (release binary; SQLite storage for nisshi and tansu, segment files for \
         kafka-broker, in a temp dir), all measured in this run; \
         clients are librdkafka 2.12 (rdkafka) in the benchmark process: one consumer-group member on a \
         3-partition topic, an idempotent producer with acks=all.\n\n",
        cpu_model().unwrap_or_else(|| "this machine".into())
    ));
    for s in skipped {
        out.push_str(&format!("Skipped: {s}.\n\n"));
    }
    out.push_str(&format!(
        "Produce → consume latency at 100 messages/s paced ({paced} messages at 500 ms, 500 at the others), and the \
         broker's CPU while the consumer waits on an idle topic ({idle_secs} s at 500 ms, 10 s at the others):\n\n"
    ));
    out.push_str("| broker | fetch.wait.max.ms | idle CPU (% of one core) | p50 | p99 | max |\n|---|---|---|---|---|---|\n");
    for f in all {
        for (wait, cpu, p50, p99, max) in &f.waits {
            out.push_str(&format!(
                "| {} | {wait} | {cpu:.1} % | {p50:.1} ms | {p99:.1} ms | {max:.1} ms |\n",
                f.kind
            ));
        }
    }
    out.push_str(&format!(
        "\nIdle RSS (one consumer waiting, 500 ms) and producer throughput ({burst} messages, 256 in flight):\n\n\
         | broker | RSS | messages/s | ack p99 |\n|---|---|---|---|\n"
    ));
    for f in all {
        out.push_str(&format!(
            "| {} | {:.1} MiB | {:.0} | {:.1} ms |\n",
            f.kind, f.idle_rss_mib, f.burst.0, f.burst.1
        ));
    }
    out.push_str(
        "\nWhy the fetch wait still matters with nisshi: its Fetch reads the partitions, and when it finds less than \
         `fetch.min.bytes` it sleeps half of the remaining wait before it looks again \
         (`nisshi-storage/src/service/fetch.rs`, the loop in `FetchService::fetch`, `sleep(remaining / 2)`), so a \
         message written just after a look waits up to half the fetch wait; each look is a metadata read plus a \
         read per partition on SQLite, which is the idle CPU above. tansu 0.6 did the same, but slept before its \
         first look, so every fetch lasted about the whole wait.\n",
    );
    out
}
