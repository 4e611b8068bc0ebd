//! Every query endpoint and parameter of Zipkin's v2 API, checked against
//! the answers Zipkin's server gives for its own fixtures (ITZipkinServer,
//! ITDependencies, ITSpanStore, QueryRequestTest).

use serde_json::{Value, json};
use trace_collector::Options;

use crate::helpers::*;

fn opts() -> Options {
    Options {
        autocomplete_keys: vec!["environment".into(), "clnt/finagle.version".into()],
        ..Options::default()
    }
}

/// `POST /api/v2/spans` answers 202 and `GET /api/v2/trace/{id}` returns Zipkin's exact bytes.
#[tokio::test]
async fn upload_then_get_trace_byte_exact() {
    let app = spawn_app(opts()).await;
    let res = app.post_json(zipkin_trace_upload()).await;
    assert_eq!(res.status(), 202);
    assert!(res.bytes().await.unwrap().is_empty(), "202 has no body");

    let res = app.get(&format!("/api/v2/trace/{TRACE_ID}")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    assert_eq!(res.text().await.unwrap(), list(&zipkin_trace_spans()));

    // Zipkin trims the id (ITZipkinServer.getTrace_spaceAfterTraceId).
    let (status, body) = app.get_text(&format!("/api/v2/trace/{TRACE_ID}%20")).await;
    assert_eq!(status, 200);
    assert_eq!(body, list(&zipkin_trace_spans()));
}

/// Unknown trace ids are 404 and malformed ones 400, with Zipkin's messages, as problem+json.
#[tokio::test]
async fn get_trace_errors() {
    let app = spawn_app(opts()).await;
    let res = app.get(&format!("/api/v2/trace/{TRACE_ID}")).await;
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["detail"], format!("{TRACE_ID} not found"));

    let res = app.get("/api/v2/trace/0e8b46e1-81b").await;
    assert_eq!(res.status(), 400);
    let p: Value = res.json().await.unwrap();
    assert_eq!(
        p["detail"],
        "0e8b46e1-81b should be lower-hex encoded with no prefix"
    );
    assert_eq!(p["status"], 400);
}

