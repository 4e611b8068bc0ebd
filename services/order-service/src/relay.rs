//! The outbox relay: publishes unsent outbox rows to Kafka, at least once.
//!
//! One loop per instance. Each pass, in one READ COMMITTED transaction,
//! locks a batch of unsent rows with `SELECT ... FOR UPDATE SKIP LOCKED`
//! (MariaDB ≥ 10.6), so several order-service instances share the work
//! without publishing the same row at the same time and without blocking
//! each other; READ COMMITTED keeps InnoDB from taking gap locks, so new
//! orders are never blocked behind the relay. It hands the batch to the
//! idempotent producer (`enable.idempotence=true`, `acks=all`), waits for
//! every delivery report, marks the acknowledged rows sent and commits.
//!
//! Why nothing is lost: a row is marked sent only after the broker
//! acknowledged it. A crash before the mark leaves the row unsent, and it
//! is published again after the restart: a duplicate at worst, which
//! consumers absorb by event id. While the broker is down a pass gives up
//! after `send_timeout`, the rows stay unsent, the relay renews its
//! producer, backs off and tries again; orders keep being accepted
//! meanwhile, because placing an order only writes to MySQL.
//!
//! The relay wakes at once when an order commits ([`Relay::waker`]) and
//! also polls, so rows written by another instance or left by a crash are
//! found without a wake-up.
//!
//! The relay has its own few connections (one per worker and one for the
//! depth gauges, [`relay_pool`]), set to READ COMMITTED once when opened, so
//! a pass costs BEGIN, SELECT, UPDATE and COMMIT and nothing more.
//!
//! Tracing: each published event is a PRODUCER span (`send order-placed`,
//! from handing the message to the producer to the broker's acknowledgement)
//! whose parent is the trace context stored with the outbox row when the
//! order was placed, so the publish joins the order's trace however late it
//! happens; the producer span's context goes into the message headers
//! (beside the events crate's), and the consumer continues from it. The
//! relay's own queries (lock a batch, mark it sent) serve many orders at
//! once and run on every poll: they get no span, or every idle poll would
//! start a trace.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{NaiveDateTime, Utc};
use futures::future::join_all;
use kit::backoff::Backoff;
use kit::metrics::Metrics;
use parking_lot::RwLock;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use rdkafka::ClientConfig;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::{Acquire, Executor, QueryBuilder, Row};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How the relay behaves.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    pub bootstrap_servers: String,
    /// Partitions of `order-placed` when the relay creates it.
    pub topic_partitions: i32,
    /// Poll interval when no order wakes the relay.
    pub poll_interval: Duration,
    /// Rows per pass.
    pub batch_size: u32,
    /// How long a pass waits for the broker's acknowledgements before it
    /// gives up on the batch and renews the producer.
    pub send_timeout: Duration,
    /// The producer's `linger.ms`.
    pub linger: Duration,
    /// Kafka client id.
    pub client_id: String,
    /// Concurrent relay workers in this instance.
    pub workers: usize,
}

/// The relay's figures in `/metrics`.
#[derive(Clone)]
struct RelayMetrics {
    /// Unsent outbox rows (outbox depth), refreshed after every pass.
    pending: Gauge,
    /// Age of the oldest unsent row in seconds.
    oldest_age: Gauge<f64, AtomicU64>,
    published: Counter,
    failures: Counter,
    /// Commit of the order → broker acknowledgement.
    lag: Histogram,
}

/// The outbox relay of one instance.
pub struct Relay {
    shared: Arc<Shared>,
}

/// What the relay's workers share.
struct Shared {
    /// The relay's own connections (see [`relay_pool`]).
    pool: MySqlPool,
    /// The producer and its generation. Workers clone it for each pass
    /// (a cheap `Arc` clone); the first worker to see failed deliveries
    /// replaces it and bumps the generation, so a second worker that saw
    /// the same failures does not replace the fresh one again.
    producer: RwLock<(u64, FutureProducer)>,
    options: RelayOptions,
    /// Woken after every order commit so the event goes out at once.
    wake: Arc<Notify>,
    /// Woken by workers after a pass that found rows (or failed), so the
    /// idle depth gauges refresh at once instead of at [`DEPTH_IDLE_REFRESH`].
    depth_wake: Notify,
    metrics: RelayMetrics,
    /// Whether `order-placed` is known to exist.
    topic_ready: AtomicBool,
}

