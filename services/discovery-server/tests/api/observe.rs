//! What operators see: the status page, `/admin/registry` and `/metrics`.

use std::time::Duration;

use kit::registry::model::InstanceEnvelope;

use crate::helpers::{TestApp, instance};

/// The status page lists applications and instances with status, override and lease figures, and escapes what clients sent.
#[tokio::test]
async fn status_page() {
    let app = TestApp::manual().await;
    // Long leases, so that moving the clock a minute on evicts nothing.
    let mut s1 = instance("shop", "s1", 8081);
    s1.lease_info.renewal_interval_in_secs = 100;
    s1.lease_info.duration_in_secs = 300;
    app.register(&s1).await;
    let mut evil = instance("shop", "<script>alert(1)</script>", 8082);
    evil.lease_info = s1.lease_info;
    evil.host_name = "\"><img src=x>".into();
    let res = app
        .http
        .post(app.eureka("apps/SHOP"))
        .json(&InstanceEnvelope { instance: evil })
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    app.http
        .put(app.eureka("apps/SHOP/s1/status?value=OUT_OF_SERVICE"))
        .send()
        .await
        .unwrap();
    app.advance(Duration::from_secs(65));
    app.state.registry.tick();

    let res = app.http.get(&app.url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = res.text().await.unwrap();
    for expected in [
        "<h3 id=\"app-SHOP\">SHOP</h3>",
        "s1",
        "127.0.0.1:8081",
        "OUT_OF_SERVICE",
        "(override OUT_OF_SERVICE)",
        "1m 5s",
        "Registry version",
        "Self-preservation",
        "Uptime",
        "&lt;script&gt;alert(1)&lt;/script&gt;",
        "\"&gt;&lt;img src=x&gt;:8082",
    ] {
        assert!(page.contains(expected), "missing {expected:?} in {page}");
    }
    assert!(!page.contains("<script>"));
    assert!(!page.contains("<img"));
    assert!(!page.contains("<script"), "no JavaScript at all");
}

/// /admin/registry reports configuration, counts, renew rates and self-preservation state.
#[tokio::test]
async fn admin_registry() {
    let app = TestApp::manual().await;
    app.register(&instance("shop", "s1", 8081)).await;
    app.register(&instance("cart", "c1", 8082)).await;
    app.advance(Duration::from_secs(5));
    app.renew("SHOP", "s1").await;
    app.state.registry.tick();
    let a = app.admin().await;
    assert_eq!(a["instances"], 2);
    assert_eq!(a["applications"], 2);
    assert_eq!(a["instancesByApp"]["SHOP"]["UP"], 1);
    assert_eq!(a["totals"]["registrations"], 2);
    assert_eq!(a["totals"]["renewals"], 1);
    assert_eq!(a["renewals"]["measured"], 3);
    assert_eq!(a["renewals"]["expected"], 2.0);
    assert_eq!(a["selfPreservation"]["active"], false);
    assert_eq!(a["config"]["registry"]["preservation"]["minInstances"], 5);
    assert_eq!(a["config"]["registry"]["renewalWindowMs"], 60_000);
    assert_eq!(a["config"]["evictionIntervalMs"], 1000);
    assert_eq!(a["version"], app.state.registry.version());
}

/// /metrics carries instances by app and status, the totals, the self-preservation flag and waiting watchers.
#[tokio::test]
async fn metrics() {
    let app = TestApp::manual().await;
    app.register(&instance("shop", "s1", 8081)).await;
    let mut down = instance("shop", "s2", 8082);
    down.status = kit::registry::model::InstanceStatus::Down;
    app.register(&down).await;
    app.renew("SHOP", "s1").await;
    app.renew("SHOP", "nope").await;
    app.http
        .delete(app.eureka("apps/SHOP/s2"))
        .send()
        .await
        .unwrap();
    app.state.registry.tick();
    let m = app.metrics().await;
    for line in [
        r#"discovery_instances{app="SHOP",status="UP"} 1"#,
        "discovery_registrations_total 2",
        "discovery_renewals_total 1",
        "discovery_renewals_unknown_total 1",
        "discovery_cancellations_total 1",
        "discovery_evictions_total 0",
        "discovery_self_preservation 0",
        "discovery_watchers_waiting 0",
        "discovery_renewals_measured_window",
        "discovery_renewals_expected_window",
        "process_resident_memory_bytes",
    ] {
        assert!(m.contains(line), "missing {line:?} in\n{m}");
    }
    assert!(
        !m.contains(r#"status="DOWN""#),
        "cancelled instances leave the gauges"
    );
}