/// A 64-bit id finds the 128-bit trace (lenient lookup); with STRICT_TRACE_ID it does not.
#[tokio::test]
async fn lenient_and_strict_trace_id_lookup() {
    let low = &TRACE_ID[16..];
    let app = spawn_app(opts()).await;
    app.accept(zipkin_trace_upload()).await;
    let (status, body) = app.get_text(&format!("/api/v2/trace/{low}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        list(&zipkin_trace_spans()),
        "answered with the 128-bit ids"
    );
    // Zipkin pads short ids: "216a2aea45d08fc9" without leading zeros is the same id.
    let (status, _) = app
        .get_text(&format!("/api/v2/trace/00000000000000000000{}", &low[4..]))
        .await;
    assert_eq!(status, 404, "different low bits");

    let strict = spawn_app(Options {
        strict_trace_id: true,
        ..opts()
    })
    .await;
    strict.accept(zipkin_trace_upload()).await;
    assert_eq!(
        strict.get_text(&format!("/api/v2/trace/{low}")).await.0,
        404
    );
    assert_eq!(
        strict
            .get_text(&format!("/api/v2/trace/{TRACE_ID}"))
            .await
            .0,
        200
    );
}

/// A trace whose spans carry the 64-bit and the 128-bit form of one id is one trace with the 128-bit id.
#[tokio::test]
async fn mixed_width_trace_ids_merge() {
    let app = spawn_app(opts()).await;
    let low = &TRACE_ID[16..];
    app.accept(list(&[
        simple_span(TRACE_ID, 1, 0, "frontend", "get", 0),
        simple_span(low, 2, 1, "backend", "get", 1),
    ]))
    .await;
    let trace = app.get_json(&format!("/api/v2/trace/{low}")).await;
    let ids: Vec<&str> = trace
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["traceId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![TRACE_ID, TRACE_ID]);
}

/// `/api/v2/traceMany` returns the known traces and refuses empty, single, redundant and malformed lists.
#[tokio::test]
async fn trace_many() {
    let app = spawn_app(opts()).await;
    app.accept(zipkin_trace_upload()).await;
    let (status, body) = app
        .get_text(&format!("/api/v2/traceMany?traceIds=abcd,{TRACE_ID}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body, format!("[{}]", list(&zipkin_trace_spans())));

    for (q, msg) in [
        (
            "traceIds=".to_string(),
            "traceIds parameter is empty".to_string(),
        ),
        (
            format!("traceIds={TRACE_ID}"),
            "Use /api/v2/trace/{traceId} endpoint to retrieve a single trace".into(),
        ),
        (
            format!("traceIds={TRACE_ID},{TRACE_ID}"),
            format!("redundant traceId: {TRACE_ID}"),
        ),
        (
            "traceIds=abcd,0e8b46e1-81b".into(),
            "0e8b46e1-81b should be lower-hex encoded with no prefix".into(),
        ),
    ] {
        let res = app.get(&format!("/api/v2/traceMany?{q}")).await;
        assert_eq!(res.status(), 400, "{q}");
        let p: Value = res.json().await.unwrap();
        assert_eq!(p["detail"], msg, "{q}");
    }
    assert_eq!(
        app.get_text("/api/v2/traceMany").await.0,
        400,
        "traceIds is required"
    );
}

/// Service, span-name and remote-service lists are sorted, lower-case lookups, cached past three services.
#[tokio::test]
async fn name_lists() {
    let app = spawn_app(opts()).await;
    assert_eq!(app.get_json("/api/v2/services").await, json!([]));
    app.accept(zipkin_trace_upload()).await;

    let res = app.get("/api/v2/services").await;
    assert!(
        res.headers().get("cache-control").is_none(),
        "no caching with <4 services"
    );
    assert_eq!(res.text().await.unwrap(), r#"["backend","frontend"]"#);
    assert_eq!(
        app.get_json("/api/v2/spans?serviceName=frontend").await,
        json!(["get"])
    );
    assert_eq!(
        app.get_json("/api/v2/spans?serviceName=BACKEND").await,
        json!(["get", "query"])
    );
    assert_eq!(app.get_json("/api/v2/spans?serviceName=").await, json!([]));
    assert_eq!(
        app.get_json("/api/v2/spans?serviceName=个人信息服务").await,
        json!([])
    );
    assert_eq!(
        app.get_json("/api/v2/remoteServices?serviceName=frontend")
            .await,
        json!(["backend"])
    );
    assert_eq!(
        app.get_json("/api/v2/remoteServices?serviceName=backend")
            .await,
        json!(["db"])
    );
    assert_eq!(
        app.get_text("/api/v2/spans").await.0,
        400,
        "serviceName is required"
    );
    assert_eq!(app.get_text("/api/v2/remoteServices").await.0, 400);

    // ITZipkinServer.setsCacheControlOnNameEndpointsWhenMoreThan3Services
    for (i, s) in ["foo", "bar", "baz", "quz"].iter().enumerate() {
        app.accept(format!(
            r#"[{{"traceId":"a","id":"{}","name":"whopper","timestamp":{},"localEndpoint":{{"serviceName":"{s}"}},"remoteEndpoint":{{"serviceName":"{s}1"}}}}]"#,
            i + 1,
            us(0)
        ))
        .await;
    }
    let res = app.get("/api/v2/services").await;
    assert_eq!(
        res.headers()["cache-control"],
        "max-age=300, must-revalidate"
    );
    assert_eq!(
        res.text().await.unwrap(),
        r#"["backend","bar","baz","foo","frontend","quz"]"#
    );
    for path in [
        "/api/v2/spans?serviceName=web",
        "/api/v2/remoteServices?serviceName=web",
    ] {
        assert_eq!(
            app.get(path).await.headers()["cache-control"],
            "max-age=300, must-revalidate"
        );
    }
    // ITZipkinServer.remoteServiceNameReturnsCorrectJsonForEscapedWhitespaceInName
    app.accept(format!(
        r#"[{{"traceId":"b","id":"1","timestamp":{},"localEndpoint":{{"serviceName":"foo\tbar"}}}}]"#,
        us(0)
    ))
    .await;
    assert!(
        app.get_text("/api/v2/services")
            .await
            .1
            .contains(r#""foo\tbar""#)
    );
}

/// `/api/v2/traces`: every parameter filters as Zipkin's QueryRequest does, with its defaults and checks.
#[tokio::test]
async fn traces_query_parameters() {
    let app = spawn_app(opts()).await;
    let other = "1f0000000000000000000000000000aa";
    app.accept(zipkin_trace_upload()).await;
    // A second, later trace from another service.
    app.accept(list(&[simple_span(other, 1, 0, "worker", "poll", 1000)]))
        .await;
    let both = |v: &Value| v.as_array().unwrap().len() == 2;
    let ids = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|t| t[0]["traceId"].as_str().unwrap().to_string())
            .collect()
    };

    let all = app.get_json("/api/v2/traces").await;
    assert!(both(&all), "{all}");
    assert_eq!(
        ids(&all),
        vec![other.to_string(), TRACE_ID.to_string()],
        "newest first"
    );
    assert_eq!(
        all[1],
        serde_json::from_str::<Value>(&list(&zipkin_trace_spans())).unwrap()
    );

    let only_trace = vec![TRACE_ID.to_string()];
    let cases: &[(&str, bool)] = &[
        ("serviceName=backend", true),
        ("serviceName=FRONTEND", true),
        ("serviceName=unknown", false),
        ("remoteServiceName=db", true),
        ("serviceName=frontend&remoteServiceName=db", false),
        ("spanName=query", true),
        ("serviceName=frontend&spanName=query", false),
        ("annotationQuery=error", true),
        ("annotationQuery=foo", true),
        ("annotationQuery=http.path%3D%2Fapi", true),
        ("annotationQuery=http.path%3D%2Fother", false),
        ("annotationQuery=error%20and%20foo%20and%20http.path", true),
        ("serviceName=frontend&annotationQuery=error", false),
        (
            "serviceName=backend&annotationQuery=error%3D%F0%9F%92%A9",
            true,
        ),
        ("minDuration=350000", true),
        ("minDuration=350001", false),
        ("minDuration=100000&maxDuration=160000", true),
        ("minDuration=160000&maxDuration=190000", false),
    ];
    for (q, found) in cases {
        let v = app.get_json(&format!("/api/v2/traces?{q}")).await;
        if *found {
            assert_eq!(ids(&v), only_trace, "{q}");
        } else {
            assert!(ids(&v).is_empty(), "{q}: {v}");
        }
    }
    assert!(both(&app.get_json("/api/v2/traces?spanName=all").await));

    // endTs/lookback: the window must hold the trace's root timestamp.
    let at = |end: i64, lookback: i64| format!("/api/v2/traces?endTs={end}&lookback={lookback}");
    assert_eq!(
        ids(&app.get_json(&at(TODAY_MS + 500, 600)).await),
        only_trace
    );
    // Spans of the trace fall in this window, but its root does not: Zipkin tests the root's time.
    assert!(ids(&app.get_json(&at(TODAY_MS + 200, 100)).await).is_empty());
    assert_eq!(
        ids(&app.get_json(&at(TODAY_MS + 1000, 500)).await),
        vec![other.to_string()]
    );
    assert!(ids(&app.get_json(&at(TODAY_MS - 1, 86_400_000)).await).is_empty());
    assert_eq!(
        app.get_json(&at(TODAY_MS + 2000, 2000))
            .await
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // the default lookback (one day) ends at "now"
    app.clock
        .advance(std::time::Duration::from_secs(2 * 86_400));
    assert!(ids(&app.get_json("/api/v2/traces").await).is_empty());
    assert_eq!(
        app.get_json(&format!("/api/v2/traces?endTs={NOW_MS}"))
            .await
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let limited = app
        .get_json(&format!("/api/v2/traces?endTs={NOW_MS}&limit=1"))
        .await;
    assert_eq!(ids(&limited), vec![other.to_string()]);

    for (q, msg) in [
        ("limit=0", "limit <= 0"),
        ("endTs=0", "endTs <= 0"),
        ("lookback=0", "lookback <= 0"),
        (
            "maxDuration=10",
            "maxDuration is only valid with minDuration",
        ),
        ("minDuration=0", "minDuration <= 0"),
        ("minDuration=10&maxDuration=5", "maxDuration < minDuration"),
    ] {
        let res = app.get(&format!("/api/v2/traces?{q}")).await;
        assert_eq!(res.status(), 400, "{q}");
        let p: Value = res.json().await.unwrap();
        assert_eq!(p["detail"], msg);
    }
    assert_eq!(app.get_text("/api/v2/traces?limit=ten").await.0, 400);
}

/// Dependency links match Zipkin's ITDependencies for its TRACE and for messaging through a broker.
#[tokio::test]
async fn dependencies() {
    let app = spawn_app(opts()).await;
    app.accept(zipkin_trace_upload()).await;
    let links = app
        .get_text(&format!(
            "/api/v2/dependencies?endTs={}&lookback=86400000",
            TODAY_MS + 1000
        ))
        .await;
    assert_eq!(links.0, 200);
    assert_eq!(
        links.1,
        r#"[{"parent":"frontend","child":"backend","callCount":1},{"parent":"backend","child":"db","callCount":1,"errorCount":1}]"#
    );
    // outside the window
    assert_eq!(
        app.get_json(&format!(
            "/api/v2/dependencies?endTs={}&lookback=1000",
            TODAY_MS - 1
        ))
        .await,
        json!([])
    );
    // default lookback is one day back from endTs
    assert_eq!(
        app.get_json(&format!("/api/v2/dependencies?endTs={}", TODAY_MS + 1000))
            .await
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // producer → broker → consumer, the broker named by remoteEndpoint (ITDependencies messaging cases)
    let t = "00000000000000000000000000000abc";
    app.accept(format!(
        r#"[{{"traceId":"{t}","id":"1","kind":"PRODUCER","name":"send","timestamp":{},"localEndpoint":{{"serviceName":"order"}},"remoteEndpoint":{{"serviceName":"kafka"}}}},
            {{"traceId":"{t}","parentId":"1","id":"2","kind":"CONSUMER","name":"poll","timestamp":{},"localEndpoint":{{"serviceName":"notification"}},"remoteEndpoint":{{"serviceName":"kafka"}},"tags":{{"error":"failed"}}}}]"#,
        us(2000),
        us(2001)
    ))
    .await;
    let v = app
        .get_json(&format!(
            "/api/v2/dependencies?endTs={}&lookback=500",
            TODAY_MS + 2100
        ))
        .await;
    assert_eq!(
        v,
        json!([
            {"parent": "order", "child": "kafka", "callCount": 1},
            {"parent": "kafka", "child": "notification", "callCount": 1, "errorCount": 1}
        ])
    );

    for (q, status) in [
        ("", 400),
        ("endTs=0", 400),
        (&format!("endTs={}&lookback=0", TODAY_MS) as &str, 400),
        ("endTs=abc", 400),
    ] {
        assert_eq!(
            app.get_text(&format!("/api/v2/dependencies?{q}")).await.0,
            status,
            "{q}"
        );
    }
}

/// Autocomplete keys come from configuration; values from stored spans' tags.
#[tokio::test]
async fn autocomplete() {
    let app = spawn_app(opts()).await;
    let res = app.get("/api/v2/autocompleteKeys").await;
    assert_eq!(
        res.headers()["cache-control"],
        "max-age=300, must-revalidate"
    );
    assert_eq!(
        res.text().await.unwrap(),
        r#"["clnt/finagle.version","environment"]"#
    );
    app.accept(zipkin_trace_upload()).await;
    assert_eq!(
        app.get_json("/api/v2/autocompleteValues?key=clnt/finagle.version")
            .await,
        json!(["6.45.0"])
    );
    assert_eq!(
        app.get_json("/api/v2/autocompleteValues?key=http.path")
            .await,
        json!([]),
        "not configured"
    );
    assert_eq!(app.get_text("/api/v2/autocompleteValues?key=").await.0, 400);
    assert_eq!(app.get_text("/api/v2/autocompleteValues").await.0, 400);
}

/// Parts of one span are merged; a server sharing its client's id without the flag gets `shared: true`.
#[tokio::test]
async fn merges_span_parts_on_read() {
    let app = spawn_app(opts()).await;
    let t = "0000000000000000000000000000000f";
    app.accept(format!(
        r#"[{{"traceId":"{t}","id":"1","name":"get","timestamp":{},"localEndpoint":{{"serviceName":"web"}}}}]"#,
        us(0)
    ))
    .await;
    app.accept(format!(
        r#"[{{"traceId":"{t}","id":"1","duration":5000,"localEndpoint":{{"serviceName":"web","port":8080}},"tags":{{"late":"tag"}}}},
            {{"traceId":"{t}","parentId":"1","id":"2","kind":"CLIENT","name":"call","timestamp":{},"duration":100,"localEndpoint":{{"serviceName":"web"}}}},
            {{"traceId":"{t}","parentId":"1","id":"2","kind":"SERVER","name":"call","timestamp":{},"duration":50,"localEndpoint":{{"serviceName":"api"}}}}]"#,
        us(1),
        us(2)
    ))
    .await;
    let v = app.get_json(&format!("/api/v2/trace/{t}")).await;
    assert_eq!(
        v,
        json!([
            {"traceId": "000000000000000f", "id": "0000000000000001", "name": "get", "timestamp": us(0), "duration": 5000,
             "localEndpoint": {"serviceName": "web", "port": 8080}, "tags": {"late": "tag"}},
            {"traceId": "000000000000000f", "parentId": "0000000000000001", "id": "0000000000000002", "kind": "CLIENT",
             "name": "call", "timestamp": us(1), "duration": 100, "localEndpoint": {"serviceName": "web"}},
            {"traceId": "000000000000000f", "parentId": "0000000000000001", "id": "0000000000000002", "kind": "SERVER",
             "name": "call", "timestamp": us(2), "duration": 50, "localEndpoint": {"serviceName": "api"}, "shared": true}
        ])
    );
}

/// Any origin may read the API (CORS), the API is also under /zipkin/api/v2, and / redirects to the UI.
#[tokio::test]
async fn cors_prefix_and_redirect() {
    let app = spawn_app(opts()).await;
    let res = app
        .client
        .get(app.url("/api/v2/traces"))
        .header("origin", "http://foo.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
    let res = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/api/v2/spans"))
        .header("origin", "http://foo.example.com")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
    assert!(
        res.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );

    app.accept(zipkin_trace_upload()).await;
    assert_eq!(
        app.get_json("/zipkin/api/v2/services").await,
        json!(["backend", "frontend"])
    );
    let res = app.get("/").await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/zipkin/");
    // The kit's standard endpoints are there too.
    assert_eq!(app.get_text("/health/live").await.0, 200);
}
