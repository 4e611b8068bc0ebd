//! The gateway with the real identity provider (the identity-provider
//! binary serving `keycloak/realm.json`): tokens of both grants pass the
//! edge and reach an upstream; a key rotation on the running provider
//! costs no request.
//!
//! Build it first: `cargo build -p identity-provider`.

use std::time::Duration;

use base64::Engine;
use echo_upstream::Echo;
use kit::clock::Clock;
use serde_json::Value;

use crate::helpers::*;

/// The `kid` in a token's header.
fn kid(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    serde_json::from_slice::<Value>(&bytes).unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_string()
}

const ROUTES: &str = r#"
[[routes]]
id = "orders"
uri = "lb://order-service"
predicates = ["Path=/api/order/**"]
roles = ["user"]
"#;

/// Tokens from the client-credentials, password and refresh-token grants
/// pass the gateway (validated through the provider's OIDC discovery, as
/// ISSUER_URL configures it) and reach the upstream with the token relayed;
/// admin endpoints take the provider's admin users only.
#[tokio::test]
async fn tokens_of_every_grant_pass_the_edge() {
    let registry = Registry::start().await;
    let idp = Idp::start().await;
    let _up = registry.echo("order-service", "orders-0").await;
    let issuer = idp.issuer.clone();
    let gw = Gateway::start_with(GatewaySetup {
        routes: ROUTES,
        registry: &registry,
        validator: None,
        adjust: Some(Box::new(move |c| {
            c.common.issuer_url = Some(issuer.parse().unwrap());
            c.common.admin_token = None;
        })),
    })
    .await;
    gw.wait_for_instances("order-service", 1).await;
    let c = client();

    let machine = idp.client_credentials().await;
    let person = idp
        .token(&[
            ("grant_type", "password"),
            ("client_id", "platform-cli"),
            ("username", "alice"),
            ("password", "alice"),
        ])
        .await;
    let refreshed = idp
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", "platform-cli"),
            ("refresh_token", person["refresh_token"].as_str().unwrap()),
        ])
        .await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let person = person["access_token"].as_str().unwrap().to_string();
    for (grant, token) in [
        ("client_credentials", &machine),
        ("password", &person),
        ("refresh_token", &refreshed),
    ] {
        let res = c
            .get(gw.url("/api/order/1"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{grant}");
        let e: Echo = res.json().await.unwrap();
        assert_eq!(
            e.headers["authorization"],
            [format!("Bearer {token}")],
            "{grant}"
        );
    }
    // The refresh token itself is not an access token.
    let res = c
        .get(gw.url("/api/order/1"))
        .bearer_auth(
            idp.token(&[
                ("grant_type", "password"),
                ("client_id", "platform-cli"),
                ("username", "alice"),
                ("password", "alice"),
            ])
            .await["refresh_token"]
                .as_str()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    assert_eq!(
        status(&c, &gw.url("/admin/routes"), Some(&person)).await,
        403,
        "alice is no admin"
    );
    let admin = idp.password("admin", "admin").await;
    assert_eq!(
        status(&c, &gw.url("/admin/routes"), Some(&admin)).await,
        200
    );
}

/// Keys rotate on the running provider (new key published, then signing)
/// while requests flow through the gateway: none fails, and the gateway
/// accepts tokens of the new key.
#[tokio::test]
async fn key_rotation_on_the_running_provider() {
    let registry = Registry::start().await;
    let idp = Idp::start().await;
    let _up = registry.echo("order-service", "orders-0").await;
    // The validator's unknown-kid refetch is rate-limited (5 s); its clock
    // is moved past that instead of waiting.
    let clock = Clock::manual(now_secs() as u64 * 1000);
    let validator = kit::auth::JwtValidator::discover(
        kit::auth::ValidatorConfig::new(&idp.issuer),
        reqwest::Client::new(),
        clock.clone(),
    );
    let gw = Gateway::protected(ROUTES, &registry, validator.clone()).await;
    gw.wait_for_instances("order-service", 1).await;

    let first = idp.password("alice", "alice").await;
    let old_kid = kid(&first);
    let load = TokenLoad::start(gw.url("/api/order/1"), first);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let admin = idp.password("admin", "admin").await;
    let res = client()
        .post(format!(
            "{}/admin/keys/rotate",
            idp.issuer.trim_end_matches("/realms/platform")
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202, "{}", res.text().await.unwrap());
    clock.advance(Duration::from_secs(6));
    // New tokens carry the new kid once the activation delay has passed.
    let mut fresh = idp.password("alice", "alice").await;
    for _ in 0..100 {
        if kid(&fresh) != old_kid {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        fresh = idp.password("alice", "alice").await;
    }
    let new_kid = kid(&fresh);
    assert_ne!(new_kid, old_kid, "the provider signs with the new key");
    load.set_token(fresh);
    tokio::time::sleep(Duration::from_millis(500)).await;
    load.finish().await;
    assert!(validator.keys().kids().contains(&new_kid));
}
