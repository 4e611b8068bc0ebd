//! Issue 10's stall in seconds: on nisshi 0.6.0 the work of one fetch grows with the fetch's byte
//! budget and is not bounded by its wait, so a consumer with librdkafka's default fetch sizes
//! waits for a whole backlog to be read one record at a time before it sees its first message.
//! The consumer's budget (`--fetch-max-bytes`, see `consumer::kafka::consumer`) bounds it.
//!
//! nisshi 0.6.0: once a fetch's wait has run out, `LiteStorage::fetch`
//! (`nisshi-storage/src/lite.rs`, the `has_deadline_expired` check of its row loop) returns one
//! record per call, and `FetchService::fetch_partition` (`nisshi-storage/src/service/fetch.rs`,
//! its `loop`) calls it again until the partition's byte budget is spent or the log ends, each
//! call scanning the partition from the fetch offset to its end (`record_fetch.sql`). Under
//! 200 orders/s its storage is slow enough for the wait to run out; here a 1 ms fetch wait makes
//! that happen at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use notification_service::consumer::kafka::{self, ConsumerSettings, OrderConsumer};
use notification_service::consumer::state::ConsumerState;
use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};

use crate::helpers::{Infra, Publisher, WAIT, event};

/// Events in the backlog: about 0.9 MB, within the 5 MiB nisshi gives a fetch's first partition.
const BACKLOG: usize = 3000;

/// Publishes `n` events (concurrently, so it takes seconds, not minutes) to the one partition.
async fn publish_backlog(infra: &Infra, n: usize) {
    let publisher = &Publisher::new(infra);
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let sends = chunk
            .iter()
            .map(|i| async move { publisher.send(&event(&format!("ord-backlog-{i}"))).await });
        futures::future::join_all(sends).await;
    }
}

/// A consumer built by the service's own builder, assigned partition 0 from offset 0 (no group
/// join to wait for), with a 1 ms fetch wait and `fetch_max_bytes`.
fn assigned_consumer(infra: &Infra, fetch_max_bytes: u32) -> OrderConsumer {
    let settings = ConsumerSettings {
        session_timeout: Duration::from_secs(6),
        fetch_wait_max: Duration::from_millis(1),
        fetch_max_bytes,
        debug: String::new(),
    };
    let group = format!("budget-{fetch_max_bytes}");
    let state = Arc::new(ConsumerState::new(
        &group,
        events::ORDER_PLACED_TOPIC,
        events::ORDER_PLACED_DLT,
    ));
    let consumer = kafka::consumer(
        &infra.kafka.bootstrap_servers(),
        "fetch-budget-test",
        &group,
        &settings,
        state,
    )
    .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(events::ORDER_PLACED_TOPIC, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    consumer
}

/// Receives `n` messages (or fails after `within`); returns when the first and the last arrived,
/// measured from `started`.
async fn receive(
    consumer: &OrderConsumer,
    n: usize,
    started: Instant,
    within: Duration,
) -> (Duration, Duration) {
    let mut first = None;
    for i in 0..n {
        let m = tokio::time::timeout_at((started + within).into(), consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("only {i} of {n} messages within {within:?}"))
            .unwrap();
        assert_eq!(rdkafka::Message::offset(&m), i as i64);
        first.get_or_insert_with(|| started.elapsed());
    }
    (first.unwrap(), started.elapsed())
}

/// With the service's fetch budget the first message of a 3,000-event backlog arrives in a
/// fraction of the time that librdkafka's defaults take (one fetch reading the whole backlog a
/// record at a time), and the whole backlog is received. On nisshi 0.6.0 the default-sized fetch
/// is pinned as several times slower; on another broker that comparison is only printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_budget_bounds_a_fetch_of_a_backlog() {
    let infra = Infra::start(1).await;
    publish_backlog(&infra, BACKLOG).await;

    let budget = kafka::DEFAULT_FETCH_MAX_BYTES;
    let consumer = assigned_consumer(&infra, budget);
    let started = Instant::now();
    let (bounded_first, bounded_all) = receive(&consumer, BACKLOG, started, WAIT).await;
    drop(consumer);

    // librdkafka's defaults (fetch.max.bytes 50 MiB, of which nisshi grants 5 MiB to the first
    // partition): one fetch holds the whole backlog.
    let consumer = assigned_consumer(&infra, kafka::MAX_FETCH_MAX_BYTES);
    let started = Instant::now();
    let (default_first, _) = receive(&consumer, 1, started, Duration::from_secs(120)).await;
    println!(
        "{}: backlog of {BACKLOG}, fetch wait 1 ms: budget {budget} B: first message after \
         {bounded_first:?}, all after {bounded_all:?}; 50 MiB (librdkafka's default): first \
         message after {default_first:?}",
        infra.kafka.kind()
    );
    assert!(
        bounded_first < Duration::from_secs(5),
        "a fetch with the service's budget is answered within seconds: {bounded_first:?}"
    );
    if infra.kafka.kind() == testkit::BrokerKind::Nisshi {
        assert!(
            default_first > bounded_first * 3,
            "nisshi 0.6.0 no longer reads a whole backlog in one fetch (fixed?): default \
             {default_first:?}, bounded {bounded_first:?}"
        );
    }
}
