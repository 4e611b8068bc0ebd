//! kafka-broker as a program (the build in the cargo target directory, started by testkit on a
//! free loopback port) against librdkafka (rdkafka, the workspace's version) and raw protocol
//! requests: produce/consume/commit in a group, rebalances, session expiry, restart, the
//! idempotent producer, long-poll latency and hostile frames.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use testkit::{Broker, BrokerKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn broker() -> Broker {
    Broker::start_kind(BrokerKind::KafkaBroker).await.unwrap()
}

fn producer(broker: &Broker) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap_servers())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "0")
        .create()
        .unwrap()
}

fn consumer(broker: &Broker, group: &str, extra: &[(&str, &str)]) -> StreamConsumer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", broker.bootstrap_servers())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .set("fetch.wait.max.ms", "500");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    config.create().unwrap()
}

async fn produce(p: &FutureProducer, topic: &str, key: &str, value: &str) -> (i32, i64) {
    let delivery = p
        .send(
            FutureRecord::to(topic).key(key).payload(value),
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("delivery failed: {e}"));
    (delivery.partition, delivery.offset)
}

/// Receives `n` messages (bounded wait), committing each synchronously.
async fn consume(c: &StreamConsumer, n: usize, commit: bool) -> Vec<(i32, i64, String)> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = tokio::time::timeout(left, c.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} messages within 60 s", got.len()))
            .unwrap();
        let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
        got.push((m.partition(), m.offset(), value));
        if commit {
            c.commit_message(&m, CommitMode::Sync).unwrap();
        }
    }
    got
}

fn committed(c: &StreamConsumer, topic: &str, partitions: i32) -> Vec<i64> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    c.committed_offsets(tpl, Duration::from_secs(10))
        .unwrap()
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => -1,
        })
        .collect()
}

/// How many partitions a consumer holds, polled until `want` (its messages are not consumed).
async fn wait_assigned(c: &StreamConsumer, want: usize, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let n = c.assignment().map(|a| a.count()).unwrap_or(0);
        if n == want || Instant::now() >= deadline {
            return n;
        }
        // Polling drives librdkafka's rebalance callbacks.
        let _ = tokio::time::timeout(Duration::from_millis(100), c.recv()).await;
    }
}

#[tokio::test]
async fn produce_consume_and_commit_in_a_group() {
    let broker = broker().await;
    broker.create_topic("orders", 3).await.unwrap();
    let p = producer(&broker);
    let mut sent = HashSet::new();
    for i in 0..30 {
        let (partition, offset) = produce(&p, "orders", &format!("k{i}"), &format!("v{i}")).await;
        assert!(sent.insert((partition, offset)), "offset reused");
    }
    let c = consumer(&broker, "g1", &[]);
    c.subscribe(&["orders"]).unwrap();
    let got = consume(&c, 30, true).await;
    let got_set: HashSet<(i32, i64)> = got.iter().map(|(p, o, _)| (*p, *o)).collect();
    assert_eq!(got_set, sent);
    let values: HashSet<String> = got.into_iter().map(|(_, _, v)| v).collect();
    assert_eq!(values.len(), 30);
    // Committed offsets are the next offset to read, per partition.
    let mut next = [0i64; 3];
    for (partition, offset) in &sent {
        next[*partition as usize] = next[*partition as usize].max(offset + 1);
    }
    assert_eq!(committed(&c, "orders", 3), next.to_vec());
    let (low, high) = c
        .fetch_watermarks("orders", 0, Duration::from_secs(5))
        .unwrap();
    assert_eq!((low, high), (0, next[0]));
}

#[tokio::test]
async fn two_members_share_the_partitions_and_rebalance_when_one_leaves() {
    let broker = broker().await;
    broker.create_topic("shared", 4).await.unwrap();
    let a = consumer(&broker, "g2", &[]);
    a.subscribe(&["shared"]).unwrap();
    assert_eq!(wait_assigned(&a, 4, Duration::from_secs(20)).await, 4);
    let b = consumer(&broker, "g2", &[]);
    b.subscribe(&["shared"]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut na, mut nb) = (0, 0);
    while Instant::now() < deadline {
        let (x, y) = tokio::join!(
            wait_assigned(&a, 2, Duration::from_millis(300)),
            wait_assigned(&b, 2, Duration::from_millis(300))
        );
        (na, nb) = (x, y);
        if na == 2 && nb == 2 {
            break;
        }
    }
    assert_eq!(
        (na, nb),
        (2, 2),
        "the 4 partitions are split between both members"
    );
    // b leaves cleanly (LeaveGroup): a gets everything back.
    drop(b);
    assert_eq!(wait_assigned(&a, 4, Duration::from_secs(30)).await, 4);
}

