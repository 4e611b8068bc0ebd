//! The whole order flow, shared with order-service's tests: HTTP order → inventory
//! reservation through the registry → MySQL outbox → Kafka → this service → one notification.
//!
//! The registry and inventory-service run in-process; order-service runs as its real binary
//! (`target/debug/order-service` or `target/release/order-service`, whichever is newer; build
//! it first with `cargo build -p order-service`, which a workspace test run does), so it can
//! be killed with SIGKILL.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use testkit::InProcess;

use crate::helpers::{ADMIN_TOKEN, TestApp, WAIT, poll_until};

/// Databases, broker, registry, inventory (with stock), order-service (binary) and
/// notification-service (in-process). Shared with the reliability tests.
pub struct OrderFlow {
    _db: testkit::MariaDb,
    pub kafka: testkit::Broker,
    registry: InProcess<anyhow::Error>,
    inventory: InProcess<anyhow::Error>,
    pub order_service: testkit::ChildGuard,
    pub order_base: String,
    pub notifications: TestApp,
    pub orders_db: sqlx::MySqlPool,
    pub notifications_db: sqlx::MySqlPool,
}

impl OrderFlow {
    async fn start() -> OrderFlow {
        OrderFlow::start_with(&[]).await
    }

    /// Starts everything; `notification_args` are extra notification-service flags.
    pub async fn start_with(notification_args: &[&str]) -> OrderFlow {
        kit::telemetry::init_for_tests();
        let order_bin = testkit::bin_path("order-service")
            .unwrap_or_else(|e| panic!("this test runs the order-service binary: {e}"));
        let (db, kafka) = tokio::join!(testkit::MariaDb::start(), testkit::Broker::start());
        let (db, kafka) = (db.unwrap(), kafka.unwrap());
        kafka
            .create_topic(events::ORDER_PLACED_TOPIC, 3)
            .await
            .unwrap();
        let orders = db.create_database("orders").await.unwrap();
        let inventory = db.create_database("inventory").await.unwrap();
        let notifications = db.create_database("notifications").await.unwrap();

        let registry = testkit::registry().await.unwrap();
        let inventory_service = start_inventory(&inventory.url, registry.base()).await;
        let res = reqwest::Client::new()
            .put(inventory_service.url("/admin/inventory/phone"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"quantity": 1_000_000}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "stock set");

        let bootstrap = kafka.bootstrap_servers();
        let started = testkit::Starter::new(order_bin)
            .args(["--advertise-host", "127.0.0.1"])
            .envs([
                ("REGISTRY_URL", registry.base()),
                ("DATABASE_URL", orders.url.as_str()),
                ("KAFKA_BOOTSTRAP_SERVERS", bootstrap.as_str()),
                ("ADMIN_TOKEN", ADMIN_TOKEN),
                // No product-service in this flow: prices are order-service's own tests'.
                ("PRICE_CHECK", "off"),
                ("OUTBOX_POLL_INTERVAL", "200ms"),
                ("LOG_FORMAT", "json"),
                ("RUST_LOG", "info"),
            ])
            .within(WAIT)
            .start()
            .await
            .unwrap();
        let (order_service, order_base) = (started.process, started.base);

        let config = {
            let bootstrap = kafka.bootstrap_servers();
            let mut args = vec![
                "notification-service",
                "--kafka-bootstrap-servers",
                bootstrap.as_str(),
                "--database-url",
                notifications.url.as_str(),
                "--lag-interval",
                "200ms",
                "--session-timeout",
                "6s",
            ];
            args.extend_from_slice(notification_args);
            let mut c: notification_service::Config =
                kit::config::try_parse_from(&notification_service::SPEC, args).unwrap();
            c.common = kit::CommonArgs::for_tests(Some(registry.base()));
            c
        };
        let notifications_app = TestApp::spawn(config).await;
        let pool = |url: &str| {
            sqlx::mysql::MySqlPoolOptions::new()
                .max_connections(2)
                .connect_lazy(url)
                .unwrap()
        };
        let flow = OrderFlow {
            orders_db: pool(&orders.url),
            notifications_db: pool(&notifications.url),
            _db: db,
            kafka,
            registry,
            inventory: inventory_service,
            order_service,
            order_base,
            notifications: notifications_app,
        };
        flow.wait_order_service_sees_inventory().await;
        flow
    }

