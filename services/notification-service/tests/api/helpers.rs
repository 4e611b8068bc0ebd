//! Test support: MariaDB and tansu from testkit, the service in-process or as a binary, an
//! event producer, a dead-letter reader, and polling helpers.

use std::collections::HashMap;
use std::time::Duration;

use events::OrderPlacedEvent;
use notification_service::Config;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use reqwest::Client;
use serde_json::Value;
use testkit::InProcess;
pub use testkit::poll_until;

/// Admin token of services started by tests (`CommonArgs::for_tests`).
pub const ADMIN_TOKEN: &str = "test-admin-token";
/// How long a test waits for something that should happen within a second or two.
pub const WAIT: Duration = Duration::from_secs(30);

/// A throwaway MariaDB with the `notifications` database, and a tansu broker with the topic.
pub struct Infra {
    pub db: testkit::MariaDb,
    pub access: testkit::DbAccess,
    pub kafka: testkit::Broker,
}

impl Infra {
    /// Starts both servers and creates `order-placed` with `partitions` partitions. The
    /// dead-letter topic is left for the service to create.
    pub async fn start(partitions: i32) -> Infra {
        let kind = testkit::BrokerKind::from_env().unwrap();
        Infra::start_on(kind, partitions).await
    }

    /// [`Infra::start`] on the broker `kind` whatever `TESTKIT_BROKER` says.
    pub async fn start_on(kind: testkit::BrokerKind, partitions: i32) -> Infra {
        kit::telemetry::init_for_tests();
        let (db, kafka) =
            tokio::join!(testkit::MariaDb::start(), testkit::Broker::start_kind(kind));
        let db = db.unwrap();
        let kafka = kafka.unwrap();
        let access = db.create_database("notifications").await.unwrap();
        kafka
            .create_topic(events::ORDER_PLACED_TOPIC, partitions)
            .await
            .unwrap();
        Infra { db, access, kafka }
    }

    /// The service's configuration for this infrastructure: short back-offs and lag
    /// interval so tests run in seconds, plus `extra` flags.
    pub fn config(&self, extra: &[&str]) -> Config {
        let bootstrap = self.kafka.bootstrap_servers();
        let mut args = vec![
            "notification-service",
            "--kafka-bootstrap-servers",
            &bootstrap,
            "--database-url",
            &self.access.url,
            "--retry-backoff",
            "50ms",
            "--retry-backoff-max",
            "250ms",
            "--lag-interval",
            "200ms",
            "--session-timeout",
            "6s",
            "--db-acquire-timeout",
            "1s",
        ];
        args.extend_from_slice(extra);
        // Parsing also runs the service's own checks (`HasCommon::validate`).
        let mut config: Config =
            kit::config::try_parse_from(&notification_service::SPEC, args).unwrap();
        config.common = kit::CommonArgs::for_tests(None);
        config
    }

    /// A direct connection to the notifications database, for assertions.
    pub async fn sql(&self) -> sqlx::MySqlPool {
        sqlx::mysql::MySqlPoolOptions::new()
            .max_connections(2)
            .connect(&self.access.url)
            .await
            .unwrap()
    }
}

/// The service running in this process on a free port.
pub struct TestApp {
    pub client: Client,
    service: InProcess<notification_service::RunError>,
}

impl TestApp {
    /// Starts the service with `config` and waits until it is ready (database reachable,
    /// consumer group joined).
    pub async fn spawn(config: Config) -> TestApp {
        let app = TestApp::spawn_unready(config).await;
        app.wait_ready().await;
        app
    }

