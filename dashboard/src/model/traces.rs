//! The traces panel's data: recent traces from the Zipkin API, newest first, each summarised
//! (root operation, duration, span count, error flag), and the one opened as a waterfall. The
//! waterfall's layout (span tree in start order, offsets from the trace's start) is computed
//! here, purely, so it is tested without a terminal.

use std::collections::{BTreeMap, HashSet};

/// One span, as much of Zipkin's span as the dashboard draws.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanView {
    pub id: String,
    pub parent_id: Option<String>,
    /// The service that recorded it (`?` when the span does not say).
    pub service: String,
    pub name: String,
    /// `SERVER`, `CLIENT`, `PRODUCER`, `CONSUMER`, or none for local spans.
    pub kind: Option<String>,
    /// Microseconds since the epoch.
    pub start_us: u64,
    pub duration_us: u64,
    /// Tagged as an error (Zipkin's `error` tag or an HTTP status of 500 or more).
    pub error: bool,
}

/// A trace and its spans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceView {
    pub id: String,
    pub spans: Vec<SpanView>,
}

impl TraceView {
    /// The root span: one without a parent in the trace (the earliest if several).
    pub fn root(&self) -> Option<&SpanView> {
        let ids: HashSet<&str> = self.spans.iter().map(|s| s.id.as_str()).collect();
        self.spans
            .iter()
            .filter(|s| s.parent_id.as_deref().is_none_or(|p| !ids.contains(p)))
            .min_by_key(|s| s.start_us)
    }

    /// The earliest start.
    pub fn start_us(&self) -> u64 {
        self.spans.iter().map(|s| s.start_us).min().unwrap_or(0)
    }

    /// From the earliest start to the latest end.
    pub fn duration_us(&self) -> u64 {
        let end = self
            .spans
            .iter()
            .map(|s| s.start_us + s.duration_us)
            .max()
            .unwrap_or(0);
        end.saturating_sub(self.start_us())
    }

    /// Whether any span is an error.
    pub fn error(&self) -> bool {
        self.spans.iter().any(|s| s.error)
    }

    /// The distinct services that recorded spans.
    pub fn services(&self) -> usize {
        self.spans
            .iter()
            .map(|s| s.service.as_str())
            .collect::<HashSet<_>>()
            .len()
    }

    /// `api-gateway: post /api/order`.
    pub fn root_operation(&self) -> String {
        match self.root() {
            Some(r) => format!("{}: {}", r.service, r.name),
            None => "(no spans)".to_string(),
        }
    }
}

/// One row of a waterfall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaterfallRow<'a> {
    /// Nesting below the root (0 = root).
    pub depth: usize,
    pub span: &'a SpanView,
    /// Start relative to the trace's start.
    pub offset_us: u64,
}

/// The spans of `trace` in tree order: each span after its parent, siblings by start time;
/// spans whose parent is missing start trees of their own.
pub fn waterfall(trace: &TraceView) -> Vec<WaterfallRow<'_>> {
    let start = trace.start_us();
    let ids: HashSet<&str> = trace.spans.iter().map(|s| s.id.as_str()).collect();
    let mut children: BTreeMap<Option<&str>, Vec<&SpanView>> = BTreeMap::new();
    for s in &trace.spans {
        let parent = s
            .parent_id
            .as_deref()
            .filter(|p| ids.contains(p) && *p != s.id);
        children.entry(parent).or_default().push(s);
    }
    for list in children.values_mut() {
        list.sort_by(|a, b| (a.start_us, &a.id).cmp(&(b.start_us, &b.id)));
    }
    let mut out = Vec::with_capacity(trace.spans.len());
    let mut visited: HashSet<&str> = HashSet::new();
    let mut stack: Vec<(usize, &SpanView)> = children
        .get(&None)
        .map(|roots| roots.iter().rev().map(|s| (0, *s)).collect())
        .unwrap_or_default();
    while let Some((depth, span)) = stack.pop() {
        // Duplicate ids (a broken exporter) must not loop.
        if !visited.insert(span.id.as_str()) {
            continue;
        }
        out.push(WaterfallRow {
            depth,
            span,
            offset_us: span.start_us.saturating_sub(start),
        });
        if let Some(kids) = children.get(&Some(span.id.as_str())) {
            stack.extend(kids.iter().rev().map(|k| (depth + 1, *k)));
        }
    }
    // Spans only reachable through a cycle of parents: show them flat at the end.
    for s in &trace.spans {
        if visited.insert(s.id.as_str()) {
            out.push(WaterfallRow {
                depth: 0,
                span: s,
                offset_us: s.start_us.saturating_sub(start),
            });
        }
    }
    out
}

/// The trace shown as a waterfall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenTrace {
    /// Asked for, not here yet.
    Loading {
        id: String,
    },
    Loaded(TraceView),
    /// The collector does not have it, or could not be read.
    Failed {
        id: String,
        error: String,
    },
}

