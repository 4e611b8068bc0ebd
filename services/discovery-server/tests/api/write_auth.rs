//! Registry writes behind HTTP Basic (`REGISTRY_USERNAME`/`REGISTRY_PASSWORD`), as Spring Cloud
//! users close Eureka: every write needs the credentials, reads stay open, and clients that put
//! them in the registry URL's userinfo (the kit, as Spring's defaultZone) keep working.

use std::time::Duration;

use kit::config::ServiceSpec;
use kit::registry::model::InstanceEnvelope;
use reqwest::{Method, RequestBuilder};
use secrecy::SecretString;

use crate::helpers::{KitInstance, TestApp, eventually, instance, spec};

static LOCKED_ECHO: ServiceSpec = spec("locked-echo");

const USER: &str = "eureka";
const PASSWORD: &str = "registry-secret";

/// A registry whose writes need [`USER`]/[`PASSWORD`].
async fn locked() -> TestApp {
    TestApp::start_with(kit::clock::Clock::System, |c| {
        c.common.registry_username = Some(USER.into());
        c.common.registry_password = Some(SecretString::from(PASSWORD));
    })
    .await
}

/// Every write of the Eureka API (and its `/eureka/v2` alias), in an order that succeeds
/// when each is allowed: register, renew, status override, metadata, override removal, cancel.
fn writes(app: &TestApp) -> Vec<(Method, String)> {
    let mut all = Vec::new();
    for prefix in ["", "v2/"] {
        let one = |p: &str| app.eureka(&format!("{prefix}{p}"));
        all.extend([
            (Method::POST, one("apps/LOCKED")),
            (Method::PUT, one("apps/LOCKED/locked-1?status=UP")),
            (
                Method::PUT,
                one("apps/LOCKED/locked-1/status?value=OUT_OF_SERVICE"),
            ),
            (Method::PUT, one("apps/LOCKED/locked-1/metadata?zone=a")),
            (Method::DELETE, one("apps/LOCKED/locked-1/status?value=UP")),
            (Method::DELETE, one("apps/LOCKED/locked-1")),
        ]);
    }
    all
}

fn request(app: &TestApp, method: &Method, url: &str) -> RequestBuilder {
    let req = app.http.request(method.clone(), url);
    if *method == Method::POST {
        req.json(&InstanceEnvelope {
            instance: instance("LOCKED", "locked-1", 9001),
        })
    } else {
        req
    }
}

/// With credentials configured, each write without them, with a wrong password, a wrong user or
/// another scheme gets 401 problem+json with a Basic challenge and changes nothing; with them,
/// each gets Eureka's status (204 register, 200 the rest).
#[tokio::test]
async fn writes_need_the_credentials() {
    let app = locked().await;
    for (method, url) in writes(&app) {
        for (who, authz) in [
            ("nobody", None),
            ("a wrong password", Some((USER, "registry-secreT"))),
            ("a wrong user", Some(("eurekA", PASSWORD))),
            ("an empty password", Some((USER, ""))),
        ] {
            let mut req = request(&app, &method, &url);
            if let Some((u, p)) = authz {
                req = req.basic_auth(u, Some(p));
            }
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 401, "{method} {url} with {who}");
            assert_eq!(
                res.headers()["www-authenticate"],
                "Basic realm=\"eureka\", charset=\"UTF-8\"",
                "{method} {url}"
            );
            assert_eq!(res.headers()["content-type"], "application/problem+json");
            let body: serde_json::Value = res.json().await.unwrap();
            assert_eq!(body["status"], 401, "{body}");
        }
        let res = request(&app, &method, &url)
            .bearer_auth("not-a-jwt")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{method} {url} with a bearer token");
        assert_eq!(app.instance_count(), 0, "{method} {url} changed nothing");
    }

    let expected = [204, 200, 200, 200, 200, 200];
    for ((method, url), want) in writes(&app).into_iter().zip(expected.iter().cycle()) {
        let res = request(&app, &method, &url)
            .basic_auth(USER, Some(PASSWORD))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        assert_eq!(
            status,
            *want,
            "{method} {url}: {}",
            res.text().await.unwrap()
        );
    }
    assert_eq!(app.instance_count(), 0, "registered, then cancelled");
    app.stop().await;
}

/// Reads stay open (Eureka's reads, the watch, the status page, health and metrics), with or
/// without credentials, even wrong ones.
#[tokio::test]
async fn reads_stay_open() {
    let app = locked().await;
    let res = request(&app, &Method::POST, &app.eureka("apps/LOCKED"))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    for path in [
        app.eureka("apps"),
        app.eureka("apps/delta"),
        app.eureka("apps/LOCKED"),
        app.eureka("apps/LOCKED/locked-1"),
        app.eureka("instances/locked-1"),
        app.eureka("vips/locked"),
        app.eureka("watch?since=0&timeoutSecs=1"),
        app.eureka("v2/apps"),
        format!("{}/", app.url),
        format!("{}/metrics", app.url),
        format!("{}/health/ready", app.url),
    ] {
        let res = app.http.get(&path).send().await.unwrap();
        assert_eq!(res.status(), 200, "GET {path}");
        let res = app
            .http
            .get(&path)
            .basic_auth(USER, Some("wrong"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "GET {path} with wrong credentials");
    }
    app.stop().await;
}

/// Without credentials configured, writes are open as in Eureka (the default).
#[tokio::test]
async fn writes_open_by_default() {
    let app = TestApp::system().await;
    assert!(app.state.write_auth.is_none());
    app.register(&instance("OPEN", "open-1", 9002)).await;
    assert_eq!(app.renew("OPEN", "open-1").await, 200);
    app.stop().await;
}

/// A kit service with the credentials in its registry URL's userinfo (Spring's defaultZone form)
/// registers, renews and deregisters; one without stays out.
#[tokio::test]
async fn kit_clients_with_credentials_in_the_url() {
    let app = locked().await;
    let port = app.port;
    let with_url = KitInstance::start(
        &LOCKED_ECHO,
        &format!("http://{USER}:{PASSWORD}@127.0.0.1:{port}"),
        Duration::from_millis(200),
    )
    .await;
    let without = KitInstance::start(
        &LOCKED_ECHO,
        &format!("http://127.0.0.1:{port}"),
        Duration::from_millis(200),
    )
    .await;
    eventually(
        "the instance with credentials to register",
        Duration::from_secs(5),
        || async { app.instance_count() == 1 },
    )
    .await;
    let registered = app.apps().await.applications.instances().next().cloned();
    assert_eq!(
        registered.map(|i| i.instance_id),
        Some(with_url.instance_id.clone()),
        "only the instance with credentials is registered"
    );
    // Renewals keep it past several lease durations (600 ms).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(app.instance_count(), 1);
    with_url.stop().await;
    eventually(
        "the instance to deregister",
        Duration::from_secs(5),
        || async { app.instance_count() == 0 },
    )
    .await;
    without.stop().await;
    app.stop().await;
}
