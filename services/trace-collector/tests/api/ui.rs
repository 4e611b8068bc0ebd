//! The HTML pages at Zipkin's UI paths.

use trace_collector::Options;

use crate::helpers::*;

/// The waterfall page shows every span in tree order with bars, nesting, tags, annotations and errors.
#[tokio::test]
async fn waterfall_page() {
    let app = spawn_app(Options::default()).await;
    app.accept(zipkin_trace_upload()).await;
    let res = app.get(&format!("/zipkin/traces/{TRACE_ID}")).await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = res.text().await.unwrap();
    assert!(!html.contains("<script"), "no JavaScript");
    assert!(html.contains(TRACE_ID));
    // four rows: the root, the client, its shared server, the db call
    assert_eq!(html.matches("<details").count(), 4);
    let order: Vec<usize> = ["frontend</div>", "backend</div>", "query"]
        .iter()
        .map(|s| html.find(s).unwrap_or_else(|| panic!("{s} missing")))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "tree order");
    // nesting: the db call is three levels deep
    assert!(html.contains("padding-left:2.7rem"));
    // the root spans the whole track; the client starts at 50/350 of it
    assert!(html.contains("left:0.000%;width:100.000%"));
    assert!(html.contains("left:14.286%;width:57.143%"));
    // tags, annotations, error highlight, non-ASCII values
    assert!(html.contains("clnt/finagle.version") && html.contains("6.45.0"));
    assert!(html.contains("foo") && html.contains("⻩") && html.contains("💩"));
    assert!(html.contains("<details class=\"error\""));
    assert!(html.contains("350.000ms"));
    // 64-bit form of the id opens the same page
    assert_eq!(
        app.get_text(&format!("/zipkin/traces/{}", &TRACE_ID[16..]))
            .await
            .0,
        200
    );
}

/// Unknown and malformed trace ids answer with an HTML error page, or problem+json when JSON is asked for.
#[tokio::test]
async fn waterfall_errors() {
    let app = spawn_app(Options::default()).await;
    let (status, html) = app.get_text(&format!("/zipkin/traces/{TRACE_ID}")).await;
    assert_eq!(status, 404);
    assert!(html.contains("not found") && html.contains("<html"));
    let (status, html) = app.get_text("/zipkin/traces/%3Cb%3Exyz").await;
    assert_eq!(status, 400);
    assert!(
        html.contains("&lt;b&gt;xyz") && !html.contains("<b>xyz"),
        "escaped"
    );
    let res = app
        .client
        .get(app.url(&format!("/zipkin/traces/{TRACE_ID}")))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
}

/// The index lists recent traces with links and filters them by service with a plain form.
#[tokio::test]
async fn index_page() {
    let app = spawn_app(Options::default()).await;
    let (status, html) = app.get_text("/zipkin/").await;
    assert_eq!(status, 200);
    assert!(html.contains("No traces match"));
    app.accept(zipkin_trace_upload()).await;
    let other = "00000000000000000000000000000bbb";
    app.accept(list(&[simple_span(other, 1, 0, "worker<&>", "poll", 10)]))
        .await;

    let html = app.get_text("/zipkin/").await.1;
    assert!(html.contains(&format!("href=\"/zipkin/traces/{TRACE_ID}\"")));
    assert!(html.contains("href=\"/zipkin/traces/0000000000000bbb\""));
    assert!(html.contains("worker&lt;&amp;&gt;") && !html.contains("worker<&>"));
    assert!(html.contains("href=\"/zipkin/?serviceName=worker%3C%26%3E\""));
    assert!(html.contains("1 error"));
    assert!(html.contains("<option value=\"backend\">"));

    let html = app
        .get_text("/zipkin/?serviceName=backend&lookback=86400000")
        .await
        .1;
    assert!(html.contains(TRACE_ID) && !html.contains("0000000000000bbb"));
    assert!(html.contains("<option value=\"backend\" selected>"));
    let html = app
        .get_text("/zipkin/?serviceName=all&annotationQuery=error&minDuration=&limit=")
        .await
        .1;
    assert!(html.contains(TRACE_ID) && !html.contains("0000000000000bbb"));
    let (status, html) = app.get_text("/zipkin/?limit=-1").await;
    assert_eq!(status, 400);
    assert!(html.contains("limit &lt;= 0"));

    // "go to trace" form and the UI root redirects
    let res = app.get(&format!("/zipkin/traces?traceId={TRACE_ID}")).await;
    assert_eq!(res.status(), 303);
    assert_eq!(
        res.headers()["location"],
        format!("/zipkin/traces/{TRACE_ID}")
    );
    assert_eq!(app.get("/zipkin").await.headers()["location"], "/zipkin/");
}