    /// Starts the service without waiting for readiness.
    pub async fn spawn_unready(config: Config) -> TestApp {
        let service = InProcess::start(
            &notification_service::SPEC,
            config.common.clone(),
            |service| notification_service::run(config, service),
        )
        .await
        .unwrap();
        TestApp {
            client: Client::new(),
            service,
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.service.url(path)
    }

    pub async fn wait_ready(&self) {
        self.service.wait_ready(WAIT).await.unwrap();
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// `GET /api/notifications<query>`, asserting 200.
    pub async fn notifications(&self, query: &str) -> Value {
        let res = self.get(&format!("/api/notifications{query}")).await;
        assert_eq!(res.status(), 200, "{query}");
        res.json().await.unwrap()
    }

    /// `GET /admin/consumer` with the admin token.
    pub async fn consumer(&self) -> Value {
        let res = self
            .client
            .get(self.url("/admin/consumer"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }

    /// Waits until `/admin/consumer` satisfies `check`; returns the report.
    pub async fn wait_consumer(&self, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        let found = poll_until(
            WAIT,
            || {
                let this = &*self;
                async move { this.consumer().await }
            },
            |r| {
                last = r.clone();
                check(r)
            },
        )
        .await;
        found.unwrap_or_else(|| panic!("consumer never reached: {what}; last report {last:#}"))
    }

    /// Waits until `total` notifications are listed (optionally for one order).
    pub async fn wait_notifications(&self, query: &str, total: u64) -> Value {
        let mut last = Value::Null;
        let found = poll_until(
            WAIT,
            || {
                let this = &*self;
                async move { this.notifications(query).await }
            },
            |v| {
                last = v.clone();
                v["total"] == total
            },
        )
        .await;
        found.unwrap_or_else(|| {
            panic!("never saw {total} notifications for {query:?}; last {last:#}")
        })
    }

    /// Stops the service and waits until it has shut down cleanly.
    pub async fn stop(self) {
        self.service.stop().await.unwrap();
    }
}

/// An order event for `order_number` with two lines (the events crate's sample).
pub fn event(order_number: &str) -> OrderPlacedEvent {
    events::sample(order_number)
}

/// Publishes like order-service: key = order number, the events crate's headers.
pub struct Publisher {
    producer: FutureProducer,
}

impl Publisher {
    pub fn new(infra: &Infra) -> Publisher {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", infra.kafka.bootstrap_servers())
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create()
            .unwrap();
        Publisher { producer }
    }

    /// Publishes `event`; returns (partition, offset).
    pub async fn send(&self, event: &OrderPlacedEvent) -> (i32, i64) {
        self.send_raw(&event.order_number, &event.encode(), event.schema_version)
            .await
    }

    /// Publishes arbitrary bytes with the usual headers claiming `schema_version`.
    pub async fn send_raw(&self, key: &str, payload: &[u8], schema_version: u32) -> (i32, i64) {
        self.send_raw_to(None, key, payload, schema_version).await
    }

    /// Publishes `event` to `partition`; returns its offset.
    pub async fn send_to(&self, partition: i32, event: &OrderPlacedEvent) -> i64 {
        let key = &event.order_number;
        let payload = event.encode();
        let version = event.schema_version;
        self.send_raw_to(Some(partition), key, &payload, version)
            .await
            .1
    }

    /// [`Publisher::send_raw`] to `partition`, or where the partitioner puts `key` when `None`.
    async fn send_raw_to(
        &self,
        partition: Option<i32>,
        key: &str,
        payload: &[u8],
        schema_version: u32,
    ) -> (i32, i64) {
        let version = schema_version.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: events::headers::EVENT_TYPE,
                value: Some(events::EVENT_TYPE),
            })
            .insert(Header {
                key: events::headers::SCHEMA_VERSION,
                value: Some(version.as_str()),
            })
            .insert(Header {
                key: events::headers::CONTENT_TYPE,
                value: Some("application/json"),
            });
        let mut record = FutureRecord::to(events::ORDER_PLACED_TOPIC)
            .key(key)
            .payload(payload)
            .headers(headers);
        record.partition = partition;
        let delivery = self
            .producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
        (delivery.partition, delivery.offset)
    }
}

/// One message read back from the dead-letter topic.
#[derive(Debug)]
pub struct DeadLetter {
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: HashMap<String, String>,
}

/// Reads `n` messages from the dead-letter topic (fresh group, from the earliest offset).
pub async fn read_dead_letters(infra: &Infra, n: usize) -> Vec<DeadLetter> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", infra.kafka.bootstrap_servers())
        .set("group.id", format!("dlt-reader-{}", uuid::Uuid::new_v4()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[events::ORDER_PLACED_DLT]).unwrap();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while out.len() < n {
        let m = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} dead letters arrived", out.len()))
            .unwrap();
        let mut headers = HashMap::new();
        if let Some(h) = m.headers() {
            for h in h.iter() {
                let v = h.value.map(|v| String::from_utf8_lossy(v).into_owned());
                headers.insert(h.key.to_string(), v.unwrap_or_default());
            }
        }
        out.push(DeadLetter {
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().unwrap_or_default().to_vec(),
            headers,
        });
    }
    out
}

/// Asserts a problem+json answer with `status`; returns its body.
pub async fn assert_problem(res: reqwest::Response, status: u16) -> Value {
    assert_eq!(res.status().as_u16(), status);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], status);
    body
}

/// The value of a Prometheus sample line starting with `prefix` (name and labels).
pub fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
