//! Cleaning up one trace before it is served: Zipkin's `Trace.merge`.
//!
//! Spans can arrive in parts (the same span id sent twice by the same
//! tracer, e.g. tags reported after the fact), and in B3-style RPC the
//! client and server share one span id (the server side says
//! `shared: true`). Zipkin's storage may return raw parts; its UI and
//! dependency linker merge them with `Trace.merge`. We merge on read, as
//! Zipkin's MySQL storage does, so every client gets one span per part:
//! - parts with the same id, the same `shared` flag and compatible local
//!   endpoints become one span (fields filled, tags and annotations joined);
//! - a client and a server that share an id stay two spans; a server that
//!   forgot `shared` gets it back, and a shared server span that lacks its
//!   parent id takes the client's;
//! - every span gets the longest (128-bit) form of the trace id.
//!
//! The result is ordered as Zipkin orders it: by span id, client before
//! shared server, spans without endpoint first.

use std::cmp::Ordering;
use std::sync::Arc;

use crate::model::{Endpoint, Kind, Span};

/// Merges the spans of one trace (all with the same trace id, or the same
/// lower 64 bits when trace ids are looked up leniently).
pub fn merge_trace(spans: &[Arc<Span>]) -> Vec<Arc<Span>> {
    if spans.len() <= 1 {
        return spans.to_vec();
    }
    let mut result = spans.to_vec();
    result.sort_by(|a, b| cleanup_order(a, b));

    // Pick the longest trace id, exactly as Zipkin walks the list.
    let mut trace_id = result[0].trace_id;
    for s in &result[1..] {
        if !trace_id.is_128() {
            trace_id = s.trace_id;
        }
    }

    let mut last: Option<Arc<Span>> = None;
    let mut i = 0;
    while i < result.len() {
        let span = result[i].clone();
        let mut span_shared = span.shared;
        let mut replacement: Option<Span> = None;
        if span.trace_id.is_128() != trace_id.is_128() {
            let mut r = (*span).clone();
            r.trace_id = trace_id;
            replacement = Some(r);
        }

        let mut tracker: Option<EndpointTracker> = None;
        while i + 1 < result.len() {
            let next = result[i + 1].clone();
            if next.id != span.id {
                break;
            }
            let t = tracker.get_or_insert_with(|| {
                let mut t = EndpointTracker::default();
                t.try_merge(span.local_endpoint.as_deref());
                t
            });
            // Merge cautiously: only parts that look like the same side of the RPC.
            if span_shared == next.shared && t.try_merge(next.local_endpoint.as_deref()) {
                replacement
                    .get_or_insert_with(|| (*span).clone())
                    .merge_from(&next);
                result.remove(i + 1);
                continue;
            }
            break;
        }

        if let Some(last) = &last
            && last.id == span.id
        {
            // Backfill a missing shared flag: the list is ordered client first.
            if last.kind == Some(Kind::Client) && span.kind == Some(Kind::Server) && !span_shared {
                span_shared = true;
                replacement.get_or_insert_with(|| (*span).clone()).shared = true;
            }
            // A shared server span that was not told its parent id takes the client's.
            if span_shared && span.parent_id == 0 && last.parent_id != 0 {
                replacement.get_or_insert_with(|| (*span).clone()).parent_id = last.parent_id;
            }
        }

        let span = match replacement {
            Some(mut r) => {
                r.normalise();
                let r = Arc::new(r);
                result[i] = r.clone();
                r
            }
            None => span,
        };
        last = Some(span);
        i += 1;
    }
    result
}

/// Zipkin's `CLEANUP_COMPARATOR`.
fn cleanup_order(a: &Span, b: &Span) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    a.id.cmp(&b.id)
        .then_with(|| compare_shared(a, b))
        .then_with(|| compare_endpoint(a.local_endpoint.as_deref(), b.local_endpoint.as_deref()))
}

/// Not shared (client) first; among unshared spans, clients first.
fn compare_shared(a: &Span, b: &Span) -> Ordering {
    match (a.shared, b.shared) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        (false, false) => {}
    }
    let ac = a.kind == Some(Kind::Client);
    let bc = b.kind == Some(Kind::Client);
    match (ac, bc) {
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => Ordering::Equal,
    }
}

/// Absent endpoints first; then by service name, IPv4 and IPv6 text, where
/// (as in Zipkin's `nullSafeCompareTo`) an absent value sorts last.
fn compare_endpoint(a: Option<&Endpoint>, b: Option<&Endpoint>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => null_last(a.service_name.as_deref(), b.service_name.as_deref())
            .then_with(|| null_last(a.ipv4_string().as_deref(), b.ipv4_string().as_deref()))
            .then_with(|| null_last(a.ipv6_string().as_deref(), b.ipv6_string().as_deref())),
    }
}

