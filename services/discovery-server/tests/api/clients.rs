//! Registrations exactly as real Eureka clients send them (the bodies in
//! `fixtures/`, see its README), read as leniently as Eureka reads them.

use serde_json::{Value, json};

use crate::helpers::TestApp;

const PY_BASIC: &str = include_str!("fixtures/py-eureka-client-0.13.3-basic-register.json");
const SPRING_JSON: &str = include_str!("fixtures/spring-cloud-netflix-register.json");
const EUREKA_XML: &str = include_str!("fixtures/eureka-xstream-register.xml");

/// Posts a registration body with its media type, returning the status and the answer's text.
async fn post(app: &TestApp, path: &str, content_type: &str, body: &str) -> (u16, String) {
    let res = app
        .http
        .post(app.eureka(path))
        .header("content-type", content_type)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// The registered instance as JSON.
async fn read_back(app: &TestApp, path: &str) -> Value {
    let (status, v) = app.get_json(&app.eureka(path)).await;
    assert_eq!(status, 200, "{path}: {v}");
    v["instance"].clone()
}

/// py-eureka-client 0.13.3's basic `register` with its defaults (`"status": ""`, `"overriddenstatus": ""`) registers, as Eureka registers it: UNKNOWN, not UP; its heartbeat is then answered 404 (register again) as Eureka answers an UNKNOWN lease, and registering UP makes it renew.
#[tokio::test]
async fn py_eureka_client_basic_register_with_defaults() {
    let app = TestApp::manual().await;
    let (status, text) = post(&app, "apps/PY-BASIC", "application/json", PY_BASIC).await;
    assert_eq!(status, 204, "{text}");
    let i = read_back(&app, "apps/PY-BASIC/py-basic-1").await;
    assert_eq!(
        i["status"], "UNKNOWN",
        "an empty status is Eureka's UNKNOWN: {i}"
    );
    assert_eq!(i["overriddenStatus"], "UNKNOWN", "{i}");
    assert_eq!(i["port"], json!({"$": 9098, "@enabled": "true"}));
    assert_eq!(i["securePort"], json!({"$": 9443, "@enabled": "false"}));
    assert_eq!(i["leaseInfo"]["durationInSecs"], 90);
    assert_eq!(i["vipAddress"], "py-basic");
    assert!(i.get("homePageUrl").is_none(), "empty URLs stay unset: {i}");
    assert_eq!(app.apps().await.applications.apps_hashcode, "UNKNOWN_1_");
    // eureka_basic.send_heartbeat with its defaults, as captured from the library.
    let heartbeat = "apps/PY-BASIC/py-basic-1?status=UP&lastDirtyTimestamp=0";
    let renew = || app.http.put(app.eureka(heartbeat)).send();
    assert_eq!(
        renew().await.unwrap().status(),
        404,
        "Eureka: an UNKNOWN lease must register again"
    );
    let up = PY_BASIC.replacen(r#""status": """#, r#""status": "UP""#, 1);
    let (status, text) = post(&app, "apps/PY-BASIC", "application/json", &up).await;
    assert_eq!(status, 204, "{text}");
    assert_eq!(renew().await.unwrap().status(), 200);
    assert_eq!(app.apps().await.applications.apps_hashcode, "UP_1_");
}

/// Spring Cloud Netflix's JSON body (nulls for unset members, `sid`/`asgName`, camel-case `overriddenStatus`, a boolean flag, numeric timestamps) registers UP with every value it carries.
#[tokio::test]
async fn spring_cloud_netflix_json_register() {
    let app = TestApp::manual().await;
    let (status, text) = post(&app, "apps/ORDER-SERVICE", "application/json", SPRING_JSON).await;
    assert_eq!(status, 204, "{text}");
    let i = read_back(&app, "apps/ORDER-SERVICE/10.0.0.7:order-service:8082").await;
    assert_eq!(i["status"], "UP");
    assert_eq!(i["overriddenStatus"], "UNKNOWN");
    assert_eq!(i["port"], json!({"$": 8082, "@enabled": "true"}));
    assert_eq!(i["metadata"], json!({"management.port": "8082"}));
    assert_eq!(i["healthCheckUrl"], "http://10.0.0.7:8082/actuator/health");
    assert!(
        i.get("secureHealthCheckUrl").is_none(),
        "null is unset: {i}"
    );
    assert_eq!(i["lastDirtyTimestamp"], "1765000000123");
    assert_eq!(i["isCoordinatingDiscoveryServer"], "false");
}

/// An XML registration in Eureka's XStream shape (attributes for port flags and the data-center class, metadata elements, escaped text) registers, and reads back the same in JSON and XML.
#[tokio::test]
async fn eureka_xml_register() {
    let app = TestApp::manual().await;
    let (status, text) = post(
        &app,
        "apps/INVENTORY-SERVICE",
        "application/xml",
        EUREKA_XML,
    )
    .await;
    assert_eq!(status, 204, "{text}");
    let id = "10.0.0.8:inventory-service:8083";
    let i = read_back(&app, &format!("apps/INVENTORY-SERVICE/{id}")).await;
    assert_eq!(i["status"], "UP");
    assert_eq!(i["port"], json!({"$": 8083, "@enabled": "true"}));
    assert_eq!(i["securePort"], json!({"$": 443, "@enabled": "false"}));
    assert_eq!(
        i["dataCenterInfo"],
        json!({"@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo", "name": "MyOwn"})
    );
    assert_eq!(i["leaseInfo"]["renewalIntervalInSecs"], 30);
    assert_eq!(
        i["metadata"],
        json!({"management.port": "8083", "zone": "eu & west"})
    );
    assert_eq!(i["lastDirtyTimestamp"], "1765000000123");
    let xml = testkit::body_text(
        app.http
            .get(app.eureka(&format!("apps/INVENTORY-SERVICE/{id}"))),
    )
    .await;
    assert!(xml.contains(r#"<port enabled="true">8083</port>"#), "{xml}");
    assert!(xml.contains("<zone>eu &amp; west</zone>"), "{xml}");

    // text/xml, an empty metadata marker and no declaration register too.
    let minimal = r#"<instance><hostName>h2</hostName><app>INVENTORY-SERVICE</app>
        <port enabled="true">8084</port><metadata class="java.util.Collections$EmptyMap"/></instance>"#;
    let (status, text) = post(&app, "apps/INVENTORY-SERVICE", "text/xml", minimal).await;
    assert_eq!(status, 204, "{text}");
    let i = read_back(&app, "apps/INVENTORY-SERVICE/h2").await;
    assert_eq!(i["metadata"], json!({}), "the class marker is not metadata");
    assert_eq!(i["status"], "UP", "no status is UP, as in Eureka");
}

/// Every variant Eureka reads is read: any status string (empty, unknown, lower case) as Eureka maps it, `@enabled` as a string or a boolean, a bare port number, numbers and timestamps as strings or numbers, `null`s and unknown members; renewals with any status.
#[tokio::test]
async fn lenient_variants() {
    let app = TestApp::manual().await;
    let cases = [
        ("a", json!({"status": "up", "overriddenstatus": ""}), "UP"),
        (
            "b",
            json!({"status": "SLEEPING", "overriddenStatus": "MAYBE"}),
            "UNKNOWN",
        ),
        (
            "c",
            json!({"status": null, "overriddenstatus": null}),
            "UNKNOWN",
        ),
        ("d", json!({"status": "", "port": 9001}), "UNKNOWN"),
        (
            "e",
            json!({"port": {"$": "9002", "@enabled": true}, "securePort": {"$": 443, "@enabled": false}}),
            "UP",
        ),
        (
            "f",
            json!({"countryId": "1", "lastUpdatedTimestamp": 1765000000000u64, "lastDirtyTimestamp": "",
                   "leaseInfo": {"renewalIntervalInSecs": "5", "durationInSecs": 15, "registrationTimestamp": "0"},
                   "isCoordinatingDiscoveryServer": true, "dataCenterInfo": null, "homePageUrl": null,
                   "someFutureField": {"nested": [1, 2]}}),
            "UP",
        ),
    ];
    for (id, extra, want) in cases {
        let mut body = json!({"instance": {"instanceId": id, "hostName": "h", "app": "LENIENT", "port": {"$": 9000}}});
        for (k, v) in extra.as_object().unwrap() {
            body["instance"][k] = v.clone();
        }
        let res = app
            .http
            .post(app.eureka("apps/lenient"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 204, "{id}: {}", res.text().await.unwrap());
        let i = read_back(&app, &format!("apps/LENIENT/{id}")).await;
        assert_eq!(i["status"], want, "{id}: {i}");
    }
    let port = |i: &Value| i["port"]["$"].clone();
    assert_eq!(port(&read_back(&app, "apps/LENIENT/d").await), 9001);
    assert_eq!(port(&read_back(&app, "apps/LENIENT/e").await), 9002);
    let f = read_back(&app, "apps/LENIENT/f").await;
    assert_eq!(f["leaseInfo"]["renewalIntervalInSecs"], 5);
    assert_eq!(f["dataCenterInfo"]["name"], "MyOwn");
    for query in [
        "status=BOGUS",
        "status=&overriddenstatus=",
        "overriddenstatus=WHATEVER",
    ] {
        let res = app
            .http
            .put(app.eureka(&format!("apps/LENIENT/a?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "renew with {query}");
    }
}