/// One unsent outbox row.
struct OutboxRow {
    id: i64,
    topic: String,
    key: String,
    payload: String,
    /// The events crate's headers.
    headers: Vec<(String, String)>,
    /// The trace context of the request that placed the order (empty when
    /// none was stored).
    trace: HashMap<String, String>,
    created_at: NaiveDateTime,
}

impl OutboxRow {
    /// The PRODUCER span of this row's publication, child of the stored
    /// context (a new trace when the row has none).
    fn producer_span(&self) -> tracing::Span {
        let span = kit::telemetry::producer_span(&self.topic);
        kit::telemetry::set_parent(&span, kit::telemetry::context_from_map(&self.trace));
        span
    }
}

/// The relay's connections to the orders database: as many as it uses at
/// once (its workers and the depth gauges), opened like `orders`'
/// connections (same options), each set to READ COMMITTED when it opens.
///
/// Why not share the service's pool: READ COMMITTED (see the module docs)
/// would have to be set again before every pass, a round trip each time,
/// because orders' transactions on the same connections must keep the
/// default. And connections are not checked with a ping before each pass: a
/// connection that broke while idle fails its pass, which is retried after a
/// back-off with the rows still unsent, while a ping would cost a round trip
/// on every pass.
fn relay_pool(orders: &MySqlPool, workers: usize) -> MySqlPool {
    MySqlPoolOptions::new()
        .max_connections(u32::try_from(workers).unwrap_or(u32::MAX).saturating_add(1))
        .acquire_timeout(Duration::from_secs(5))
        .test_before_acquire(false)
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                    .await
                    .map(|_| ())
            })
        })
        .connect_lazy_with((*orders.connect_options()).clone())
}

impl Relay {
    /// A relay publishing with a new idempotent producer. `pool` is the
    /// service's; the relay opens its own connections with its options.
    pub fn new(
        pool: MySqlPool,
        options: RelayOptions,
        metrics: &Metrics,
    ) -> Result<Relay, KafkaError> {
        let pool = relay_pool(&pool, options.workers.max(1));
        let producer: FutureProducer = producer_config(&options).create()?;
        let m = RelayMetrics {
            pending: Gauge::default(),
            oldest_age: Gauge::default(),
            published: Counter::default(),
            failures: Counter::default(),
            lag: Histogram::new(exponential_buckets(0.001, 2.0, 18)),
        };
        metrics.register(
            "outbox_pending",
            "Outbox rows not yet acknowledged by Kafka (outbox depth)",
            m.pending.clone(),
        );
        metrics.register(
            "outbox_oldest_pending_age_seconds",
            "Age of the oldest unsent outbox row",
            m.oldest_age.clone(),
        );
        metrics.register(
            "outbox_published",
            "Outbox rows published and acknowledged",
            m.published.clone(),
        );
        metrics.register(
            "outbox_publish_failures",
            "Outbox rows whose publication failed (retried later)",
            m.failures.clone(),
        );
        metrics.register(
            "outbox_relay_lag_seconds",
            "Time from an order's commit to the broker's acknowledgement of its event",
            m.lag.clone(),
        );
        Ok(Relay {
            shared: Arc::new(Shared {
                pool,
                producer: RwLock::new((0, producer)),
                options,
                wake: Arc::new(Notify::new()),
                depth_wake: Notify::new(),
                metrics: m,
                topic_ready: AtomicBool::new(false),
            }),
        })
    }

    /// Wakes the relay (called after each order commit).
    pub fn waker(&self) -> Arc<Notify> {
        self.shared.wake.clone()
    }

    /// Runs the workers until `stop`, then flushes the producer (bounded).
    ///
    /// Several workers per instance (`workers`): while one waits for the
    /// broker to acknowledge its batch, another already locks and sends the
    /// rows committed meanwhile (SKIP LOCKED keeps them apart), so a slow
    /// acknowledgement does not hold back the next events.
    pub async fn run(self, stop: CancellationToken) {
        let s = &self.shared;
        // The depth gauges are refreshed on their own schedule: a pass can
        // wait for deliveries for a long time while the broker is down,
        // which is exactly when the depth matters.
        let depth = depth_loop(self.shared.clone(), stop.clone());
        let workers =
            (0..s.options.workers.max(1)).map(|_| publish_loop(self.shared.clone(), stop.clone()));
        tokio::join!(join_all(workers), depth);
        let producer = s.producer.read().1.clone();
        let _ = tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(5))).await;
    }
}

