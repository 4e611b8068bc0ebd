//! Key rotation on a running provider, watched by the kit's validator,
//! and the protection of the admin endpoints.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use kit::auth::{JwtValidator, ValidatorConfig};
use kit::clock::Clock;
use parking_lot::Mutex;
use serde_json::Value;

use crate::helpers::{Idp, Opts, header, real_now_millis};

async fn rotate(idp: &Idp, bearer: Option<&str>) -> reqwest::Response {
    let mut req = idp.http.post(format!("{}/admin/keys/rotate", idp.base));
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    req.send().await.unwrap()
}

/// Rotation under continuous validation: the new key is published before it signs, old and new tokens keep validating, no request fails.
#[tokio::test]
async fn rotation_without_a_failed_request() {
    // One manual clock for provider and validator: the activation delay and
    // the validator's 5 s refresh limit are crossed by advancing it.
    let clock = Clock::manual(real_now_millis());
    let idp = Arc::new(
        Idp::start_with(Opts {
            clock: clock.clone(),
            activation_delay: Duration::from_secs(10),
            ..Opts::default()
        })
        .await,
    );
    let validator = JwtValidator::discover(
        ValidatorConfig::new(&idp.issuer).audiences(["platform-api"]),
        reqwest::Client::new(),
        clock.clone(),
    );
    let old_kid = idp.state.keys().signing_key().kid.clone();

    // Load: fetch a fresh token, validate it and every token seen so far.
    let stop = Arc::new(AtomicBool::new(false));
    let validated = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let kids = Arc::new(Mutex::new(BTreeSet::<String>::new()));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (idp, v, stop, validated, failures, kids) = (
            idp.clone(),
            validator.clone(),
            stop.clone(),
            validated.clone(),
            failures.clone(),
            kids.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut seen: Vec<String> = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let t = idp.machine().await;
                let token = t["access_token"].as_str().unwrap().to_string();
                kids.lock()
                    .insert(header(&token)["kid"].as_str().unwrap().to_string());
                seen.push(token);
                if seen.len() > 20 {
                    seen.remove(0);
                }
                for tok in &seen {
                    match v.validate(tok).await {
                        Ok(_) => {
                            validated.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) => failures.lock().push(e.to_string()),
                    }
                }
            }
        }));
    }

    let settle = || tokio::time::sleep(Duration::from_millis(300));
    settle().await;
    let admin = idp.login("admin", "admin").await;
    let res = rotate(&idp, admin["access_token"].as_str()).await;
    assert_eq!(res.status(), 202);
    let status: Value = res.json().await.unwrap();
    assert_eq!(status["state"], "pending");
    let new_kid = status["kid"].as_str().unwrap().to_string();
    assert_ne!(new_kid, old_kid);

    // Published at once, not signing yet.
    let jwks: Value = idp
        .http
        .get(format!("{}/protocol/openid-connect/certs", idp.issuer))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    settle().await;
    assert_eq!(idp.state.keys().signing_key().kid, old_kid);

    // The delay passes: the new key signs, the old one stays published.
    clock.advance(Duration::from_secs(10));
    settle().await;
    settle().await;
    assert_eq!(idp.state.keys().signing_key().kid, new_kid);

    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    let failures = failures.lock().clone();
    assert!(
        failures.is_empty(),
        "{} failures: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        validated.load(Ordering::SeqCst) > 50,
        "too little load: {}",
        validated.load(Ordering::SeqCst)
    );
    assert_eq!(
        *kids.lock(),
        BTreeSet::from([old_kid.clone(), new_kid.clone()])
    );
    // The validator fetched the keys a handful of times, not per request.
    assert!(
        validator.keys().fetch_count() <= 3,
        "{}",
        validator.keys().fetch_count()
    );

    // Once every token of the old key has expired, it leaves the JWKS.
    clock.advance(Duration::from_secs(1800 + 61));
    let keys: Value = idp
        .http
        .get(format!("{}/admin/keys", idp.base))
        .bearer_auth(
            idp.login("admin", "admin").await["access_token"]
                .as_str()
                .unwrap(),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kids: Vec<&str> = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, [new_kid.as_str()]);
}

/// The admin endpoints need a token of this provider with the admin role.
#[tokio::test]
async fn admin_endpoints_need_the_admin_role() {
    let idp = Idp::start().await;
    let none = rotate(&idp, None).await;
    assert_eq!(none.status(), 401);
    assert_eq!(
        none.headers()["www-authenticate"],
        "Bearer realm=\"platform\""
    );
    let alice = idp.login("alice", "alice").await;
    let res = rotate(&idp, alice["access_token"].as_str()).await;
    assert_eq!(res.status(), 403);
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_scope")
    );
    // The shared test token of the fallback is not accepted: the provider uses its own keys.
    assert_eq!(rotate(&idp, Some("test-admin-token")).await.status(), 401);
    // A token from another provider instance (other keys) is refused.
    let other = Idp::start().await;
    let foreign = other.login("admin", "admin").await;
    assert_eq!(
        rotate(&idp, foreign["access_token"].as_str())
            .await
            .status(),
        401
    );
    // The machine client's service account has the admin role.
    let machine = idp.machine().await;
    assert_eq!(
        rotate(&idp, machine["access_token"].as_str())
            .await
            .status(),
        202
    );
}

/// Any kit service started with ISSUER_URL protects its /admin with the provider's tokens: admin role 200, user 403, none 401, and the shared token no longer works.
#[tokio::test]
async fn kit_service_admin_by_issuer_url() {
    let idp = Idp::start().await;
    let mut common = kit::CommonArgs::for_tests(None);
    common.issuer_url = Some(idp.issuer.parse().unwrap());
    common.jwt_audience = vec!["platform-api".into()];
    let spec = kit::ServiceSpec {
        name: "admin-probe",
        default_port: 0,
        version: "0",
        registers: false,
    };
    let service = kit::Service::bind(&spec, common).await.unwrap();
    assert!(service.jwt_validator().is_some());
    let base = format!("http://127.0.0.1:{}", service.port());
    let stop = service.shutdown_token();
    let admin = axum::Router::new().route(
        "/whoami",
        axum::routing::get(|auth: kit::auth::Authenticated| async move {
            auth.claims.preferred_username.clone().unwrap_or_default()
        }),
    );
    tokio::spawn(service.serve(axum::Router::new(), admin));

    let get = |bearer: Option<String>| {
        let mut req = idp.http.get(format!("{base}/admin/whoami"));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        req.send()
    };
    let admin_token = idp.login("admin", "admin").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let res = get(Some(admin_token)).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "admin");
    let alice = idp.login("alice", "alice").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(get(Some(alice)).await.unwrap().status(), 403);
    assert_eq!(get(None).await.unwrap().status(), 401);
    assert_eq!(
        get(Some("test-admin-token".into())).await.unwrap().status(),
        401
    );
    stop.cancel();
}
