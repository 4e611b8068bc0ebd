//! Distributed tracing across the platform, checked in the real trace-collector: one order
//! placed through the gateway is one trace (gateway, order-service, inventory-service, their
//! database calls, the outbox relay's publish, the Kafka hop, notification-service and its
//! database write), a caller's W3C and B3 headers are honoured, retries are separate client
//! spans, and nothing stops serving when the collector is gone.
//!
//! Every service runs as its real binary, so each exports under its own name (a tracing
//! subscriber is per process): the gateway, order-, inventory- and notification-service, and
//! the trace-collector they export to, beside the registry, the identity provider, MariaDB
//! and tansu. Build them first: `cargo build -p api-gateway -p order-service
//! -p inventory-service -p notification-service -p trace-collector -p identity-provider
//! -p discovery-server` (a workspace build does).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::*;

/// Longest wait for a trace to be complete in the collector.
const TRACE_WAIT: Duration = Duration::from_secs(30);

/// The environment that makes a service export its spans to `collector`, fast.
fn exporting(collector: &Collector) -> [(&'static str, String); 2] {
    [
        ("ZIPKIN_ENDPOINT", collector.endpoint()),
        ("TRACE_EXPORT_DELAY", "100ms".to_string()),
    ]
}

/// The trace-collector binary, not registered.
struct Collector {
    base: String,
    process: testkit::ChildGuard,
}

impl Collector {
    async fn start() -> Collector {
        let started = testkit::Starter::new(workspace_bin("trace-collector"))
            .args(["--no-register"])
            .start()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        Collector {
            base: started.base,
            process: started.process,
        }
    }

    fn endpoint(&self) -> String {
        format!("{}/api/v2/spans", self.base)
    }

    /// The spans of a trace (none yet: empty).
    async fn trace(&self, id: &str) -> Vec<Value> {
        let res = client()
            .get(format!("{}/api/v2/trace/{id}", self.base))
            .send()
            .await
            .unwrap();
        if res.status() == 404 {
            return Vec::new();
        }
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }

    /// Waits until trace `id` satisfies `complete`, and returns it.
    async fn wait_for(
        &self,
        id: &str,
        what: &str,
        complete: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + TRACE_WAIT;
        loop {
            let spans = self.trace(id).await;
            if complete(&spans) {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "trace {id} is not complete after {TRACE_WAIT:?} ({what}); it has:\n{}",
                describe(&spans)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Ids of every trace the collector holds with a span of one of `services`.
    async fn trace_ids(&self, services: &[&str]) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        for service in services {
            let traces: Vec<Vec<Value>> = testkit::body_json(
                client()
                    .get(format!("{}/api/v2/traces", self.base))
                    .query(&[("serviceName", *service), ("limit", "10000")]),
            )
            .await;
            for t in traces {
                if let Some(id) = t.first().and_then(|s| s["traceId"].as_str()) {
                    ids.insert(id.to_string());
                }
            }
        }
        ids
    }
}

/// One line per span: service, kind, name, id and parent, for failure messages.
fn describe(spans: &[Value]) -> String {
    spans
        .iter()
        .map(|s| {
            format!(
                "  {} {} {:?} id={} parent={}",
                service_of(s),
                s["kind"].as_str().unwrap_or("-"),
                s["name"].as_str().unwrap_or(""),
                s["id"].as_str().unwrap_or(""),
                parent_of(s).unwrap_or("-"),
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn service_of(s: &Value) -> &str {
    s["localEndpoint"]["serviceName"].as_str().unwrap_or("")
}

/// The parent span id; `None` for a root (Zipkin omits it, some exporters write zeros).
fn parent_of(s: &Value) -> Option<&str> {
    s["parentId"]
        .as_str()
        .filter(|p| !p.is_empty() && p.chars().any(|c| c != '0'))
}

/// The one span of `service` with this kind whose name satisfies `name`.
fn find<'a>(spans: &'a [Value], service: &str, kind: &str, name: &str) -> &'a Value {
    let found: Vec<&Value> = spans
        .iter()
        .filter(|s| service_of(s) == service && s["kind"] == kind && s["name"] == name)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "exactly one {kind} span {name:?} of {service}; the trace has:\n{}",
        describe(spans)
    );
    found[0]
}

fn has(spans: &[Value], service: &str, kind: &str, name: &str) -> bool {
    spans
        .iter()
        .any(|s| service_of(s) == service && s["kind"] == kind && s["name"] == name)
}

/// Whether `ancestor` is `span`'s parent, grandparent...
fn descends_from(spans: &[Value], span: &Value, ancestor: &Value) -> bool {
    let by_id: HashMap<&str, &Value> = spans
        .iter()
        .filter_map(|s| Some((s["id"].as_str()?, s)))
        .collect();
    let mut current = span;
    while let Some(parent) = parent_of(current) {
        if Some(parent) == ancestor["id"].as_str() {
            return true;
        }
        match by_id.get(parent) {
            Some(p) => current = p,
            None => return false,
        }
    }
    false
}

/// Everything an order needs, each service exporting to one collector.
struct Platform {
    _db: testkit::MariaDb,
    _kafka: testkit::Broker,
    _registry: Registry,
    idp: Idp,
    collector: Collector,
    _inventory: testkit::ChildGuard,
    _orders: testkit::ChildGuard,
    _notifications: testkit::ChildGuard,
    _gateway: testkit::ChildGuard,
    gateway: String,
    inventory: String,
    orders: String,
}

impl Platform {
    async fn start() -> Platform {
        let (db, kafka, collector) = tokio::join!(
            testkit::MariaDb::start(),
            testkit::Broker::start(),
            Collector::start()
        );
        let db = db.expect("MariaDB starts");
        let kafka = kafka.expect("tansu starts");
        kafka.create_topic("order-placed", 1).await.unwrap();
        let orders_db = db.create_database("orders").await.unwrap();
        let inventory_db = db.create_database("inventory").await.unwrap();
        let notifications_db = db.create_database("notifications").await.unwrap();
        let (registry, idp) = tokio::join!(Registry::start(), Idp::start());
        let env = exporting(&collector);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let bootstrap = kafka.bootstrap_servers();
        let inventory_args = ["--database-url", &inventory_db.url];
        let order_args = [
            "--database-url",
            &orders_db.url,
            "--kafka-bootstrap-servers",
            &bootstrap,
            // Its service account reserves stock at inventory.
            "--client-secret",
            ORDER_SERVICE_SECRET,
            // No product-service here: this test follows the order's trace, prices are
            // order-service's own tests' and the authorization matrix's.
            "--price-check",
            "off",
        ];
        let notification_args = [
            "--database-url",
            &notifications_db.url,
            "--kafka-bootstrap-servers",
            &bootstrap,
        ];
        let (inventory, orders, notifications, gateway) = tokio::join!(
            service(
                "inventory-service",
                &registry,
                &idp.issuer,
                &inventory_args,
                &env
            ),
            service("order-service", &registry, &idp.issuer, &order_args, &env),
            service(
                "notification-service",
                &registry,
                &idp.issuer,
                &notification_args,
                &env
            ),
            service("api-gateway", &registry, &idp.issuer, &[], &env),
        );
        Platform {
            _db: db,
            _kafka: kafka,
            _registry: registry,
            idp,
            collector,
            _inventory: inventory.0,
            _orders: orders.0,
            _notifications: notifications.0,
            _gateway: gateway.0,
            gateway: gateway.1,
            inventory: inventory.1,
            orders: orders.1,
        }
    }

    /// Places an order of one phone through the gateway; returns its number and the
    /// answer's `X-Trace-Id`.
    async fn place_order(&self, token: &str) -> (String, String) {
        let res = client()
            .post(format!("{}/api/order", self.gateway))
            .bearer_auth(token)
            .json(&json!({"lines": [{"skuCode": "phone", "price": "499.00", "quantity": 1}]}))
            .send()
            .await
            .unwrap();
        let trace = res.headers()["x-trace-id"].to_str().unwrap().to_string();
        assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
        let order: Value = res.json().await.unwrap();
        (order["orderNumber"].as_str().unwrap().to_string(), trace)
    }
}

/// Services whose spans make up an order's trace.
const ORDER_SERVICES: [&str; 4] = [
    "api-gateway",
    "order-service",
    "inventory-service",
    "notification-service",
];

/// One order through the gateway is exactly one new trace in the collector, with the spans
/// of every hop (gateway server and client, order-service server, its inventory call and
/// its transaction, inventory's server span and transaction, the relay's PRODUCER span, the
/// notification CONSUMER span and its insert), every parent in the trace, the Kafka hop a
/// parent/child link, and no value in any statement. Then a caller's traceparent, B3 single
/// and B3 multi headers are continued (X-Trace-Id names the exported trace, the gateway's
/// server span is the caller's child, and the caller's span never reaches the upstream as a
/// parent), and with the collector killed orders still succeed while export failures count.
#[tokio::test]
async fn an_order_is_one_trace_across_http_kafka_and_databases() {
    let p = Platform::start().await;
    let c = client();
    let admin = p.idp.password("admin", "admin").await;
    let token = p.idp.password("alice", "alice").await;
    let res = c
        .put(format!("{}/admin/inventory/phone", p.inventory))
        .bearer_auth(&admin)
        .json(&json!({"quantity": 10}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut before_order: BTreeSet<String> = BTreeSet::new();
    before_order.insert(res.headers()["x-trace-id"].to_str().unwrap().to_string());
    // The gateway finds both services through the registry: wait until a read passes.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let res = c
            .get(format!("{}/api/inventory/phone", p.gateway))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        before_order.insert(res.headers()["x-trace-id"].to_str().unwrap().to_string());
        let orders = c
            .get(format!("{}/api/order", p.gateway))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        before_order.insert(orders.headers()["x-trace-id"].to_str().unwrap().to_string());
        if res.status() == 200 && orders.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway never reached inventory ({}) and order-service ({})",
            res.status(),
            orders.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // ---- one order, one trace ---------------------------------------------------------
    let (number, trace) = p.place_order(&token).await;
    p.collector
        .wait_for(&trace, "every hop down to the notification's insert", |s| {
            has(s, "notification-service", "CLIENT", "insert notifications")
        })
        .await;
    // Late spans of the same trace (the relay marks the row sent after the broker's ack).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let spans = p.collector.trace(&trace).await;
    assert!(spans.iter().all(|s| s["traceId"] == trace.as_str()));

    let roots: Vec<&Value> = spans.iter().filter(|s| parent_of(s).is_none()).collect();
    assert_eq!(roots.len(), 1, "one root:\n{}", describe(&spans));
    let ids: BTreeSet<&str> = spans.iter().filter_map(|s| s["id"].as_str()).collect();
    for s in &spans {
        if let Some(parent) = parent_of(s) {
            assert!(
                ids.contains(parent),
                "the parent of {:?} is in the trace:\n{}",
                s["name"],
                describe(&spans)
            );
        }
    }

    let gw_server = find(&spans, "api-gateway", "SERVER", "post /{*path}");
    assert_eq!(
        roots[0]["id"], gw_server["id"],
        "the gateway's server span is the root"
    );
    let gw_client = find(&spans, "api-gateway", "CLIENT", "post order-service");
    assert_eq!(parent_of(gw_client), gw_server["id"].as_str());
    assert_eq!(gw_client["remoteEndpoint"]["serviceName"], "order-service");
    assert_eq!(gw_client["tags"]["http.response.status_code"], "201");

    let order_server = find(&spans, "order-service", "SERVER", "post /api/order");
    assert_eq!(parent_of(order_server), gw_client["id"].as_str());
    let order_tx = find(&spans, "order-service", "CLIENT", "transaction place order");
    assert!(descends_from(&spans, order_tx, order_server));
    assert_eq!(order_tx["tags"]["db.system"], "mysql");
    assert!(
        order_tx["tags"]["db.statement"]
            .as_str()
            .unwrap()
            .contains("INSERT INTO outbox"),
        "{order_tx}"
    );
    let inv_client = find(&spans, "order-service", "CLIENT", "post inventory-service");
    assert!(descends_from(&spans, inv_client, order_server));
    let inv_server = find(
        &spans,
        "inventory-service",
        "SERVER",
        "post /api/inventory/reservations",
    );
    assert_eq!(parent_of(inv_server), inv_client["id"].as_str());
    let inv_tx = find(&spans, "inventory-service", "CLIENT", "transaction reserve");
    assert!(descends_from(&spans, inv_tx, inv_server));
    assert_eq!(inv_tx["remoteEndpoint"]["serviceName"], "mysql");

    let producer = find(&spans, "order-service", "PRODUCER", "send order-placed");
    assert!(
        descends_from(&spans, producer, order_server),
        "the relay publishes in the order's trace:\n{}",
        describe(&spans)
    );
    assert_eq!(producer["remoteEndpoint"]["serviceName"], "kafka");
    let consumer = find(
        &spans,
        "notification-service",
        "CONSUMER",
        "order-placed process",
    );
    assert_eq!(
        parent_of(consumer),
        producer["id"].as_str(),
        "the Kafka hop: the consumer is the producer's child"
    );
    assert_eq!(consumer["tags"]["order_number"], number.as_str());
    let insert = find(
        &spans,
        "notification-service",
        "CLIENT",
        "insert notifications",
    );
    assert_eq!(parent_of(insert), consumer["id"].as_str());

    for s in spans
        .iter()
        .filter(|s| s["tags"].get("db.statement").is_some())
    {
        let statement = s["tags"]["db.statement"].as_str().unwrap();
        assert!(
            !statement.contains(&number)
                && !statement.contains("alice")
                && !statement.contains("499"),
            "a statement carries a value: {statement}"
        );
    }

    // Exactly one trace: every trace the order's services exported besides the set-up
    // requests is this one (a relay or consumer span without its parent would be a root
    // of its own trace).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = p.collector.trace_ids(&ORDER_SERVICES).await;
    let new: Vec<&String> = all.difference(&before_order).collect();
    assert_eq!(new, [&trace], "placing one order made exactly one trace");

    // ---- a caller's trace context is continued ----------------------------------------
    let caller_span = "00f067aa0ba902b7";
    let forms: [(&str, Vec<(&str, String)>); 3] = [
        (
            "traceparent",
            vec![(
                "traceparent",
                format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{caller_span}-01"),
            )],
        ),
        (
            "b3 single",
            vec![(
                "b3",
                format!("5bf92f3577b34da6a3ce929d0e0e4737-{caller_span}-1"),
            )],
        ),
        (
            "b3 multi",
            vec![
                (
                    "x-b3-traceid",
                    "6bf92f3577b34da6a3ce929d0e0e4738".to_string(),
                ),
                ("x-b3-spanid", caller_span.to_string()),
                ("x-b3-parentspanid", "1111111111111111".to_string()),
                ("x-b3-sampled", "1".to_string()),
            ],
        ),
    ];
    for (form, headers) in forms {
        let expected = match headers[0].1.as_str() {
            h if form == "traceparent" => h[3..35].to_string(),
            h => h[..32].to_string(),
        };
        let mut req = c
            .get(format!("{}/api/order/{number}", p.gateway))
            .bearer_auth(&token);
        for (k, v) in &headers {
            req = req.header(*k, v);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 200, "{form}");
        assert_eq!(res.headers()["x-trace-id"], expected.as_str(), "{form}");
        let spans = p
            .collector
            // Every span asserted below: the gateway exports its own after the answer, so
            // order-service's may arrive first.
            .wait_for(&expected, form, |s| {
                has(
                    s,
                    "order-service",
                    "SERVER",
                    "get /api/order/{order_number}",
                ) && has(s, "api-gateway", "SERVER", "get /{*path}")
                    && has(s, "api-gateway", "CLIENT", "get order-service")
            })
            .await;
        let server = find(&spans, "api-gateway", "SERVER", "get /{*path}");
        assert_eq!(
            parent_of(server),
            Some(caller_span),
            "{form}: the caller's child"
        );
        let client_span = find(&spans, "api-gateway", "CLIENT", "get order-service");
        let upstream = find(
            &spans,
            "order-service",
            "SERVER",
            "get /api/order/{order_number}",
        );
        assert_eq!(
            parent_of(upstream),
            client_span["id"].as_str(),
            "{form}: the upstream's parent is the gateway's client span, not the caller's span"
        );
        assert!(
            has(&spans, "order-service", "CLIENT", "select orders"),
            "{form}"
        );
    }

    // ---- the collector is gone: orders still succeed, the failed exports are counted -------
    // (How long a request takes meanwhile is a benchmark's question.)
    let mut p = p;
    p.collector.process.kill().await.unwrap();
    for _ in 0..3 {
        p.place_order(&token).await;
    }
    for base in [&p.gateway, &p.orders] {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            // The gateway's /metrics needs the admin role (its port is the published one).
            let metrics =
                testkit::body_text(c.get(format!("{base}/metrics")).bearer_auth(&admin)).await;
            let failures: u64 = metrics
                .lines()
                .find(|l| l.starts_with("tracing_span_export_failures_total"))
                .and_then(|l| l.split_whitespace().last())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if failures > 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{base} never counted a failed export:\n{metrics}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A retried request shows each attempt as its own CLIENT span under the gateway's server
/// span: the attempt at an instance that refuses connections is marked failed, the retry
/// carries the status, and the instance that answered is the child of the retry only.
#[tokio::test]
async fn each_attempt_is_a_client_span() {
    let (registry, collector) = tokio::join!(Registry::start(), Collector::start());
    let env = exporting(&collector);
    // An instance that refuses connections, first in round-robin order.
    registry
        .register("svc", "a-dead", testkit::free_port().unwrap())
        .await;
    let echo_port = testkit::free_port().unwrap();
    let gw_port = testkit::free_port().unwrap();
    let instance = |name: &str, port: u16| {
        testkit::Starter::new(workspace_bin(name))
            .port(port)
            .args(registered(&registry))
            .args(["--instance-id".to_string(), format!("b-{port}")])
            .envs(env.clone())
            .within(Duration::from_secs(30))
    };
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.toml");
    let retry = r#"retry = { retries = 1, statuses = [503], methods = ["GET"], backoff = { first = "1ms", max = "1ms" } }"#;
    std::fs::write(&routes, svc_route(retry)).unwrap();
    let (echo, gateway) = tokio::join!(
        instance("echo-upstream", echo_port)
            .args(["--service-name", "svc"])
            .start(),
        instance("api-gateway", gw_port)
            .args(["--routes", routes.to_str().unwrap()])
            // Keep the dead instance in rotation: this test is about retries.
            .args(["--eject-after-connect-errors", "1000"])
            .start(),
    );
    let _echo = echo.unwrap_or_else(|e| panic!("echo-upstream: {e}"));
    let _gateway = gateway.unwrap_or_else(|e| panic!("api-gateway: {e}"));
    let base = format!("http://127.0.0.1:{gw_port}");

    // Round robin alternates between the two instances once the gateway knows both: within
    // a few requests one goes to the dead instance first.
    let c = client();
    let deadline = Instant::now() + Duration::from_secs(20);
    let spans = loop {
        let res = c.get(format!("{base}/svc/hello")).send().await.unwrap();
        let status = res.status();
        let trace = res.headers()["x-trace-id"].to_str().unwrap().to_string();
        if status == 200 {
            let spans = collector
                // The gateway's server span ends last, after its client spans.
                .wait_for(&trace, "the echo's and the gateway's server spans", |s| {
                    has(s, "svc", "SERVER", "get /hello")
                        && has(s, "api-gateway", "SERVER", "get /{*path}")
                })
                .await;
            let attempts = spans
                .iter()
                .filter(|s| service_of(s) == "api-gateway" && s["kind"] == "CLIENT")
                .count();
            if attempts == 2 {
                break spans;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no request was retried (last status {status})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let server = find(&spans, "api-gateway", "SERVER", "get /{*path}");
    let attempts: Vec<&Value> = spans
        .iter()
        .filter(|s| service_of(s) == "api-gateway" && s["kind"] == "CLIENT")
        .collect();
    for a in &attempts {
        assert_eq!(a["name"], "get svc");
        assert_eq!(parent_of(a), server["id"].as_str(), "{}", describe(&spans));
        assert_eq!(a["remoteEndpoint"]["serviceName"], "svc");
    }
    let (failed, answered): (Vec<&Value>, Vec<&Value>) = attempts
        .into_iter()
        .partition(|a| a["tags"].get("error").is_some());
    assert_eq!(
        (failed.len(), answered.len()),
        (1, 1),
        "{}",
        describe(&spans)
    );
    assert_eq!(failed[0]["tags"]["otel.status_code"], "ERROR");
    assert!(failed[0]["tags"].get("http.response.status_code").is_none());
    assert_eq!(answered[0]["tags"]["http.response.status_code"], "200");
    let echo_server = find(&spans, "svc", "SERVER", "get /hello");
    assert_eq!(parent_of(echo_server), answered[0]["id"].as_str());
}
