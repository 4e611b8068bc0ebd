//! The authorization matrix: every route of the gateway's routes file (parsed with the
//! gateway's own parser), every service's `/admin` and the gateway's own endpoints
//! (`/metrics`, `/info`, `/admin/*`, health), × method × {anonymous, alice, bob,
//! admin, order-service's service account}, with the status each must get, run through the
//! real gateway binary in front of the real services and identity provider on loopback.
//! No Docker: MariaDB and the Kafka-API broker come from testkit.
//!
//! A route added to `services/api-gateway/routes.toml` without a row here fails
//! [`every_route_has_a_row`] with a message naming it; every gateway row must also be
//! matched by the route it names (or by none, for paths that must not be routed).
//!
//! Build the binaries first: `cargo build -p discovery-server -p identity-provider
//! -p api-gateway -p product-service -p inventory-service -p order-service
//! -p notification-service` (the test says which one is missing).

use std::path::PathBuf;
use std::time::Duration;

use api_gateway::route::{RequestView, RouteTable};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Who calls, in the order of the expected statuses of a row.
const PRINCIPALS: [&str; 5] = ["anonymous", "alice", "bob", "admin", "service"];

/// A secret of `keycloak/realm.json`: order-service's client (its service account has `service`).
const ORDER_SERVICE_SECRET: &str = "order-service-secret";

