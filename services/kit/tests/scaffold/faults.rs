//! `/admin/faults` on a real scaffold: admin only, faults hit the routes and share they name and
//! nothing else, the service drops them at their end by itself, and a kill assault stops it.

use std::time::{Duration, Instant};

use kit::CommonArgs;
use kit::clock::Clock;
use kit::faults::Faults;
use serde_json::{Value, json};

use super::{problem, start, start_with};

const ADMIN: &str = "Bearer test-admin-token";

async fn list(c: &reqwest::Client, base: &str) -> Vec<Value> {
    c.get(format!("{base}/admin/faults"))
        .header("authorization", ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn post(c: &reqwest::Client, base: &str, body: Value) -> reqwest::Response {
    c.post(format!("{base}/admin/faults"))
        .header("authorization", ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Every fault route wants the admin credentials (401 problem+json without or with wrong ones),
/// like the breakers' admin routes.
#[tokio::test]
async fn fault_routes_need_the_admin_role() {
    let r = start(CommonArgs::for_tests(None)).await;
    let c = reqwest::Client::new();
    let url = format!("{}/admin/faults", r.base);
    for auth in [None, Some("Bearer wrong")] {
        let with = |req: reqwest::RequestBuilder| match auth {
            Some(a) => req.header("authorization", a),
            None => req,
        };
        problem(with(c.get(&url)).send().await.unwrap(), 401).await;
        problem(
            with(c.post(&url))
                .json(&json!({"assault": {"type": "kill"}, "durationMs": 1000}))
                .send()
                .await
                .unwrap(),
            401,
        )
        .await;
        problem(with(c.delete(&url)).send().await.unwrap(), 401).await;
        problem(
            with(c.delete(format!("{url}/f-1"))).send().await.unwrap(),
            401,
        )
        .await;
    }
    assert!(list(&c, &r.base).await.is_empty());
    r.stop().await;
}

/// An error fault on one route answers its status as problem+json there and nowhere else (not
/// other routes, not the health probes); a latency fault delays its route by at least its
/// minimum and counts its hits; both vanish at their end without anyone removing them.
#[tokio::test]
async fn faults_hit_their_routes_and_expire_by_themselves() {
    let r = start(CommonArgs::for_tests(None)).await;
    let c = reqwest::Client::new();
    let res = post(
        &c,
        &r.base,
        json!({"id": "f-err", "assault": {"type": "error", "status": 503}, "routes": ["/orders"], "durationMs": 1500}),
    )
    .await;
    assert_eq!(res.status(), 201);
    let res = post(
        &c,
        &r.base,
        json!({"assault": {"type": "latency", "min_ms": 300, "max_ms": 300}, "routes": ["/hello"], "durationMs": 1500}),
    )
    .await;
    assert_eq!(res.status(), 201);
    let order = json!({"sku": "a", "quantity": 1});
    let p = problem(
        c.post(format!("{}/orders", r.base))
            .json(&order)
            .send()
            .await
            .unwrap(),
        503,
    )
    .await;
    assert_eq!(p["instance"], "/orders");
    let t = Instant::now();
    let hello = c.get(format!("{}/hello", r.base)).send().await.unwrap();
    assert_eq!(hello.status(), 200);
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "latency fault did not delay: {:?}",
        t.elapsed()
    );
    let ready = c
        .get(format!("{}/health/ready", r.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let active = list(&c, &r.base).await;
    assert_eq!(active.len(), 2);
    assert!(
        active.iter().all(|f| f["hits"].as_u64() >= Some(1)),
        "{active:?}"
    );

    // Nobody removes them: the service does, at their end.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !list(&c, &r.base).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "faults still listed long after their end"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let res = c
        .post(format!("{}/orders", r.base))
        .json(&order)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    r.stop().await;
}

/// Faults are removed one by one or all at once; unknown ids are 404, and bad requests are 400
/// problem+json naming the field (an error status outside 400..=599, a zero share, unknown
/// fields, a duration under the minimum).
#[tokio::test]
async fn remove_and_refuse_bad_requests() {
    let r = start(CommonArgs::for_tests(None)).await;
    let c = reqwest::Client::new();
    let ok = json!({"id": "f-1", "assault": {"type": "error", "status": 500}, "durationMs": 60000});
    assert_eq!(post(&c, &r.base, ok.clone()).await.status(), 201);
    let del = |path: &str| {
        c.delete(format!("{}/admin/faults{path}", r.base))
            .header("authorization", ADMIN)
            .send()
    };
    assert_eq!(del("/f-1").await.unwrap().status(), 204);
    problem(del("/f-1").await.unwrap(), 404).await;
    assert_eq!(post(&c, &r.base, ok).await.status(), 201);
    assert_eq!(del("").await.unwrap().status(), 204);
    assert!(list(&c, &r.base).await.is_empty());
    for (body, field) in [
        (
            json!({"assault": {"type": "error", "status": 200}, "durationMs": 1000}),
            Some("assault"),
        ),
        (
            json!({"assault": {"type": "kill"}, "share": 0, "durationMs": 1000}),
            Some("share"),
        ),
        (
            json!({"assault": {"type": "kill"}, "durationMs": 5}),
            Some("durationMs"),
        ),
        (
            json!({"assault": {"type": "kill"}, "durationMs": 1000, "extra": 1}),
            None,
        ),
        (
            json!({"assault": {"type": "explode"}, "durationMs": 1000}),
            None,
        ),
    ] {
        let res = post(&c, &r.base, body.clone()).await;
        let status = res.status().as_u16();
        assert!((400..500).contains(&status), "{body}: {status}");
        let p = problem(res, status).await;
        if let Some(field) = field {
            assert_eq!(p["field"], field, "{body}: {p}");
        }
    }
    assert!(list(&c, &r.base).await.is_empty());
    r.stop().await;
}

/// A kill assault is answered 202 and then ends the process (here: a stand-in that stops the
/// service, so the test process survives).
#[tokio::test]
async fn kill_assault_stops_the_service() {
    let r = start_with(CommonArgs::for_tests(None), |s| {
        let stop = s.shutdown_token();
        let faults =
            Faults::new(Clock::System).with_killer(std::sync::Arc::new(move |_| stop.cancel()));
        s.set_faults(faults);
    })
    .await;
    let c = reqwest::Client::new();
    let res = post(
        &c,
        &r.base,
        json!({"assault": {"type": "kill"}, "durationMs": 1000}),
    )
    .await;
    assert_eq!(res.status(), 202);
    tokio::time::timeout(Duration::from_secs(20), r.task)
        .await
        .expect("the service stops after a kill assault")
        .unwrap()
        .unwrap();
}