/// One relay worker.
async fn publish_loop(s: Arc<Shared>, stop: CancellationToken) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        if !s.topic_ready.load(Ordering::Relaxed) {
            s.ensure_topic().await;
        }
        let generation = s.producer.read().0;
        let pass = tokio::select! {
            _ = stop.cancelled() => break,
            r = s.pass() => r,
        };
        if !matches!(pass, Ok(0)) {
            s.depth_wake.notify_one();
        }
        let wait = match pass {
            Ok(n) if n >= s.options.batch_size as usize => {
                backoff.reset();
                continue;
            }
            Ok(_) => {
                backoff.reset();
                s.options.poll_interval
            }
            Err(e) => {
                let wait = backoff.next_wait();
                tracing::warn!(error = %e, retry_in = ?wait, "outbox relay pass failed");
                if matches!(e, RelayError::Publish { .. }) {
                    s.renew_producer(generation).await;
                }
                wait
            }
        };
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = s.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

impl Shared {
    /// Replaces the producer after failed deliveries. An idempotent
    /// producer whose messages timed out keeps sequence numbers the broker
    /// may no longer accept (librdkafka would need the broker to bump the
    /// producer epoch, which not every Kafka-API broker does; tansu 0.6
    /// answers every later produce with an error). A new producer gets a
    /// new producer id and starts clean; rows it did not get acknowledged
    /// are still unsent and simply go out again.
    async fn renew_producer(&self, seen_generation: u64) {
        let fresh = match producer_config(&self.options).create::<FutureProducer>() {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot create a new Kafka producer");
                return;
            }
        };
        let old = {
            let mut current = self.producer.write();
            if current.0 != seen_generation {
                return; // another worker renewed it already
            }
            if let Some((code, reason)) = current.1.client().fatal_error() {
                tracing::error!(?code, %reason, "the Kafka producer failed fatally");
            }
            let generation = current.0 + 1;
            std::mem::replace(&mut *current, (generation, fresh))
        };
        // Dropping purges and flushes (blocking up to 500 ms).
        let _ = tokio::task::spawn_blocking(move || drop(old)).await;
        tracing::info!("Kafka producer renewed after failed deliveries");
    }

    /// Creates `order-placed` if it does not exist (best effort: a broker
    /// that creates topics on first use works without it).
    async fn ensure_topic(&self) {
        let admin: Result<AdminClient<DefaultClientContext>, _> =
            producer_config(&self.options).create();
        let Ok(admin) = admin else { return };
        let creating = events::kafka::ensure_topic(
            &admin,
            events::ORDER_PLACED_TOPIC,
            self.options.topic_partitions,
            Duration::from_secs(5),
        );
        match tokio::time::timeout(Duration::from_secs(6), creating).await {
            Ok(Ok(_)) => {
                self.topic_ready.store(true, Ordering::Relaxed);
                tracing::info!(topic = events::ORDER_PLACED_TOPIC, "topic ready");
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot create the order-placed topic yet"),
            Err(_) => tracing::warn!("the broker did not answer topic creation in time"),
        }
    }

    /// One batch: lock, publish, mark, commit. Returns the rows handled.
    async fn pass(&self) -> Result<usize, RelayError> {
        let started = std::time::Instant::now();
        // READ COMMITTED: set when the connection opened (`relay_pool`).
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        let rows = sqlx::query(
            "SELECT id, topic, message_key, payload, headers, trace_context, created_at FROM outbox \
             WHERE sent_at IS NULL ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED",
        )
        .bind(self.options.batch_size)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(0);
        }
        let rows: Vec<OutboxRow> = rows.into_iter().map(to_row).collect();
        let selected = started.elapsed();

        // Hand every message to the producer first, then wait for all the
        // reports: the batch travels in a few requests instead of one each.
        let producer = self.producer.read().1.clone();
        let spans: Vec<tracing::Span> = rows.iter().map(OutboxRow::producer_span).collect();
        let pending: Vec<_> = rows
            .iter()
            .zip(&spans)
            .map(|(row, span)| {
                let trace = kit::telemetry::context_map_of(span);
                let mut headers = OwnedHeaders::new_with_capacity(row.headers.len() + trace.len());
                let events = row.headers.iter().map(|(k, v)| (k, v));
                for (k, v) in events.chain(&trace) {
                    headers = headers.insert(Header {
                        key: k,
                        value: Some(v.as_bytes()),
                    });
                }
                let record = FutureRecord::to(&row.topic)
                    .key(row.key.as_bytes())
                    .payload(row.payload.as_bytes())
                    .headers(headers);
                producer.send_result(record).map_err(|(e, _)| e)
            })
            .collect();
        let n = pending.len();
        let reports = join_all(pending.into_iter().zip(&spans).map(|(p, span)| {
            let report = async move {
                match p {
                    Ok(delivery) => match delivery.await {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err((e, _))) => Err(e.to_string()),
                        Err(_) => Err("the producer was dropped".to_string()),
                    },
                    Err(e) => Err(e.to_string()),
                }
            };
            kit::telemetry::traced(span.clone(), report)
        }));
        // The relay's own deadline (see `producer_config`): on expiry the
        // whole batch counts as failed, stays unsent, and the producer is
        // replaced.
        let reports = match tokio::time::timeout(self.options.send_timeout, reports).await {
            Ok(r) => r,
            Err(_) => {
                spans.iter().for_each(kit::telemetry::mark_error);
                vec![
                    Err(format!(
                        "no acknowledgement within {} ms",
                        self.options.send_timeout.as_millis()
                    ));
                    n
                ]
            }
        };
        // The publications are over: end their spans now, not after the commit.
        drop(spans);

        let delivered = started.elapsed();
        let mut sent = Vec::new();
        let mut failed: Vec<(i64, String)> = Vec::new();
        for (row, report) in rows.iter().zip(reports) {
            match report {
                Ok(()) => sent.push(row),
                Err(e) => failed.push((row.id, e)),
            }
        }
        if !sent.is_empty() {
            let mut q = QueryBuilder::new("UPDATE outbox SET sent_at = NOW(6) WHERE id IN (");
            let mut sep = q.separated(", ");
            for row in &sent {
                sep.push_bind(row.id);
            }
            q.push(")");
            q.build().execute(&mut *tx).await?;
        }
        for (id, error) in &failed {
            sqlx::query("UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?")
                .bind(truncate(error, 1000))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        tracing::debug!(
            rows = rows.len(),
            selected_ms = selected.as_secs_f64() * 1e3,
            delivered_ms = delivered.as_secs_f64() * 1e3,
            committed_ms = started.elapsed().as_secs_f64() * 1e3,
            "relay pass"
        );

        let now = Utc::now().naive_utc();
        for row in &sent {
            let lag = (now - row.created_at)
                .num_microseconds()
                .unwrap_or(0)
                .max(0);
            self.metrics.lag.observe(lag as f64 / 1e6);
        }
        self.metrics.published.inc_by(sent.len() as u64);
        self.metrics.failures.inc_by(failed.len() as u64);
        if let Some((_, error)) = failed.first() {
            return Err(RelayError::Publish {
                failed: failed.len(),
                first: error.clone(),
            });
        }
        Ok(rows.len())
    }
}