impl OpenTrace {
    pub fn id(&self) -> &str {
        match self {
            OpenTrace::Loading { id } | OpenTrace::Failed { id, .. } => id,
            OpenTrace::Loaded(t) => &t.id,
        }
    }
}

/// What the panel keeps.
#[derive(Debug, Clone, Default)]
pub struct Traces {
    /// Newest first.
    pub list: Vec<TraceView>,
    /// The trace shown as a waterfall, if any.
    pub open: Option<OpenTrace>,
    /// The collector's UI as the host's browser reaches it (`http://127.0.0.1:9411`), for
    /// links; `None` when the stack does not publish it.
    pub ui_base: Option<String>,
}

impl Traces {
    /// Takes a fresh list (newest first by start time).
    pub fn apply(&mut self, mut list: Vec<TraceView>) {
        list.sort_by_key(|t| std::cmp::Reverse(t.start_us()));
        // A trace that was loading and is in the list now is loaded.
        if let Some(OpenTrace::Loading { id }) = &self.open
            && let Some(t) = list.iter().find(|t| &t.id == id)
        {
            self.open = Some(OpenTrace::Loaded(t.clone()));
        }
        self.list = list;
    }

    /// The Zipkin UI link of a trace.
    pub fn link(&self, id: &str) -> Option<String> {
        self.ui_base
            .as_ref()
            .map(|b| format!("{}/zipkin/traces/{id}", b.trim_end_matches('/')))
    }

    /// A trace of the list by id.
    pub fn find(&self, id: &str) -> Option<&TraceView> {
        self.list.iter().find(|t| t.id == id)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A span starting `start` ms after t0 and lasting `ms` milliseconds.
    pub(crate) fn span(
        id: &str,
        parent: Option<&str>,
        service: &str,
        name: &str,
        start: u64,
        ms: u64,
    ) -> SpanView {
        SpanView {
            id: id.into(),
            parent_id: parent.map(str::to_string),
            service: service.into(),
            name: name.into(),
            kind: Some("SERVER".into()),
            start_us: 1_700_000_000_000_000 + start * 1000,
            duration_us: ms * 1000,
            error: false,
        }
    }

    /// The order flow's trace: gateway → order-service → (inventory, insert, publish) →
    /// notification.
    pub(crate) fn order_trace(id: &str, error: bool) -> TraceView {
        let mut inv = span(
            "3",
            Some("2"),
            "inventory-service",
            "get /api/inventory",
            4,
            6,
        );
        inv.error = error;
        TraceView {
            id: id.into(),
            spans: vec![
                span("5", Some("2"), "order-service", "insert orders", 12, 3),
                span("1", None, "api-gateway", "post /api/order", 0, 30),
                span("2", Some("1"), "order-service", "post /api/order", 2, 26),
                inv,
                span(
                    "6",
                    Some("5"),
                    "notification-service",
                    "order-placed receive",
                    20,
                    5,
                ),
            ],
        }
    }

    /// The root is the span without a parent; duration runs from the first start to the last
    /// end; the error flag and services are found.
    #[test]
    fn summary() {
        let t = order_trace("a", true);
        assert_eq!(t.root_operation(), "api-gateway: post /api/order");
        assert_eq!(t.duration_us(), 30_000);
        assert!(t.error());
        assert_eq!(t.services(), 4);
        assert!(!order_trace("b", false).error());
    }

    /// The waterfall lists each span under its parent, siblings by start time, with depths
    /// and offsets; a span whose parent is missing starts its own tree; a parent cycle does
    /// not loop.
    #[test]
    fn waterfall_order() {
        let mut t = order_trace("a", false);
        t.spans
            .push(span("9", Some("missing"), "x", "orphan", 1, 1));
        let rows = waterfall(&t);
        let ids: Vec<(&str, usize)> = rows.iter().map(|r| (r.span.id.as_str(), r.depth)).collect();
        assert_eq!(
            ids,
            vec![("1", 0), ("2", 1), ("3", 2), ("5", 2), ("6", 3), ("9", 0)]
        );
        assert_eq!(rows[1].offset_us, 2000);

        let cyclic = TraceView {
            id: "c".into(),
            spans: vec![
                span("a", Some("b"), "s", "a", 0, 1),
                span("b", Some("a"), "s", "b", 0, 1),
            ],
        };
        assert_eq!(waterfall(&cyclic).len(), 2);
    }

    /// The list is newest first; a trace being loaded is taken from a list that has it.
    #[test]
    fn list_and_open() {
        let mut traces = Traces {
            open: Some(OpenTrace::Loading { id: "b".into() }),
            ui_base: Some("http://127.0.0.1:9411/".into()),
            ..Traces::default()
        };
        let mut later = order_trace("b", false);
        for s in &mut later.spans {
            s.start_us += 1_000_000;
        }
        traces.apply(vec![order_trace("a", false), later]);
        assert_eq!(traces.list[0].id, "b");
        assert!(matches!(traces.open, Some(OpenTrace::Loaded(_))));
        assert_eq!(
            traces.link("b").as_deref(),
            Some("http://127.0.0.1:9411/zipkin/traces/b")
        );
    }
}
