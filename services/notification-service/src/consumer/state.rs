//! What the consumer has done and where it stands, for `/admin/consumer` and `/metrics`.
//!
//! The consumer loop, the rebalance callback and the lag refresher write here; the HTTP
//! handlers and the Prometheus collector read. Counters are atomics (written on every
//! message); assignment and lag are small snapshots behind locks held for a copy only.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use parking_lot::RwLock;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use serde::Serialize;
use std::sync::Arc;

/// Why a message went to the dead-letter topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterReason {
    /// `events::decode` refused it (garbage, wrong shape, unsupported schema version).
    Undecodable,
    /// Handling failed `--max-attempts` times.
    Failed,
}

impl DeadLetterReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::Undecodable => "undecodable",
            DeadLetterReason::Failed => "failed",
        }
    }
}

/// Lag of one assigned partition, as the broker sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// The group's committed offset (the next message to handle); `None` before the first
    /// commit.
    pub committed: Option<i64>,
    /// Offset of the next message the broker will write.
    pub high_watermark: i64,
    /// `high_watermark - committed`; without a commit, everything retained counts
    /// (`high_watermark - low_watermark`, since consumption starts at the earliest offset).
    pub lag: i64,
}

/// The last lag measurement.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LagSnapshot {
    pub partitions: Vec<PartitionLag>,
    pub measured_at: Option<DateTime<Utc>>,
    /// Why the last measurement failed, if it did (the previous figures are kept).
    pub error: Option<String>,
}

/// Shared consumer state; one per service instance.
#[derive(Debug)]
pub struct ConsumerState {
    pub group: String,
    pub topic: String,
    pub dlt_topic: String,
    /// Messages taken through to a commit (notified, duplicate or dead-lettered).
    pub handled: AtomicU64,
    /// New notifications stored and sent.
    pub sent: AtomicU64,
    /// Redelivered events whose notification already existed.
    pub duplicates: AtomicU64,
    pub dead_lettered_undecodable: AtomicU64,
    pub dead_lettered_failed: AtomicU64,
    /// Failed handling attempts that were retried (store errors, outages, DLT writes).
    pub retries: AtomicU64,
    /// Offset commits the broker refused (the messages are redelivered and deduplicated).
    pub commit_failures: AtomicU64,
    /// Partitions assigned by the last rebalance; `None` until the group was first joined.
    assignment: RwLock<Option<Vec<(String, i32)>>>,
    lag: RwLock<LagSnapshot>,
    /// Set while the database is unreachable and the consumer waits for it.
    waiting_for_db: RwLock<Option<String>>,
}

impl ConsumerState {
    pub fn new(group: &str, topic: &str, dlt_topic: &str) -> ConsumerState {
        ConsumerState {
            group: group.into(),
            topic: topic.into(),
            dlt_topic: dlt_topic.into(),
            handled: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            dead_lettered_undecodable: AtomicU64::new(0),
            dead_lettered_failed: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            commit_failures: AtomicU64::new(0),
            assignment: RwLock::new(None),
            lag: RwLock::new(LagSnapshot::default()),
            waiting_for_db: RwLock::new(None),
        }
    }

    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn dead_lettered(&self, reason: DeadLetterReason) {
        match reason {
            DeadLetterReason::Undecodable => Self::count(&self.dead_lettered_undecodable),
            DeadLetterReason::Failed => Self::count(&self.dead_lettered_failed),
        }
    }

    pub fn set_assignment(&self, partitions: Vec<(String, i32)>) {
        *self.assignment.write() = Some(partitions);
    }

    /// The current assignment; `None` before the group was joined.
    pub fn assignment(&self) -> Option<Vec<(String, i32)>> {
        self.assignment.read().clone()
    }

    pub fn set_lag(&self, partitions: Vec<PartitionLag>) {
        let mut lag = self.lag.write();
        lag.partitions = partitions;
        lag.measured_at = Some(Utc::now());
        lag.error = None;
    }

    pub fn set_lag_error(&self, error: String) {
        self.lag.write().error = Some(error);
    }

    pub fn lag(&self) -> LagSnapshot {
        self.lag.read().clone()
    }

    pub fn set_waiting_for_db(&self, why: Option<String>) {
        *self.waiting_for_db.write() = why;
    }