/// How often the depth gauges refresh while rows are pending.
const DEPTH_REFRESH: Duration = Duration::from_millis(250);
/// How often they refresh while the outbox is empty and no pass found rows:
/// an idle instance then costs MariaDB one count per 5 s, not four a second.
const DEPTH_IDLE_REFRESH: Duration = Duration::from_secs(5);

/// Refreshes the outbox depth gauges until `stop`: every [`DEPTH_REFRESH`]
/// while rows are pending, and while the outbox is empty at the next pass
/// that finds rows (or fails), at the latest after [`DEPTH_IDLE_REFRESH`].
async fn depth_loop(s: Arc<Shared>, stop: CancellationToken) {
    let (pool, metrics) = (&s.pool, &s.metrics);
    loop {
        let r = sqlx::query(
            "SELECT COUNT(*), TIMESTAMPDIFF(MICROSECOND, MIN(created_at), NOW(6)) FROM outbox WHERE sent_at IS NULL",
        )
        .fetch_one(pool)
        .await;
        let mut idle = false;
        if let Ok(row) = r {
            let n: i64 = row.get(0);
            let age: Option<i64> = row.get(1);
            metrics.pending.set(n);
            metrics.oldest_age.set(age.unwrap_or(0).max(0) as f64 / 1e6);
            idle = n == 0;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(DEPTH_REFRESH) => {}
        }
        if idle {
            // A pass that found rows during the sleep left a permit: no wait.
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = s.depth_wake.notified() => {}
                _ = tokio::time::sleep(DEPTH_IDLE_REFRESH - DEPTH_REFRESH) => {}
            }
        }
    }
}

