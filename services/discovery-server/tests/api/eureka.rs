//! The Eureka REST API: shapes, status codes and semantics as Eureka clients see them.

use std::time::Duration;

use kit::registry::model::{
    ActionType, ApplicationEnvelope, ApplicationsEnvelope, InstanceEnvelope, InstanceStatus,
};
use serde_json::Value;

use crate::helpers::{TestApp, instance};

/// Register answers 204; the instance reads back in Eureka's JSON shapes with lease timestamps filled in.
#[tokio::test]
async fn register_and_read_back_json() {
    let app = TestApp::manual().await;
    let mut i = instance("order-service", "h:order-service:8082", 8082);
    i.metadata.insert("zone".into(), "a".into());
    app.register(&i).await;

    let (status, v) = app
        .get_json(&app.eureka("apps/ORDER-SERVICE/h:order-service:8082"))
        .await;
    assert_eq!(status, 200);
    let inst = &v["instance"];
    assert_eq!(inst["app"], "ORDER-SERVICE");
    assert_eq!(inst["status"], "UP");
    assert_eq!(
        inst["port"],
        serde_json::json!({"$": 8082, "@enabled": "true"})
    );
    assert_eq!(inst["leaseInfo"]["renewalIntervalInSecs"], 5);
    assert_eq!(inst["leaseInfo"]["durationInSecs"], 15);
    assert_eq!(
        inst["leaseInfo"]["registrationTimestamp"],
        crate::helpers::T0
    );
    assert_eq!(inst["leaseInfo"]["serviceUpTimestamp"], crate::helpers::T0);
    assert_eq!(inst["actionType"], "ADDED");
    assert_eq!(inst["metadata"]["zone"], "a");
    assert_eq!(inst["isCoordinatingDiscoveryServer"], "false");
    assert!(inst["lastUpdatedTimestamp"].is_string());

    let apps = app.apps().await.applications;
    assert_eq!(apps.apps_hashcode, "UP_1_");
    assert_eq!(apps.versions_delta, app.state.registry.version());
    let (_, raw) = app.get_json(&app.eureka("apps")).await;
    assert!(raw["applications"]["versions__delta"].is_string());
    assert_eq!(raw["applications"]["apps__hashcode"], "UP_1_");
    assert_eq!(
        raw["applications"]["application"][0]["name"],
        "ORDER-SERVICE"
    );

    let (s, one): (u16, Value) = app.get_json(&app.eureka("apps/order-service")).await;
    assert_eq!(s, 200, "application names are case-insensitive");
    let one: ApplicationEnvelope = serde_json::from_value(one).unwrap();
    assert_eq!(one.application.instance.len(), 1);

    let (s, by_id) = app
        .get_json(&app.eureka("instances/h:order-service:8082"))
        .await;
    assert_eq!(s, 200);
    let by_id: InstanceEnvelope = serde_json::from_value(by_id).unwrap();
    assert_eq!(by_id.instance.instance_id, "h:order-service:8082");

    for missing in ["apps/NOPE", "apps/ORDER-SERVICE/nope", "instances/nope"] {
        let res = app
            .http
            .get(app.eureka(missing))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404, "{missing}");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
    }
}

