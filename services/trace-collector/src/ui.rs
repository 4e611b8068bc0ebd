//! Server-rendered HTML at the Zipkin UI's paths, with no JavaScript.
//!
//! - `/zipkin/` lists recent traces, filtered by a plain GET form (service,
//!   span name, annotation query, minimum duration, lookback, limit) that
//!   uses the same query rules as `/api/v2/traces`.
//! - `/zipkin/traces/{traceId}` draws the waterfall: one row per span in
//!   tree order, indented by depth, with a CSS bar at the span's offset and
//!   duration, annotation ticks on the bar, errors in red, and the span's
//!   details (ids, kind, endpoints, tags, annotations) in a `<details>`
//!   element that opens without script.
//! - `/zipkin/traces?traceId=` (the "go to trace" form) redirects to the page.
//!
//! Every value from a span is HTML-escaped; attribute values are escaped
//! for double-quoted attributes and query strings are percent-encoded.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};
use kit::Problem;
use kit::http::{Path, Query};
use serde::Deserialize;

use crate::AppState;
use crate::decode::parse_trace_id;
use crate::merge::merge_trace;
use crate::model::{Kind, Span, human_duration, span_id_hex};
use crate::query::{QueryRequest, TracesParams};
use crate::tree::SpanTree;

/// The UI routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/zipkin/") }))
        .route("/zipkin", get(|| async { Redirect::to("/zipkin/") }))
        .route("/zipkin/", get(index))
        .route("/zipkin/traces", get(goto_trace))
        .route("/zipkin/traces/{trace_id}", get(trace_page))
        .with_state(state)
}

