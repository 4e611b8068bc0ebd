//! [`BrokerClient`]: the reads the platform needs from a Kafka-API broker, over one lazily
//! opened connection to the bootstrap address.
//!
//! Metadata (topics and partitions), ListOffsets (low and high watermarks), ListGroups,
//! DescribeGroups (members and their assignments) and OffsetFetch (committed offsets), joined
//! into lag per partition by [`crate::GroupLag::compute`]. Every request is bounded by the
//! request timeout; a failed or timed-out request closes the connection, and the next call
//! opens a new one (so a restarted broker is picked up without the caller doing anything).
//!
//! Advertised listeners are never followed: the platform's broker is a single node, and the CLI
//! reaches it through an address the stack publishes on the host, which is not the address the
//! broker advertises to services inside the stack network.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Buf;
use chrono::Utc;
use kafka_protocol::messages::consumer_protocol_assignment::ConsumerProtocolAssignment;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{
    BrokerId, DescribeGroupsRequest, GroupId, ListGroupsRequest, ListOffsetsRequest,
    MetadataRequest, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use tokio::sync::Mutex;

use crate::conn::{Api, Conn};
use crate::error::LagError;
use crate::model::{
    Group, GroupLag, GroupListing, Member, PartitionOffsets, Snapshot, Topic, TopicPartitions,
    group_topics,
};

/// Newest versions whose fields this client reads (older ones are used when the broker only
/// speaks those; newer ones add nothing the platform shows).
const METADATA_MAX: i16 = 12;
const LIST_OFFSETS_MAX: i16 = 7;
const OFFSET_FETCH_MAX: i16 = 9;
const DESCRIBE_GROUPS_MAX: i16 = 5;
const LIST_GROUPS_MAX: i16 = 4;

/// ListOffsets timestamps asking for the high and the low watermark.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

/// How a [`BrokerClient`] connects.
#[derive(Debug, Clone)]
pub struct Options {
    /// `client.id` the broker logs.
    pub client_id: String,
    /// Longest wait for a TCP connection.
    pub connect_timeout: Duration,
    /// Longest wait for one answer.
    pub request_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            client_id: "platform-lag".into(),
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// Reads topics, groups and lag from one broker. Cheap to share behind an `Arc`; calls are
/// serialised on its one connection.
#[derive(Debug)]
pub struct BrokerClient {
    addr: String,
    options: Options,
    /// The open connection, if any; `None` after a failure until the next call reconnects.
    conn: Mutex<Option<Conn>>,
}

impl BrokerClient {
    /// A client of the broker at `bootstrap` (`host:port`; of a comma-separated list the first
    /// entry is used, as the platform runs one broker). Nothing is connected until the first call.
    pub fn new(bootstrap: &str, options: Options) -> Result<BrokerClient, LagError> {
        let addr = parse_bootstrap(bootstrap)?;
        Ok(BrokerClient {
            addr,
            options,
            conn: Mutex::new(None),
        })
    }

    /// The broker address used.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends `request` (at the newest version both sides speak, at most `max_version`) and
    /// returns the version used and the broker's answer. For reads this crate has no method for.
    pub async fn send<R: Api>(
        &self,
        what: &str,
        request: &R,
        max_version: i16,
    ) -> Result<(i16, R::Response), LagError> {
        let mut slot = self.conn.lock().await;
        // A connection that sat idle may have been closed by a broker restart: one retry on a
        // fresh connection tells that apart from a broker that is really down.
        let reused = slot.is_some();
        match self.send_on(&mut slot, what, request, max_version).await {
            Err(e) if reused && matches!(e, LagError::Io { .. }) => {
                self.send_on(&mut slot, what, request, max_version).await
            }
            other => other,
        }
    }

    async fn send_on<R: Api>(
        &self,
        slot: &mut Option<Conn>,
        what: &str,
        request: &R,
        max_version: i16,
    ) -> Result<(i16, R::Response), LagError> {
        if slot.is_none() {
            *slot = Some(self.open().await?);
        }
        let conn = slot.as_mut().expect("connected above");
        let result = conn
            .call(what, request, max_version, self.options.request_timeout)
            .await;
        if result.is_err() {
            // The stream may hold half an answer: never reuse it.
            *slot = None;
        }
        result
    }

    /// The version of `R` that [`BrokerClient::send`] would use now (connecting if needed).
    async fn negotiated<R: Api>(&self, max_version: i16) -> Result<i16, LagError> {
        let mut slot = self.conn.lock().await;
        if slot.is_none() {
            *slot = Some(self.open().await?);
        }
        slot.as_ref()
            .expect("connected above")
            .version::<R>(max_version)
    }

    async fn open(&self) -> Result<Conn, LagError> {
        Conn::open(
            &self.addr,
            &self.options.client_id,
            self.options.connect_timeout,
            self.options.request_timeout,
        )
        .await
    }

    fn broker_error(&self, what: &str, code: i16) -> LagError {
        LagError::Broker {
            what: what.to_string(),
            addr: self.addr.clone(),
            code,
            name: crate::error::code_name(code),
        }
    }

    /// Topics with their partitions and watermarks: `names`, or every topic when `None`. A
    /// named topic that does not exist is [`LagError::UnknownTopic`].
    pub async fn topics(&self, names: Option<&[&str]>) -> Result<Vec<Topic>, LagError> {
        let what = "Metadata";
        let request = MetadataRequest::default()
            .with_topics(names.map(|names| {
                names
                    .iter()
                    .map(|n| MetadataRequestTopic::default().with_name(Some(topic_name(n))))
                    .collect()
            }))
            .with_allow_auto_topic_creation(false);
        let (_, metadata) = self.send(what, &request, METADATA_MAX).await?;
        let mut topics = Vec::new();
        for t in metadata.topics {
            let name = t.name.map(|n| n.0.to_string()).unwrap_or_default();
            match t.error_code {
                0 => {}
                // UNKNOWN_TOPIC_OR_PARTITION
                3 => {
                    return Err(LagError::UnknownTopic {
                        topic: name,
                        addr: self.addr.clone(),
                    });
                }
                code => return Err(self.broker_error(&format!("{what} of {name}"), code)),
            }
            let mut partitions: Vec<i32> = t.partitions.iter().map(|p| p.partition_index).collect();
            partitions.sort_unstable();
            topics.push((name, t.is_internal, partitions));
        }
        let latest = self.offsets(&topics, LATEST).await?;
        let earliest = self.offsets(&topics, EARLIEST).await?;
        let mut out: Vec<Topic> = topics
            .into_iter()
            .map(|(name, internal, partitions)| Topic {
                partitions: partitions
                    .into_iter()
                    .map(|p| {
                        let key = (name.clone(), p);
                        let high = latest.get(&key).copied().unwrap_or(0);
                        PartitionOffsets {
                            partition: p,
                            low_watermark: earliest.get(&key).copied().unwrap_or(0).min(high),
                            high_watermark: high,
                        }
                    })
                    .collect(),
                name,
                internal,
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// One topic (see [`BrokerClient::topics`]).
    pub async fn topic(&self, name: &str) -> Result<Topic, LagError> {
        self.topics(Some(&[name]))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| LagError::UnknownTopic {
                topic: name.to_string(),
                addr: self.addr.clone(),
            })
    }

    /// The offset at `timestamp` (`LATEST` or `EARLIEST`) of every partition of `topics`.
    async fn offsets(
        &self,
        topics: &[(String, bool, Vec<i32>)],
        timestamp: i64,
    ) -> Result<BTreeMap<(String, i32), i64>, LagError> {
        let what = "ListOffsets";
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(
                topics
                    .iter()
                    .filter(|(_, _, partitions)| !partitions.is_empty())
                    .map(|(name, _, partitions)| {
                        ListOffsetsTopic::default()
                            .with_name(topic_name(name))
                            .with_partitions(
                                partitions
                                    .iter()
                                    .map(|p| {
                                        ListOffsetsPartition::default()
                                            .with_partition_index(*p)
                                            .with_timestamp(timestamp)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        if request.topics.is_empty() {
            return Ok(BTreeMap::new());
        }
        let (_, answer) = self.send(what, &request, LIST_OFFSETS_MAX).await?;
        let mut out = BTreeMap::new();
        for t in answer.topics {
            for p in t.partitions {
                if p.error_code != 0 {
                    return Err(self.broker_error(
                        &format!("{what} of {}/{}", t.name.0, p.partition_index),
                        p.error_code,
                    ));
                }
                out.insert((t.name.0.to_string(), p.partition_index), p.offset);
            }
        }
        Ok(out)
    }

    /// Every group the broker knows.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>, LagError> {
        let what = "ListGroups";
        let (_, answer) = self
            .send(what, &ListGroupsRequest::default(), LIST_GROUPS_MAX)
            .await?;
        if answer.error_code != 0 {
            return Err(self.broker_error(what, answer.error_code));
        }
        let mut groups: Vec<GroupListing> = answer
            .groups
            .into_iter()
            .map(|g| GroupListing {
                group_id: g.group_id.0.to_string(),
                protocol_type: g.protocol_type.to_string(),
                state: g.group_state.to_string(),
            })
            .collect();
        groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        Ok(groups)
    }

    /// Describes `group_ids`: state, protocol and members with their decoded assignments. A
    /// group the broker does not know comes back with no members and state `Dead`.
    pub async fn describe_groups(&self, group_ids: &[&str]) -> Result<Vec<Group>, LagError> {
        if group_ids.is_empty() {
            return Ok(Vec::new());
        }
        let what = "DescribeGroups";
        let request = DescribeGroupsRequest::default()
            .with_groups(group_ids.iter().map(|g| group_id(g)).collect());
        let (_, answer) = self.send(what, &request, DESCRIBE_GROUPS_MAX).await?;
        let mut out = Vec::new();
        for g in answer.groups {
            let id = g.group_id.0.to_string();
            match g.error_code {
                0 => {}
                // GROUP_ID_NOT_FOUND (newer brokers say so for unknown groups)
                69 => {
                    out.push(Group::unknown(&id));
                    continue;
                }
                code => return Err(self.broker_error(&format!("{what} of {id}"), code)),
            }
            let consumer = g.protocol_type.is_empty() || &*g.protocol_type == "consumer";
            let mut members: Vec<Member> = g
                .members
                .into_iter()
                .map(|m| Member {
                    member_id: m.member_id.to_string(),
                    client_id: m.client_id.to_string(),
                    client_host: m.client_host.to_string(),
                    assignment: if consumer {
                        decode_assignment(&m.member_assignment)
                    } else {
                        Vec::new()
                    },
                })
                .collect();
            members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
            out.push(Group {
                group_id: id,
                state: if g.group_state.is_empty() {
                    "Unknown".into()
                } else {
                    g.group_state.to_string()
                },
                protocol_type: g.protocol_type.to_string(),
                protocol: g.protocol_data.to_string(),
                members,
            });
        }
        Ok(out)
    }

    /// One group (see [`BrokerClient::describe_groups`]).
    pub async fn describe_group(&self, group_id: &str) -> Result<Group, LagError> {
        Ok(self
            .describe_groups(&[group_id])
            .await?
            .into_iter()
            .next()
            .unwrap_or_else(|| Group::unknown(group_id)))
    }

    /// The group's committed offsets: for the partitions of `topics`, or every partition it
    /// committed to when `None`. Partitions without a commit are left out.
    pub async fn committed(
        &self,
        group: &str,
        topics: Option<&[Topic]>,
    ) -> Result<BTreeMap<(String, i32), i64>, LagError> {
        let what = format!("OffsetFetch of {group}");
        // The version decides the request's shape: v8+ wraps the group in a list.
        let version = self
            .negotiated::<OffsetFetchRequest>(OFFSET_FETCH_MAX)
            .await?;
        let request = offset_fetch_request(group, topics, version >= 8);
        let (version, answer) = self.send(&what, &request, version).await?;
        self.read_committed(&what, version, answer)
    }

    fn read_committed(
        &self,
        what: &str,
        version: i16,
        answer: kafka_protocol::messages::OffsetFetchResponse,
    ) -> Result<BTreeMap<(String, i32), i64>, LagError> {
        // (topic, partition, committed offset, error code) from either shape of the answer
        // (the two shapes are distinct types with the same fields).
        macro_rules! rows {
            ($topics:expr) => {
                $topics
                    .flat_map(|t| {
                        let name: &str = &t.name.0;
                        t.partitions.iter().map(move |p| {
                            (name, p.partition_index, p.committed_offset, p.error_code)
                        })
                    })
                    .collect()
            };
        }
        let rows: Vec<(&str, i32, i64, i16)> = if version >= 8 {
            if let Some(g) = answer.groups.iter().find(|g| g.error_code != 0) {
                return Err(self.broker_error(what, g.error_code));
            }
            rows!(answer.groups.iter().flat_map(|g| &g.topics))
        } else {
            if answer.error_code != 0 {
                return Err(self.broker_error(what, answer.error_code));
            }
            rows!(answer.topics.iter())
        };
        let mut out = BTreeMap::new();
        for (topic, partition, offset, code) in rows {
            if code != 0 {
                return Err(self.broker_error(&format!("{what} {topic}/{partition}"), code));
            }
            // -1: no commit for this partition.
            if offset >= 0 {
                out.insert((topic.to_string(), partition), offset);
            }
        }
        Ok(out)
    }

    /// `group`'s lag on every partition of the topics it commits to, its members are assigned,
    /// and `expected` (so a group that never committed and has no member still shows the
    /// backlog of the topic it should consume).
    pub async fn group_lag(&self, group: &str, expected: &[&str]) -> Result<GroupLag, LagError> {
        let described = self.describe_group(group).await?;
        let committed = self.committed(group, None).await?;
        let names: Vec<&str> = group_topics(&described, &committed, expected)
            .into_iter()
            .collect();
        let topics = if names.is_empty() {
            Vec::new()
        } else {
            self.topics(Some(&names)).await?
        };
        Ok(GroupLag::compute(
            &described,
            &topics,
            &committed,
            Utc::now(),
        ))
    }

    /// Every topic and every group's lag, for `platform status` and the dashboard.
    pub async fn snapshot(&self) -> Result<Snapshot, LagError> {
        let topics = self.topics(None).await?;
        let listed = self.list_groups().await?;
        let ids: Vec<&str> = listed.iter().map(|g| g.group_id.as_str()).collect();
        let described = self.describe_groups(&ids).await?;
        let mut groups = Vec::with_capacity(described.len());
        for group in &described {
            let committed = self.committed(&group.group_id, None).await?;
            let names = group_topics(group, &committed, &[]);
            let of_group: Vec<Topic> = topics
                .iter()
                .filter(|t| names.contains(t.name.as_str()))
                .cloned()
                .collect();
            groups.push(GroupLag::compute(group, &of_group, &committed, Utc::now()));
        }
        Ok(Snapshot {
            broker: self.addr.clone(),
            topics,
            groups,
            measured_at: Utc::now(),
        })
    }
}

/// The OffsetFetch request for `group` (v8+ shape when `grouped`).
fn offset_fetch_request(
    group: &str,
    topics: Option<&[Topic]>,
    grouped: bool,
) -> OffsetFetchRequest {
    // (name, partitions) of each topic; `None` asks for every partition the group committed.
    let wanted: Option<Vec<(TopicName, Vec<i32>)>> = topics.map(|topics| {
        topics
            .iter()
            .map(|t| {
                let partitions = t.partitions.iter().map(|p| p.partition).collect();
                (topic_name(&t.name), partitions)
            })
            .collect()
    });
    if grouped {
        let topics = wanted.map(|w| {
            w.into_iter()
                .map(|(name, ps)| {
                    OffsetFetchRequestTopics::default()
                        .with_name(name)
                        .with_partition_indexes(ps)
                })
                .collect()
        });
        OffsetFetchRequest::default().with_groups(vec![
            OffsetFetchRequestGroup::default()
                .with_group_id(group_id(group))
                .with_topics(topics),
        ])
    } else {
        let topics = wanted.map(|w| {
            w.into_iter()
                .map(|(name, ps)| {
                    OffsetFetchRequestTopic::default()
                        .with_name(name)
                        .with_partition_indexes(ps)
                })
                .collect()
        });
        OffsetFetchRequest::default()
            .with_group_id(group_id(group))
            .with_topics(topics)
    }
}

/// Decodes a consumer-protocol assignment (version, then the version's body); empty or
/// unreadable bytes are no assignment.
pub fn decode_assignment(bytes: &[u8]) -> Vec<TopicPartitions> {
    let mut buf = bytes::Bytes::copy_from_slice(bytes);
    if buf.remaining() < 2 {
        return Vec::new();
    }
    let version = buf.get_i16().clamp(0, 3);
    match ConsumerProtocolAssignment::decode(&mut buf, version) {
        Ok(a) => {
            let mut out: Vec<TopicPartitions> = a
                .assigned_partitions
                .into_iter()
                .map(|t| {
                    let mut partitions = t.partitions;
                    partitions.sort_unstable();
                    TopicPartitions {
                        topic: t.topic.0.to_string(),
                        partitions,
                    }
                })
                .collect();
            out.sort_by(|a, b| a.topic.cmp(&b.topic));
            out
        }
        Err(_) => Vec::new(),
    }
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn group_id(name: &str) -> GroupId {
    GroupId(StrBytes::from_string(name.to_string()))
}

/// `host:port` from a bootstrap list (its first entry), or why not.
fn parse_bootstrap(bootstrap: &str) -> Result<String, LagError> {
    let invalid = |reason| LagError::Address {
        address: bootstrap.to_string(),
        reason,
    };
    let first = bootstrap
        .split(',')
        .map(str::trim)
        .find(|s| !s.is_empty())
        .ok_or_else(|| invalid("it is empty"))?;
    let first = first
        .strip_prefix("tcp://")
        .or_else(|| first.strip_prefix("PLAINTEXT://"))
        .unwrap_or(first);
    let (host, port) = first
        .rsplit_once(':')
        .ok_or_else(|| invalid("expected host:port"))?;
    if host.is_empty() {
        return Err(invalid("the host is empty"));
    }
    port.parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| invalid("the port is not a number from 1 to 65535"))?;
    Ok(format!("{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    use kafka_protocol::protocol::Encodable;

    /// Bootstrap lists give their first `host:port`; schemes are dropped; bad ones say why.
    #[test]
    fn bootstrap_addresses() {
        assert_eq!(parse_bootstrap("nisshi:9092").unwrap(), "nisshi:9092");
        assert_eq!(parse_bootstrap(" a:1 , b:2").unwrap(), "a:1");
        assert_eq!(
            parse_bootstrap("tcp://127.0.0.1:19092").unwrap(),
            "127.0.0.1:19092"
        );
        for bad in ["", " , ", "host", ":9092", "h:0", "h:99999", "h:x"] {
            assert!(parse_bootstrap(bad).is_err(), "{bad:?}");
        }
    }

    /// An assignment written as consumers write it decodes to sorted topic partitions;
    /// empty and garbage bytes are "no assignment", never a panic.
    #[test]
    fn assignments() {
        let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            TopicPartition::default()
                .with_topic(topic_name("orders"))
                .with_partitions(vec![2, 0]),
        ]);
        let mut bytes = bytes::BytesMut::new();
        bytes::BufMut::put_i16(&mut bytes, 1);
        assignment.encode(&mut bytes, 1).unwrap();
        assert_eq!(
            decode_assignment(&bytes),
            vec![TopicPartitions {
                topic: "orders".into(),
                partitions: vec![0, 2]
            }]
        );
        assert!(decode_assignment(&[]).is_empty());
        assert!(decode_assignment(&[0, 1, 0xff, 0xff, 0xff]).is_empty());
    }
}
