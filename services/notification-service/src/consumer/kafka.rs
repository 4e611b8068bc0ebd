//! The Kafka side: client settings, the consumer's context (rebalances, commits, logs), the
//! dead-letter writer, topic creation and the lag measurement.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use super::state::ConsumerState;
use crate::email::Origin;

/// The consumer type of this service.
pub type OrderConsumer = StreamConsumer<ConsumerCtx>;

/// Longest kept `dlt-error` header: enough for any error chain, bounded for the broker.
const MAX_ERROR_HEADER: usize = 2000;

/// Forwards librdkafka's log lines to `tracing`, at their own level.
fn forward_log(level: RDKafkaLogLevel, facility: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", facility, "{message}"),
        RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", facility, "{message}")
        }
        RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
    }
}

/// Context of the producer and admin clients: logs only.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogCtx;

impl ClientContext for LogCtx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        forward_log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", %error, reason, "Kafka client error");
    }
}

/// Context of the consumer: records assignments and failed commits in [`ConsumerState`].
#[derive(Debug, Clone)]
pub struct ConsumerCtx {
    pub state: Arc<ConsumerState>,
}

impl ClientContext for ConsumerCtx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        // "Consumer group session timed out (in join-state steady) after 10495 ms without a
        // successful response from the group coordinator ...": the failure issue 10 is about.
        if fac == "SESSTMOUT" || log_message.contains("session timed out") {
            ConsumerState::count(&self.state.session_timeouts);
        }
        forward_log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", %error, reason, "Kafka consumer error");
    }
}

impl ConsumerContext for ConsumerCtx {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let partitions: Vec<(String, i32)> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect();
                tracing::info!(group = %self.state.group, ?partitions, "partitions assigned");
                self.state.set_assignment(partitions);
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(group = %self.state.group, revoked = tpl.count(), "partitions revoked");
                self.state.set_assignment(Vec::new());
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance failed"),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(e) = result {
            // The offsets stay uncommitted: those messages are redelivered and deduplicated.
            ConsumerState::count(&self.state.commit_failures);
            tracing::warn!(error = %e, partitions = offsets.count(), "offset commit failed");
        }
    }
}

/// Settings shared by every client.
fn base_config(bootstrap_servers: &str, client_id: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap_servers)
        .set("client.id", client_id)
        // A topic created after start (or recreated) is noticed within seconds, not 5 minutes.
        .set("topic.metadata.refresh.interval.ms", "10000");
    c
}

/// Largest accepted `--fetch-wait-max`: librdkafka's own upper bound of `fetch.wait.max.ms`.
const MAX_FETCH_WAIT: Duration = Duration::from_secs(300);

/// Parses `--fetch-wait-max`: a duration from 1 ms to 300 s. Zero is refused: with a broker
/// that answers an empty fetch at once, the consumer would fetch in a busy loop.
pub fn parse_fetch_wait(s: &str) -> Result<Duration, String> {
    kit::config::parse_duration_within(s, Duration::from_millis(1), MAX_FETCH_WAIT)
}

/// librdkafka's debug contexts (its `debug` property), for `--kafka-debug`.
const DEBUG_CONTEXTS: &[&str] = &[
    "generic",
    "broker",
    "topic",
    "metadata",
    "feature",
    "queue",
    "msg",
    "protocol",
    "cgrp",
    "security",
    "fetch",
    "interceptor",
    "plugin",
    "consumer",
    "admin",
    "eos",
    "mock",
    "assignor",
    "conf",
    "telemetry",
    "all",
];

/// Parses `--kafka-debug`: empty (off) or a comma-separated list of librdkafka debug contexts.
/// Checked here so a typo fails at start with the list, not inside librdkafka.
pub fn parse_debug(s: &str) -> Result<String, String> {
    let contexts: Vec<&str> = s
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    if let Some(bad) = contexts.iter().find(|c| !DEBUG_CONTEXTS.contains(c)) {
        return Err(format!(
            "`{bad}` is not a librdkafka debug context (one of {})",
            DEBUG_CONTEXTS.join(", ")
        ));
    }
    Ok(contexts.join(","))
}

