//! order-service end to end on real dependencies: a throwaway MariaDB
//! (databases `orders` and `inventory`, each with its own user), a
//! throwaway tansu broker, the real discovery-server and the real
//! inventory-service, all in-process on port 0 except the servers and the
//! crash test's order-service process. order-service finds inventory only
//! through the registry.

mod auth;
mod breaker;
mod concurrency;
mod crash;
mod happy;
mod idempotency;
mod outage;
mod prices;
mod validation;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use order_service::Config;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use serde_json::{Value, json};

pub const ADMIN: &str = "Bearer test-admin-token";

/// A service running in this process.
pub type Running = testkit::InProcess<anyhow::Error>;

/// Everything an order needs.
pub struct Stack {
    pub db: testkit::MariaDb,
    pub kafka: testkit::Broker,
    pub orders_url: String,
    pub inventory_url: String,
    pub registry: Running,
    pub inventory: Option<Running>,
    pub order: Option<Running>,
    pub http: reqwest::Client,
    /// `Authorization` value for order-service's `/admin` (the shared test
    /// token, or an admin JWT when an issuer is configured).
    pub admin_auth: String,
    pub orders_db: sqlx::MySqlPool,
    pub inventory_db: sqlx::MySqlPool,
}

impl Stack {
    /// Starts the whole stack with order-service's test configuration changed by `tweak`.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Stack {
        let mut stack = Stack::dependencies().await;
        stack.start_inventory().await;
        let mut config = stack.order_config();
        tweak(&mut config);
        stack.start_order(config).await;
        stack
    }

    pub async fn start() -> Stack {
        Stack::start_with(|_| {}).await
    }

    /// Database, broker and registry only.
    pub async fn dependencies() -> Stack {
        kit::telemetry::init_for_tests();
        let (db, kafka, registry) = tokio::join!(
            testkit::MariaDb::start(),
            testkit::Broker::start(),
            testkit::registry()
        );
        let db = db.expect("MariaDB starts");
        let kafka = kafka.expect("tansu starts");
        let registry = registry.expect("bind registry");
        kafka
            .create_topic(events::ORDER_PLACED_TOPIC, 3)
            .await
            .expect("topic");
        let orders = db.create_database("orders").await.expect("orders db");
        let inventory = db.create_database("inventory").await.expect("inventory db");
        // The services create their schemas; the test reads through these pools.
        Stack {
            orders_db: sqlx::mysql::MySqlPoolOptions::new()
                .max_connections(4)
                .connect_lazy(&orders.url)
                .expect("pool"),
            inventory_db: sqlx::mysql::MySqlPoolOptions::new()
                .max_connections(4)
                .connect_lazy(&inventory.url)
                .expect("pool"),
            orders_url: orders.url,
            inventory_url: inventory.url,
            db,
            kafka,
            registry,
            inventory: None,
            order: None,
            http: reqwest::Client::new(),
            admin_auth: ADMIN.to_string(),
        }
    }

    pub fn registry_url(&self) -> String {
        self.registry.base().to_string()
    }

    /// order-service's test configuration for this stack.
    pub fn order_config(&self) -> Config {
        Config::for_tests(
            &self.orders_url,
            &self.kafka.bootstrap_servers(),
            Some(&self.registry_url()),
        )
    }

    /// Starts inventory-service (registered with the registry) and waits until it is listed.
    pub async fn start_inventory(&mut self) {
        self.start_inventory_with(|_| {}).await;
    }

    /// [`Stack::start_inventory`] with its test configuration changed by `tweak`.
    pub async fn start_inventory_with(
        &mut self,
        tweak: impl FnOnce(&mut inventory_service::Config),
    ) {
        let mut config =
            inventory_service::Config::for_tests(&self.inventory_url, Some(&self.registry_url()));
        tweak(&mut config);
        let running = Running::start(&inventory_service::SPEC, config.common.clone(), |s| {
            inventory_service::run(config, s)
        })
        .await
        .expect("bind inventory");
        running
            .wait_ready(Duration::from_secs(30))
            .await
            .expect("inventory ready");
        self.inventory = Some(running);
    }

    pub async fn stop_inventory(&mut self) {
        if let Some(i) = self.inventory.take() {
            // How the service ended is not what these tests check.
            let _ = i.stop().await;
        }
    }

    /// Starts order-service in-process and waits until it sees inventory (if running).
    pub async fn start_order(&mut self, config: Config) {
        let running = Running::start(&order_service::SPEC, config.common.clone(), |s| {
            order_service::run(config, s)
        })
        .await
        .expect("bind order");
        running
            .wait_ready(Duration::from_secs(30))
            .await
            .expect("order-service ready");
        self.order = Some(running);
        if self.inventory.is_some() {
            self.wait_for_inventory_instances(1).await;
        }
    }

    pub fn order_url(&self, path: &str) -> String {
        self.order.as_ref().expect("order-service runs").url(path)
    }

    pub fn inventory_base(&self) -> String {
        self.inventory
            .as_ref()
            .expect("inventory runs")
            .base()
            .to_string()
    }

    /// Waits until order-service's balancer lists `n` inventory instances.
    pub async fn wait_for_inventory_instances(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.admin_get("/admin/upstreams").await;
            let count = v["inventory-service"]["instances"]
                .as_array()
                .map(Vec::len)
                .unwrap_or(0);
            if count == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "order-service sees {count} inventory instances, expected {n}: {v}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// GET of order-service's `path`, parsed as JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        let res = self.http.get(self.order_url(path)).send().await.unwrap();
        res.json().await.unwrap()
    }

    /// order-service's `/metrics` text.
    pub async fn metrics(&self) -> String {
        let res = self
            .http
            .get(self.order_url("/metrics"))
            .send()
            .await
            .unwrap();
        res.text().await.unwrap()
    }

    pub async fn admin_get(&self, path: &str) -> Value {
        testkit::body_json(
            self.http
                .get(self.order_url(path))
                .header("authorization", &self.admin_auth),
        )
        .await
    }

    /// The inventory breaker's snapshot from `/admin/breakers`.
    pub async fn breaker(&self) -> Value {
        let v = self.admin_get("/admin/breakers").await;
        v.as_array()
            .and_then(|a| a.iter().find(|b| b["name"] == "inventory-service"))
            .cloned()
            .unwrap_or(Value::Null)
    }

    pub async fn set_stock(&self, sku: &str, quantity: u64) {
        let res = self
            .http
            .put(format!("{}/admin/inventory/{sku}", self.inventory_base()))
            .header("authorization", &self.admin_auth)
            .json(&json!({ "quantity": quantity }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }

    pub async fn stock(&self, sku: &str) -> i64 {
        sqlx::query_scalar::<_, i32>("SELECT quantity FROM inventory WHERE sku_code = ?")
            .bind(sku)
            .fetch_one(&self.inventory_db)
            .await
            .unwrap() as i64
    }

    /// Posts an order; returns status, headers and body.
    pub async fn order(
        &self,
        lines: Value,
        key: Option<&str>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut req = self
            .http
            .post(self.order_url("/api/order"))
            .json(&json!({ "lines": lines }));
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        (status, headers, res.json().await.unwrap_or(Value::Null))
    }

    pub async fn count(&self, table: &str) -> i64 {
        count(&self.orders_db, table).await
    }
}

pub use testkit::count_rows as count;

/// An event read back from Kafka.
#[derive(Debug, Clone)]
pub struct Received {
    pub key: String,
    pub payload: Vec<u8>,
    pub headers: HashMap<String, String>,
}

/// Reads `order-placed` from the beginning until `done` says so or `timeout` passes.
pub async fn consume_until(
    bootstrap: &str,
    timeout: Duration,
    mut done: impl FnMut(&[Received]) -> bool,
) -> Vec<Received> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("test-{}", uuid::Uuid::new_v4()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer
        .subscribe(&[events::ORDER_PLACED_TOPIC])
        .expect("subscribe");
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut stream = consumer.stream();
    while !done(&got) {
        let next = tokio::time::timeout_at(deadline, stream.next()).await;
        let Ok(Some(msg)) = next else { break };
        let Ok(msg) = msg else { continue };
        let headers = msg
            .headers()
            .map(|h| {
                h.iter()
                    .map(|x| {
                        (
                            x.key.to_string(),
                            String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        got.push(Received {
            key: String::from_utf8_lossy(msg.key().unwrap_or_default()).into_owned(),
            payload: msg.payload().unwrap_or_default().to_vec(),
            headers,
        });
    }
    got
}

/// Waits until every order number in `expected` has an event on Kafka; returns all events read.
pub async fn events_for(
    bootstrap: &str,
    expected: &HashSet<String>,
    timeout: Duration,
) -> Vec<Received> {
    consume_until(bootstrap, timeout, |got| {
        let seen: HashSet<&str> = got.iter().map(|r| r.key.as_str()).collect();
        expected.iter().all(|e| seen.contains(e.as_str()))
    })
    .await
}

pub use testkit::problem;

/// One order line as JSON.
pub fn line(sku: &str, price: &str, quantity: u32) -> Value {
    json!({"skuCode": sku, "price": price, "quantity": quantity})
}
