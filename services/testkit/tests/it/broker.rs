//! Throwaway brokers (TESTKIT_BROKER, nisshi by default): the Kafka features the services rely on, and restarts that keep topics.

use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use testkit::Broker;

const TIMEOUT: Duration = Duration::from_secs(10);

fn producer(kafka: &Broker) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .unwrap()
}

fn consumer(kafka: &Broker, group: &str) -> StreamConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap()
}

async fn send(producer: &FutureProducer, topic: &str, key: &str, payload: &str) -> (i32, i64) {
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "event-id",
            value: Some(key),
        })
        .insert(Header {
            key: "schema-version",
            value: Some("1"),
        });
    let delivery = producer
        .send(
            FutureRecord::to(topic)
                .key(key)
                .payload(payload)
                .headers(headers),
            TIMEOUT,
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    (delivery.partition, delivery.offset)
}

/// An idempotent producer's messages with headers reach a consumer group; after a manual commit the
/// committed offset and the high watermark give the lag the notification service reports.
#[tokio::test]
async fn produce_consume_commit_and_lag() {
    let started = Instant::now();
    let kafka = Broker::start().await.unwrap();
    println!("{} started in {:?}", kafka.kind(), started.elapsed());
    kafka.create_topic("order-placed", 1).await.unwrap();

    let producer = producer(&kafka);
    for n in 1..=3 {
        let (partition, offset) = send(
            &producer,
            "order-placed",
            &format!("order-{n}"),
            &format!("{{\"n\":{n}}}"),
        )
        .await;
        assert_eq!(partition, 0);
        assert_eq!(offset, n - 1);
    }

    let consumer = consumer(&kafka, "notification-service");
    consumer.subscribe(&["order-placed"]).unwrap();
    let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .expect("no message within 30 s")
        .unwrap();
    assert_eq!(message.key(), Some(&b"order-1"[..]));
    assert_eq!(message.payload(), Some(&b"{\"n\":1}"[..]));
    let headers = message.headers().expect("headers were sent");
    let pairs: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
        .collect();
    assert_eq!(
        pairs,
        vec![
            ("event-id".to_string(), b"order-1".to_vec()),
            ("schema-version".to_string(), b"1".to_vec())
        ]
    );
    consumer.commit_message(&message, CommitMode::Sync).unwrap();

    let mut partitions = TopicPartitionList::new();
    partitions.add_partition("order-placed", 0);
    let committed = consumer.committed_offsets(partitions, TIMEOUT).unwrap();
    let offset = committed
        .find_partition("order-placed", 0)
        .unwrap()
        .offset();
    assert_eq!(offset, Offset::Offset(1));
    let (low, high) = consumer
        .fetch_watermarks("order-placed", 0, TIMEOUT)
        .unwrap();
    assert_eq!((low, high), (0, 3));
    let Offset::Offset(committed) = offset else {
        unreachable!()
    };
    assert_eq!(high - committed, 2, "lag");
}

/// Topics, messages and committed offsets survive a SIGKILL of the broker, and a graceful stop,
/// on the same port.
#[tokio::test]
async fn start_again_after_kill_keeps_topics_and_offsets() {
    let mut kafka = Broker::start().await.unwrap();
    kafka.create_topic("order-placed", 3).await.unwrap();
    let port = kafka.port();
    {
        let producer = producer(&kafka);
        send(&producer, "order-placed", "order-1", "first").await;
    }
    {
        let consumer = consumer(&kafka, "g");
        consumer.subscribe(&["order-placed"]).unwrap();
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .unwrap()
            .unwrap();
        consumer.commit_message(&message, CommitMode::Sync).unwrap();
    }

    kafka.kill().await.unwrap();
    assert!(kafka.pid().is_none());
    let restarting = Instant::now();
    kafka.start_again().await.unwrap();
    println!(
        "{} start_again after kill took {:?}",
        kafka.kind(),
        restarting.elapsed()
    );
    assert_eq!(kafka.port(), port);

    let producer = producer(&kafka);
    let metadata = producer
        .client()
        .fetch_metadata(Some("order-placed"), TIMEOUT)
        .unwrap();
    let topic = &metadata.topics()[0];
    assert_eq!(topic.name(), "order-placed");
    assert!(topic.error().is_none(), "{:?}", topic.error());
    assert_eq!(topic.partitions().len(), 3);

    // The group resumes after its committed offset: it gets the new message, not the old one.
    send(&producer, "order-placed", "order-1", "second").await;
    // The broker's graceful shutdown waits (about 5 s) for connected clients; let this one go first.
    drop(producer);
    kafka.stop().await.unwrap();
    kafka.start_again().await.unwrap();
    let consumer = consumer(&kafka, "g");
    consumer.subscribe(&["order-placed"]).unwrap();
    let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(message.payload(), Some(&b"second"[..]));
}

/// Dropping the handle kills the broker and deletes its storage.
#[tokio::test]
async fn drop_removes_broker_and_storage() {
    let kafka = Broker::start().await.unwrap();
    let dir = kafka.dir().to_path_buf();
    let storage = match kafka.kind() {
        testkit::BrokerKind::KafkaBroker => dir.join("data"),
        kind => dir.join(format!("{kind}.db")),
    };
    assert!(storage.exists(), "{}", storage.display());
    let port = kafka.port();
    drop(kafka);
    assert!(!dir.exists());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}