/// Without a JSON Accept header reads answer Eureka's XML, as a Eureka server does.
#[tokio::test]
async fn reads_xml_by_default() {
    let app = TestApp::manual().await;
    app.register(&instance("shop", "s1", 8081)).await;
    for path in ["apps", "apps/", "apps/delta", "vips/shop", "svips/shop"] {
        let res = app.http.get(app.eureka(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(res.headers()["content-type"], "application/xml", "{path}");
        assert!(res.headers().contains_key("x-registry-version"));
        let body = res.text().await.unwrap();
        assert!(
            body.starts_with("<applications><versions__delta>"),
            "{path}: {body}"
        );
        assert!(
            body.contains("<apps__hashcode>UP_1_</apps__hashcode>"),
            "{path}: {body}"
        );
        assert!(
            body.contains(r#"<port enabled="true">8081</port>"#),
            "{path}: {body}"
        );
    }
    let body = app.text(&app.eureka("apps/SHOP/s1"), None).await;
    assert!(
        body.starts_with("<instance><instanceId>s1</instanceId>"),
        "{body}"
    );
    let body = app
        .text(&app.eureka("apps/SHOP"), Some("application/xml"))
        .await;
    assert!(
        body.starts_with("<application><name>SHOP</name><instance>"),
        "{body}"
    );
}

/// Renew is 200 for a known instance and 404 for an unknown one; a newer lastDirtyTimestamp answers 404 so the client registers again.
#[tokio::test]
async fn renew_semantics() {
    let app = TestApp::manual().await;
    let mut i = instance("a", "1", 1000);
    i.last_dirty_timestamp = 500;
    app.register(&i).await;
    app.advance(Duration::from_secs(3));
    assert_eq!(app.renew("A", "1").await, 200);
    assert_eq!(app.renew("a", "1").await, 200, "app case-insensitive");
    assert_eq!(app.renew("A", "2").await, 404);
    let code = async |q: &str| app.put(&format!("apps/A/1?{q}")).await;
    assert_eq!(code("status=UP&lastDirtyTimestamp=500").await, 200);
    assert_eq!(code("status=UP&lastDirtyTimestamp=400").await, 200);
    assert_eq!(code("status=UP&lastDirtyTimestamp=600").await, 404);
    let (_, v) = app.get_json(&app.eureka("apps/A/1")).await;
    assert_eq!(
        v["instance"]["leaseInfo"]["lastRenewalTimestamp"],
        crate::helpers::T0 + 3000
    );
}

/// Cancel removes the instance (200, then 404); the delta then reports it DELETED.
#[tokio::test]
async fn cancel_and_delta() {
    let app = TestApp::manual().await;
    app.register(&instance("a", "1", 1000)).await;
    app.register(&instance("a", "2", 1001)).await;
    assert_eq!(app.delete("apps/A/2").await, 200);
    assert_eq!(app.delete("apps/A/2").await, 404);
    let (_, v) = app.get_json(&app.eureka("apps/delta")).await;
    let delta: ApplicationsEnvelope = serde_json::from_value(v).unwrap();
    let d = delta.applications;
    assert_eq!(d.apps_hashcode, "UP_1_", "hash of the whole registry");
    let mut seen: Vec<_> = d
        .instances()
        .map(|i| (i.instance_id.clone(), i.action_type))
        .collect();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        seen,
        [
            ("1".to_string(), Some(ActionType::Added)),
            ("2".to_string(), Some(ActionType::Deleted))
        ]
    );
    // After Eureka's ~3 minute retention the delta is empty again.
    app.advance(Duration::from_secs(181));
    let (_, v) = app.get_json(&app.eureka("apps/delta")).await;
    let d: ApplicationsEnvelope = serde_json::from_value(v).unwrap();
    assert_eq!(d.applications.instances().count(), 0);
    assert_eq!(d.applications.apps_hashcode, "UP_1_");
}

/// A status override takes an instance out of service and survives its re-registration; removing it makes the next renewal ask for registration.
#[tokio::test]
async fn status_override_and_removal() {
    let app = TestApp::manual().await;
    let i = instance("a", "1", 1000);
    app.register(&i).await;
    assert_eq!(app.put("apps/A/1/status?value=OUT_OF_SERVICE").await, 200);
    let apps = app.apps().await.applications;
    let got = apps.instances().next().unwrap();
    assert_eq!(got.status, InstanceStatus::OutOfService);
    assert_eq!(got.overridden_status, InstanceStatus::OutOfService);
    assert_eq!(apps.apps_hashcode, "OUT_OF_SERVICE_1_");
    assert_eq!(got.action_type, Some(ActionType::Modified));

    app.register(&i).await;
    let apps = app.apps().await.applications;
    assert_eq!(
        apps.instances().next().unwrap().status,
        InstanceStatus::OutOfService
    );

    assert_eq!(app.delete("apps/A/1/status").await, 200);
    assert_eq!(
        app.renew("A", "1").await,
        404,
        "status UNKNOWN: register again"
    );
    app.register(&i).await;
    assert_eq!(app.renew("A", "1").await, 200);
    let apps = app.apps().await.applications;
    assert_eq!(apps.instances().next().unwrap().status, InstanceStatus::Up);
    assert_eq!(apps.apps_hashcode, "UP_1_");

    // Removal with an explicit new status, as Eureka's `value` parameter allows.
    app.put("apps/A/1/status?value=DOWN").await;
    app.delete("apps/A/1/status?value=UP").await;
    assert_eq!(app.renew("A", "1").await, 200);
}

/// Metadata updates merge into the instance and count as a change.
#[tokio::test]
async fn metadata_update() {
    let app = TestApp::manual().await;
    let mut i = instance("a", "1", 1000);
    i.metadata.insert("keep".into(), "yes".into());
    app.register(&i).await;
    let v0 = app.state.registry.version();
    assert_eq!(app.put("apps/A/1/metadata?weight=5&zone=b").await, 200);
    assert_eq!(app.state.registry.version(), v0 + 1);
    let (_, v) = app.get_json(&app.eureka("apps/A/1")).await;
    assert_eq!(v["instance"]["metadata"]["weight"], "5");
    assert_eq!(v["instance"]["metadata"]["zone"], "b");
    assert_eq!(v["instance"]["metadata"]["keep"], "yes");
    assert_eq!(app.put("apps/A/9/metadata?x=1").await, 404);
}

/// VIP reads match exact entries of the comma-separated VIP list and carry the subset's hash code.
#[tokio::test]
async fn vips() {
    let app = TestApp::manual().await;
    let mut a = instance("a", "1", 1000);
    a.vip_address = "shop,shop-v2".into();
    a.secure_vip_address = "shop-secure".into();
    let mut b = instance("b", "2", 1001);
    b.vip_address = "other".into();
    b.status = InstanceStatus::Down;
    app.register(&a).await;
    app.register(&b).await;
    let (_, v) = app.get_json(&app.eureka("vips/shop-v2")).await;
    let got: ApplicationsEnvelope = serde_json::from_value(v).unwrap();
    assert_eq!(got.applications.instances().count(), 1);
    assert_eq!(got.applications.apps_hashcode, "UP_1_");
    let (_, v) = app.get_json(&app.eureka("svips/shop-secure")).await;
    let got: ApplicationsEnvelope = serde_json::from_value(v).unwrap();
    assert_eq!(got.applications.instances().count(), 1);
    let (s, v) = app.get_json(&app.eureka("vips/sho")).await;
    assert_eq!(s, 200);
    let got: ApplicationsEnvelope = serde_json::from_value(v).unwrap();
    assert_eq!(got.applications.instances().count(), 0);
    assert_eq!(app.apps().await.applications.apps_hashcode, "DOWN_1_UP_1_");
}

/// The same API answers under `/eureka/v2`, as Eureka 1.x clients configured for v2 call it.
#[tokio::test]
async fn v2_alias() {
    let app = TestApp::manual().await;
    let res = app
        .http
        .post(format!("{}/eureka/v2/apps/A", app.url))
        .json(&InstanceEnvelope {
            instance: instance("a", "1", 1000),
        })
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let renew = app.http.put(format!("{}/eureka/v2/apps/A/1", app.url));
    assert_eq!(app.status(renew).await, 200);
    let (s, v) = app.get_json(&format!("{}/eureka/v2/apps", app.url)).await;
    assert_eq!(s, 200);
    assert_eq!(v["applications"]["apps__hashcode"], "UP_1_");
}

/// A registration with DOWN or STARTING is believed even over an override, and STARTING → UP sets the service-up time.
#[tokio::test]
async fn reported_status_rules() {
    let app = TestApp::manual().await;
    let mut i = instance("a", "1", 1000);
    i.status = InstanceStatus::Starting;
    app.register(&i).await;
    let (_, v) = app.get_json(&app.eureka("apps/A/1")).await;
    assert_eq!(v["instance"]["status"], "STARTING");
    assert_eq!(v["instance"]["leaseInfo"]["serviceUpTimestamp"], 0);
    app.advance(Duration::from_secs(2));
    i.status = InstanceStatus::Up;
    app.register(&i).await;
    let (_, v) = app.get_json(&app.eureka("apps/A/1")).await;
    assert_eq!(v["instance"]["status"], "UP");
    assert_eq!(
        v["instance"]["leaseInfo"]["serviceUpTimestamp"],
        crate::helpers::T0 + 2000
    );
    app.put("apps/A/1/status?value=OUT_OF_SERVICE").await;
    i.status = InstanceStatus::Down;
    app.register(&i).await;
    let (_, v) = app.get_json(&app.eureka("apps/A/1")).await;
    assert_eq!(v["instance"]["status"], "DOWN");
    assert_eq!(v["instance"]["overriddenStatus"], "OUT_OF_SERVICE");
}
