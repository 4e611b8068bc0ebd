//! Filters, predicates, forwarding headers and hop-by-hop removal, seen
//! from the upstream's side.

use std::collections::BTreeMap;

use echo_upstream::Echo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

/// Sends `request` as written over a fresh connection and reads the whole
/// answer (the request asks the server to close): status, headers, body.
async fn raw_http(port: u16, request: &str) -> (u16, BTreeMap<String, Vec<String>>, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in lines {
        let (k, v) = l.split_once(':').unwrap();
        headers
            .entry(k.trim().to_ascii_lowercase())
            .or_default()
            .push(v.trim().to_string());
    }
    (status, headers, body.to_string())
}

fn one<'a>(h: &'a BTreeMap<String, Vec<String>>, name: &str) -> &'a str {
    match h.get(name).map(Vec::as_slice) {
        Some([v]) => v,
        other => panic!("{name}: {other:?} in {h:?}"),
    }
}

/// RewritePath with named captures, StripPrefix, AddRequestHeader with a
/// path variable, RemoveRequestHeader, Add/RemoveResponseHeader.
#[tokio::test]
async fn filters_change_request_and_answer() {
    let registry = Registry::start().await;
    let up = Upstream::echo("echo").await;
    registry.register("svc", "echo", up.port).await;
    let routes = r#"
[[routes]]
id = "rewrite"
uri = "lb://svc"
predicates = ["Path=/shop/{tenant}/items/**"]
filters = [
  "RewritePath=/shop/(?<tenant>[^/]+)/items/(?<rest>.*), /catalog/${tenant}/${rest}",
  "AddRequestHeader=X-Tenant, tenant-{tenant}",
  "RemoveRequestHeader=Cookie",
  "AddResponseHeader=X-Gateway, api-gateway",
  "RemoveResponseHeader=X-Instance",
]
public = true

[[routes]]
id = "strip"
uri = "lb://svc"
predicates = ["Path=/strip/**"]
filters = ["StripPrefix=2"]
public = true
"#;
    let gw = Gateway::start(routes, &registry).await;
    gw.wait_for_instances("svc", 1).await;
    let c = client();

    let res = c
        .get(gw.url("/shop/acme/items/42/detail?color=red&size=M"))
        .header("cookie", "session=secret")
        .header("x-keep", "yes")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-gateway"], "api-gateway");
    assert!(res.headers().get("x-instance").is_none());
    let e: Echo = res.json().await.unwrap();
    assert_eq!(e.path, "/catalog/acme/42/detail");
    assert_eq!(e.query.as_deref(), Some("color=red&size=M"));
    assert_eq!(e.headers["x-tenant"], ["tenant-acme"]);
    assert_eq!(e.headers["x-keep"], ["yes"]);
    assert!(!e.headers.contains_key("cookie"));

    let e: Echo = get_json(&c, &gw.url("/strip/one/two/three"), None).await;
    assert_eq!(e.path, "/two/three");
}