fn null_last(a: Option<&str>, b: Option<&str>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(a), Some(b)) => a.cmp(b),
    }
}

/// Tracks whether endpoint parts could belong to one host (Zipkin's
/// `EndpointTracker`): parts merge unless a field disagrees.
#[derive(Default)]
struct EndpointTracker {
    service_name: Option<Arc<str>>,
    ipv4: Option<std::net::Ipv4Addr>,
    ipv6: Option<std::net::Ipv6Addr>,
    port: u16,
}

impl EndpointTracker {
    fn try_merge(&mut self, e: Option<&Endpoint>) -> bool {
        let Some(e) = e else {
            return true;
        };
        if let (Some(a), Some(b)) = (&self.service_name, &e.service_name)
            && a != b
        {
            return false;
        }
        if let (Some(a), Some(b)) = (self.ipv4, e.ipv4)
            && a != b
        {
            return false;
        }
        if let (Some(a), Some(b)) = (self.ipv6, e.ipv6)
            && a != b
        {
            return false;
        }
        if self.port != 0 && e.port != 0 && self.port != e.port {
            return false;
        }
        if self.service_name.is_none() {
            self.service_name = e.service_name.clone();
        }
        if self.ipv4.is_none() {
            self.ipv4 = e.ipv4;
        }
        if self.ipv6.is_none() {
            self.ipv6 = e.ipv6;
        }
        if self.port == 0 {
            self.port = e.port;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TraceId;

    fn ep(name: &str) -> Option<Arc<Endpoint>> {
        Some(Arc::new(Endpoint {
            service_name: Some(name.into()),
            ..Endpoint::default()
        }))
    }

    fn span(id: u64) -> Span {
        Span {
            trace_id: TraceId { high: 0, low: 1 },
            id,
            ..Span::default()
        }
    }

    /// Parts of one span merge; a client and its shared server stay apart, client first.
    #[test]
    fn merges_parts_and_keeps_rpc_sides() {
        let client = Span {
            kind: Some(Kind::Client),
            parent_id: 7,
            name: Some("get".into()),
            timestamp: 100,
            duration: 50,
            local_endpoint: ep("frontend"),
            ..span(2)
        };
        let server_part1 = Span {
            kind: Some(Kind::Server),
            shared: true,
            name: Some("get".into()),
            local_endpoint: ep("backend"),
            ..span(2)
        };
        let server_part2 = Span {
            kind: Some(Kind::Server),
            shared: true,
            timestamp: 110,
            duration: 30,
            local_endpoint: ep("backend"),
            tags: crate::model::Tags::from_pairs(vec![("http.status_code".into(), "200".into())]),
            ..span(2)
        };
        let out = merge_trace(&[
            Arc::new(server_part1),
            Arc::new(client.clone()),
            Arc::new(server_part2),
        ]);
        assert_eq!(out.len(), 2);
        assert_eq!(*out[0], client);
        let server = &out[1];
        assert!(server.shared);
        assert_eq!(server.timestamp, 110);
        assert_eq!(server.tag("http.status_code"), Some("200"));
        assert_eq!(
            server.parent_id, 7,
            "shared server takes the client's parent"
        );
    }

    /// A server sharing its client's id without the flag gets `shared` back; ids become 128-bit.
    #[test]
    fn backfills_shared_and_longest_trace_id() {
        let client = Span {
            kind: Some(Kind::Client),
            local_endpoint: ep("a"),
            trace_id: TraceId { high: 9, low: 1 },
            ..span(3)
        };
        let server = Span {
            kind: Some(Kind::Server),
            local_endpoint: ep("b"),
            ..span(3)
        };
        let out = merge_trace(&[Arc::new(server), Arc::new(client)]);
        assert_eq!(out.len(), 2);
        assert!(out[1].shared);
        assert!(
            out.iter()
                .all(|s| s.trace_id == TraceId { high: 9, low: 1 })
        );
    }

    /// Parts whose local endpoints disagree are different spans and are not merged.
    #[test]
    fn keeps_conflicting_endpoints_apart() {
        let a = Span {
            local_endpoint: ep("a"),
            ..span(4)
        };
        let b = Span {
            local_endpoint: ep("b"),
            ..span(4)
        };
        assert_eq!(merge_trace(&[Arc::new(a), Arc::new(b)]).len(), 2);
    }
}
