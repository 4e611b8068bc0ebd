//! The stack's Kafka-API broker as the host sees it: topics, consumer groups with their members
//! and assignments, and lag per partition, read with the shared `kafka-lag` crate (the same
//! code notification-service's `/admin/consumer` uses), from the broker itself. So the lag is
//! true when a consumer is down or holds nothing, which a consumer's own report cannot be.
//!
//! Where the broker is comes from the stack: the `KAFKA_BOOTSTRAP_SERVERS` its services use
//! (`kafka:9092` in the dev stack), rewritten by the observer's route to an address the host
//! reaches: the container's address on Linux, or the port the dev stack publishes on 127.0.0.1
//! elsewhere. kafka-lag never follows the broker's advertised listener (a name only resolvable
//! inside the stack network), so either works.

use std::time::Duration;

use kafka_lag::{BrokerClient, GroupLag, Options, Snapshot};
use serde::Serialize;
use url::Url;

use super::{ObserveError, Observer, Result};

/// The environment variable naming the broker, as the services read it.
pub const BOOTSTRAP_ENV: &str = "KAFKA_BOOTSTRAP_SERVERS";

/// What `platform status` shows of the broker.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KafkaSummary {
    /// The address read, when the stack says where the broker is.
    pub broker: Option<String>,
    pub reachable: bool,
    /// Why it could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Every consumer group with its lag per partition.
    pub groups: Vec<GroupLag>,
}

impl KafkaSummary {
    /// What was read, or why nothing was.
    pub fn from_result(broker: Option<String>, read: Result<Snapshot>) -> KafkaSummary {
        match read {
            Ok(s) => KafkaSummary {
                broker: Some(s.broker),
                reachable: true,
                error: None,
                groups: s.groups,
            },
            Err(e) => KafkaSummary {
                broker,
                reachable: false,
                error: Some(e.to_string()),
                groups: Vec::new(),
            },
        }
    }

    /// Rows of `platform status`'s lag table: one per group and partition.
    pub fn rows(&self) -> Vec<Vec<String>> {
        let mut rows = vec![
            [
                "GROUP",
                "STATE",
                "MEMBERS",
                "TOPIC",
                "PARTITION",
                "COMMITTED",
                "HIGH",
                "LAG",
                "OWNER",
            ]
            .map(String::from)
            .to_vec(),
        ];
        for g in &self.groups {
            if g.partitions.is_empty() {
                rows.push(vec![
                    g.group_id.clone(),
                    g.state.clone(),
                    g.members.len().to_string(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "0".into(),
                    "-".into(),
                ]);
            }
            for p in &g.partitions {
                rows.push(vec![
                    g.group_id.clone(),
                    g.state.clone(),
                    g.members.len().to_string(),
                    p.topic.clone(),
                    p.partition.to_string(),
                    p.committed.map_or_else(|| "-".into(), |c| c.to_string()),
                    p.high_watermark.to_string(),
                    p.lag.to_string(),
                    match (&p.owner, g.assignments_known) {
                        (Some(owner), _) => owner.clone(),
                        (None, true) => "(none)".into(),
                        // The broker does not report assignments (nisshi 0.6.0).
                        (None, false) => "?".into(),
                    },
                ]);
            }
        }
        rows
    }
}

impl Observer {
    /// The broker's address as the stack's services use it (their `KAFKA_BOOTSTRAP_SERVERS`,
    /// first entry), rewritten to one this host reaches.
    pub fn broker_address(&self) -> Result<String> {
        let (service, value) =
            self.env_value(BOOTSTRAP_ENV)
                .ok_or_else(|| ObserveError::NotConfigured {
                    stack: self.stack().name.clone(),
                    what: "the Kafka broker",
                    env: BOOTSTRAP_ENV,
                })?;
        let first = value.split(',').next().unwrap_or_default().trim();
        let in_network = Url::parse(&format!("http://{first}")).map_err(|e| {
            ObserveError::Setting(format!(
                "{BOOTSTRAP_ENV} of service `{service}` is not host:port ({value}): {e}"
            ))
        })?;
        let url = self.resolve(&in_network)?;
        let host = url.host_str().unwrap_or_default();
        let port = url.port().unwrap_or(9092);
        Ok(format!("{host}:{port}"))
    }

    /// A kafka-lag client of the stack's broker, with short timeouts for interactive use.
    pub fn broker(&self) -> Result<BrokerClient> {
        let addr = self.broker_address()?;
        BrokerClient::new(
            &addr,
            Options {
                client_id: "platform-cli".into(),
                connect_timeout: Duration::from_secs(2),
                request_timeout: Duration::from_secs(3),
            },
        )
        .map_err(|e| ObserveError::Setting(e.to_string()))
    }

    /// Every topic and every group's lag, read from the broker.
    pub async fn kafka_snapshot(&self) -> Result<Snapshot> {
        let broker = self.broker()?;
        broker
            .snapshot()
            .await
            .map_err(|e| ObserveError::Unreachable {
                what: "read consumer lag".into(),
                url: broker.addr().to_string(),
                message: e.to_string(),
            })
    }

    /// One group's lag on the topics it consumes (and `expected` ones), read from the broker.
    pub async fn group_lag(&self, group: &str, expected: &[&str]) -> Result<GroupLag> {
        let broker = self.broker()?;
        broker
            .group_lag(group, expected)
            .await
            .map_err(|e| ObserveError::Unreachable {
                what: format!("read the lag of group {group}"),
                url: broker.addr().to_string(),
                message: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use kafka_lag::{Member, PartitionLag};

    /// One row per group and partition, `(none)` for a partition nobody holds (`?` when the
    /// broker does not say) and `-` before the first commit; an unreadable broker is reported
    /// with its reason.
    #[test]
    fn rows_and_errors() {
        let summary = KafkaSummary {
            broker: Some("127.0.0.1:19092".into()),
            reachable: true,
            error: None,
            groups: vec![GroupLag {
                group_id: "notification-service".into(),
                state: "Stable".into(),
                members: vec![Member {
                    member_id: "m".into(),
                    client_id: "c1".into(),
                    client_host: "/10.0.0.2".into(),
                    assignment: Vec::new(),
                }],
                partitions: vec![
                    PartitionLag {
                        topic: "order-placed".into(),
                        partition: 0,
                        committed: Some(4),
                        low_watermark: 0,
                        high_watermark: 10,
                        lag: 6,
                        owner: Some("c1".into()),
                    },
                    PartitionLag {
                        topic: "order-placed".into(),
                        partition: 1,
                        committed: None,
                        low_watermark: 0,
                        high_watermark: 2,
                        lag: 2,
                        owner: None,
                    },
                ],
                total_lag: 8,
                assignments_known: true,
                unassigned: 1,
                measured_at: Utc::now(),
            }],
        };
        let rows = summary.rows();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1][7], "6");
        assert_eq!(rows[2][5], "-");
        assert_eq!(rows[2][8], "(none)");
        let mut unknown = summary.clone();
        unknown.groups[0].assignments_known = false;
        unknown.groups[0].partitions[0].owner = None;
        assert_eq!(unknown.rows()[1][8], "?");
        let down =
            KafkaSummary::from_result(Some("b:1".into()), Err(ObserveError::Setting("no".into())));
        assert!(!down.reachable);
        assert_eq!(down.error.as_deref(), Some("no"));
    }
}
