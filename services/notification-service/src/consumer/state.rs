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

/// Lag of one partition of the consumed topic, measured from the broker (kafka-lag): the
/// group's committed offset against the high watermark, with the member that holds it.
pub use kafka_lag::PartitionLag;

/// The last lag measurement.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LagSnapshot {
    /// Every partition of the consumed topic, whoever holds it.
    pub partitions: Vec<PartitionLag>,
    /// The group's state as the broker describes it (`Stable`, `PreparingRebalance`, ...).
    pub group_state: Option<String>,
    /// Members of the group as the broker sees them (all instances).
    pub group_members: usize,
    /// Whether the broker reports members' assignments (nisshi 0.6.0 does not).
    pub assignments_known: bool,
    /// Partitions of the topic that no member of the group holds (0 when unknown).
    pub unassigned_partitions: usize,
    pub measured_at: Option<DateTime<Utc>>,
    /// Why the last measurement failed, if it did (the previous figures are kept).
    pub error: Option<String>,
}

/// Where the consumer stands, as the watchdog judges it (see `consumer::watchdog`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// `ok`, `suspect` (a stuck state seen, not yet for the whole stall timeout),
    /// `unreachable` (the broker does not answer) or `rebuilding`.
    pub status: String,
    /// What is wrong, when something is.
    pub reason: Option<String>,
    /// Since when the current status holds.
    pub since: DateTime<Utc>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            status: "ok".into(),
            reason: None,
            since: Utc::now(),
        }
    }
}

/// The last time the consumer was rebuilt, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rebuild {
    pub at: DateTime<Utc>,
    pub reason: String,
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
    /// Times the watchdog replaced the Kafka consumer with a new one.
    pub rebuilds: AtomicU64,
    /// Group sessions librdkafka reported timed out (heartbeats unanswered for the session
    /// timeout: the consumer lost its partitions and rejoined).
    pub session_timeouts: AtomicU64,
    /// Messages received from the broker (the watchdog's measure of progress).
    pub received: AtomicU64,
    /// Partitions assigned by the last rebalance; `None` until the group was first joined.
    assignment: RwLock<Option<Vec<(String, i32)>>>,
    lag: RwLock<LagSnapshot>,
    /// Set while the database is unreachable and the consumer waits for it.
    waiting_for_db: RwLock<Option<String>>,
    /// The watchdog's verdict, for readiness and `/admin/consumer`.
    health: RwLock<Health>,
    last_rebuild: RwLock<Option<Rebuild>>,
    /// Set while a message is being handled (stored, retried, dead-lettered): no progress
    /// then is the database's or the handler's doing, not the broker's.
    busy: std::sync::atomic::AtomicBool,
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
            rebuilds: AtomicU64::new(0),
            session_timeouts: AtomicU64::new(0),
            received: AtomicU64::new(0),
            assignment: RwLock::new(None),
            lag: RwLock::new(LagSnapshot::default()),
            waiting_for_db: RwLock::new(None),
            health: RwLock::new(Health::default()),
            last_rebuild: RwLock::new(None),
            busy: std::sync::atomic::AtomicBool::new(false),
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

    /// Forgets the assignment (a new consumer has not joined yet).
    pub fn clear_assignment(&self) {
        *self.assignment.write() = None;
    }

    /// Stores a measurement of the group's lag on the consumed topic.
    pub fn set_lag(&self, measured: &kafka_lag::GroupLag) {
        let mut lag = self.lag.write();
        lag.partitions = measured
            .partitions
            .iter()
            .filter(|p| p.topic == self.topic)
            .cloned()
            .collect();
        lag.group_state = Some(measured.state.clone());
        lag.group_members = measured.members.len();
        lag.assignments_known = measured.assignments_known;
        lag.unassigned_partitions = measured.unassigned;
        lag.measured_at = Some(measured.measured_at);
        lag.error = None;
    }

    pub fn set_health(&self, status: &str, reason: Option<String>) {
        let mut health = self.health.write();
        if health.status != status || health.reason != reason {
            *health = Health {
                status: status.to_string(),
                reason,
                since: Utc::now(),
            };
        }
    }

    pub fn health(&self) -> Health {
        self.health.read().clone()
    }

    /// Records a rebuild of the consumer.
    pub fn rebuilt(&self, reason: &str) {
        Self::count(&self.rebuilds);
        *self.last_rebuild.write() = Some(Rebuild {
            at: Utc::now(),
            reason: reason.to_string(),
        });
    }

    pub fn set_busy(&self, busy: bool) {
        self.busy.store(busy, Ordering::Relaxed);
    }

    pub fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Relaxed) || self.waiting_for_db.read().is_some()
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
        let assignment = self.assignment.read().clone();
        ConsumerReport {
            group: self.group.clone(),
            topic: self.topic.clone(),
            dead_letter_topic: self.dlt_topic.clone(),
            joined: assignment.is_some(),
            assigned_partitions: assignment
                .unwrap_or_default()
                .into_iter()
                .filter(|(t, _)| *t == self.topic)
                .map(|(_, p)| p)
                .collect(),
            total_lag: lag.partitions.iter().map(|p| p.lag).sum(),
            partitions: lag.partitions,
            group_state: lag.group_state,
            group_members: lag.group_members,
            assignments_known: lag.assignments_known,
            unassigned_partitions: lag.unassigned_partitions,
            consumer_health: self.health(),
            rebuilds: load(&self.rebuilds),
            session_timeouts: load(&self.session_timeouts),
            last_rebuild: self.last_rebuild.read().clone(),
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
    /// Partitions of the topic this instance holds.
    pub assigned_partitions: Vec<i32>,
    /// Every partition of the topic, with the group's committed offset, the high watermark,
    /// the lag and the member holding it (measured from the broker: true when this instance
    /// holds nothing, is behind, or its group has no member at all).
    pub partitions: Vec<PartitionLag>,
    /// The group's lag over the whole topic.
    pub total_lag: i64,
    /// The group's state as the broker describes it.
    pub group_state: Option<String>,
    /// Members of the group (all instances).
    pub group_members: usize,
    /// Whether the broker reports members' assignments (nisshi 0.6.0 does not: `partitions`
    /// then have no `owner`).
    pub assignments_known: bool,
    /// Partitions of the topic no member holds (0 when assignments are unknown).
    pub unassigned_partitions: usize,
    /// The watchdog's verdict on this instance's consumer.
    pub consumer_health: Health,
    /// Times the consumer was rebuilt since start.
    pub rebuilds: u64,
    /// Group session timeouts librdkafka reported since start.
    pub session_timeouts: u64,
    pub last_rebuild: Option<Rebuild>,
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
            (
                "notification_consumer_rebuilds",
                "Times the watchdog replaced a stuck Kafka consumer",
                load(&s.rebuilds),
            ),
            (
                "notification_consumer_session_timeouts",
                "Consumer group sessions that timed out (partitions lost, group rejoined)",
                load(&s.session_timeouts),
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
                "Messages not yet handled: high watermark minus the group's committed offset, per partition of the topic",
                |p| p.lag,
            ),
            (
                "notification_consumer_committed_offset",
                "The group's committed offset, per partition of the topic (-1 before the first commit)",
                |p| p.committed.unwrap_or(-1),
            ),
            (
                "notification_consumer_high_watermark",
                "The partition's high watermark, per partition of the topic",
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
