//! Tests of the JWT validator through the route guard: the rejection
//! matrix, key caching and refresh, discovery over HTTP, and admin auth.
//!
//! Tokens are built by hand here (header, claims, signature) so that every
//! malformed and forged variant can be expressed; the keys are fixed test
//! keys in `testdata/`. The identity-provider crate tests the same
//! validator against real tokens of a running provider.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::routing::get;
use base64::Engine;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use parking_lot::RwLock;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;
use crate::clock::Clock;

const ISSUER: &str = "http://idp.test:8180/realms/platform";
const OTHER_ISSUER: &str = "http://idp.test:8180/realms/other";
/// 2030-01-01T00:00:00Z: the tests' "now" (manual clock).
const NOW: i64 = 1_893_456_000;

fn b64(bytes: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A signing key of a test issuer, with its public JWK.
struct TestKey {
    kid: &'static str,
    alg: Algorithm,
    key: EncodingKey,
    jwk: Value,
}

impl TestKey {
    fn rsa(kid: &'static str, pem: &str) -> TestKey {
        let key = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
        TestKey::with(kid, Algorithm::RS256, key)
    }

    fn ec(kid: &'static str, pem: &str) -> TestKey {
        let key = EncodingKey::from_ec_pem(pem.as_bytes()).unwrap();
        TestKey::with(kid, Algorithm::ES256, key)
    }

    fn with(kid: &'static str, alg: Algorithm, key: EncodingKey) -> TestKey {
        let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&key, alg).unwrap()).unwrap();
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        TestKey { kid, alg, key, jwk }
    }

    /// Signs `claims` with this key under a normal header.
    fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": format!("{:?}", self.alg), "typ": "JWT", "kid": self.kid});
        sign_with(&header, claims, &self.key, self.alg)
    }
}

fn sign_with(header: &Value, claims: &Value, key: &EncodingKey, alg: Algorithm) -> String {
    let message = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).unwrap();
    format!("{message}.{sig}")
}

fn key_a() -> TestKey {
    TestKey::rsa("key-a", include_str!("testdata/rsa-a.pem"))
}
fn key_b() -> TestKey {
    TestKey::rsa("key-b", include_str!("testdata/rsa-b.pem"))
}
fn key_other() -> TestKey {
    TestKey::rsa("key-other", include_str!("testdata/rsa-other.pem"))
}
fn key_ec() -> TestKey {
    TestKey::ec("key-ec", include_str!("testdata/ec-a.pem"))
}

/// Claims shaped like a Keycloak access token for `alice` with role `user`.
fn access_claims() -> Value {
    json!({
        "exp": NOW + 300, "iat": NOW - 10, "jti": "0b6c7e1a-1", "iss": ISSUER,
        "aud": "platform-api", "sub": "7d2b3c1e-alice", "typ": "Bearer", "azp": "platform-cli",
        "sid": "s-1", "acr": "1", "realm_access": {"roles": ["user"]}, "scope": "profile email",
        "preferred_username": "alice", "email": "alice@example.com"
    })
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

/// A JWKS served from memory: swappable, countable, breakable.
#[derive(Default)]
struct MemorySource {
    jwks: RwLock<Value>,
    calls: AtomicU64,
    failing: AtomicBool,
    /// Each fetch waits this long, so concurrent misses overlap.
    delay_ms: AtomicU64,
}

impl MemorySource {
    fn with_keys(keys: &[&TestKey]) -> Arc<MemorySource> {
        let s = Arc::new(MemorySource::default());
        s.set_keys(keys);
        s
    }

    fn set_keys(&self, keys: &[&TestKey]) {
        *self.jwks.write() =
            json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
    }
}

#[async_trait::async_trait]
impl KeySource for MemorySource {
    async fn fetch_jwks(&self) -> Result<Value, String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if self.failing.load(Ordering::SeqCst) {
            return Err("connection refused".into());
        }
        Ok(self.jwks.read().clone())
    }
}

fn validator(source: Arc<MemorySource>, clock: &Clock) -> JwtValidator {
    let config = ValidatorConfig::new(ISSUER).audiences(["platform-api"]);
    JwtValidator::new(config, source, clock.clone())
}