const CSS: &str = r#"
:root{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;font-size:14px;color:#1d2330;background:#f6f7f9}
body{margin:0}header{background:#1d2330;color:#fff;padding:.6rem 1rem;display:flex;gap:1rem;align-items:center}
header a{color:#fff;text-decoration:none;font-weight:600}main{padding:1rem}
h1{font-size:1.2rem;margin:.2rem 0 .8rem}code,.mono{font-family:ui-monospace,Menlo,Consolas,monospace}
form.filters{display:flex;flex-wrap:wrap;gap:.6rem;align-items:end;background:#fff;padding:.8rem;border:1px solid #dde1e7;border-radius:6px}
form label{display:flex;flex-direction:column;font-size:.8rem;color:#555;gap:.2rem}
input,select,button{font:inherit;padding:.3rem .4rem;border:1px solid #c5ccd6;border-radius:4px}
button{background:#1d6fd8;color:#fff;border-color:#1d6fd8;cursor:pointer}
table.traces{border-collapse:collapse;width:100%;margin-top:1rem;background:#fff}
table.traces th,table.traces td{text-align:left;padding:.4rem .6rem;border-bottom:1px solid #e6e9ee;vertical-align:top}
table.traces tr.error td:first-child{border-left:4px solid #d93025}
.badge{display:inline-block;padding:0 .4rem;border-radius:8px;background:#e8ecf2;font-size:.8rem;margin:0 .2rem .2rem 0}
.badge.err{background:#fde2e1;color:#a4161a}.muted{color:#6b7380}
.problem{background:#fde2e1;border:1px solid #f5b5b3;padding:.6rem;border-radius:6px;margin:.8rem 0}
.summary{display:flex;flex-wrap:wrap;gap:1.2rem;background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:.6rem .8rem;margin-bottom:.8rem}
.summary div span{display:block;font-size:.75rem;color:#6b7380}
.wf{background:#fff;border:1px solid #dde1e7;border-radius:6px}
.row,.wf summary{display:grid;grid-template-columns:14rem 22rem 1fr;align-items:center;gap:.5rem;padding:.15rem .5rem}
.wf summary{cursor:pointer;list-style:none}.wf summary::-webkit-details-marker{display:none}
.wf details{border-bottom:1px solid #eef0f3}.wf details:hover{background:#f2f6fc}
.wf details.error .bar{background:#d93025}.wf details.error .name{color:#a4161a;font-weight:600}
.head{font-size:.75rem;color:#6b7380;border-bottom:1px solid #dde1e7}
.svc{overflow:hidden;text-overflow:ellipsis;white-space:nowrap;font-weight:600}
.name{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.kind{font-size:.65rem;color:#6b7380;margin-left:.4rem;letter-spacing:.03em}
.track{position:relative;height:1.1rem}.ticks{position:relative;height:1rem}
.ticks span{position:absolute;transform:translateX(-50%)}.ticks span:first-child{transform:none}.ticks span:last-child{transform:translateX(-100%)}
.bar{position:absolute;top:.2rem;height:.7rem;min-width:2px;border-radius:2px;background:hsl(var(--hue),55%,50%)}
.mark{position:absolute;top:0;width:1px;height:1.1rem;background:#1d2330;opacity:.55}
.dur{position:absolute;top:0;font-size:.75rem;color:#444;white-space:nowrap;padding:0 .3rem}
.detail{padding:.4rem .8rem .8rem 1rem;background:#fafbfc;font-size:.85rem}
.detail table{border-collapse:collapse}.detail td{padding:.1rem .8rem .1rem 0;vertical-align:top}
.detail td:first-child{color:#6b7380;white-space:nowrap}.detail h4{margin:.6rem 0 .2rem;font-size:.8rem;color:#555}
"#;

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · trace-collector</title><style>{CSS}</style></head><body>\
         <header><a href=\"/zipkin/\">trace-collector</a><span class=\"muted\">Zipkin-compatible</span>\
         <form method=\"get\" action=\"/zipkin/traces\" style=\"margin-left:auto\">\
         <input name=\"traceId\" placeholder=\"Go to trace id\" size=\"34\" class=\"mono\"></form>\
         </header><main>{body}</main></body></html>",
        text(title)
    )
}

/// An error as an HTML page, or as problem+json for clients that ask for JSON.
fn ui_error(headers: &HeaderMap, status: StatusCode, message: &str) -> Response {
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("json") && !a.contains("text/html"));
    if wants_json {
        return Problem::with_detail(status, message).into_response();
    }
    let body = format!(
        "<h1>{}</h1><div class=\"problem\">{}</div><p><a href=\"/zipkin/\">Back to the trace list</a></p>",
        text(status.canonical_reason().unwrap_or("Error")),
        text(message)
    );
    (status, Html(page("Error", &body))).into_response()
}

/// Percent-encodes a query-string value.
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn format_time(micros: u64) -> String {
    i64::try_from(micros)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_micros)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// A stable hue per service name, so a service keeps its colour across pages.
fn hue(service: &str) -> u32 {
    service.bytes().fold(2166136261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16777619)
    }) % 360
}

/// What the list and the page header say about a trace.
struct Summary {
    trace_id: String,
    root_service: String,
    root_name: String,
    start: u64,
    duration: u64,
    spans: usize,
    services: BTreeSet<String>,
    errors: usize,
    depth: usize,
}

fn summarize(tree: &SpanTree, merged: &[Arc<Span>]) -> Summary {
    let start = merged
        .iter()
        .filter(|s| s.timestamp != 0)
        .map(|s| s.timestamp)
        .min()
        .unwrap_or(0);
    let end = merged
        .iter()
        .filter(|s| s.timestamp != 0)
        .map(|s| s.timestamp + s.duration)
        .max()
        .unwrap_or(start);
    let root = tree
        .span(tree.root)
        .cloned()
        .or_else(|| merged.iter().min_by_key(|s| s.timestamp).cloned());
    let trace_id = merged
        .iter()
        .map(|s| s.trace_id)
        .max_by_key(|t| t.is_128())
        .map(|t| t.to_hex())
        .unwrap_or_default();
    Summary {
        trace_id,
        root_service: root
            .as_ref()
            .and_then(|r| r.local_service_name().map(String::from))
            .unwrap_or_else(|| "unknown".into()),
        root_name: root
            .as_ref()
            .and_then(|r| r.name.as_deref().map(String::from))
            .unwrap_or_else(|| "unknown".into()),
        start,
        duration: end.saturating_sub(start),
        spans: merged.len(),
        services: merged
            .iter()
            .filter_map(|s| s.local_service_name().map(String::from))
            .collect(),
        errors: merged.iter().filter(|s| s.is_error()).count(),
        depth: tree
            .depth_first()
            .iter()
            .map(|(_, d)| d + 1)
            .max()
            .unwrap_or(0),
    }
}

// ---------------------------------------------------------------------------
// index

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexParams {
    service_name: Option<String>,
    span_name: Option<String>,
    annotation_query: Option<String>,
    min_duration: Option<String>,
    lookback: Option<String>,
    limit: Option<String>,
}

/// Form fields arrive as strings (empty when left blank).
fn number(field: &str, v: &Option<String>) -> Result<Option<i64>, String> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse::<i64>()
            .map(Some)
            .map_err(|_| format!("{field} must be a whole number, not {s:?}")),
    }
}

fn blank_to_none(v: &Option<String>) -> Option<String> {
    v.as_ref()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

const LOOKBACKS: [(i64, &str); 6] = [
    (900_000, "15 minutes"),
    (3_600_000, "1 hour"),
    (21_600_000, "6 hours"),
    (86_400_000, "1 day"),
    (172_800_000, "2 days"),
    (604_800_000, "7 days"),
];

async fn index(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(p): Query<IndexParams>,
) -> Response {
    let params = (|| -> Result<TracesParams, String> {
        Ok(TracesParams {
            service_name: blank_to_none(&p.service_name).filter(|s| s != "all"),
            remote_service_name: None,
            span_name: blank_to_none(&p.span_name),
            annotation_query: blank_to_none(&p.annotation_query),
            min_duration: number("minDuration", &p.min_duration)?,
            max_duration: None,
            end_ts: None,
            lookback: number("lookback", &p.lookback)?,
            limit: Some(number("limit", &p.limit)?.unwrap_or(25)),
        })
    })();
    let query = params.and_then(|params| {
        QueryRequest::from_params(&params, state.now_ms(), state.options().query_lookback_ms)
            .map(|q| (params, q))
    });
    let (params, q) = match query {
        Ok(x) => x,
        Err(message) => return ui_error(&headers, StatusCode::BAD_REQUEST, &message),
    };
    let (services, found) = {
        let store = state.store().read();
        (store.service_names(), store.query(&q))
    };

    let mut body = String::with_capacity(8192);
    body.push_str("<h1>Traces</h1><form class=\"filters\" method=\"get\" action=\"/zipkin/\">");
    body.push_str("<label>Service<select name=\"serviceName\"><option value=\"all\">all</option>");
    for s in &services {
        let selected = params.service_name.as_deref() == Some(&**s);
        let _ = write!(
            body,
            "<option value=\"{}\"{}>{}</option>",
            attr(s),
            if selected { " selected" } else { "" },
            text(s)
        );
    }
    body.push_str("</select></label>");
    let field = |body: &mut String, label: &str, name: &str, value: &str, hint: &str| {
        let _ = write!(
            body,
            "<label>{}<input name=\"{}\" value=\"{}\" placeholder=\"{}\"></label>",
            text(label),
            attr(name),
            attr(value),
            attr(hint)
        );
    };
    field(
        &mut body,
        "Span name",
        "spanName",
        p.span_name.as_deref().unwrap_or(""),
        "all",
    );
    field(
        &mut body,
        "Annotation query",
        "annotationQuery",
        p.annotation_query.as_deref().unwrap_or(""),
        "error and http.status_code=500",
    );
    field(
        &mut body,
        "Min duration (µs)",
        "minDuration",
        p.min_duration.as_deref().unwrap_or(""),
        "100000",
    );
    body.push_str("<label>Lookback<select name=\"lookback\">");
    for (ms, label) in LOOKBACKS {
        let _ = write!(
            body,
            "<option value=\"{ms}\"{}>{label}</option>",
            if q.lookback == ms { " selected" } else { "" }
        );
    }
    body.push_str("</select></label>");
    field(&mut body, "Limit", "limit", &q.limit.to_string(), "25");
    body.push_str("<button type=\"submit\">Find traces</button></form>");

    if found.is_empty() {
        body.push_str("<p class=\"muted\">No traces match. Spans appear here once services export them to <code>/api/v2/spans</code>.</p>");
    } else {
        body.push_str("<table class=\"traces\"><thead><tr><th>Start</th><th>Root</th><th>Duration</th><th>Spans</th><th>Services</th></tr></thead><tbody>");
        for t in &found {
            let merged = merge_trace(t);
            let tree = SpanTree::build(&merged);
            let s = summarize(&tree, &merged);
            let _ = write!(
                body,
                "<tr class=\"{}\"><td class=\"mono\">{}</td><td><a href=\"/zipkin/traces/{}\"><b>{}</b>: {}</a></td><td>{}</td><td>{}{}</td><td>",
                if s.errors > 0 { "error" } else { "" },
                text(&format_time(s.start)),
                attr(&s.trace_id),
                text(&s.root_service),
                text(&s.root_name),
                text(&human_duration(s.duration)),
                s.spans,
                if s.errors > 0 {
                    format!(
                        " <span class=\"badge err\">{} error{}</span>",
                        s.errors,
                        if s.errors == 1 { "" } else { "s" }
                    )
                } else {
                    String::new()
                }
            );
            for svc in &s.services {
                let _ = write!(
                    body,
                    "<a class=\"badge\" href=\"/zipkin/?serviceName={}\">{}</a>",
                    attr(&enc(svc)),
                    text(svc)
                );
            }
            body.push_str("</td></tr>");
        }
        body.push_str("</tbody></table>");
    }
    Html(page("Traces", &body)).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GotoParams {
    trace_id: Option<String>,
}

async fn goto_trace(headers: HeaderMap, Query(p): Query<GotoParams>) -> Response {
    let raw = p.trace_id.unwrap_or_default();
    match parse_trace_id(raw.trim()) {
        Ok(id) => Redirect::to(&format!("/zipkin/traces/{id}")).into_response(),
        Err(message) => ui_error(&headers, StatusCode::BAD_REQUEST, &message),
    }
}

// ---------------------------------------------------------------------------
// waterfall

async fn trace_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Response {
    let id = match parse_trace_id(raw.trim()) {
        Ok(id) => id,
        Err(message) => return ui_error(&headers, StatusCode::BAD_REQUEST, &message),
    };
    let spans = state.store().read().trace(id);
    if spans.is_empty() {
        return ui_error(
            &headers,
            StatusCode::NOT_FOUND,
            &format!(
                "{id} not found: the trace was never received, or was evicted to stay within MAX_SPANS."
            ),
        );
    }
    let merged = merge_trace(&spans);
    let tree = SpanTree::build(&merged);
    Html(render_trace(&tree, &merged)).into_response()
}

/// The waterfall page of one trace.
pub fn render_trace(tree: &SpanTree, merged: &[Arc<Span>]) -> String {
    let s = summarize(tree, merged);
    let total = s.duration.max(1) as f64;
    let mut body = String::with_capacity(4096 + merged.len() * 1024);
    let _ = write!(
        body,
        "<h1>{}: {}</h1><div class=\"summary\">\
         <div><span>Trace ID</span><code>{}</code></div>\
         <div><span>Start</span>{}</div><div><span>Duration</span>{}</div>\
         <div><span>Services</span>{}</div><div><span>Depth</span>{}</div>\
         <div><span>Spans</span>{}</div><div><span>Errors</span>{}</div>\
         <div><span>JSON</span><a href=\"/api/v2/trace/{}\">/api/v2/trace/…</a></div></div>",
        text(&s.root_service),
        text(&s.root_name),
        text(&s.trace_id),
        text(&format_time(s.start)),
        text(&human_duration(s.duration)),
        s.services.len(),
        s.depth,
        s.spans,
        s.errors,
        attr(&s.trace_id),
    );
    body.push_str("<div class=\"wf\"><div class=\"row head\"><div>Service</div><div>Span</div><div class=\"ticks\">");
    for i in 0..=4u64 {
        let _ = write!(
            body,
            "<span style=\"left:{}%\">{}</span>",
            i * 25,
            text(&human_duration(s.duration * i / 4))
        );
    }
    body.push_str("</div></div>");

    for (n, depth) in tree.depth_first() {
        let Some(span) = tree.span(n) else { continue };
        render_row(&mut body, span, depth, s.start, total);
    }
    body.push_str("</div>");
    page(&format!("{}: {}", s.root_service, s.root_name), &body)
}

fn render_row(body: &mut String, span: &Span, depth: usize, start: u64, total: f64) {
    let service = span.local_service_name().unwrap_or("unknown");
    let name = span.name.as_deref().unwrap_or("unknown");
    let (left, width) = if span.timestamp == 0 {
        (0.0, 0.0)
    } else {
        let left = (span.timestamp.saturating_sub(start)) as f64 / total * 100.0;
        let width = span.duration as f64 / total * 100.0;
        (
            left.clamp(0.0, 100.0),
            width.clamp(0.0, 100.0 - left.clamp(0.0, 100.0)),
        )
    };
    let label = if span.timestamp == 0 {
        "no timestamp".to_string()
    } else if span.duration == 0 {
        "no duration".to_string()
    } else {
        human_duration(span.duration)
    };
    // Put the label right of the bar, or left of it near the end of the track.
    let label_pos = if left + width > 80.0 {
        format!("right:{:.3}%", (100.0 - left).max(0.0))
    } else {
        format!("left:{:.3}%", left + width)
    };
    let kind = span.kind.map(Kind::as_str).unwrap_or("LOCAL");
    let _ = write!(
        body,
        "<details class=\"{}\" style=\"--hue:{}\"><summary>\
         <div class=\"svc\" title=\"{}\">{}</div>\
         <div class=\"name\" style=\"padding-left:{:.1}rem\" title=\"{}\">{}<span class=\"kind\">{}</span></div>\
         <div class=\"track\"><span class=\"bar\" style=\"left:{:.3}%;width:{:.3}%\"></span>",
        if span.is_error() { "error" } else { "" },
        hue(service),
        attr(service),
        text(service),
        depth as f64 * 0.9,
        attr(name),
        text(name),
        span.kind.map(Kind::as_str).unwrap_or(""),
        left,
        width,
    );
    for a in span.annotations.iter() {
        if a.timestamp <= 0 || span.timestamp == 0 {
            continue;
        }
        let pos = ((a.timestamp as u64).saturating_sub(start)) as f64 / total * 100.0;
        let _ = write!(
            body,
            "<span class=\"mark\" style=\"left:{:.3}%\" title=\"{}\"></span>",
            pos.clamp(0.0, 100.0),
            attr(&a.value)
        );
    }
    let _ = write!(
        body,
        "<span class=\"dur\" style=\"{label_pos}\">{}</span></div></summary><div class=\"detail\"><table>",
        text(&label)
    );
    let mut row = |k: &str, v: &str| {
        let _ = write!(
            body,
            "<tr><td>{}</td><td class=\"mono\">{}</td></tr>",
            text(k),
            text(v)
        );
    };
    row("Span ID", &span_id_hex(span.id));
    if span.parent_id != 0 {
        row("Parent ID", &span_id_hex(span.parent_id));
    }
    row("Kind", kind);
    if span.shared {
        row("Shared", "true (server side of the client's span id)");
    }
    if span.timestamp != 0 {
        row("Start", &format_time(span.timestamp));
        row(
            "Offset",
            &human_duration(span.timestamp.saturating_sub(start)),
        );
    }
    row("Duration", &label);
    for (label, ep) in [
        ("Local", &span.local_endpoint),
        ("Remote", &span.remote_endpoint),
    ] {
        if let Some(ep) = ep {
            let mut v = ep.service_name.as_deref().unwrap_or("").to_string();
            for ip in [ep.ipv4_string(), ep.ipv6_string()].into_iter().flatten() {
                let _ = write!(v, " {ip}");
            }
            if ep.port != 0 {
                let _ = write!(v, ":{}", ep.port);
            }
            row(&format!("{label} endpoint"), v.trim());
        }
    }
    if span.debug {
        row("Debug", "true");
    }
    body.push_str("</table>");
    if !span.tags.is_empty() {
        body.push_str("<h4>Tags</h4><table>");
        for (k, v) in span.tags.iter() {
            let _ = write!(
                body,
                "<tr><td>{}</td><td class=\"mono\">{}</td></tr>",
                text(k),
                text(v)
            );
        }
        body.push_str("</table>");
    }
    if !span.annotations.is_empty() {
        body.push_str("<h4>Annotations</h4><table>");
        for a in span.annotations.iter() {
            let when = if a.timestamp > 0 && span.timestamp != 0 {
                format!(
                    "+{}",
                    human_duration((a.timestamp as u64).saturating_sub(start))
                )
            } else {
                a.timestamp.to_string()
            };
            let _ = write!(
                body,
                "<tr><td>{}</td><td class=\"mono\">{}</td></tr>",
                text(&when),
                text(&a.value)
            );
        }
        body.push_str("</table>");
    }
    body.push_str("</div></details>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Endpoint, TraceId};

    /// Every span-provided string is escaped in the page; markup never gets through.
    #[test]
    fn escapes_span_values() {
        let evil = "<script>alert(\"x\")</script>";
        let span = Arc::new(Span {
            trace_id: TraceId { high: 0, low: 1 },
            id: 1,
            name: Some(evil.into()),
            timestamp: 1_700_000_000_000_000,
            duration: 10,
            local_endpoint: Some(Arc::new(Endpoint {
                service_name: Some(evil.into()),
                ..Endpoint::default()
            })),
            tags: crate::model::Tags::from_pairs(vec![
                (evil.into(), evil.into()),
                ("error".into(), "boom".into()),
            ]),
            annotations: vec![crate::model::Annotation {
                timestamp: 1_700_000_000_000_005,
                value: evil.into(),
            }]
            .into_boxed_slice(),
            ..Span::default()
        });
        let tree = SpanTree::build(std::slice::from_ref(&span));
        let html = render_trace(&tree, &[span]);
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("class=\"error\""));
    }

    /// Query-string values are percent-encoded.
    #[test]
    fn encodes_query_values() {
        assert_eq!(enc("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }
}
