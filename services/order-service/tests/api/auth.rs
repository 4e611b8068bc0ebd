//! The customer of an order comes from the caller's validated token.

use std::time::Duration;

use identity_provider::AppState;
use identity_provider::keys::SigningKey;
use identity_provider::realm::Realm;
use kit::CommonArgs;
use kit::clock::Clock;
use serde_json::{Value, json};

use crate::{Running, Stack, line};

/// Starts the identity provider (the realm of `keycloak/realm.json`) in-process; returns its base URL.
async fn identity_provider() -> (String, Running) {
    let realm = Realm::load(&testkit::workspace_root().join("keycloak/realm.json")).unwrap();
    let key = tokio::task::spawn_blocking(SigningKey::generate)
        .await
        .unwrap()
        .unwrap();
    let state = AppState::new(realm, key, None, Duration::from_secs(10), Clock::System);
    let r = Running::start(&identity_provider::SPEC, CommonArgs::for_tests(None), |s| {
        identity_provider::serve(state, s)
    })
    .await
    .unwrap();
    (r.base().to_string(), r)
}

async fn login(http: &reqwest::Client, idp: &str, user: &str, password: &str) -> String {
    let v: Value = http
        .post(format!(
            "{idp}/realms/platform/protocol/openid-connect/token"
        ))
        .form(&[
            ("grant_type", "password"),
            ("client_id", "platform-cli"),
            ("username", user),
            ("password", password),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["access_token"].as_str().expect("a token").to_string()
}

/// Database, broker, registry, the identity provider, and inventory- and order-service both
/// checking its tokens; order-service reserves stock with its service account's token
/// (client credentials, the `service` role). `admin_auth` is an admin's JWT.
async fn stack_with_issuer() -> (Stack, String, Running) {
    let mut stack = Stack::dependencies().await;
    let (idp, idp_service) = identity_provider().await;
    let issuer = format!("{idp}/realms/platform");
    let admin = login(&stack.http, &idp, "admin", "admin").await;
    stack.admin_auth = format!("Bearer {admin}");
    let inventory_issuer = issuer.clone();
    stack
        .start_inventory_with(move |c| {
            c.common.issuer_url = Some(inventory_issuer.parse().unwrap());
            c.common.admin_token = None;
        })
        .await;
    stack.set_stock("phone", 10).await;
    let mut config = stack.order_config();
    config.common.issuer_url = Some(issuer.parse().unwrap());
    config.common.admin_token = None;
    config.client_secret = Some("order-service-secret".to_string().into());
    stack.start_order(config).await;
    (stack, idp, idp_service)
}

/// With an issuer configured, the customer is the token's subject, email and username; a bad token is 401; no token is anonymous.
#[tokio::test]
async fn customer_from_the_bearer_token() {
    let (stack, idp, _idp) = stack_with_issuer().await;

    let alice = login(&stack.http, &idp, "alice", "alice").await;
    let res = stack
        .http
        .post(stack.order_url("/api/order"))
        .bearer_auth(&alice)
        .json(&json!({"lines": [line("phone", "1", 1)]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body["customer"]["id"],
        "5b0f5f4e-2f1c-4a5e-9d65-3f0d6f1c1a01"
    );
    assert_eq!(body["customer"]["email"], "alice@example.com");
    assert_eq!(body["customer"]["name"], "alice");
    let stored: String = sqlx::query_scalar("SELECT customer_email FROM orders")
        .fetch_one(&stack.orders_db)
        .await
        .unwrap();
    assert_eq!(stored, "alice@example.com");

    let res = stack
        .http
        .post(stack.order_url("/api/order"))
        .bearer_auth("not-a-jwt")
        .json(&json!({"lines": [line("phone", "1", 1)]}))
        .send()
        .await
        .unwrap();
    assert!(res.headers().contains_key("www-authenticate"));
    crate::problem(res, 401).await;

    let (s, _, body) = stack.order(json!([line("phone", "1", 1)]), None).await;
    assert_eq!(s, 201);
    assert_eq!(body["customer"]["id"], "anonymous");
    assert_eq!(stack.count("orders").await, 2);
}

/// A user lists and reads only their own orders (someone else's is 404, as if it did not
/// exist); the admin role sees every order; without a token reading is 401.
#[tokio::test]
async fn users_see_only_their_own_orders() {
    let (stack, idp, _idp) = stack_with_issuer().await;
    let alice = login(&stack.http, &idp, "alice", "alice").await;
    let bob = login(&stack.http, &idp, "bob", "bob-password").await;
    let mut numbers = Vec::new();
    for token in [&alice, &bob] {
        let res = stack
            .http
            .post(stack.order_url("/api/order"))
            .bearer_auth(token)
            .json(&json!({"lines": [line("phone", "1", 1)]}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let body: Value = res.json().await.unwrap();
        numbers.push(body["orderNumber"].as_str().unwrap().to_string());
    }
    let list = |token: Option<String>| {
        let mut req = stack.http.get(stack.order_url("/api/order"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move { req.send().await.unwrap() }
    };
    let mine: Value = list(Some(alice.clone())).await.json().await.unwrap();
    assert_eq!(mine["total"], 1, "{mine}");
    assert_eq!(mine["items"][0]["orderNumber"], numbers[0].as_str());
    let admin = stack.admin_auth.trim_start_matches("Bearer ").to_string();
    let all: Value = list(Some(admin.clone())).await.json().await.unwrap();
    assert_eq!(all["total"], 2, "{all}");
    crate::problem(list(None).await, 401).await;

    // Bob cannot read Alice's order; Alice and the admin can.
    let read = |token: &str, number: &str| {
        stack
            .http
            .get(stack.order_url(&format!("/api/order/{number}")))
            .bearer_auth(token.to_string())
            .send()
    };
    crate::problem(read(&bob, &numbers[0]).await.unwrap(), 404).await;
    assert_eq!(read(&alice, &numbers[0]).await.unwrap().status(), 200);
    assert_eq!(read(&admin, &numbers[0]).await.unwrap().status(), 200);
    crate::problem(read(&alice, &numbers[1]).await.unwrap(), 404).await;
}
