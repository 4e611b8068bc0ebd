//! Request body limits: oversized bodies get 413 problem+json from the
//! gateway without being read or buffered, an upstream's own early 413 is
//! relayed, and none of it (nor a client breaking off its upload) counts
//! against an instance.

use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::post;
use bytes::Bytes;
use futures::StreamExt;
use kit::lb::EndpointStatus;
use serde_json::Value;
use testkit::hostile::chunked;

use crate::helpers::*;

const MIB: usize = 1024 * 1024;

/// A route to `bulk-service` under `/bulk`, public, with the default body limit unless `extra` sets one.
fn bulk_routes(extra: &str) -> String {
    format!(
        "[[routes]]\nid = \"bulk\"\nuri = \"lb://bulk-service\"\npredicates = [\"Path=/bulk/**\"]\nfilters = [\"StripPrefix=1\"]\npublic = true\n{extra}\n"
    )
}

/// Asserts a 413 problem+json naming the limit; returns the problem.
async fn assert_413(res: reqwest::Response) -> Value {
    assert_eq!(res.status(), 413);
    assert_eq!(
        res.headers()["content-type"],
        "application/problem+json",
        "413 is problem+json"
    );
    res.json().await.expect("a problem document")
}

fn assert_no_failures(instances: &[EndpointStatus]) {
    for i in instances {
        assert_eq!(i.failures, 0, "{i:?}");
        assert!(!i.ejected, "{i:?}");
        assert_eq!(i.ejections, 0, "{i:?}");
    }
}

/// 50 bodies of 10 MB at concurrency 8 (Content-Length known), then bodies
/// of 10 MB without a length: every one is a 413 problem+json, no instance
/// is charged or ejected, small requests still pass, and the gateway's
/// memory stays flat: its heap (resident memory not backed by its binary)
/// peaks below 48 MiB, its whole resident memory below the container's 64 MiB,
/// and the heap does not grow from one round of 50 bodies to the next.
#[tokio::test]
async fn fifty_ten_megabyte_bodies_get_413_and_eject_nothing() {
    let registry = Registry::start().await;
    let a = Upstream::echo("a").await;
    let b = Upstream::echo("b").await;
    registry.register("bulk-service", "a", a.port).await;
    registry.register("bulk-service", "b", b.port).await;
    let gw = GatewayProcess::start(&bulk_routes(""), &registry, "/bulk/hello").await;
    let c = client();
    let kib = |field: &str| gw.status_bytes(field) / 1024;
    let ready = (kib("VmRSS"), kib("RssAnon"));

    let body = Bytes::from(vec![b'x'; 10 * MIB]);
    let url = gw.url("/bulk/upload");
    let send = |n: usize| {
        futures::stream::iter(0..n)
            .map(|_| {
                let (c, url, body) = (c.clone(), url.clone(), body.clone());
                async move { assert_413(c.post(&url).body(body).send().await.unwrap()).await }
            })
            .buffer_unordered(8)
            .collect::<Vec<Value>>()
    };
    let problems = send(50).await;
    assert_eq!(problems.len(), 50);
    for p in &problems {
        assert_eq!(p["status"], 413, "{p}");
        assert_eq!(p["limit"], 1024 * 1024, "{p}");
    }
    let first = kib("RssAnon");
    send(50).await;
    let second = kib("RssAnon");
    // Without a Content-Length the body is counted as it streams and cut off.
    for _ in 0..4 {
        let res = c.post(&url).body(chunked(10 * MIB)).send().await.unwrap();
        let p = assert_413(res).await;
        assert_eq!(p["limit"], 1024 * 1024, "{p}");
    }
    // A body within the limit still goes through, whole.
    let res = c
        .post(&url)
        .body(Bytes::from(vec![0u8; 512 * 1024]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["bytes"], 512 * 1024);

    let upstreams: Value = get_json(&c, &gw.url("/admin/upstreams"), Some("x")).await;
    let instances: Vec<EndpointStatus> =
        serde_json::from_value(upstreams["bulk-service"]["instances"].clone()).unwrap();
    assert_eq!(instances.len(), 2, "{upstreams}");
    assert_no_failures(&instances);
    for _ in 0..4 {
        assert_eq!(
            c.get(gw.url("/bulk/hello")).send().await.unwrap().status(),
            200
        );
    }

    // The binary's own pages (RssFile) do not change during the test, so the
    // peak less them is the peak of everything else.
    let (peak, file) = (kib("VmHWM"), kib("RssFile"));
    let heap_peak = peak.saturating_sub(file);
    println!(
        "api-gateway RSS when ready {} KiB (heap {} KiB); heap after 50 bodies of 10 MB {first} KiB, after 100 {second} KiB; \
         peak RSS (VmHWM) {peak} KiB, of it the binary's pages {file} KiB, the rest {heap_peak} KiB",
        ready.0, ready.1
    );
    assert!(heap_peak < 48 * 1024, "heap peak {heap_peak} KiB");
    // The whole peak, the binary's pages included (their size varies with the build: 53 MiB
    // was seen in CI with 19 MiB of them), must stay under the container's limit.
    assert!(
        peak < 64 * 1024,
        "peak RSS {peak} KiB, the container's limit is 64 MiB"
    );
    assert!(
        second < first + 8 * 1024,
        "the heap grew from {first} KiB to {second} KiB over the second 50 bodies"
    );
}

/// A route that allows large bodies in front of an upstream with a small
/// limit: the upstream's early 413 (answered before it reads the body) is
/// relayed, never turned into a 502, and the instance is not charged.
#[tokio::test]
async fn an_upstreams_early_413_is_relayed() {
    let registry = Registry::start().await;
    let small = Upstream::serve(
        axum::Router::new()
            .route(
                "/upload",
                post(|body: Bytes| async move { body.len().to_string() }),
            )
            .layer(DefaultBodyLimit::max(1024)),
    )
    .await;
    registry.register("bulk-service", "small", small.port).await;
    let gw = Gateway::start(&bulk_routes("max_body = \"64MiB\""), &registry).await;
    gw.wait_for_instances("bulk-service", 1).await;
    let c = client();
    let body = Bytes::from(vec![b'x'; 10 * MIB]);
    for _ in 0..20 {
        let res = c
            .post(gw.url("/bulk/upload"))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 413, "{:?}", res.text().await);
    }
    let status = gw.gateway.balancer("bulk-service").unwrap().status();
    assert_no_failures(&status);
}