/// The consumer's own settings (from the service's flags).
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// `session.timeout.ms` (heartbeats every third of it).
    pub session_timeout: Duration,
    /// `fetch.wait.max.ms`, see [`consumer`].
    pub fetch_wait_max: Duration,
    /// Most bytes of records one fetch asks for, see [`consumer`].
    pub fetch_max_bytes: u32,
    /// librdkafka `debug` contexts; empty: off.
    pub debug: String,
}

/// Default of `--fetch-max-bytes`: 64 KiB, about 200 order events.
pub const DEFAULT_FETCH_MAX_BYTES: u32 = 64 * 1024;

/// Smallest `--fetch-max-bytes`: librdkafka's least `message.max.bytes`, which may not exceed
/// `fetch.max.bytes`.
pub const MIN_FETCH_MAX_BYTES: u32 = 1000;

/// Largest `--fetch-max-bytes`: librdkafka's default `fetch.max.bytes` (50 MiB).
pub const MAX_FETCH_MAX_BYTES: u32 = 50 * 1024 * 1024;

/// The consumer: group member, manual commits only, from the earliest offset for a new group.
///
/// `fetch_wait_max` (librdkafka's `fetch.wait.max.ms`) bounds delivery latency on the platform's
/// broker: nisshi 0.6.0 answers a fetch at once when data is there, but when it finds nothing it
/// sleeps half of the remaining wait before it looks again (`FetchService::fetch` in
/// `nisshi-storage/src/service/fetch.rs`), so a message arriving mid-wait waits up to half the
/// wait; each look costs the broker reads on its storage, which is its CPU while the topic is
/// idle. The figures of that trade-off are in BENCHMARKS.md (`brokers`) and the README.
/// `fetch.min.bytes` stays at 1: a larger value only makes the broker look again and wait longer.
///
/// `fetch_max_bytes` bounds the records one fetch asks for, in all (`fetch.max.bytes`) and per
/// partition (`max.partition.fetch.bytes`); librdkafka's defaults are 50 MiB and 1 MiB. On
/// nisshi 0.6.0 the work of one fetch grows with that budget, unbounded by the fetch wait: once
/// the wait has run out its storage returns one record per read (`has_deadline_expired` in
/// `LiteStorage::fetch`, `nisshi-storage/src/lite.rs`) while `FetchService::fetch_partition`
/// (`nisshi-storage/src/service/fetch.rs`) reads again until the partition's byte budget is spent
/// or the log ends; and each record read scans every header the broker holds (its `header` table
/// has no index). With the defaults (the first partition of a fetch gets the whole 5 MiB nisshi
/// allows) a fetch under 200 orders/s took 9 s, then longer than librdkafka's request timeout
/// (`socket.timeout.ms` + `fetch.wait.max.ms`), and the consumer never received again (issue 10).
/// A small budget bounds each fetch to a few hundred records; it cannot make the header scans
/// cheaper (see the README, "nisshi 0.6.0 under sustained load", and `tests/api/nisshi_fetch.rs`).
/// Its cost: more fetches for the same data (nothing on Apache Kafka, which answers at once), and
/// on nisshi 0.6.0 a message whose key and value together reach the budget is never delivered:
/// its SQL keeps only records below the budget and, unlike Kafka, it does not return an oversized
/// first batch (so keep the budget above the largest event).
pub fn consumer(
    bootstrap_servers: &str,
    client_id: &str,
    group_id: &str,
    settings: &ConsumerSettings,
    state: Arc<ConsumerState>,
) -> KafkaResult<OrderConsumer> {
    let mut config = base_config(bootstrap_servers, client_id);
    config
        .set("group.id", group_id)
        .set(
            "fetch.wait.max.ms",
            settings.fetch_wait_max.as_millis().to_string(),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set(
            "session.timeout.ms",
            settings.session_timeout.as_millis().to_string(),
        )
        .set(
            "heartbeat.interval.ms",
            (settings.session_timeout.as_millis() / 3)
                .max(100)
                .to_string(),
        );
    let fetch_bytes = settings
        .fetch_max_bytes
        .clamp(MIN_FETCH_MAX_BYTES, MAX_FETCH_MAX_BYTES)
        .to_string();
    config
        .set("fetch.max.bytes", &fetch_bytes)
        .set("max.partition.fetch.bytes", &fetch_bytes)
        // librdkafka refuses a `fetch.max.bytes` below `message.max.bytes` (default 1 MB); the
        // consumer's own requests (commits, joins) are far smaller.
        .set("message.max.bytes", &fetch_bytes);
    if !settings.debug.is_empty() {
        config
            .set("debug", &settings.debug)
            .set_log_level(RDKafkaLogLevel::Debug);
    }
    config.create_with_context(ConsumerCtx { state })
}

/// Writes dead letters (`acks=all`), and creates their topic.
///
/// The producer is deliberately *not* idempotent. A dead-letter write is retried until the
/// broker takes it, and an idempotent librdkafka producer whose messages time out bumps its
/// epoch (KIP-360); tansu 0.6.0 does not implement that bump (`init_producer` ends in
/// `todo!()` for a known producer id), and the next produce with the new epoch panics its
/// storage task, which takes the whole broker down. Without idempotence a retry can write a
/// dead letter twice; the DLT is at-least-once anyway, and each copy carries the original
/// topic, partition and offset, which identify it.
pub struct DeadLetters {
    producer: FutureProducer<LogCtx>,
    /// The admin client's settings: one is made for each topic creation and dropped after it,
    /// rather than kept for the rare creation (a client idle for the process's life costs three
    /// threads, two of them waking ten times a second).
    admin: ClientConfig,
    topic: String,
    /// Set once the topic is known to exist, so creation is tried until it succeeds, then never.
    ensured: AtomicBool,
    /// How long one write may take before it counts as failed and is retried.
    timeout: Duration,
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl DeadLetters {
    pub fn new(
        bootstrap_servers: &str,
        client_id: &str,
        topic: &str,
        timeout: Duration,
    ) -> KafkaResult<DeadLetters> {
        let producer = base_config(bootstrap_servers, client_id)
            .set("enable.idempotence", "false")
            .set("acks", "all")
            .set("message.timeout.ms", timeout.as_millis().to_string())
            .create_with_context(LogCtx)?;
        Ok(DeadLetters {
            producer,
            // Its settings are the producer's base ones, which were just accepted.
            admin: base_config(bootstrap_servers, client_id),
            topic: topic.to_string(),
            ensured: AtomicBool::new(false),
            timeout,
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Creates the dead-letter topic with `partitions` partitions unless it exists.
    pub async fn ensure_topic(&self, partitions: i32) -> KafkaResult<()> {
        if self.ensured.load(Ordering::Acquire) {
            return Ok(());
        }
        let admin: AdminClient<LogCtx> = self.admin.create_with_context(LogCtx)?;
        if events::kafka::ensure_topic(&admin, &self.topic, partitions, self.timeout).await? {
            tracing::info!(topic = %self.topic, partitions, "dead-letter topic created");
        }
        self.ensured.store(true, Ordering::Release);
        Ok(())
    }

    /// Writes `message` to the dead-letter topic: same key and payload, the original headers
    /// (minus earlier `dlt-*` ones), and the `dlt-*` headers of the events crate. Returns the
    /// partition and offset written.
    pub async fn send(
        &self,
        message: &OwnedMessage,
        origin: &Origin,
        error: &str,
        attempts: u32,
    ) -> KafkaResult<(i32, i64)> {
        // Creation is retried here when it failed at start (broker down then).
        self.ensure_topic(1).await?;
        let error: String = error.chars().take(MAX_ERROR_HEADER).collect();
        let attempts = attempts.to_string();
        let partition = origin.partition.to_string();
        let offset = origin.offset.to_string();
        let mut headers = OwnedHeaders::new_with_capacity(8);
        if let Some(original) = message.headers() {
            for h in original.iter() {
                if !h.key.starts_with("dlt-") {
                    headers = headers.insert(Header {
                        key: h.key,
                        value: h.value,
                    });
                }
            }
        }
        use events::headers as names;
        for (key, value) in [
            (names::DLT_ERROR, error.as_str()),
            (names::DLT_ATTEMPTS, attempts.as_str()),
            (names::DLT_ORIGINAL_TOPIC, origin.topic.as_str()),
            (names::DLT_ORIGINAL_PARTITION, partition.as_str()),
            (names::DLT_ORIGINAL_OFFSET, offset.as_str()),
        ] {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&self.topic).headers(headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(payload) = message.payload() {
            record = record.payload(payload);
        }
        let delivery = self
            .producer
            .send(record, self.timeout)
            .await
            .map_err(|(e, _)| e)?;
        Ok((delivery.partition, delivery.offset))
    }
}

/// The message's headers with UTF-8 values, for reading the trace context.
pub fn text_headers(message: &OwnedMessage) -> HashMap<String, String> {
    let mut map = HashMap::new();
    if let Some(headers) = message.headers() {
        for h in headers.iter() {
            if let Some(v) = h.value.and_then(|v| std::str::from_utf8(v).ok()) {
                map.insert(h.key.to_string(), v.to_string());
            }
        }
    }
    map
}

/// Commits `origin.offset + 1` for its partition, without waiting for the broker.
pub fn commit(
    consumer: &OrderConsumer,
    origins: &[(&str, i32, i64)],
    sync: bool,
) -> KafkaResult<()> {
    let mut tpl = TopicPartitionList::new();
    for (topic, partition, next) in origins {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*next))?;
    }
    let mode = if sync {
        rdkafka::consumer::CommitMode::Sync
    } else {
        rdkafka::consumer::CommitMode::Async
    };
    consumer.commit(&tpl, mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--kafka-debug` is off when empty, keeps known contexts (trimmed) and names a bad one.
    #[test]
    fn debug_contexts_are_checked() {
        assert_eq!(parse_debug("").unwrap(), "");
        assert_eq!(
            parse_debug("consumer, cgrp,fetch ,protocol").unwrap(),
            "consumer,cgrp,fetch,protocol"
        );
        let err = parse_debug("consumer,fetchh").unwrap_err();
        assert!(err.contains("`fetchh`") && err.contains("cgrp"), "{err}");
    }
}

#[cfg(test)]
mod settings_tests {
    use super::*;

    /// librdkafka takes the fetch budget at both ends of its range (it refuses a
    /// `fetch.max.bytes` below `message.max.bytes`, which is why that is set too) and with debug.
    #[tokio::test]
    async fn consumer_accepts_the_fetch_budget() {
        for (fetch_max_bytes, debug) in [
            (MIN_FETCH_MAX_BYTES, ""),
            (DEFAULT_FETCH_MAX_BYTES, "consumer,cgrp,fetch,protocol"),
            (MAX_FETCH_MAX_BYTES, ""),
        ] {
            let settings = ConsumerSettings {
                session_timeout: Duration::from_secs(6),
                fetch_wait_max: Duration::from_millis(500),
                fetch_max_bytes,
                debug: debug.into(),
            };
            let state = Arc::new(ConsumerState::new("g", "order-placed", "order-placed.DLT"));
            let made = consumer("127.0.0.1:9", "test", "g", &settings, state);
            assert!(made.is_ok(), "{fetch_max_bytes}: {:?}", made.err());
        }
    }
}