    /// order-service finds inventory only through the registry; wait until it does.
    async fn wait_order_service_sees_inventory(&self) {
        let http = reqwest::Client::new();
        let url = format!("{}/admin/upstreams", self.order_base);
        let found = poll_until(
            WAIT,
            || {
                let (http, url) = (&http, &url);
                async move {
                    match http.get(url).bearer_auth(ADMIN_TOKEN).send().await {
                        Ok(r) => r.json::<Value>().await.unwrap_or_default(),
                        Err(_) => Value::Null,
                    }
                }
            },
            |v| {
                v["inventory-service"]["instances"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty())
            },
        )
        .await;
        assert!(found.is_some(), "order-service never saw inventory-service");
    }

    /// Every accepted order is stored and has exactly one notification, and no notification
    /// is for an unknown order: waits up to `notify_wait` for the notifications, then up to
    /// `lag_wait` for the group's lag on the broker to reach 0 (every event handled and
    /// committed, so no redelivery can still come), then counts.
    pub async fn assert_each_order_notified_once(
        &self,
        accepted: &[String],
        notify_wait: Duration,
        lag_wait: Duration,
    ) -> Outcome {
        let stored: HashSet<String> =
            sqlx::query_scalar::<_, String>("SELECT order_number FROM orders")
                .fetch_all(&self.orders_db)
                .await
                .unwrap()
                .into_iter()
                .collect();
        let missing: Vec<_> = accepted.iter().filter(|n| !stored.contains(*n)).collect();
        assert!(
            missing.is_empty(),
            "accepted orders not stored: {missing:?}"
        );
        let db = &self.notifications_db;
        let notified = poll_until(
            notify_wait,
            || async move {
                sqlx::query_scalar::<_, i64>(
                    "SELECT COUNT(DISTINCT order_number) FROM notifications",
                )
                .fetch_one(db)
                .await
                .unwrap_or(0)
            },
            |n| *n >= stored.len() as i64,
        )
        .await;
        assert_eq!(
            notified,
            Some(stored.len() as i64),
            "every stored order notified; consumer: {}",
            self.notifications.consumer().await
        );
        if let Err(e) = self.wait_broker_lag_zero(lag_wait).await {
            panic!("{e}; consumer: {:#}", self.notifications.consumer().await);
        }
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT order_number, COUNT(*) FROM notifications GROUP BY order_number",
        )
        .fetch_all(db)
        .await
        .unwrap();
        let twice: Vec<_> = rows.iter().filter(|(_, c)| *c != 1).collect();
        assert!(
            twice.is_empty(),
            "orders notified more than once: {twice:?}"
        );
        let unknown: Vec<_> = rows.iter().filter(|(n, _)| !stored.contains(n)).collect();
        assert!(
            unknown.is_empty(),
            "notifications for unknown orders: {unknown:?}"
        );
        Outcome {
            stored: stored.len(),
            notified: rows.len(),
        }
    }

    /// Waits up to `within` until the group's lag on `order-placed`, read from the broker, is
    /// 0; returns how long that took, or the last lag seen.
    pub async fn wait_broker_lag_zero(&self, within: Duration) -> Result<Duration, String> {
        let broker =
            kafka_lag::BrokerClient::new(&self.kafka.bootstrap_servers(), Default::default())
                .unwrap();
        let started = tokio::time::Instant::now();
        let mut last = None;
        let zero = poll_until(
            within,
            || broker.group_lag("notification-service", &[events::ORDER_PLACED_TOPIC]),
            |lag| {
                let done = matches!(lag, Ok(l) if l.total_lag == 0);
                last = Some(format!("{lag:?}"));
                done
            },
        )
        .await;
        match zero {
            Some(_) => Ok(started.elapsed()),
            None => Err(format!(
                "the group's lag did not reach 0 within {within:?}; last {}",
                last.unwrap_or_default()
            )),
        }
    }

    pub async fn stop(self) {
        let OrderFlow {
            mut order_service,
            notifications,
            inventory,
            registry,
            ..
        } = self;
        let _ = order_service.stop(Duration::from_secs(10)).await;
        notifications.stop().await;
        // How these two ended is not what these tests check.
        let _ = inventory.stop().await;
        let _ = registry.stop().await;
    }
}

