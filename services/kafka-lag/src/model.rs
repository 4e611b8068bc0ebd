//! What the broker reports, as plain serde types the CLI prints, notification-service serves
//! and the dashboard draws: topics with their partitions' watermarks, consumer groups with their
//! members and assignments, and lag per partition. [`GroupLag::compute`] joins them (pure, so
//! every case is unit-tested).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One partition's offsets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionOffsets {
    pub partition: i32,
    /// The first offset still stored (log start).
    pub low_watermark: i64,
    /// The offset the next message written gets.
    pub high_watermark: i64,
}

/// A topic and its partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Topic {
    pub name: String,
    #[serde(default)]
    pub internal: bool,
    /// Sorted by partition.
    pub partitions: Vec<PartitionOffsets>,
}

impl Topic {
    /// Messages stored across the partitions (high minus low watermark).
    pub fn messages(&self) -> i64 {
        self.partitions
            .iter()
            .map(|p| (p.high_watermark - p.low_watermark).max(0))
            .sum()
    }
}

/// A group as `ListGroups` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupListing {
    pub group_id: String,
    /// `consumer` for Kafka consumers.
    pub protocol_type: String,
    /// As the broker names it (`Stable`, `PreparingRebalance`, ...); some brokers only say
    /// `UNKNOWN` here, `DescribeGroups` is more reliable.
    pub state: String,
}

/// Partitions of one topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicPartitions {
    pub topic: String,
    pub partitions: Vec<i32>,
}

/// A member of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub member_id: String,
    pub client_id: String,
    pub client_host: String,
    /// What the group's leader assigned to it (decoded consumer-protocol assignment); empty
    /// while a rebalance runs or when it got nothing.
    pub assignment: Vec<TopicPartitions>,
}

impl Member {
    /// Number of partitions assigned.
    pub fn assigned(&self) -> usize {
        self.assignment.iter().map(|t| t.partitions.len()).sum()
    }
}

/// A group as `DescribeGroups` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    pub group_id: String,
    /// `Stable`, `PreparingRebalance`, `CompletingRebalance`, `Empty`, `Dead`, or what the
    /// broker says.
    pub state: String,
    pub protocol_type: String,
    /// The assignor in use (`range`, `roundrobin`, ...).
    pub protocol: String,
    pub members: Vec<Member>,
}

impl Group {
    /// A group the broker does not know: no members.
    pub fn unknown(group_id: &str) -> Group {
        Group {
            group_id: group_id.to_string(),
            state: "Dead".into(),
            protocol_type: String::new(),
            protocol: String::new(),
            members: Vec::new(),
        }
    }

    /// Whether the members' assignments are known: there are no members, or at least one was
    /// reported with partitions. (A broker that does not report assignments sends them all
    /// empty; so does a group whose leader assigned nothing to anyone, which cannot be told
    /// apart and is left to consumers' own watchdogs.)
    pub fn assignments_known(&self) -> bool {
        self.members.is_empty() || self.members.iter().any(|m| m.assigned() > 0)
    }

    /// The member assigned `topic`/`partition`, if any.
    pub fn owner(&self, topic: &str, partition: i32) -> Option<&Member> {
        self.members.iter().find(|m| {
            m.assignment
                .iter()
                .any(|t| t.topic == topic && t.partitions.contains(&partition))
        })
    }
}

/// Lag of one partition for one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// The group's committed offset (the next message it will handle); `None` before its
    /// first commit.
    pub committed: Option<i64>,
    pub low_watermark: i64,
    pub high_watermark: i64,
    /// `high_watermark - committed`; without a commit, every stored message counts
    /// (`high_watermark - low_watermark`: consumers here start at the earliest offset).
    pub lag: i64,
    /// The member (client id) the partition is assigned to; `None` when nobody consumes it.
    pub owner: Option<String>,
}

/// A group's lag across the topics it consumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupLag {
    pub group_id: String,
    pub state: String,
    pub members: Vec<Member>,
    /// Sorted by topic and partition.
    pub partitions: Vec<PartitionLag>,
    pub total_lag: i64,
    /// Whether the broker reported the members' assignments. nisshi 0.6.0's DescribeGroups
    /// lists members without them (`nisshi-storage/src/lib.rs`, `member_assignment(Bytes::new())`),
    /// so owners are unknown there: `owner` is then `None` and `unassigned` 0.
    pub assignments_known: bool,
    /// Partitions of the group's topics that no member is assigned (0 when unknown).
    pub unassigned: usize,
    pub measured_at: DateTime<Utc>,
}

impl GroupLag {
    /// Joins a group's description, its committed offsets and the watermarks of `topics`.
    ///
    /// The partitions covered are those of `topics` (all of their partitions, so a partition
    /// the group never committed and nobody is assigned still shows its whole backlog); the
    /// caller passes the topics the group committed to, those its members are assigned, and
    /// any it is expected to consume.
    pub fn compute(
        group: &Group,
        topics: &[Topic],
        committed: &BTreeMap<(String, i32), i64>,
        measured_at: DateTime<Utc>,
    ) -> GroupLag {
        let mut partitions = Vec::new();
        for topic in topics {
            for p in &topic.partitions {
                let committed = committed.get(&(topic.name.clone(), p.partition)).copied();
                let lag = (p.high_watermark - committed.unwrap_or(p.low_watermark)).max(0);
                partitions.push(PartitionLag {
                    topic: topic.name.clone(),
                    partition: p.partition,
                    committed,
                    low_watermark: p.low_watermark,
                    high_watermark: p.high_watermark,
                    lag,
                    owner: group
                        .owner(&topic.name, p.partition)
                        .map(|m| m.client_id.clone()),
                });
            }
        }
        partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        let assignments_known = group.assignments_known();
        GroupLag {
            group_id: group.group_id.clone(),
            state: group.state.clone(),
            members: group.members.clone(),
            total_lag: partitions.iter().map(|p| p.lag).sum(),
            assignments_known,
            unassigned: if assignments_known {
                partitions.iter().filter(|p| p.owner.is_none()).count()
            } else {
                0
            },
            partitions,
            measured_at,
        }
    }