/// A member that stops heartbeating (a killed process: simulated with raw JoinGroup/SyncGroup
/// requests and then silence) is removed after its session timeout, and the live member gets
/// its partitions.
#[tokio::test]
async fn a_silent_member_expires_and_the_group_rebalances() {
    let broker = broker().await;
    broker.create_topic("expiry", 2).await.unwrap();
    let a = consumer(&broker, "g3", &[]);
    a.subscribe(&["expiry"]).unwrap();
    assert_eq!(wait_assigned(&a, 2, Duration::from_secs(20)).await, 2);

    let mut raw = Raw::connect(&broker).await;
    let join = |member: &str| {
        JoinGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g3")))
            .with_session_timeout_ms(2000)
            .with_rebalance_timeout_ms(10_000)
            .with_member_id(StrBytes::from_string(member.to_string()))
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![
                join_group_request::JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_static_str("range"))
                    // ConsumerProtocolSubscription v0: topics ["expiry"], no user data.
                    .with_metadata(Bytes::from_static(
                        b"\x00\x00\x00\x00\x00\x01\x00\x06expiry\xff\xff\xff\xff",
                    )),
            ])
    };
    let first: JoinGroupResponse = raw.call(ApiKey::JoinGroup, 5, &join("")).await;
    assert_eq!(first.error_code, 79, "MEMBER_ID_REQUIRED");
    // The JoinGroup waits until the rebalance completes: a has to rejoin (it learns from its
    // heartbeat).
    // (a is polled meanwhile: librdkafka serves the rebalance from its poll.)
    let rejoin = join(&first.member_id);
    let (joined, _): (JoinGroupResponse, _) = tokio::join!(
        raw.call(ApiKey::JoinGroup, 5, &rejoin),
        wait_assigned(&a, 1, Duration::from_secs(20))
    );
    assert_eq!(joined.error_code, 0);
    assert!(joined.generation_id >= 2);
    let sync: SyncGroupResponse = raw
        .call(
            ApiKey::SyncGroup,
            3,
            &SyncGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("g3")))
                .with_generation_id(joined.generation_id)
                .with_member_id(first.member_id.clone()),
        )
        .await;
    assert_eq!(sync.error_code, 0);
    assert_eq!(describe(&mut raw, "g3").await.members.len(), 2);
    // Now the raw member is silent; a gets its partition back when its session expires.
    let started = Instant::now();
    assert_eq!(wait_assigned(&a, 2, Duration::from_secs(20)).await, 2);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(15), "{took:?}");
    let group = describe(&mut raw, "g3").await;
    assert_eq!(group.members.len(), 1, "{group:?}");
    assert_eq!(group.group_state.as_str(), "Stable");
    assert!(!group.members[0].member_assignment.is_empty());
}

async fn describe(raw: &mut Raw, group: &str) -> describe_groups_response::DescribedGroup {
    let r: DescribeGroupsResponse = raw
        .call(
            ApiKey::DescribeGroups,
            5,
            &DescribeGroupsRequest::default()
                .with_groups(vec![GroupId(StrBytes::from_string(group.to_string()))]),
        )
        .await;
    r.groups.into_iter().next().unwrap()
}

