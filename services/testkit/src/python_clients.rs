//! Third-party Kafka clients from PyPI (confluent-kafka, librdkafka's Python binding, and
//! kafka-python, pure Python) from the venv `.tools/venv` that install.sh creates, run against a
//! testkit [`Broker`]: each produces, consumes in a consumer group, commits and reads its lag its
//! own way. Shared by the suites that check a broker or a lag reader with them.

use std::time::Duration;

use serde_json::Value;

use crate::Broker;

/// The clients [`run_client`] knows.
pub const PYTHON_CLIENTS: [&str; 2] = ["confluent-kafka", "kafka-python"];

/// Produces 10 messages, consumes 6 of them in group `<client>-group` with manual commits, and
/// prints the lag as the client sees it (JSON on the last line).
const SCRIPT: &str = r#"
import json, sys, time
client, bootstrap, topic = sys.argv[1], sys.argv[2], sys.argv[3]
group = client + "-group"
out = {"client": client}

if client == "confluent-kafka":
    from confluent_kafka import Consumer, Producer, TopicPartition
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    for i in range(10):
        p.produce(topic, key=f"k{i}".encode(), value=b"v", headers=[("source", b"confluent")])
    assert p.flush(30) == 0, "undelivered messages"
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
    c.subscribe([topic])
    got, deadline = 0, time.time() + 60
    while got < 6 and time.time() < deadline:
        m = c.poll(1.0)
        if m is None or m.error():
            continue
        assert dict(m.headers())["source"] == b"confluent"
        c.commit(message=m, asynchronous=False)
        got += 1
    out["consumed"] = got
    committed = c.committed([TopicPartition(topic, 0)], timeout=10)[0].offset
    low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    out.update(committed=committed, high=high, lag=high - committed)
    c.close()
else:
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for i in range(10):
        p.send(topic, key=f"k{i}".encode(), value=b"v").get(timeout=30)
    p.close()
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                      auto_offset_reset="earliest", session_timeout_ms=6000,
                      heartbeat_interval_ms=1000, consumer_timeout_ms=60000)
    c.subscribe([topic])
    got = 0
    tp = TopicPartition(topic, 0)
    for m in c:
        got += 1
        c.commit({tp: __import__("kafka").structs.OffsetAndMetadata(m.offset + 1, None, -1)})
        if got == 6:
            break
    out["consumed"] = got
    high = c.end_offsets([tp])[tp]
    c.close()
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    offsets = admin.list_group_offsets({group: None})[group]
    admin.close()
    committed = offsets[tp].offset
    out.update(committed=committed, high=high, lag=high - committed)

print(json.dumps(out), flush=True)
"#;

/// Runs the script for `client` (one of [`PYTHON_CLIENTS`]) against `broker` on its own topic
/// `<client>-topic` with group `<client>-group`: 10 messages produced, 6 consumed and committed.
/// Returns its JSON result (`consumed`, `committed`, `high`, `lag`), or `None` when the venv is
/// missing (the test is reported skipped; under CI it fails instead, see [`crate::python_venv`]).
pub async fn run_client(broker: &Broker, client: &str) -> Option<Value> {
    let python = crate::python_venv(&["confluent_kafka", "kafka"])?;
    let topic = format!("{client}-topic");
    broker.create_topic(&topic, 1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("client.py");
    std::fs::write(&script, SCRIPT).unwrap();
    let run = tokio::process::Command::new(&python)
        .arg(&script)
        .args([client, &broker.bootstrap_servers(), &topic])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the Python client finishes within 3 minutes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{client} failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    Some(serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stdout}")))
}

/// Checks the figures every client reports after [`run_client`]: 6 of 10 messages consumed and
/// committed, so a lag of 4 (committed offset 6 against a high watermark of 10).
pub fn assert_figures(result: &Value) {
    assert_eq!(result["consumed"], 6, "{result}");
    assert_eq!(result["committed"], 6, "{result}");
    assert_eq!(result["high"], 10, "{result}");
    assert_eq!(result["lag"], 4, "{result}");
}
