//! The Kafka panel's data, as read from the broker itself (committed group offsets against the
//! partitions' high watermarks), so the lag is true when a consumer is down or holds no
//! partition. The CLI fills these from the shared lag crate; the dashboard keeps a history of
//! each group's total lag for the sparkline.

use std::collections::BTreeMap;

use super::history::History;

/// One read of the broker.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KafkaSnapshot {
    /// The address it was read at.
    pub broker: String,
    pub topics: Vec<TopicView>,
    pub groups: Vec<GroupView>,
}

/// A topic with its partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicView {
    pub name: String,
    pub partitions: Vec<PartitionView>,
}

/// A partition's watermarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionView {
    pub partition: i32,
    pub low_watermark: i64,
    pub high_watermark: i64,
}

/// A consumer group and its lag per partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    pub group: String,
    /// As the broker says (`Stable`, `PreparingRebalance`, `Empty`, ...).
    pub state: String,
    pub members: usize,
    pub partitions: Vec<PartitionLagView>,
    pub total_lag: i64,
    /// Partitions that no member is assigned.
    pub unassigned: usize,
}

/// One partition's lag for one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLagView {
    pub topic: String,
    pub partition: i32,
    /// `None` before the group's first commit.
    pub committed: Option<i64>,
    pub high_watermark: i64,
    pub lag: i64,
    /// The member (client id) it is assigned to.
    pub owner: Option<String>,
}

/// What the panel keeps.
#[derive(Debug, Clone, Default)]
pub struct Kafka {
    /// The last successful read.
    pub snapshot: Option<KafkaSnapshot>,
    /// Total lag per group, one sample per read (a gap when the broker was not reached).
    pub lag_history: BTreeMap<String, History>,
}

impl Kafka {
    /// Takes a read, or a failed one (`None`): the last snapshot stays, histories get a gap.
    pub fn apply(&mut self, read: Option<KafkaSnapshot>) {
        match read {
            Some(s) => {
                for g in &s.groups {
                    self.lag_history
                        .entry(g.group.clone())
                        .or_default()
                        .push(Some(u64::try_from(g.total_lag).unwrap_or(0)));
                }
                self.snapshot = Some(s);
            }
            None => {
                for h in self.lag_history.values_mut() {
                    h.push(None);
                }
            }
        }
    }

    /// Total lag over every group.
    pub fn total_lag(&self) -> Option<i64> {
        self.snapshot
            .as_ref()
            .map(|s| s.groups.iter().map(|g| g.total_lag).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each read adds a lag sample per group; a failed read keeps the data and adds a gap.
    #[test]
    fn lag_history() {
        let mut k = Kafka::default();
        let group = |lag| GroupView {
            group: "notification-service".into(),
            state: "Stable".into(),
            members: 1,
            partitions: vec![],
            total_lag: lag,
            unassigned: 0,
        };
        k.apply(Some(KafkaSnapshot {
            broker: "b".into(),
            topics: vec![],
            groups: vec![group(3)],
        }));
        k.apply(None);
        k.apply(Some(KafkaSnapshot {
            broker: "b".into(),
            topics: vec![],
            groups: vec![group(40)],
        }));
        assert_eq!(
            k.lag_history["notification-service"]
                .last(3)
                .collect::<Vec<_>>(),
            vec![Some(3), None, Some(40)]
        );
        assert_eq!(k.total_lag(), Some(40));
    }
}