/// A router whose `/orders` requires the `user` role and echoes the subject.
fn app(validator: JwtValidator) -> Router {
    Router::new()
        .route(
            "/orders",
            get(|auth: Authenticated| async move { auth.claims.sub.clone().unwrap_or_default() }),
        )
        .route_layer(from_fn_with_state(
            RequireRoles::new(validator, ["user"]),
            require_roles,
        ))
}

/// Status, WWW-Authenticate and body of one request with `authorization`.
async fn call(app: &Router, authorization: Option<&str>) -> (StatusCode, String, Value) {
    let mut req = Request::get("/orders");
    if let Some(a) = authorization {
        req = req.header(header::AUTHORIZATION, a);
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let challenge = res
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, challenge, body)
}

/// One row of the rejection matrix.
struct Case {
    /// What the row proves.
    doc: &'static str,
    authorization: Option<String>,
    status: u16,
    /// A fragment the `WWW-Authenticate` header must contain ("" = none expected).
    challenge: &'static str,
}

fn bearer(token: impl AsRef<str>) -> Option<String> {
    Some(format!("Bearer {}", token.as_ref()))
}

fn matrix() -> Vec<Case> {
    let a = key_a();
    let ec = key_ec();
    let other = key_other();
    let good = access_claims();
    let valid = a.sign(&good);
    let public_pem = include_str!("testdata/rsa-a.pub.pem");
    let (h, p, s) = {
        let mut it = valid.split('.');
        (
            it.next().unwrap().to_string(),
            it.next().unwrap().to_string(),
            it.next().unwrap().to_string(),
        )
    };
    let hs_header = json!({"alg": "HS256", "typ": "JWT", "kid": "key-a"});
    let none_header = b64(json!({"alg": "none", "typ": "JWT", "kid": "key-a"}).to_string());
    let tampered_payload = b64(with(
        good.clone(),
        "realm_access",
        json!({"roles": ["user", "admin"]}),
    )
    .to_string());
    let b_sig_under_a_kid = {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": "key-a"});
        sign_with(&header, &good, &key_b().key, Algorithm::RS256)
    };
    let inv = "error=\"invalid_token\"";
    vec![
        Case {
            doc: "control: a well-formed, current token with the role passes",
            authorization: bearer(&valid),
            status: 200,
            challenge: "",
        },
        Case {
            doc: "control: ES256 is on the allow-list",
            authorization: bearer(ec.sign(&good)),
            status: 200,
            challenge: "",
        },
        Case {
            doc: "control: expiry within the 60 s skew is tolerated",
            authorization: bearer(a.sign(&with(good.clone(), "exp", json!(NOW - 30)))),
            status: 200,
            challenge: "",
        },
        Case {
            doc: "control: an audience named only as azp is accepted, as Keycloak does",
            authorization: bearer(a.sign(&with(
                with(good.clone(), "aud", json!("account")),
                "azp",
                json!("platform-api"),
            ))),
            status: 200,
            challenge: "",
        },
        Case {
            doc: "expired well past the skew",
            authorization: bearer(a.sign(&with(good.clone(), "exp", json!(NOW - 3600)))),
            status: 401,
            challenge: "the token expired",
        },
        Case {
            doc: "expired just beyond the skew (61 s)",
            authorization: bearer(a.sign(&with(good.clone(), "exp", json!(NOW - 61)))),
            status: 401,
            challenge: "the token expired",
        },
        Case {
            doc: "not yet valid: nbf five minutes ahead",
            authorization: bearer(a.sign(&with(good.clone(), "nbf", json!(NOW + 300)))),
            status: 401,
            challenge: "not valid yet",
        },
        Case {
            doc: "issued in the future beyond the skew",
            authorization: bearer(a.sign(&with(good.clone(), "iat", json!(NOW + 120)))),
            status: 401,
            challenge: "not valid yet",
        },
        Case {
            doc: "wrong issuer, signed with a trusted key",
            authorization: bearer(a.sign(&with(
                good.clone(),
                "iss",
                json!("http://evil.test/realms/platform"),
            ))),
            status: 401,
            challenge: "expected issuer",
        },
        Case {
            doc: "wrong audience",
            authorization: bearer(a.sign(&with(
                with(good.clone(), "aud", json!(["other-api", "account"])),
                "azp",
                json!("other-cli"),
            ))),
            status: 401,
            challenge: "audience",
        },
        Case {
            doc: "no audience at all while one is required",
            authorization: bearer(a.sign(&without(with(good.clone(), "azp", json!("x")), "aud"))),
            status: 401,
            challenge: "audience",
        },
        Case {
            doc: "alg none with an empty signature",
            authorization: bearer(format!("{none_header}.{p}.")),
            status: 401,
            challenge: "algorithm none is not accepted",
        },
        Case {
            doc: "HS256 'signed' with the issuer's public key as HMAC secret",
            authorization: bearer(sign_with(
                &hs_header,
                &good,
                &EncodingKey::from_secret(public_pem.as_bytes()),
                Algorithm::HS256,
            )),
            status: 401,
            challenge: "algorithm HS256 is not accepted",
        },
        Case {
            doc: "PS256 is not on the allow-list",
            authorization: bearer(format!(
                "{}.{p}.{s}",
                b64(json!({"alg": "PS256", "kid": "key-a"}).to_string())
            )),
            status: 401,
            challenge: "algorithm PS256",
        },
        Case {
            doc: "unknown kid",
            authorization: bearer(sign_with(
                &json!({"alg": "RS256", "kid": "nobody"}),
                &good,
                &a.key,
                Algorithm::RS256,
            )),
            status: 401,
            challenge: "unknown key",
        },
        Case {
            doc: "no kid in the header",
            authorization: bearer(sign_with(
                &json!({"alg": "RS256"}),
                &good,
                &a.key,
                Algorithm::RS256,
            )),
            status: 401,
            challenge: "no key id",
        },
        Case {
            doc: "RS256 claimed for an EC key's kid",
            authorization: bearer(sign_with(
                &json!({"alg": "RS256", "kid": "key-ec"}),
                &good,
                &a.key,
                Algorithm::RS256,
            )),
            status: 401,
            challenge: "is for ES256",
        },
        Case {
            doc: "tampered payload (admin role added after signing)",
            authorization: bearer(format!("{h}.{tampered_payload}.{s}")),
            status: 401,
            challenge: "signature is not valid",
        },
        Case {
            doc: "bad signature: another key's signature under a trusted kid",
            authorization: bearer(b_sig_under_a_kid),
            status: 401,
            challenge: "signature is not valid",
        },
        Case {
            doc: "signature stripped",
            authorization: bearer(format!("{h}.{p}.")),
            status: 401,
            challenge: inv,
        },
        Case {
            doc: "missing role: valid token without `user`",
            authorization: bearer(a.sign(&with(
                good.clone(),
                "realm_access",
                json!({"roles": ["other"]}),
            ))),
            status: 403,
            challenge: "error=\"insufficient_scope\"",
        },
        Case {
            doc: "missing role: no realm_access at all",
            authorization: bearer(a.sign(&without(good.clone(), "realm_access"))),
            status: 403,
            challenge: "insufficient_scope",
        },
        Case {
            doc: "malformed header: base64 of something that is not JSON",
            authorization: bearer(format!("{}.{p}.{s}", b64("not json"))),
            status: 401,
            challenge: "header is not JSON",
        },
        Case {
            doc: "garbage: not base64 at all",
            authorization: bearer("!!!.@@@.###"),
            status: 401,
            challenge: "not base64url",
        },
        Case {
            doc: "only two parts",
            authorization: bearer(format!("{h}.{p}")),
            status: 401,
            challenge: "three dot-separated parts",
        },
        Case {
            doc: "empty bearer credential",
            authorization: Some("Bearer ".into()),
            status: 401,
            challenge: "the bearer token is empty",
        },
        Case {
            doc: "no Authorization header: a bare challenge, no error code (RFC 6750 §3.1)",
            authorization: None,
            status: 401,
            challenge: "Bearer realm=\"platform\"",
        },
        Case {
            doc: "Basic scheme counts as no bearer token",
            authorization: Some("Basic YWxpY2U6YWxpY2U=".into()),
            status: 401,
            challenge: "Bearer realm=\"platform\"",
        },
        Case {
            doc: "token of another realm, signed by that realm's key",
            authorization: bearer(other.sign(&with(good.clone(), "iss", json!(OTHER_ISSUER)))),
            status: 401,
            challenge: inv,
        },
        Case {
            doc: "refresh token presented as an access token",
            authorization: bearer(a.sign(&with(good.clone(), "typ", json!("Refresh")))),
            status: 401,
            challenge: "type Refresh",
        },
        Case {
            doc: "ID token presented as an access token",
            authorization: bearer(a.sign(&with(good.clone(), "typ", json!("ID")))),
            status: 401,
            challenge: "type ID",
        },
        Case {
            doc: "exp missing",
            authorization: bearer(a.sign(&without(good.clone(), "exp"))),
            status: 401,
            challenge: "malformed",
        },
        Case {
            doc: "exp of the wrong type",
            authorization: bearer(a.sign(&with(good.clone(), "exp", json!("tomorrow")))),
            status: 401,
            challenge: "malformed",
        },
        Case {
            doc: "an unknown critical header parameter",
            authorization: bearer(sign_with(
                &json!({"alg": "RS256", "kid": "key-a", "crit": ["exp"], "exp": 1}),
                &good,
                &a.key,
                Algorithm::RS256,
            )),
            status: 401,
            challenge: "critical",
        },
        Case {
            doc: "oversized token",
            authorization: bearer(format!("{h}.{}.{s}", "A".repeat(20_000))),
            status: 401,
            challenge: "larger than",
        },
    ]
}

