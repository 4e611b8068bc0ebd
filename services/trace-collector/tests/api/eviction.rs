//! The span limit: oldest traces evicted whole, indexes and metrics kept consistent.

use serde_json::json;
use trace_collector::Options;

use crate::helpers::*;

/// A three-span trace of `service` at `at_ms` after TODAY: its root calls
/// the server span of "shared", which has a local child.
fn trace(n: u64, service: &str, at_ms: i64) -> String {
    let id = format!("{n:032x}");
    let call = format!(
        r#"{{"traceId":"{id}","parentId":"0000000000000001","id":"0000000000000002","kind":"SERVER","name":"{service}-call","timestamp":{},"duration":500,"localEndpoint":{{"serviceName":"shared"}},"remoteEndpoint":{{"serviceName":"{service}"}}}}"#,
        us(at_ms + 1)
    );
    list(&[
        simple_span(&id, 1, 0, service, &format!("{service}-root"), at_ms),
        call,
        simple_span(&id, 3, 2, "shared", "db", at_ms + 2),
    ])
}

/// At MAX_SPANS the oldest whole traces go first; lists, queries and metrics forget them at once.
#[tokio::test]
async fn evicts_oldest_traces_at_the_limit() {
    let app = spawn_app(Options {
        max_spans: 10,
        ..Options::default()
    })
    .await;
    for n in 1..=3 {
        app.accept(trace(n, &format!("svc{n}"), n as i64 * 100))
            .await;
    }
    assert_eq!(app.metric("trace_collector_spans_stored").await, 9.0);
    assert_eq!(app.metric("trace_collector_spans_evicted_total").await, 0.0);

    // 9 + 3 > 10: trace 1 (the oldest) is evicted whole before trace 4 is stored.
    app.accept(trace(4, "svc4", 400)).await;
    assert_eq!(app.metric("trace_collector_spans_stored").await, 9.0);
    assert_eq!(app.metric("trace_collector_traces_stored").await, 3.0);
    assert_eq!(app.metric("trace_collector_spans_evicted_total").await, 3.0);
    assert_eq!(
        app.metric("trace_collector_traces_evicted_total").await,
        1.0
    );
    assert_eq!(
        app.get_text(&format!("/api/v2/trace/{:032x}", 1)).await.0,
        404
    );
    for n in 2..=4 {
        assert_eq!(
            app.get_json(&format!("/api/v2/trace/{n:032x}"))
                .await
                .as_array()
                .unwrap()
                .len(),
            3
        );
    }
    assert_eq!(
        app.get_json("/api/v2/services").await,
        json!(["shared", "svc2", "svc3", "svc4"])
    );
    assert_eq!(
        app.get_json("/api/v2/spans?serviceName=shared").await,
        json!(["db", "svc2-call", "svc3-call", "svc4-call"]),
        "names only the evicted trace used are gone"
    );
    assert!(
        app.get_json("/api/v2/spans?serviceName=svc1")
            .await
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        app.get_json("/api/v2/traces?serviceName=svc1").await,
        json!([])
    );
    assert_eq!(
        app.get_json("/api/v2/traces")
            .await
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        app.get_json(&format!("/api/v2/dependencies?endTs={NOW_MS}"))
            .await,
        json!([
            {"parent": "svc4", "child": "shared", "callCount": 1},
            {"parent": "svc3", "child": "shared", "callCount": 1},
            {"parent": "svc2", "child": "shared", "callCount": 1}
        ]),
        "newest trace first, evicted trace gone"
    );
}

/// Eviction follows span time, as in Zipkin: a late-arriving old trace is the next to go.
#[tokio::test]
async fn eviction_order_is_by_span_timestamp() {
    let app = spawn_app(Options {
        max_spans: 6,
        ..Options::default()
    })
    .await;
    app.accept(trace(1, "new", 1000)).await;
    app.accept(trace(2, "old", 10)).await; // arrives later, but is older
    app.accept(trace(3, "newest", 2000)).await;
    assert_eq!(
        app.get_text(&format!("/api/v2/trace/{:032x}", 2)).await.0,
        404
    );
    assert_eq!(
        app.get_text(&format!("/api/v2/trace/{:032x}", 1)).await.0,
        200
    );
    assert_eq!(
        app.get_text(&format!("/api/v2/trace/{:032x}", 3)).await.0,
        200
    );
}

/// Re-sending the same spans does not use up the limit, nor evict anything.
#[tokio::test]
async fn retried_uploads_do_not_evict() {
    let app = spawn_app(Options {
        max_spans: 4,
        ..Options::default()
    })
    .await;
    app.accept(trace(1, "a", 100)).await;
    for _ in 0..3 {
        app.accept(trace(1, "a", 100)).await;
    }
    assert_eq!(
        app.get_json(&format!("/api/v2/trace/{:032x}", 1))
            .await
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(app.metric("trace_collector_spans_stored").await, 3.0);
    assert_eq!(
        app.metric("trace_collector_spans_duplicate_total").await,
        9.0
    );
    assert_eq!(app.metric("trace_collector_spans_evicted_total").await, 0.0);
}
