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

/// With an issuer configured, the customer is the token's subject, email and username; a bad token is 401; no token is anonymous.
#[tokio::test]
async fn customer_from_the_bearer_token() {
    let mut stack = Stack::dependencies().await;
    stack.start_inventory().await;
    stack.set_stock("phone", 10).await;
    let (idp, _idp) = identity_provider().await;
    let admin = login(&stack.http, &idp, "admin", "admin").await;
    stack.admin_auth = format!("Bearer {admin}");
    let mut config = stack.order_config();
    config.common.issuer_url = Some(format!("{idp}/realms/platform").parse().unwrap());
    stack.start_order(config).await;

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