/// Why a relay pass failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("outbox database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("{failed} event(s) not acknowledged by Kafka, first: {first}")]
    Publish { failed: usize, first: String },
}

fn to_row(r: sqlx::mysql::MySqlRow) -> OutboxRow {
    let headers_json: String = r.get(4);
    let trace: Option<String> = r.get(5);
    let mut headers: Vec<(String, String)> =
        serde_json::from_str::<HashMap<String, String>>(&headers_json)
            .unwrap_or_default()
            .into_iter()
            .collect();
    headers.sort();
    let trace = trace
        .and_then(|t| serde_json::from_str::<HashMap<String, String>>(&t).ok())
        .unwrap_or_default();
    OutboxRow {
        id: r.get(0),
        topic: r.get(1),
        key: r.get(2),
        payload: r.get(3),
        headers,
        trace,
        created_at: r.get(6),
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Longest accepted `OUTBOX_LINGER`: librdkafka's own bound of `linger.ms`.
const MAX_LINGER: Duration = Duration::from_secs(900);

/// Parses `OUTBOX_LINGER`: a duration from 0 to 900 s, whole milliseconds
/// (librdkafka's `linger.ms` unit; finer values would be cut silently).
pub fn parse_linger(s: &str) -> Result<Duration, String> {
    let d = kit::config::parse_duration(s)?;
    if d > MAX_LINGER || d.subsec_nanos() % 1_000_000 != 0 {
        return Err(format!(
            "`{s}` must be whole milliseconds between 0ms and 900s"
        ));
    }
    Ok(d)
}

/// The producer's settings: idempotent, every replica acknowledges, and the
/// configured linger (`OUTBOX_LINGER`): a pass hands its whole batch to the
/// producer at once, so lingering only gathers the events of passes that
/// run together into fewer requests, for a delay of as much per event.
fn producer_config(o: &RelayOptions) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &o.bootstrap_servers)
        .set("client.id", &o.client_id)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", o.linger.as_millis().to_string())
        // No local timeout: librdkafka answers a timed-out message of an
        // idempotent producer by bumping the producer epoch, and tansu 0.6
        // panics on the next produce after such a bump (its storage thread
        // dies, the broker stays up but answers nothing). The relay bounds
        // each pass itself (`send_timeout`) and then replaces the producer,
        // which gets a fresh producer id instead.
        .set("message.timeout.ms", "0")
        .set("socket.connection.setup.timeout.ms", "5000");
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The producer is idempotent with acks=all, the configured linger and no librdkafka timeout.
    #[test]
    fn producer_settings() {
        let c = producer_config(&RelayOptions {
            bootstrap_servers: "127.0.0.1:1".into(),
            topic_partitions: 3,
            poll_interval: Duration::from_secs(1),
            batch_size: 100,
            send_timeout: Duration::from_secs(30),
            linger: Duration::from_millis(3),
            client_id: "o-1".into(),
            workers: 2,
        });
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("linger.ms"), Some("3"));
        assert_eq!(
            c.get("message.timeout.ms"),
            Some("0"),
            "the relay times out itself"
        );
    }

    /// The linger is whole milliseconds up to librdkafka's 900 s.
    #[test]
    fn linger_bounds() {
        assert_eq!(parse_linger("0ms"), Ok(Duration::ZERO));
        assert_eq!(parse_linger("5ms"), Ok(Duration::from_millis(5)));
        assert!(parse_linger("500us").is_err());
        assert!(parse_linger("901s").is_err());
        assert!(parse_linger("soon").is_err());
    }

    /// Error texts are cut at a character boundary.
    #[test]
    fn truncates_on_char_boundary() {
        assert_eq!(truncate("héllo", 2), "hé");
        assert_eq!(truncate("hi", 10), "hi");
    }
}