    /// The `/admin/consumer` body.
    pub fn report(&self) -> ConsumerReport {
        let lag = self.lag();
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ConsumerReport {
            group: self.group.clone(),
            topic: self.topic.clone(),
            dead_letter_topic: self.dlt_topic.clone(),
            joined: self.assignment.read().is_some(),
            total_lag: lag.partitions.iter().map(|p| p.lag).sum(),
            partitions: lag.partitions,
            lag_measured_at: lag.measured_at,
            lag_error: lag.error,
            messages_handled: load(&self.handled),
            notifications_sent: load(&self.sent),
            duplicates_skipped: load(&self.duplicates),
            dead_lettered: load(&self.dead_lettered_undecodable) + load(&self.dead_lettered_failed),
            dead_lettered_undecodable: load(&self.dead_lettered_undecodable),
            dead_lettered_failed: load(&self.dead_lettered_failed),
            retries: load(&self.retries),
            commit_failures: load(&self.commit_failures),
            waiting_for_database: self.waiting_for_db.read().clone(),
        }
    }
}

/// `GET /admin/consumer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerReport {
    pub group: String,
    pub topic: String,
    pub dead_letter_topic: String,
    /// Whether the group was joined (an assignment, possibly empty, was received).
    pub joined: bool,
    /// Assigned partitions with committed offset, high watermark and lag.
    pub partitions: Vec<PartitionLag>,
    pub total_lag: i64,
    pub lag_measured_at: Option<DateTime<Utc>>,
    pub lag_error: Option<String>,
    pub messages_handled: u64,
    pub notifications_sent: u64,
    pub duplicates_skipped: u64,
    pub dead_lettered: u64,
    pub dead_lettered_undecodable: u64,
    pub dead_lettered_failed: u64,
    pub retries: u64,
    pub commit_failures: u64,
    /// Why the consumer is waiting (the database is unreachable), if it is.
    pub waiting_for_database: Option<String>,
}

/// Reads one figure of a partition's lag entry.
type PartitionFigure = fn(&PartitionLag) -> i64;

/// Exports [`ConsumerState`] to Prometheus at scrape time.
#[derive(Debug)]
pub struct StateCollector(pub Arc<ConsumerState>);

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        for (name, help, value) in [
            (
                "notification_messages_handled",
                "Messages handled and committed (notified, duplicate or dead-lettered)",
                load(&s.handled),
            ),
            (
                "notifications_sent",
                "Notifications stored and sent",
                load(&s.sent),
            ),
            (
                "notification_duplicates_skipped",
                "Redelivered events whose notification already existed",
                load(&s.duplicates),
            ),
            (
                "notification_handling_retries",
                "Failed handling attempts that were retried",
                load(&s.retries),
            ),
            (
                "notification_commit_failures",
                "Offset commits the broker refused",
                load(&s.commit_failures),
            ),
        ] {
            let c = ConstCounter::new(value);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        {
            let mut family = encoder.encode_descriptor(
                "notification_dead_lettered",
                "Messages written to the dead-letter topic, by reason",
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for (reason, value) in [
                (
                    DeadLetterReason::Undecodable,
                    load(&s.dead_lettered_undecodable),
                ),
                (DeadLetterReason::Failed, load(&s.dead_lettered_failed)),
            ] {
                let labels = [("reason", reason.as_str())];
                ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
            }
        }
        let lag = s.lag();
        let assigned = s.assignment().map(|a| a.len()).unwrap_or(0);
        let g = ConstGauge::new(assigned as i64);
        g.encode(encoder.encode_descriptor(
            "notification_consumer_assigned_partitions",
            "Partitions of the consumed topic assigned to this instance",
            None,
            g.metric_type(),
        )?)?;
        let gauges: [(&str, &str, PartitionFigure); 3] = [
            (
                "notification_consumer_lag",
                "Messages not yet handled: high watermark minus committed offset, per assigned partition",
                |p| p.lag,
            ),
            (
                "notification_consumer_committed_offset",
                "The group's committed offset, per assigned partition (-1 before the first commit)",
                |p| p.committed.unwrap_or(-1),
            ),
            (
                "notification_consumer_high_watermark",
                "The partition's high watermark, per assigned partition",
                |p| p.high_watermark,
            ),
        ];
        for (name, help, value) in gauges {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for p in &lag.partitions {
                let partition = p.partition.to_string();
                let labels = [
                    ("topic", p.topic.as_str()),
                    ("partition", partition.as_str()),
                ];
                ConstGauge::new(value(p)).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
