//! The whole edge path of an order: a token from the identity provider, by
//! either grant, through the gateway's built-in routes, to the real
//! order-service (which checks the relayed token itself and reserves stock
//! at the real inventory-service through the registry).
//!
//! Everything is real and local: MariaDB and tansu from testkit, the
//! registry, identity provider, product-, inventory- and order-service
//! binaries as processes (`cargo build -p order-service -p inventory-service
//! -p product-service -p identity-provider -p discovery-server` first), the
//! gateway in-process.

use serde_json::{Value, json};

use crate::helpers::*;

/// Tokens of the client-credentials and password grants place orders
/// through the gateway's default routes; the order belongs to the token's
/// subject, stock goes down, and the order reads back through the gateway.
#[tokio::test]
async fn orders_placed_through_the_gateway() {
    let (db, kafka) = tokio::join!(testkit::MariaDb::start(), testkit::Broker::start());
    let db = db.expect("MariaDB starts");
    let kafka = kafka.expect("tansu starts");
    let orders_db = db.create_database("orders").await.unwrap();
    let inventory_db = db.create_database("inventory").await.unwrap();
    let registry = Registry::start().await;
    let idp = Idp::start().await;
    let (_inventory, inventory) = service(
        "inventory-service",
        &registry,
        &idp.issuer,
        &["--database-url", &inventory_db.url],
        &[],
    )
    .await;
    let products = tempfile::tempdir().unwrap();
    let products_url = format!("embedded:{}", products.path().join("products").display());
    let (_products, _) = service(
        "product-service",
        &registry,
        &idp.issuer,
        &[],
        &[("PRODUCT_DB_URL", products_url.as_str())],
    )
    .await;
    let bootstrap = kafka.bootstrap_servers();
    let (_orders, _) = service(
        "order-service",
        &registry,
        &idp.issuer,
        &[
            "--database-url",
            &orders_db.url,
            "--kafka-bootstrap-servers",
            &bootstrap,
            // Its service account reserves stock at inventory.
            "--client-secret",
            ORDER_SERVICE_SECRET,
        ],
        &[],
    )
    .await;
    let c = client();
    let admin = idp.password("admin", "admin").await;
    let res = c
        .put(format!("{inventory}/admin/inventory/phone"))
        .bearer_auth(&admin)
        .json(&json!({"quantity": 10}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());

    let issuer = idp.issuer.clone();
    let gw = Gateway::start_with(GatewaySetup {
        routes: api_gateway::routes_file::DEFAULT_ROUTES,
        registry: &registry,
        validator: None,
        adjust: Some(Box::new(move |cfg| {
            cfg.common.issuer_url = Some(issuer.parse().unwrap());
            cfg.common.admin_token = None;
        })),
    })
    .await;
    gw.wait_for_instances("order-service", 1).await;
    gw.wait_for_instances("inventory-service", 1).await;
    gw.wait_for_instances("product-service", 1).await;
    // The catalogue lists the phone at the price the orders carry (order-service checks it);
    // writing the catalogue is the admin's.
    let res = c
        .post(gw.url("/api/product"))
        .bearer_auth(&admin)
        .json(&json!({"skuCode": "phone", "name": "Phone", "price": "499.00"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());

    let machine = idp.client_credentials().await;
    let person = idp.password("alice", "alice").await;
    for (grant, token, username) in [
        (
            "client_credentials",
            &machine,
            "service-account-platform-service",
        ),
        ("password", &person, "alice"),
    ] {
        let res = c
            .post(gw.url("/api/order"))
            .bearer_auth(token)
            .json(&json!({"lines": [{"skuCode": "phone", "price": "499.00", "quantity": 1}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "{grant}: {}", res.text().await.unwrap());
        let order: Value = res.json().await.unwrap();
        assert_eq!(order["status"], "PLACED", "{grant}");
        assert_eq!(order["customer"]["name"], username, "{grant}: {order}");
        let number = order["orderNumber"].as_str().unwrap();
        let back: Value = get_json(&c, &gw.url(&format!("/api/order/{number}")), Some(token)).await;
        assert_eq!(back, order, "{grant}");
    }
    let stock: Value = get_json(&c, &gw.url("/api/inventory/phone"), Some(&person)).await;
    assert_eq!(stock["quantity"], 8, "{stock}");
    // Without a token the edge answers; order-service never sees the request.
    let res = c
        .post(gw.url("/api/order"))
        .json(&json!({"lines": [{"skuCode": "phone", "price": "499.00", "quantity": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}