#[tokio::test]
async fn a_restart_keeps_messages_and_committed_offsets() {
    let mut broker = broker().await;
    broker.create_topic("durable", 1).await.unwrap();
    let p = producer(&broker);
    for i in 0..10 {
        produce(&p, "durable", "k", &format!("v{i}")).await;
    }
    {
        let c = consumer(&broker, "g4", &[]);
        c.subscribe(&["durable"]).unwrap();
        let got = consume(&c, 5, true).await;
        assert_eq!(got.last().unwrap().1, 4);
    }
    // A crash: SIGKILL, no flush.
    broker.kill().await.unwrap();
    broker.start_again().await.unwrap();
    let c = consumer(&broker, "g4", &[]);
    c.subscribe(&["durable"]).unwrap();
    let got = consume(&c, 5, false).await;
    let offsets: Vec<i64> = got.iter().map(|(_, o, _)| *o).collect();
    assert_eq!(offsets, vec![5, 6, 7, 8, 9]);
    assert_eq!(got[0].2, "v5");
    // And the producer carries on after the restart.
    let (_, offset) = produce(&p, "durable", "k", "v10").await;
    assert_eq!(offset, 10);
}

fn batch(producer_id: i64, sequence: i32, values: &[&str]) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: sequence + i as i32,
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(Bytes::from(v.to_string())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

fn produce_request(topic: &str, records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            produce_request::TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records)),
                ]),
        ])
}

fn partition_result(r: &ProduceResponse) -> (i16, i64) {
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

#[tokio::test]
async fn an_idempotent_retry_is_acknowledged_once_and_a_gap_is_refused() {
    let broker = broker().await;
    broker.create_topic("idem", 1).await.unwrap();
    let mut raw = Raw::connect(&broker).await;
    let init: InitProducerIdResponse = raw
        .call(
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default()
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        )
        .await;
    assert_eq!(init.error_code, 0);
    let pid = init.producer_id.0;
    assert!(pid >= 0);
    let first = batch(pid, 0, &["a", "b"]);
    let r: ProduceResponse = raw
        .call(ApiKey::Produce, 9, &produce_request("idem", first.clone()))
        .await;
    assert_eq!(partition_result(&r), (0, 0));
    let r: ProduceResponse = raw
        .call(
            ApiKey::Produce,
            9,
            &produce_request("idem", batch(pid, 2, &["c"])),
        )
        .await;
    assert_eq!(partition_result(&r), (0, 2));
    // The retry of the first batch gets its original offset and is not stored again.
    let r: ProduceResponse = raw
        .call(ApiKey::Produce, 9, &produce_request("idem", first))
        .await;
    assert_eq!(partition_result(&r), (0, 0));
    // A gap in the sequence.
    let r: ProduceResponse = raw
        .call(
            ApiKey::Produce,
            9,
            &produce_request("idem", batch(pid, 7, &["x"])),
        )
        .await;
    assert_eq!(partition_result(&r).0, 45, "OUT_OF_ORDER_SEQUENCE_NUMBER");
    // A corrupted batch is refused.
    let mut bad = BytesMut::from(&batch(-1, -1, &["y"])[..]);
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    let r: ProduceResponse = raw
        .call(ApiKey::Produce, 9, &produce_request("idem", bad.freeze()))
        .await;
    assert_eq!(partition_result(&r).0, 2, "CORRUPT_MESSAGE");
    let list: ListOffsetsResponse = raw
        .call(
            ApiKey::ListOffsets,
            5,
            &ListOffsetsRequest::default().with_topics(vec![
                list_offsets_request::ListOffsetsTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("idem")))
                    .with_partitions(vec![
                        list_offsets_request::ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(-1),
                    ]),
            ]),
        )
        .await;
    assert_eq!(list.topics[0].partitions[0].offset, 3, "a, b, c once each");
}

/// Fetch is a long poll woken by appends: with fetch.wait.max.ms 500 a paced message arrives in
/// milliseconds, not after the wait.
#[tokio::test]
async fn fetch_answers_as_soon_as_data_arrives() {
    let broker = broker().await;
    broker.create_topic("latency", 1).await.unwrap();
    let p = producer(&broker);
    let c = consumer(&broker, "g5", &[("fetch.wait.max.ms", "500")]);
    c.subscribe(&["latency"]).unwrap();
    assert_eq!(wait_assigned(&c, 1, Duration::from_secs(20)).await, 1);
    // Let the consumer settle into its long poll.
    produce(&p, "latency", "k", "warm-up").await;
    consume(&c, 1, false).await;
    let mut latencies = Vec::new();
    for i in 0..20 {
        tokio::time::sleep(Duration::from_millis(60)).await;
        let sent = Instant::now();
        produce(&p, "latency", "k", &format!("m{i}")).await;
        consume(&c, 1, false).await;
        latencies.push(sent.elapsed());
    }
    latencies.sort();
    let p50 = latencies[10];
    let max = latencies[19];
    println!("produce->consume p50 {p50:?} max {max:?}");
    assert!(max < Duration::from_millis(250), "{latencies:?}");
}

