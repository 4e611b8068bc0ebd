//! Security at the edge: the rejection matrix through the gateway, and a
//! key rotation under load.
//!
//! The issuer here is a stand-in serving OIDC discovery and a JWKS whose
//! keys the test controls, so that every forged and broken token can be
//! made. The kit tests the validator's own matrix; this one proves the
//! gateway answers each case with the right status and challenge, and that
//! nothing rejected reaches an upstream.

use std::time::Duration;

use echo_upstream::Echo;
use jsonwebtoken::{Algorithm, EncodingKey};
use kit::clock::Clock;
use serde_json::{Value, json};

use crate::helpers::*;

const ROUTES: &str = r#"
[[routes]]
id = "orders"
uri = "lb://order-service"
predicates = ["Path=/api/order/**"]
roles = ["user"]

[[routes]]
id = "ops"
uri = "lb://order-service"
predicates = ["Path=/api/ops/**"]
roles = ["admin"]

[[routes]]
id = "catalog"
uri = "lb://order-service"
predicates = ["Path=/api/catalog/**"]
public = true
"#;

struct Edge {
    gw: Gateway,
    /// The gateway's validator (shared, so its key cache can be inspected).
    validator: kit::auth::JwtValidator,
    issuer: Issuer,
    clock: Clock,
    _registry: Registry,
    _up: Upstream,
}

async fn edge(keys: &[&TestKey]) -> Edge {
    let registry = Registry::start().await;
    let up = registry.echo("order-service", "orders-0").await;
    let issuer = Issuer::start(keys).await;
    let clock = Clock::manual(now_secs() as u64 * 1000);
    let validator = issuer.validator(Some("platform-api"), clock.clone());
    let gw = Gateway::protected(ROUTES, &registry, validator.clone()).await;
    gw.wait_for_instances("order-service", 1).await;
    Edge {
        gw,
        validator,
        issuer,
        clock,
        _registry: registry,
        _up: up,
    }
}

fn upstream_requests(gw: &Gateway) -> u64 {
    gw.gateway
        .balancer("order-service")
        .unwrap()
        .status()
        .iter()
        .map(|s| s.requests)
        .sum()
}

/// What a case expects: the status and the `error` in the challenge.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// 401 with a bare `Bearer realm="platform"` challenge.
    NoToken,
    /// 401 with `error="invalid_token"`.
    Invalid,
    /// 403 with `error="insufficient_scope"`.
    Forbidden,
}