/// A client that breaks off its upload mid-body gets nothing charged to
/// the instance that was receiving it.
#[tokio::test]
async fn a_client_breaking_off_its_upload_charges_no_instance() {
    let registry = Registry::start().await;
    let a = Upstream::echo("a").await;
    registry.register("bulk-service", "a", a.port).await;
    let gw = Gateway::start(&bulk_routes("max_body = \"64MiB\""), &registry).await;
    gw.wait_for_instances("bulk-service", 1).await;
    for _ in 0..5 {
        let chunk = Bytes::from(vec![1u8; 64 * 1024]);
        let broken = futures::stream::iter((0..20).map(move |i| {
            if i < 19 {
                Ok(chunk.clone())
            } else {
                Err(std::io::Error::other("the client gives up"))
            }
        }));
        let res = client()
            .post(gw.url("/bulk/upload"))
            .body(reqwest::Body::wrap_stream(broken))
            .send()
            .await;
        assert!(res.is_err(), "the upload was broken off: {res:?}");
    }
    // The gateway sees the broken body on its own time: wait for the calls to finish.
    let balancer = gw.gateway.balancer("bulk-service").unwrap().clone();
    testkit::eventually(
        "the broken uploads to finish",
        Duration::from_secs(10),
        || {
            let idle = balancer.status().iter().all(|i| i.in_flight == 0);
            async move { idle }
        },
    )
    .await;
    assert_no_failures(&balancer.status());
    let res = client().get(gw.url("/bulk/hello")).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

/// Sends `request` as raw bytes and reads the whole answer (the server closes after it).
async fn raw(base: &str, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before it has read everything we send.
    let _ = s.write_all(request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Over-long URLs, too many headers and malformed request lines, which hyper
/// answers before the gateway sees them, still get problem+json bodies.
#[tokio::test]
async fn hypers_own_limits_answer_problem_json() {
    let registry = Registry::start().await;
    let gw = Gateway::start(&bulk_routes(""), &registry).await;
    let long = format!(
        "GET /bulk/{} HTTP/1.1\r\nhost: x\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let many: String = (0..120).map(|i| format!("x-h{i}: v\r\n")).collect();
    let many = format!("GET /bulk/hello HTTP/1.1\r\nhost: x\r\n{many}\r\n");
    let big = format!(
        "GET /bulk/hello HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "b".repeat(600 * 1024)
    );
    for (request, status) in [
        (long.as_bytes(), 414),
        (many.as_bytes(), 431),
        (big.as_bytes(), 431),
        (&b"GET /bulk/\x01 HTTP/1.1\r\nhost: x\r\n\r\n"[..], 400),
    ] {
        let answer = raw(&gw.base, request).await;
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status} ")),
            "{status}: {head}"
        );
        assert!(
            head.contains("content-type: application/problem+json"),
            "{status}: {head}"
        );
        let p: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(p["status"], status, "{p}");
    }
    // Ordinary requests on the same listener are untouched.
    let res = client().get(gw.url("/health/ready")).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

/// Large uploads (8 at a time) to a path without a route, or without the
/// token a route needs, each get their 404 or 401 problem+json answer
/// (the refused body is drained, as for a 413).
#[tokio::test]
async fn refused_uploads_are_answered_not_reset() {
    let registry = Registry::start().await;
    let issuer = Issuer::start(&[&key_a()]).await;
    let gw = Gateway::protected("[[routes]]\nid = \"bulk\"\nuri = \"lb://bulk-service\"\npredicates = [\"Path=/bulk/**\"]\nmax_body = \"64MiB\"\n", &registry, issuer.validator(None, kit::clock::Clock::System))
    .await;
    let body = Bytes::from(vec![b'x'; 10 * MIB]);
    let c = client();
    for (path, status) in [("/nowhere", 404), ("/bulk/upload", 401)] {
        let url = gw.url(path);
        let answers: Vec<(u16, String)> = futures::stream::iter(0..16)
            .map(|_| {
                let (c, url, body) = (c.clone(), url.clone(), body.clone());
                async move {
                    let res = c
                        .post(&url)
                        .body(body)
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("{url}: {e}"));
                    let ct = res.headers()["content-type"].to_str().unwrap().to_string();
                    (res.status().as_u16(), ct)
                }
            })
            .buffer_unordered(8)
            .collect()
            .await;
        for (got, ct) in answers {
            assert_eq!(got, status, "{path}");
            assert_eq!(ct, "application/problem+json", "{path}");
        }
    }
}