/// Method, Header and Host predicates pick routes; `order` decides between
/// routes that both match; Host captures feed header templates.
#[tokio::test]
async fn predicates_select_the_route() {
    let registry = Registry::start().await;
    let mut ups = Vec::new();
    for name in ["writes", "canary", "tenant", "default"] {
        let u = registry.echo(&format!("svc-{name}"), name).await;
        ups.push(u);
    }
    let routes = r#"
[[routes]]
id = "default"
uri = "lb://svc-default"
predicates = ["Path=/p/**"]
public = true
order = 10

[[routes]]
id = "writes"
uri = "lb://svc-writes"
predicates = ["Path=/p/**", "Method=POST,PUT"]
filters = ["StripPrefix=1"]
public = true

[[routes]]
id = "canary"
uri = "lb://svc-canary"
predicates = ["Path=/p/**", "Header=X-Canary, yes|true"]
public = true
order = -1

[[routes]]
id = "tenant"
uri = "lb://svc-tenant"
predicates = ["Path=/p/**", "Host={tenant}.shop.test"]
filters = ["AddRequestHeader=X-Tenant, {tenant}"]
public = true
"#;
    let gw = Gateway::start(routes, &registry).await;
    for name in ["writes", "canary", "tenant", "default"] {
        gw.wait_for_instances(&format!("svc-{name}"), 1).await;
    }
    let c = client();
    let who = |res: &reqwest::Response| res.headers()["x-instance"].to_str().unwrap().to_string();

    let res = c.get(gw.url("/p/x")).send().await.unwrap();
    assert_eq!(who(&res), "default");
    let res = c
        .post(gw.url("/p/upload"))
        .body("abc")
        .send()
        .await
        .unwrap();
    assert_eq!(who(&res), "writes");
    let res = c
        .get(gw.url("/p/x"))
        .header("x-canary", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(who(&res), "canary");
    let res = c
        .get(gw.url("/p/x"))
        .header("x-canary", "nope")
        .send()
        .await
        .unwrap();
    assert_eq!(who(&res), "default", "the regex must match the whole value");
    let res = c
        .get(gw.url("/p/x"))
        .header("host", "acme.shop.test:8080")
        .send()
        .await
        .unwrap();
    assert_eq!(who(&res), "tenant");
    let e: Echo = res.json().await.unwrap();
    assert_eq!(e.headers["x-tenant"], ["acme"]);
}

/// Hop-by-hop headers are removed both ways (with the ones `Connection`
/// names), X-Forwarded-*/Forwarded are added, the request id and the
/// bearer token are relayed, and the upstream gets its own Host.
#[tokio::test]
async fn forwarding_headers_and_hop_by_hop_removal() {
    let registry = Registry::start().await;
    let up = Upstream::echo("echo").await;
    registry.register("svc", "echo", up.port).await;
    let routes = r#"
[[routes]]
id = "fwd"
uri = "lb://svc"
predicates = ["Path=/fwd/**"]
filters = ["StripPrefix=1"]
public = true
"#;
    let gw = Gateway::start(routes, &registry).await;
    gw.wait_for_instances("svc", 1).await;
    let port: u16 = gw.base.rsplit(':').next().unwrap().parse().unwrap();

    let request = "GET /fwd/echo-me?q=1 HTTP/1.1\r\n\
        Host: edge.example:8080\r\n\
        Connection: close, X-Custom-Hop\r\n\
        X-Custom-Hop: secret\r\n\
        Keep-Alive: timeout=5\r\n\
        TE: trailers\r\n\
        Trailer: X-Sum\r\n\
        Upgrade: foo/1\r\n\
        Proxy-Authorization: Basic eDp5\r\n\
        Proxy-Connection: keep-alive\r\n\
        X-Forwarded-For: 203.0.113.7\r\n\
        X-Request-Id: req-123\r\n\
        Authorization: Bearer opaque-token\r\n\
        \r\n";
    let (status, headers, body) = raw_http(port, request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(one(&headers, "x-request-id"), "req-123");
    let e: Echo = serde_json::from_str(&body).unwrap();
    assert_eq!(e.path, "/echo-me");
    for gone in [
        "connection",
        "x-custom-hop",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "proxy-connection",
    ] {
        assert!(
            !e.headers.contains_key(gone),
            "{gone} reached the upstream: {:?}",
            e.headers
        );
    }
    let h = &e.headers;
    assert_eq!(h["x-forwarded-for"], ["203.0.113.7, 127.0.0.1"]);
    assert_eq!(h["x-forwarded-proto"], ["http"]);
    assert_eq!(h["x-forwarded-host"], ["edge.example:8080"]);
    assert_eq!(h["x-forwarded-port"], [port.to_string()]);
    assert_eq!(
        h["forwarded"],
        ["for=127.0.0.1;proto=http;host=\"edge.example:8080\""]
    );
    assert_eq!(h["x-request-id"], ["req-123"]);
    assert_eq!(h["authorization"], ["Bearer opaque-token"]);
    assert_eq!(h["host"], [format!("127.0.0.1:{}", up.port)]);

    let (status, headers, body) = raw_http(
        port,
        "GET /fwd/hop HTTP/1.1\r\nHost: edge.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "hop"));
    for gone in ["x-hop-secret", "keep-alive", "proxy-authenticate"] {
        assert!(
            !headers.contains_key(gone),
            "{gone} reached the client: {headers:?}"
        );
    }
    assert_eq!(one(&headers, "x-end-to-end"), "kept");
    // Without one from the client, the gateway makes a request id.
    assert_eq!(one(&headers, "x-request-id").len(), 36);
}