/// Every row of the rejection matrix gets its expected status and challenge, and errors are problem+json.
#[tokio::test]
async fn rejection_matrix() {
    let clock = Clock::manual(NOW as u64 * 1000);
    let source = MemorySource::with_keys(&[&key_a(), &key_ec()]);
    let app = app(validator(source, &clock));
    let cases = matrix();
    // Pinned at its real size: a row that goes missing fails here, not silently.
    assert_eq!(cases.len(), 35, "rows of the matrix");
    assert_eq!(
        cases.iter().filter(|c| c.status != 200).count(),
        31,
        "rejections (the other 4 rows are controls that must pass)"
    );
    let mut failures = Vec::new();
    for case in &cases {
        let (status, challenge, body) = call(&app, case.authorization.as_deref()).await;
        let challenge_ok = if case.challenge.is_empty() {
            challenge.is_empty()
        } else {
            challenge.contains(case.challenge)
        };
        let body_ok = status == 200 || body["status"] == status.as_u16();
        if status != case.status || !challenge_ok || !body_ok {
            failures.push(format!(
                "{}: got {status} {challenge:?} {body}, want {} {:?}",
                case.doc, case.status, case.challenge
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A control token reaches the handler with its claims; missing-role answers list the role.
#[tokio::test]
async fn claims_reach_the_handler() {
    let clock = Clock::manual(NOW as u64 * 1000);
    let app = app(validator(MemorySource::with_keys(&[&key_a()]), &clock));
    let (status, _, body) = call(&app, bearer(key_a().sign(&access_claims())).as_deref()).await;
    assert_eq!((status.as_u16(), body), (200, json!("7d2b3c1e-alice")));
    let no_role = key_a().sign(&with(access_claims(), "realm_access", json!({"roles": []})));
    let (status, _, body) = call(&app, bearer(no_role).as_deref()).await;
    assert_eq!(status, 403);
    assert_eq!(body["missingRoles"], json!(["user"]));
    assert_eq!(
        body["type"],
        "https://platform.local/problems/insufficient-role"
    );
}

/// Unknown kids refresh at most once per interval, concurrent misses share one fetch, and cached keys need no I/O.
#[tokio::test]
async fn unknown_kid_refresh_is_rate_limited_and_coalesced() {
    let clock = Clock::manual(NOW as u64 * 1000);
    let source = MemorySource::with_keys(&[&key_a()]);
    source.delay_ms.store(50, Ordering::SeqCst);
    let v = validator(source.clone(), &clock);
    let good = key_a().sign(&access_claims());
    let forged = |i: usize| {
        sign_with(
            &json!({"alg": "RS256", "kid": format!("forged-{i}")}),
            &access_claims(),
            &key_a().key,
            Algorithm::RS256,
        )
    };

    // First use loads the keys: one fetch.
    v.validate(&good).await.unwrap();
    assert_eq!(source.calls.load(Ordering::SeqCst), 1);

    // 20 forged kids right after: the rate limit allows no fetch.
    let results = futures::future::join_all((0..20).map(|i| {
        let v = v.clone();
        let t = forged(i);
        async move { v.validate(&t).await }
    }))
    .await;
    assert!(results.iter().all(|r| matches!(
        r,
        Err(AuthError::InvalidToken(TokenRejection::UnknownKey(_)))
    )));
    assert_eq!(source.calls.load(Ordering::SeqCst), 1);

    // After the interval, 20 concurrent misses cause exactly one fetch.
    clock.advance(Duration::from_secs(6));
    let results = futures::future::join_all((0..20).map(|i| {
        let v = v.clone();
        let t = forged(i);
        async move { v.validate(&t).await }
    }))
    .await;
    assert!(results.iter().all(Result::is_err));
    assert_eq!(source.calls.load(Ordering::SeqCst), 2);

    // With the issuer down, cached keys still validate without any fetch.
    source.failing.store(true, Ordering::SeqCst);
    clock.advance(Duration::from_secs(60));
    for _ in 0..100 {
        v.validate(&good).await.unwrap();
    }
    assert_eq!(source.calls.load(Ordering::SeqCst), 2);
}

/// A key published later is picked up on its first use; a withdrawn key stops validating after a refresh.
#[tokio::test]
async fn rotation_by_unknown_kid_and_withdrawal() {
    let clock = Clock::manual(NOW as u64 * 1000);
    let source = MemorySource::with_keys(&[&key_a()]);
    let v = validator(source.clone(), &clock);
    let old = key_a().sign(&access_claims());
    let new = key_b().sign(&access_claims());
    v.validate(&old).await.unwrap();

    // The issuer publishes key-b; a token signed with it arrives after the interval.
    source.set_keys(&[&key_a(), &key_b()]);
    clock.advance(Duration::from_secs(5));
    v.validate(&new).await.unwrap();
    v.validate(&old).await.unwrap();
    assert_eq!(v.keys().kids(), ["key-a", "key-b"]);

    // key-a is withdrawn: after the next refresh its tokens fail.
    source.set_keys(&[&key_b()]);
    v.keys().refresh().await.unwrap();
    assert!(matches!(
        v.validate(&old).await,
        Err(AuthError::InvalidToken(TokenRejection::UnknownKey(_)))
    ));
}

/// Keys that were never loaded and cannot be fetched give 503, not a false 401.
#[tokio::test]
async fn unreachable_issuer_is_503() {
    let clock = Clock::manual(NOW as u64 * 1000);
    let source = MemorySource::with_keys(&[&key_a()]);
    source.failing.store(true, Ordering::SeqCst);
    let app = app(validator(source.clone(), &clock));
    let token = bearer(key_a().sign(&access_claims()));
    let (status, challenge, body) = call(&app, token.as_deref()).await;
    assert_eq!(status, 503);
    assert!(challenge.is_empty());
    assert_eq!(body["type"], "https://platform.local/problems/unavailable");
    // Within the rate-limit interval: still 503, without another fetch.
    let (status, _, _) = call(&app, token.as_deref()).await;
    assert_eq!(status, 503);
    assert_eq!(source.calls.load(Ordering::SeqCst), 1);
}

/// The background refresh loads keys at once and again every refresh interval.
#[tokio::test(start_paused = true)]
async fn keep_fresh_refreshes_periodically() {
    let clock = Clock::manual(NOW as u64 * 1000);
    let source = MemorySource::with_keys(&[&key_a()]);
    let config = ValidatorConfig::new(ISSUER).refresh_interval(Duration::from_secs(300));
    let v = JwtValidator::new(config, source.clone(), clock);
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(v.clone().keep_fresh(stop.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(source.calls.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert_eq!(source.calls.load(Ordering::SeqCst), 2);
    stop.cancel();
    task.await.unwrap();
}

/// Serves a discovery document and JWKS on a free loopback port; returns the issuer URL.
async fn serve_discovery(announced_issuer: Option<&str>, keys: Value) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let issuer = format!("{base}/realms/platform");
    let doc = json!({
        "issuer": announced_issuer.unwrap_or(&issuer),
        "jwks_uri": format!("{issuer}/protocol/openid-connect/certs"),
    });
    let app = Router::new()
        .route(
            "/realms/platform/.well-known/openid-configuration",
            get(move || async move { axum::Json(doc) }),
        )
        .route(
            "/realms/platform/protocol/openid-connect/certs",
            get(move || async move { axum::Json(keys) }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    issuer
}

/// Keys are found through the issuer's discovery document over HTTP.
#[tokio::test]
async fn discovery_over_http() {
    let keys = json!({"keys": [key_a().jwk]});
    let issuer = serve_discovery(None, keys).await;
    let clock = Clock::manual(NOW as u64 * 1000);
    let v = JwtValidator::discover(ValidatorConfig::new(&issuer), reqwest::Client::new(), clock);
    let token = key_a().sign(&with(access_claims(), "iss", json!(issuer)));
    let claims = v.validate(&token).await.unwrap();
    assert_eq!(claims.preferred_username.as_deref(), Some("alice"));
}

/// A discovery document announcing another issuer is not trusted.
#[tokio::test]
async fn discovery_issuer_mismatch_is_refused() {
    let keys = json!({"keys": [key_a().jwk]});
    let issuer = serve_discovery(Some("http://elsewhere/realms/platform"), keys).await;
    let clock = Clock::manual(NOW as u64 * 1000);
    let v = JwtValidator::discover(ValidatorConfig::new(&issuer), reqwest::Client::new(), clock);
    let token = key_a().sign(&with(access_claims(), "iss", json!(issuer)));
    match v.validate(&token).await {
        Err(AuthError::KeysUnavailable(e)) => assert!(e.contains("announces issuer"), "{e}"),
        other => panic!("{other:?}"),
    }
}

/// JWT admin auth lets only tokens with the admin role through; the token fallback still works.
#[tokio::test]
async fn admin_auth_variants() {
    let clock = Clock::manual(NOW as u64 * 1000);
    let v = validator(MemorySource::with_keys(&[&key_a()]), &clock);
    let admin = AdminAuth::Jwt(v);
    let app = |auth: AdminAuth| {
        Router::new()
            .route("/admin/x", get(|| async { "ok" }))
            .route_layer(from_fn_with_state(auth, require_admin))
    };
    let send = |app: Router, authz: Option<String>| async move {
        let mut req = Request::get("/admin/x");
        if let Some(a) = authz {
            req = req.header(header::AUTHORIZATION, a);
        }
        let res = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        res.status().as_u16()
    };
    let user = key_a().sign(&access_claims());
    let boss = key_a().sign(&with(
        access_claims(),
        "realm_access",
        json!({"roles": ["user", "admin"]}),
    ));
    assert_eq!(send(app(admin.clone()), bearer(&user)).await, 403);
    assert_eq!(send(app(admin.clone()), bearer(&boss)).await, 200);
    assert_eq!(send(app(admin.clone()), None).await, 401);

    let token = AdminAuth::Token(secrecy::SecretString::from("s3cret"));
    assert_eq!(send(app(token.clone()), bearer("s3cret")).await, 200);
    for bad in ["Bearer wrong", "Bearer ", "Basic s3cret", "s3cret"] {
        assert_eq!(
            send(app(token.clone()), Some(bad.into())).await,
            401,
            "{bad}"
        );
    }
    assert_ne!(
        secrecy::ExposeSecret::expose_secret(&generate_token()),
        secrecy::ExposeSecret::expose_secret(&generate_token())
    );
}