/// What [`OrderFlow::assert_each_order_notified_once`] found.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// Orders stored (accepted ones and any whose answer was lost).
    pub stored: usize,
    /// Orders with a notification (one each).
    pub notified: usize,
}

async fn start_inventory(database_url: &str, registry: &str) -> InProcess<anyhow::Error> {
    let config = inventory_service::Config::for_tests(database_url, Some(registry));
    let service = InProcess::start(&inventory_service::SPEC, config.common.clone(), |service| {
        inventory_service::run(config, service)
    })
    .await
    .unwrap();
    service.wait_ready(WAIT).await.unwrap();
    service
}

/// Posts one order of one phone to order-service at `base`; its number when it was accepted.
pub async fn post_order(http: &reqwest::Client, base: &str) -> Option<String> {
    let r = http
        .post(format!("{base}/api/order"))
        .json(&json!({"lines": [{"skuCode": "phone", "price": "1.50", "quantity": 1}]}))
        .send()
        .await
        .ok()?;
    if r.status() != 201 {
        return None;
    }
    let v: Value = r.json().await.ok()?;
    v["orderNumber"].as_str().map(str::to_string)
}

/// An order placed over HTTP is reserved through the registry, published, and notified
/// once, with its lines and total, listed by order number.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_is_notified_once() {
    let flow = OrderFlow::start().await;
    let res = reqwest::Client::new()
        .post(format!("{}/api/order", flow.order_base))
        .json(&json!({"lines": [
            {"skuCode": "phone", "price": "999.99", "quantity": 2},
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let order: Value = res.json().await.unwrap();
    let number = order["orderNumber"].as_str().unwrap().to_string();
    let page = flow
        .notifications
        .wait_notifications(&format!("?orderNumber={number}"), 1)
        .await;
    let n = &page["items"][0];
    assert_eq!(n["subject"], format!("Your order {number} has been placed"));
    assert_eq!(n["total"], "1999.98");
    assert!(
        n["body"]
            .as_str()
            .unwrap()
            .contains("2 x phone at 999.99 = 1999.98"),
        "{n}"
    );
    flow.stop().await;
}

/// `kill -9` of order-service during a stream of orders, then a restart: every stored order
/// (every accepted one among them) gets exactly one notification, however often the outbox
/// relay republished its event.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_order_service_gives_exactly_one_notification_per_order() {
    let mut flow = OrderFlow::start().await;
    let stop = Arc::new(AtomicBool::new(false));
    let stream = testkit::order_stream(flow.order_base.clone(), 8, Duration::ZERO, stop.clone());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    flow.order_service.kill().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let accepted = stream.await.unwrap().accepted;
    assert!(
        accepted.len() >= 20,
        "only {} orders accepted before the kill",
        accepted.len()
    );

    flow.order_service.restart().await.unwrap();
    testkit::wait_for_http(&format!("{}/health/ready", flow.order_base), WAIT)
        .await
        .unwrap();

    let outcome = flow
        .assert_each_order_notified_once(&accepted, Duration::from_secs(90), WAIT)
        .await;
    let report = flow.notifications.consumer().await;
    println!(
        "kill -9 after {} accepted orders ({} stored): {} notifications, one per order; \
         consumer handled {} messages, skipped {} duplicates",
        accepted.len(),
        outcome.stored,
        outcome.notified,
        report["messagesHandled"],
        report["duplicatesSkipped"]
    );
    flow.stop().await;
}