    /// Lag of one topic only.
    pub fn topic_lag(&self, topic: &str) -> i64 {
        self.partitions
            .iter()
            .filter(|p| p.topic == topic)
            .map(|p| p.lag)
            .sum()
    }
}

/// The topics a group's lag should cover: those it committed to, those its members are
/// assigned, and `expected` ones, without duplicates.
pub fn group_topics<'a>(
    group: &'a Group,
    committed: &'a BTreeMap<(String, i32), i64>,
    expected: &'a [&'a str],
) -> BTreeSet<&'a str> {
    let mut names: BTreeSet<&str> = expected.iter().copied().collect();
    names.extend(committed.keys().map(|(t, _)| t.as_str()));
    for m in &group.members {
        names.extend(m.assignment.iter().map(|t| t.topic.as_str()));
    }
    names
}

/// Everything the broker says at one moment: topics and every group's lag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// The broker address read.
    pub broker: String,
    pub topics: Vec<Topic>,
    pub groups: Vec<GroupLag>,
    pub measured_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str, marks: &[(i64, i64)]) -> Topic {
        Topic {
            name: name.into(),
            internal: false,
            partitions: marks
                .iter()
                .enumerate()
                .map(|(i, (low, high))| PartitionOffsets {
                    partition: i as i32,
                    low_watermark: *low,
                    high_watermark: *high,
                })
                .collect(),
        }
    }

    fn member(client: &str, topic: &str, partitions: &[i32]) -> Member {
        Member {
            member_id: format!("{client}-1"),
            client_id: client.into(),
            client_host: "/127.0.0.1".into(),
            assignment: if partitions.is_empty() {
                Vec::new()
            } else {
                vec![TopicPartitions {
                    topic: topic.into(),
                    partitions: partitions.to_vec(),
                }]
            },
        }
    }

    /// Lag is high watermark minus committed offset; a partition never committed counts all
    /// it stores; owners come from the assignments, and partitions nobody holds are counted.
    #[test]
    fn lag_per_partition() {
        let topics = [topic("orders", &[(0, 10), (0, 5), (3, 7)])];
        let committed = BTreeMap::from([(("orders".to_string(), 0), 4), (("orders".into(), 1), 5)]);
        let group = Group {
            group_id: "g".into(),
            state: "Stable".into(),
            protocol_type: "consumer".into(),
            protocol: "range".into(),
            members: vec![member("a", "orders", &[0, 1])],
        };
        let lag = GroupLag::compute(&group, &topics, &committed, Utc::now());
        let figures: Vec<(Option<i64>, i64, Option<&str>)> = lag
            .partitions
            .iter()
            .map(|p| (p.committed, p.lag, p.owner.as_deref()))
            .collect();
        assert_eq!(
            figures,
            [
                (Some(4), 6, Some("a")),
                (Some(5), 0, Some("a")),
                (None, 4, None)
            ]
        );
        assert_eq!(lag.total_lag, 10);
        assert!(lag.assignments_known);
        assert_eq!(lag.unassigned, 1);
        assert_eq!(lag.topic_lag("orders"), 10);
    }

    /// Members reported without assignments (nisshi 0.6.0, or a leader that assigned nothing):
    /// owners are unknown, nothing is counted unassigned, and the whole backlog is still lag.
    #[test]
    fn empty_assignment_is_true_lag() {
        let topics = [topic("orders", &[(0, 3), (0, 2)])];
        let committed = BTreeMap::from([(("orders".to_string(), 0), 1)]);
        let group = Group {
            group_id: "g".into(),
            state: "Stable".into(),
            protocol_type: "consumer".into(),
            protocol: "range".into(),
            members: vec![member("a", "orders", &[])],
        };
        let lag = GroupLag::compute(&group, &topics, &committed, Utc::now());
        assert_eq!(lag.total_lag, 4);
        assert!(!lag.assignments_known);
        assert_eq!(lag.unassigned, 0);
        assert!(lag.partitions.iter().all(|p| p.owner.is_none()));
    }

    /// A committed offset past the high watermark (a recreated topic) is lag 0, never negative;
    /// the topics of a group are the expected, committed and assigned ones once each.
    #[test]
    fn clamps_and_collects_topics() {
        let topics = [topic("t", &[(0, 2)])];
        let committed = BTreeMap::from([(("t".to_string(), 0), 9), (("old".to_string(), 0), 1)]);
        let group = Group {
            members: vec![member("a", "x", &[0])],
            ..Group::unknown("g")
        };
        assert_eq!(
            GroupLag::compute(&group, &topics, &committed, Utc::now()).total_lag,
            0
        );
        let names: Vec<&str> = group_topics(&group, &committed, &["t"])
            .into_iter()
            .collect();
        assert_eq!(names, ["old", "t", "x"]);
        assert_eq!(topics[0].messages(), 2);
    }
}