/// At least 15 bad tokens, each answered 401/403 with the right
/// `WWW-Authenticate` and a problem body, none reaching the upstream; a
/// good token passes and is relayed unchanged; public routes ignore tokens.
#[tokio::test]
async fn rejection_matrix_at_the_edge() {
    let a = key_a();
    let b = key_b();
    let other = key_other();
    let e = edge(&[&a]).await;
    let now = (e.clock.now_millis() / 1000) as i64;
    let good_claims = e.issuer.claims(now, &["user"]);
    let good = a.sign(&good_claims);
    let with = |patch: Value| {
        let mut c = good_claims.clone();
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let (h, p, _) = {
        let mut parts = good.split('.');
        (
            parts.next().unwrap().to_string(),
            parts.next().unwrap().to_string(),
            parts.next().unwrap().to_string(),
        )
    };
    let sig = good.rsplit('.').next().unwrap().to_string();
    let tampered_payload =
        b64(with(json!({"realm_access": {"roles": ["user", "admin"]}})).to_string());
    let hs256 = sign_with(
        &json!({"alg": "HS256", "typ": "JWT", "kid": "key-a"}),
        &good_claims,
        &EncodingKey::from_secret(include_bytes!("keys/rsa-a.pub.pem")),
        Algorithm::HS256,
    );
    let bad_sig = sign_with(
        &json!({"alg": "RS256", "typ": "JWT", "kid": "key-a"}),
        &good_claims,
        &b.key,
        Algorithm::RS256,
    );
    let other_realm = format!("{}/realms/other", e.issuer.base);
    let bearer = |token: String| Some(format!("Bearer {token}"));
    let cases: Vec<(&str, Option<String>, &str, Expect)> = vec![
        (
            "no Authorization header",
            None,
            "/api/order/1",
            Expect::NoToken,
        ),
        (
            "Basic credentials",
            Some("Basic dXNlcjpwYXNz".into()),
            "/api/order/1",
            Expect::NoToken,
        ),
        (
            "empty bearer",
            Some("Bearer ".into()),
            "/api/order/1",
            Expect::Invalid,
        ),
        (
            "not a JWT",
            Some("Bearer not-a-jwt".into()),
            "/api/order/1",
            Expect::Invalid,
        ),
        (
            "three garbage parts",
            Some("Bearer a.b.c".into()),
            "/api/order/1",
            Expect::Invalid,
        ),
        (
            "expired",
            bearer(a.sign(&with(json!({"exp": now - 3600, "iat": now - 7200})))),
            "/api/order/1",
            Expect::Invalid,
        ),
        (
            "not yet valid",
            bearer(a.sign(&with(json!({"nbf": now + 3600})))),
            "/api/order/1",
            Expect::Invalid,
        ),
        (
            "wrong issuer",
            bearer(a.sign(&with(json!({"iss": "http://evil.example/realms/platform"})))),
            "/api/order/1",
            Expect::Invalid,
        ),
        (
            "wrong audience",
            bearer(a.sign(&with(json!({"aud": "other-api", "azp": "other-client"})))),
            "/api/order/1",
            Expect::Invalid,
        ),
        (
            "alg none",
            bearer(format!(
                "{}.{p}.",
                b64(json!({"alg": "none", "kid": "key-a"}).to_string())
            )),
            "/api/order/1",
            Expect::Invalid,
        ),
        (
            "HS256 signed with the public key",
            bearer(hs256),
            "/api/order/1",
            Expect::Invalid,
        ),
        (
            "unknown kid",
            bearer(sign_with(
                &json!({"alg": "RS256", "kid": "key-zzz"}),
                &good_claims,
                &a.key,
                Algorithm::RS256,
            )),
            "/api/order/1",
            Expect::Invalid,
        ),
        (
            "missing kid",
            bearer(sign_with(
                &json!({"alg": "RS256"}),
                &good_claims,
                &a.key,
                Algorithm::RS256,
            )),
            "/api/order/1",
            Expect::Invalid,
        ),
        (
            "tampered payload",
            bearer(format!("{h}.{tampered_payload}.{sig}")),
            "/api/order/1",
            Expect::Invalid,
        ),
        (
            "bad signature (another key, same kid)",
            bearer(bad_sig),
            "/api/order/1",
            Expect::Invalid,
        ),
        (
            "token of another realm, its own key",
            bearer(other.sign(&with(json!({"iss": other_realm})))),
            "/api/order/1",
            Expect::Invalid,
        ),
        (
            "token of another realm, our key",
            bearer(a.sign(&with(json!({"iss": other_realm})))),
            "/api/order/1",
            Expect::Invalid,
        ),
        (
            "refresh token instead of access token",
            bearer(a.sign(&with(json!({"typ": "Refresh"})))),
            "/api/order/1",
            Expect::Invalid,
        ),
        (
            "oversized token",
            bearer(format!("{h}.{}.{sig}", "A".repeat(20_000))),
            "/api/order/1",
            Expect::Invalid,
        ),
        (
            "missing role",
            bearer(a.sign(&with(json!({"realm_access": {"roles": []}})))),
            "/api/order/1",
            Expect::Forbidden,
        ),
        (
            "role of another route",
            bearer(good.clone()),
            "/api/ops/1",
            Expect::Forbidden,
        ),
    ];
    assert!(cases.len() >= 15);
    let c = client();
    for (name, auth, path, expect) in &cases {
        let before = upstream_requests(&e.gw);
        let mut req = c.get(e.gw.url(path));
        if let Some(v) = auth {
            req = req.header("authorization", v.as_str());
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let challenge = res
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let content_type = res.headers()["content-type"].to_str().unwrap().to_string();
        let body: Value = res.json().await.unwrap();
        match expect {
            Expect::NoToken => {
                assert_eq!(status, 401, "{name}");
                assert_eq!(challenge, "Bearer realm=\"platform\"", "{name}");
            }
            Expect::Invalid => {
                assert_eq!(status, 401, "{name}: {body}");
                assert!(
                    challenge.starts_with(
                        "Bearer realm=\"platform\", error=\"invalid_token\", error_description=\""
                    ),
                    "{name}: {challenge}"
                );
            }
            Expect::Forbidden => {
                assert_eq!(status, 403, "{name}: {body}");
                assert!(
                    challenge.contains("error=\"insufficient_scope\""),
                    "{name}: {challenge}"
                );
            }
        }
        assert_eq!(content_type, "application/problem+json", "{name}");
        assert_eq!(body["status"], status, "{name}");
        assert_eq!(
            upstream_requests(&e.gw),
            before,
            "{name} reached the upstream"
        );
    }

    // The good token passes and reaches the upstream unchanged.
    let res = c
        .get(e.gw.url("/api/order/1"))
        .bearer_auth(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let echo: Echo = res.json().await.unwrap();
    assert_eq!(echo.headers["authorization"], [format!("Bearer {good}")]);
    // A public route does not look at tokens at all.
    assert_eq!(
        status(&c, &e.gw.url("/api/catalog/1"), Some("garbage")).await,
        200
    );
    // Admin endpoints now need a JWT with the admin role.
    assert_eq!(
        status(&c, &e.gw.url("/admin/routes"), Some(&good)).await,
        403
    );
    let admin = a.sign(&with(json!({"realm_access": {"roles": ["admin"]}})));
    assert_eq!(
        status(&c, &e.gw.url("/admin/routes"), Some(&admin)).await,
        200
    );
}

/// The issuer publishes a new key, then signs with it, then withdraws the
/// old one, while requests keep flowing: none fails.
#[tokio::test]
async fn key_rotation_under_load_without_a_failed_request() {
    let a = key_a();
    let b = key_b();
    let e = edge(&[&a]).await;
    let now = (e.clock.now_millis() / 1000) as i64;
    let load = TokenLoad::start(
        e.gw.url("/api/order/1"),
        a.sign(&e.issuer.claims(now, &["user"])),
    );
    let phase = Duration::from_millis(300);
    tokio::time::sleep(phase).await;
    // 1. The new key is published next to the old one.
    e.issuer.publish(&[&a, &b]);
    // The validator refetches on an unknown kid at most every 5 s; rotation
    // happens long after the gateway's first fetch in real life.
    e.clock.advance(Duration::from_secs(6));
    tokio::time::sleep(phase).await;
    // 2. Tokens are signed with the new key.
    let now = (e.clock.now_millis() / 1000) as i64;
    load.set_token(b.sign(&e.issuer.claims(now, &["user"])));
    tokio::time::sleep(phase).await;
    // 3. The old key is withdrawn.
    e.issuer.publish(&[&b]);
    tokio::time::sleep(phase).await;
    load.finish().await;
    let keys = e.validator.keys();
    assert!(keys.kids().contains(&"key-b".to_string()), "{keys:?}");
    assert!(
        keys.fetch_count() >= 2,
        "the new kid caused a fetch: {keys:?}"
    );
}