#[tokio::test]
async fn hostile_frames_close_only_their_connection() {
    let broker = broker().await;
    broker.create_topic("safe", 1).await.unwrap();
    let addr = broker.bootstrap_servers();
    // A connection that stays open through all of it.
    let mut steady = Raw::connect(&broker).await;
    // Each closes its connection and nothing else (the decoder reserves what an array claims up
    // front: see the crate README on claims larger than testkit's).
    let frames = testkit::hostile::kafka_frames();
    for (what, f) in &frames {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(f).await.unwrap();
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
        // Either closed (0 bytes / reset) or nothing: never a crash (checked below).
        if let Ok(Ok(n)) = read {
            assert!(n == 0, "unexpected answer to {what}: {:?}", &buf[..n]);
        }
    }
    // ApiVersions with a version from the future: UNSUPPORTED_VERSION in v0, with the list.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(&[0, 0, 0, 10, 0, 18, 0, 99, 0, 0, 0, 7, 0, 0])
        .await
        .unwrap();
    let size = s.read_i32().await.unwrap();
    let mut body = vec![0u8; size as usize];
    s.read_exact(&mut body).await.unwrap();
    let mut body = Bytes::from(body);
    assert_eq!(body.get_i32(), 7, "correlation id");
    let versions = ApiVersionsResponse::decode(&mut body, 0).unwrap();
    assert_eq!(versions.error_code, 35);
    assert!(versions.api_keys.len() >= 17);
    // The broker is alive and the steady connection still works.
    let m: MetadataResponse = steady
        .call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(None),
        )
        .await;
    assert!(
        m.topics
            .iter()
            .any(|t| t.name.as_ref().is_some_and(|n| n.as_str() == "safe"))
    );
    let p = producer(&broker);
    produce(&p, "safe", "k", "v").await;
}

/// A raw protocol connection for requests librdkafka does not make on demand.
struct Raw {
    stream: TcpStream,
    correlation: i32,
}

impl Raw {
    async fn connect(broker: &Broker) -> Raw {
        Raw {
            stream: TcpStream::connect(broker.bootstrap_servers())
                .await
                .unwrap(),
            correlation: 0,
        }
    }

    async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> Resp {
        self.correlation += 1;
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("raw-test")))
            .encode(&mut buf, key.request_header_version(version))
            .unwrap();
        req.encode(&mut buf, version).unwrap();
        let len = (buf.len() - 4) as i32;
        buf[0..4].copy_from_slice(&len.to_be_bytes());
        self.stream.write_all(&buf).await.unwrap();
        let size = tokio::time::timeout(Duration::from_secs(30), self.stream.read_i32())
            .await
            .expect("an answer within 30 s")
            .unwrap();
        let mut body = vec![0u8; size as usize];
        self.stream.read_exact(&mut body).await.unwrap();
        let mut body = Bytes::from(body);
        let header =
            ResponseHeader::decode(&mut body, key.response_header_version(version)).unwrap();
        assert_eq!(header.correlation_id, self.correlation);
        Resp::decode(&mut body, version).unwrap()
    }
}

/// `--probe` (the image's health check) exits 0 when something accepts on the listen address
/// (a wildcard address probes loopback) and non-zero when nothing does.
#[test]
fn probe_exits_by_whether_the_port_accepts() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let run = |listen: String| {
        std::process::Command::new(env!("CARGO_BIN_EXE_kafka-broker"))
            .args(["--probe", "--listen", &listen])
            .output()
            .unwrap()
    };
    assert!(run(format!("0.0.0.0:{port}")).status.success());
    drop(listener);
    let out = run(format!("127.0.0.1:{port}"));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing accepts connections"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
