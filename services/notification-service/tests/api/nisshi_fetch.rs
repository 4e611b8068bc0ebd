//! Issue 10's stall in seconds, on nisshi 0.6.0 whatever `TESTKIT_BROKER` says (the platform's
//! broker is now kafka-broker; these keep the reason it was replaced checked). Under 200 orders/s on nisshi 0.6.0 the consumer received about
//! 3,600 events, then nothing, for good. Two defects of nisshi 0.6.0's SQLite storage, both pinned
//! here:
//!
//! 1. Reading a record's headers scans every header the broker holds. `LiteStorage::fetch`
//!    (`nisshi-storage/src/lite.rs`) runs `header_fetch.sql` once per record, and the `header`
//!    table (`nisshi-storage/src/ddl/040-header.sql`) has no index, so each record fetched costs a
//!    scan of all headers of every record of every topic ever written: the consumer's rate falls
//!    as the broker fills, whatever the backlog. Order events carry 9 headers; at 16,900 records
//!    one record's headers took 29 ms to read (36 records/s), against 200 written per second.
//! 2. A fetch's work is bounded by its byte budget, not by its wait. Once the wait has run out
//!    `LiteStorage::fetch` returns one record per call (its `has_deadline_expired` check) and
//!    `FetchService::fetch_partition` (`nisshi-storage/src/service/fetch.rs`, its `loop`) calls
//!    it again until the partition's budget is spent or the log ends. With librdkafka's default
//!    budgets (nisshi grants the first partition 5 MiB) one fetch meant thousands of slow reads:
//!    9.4 s, then answers that never came, while librdkafka gives up after 60.5 s.
//!
//! The consumer bounds (2) with its fetch budget (`--fetch-max-bytes`, see
//! `consumer::kafka::consumer`); nothing on the client side bounds (1).

use std::sync::Arc;
use std::time::{Duration, Instant};

use notification_service::consumer::kafka::{self, ConsumerSettings, OrderConsumer};
use notification_service::consumer::state::ConsumerState;
use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};

use crate::helpers::{Infra, Publisher, WAIT, event};

/// Events in the backlog: about 0.9 MB, within the 5 MiB nisshi gives a fetch's first partition.
const BACKLOG: usize = 3000;

/// Publishes `n` events with the usual three headers to `partition` (concurrently, so it takes
/// seconds, not minutes).
async fn publish_to(infra: &Infra, partition: i32, n: usize) {
    let publisher = &Publisher::new(infra);
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let sends = chunk.iter().map(|i| async move {
            let event = event(&format!("ord-{partition}-{i}"));
            publisher.send_to(partition, &event).await
        });
        futures::future::join_all(sends).await;
    }
}

/// A consumer built by the service's own builder with the service's defaults but `fetch_wait`
/// and `fetch_max_bytes`, assigned `partition` from offset 0 (no group join to wait for).
fn assigned_consumer(
    infra: &Infra,
    partition: i32,
    fetch_wait: Duration,
    fetch_max_bytes: u32,
) -> OrderConsumer {
    let settings = ConsumerSettings {
        session_timeout: Duration::from_secs(6),
        fetch_wait_max: fetch_wait,
        fetch_max_bytes,
        debug: String::new(),
    };
    let group = format!("nisshi-fetch-{partition}-{fetch_max_bytes}");
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
    tpl.add_partition_offset(events::ORDER_PLACED_TOPIC, partition, Offset::Beginning)
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

/// Defect 2: with the service's fetch budget the first message of a 3,000-event backlog arrives in a
/// fraction of the time that librdkafka's defaults take (one fetch reading the whole backlog a
/// record at a time), and the whole backlog is received. On nisshi 0.6.0 the default-sized fetch
/// is pinned as several times slower; on another broker that comparison is only printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_budget_bounds_a_fetch_of_a_backlog() {
    let infra = Infra::start_on(testkit::BrokerKind::Nisshi, 1).await;
    publish_to(&infra, 0, BACKLOG).await;

    let budget = kafka::DEFAULT_FETCH_MAX_BYTES;
    let consumer = assigned_consumer(&infra, 0, Duration::from_millis(1), budget);
    let started = Instant::now();
    let (bounded_first, bounded_all) = receive(&consumer, BACKLOG, started, WAIT).await;
    drop(consumer);

    // librdkafka's defaults (fetch.max.bytes 50 MiB, of which nisshi grants 5 MiB to the first
    // partition): one fetch holds the whole backlog.
    let consumer = assigned_consumer(
        &infra,
        0,
        Duration::from_millis(1),
        kafka::MAX_FETCH_MAX_BYTES,
    );
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

/// Defect 1: the same 500 events take several times longer to consume once the broker holds
/// 20,000 more records (on another partition, never read), because each record fetched scans
/// every header stored. The consumer has the service's settings. On nisshi 0.6.0 that growth is
/// pinned; on another broker it is only printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_cost_grows_with_every_header_stored() {
    const EVENTS: usize = 500;
    const FILL: usize = 20_000;
    let infra = Infra::start_on(testkit::BrokerKind::Nisshi, 3).await;
    let drain = |partition: i32| {
        let infra = &infra;
        async move {
            let consumer = assigned_consumer(
                infra,
                partition,
                Duration::from_millis(500),
                kafka::DEFAULT_FETCH_MAX_BYTES,
            );
            let started = Instant::now();
            receive(&consumer, EVENTS, started, Duration::from_secs(120))
                .await
                .1
        }
    };
    publish_to(&infra, 0, EVENTS).await;
    let few_headers = drain(0).await;
    publish_to(&infra, 1, FILL).await;
    publish_to(&infra, 2, EVENTS).await;
    let many_headers = drain(2).await;
    println!(
        "{}: {EVENTS} events consumed in {few_headers:?} with {} records stored, in \
         {many_headers:?} with {} stored",
        infra.kafka.kind(),
        EVENTS,
        2 * EVENTS + FILL
    );
    if infra.kafka.kind() == testkit::BrokerKind::Nisshi {
        assert!(
            many_headers > few_headers * 3,
            "nisshi 0.6.0 no longer scans every stored header per record fetched (fixed?): \
             {few_headers:?} then {many_headers:?}"
        );
    }
}