/// Where a row's request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// Through the gateway; `Some(id)`: the route that must match, `None`: no route may.
    Gateway(Option<&'static str>),
    /// Straight to a service (its `/admin`, or service-to-service endpoints).
    Direct(&'static str),
}

/// One row: a request and the status each principal gets.
#[derive(Debug, Clone)]
struct Row {
    target: Target,
    method: Method,
    /// Path and query.
    path: String,
    body: Option<Value>,
    /// Statuses for [`PRINCIPALS`], in order (requests run in that order).
    expect: [u16; 5],
}

/// The values rows refer to, made by the fixture.
struct Fixture {
    product_id: String,
    doomed_product_id: String,
    sku: String,
    alice_order: String,
    alice_notification: u64,
}

const ANON_401: u16 = 401;

fn row(target: Target, method: Method, path: impl Into<String>, expect: [u16; 5]) -> Row {
    Row {
        target,
        method,
        path: path.into(),
        body: None,
        expect,
    }
}

fn with_body(mut r: Row, body: Value) -> Row {
    r.body = Some(body);
    r
}

/// The services whose `/admin` is checked directly, by registry name.
const SERVICES: [&str; 7] = [
    "discovery-server",
    "api-gateway",
    "product-service",
    "order-service",
    "inventory-service",
    "notification-service",
    "identity-provider",
];

/// The whole matrix. Statuses: [anonymous, alice, bob, admin, service account].
fn matrix(f: &Fixture) -> Vec<Row> {
    use Method as M;
    use Target::*;
    let any_token = [ANON_401, 200, 200, 200, 200];
    let mut rows = vec![
        // Catalogue writes: the admin role, at the gateway and in product-service.
        with_body(
            row(
                Gateway(Some("product-service-write")),
                M::POST,
                "/api/product",
                [ANON_401, 403, 403, 201, 403],
            ),
            json!({"skuCode": "matrix-new", "name": "New", "price": "1.00"}),
        ),
        with_body(
            row(
                Gateway(Some("product-service-write")),
                M::PUT,
                format!("/api/product/{}", f.product_id),
                [ANON_401, 403, 403, 200, 403],
            ),
            json!({"skuCode": f.sku, "name": "Phone", "price": "19.99"}),
        ),
        row(
            Gateway(Some("product-service-write")),
            M::DELETE,
            format!("/api/product/{}", f.doomed_product_id),
            [ANON_401, 403, 403, 204, 403],
        ),
        // Catalogue reads: any valid token.
        row(
            Gateway(Some("product-service")),
            M::GET,
            "/api/product",
            any_token,
        ),
        row(
            Gateway(Some("product-service")),
            M::GET,
            format!("/api/product/{}", f.product_id),
            any_token,
        ),
        // Orders: anyone with a token places; each reads their own, admin all.
        row(
            Gateway(Some("order-service")),
            M::GET,
            "/api/order",
            any_token,
        ),
        row(
            Gateway(Some("order-service")),
            M::GET,
            format!("/api/order/{}", f.alice_order),
            [ANON_401, 200, 404, 200, 404],
        ),
        with_body(
            row(
                Gateway(Some("order-service")),
                M::POST,
                "/api/order",
                [ANON_401, 201, 201, 201, 201],
            ),
            json!({"lines": [{"skuCode": f.sku, "price": "19.99", "quantity": 1}]}),
        ),
        // Stock checks: any valid token.
        row(
            Gateway(Some("inventory-service")),
            M::GET,
            format!("/api/inventory?skuCode={}&quantity=1", f.sku),
            any_token,
        ),
        row(
            Gateway(Some("inventory-service")),
            M::GET,
            format!("/api/inventory/{}", f.sku),
            any_token,
        ),
        // Notifications: each reads their own, admin all.
        row(
            Gateway(Some("notification-service")),
            M::GET,
            "/api/notifications",
            any_token,
        ),
        row(
            Gateway(Some("notification-service")),
            M::GET,
            format!("/api/notifications/{}", f.alice_notification),
            [ANON_401, 200, 404, 200, 404],
        ),
        // The identity provider's OpenID Connect endpoints are public.
        row(
            Gateway(Some("identity-provider")),
            M::GET,
            "/realms/platform/.well-known/openid-configuration",
            [200; 5],
        ),
        row(
            Gateway(Some("identity-provider")),
            M::GET,
            "/realms/platform/protocol/openid-connect/certs",
            [200; 5],
        ),
        // Reservations are service-to-service: not routed, 404 for everyone at the gateway.
        with_body(
            row(
                Gateway(None),
                M::POST,
                "/api/inventory/reservations",
                [404; 5],
            ),
            json!({"orderNumber": "matrix-gw", "lines": [{"skuCode": f.sku, "quantity": 1}]}),
        ),
        row(
            Gateway(None),
            M::GET,
            format!("/api/inventory/reservations/{}", f.alice_order),
            [404; 5],
        ),
        row(
            Gateway(None),
            M::DELETE,
            format!("/api/inventory/reservations/{}", f.alice_order),
            [404; 5],
        ),
        // Stock is never set through the gateway.
        with_body(
            row(
                Gateway(None),
                M::PUT,
                format!("/api/inventory/{}", f.sku),
                [404; 5],
            ),
            json!({"quantity": 1000}),
        ),
        // ... and straight at inventory they need the `service` role (defence in depth).
        with_body(
            row(
                Direct("inventory-service"),
                M::POST,
                "/api/inventory/reservations",
                [ANON_401, 403, 403, 403, 201],
            ),
            json!({"orderNumber": "matrix-direct", "lines": [{"skuCode": f.sku, "quantity": 1}]}),
        ),
        row(
            Direct("inventory-service"),
            M::GET,
            "/api/inventory/reservations/matrix-direct",
            [ANON_401, 403, 403, 403, 200],
        ),
        row(
            Direct("inventory-service"),
            M::DELETE,
            "/api/inventory/reservations/matrix-direct",
            [ANON_401, 403, 403, 403, 200],
        ),
        // Catalogue writes straight at product-service need the admin role too.
        with_body(
            row(
                Direct("product-service"),
                M::POST,
                "/api/product",
                [ANON_401, 403, 403, 201, 403],
            ),
            json!({"skuCode": "matrix-direct", "name": "Direct", "price": "1.00"}),
        ),
    ];
    // Every service's /admin: the admin role (GET, POST, DELETE).
    for service in SERVICES {
        let admin_only = |ok: u16| [ANON_401, 403, 403, ok, 403];
        rows.push(row(
            Direct(service),
            M::GET,
            "/admin/faults",
            admin_only(200),
        ));
        rows.push(with_body(
            row(Direct(service), M::POST, "/admin/faults", admin_only(201)),
            json!({
                "id": "matrix-fault",
                "assault": {"type": "latency", "min_ms": 1, "max_ms": 1},
                "routes": ["/matrix-nothing-here"],
                "durationMs": 60000
            }),
        ));
        rows.push(row(
            Direct(service),
            M::DELETE,
            "/admin/faults/matrix-fault",
            admin_only(204),
        ));
    }
    // The gateway's own endpoints on its published port: what it routes and to whom, and its
    // metrics and build info, are the admin's (private observability, the gateway's default);
    // health probes are open, as orchestrators need them.
    for path in GATEWAY_ADMIN_ONLY {
        rows.push(row(
            Direct("api-gateway"),
            M::GET,
            path,
            [ANON_401, 403, 403, 200, 403],
        ));
    }
    for path in GATEWAY_OPEN {
        rows.push(row(Direct("api-gateway"), M::GET, path, [200; 5]));
    }
    rows.push(row(
        Direct("discovery-server"),
        M::GET,
        "/admin/registry",
        [ANON_401, 403, 403, 200, 403],
    ));
    rows.extend(registry_rows());
    rows
}

/// The registry's Eureka API (it is not routed by the gateway): writes need the registry's
/// Basic credentials (its own tests) or a token with the `service` role, here the service
/// account's; reads are open. In order: register, renew, status override and its removal,
/// cancel, so each succeeds when allowed.
fn registry_rows() -> Vec<Row> {
    use Method as M;
    use Target::Direct;
    let service_only = |ok: u16| [ANON_401, 403, 403, 403, ok];
    let instance = "/eureka/apps/MATRIX/matrix-1";
    vec![
        with_body(
            row(
                Direct("discovery-server"),
                M::POST,
                "/eureka/apps/MATRIX",
                service_only(204),
            ),
            json!({"instance": {
                "instanceId": "matrix-1", "app": "MATRIX", "hostName": "127.0.0.1",
                "ipAddr": "127.0.0.1", "status": "UP", "port": {"$": 9, "@enabled": "true"}
            }}),
        ),
        row(
            Direct("discovery-server"),
            M::PUT,
            format!("{instance}?status=UP"),
            service_only(200),
        ),
        row(
            Direct("discovery-server"),
            M::PUT,
            format!("{instance}/status?value=OUT_OF_SERVICE"),
            service_only(200),
        ),
        row(
            Direct("discovery-server"),
            M::DELETE,
            format!("{instance}/status?value=UP"),
            service_only(200),
        ),
        row(Direct("discovery-server"), M::GET, "/eureka/apps", [200; 5]),
        row(
            Direct("discovery-server"),
            M::DELETE,
            instance,
            service_only(200),
        ),
    ]
}

/// The api-gateway's own endpoints (not in the routes file) that need the admin role.
const GATEWAY_ADMIN_ONLY: [&str; 4] = ["/admin/routes", "/admin/upstreams", "/metrics", "/info"];

/// The api-gateway's own endpoints open to anyone: the health probes.
const GATEWAY_OPEN: [&str; 2] = ["/health/live", "/health/ready"];

/// The gateway's built-in routes, parsed by the gateway itself.
fn routes() -> RouteTable {
    let routes = api_gateway::routes_file::parse(
        api_gateway::routes_file::DEFAULT_ROUTES,
        "services/api-gateway/routes.toml",
    )
    .expect("the built-in routes parse");
    RouteTable::new(routes)
}

/// Checks that every route has a row and every gateway row is matched by the route it names.
fn coverage(table: &RouteTable, rows: &[Row]) -> Result<(), String> {
    let mut errors = Vec::new();
    for route in table.routes() {
        let covered = rows
            .iter()
            .any(|r| matches!(r.target, Target::Gateway(Some(id)) if id == route.id));
        if !covered {
            errors.push(format!(
                "route `{}` of the routes file has no row in the authorization matrix \
                 (tests/tests/authz/main.rs): add the status each principal gets",
                route.id
            ));
        }
    }
    let headers = reqwest::header::HeaderMap::new();
    for r in rows {
        let Target::Gateway(expected) = r.target else {
            continue;
        };
        let path = r.path.split('?').next().unwrap_or_default();
        let view = RequestView {
            method: &r.method,
            path,
            host: None,
            headers: &headers,
        };
        let found = table.find(&view).map(|(route, _)| route.id.clone());
        if found.as_deref() != expected {
            errors.push(format!(
                "{} {}: the matrix says route {:?}, the routes file picks {:?}",
                r.method, r.path, expected, found
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}

fn placeholder_fixture() -> Fixture {
    Fixture {
        product_id: "p".into(),
        doomed_product_id: "d".into(),
        sku: "s".into(),
        alice_order: "o".into(),
        alice_notification: 1,
    }
}

/// Every route of the routes file has a row and each gateway row reaches the route it names; a
/// route added without a row fails, naming it.
#[test]
fn every_route_has_a_row() {
    let table = routes();
    let rows = matrix(&placeholder_fixture());
    coverage(&table, &rows).unwrap_or_else(|e| panic!("{e}"));

    let extra = format!(
        "{}\n[[routes]]\nid = \"brand-new\"\nuri = \"lb://brand-new\"\npredicates = [\"Path=/api/brand-new/**\"]\n",
        api_gateway::routes_file::DEFAULT_ROUTES
    );
    let grown = RouteTable::new(api_gateway::routes_file::parse(&extra, "grown.toml").unwrap());
    let err = coverage(&grown, &rows).unwrap_err();
    assert!(
        err.contains("route `brand-new` of the routes file has no row"),
        "{err}"
    );
}

// ---- the running system -------------------------------------------------------------------

fn bin(name: &str) -> PathBuf {
    testkit::bin_path(name)
        .unwrap_or_else(|e| panic!("{e}: build it first (cargo build -p {name})"))
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Starts a service binary on a free loopback port, registered in `registry`, checking tokens of
/// `issuer`, and waits until it is ready.
async fn start(
    name: &str,
    registry: &str,
    issuer: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (testkit::ChildGuard, String) {
    let port = testkit::free_port().unwrap().to_string();
    let mut all = vec![
        "--port",
        &port,
        "--bind",
        "127.0.0.1",
        "--advertise-host",
        "127.0.0.1",
        "--registry-url",
        registry,
        "--issuer-url",
        issuer,
    ];
    all.extend_from_slice(args);
    let mut vars = vec![("RUST_LOG", "warn")];
    vars.extend_from_slice(env);
    let child = testkit::spawn_process(bin(name), all, vars).await.unwrap();
    let base = format!("http://127.0.0.1:{port}");
    testkit::wait_for_http(&format!("{base}/health/ready"), Duration::from_secs(90))
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}\n{}", child.log_tail(40)));
    (child, base)
}

async fn token(c: &reqwest::Client, issuer: &str, form: &[(&str, &str)]) -> String {
    let res = c
        .post(format!("{issuer}/protocol/openid-connect/token"))
        .form(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "token request {form:?}");
    let v: Value = res.json().await.unwrap();
    v["access_token"].as_str().unwrap().to_string()
}

async fn password(c: &reqwest::Client, issuer: &str, user: &str, pass: &str) -> String {
    token(
        c,
        issuer,
        &[
            ("grant_type", "password"),
            ("client_id", "platform-cli"),
            ("username", user),
            ("password", pass),
        ],
    )
    .await
}

/// Sends `method path` to `base` with `token` and `body`.
async fn call(
    c: &reqwest::Client,
    method: Method,
    url: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> reqwest::Response {
    let mut req = c.request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    req.send().await.unwrap()
}

/// The matrix through the real gateway in front of the real services and identity provider.
#[tokio::test]
async fn authorization_matrix() {
    let table = routes();
    coverage(&table, &matrix(&placeholder_fixture())).unwrap_or_else(|e| panic!("{e}"));

    let (db, kafka) = tokio::join!(testkit::MariaDb::start(), testkit::Broker::start());
    let db = db.expect("MariaDB starts");
    let kafka = kafka.expect("the broker starts");
    let orders_db = db.create_database("orders").await.unwrap();
    let inventory_db = db.create_database("inventory").await.unwrap();
    let notifications_db = db.create_database("notifications").await.unwrap();
    let bootstrap = kafka.bootstrap_servers();
    let products_dir = tempfile::tempdir().unwrap();
    let products_url = format!(
        "embedded:{}",
        products_dir.path().join("products").display()
    );

    // Registry, then the identity provider (registered: the gateway routes /realms/** to it).
    // As in the dev stack, the registry checks the provider's JWTs on /admin (it fetches the
    // keys when it needs them: the provider starts after it) and wants credentials for writes,
    // which every service has in its registry URL.
    let registry_port = testkit::free_port().unwrap().to_string();
    let idp_port = testkit::free_port().unwrap().to_string();
    let idp_base = format!("http://127.0.0.1:{idp_port}");
    let _registry = testkit::spawn_process(
        bin("discovery-server"),
        [
            "--port",
            &registry_port,
            "--bind",
            "127.0.0.1",
            "--issuer-url",
            &format!("{idp_base}/realms/platform"),
        ],
        [
            ("RUST_LOG", "warn"),
            ("REGISTRY_USERNAME", "matrix"),
            ("REGISTRY_PASSWORD", "matrix-registry-secret"),
        ],
    )
    .await
    .unwrap();
    let registry_base = format!("http://127.0.0.1:{registry_port}");
    testkit::wait_for_http(
        &format!("{registry_base}/health/ready"),
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let registry = format!("http://matrix:matrix-registry-secret@127.0.0.1:{registry_port}");
    let realm = testkit::workspace_root().join("keycloak/realm.json");
    let _idp = testkit::spawn_process(
        bin("identity-provider"),
        [
            "--port",
            &idp_port,
            "--bind",
            "127.0.0.1",
            "--advertise-host",
            "127.0.0.1",
            "--registry-url",
            &registry,
            "--realm-file",
            realm.to_str().unwrap(),
            "--issuer-base-url",
            &idp_base,
        ],
        [("RUST_LOG", "warn")],
    )
    .await
    .unwrap();
    let issuer = format!("{idp_base}/realms/platform");
    testkit::wait_for_http(
        &format!("{issuer}/.well-known/openid-configuration"),
        Duration::from_secs(30),
    )
    .await
    .unwrap();

    let inventory_args = ["--database-url", inventory_db.url.as_str()];
    let product_env = [("PRODUCT_DB_URL", products_url.as_str())];
    let (inventory, product, gateway) = tokio::join!(
        start(
            "inventory-service",
            &registry,
            &issuer,
            &inventory_args,
            &[]
        ),
        start("product-service", &registry, &issuer, &[], &product_env),
        start("api-gateway", &registry, &issuer, &[], &[]),
    );
    let order = start(
        "order-service",
        &registry,
        &issuer,
        &[
            "--database-url",
            &orders_db.url,
            "--kafka-bootstrap-servers",
            &bootstrap,
            "--client-secret",
            ORDER_SERVICE_SECRET,
        ],
        &[],
    )
    .await;
    // After order-service, which creates the topic.
    let notification = start(
        "notification-service",
        &registry,
        &issuer,
        &[
            "--database-url",
            &notifications_db.url,
            "--kafka-bootstrap-servers",
            &bootstrap,
        ],
        &[],
    )
    .await;
    let base_of = |service: &str| -> String {
        match service {
            "api-gateway" => gateway.1.clone(),
            "product-service" => product.1.clone(),
            "order-service" => order.1.clone(),
            "inventory-service" => inventory.1.clone(),
            "notification-service" => notification.1.clone(),
            "identity-provider" => idp_base.clone(),
            "discovery-server" => registry_base.clone(),
            other => panic!("no service {other}"),
        }
    };
    let gw = gateway.1.clone();

    let c = client();
    let alice = password(&c, &issuer, "alice", "alice").await;
    let bob = password(&c, &issuer, "bob", "bob-password").await;
    let admin = password(&c, &issuer, "admin", "admin").await;
    let service = token(
        &c,
        &issuer,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "order-service"),
            ("client_secret", ORDER_SERVICE_SECRET),
        ],
    )
    .await;
    let tokens: [Option<&str>; 5] = [None, Some(&alice), Some(&bob), Some(&admin), Some(&service)];

    // The gateway finds every upstream in the registry.
    for probe in [
        "/api/product",
        "/api/order",
        "/api/inventory/none",
        "/api/notifications",
    ] {
        testkit::eventually(
            &format!("the gateway routing {probe}"),
            Duration::from_secs(30),
            || {
                let c = c.clone();
                let url = format!("{gw}{probe}");
                let admin = admin.clone();
                async move {
                    let res = c.get(&url).bearer_auth(&admin).send().await.ok()?;
                    (res.status() != StatusCode::SERVICE_UNAVAILABLE).then_some(())
                }
            },
        )
        .await;
    }

    // Fixture: two products (one to delete), stock, an order of alice and its notification.
    let sku = "matrix-phone".to_string();
    let mut ids = Vec::new();
    for s in [sku.as_str(), "matrix-doomed"] {
        let res = call(
            &c,
            Method::POST,
            &format!("{gw}/api/product"),
            Some(&admin),
            Some(&json!({"skuCode": s, "name": s, "price": "19.99"})),
        )
        .await;
        assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
        let p: Value = res.json().await.unwrap();
        ids.push(p["id"].as_str().unwrap().to_string());
    }
    let res = call(
        &c,
        Method::PUT,
        &format!("{}/admin/inventory/{sku}", base_of("inventory-service")),
        Some(&admin),
        Some(&json!({"quantity": 100})),
    )
    .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let res = call(
        &c,
        Method::POST,
        &format!("{gw}/api/order"),
        Some(&alice),
        Some(&json!({"lines": [{"skuCode": sku, "price": "19.99", "quantity": 1}]})),
    )
    .await;
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let placed: Value = res.json().await.unwrap();
    let alice_order = placed["orderNumber"].as_str().unwrap().to_string();
    let alice_shop = e2e::shop::Shop::new(&gw, &alice).unwrap();
    let alice_notification =
        testkit::eventually("alice's notification", Duration::from_secs(60), || {
            alice_shop.notification_id(&alice_order)
        })
        .await;
    let fixture = Fixture {
        product_id: ids[0].clone(),
        doomed_product_id: ids[1].clone(),
        sku: sku.clone(),
        alice_order: alice_order.clone(),
        alice_notification,
    };

    // The matrix.
    let rows = matrix(&fixture);
    let mut failures = Vec::new();
    for r in &rows {
        let base = match r.target {
            Target::Gateway(_) => gw.clone(),
            Target::Direct(service) => base_of(service),
        };
        let url = format!("{base}{}", r.path);
        for (i, who) in PRINCIPALS.iter().enumerate() {
            let res = call(&c, r.method.clone(), &url, tokens[i], r.body.as_ref()).await;
            let status = res.status().as_u16();
            let content_type = res
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let text = res.text().await.unwrap_or_default();
            if status != r.expect[i] {
                failures.push(format!(
                    "{:?} {} {} as {who}: {status}, expected {}: {}",
                    r.target,
                    r.method,
                    r.path,
                    r.expect[i],
                    text.chars().take(200).collect::<String>()
                ));
            } else if status >= 400 && !content_type.starts_with("application/problem+json") {
                failures.push(format!(
                    "{:?} {} {} as {who}: {status} with content type `{content_type}`, not problem+json",
                    r.target, r.method, r.path
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} checks failed:\n{}",
        failures.len(),
        rows.len() * PRINCIPALS.len(),
        failures.join("\n")
    );

    // What the 200s of the listings contain: each user their own, the admin everyone's.
    let list = |path: &'static str, token: String| {
        let c = c.clone();
        let url = format!("{gw}{path}");
        async move {
            let v: Value = c
                .get(&url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| {
                    o["customer"]["name"]
                        .as_str()
                        .or(o["customerId"].as_str())
                        .unwrap_or_default()
                        .to_string()
                })
                .collect::<Vec<_>>()
        }
    };
    let alices = list("/api/order?size=100", alice.clone()).await;
    assert!(
        alices.iter().all(|n| n == "alice") && alices.len() == 2,
        "{alices:?}"
    );
    let bobs = list("/api/order?size=100", bob.clone()).await;
    assert!(
        bobs.iter().all(|n| n == "bob") && bobs.len() == 1,
        "{bobs:?}"
    );
    let all = list("/api/order?size=100", admin.clone()).await;
    assert_eq!(
        all.len(),
        5,
        "alice 2, bob 1, admin 1, service account 1: {all:?}"
    );
    let alice_notes = list("/api/notifications?size=100", alice.clone()).await;
    assert!(
        alice_notes
            .iter()
            .all(|id| id == "5b0f5f4e-2f1c-4a5e-9d65-3f0d6f1c1a01"),
        "{alice_notes:?}"
    );
}
