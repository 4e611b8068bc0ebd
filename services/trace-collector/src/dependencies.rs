//! Service dependency links: Zipkin's `DependencyLinker`.
//!
//! Walking each trace tree breadth-first, a link parent → child is counted
//! - for a SERVER (or CONSUMER) span: from the caller (its remote service,
//!   or the nearest remote ancestor's service) to this span's service;
//! - for a CLIENT span only when it has no children (the callee is
//!   uninstrumented): from this service to its remote service;
//! - for PRODUCER / CONSUMER spans: producer → broker and broker → consumer,
//!   where the broker is the `remoteEndpoint` service name;
//! - for a span without kind but with both service names: as a client.
//!
//! A call is an error when the span (or, for a server span whose client
//! is its direct parent, that client) has the `error` tag.

use std::collections::HashMap;
use std::sync::Arc;

use crate::model::{DependencyLink, Kind, Span};
use crate::tree::SpanTree;

/// Accumulates links over many traces, keeping first-seen order.
#[derive(Debug, Default)]
pub struct DependencyLinker {
    order: Vec<(String, String)>,
    counts: HashMap<(String, String), (u64, u64)>,
}

impl DependencyLinker {
    pub fn new() -> DependencyLinker {
        DependencyLinker::default()
    }

    /// Adds the links of one trace (all spans share the trace id, or its lower 64 bits).
    pub fn put_trace(&mut self, spans: &[Arc<Span>]) {
        if spans.is_empty() {
            return;
        }
        let tree = SpanTree::build(spans);
        for n in tree.breadth_first() {
            let Some(span) = tree.span(n) else { continue };
            let mut kind = span.kind;
            // Prefer the server's name: a client with children is linked by them.
            if kind == Some(Kind::Client) && !tree.nodes[n].children.is_empty() {
                continue;
            }
            let service = span.local_service_name();
            let remote = span.remote_service_name();
            if kind.is_none() {
                if service.is_some() && remote.is_some() {
                    kind = Some(Kind::Client);
                } else {
                    continue;
                }
            }
            let (mut parent, child) = match kind {
                Some(Kind::Server) | Some(Kind::Consumer) => {
                    if n == tree.root && remote.is_none() {
                        continue; // the root's caller is unknown
                    }
                    (remote, service)
                }
                _ => (service, remote),
            };
            let mut is_error = span.is_error();
            if matches!(kind, Some(Kind::Producer) | Some(Kind::Consumer)) {
                if let (Some(p), Some(c)) = (parent, child) {
                    self.add(p, c, is_error);
                }
                continue;
            }

            // Local spans may sit between this span and its remote parent.
            if let Some(ancestor) = first_remote_ancestor(&tree, n)
                && let Some(ancestor_name) = ancestor.local_service_name()
            {
                // Backfill a link when the remote service name was put on a client span by mistake.
                if kind == Some(Kind::Client)
                    && let Some(s) = service
                    && ancestor_name != s
                {
                    self.add(ancestor_name, s, false);
                }
                if kind == Some(Kind::Server) || parent.is_none() {
                    parent = Some(ancestor_name);
                }
                // An RPC split in two spans: the client side may hold the error.
                if !is_error
                    && ancestor.kind == Some(Kind::Client)
                    && span.parent_id != 0
                    && span.parent_id == ancestor.id
                {
                    is_error = ancestor.is_error();
                }
            }
            if let (Some(p), Some(c)) = (parent, child) {
                self.add(p, c, is_error);
            }
        }
    }

    fn add(&mut self, parent: &str, child: &str, is_error: bool) {
        let key = (parent.to_string(), child.to_string());
        let entry = self.counts.entry(key.clone()).or_insert_with(|| {
            self.order.push(key);
            (0, 0)
        });
        entry.0 += 1;
        if is_error {
            entry.1 += 1;
        }
    }

    /// The links, in the order they were first seen.
    pub fn link(self) -> Vec<DependencyLink> {
        let counts = self.counts;
        self.order
            .into_iter()
            .map(|k| {
                let (call_count, error_count) = counts.get(&k).copied().unwrap_or((0, 0));
                DependencyLink {
                    parent: k.0,
                    child: k.1,
                    call_count,
                    error_count,
                }
            })
            .collect()
    }
}

fn first_remote_ancestor(tree: &SpanTree, n: usize) -> Option<&Arc<Span>> {
    let mut cur = tree.nodes[n].parent;
    while let Some(p) = cur {
        if let Some(s) = tree.span(p)
            && s.kind.is_some()
        {
            return Some(s);
        }
        cur = tree.nodes[p].parent;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Endpoint, TraceId};

    fn ep(n: &str) -> Option<Arc<Endpoint>> {
        Some(Arc::new(Endpoint {
            service_name: Some(n.into()),
            ..Endpoint::default()
        }))
    }

    fn span(
        id: u64,
        parent: u64,
        kind: Option<Kind>,
        local: &str,
        remote: Option<&str>,
    ) -> Arc<Span> {
        Arc::new(Span {
            trace_id: TraceId { high: 0, low: 7 },
            id,
            parent_id: parent,
            kind,
            timestamp: id,
            local_endpoint: ep(local),
            remote_endpoint: remote.and_then(ep),
            ..Span::default()
        })
    }

    fn links(spans: &[Arc<Span>]) -> Vec<(String, String, u64, u64)> {
        let mut l = DependencyLinker::new();
        l.put_trace(spans);
        l.link()
            .into_iter()
            .map(|d| (d.parent, d.child, d.call_count, d.error_count))
            .collect()
    }

    /// gateway → order over HTTP with a local span between, an uninstrumented DB client, and Kafka via a broker.
    #[test]
    fn rpc_uninstrumented_and_messaging() {
        let mut err_client = (*span(5, 4, Some(Kind::Client), "order", Some("mysql"))).clone();
        err_client.tags = crate::model::Tags::from_pairs(vec![("error".into(), "timeout".into())]);
        let spans = vec![
            span(1, 0, Some(Kind::Server), "gateway", None),
            span(2, 1, Some(Kind::Client), "gateway", Some("order")),
            span(3, 2, Some(Kind::Server), "order", Some("gateway")),
            span(4, 3, None, "order", None),
            Arc::new(err_client),
            span(6, 3, Some(Kind::Producer), "order", Some("kafka")),
            span(7, 6, Some(Kind::Consumer), "notification", Some("kafka")),
        ];
        assert_eq!(
            links(&spans),
            vec![
                ("gateway".into(), "order".into(), 1, 0),
                ("order".into(), "kafka".into(), 1, 0),
                ("order".into(), "mysql".into(), 1, 1),
                ("kafka".into(), "notification".into(), 1, 0),
            ]
        );
    }

    /// A root server span whose caller is unknown adds no link; a shared-id RPC counts once.
    #[test]
    fn shared_span_rpc_counts_once() {
        let client = span(2, 1, Some(Kind::Client), "frontend", None);
        let mut server = (*span(2, 1, Some(Kind::Server), "backend", None)).clone();
        server.shared = true;
        let spans = vec![
            span(1, 0, Some(Kind::Server), "frontend", None),
            client,
            Arc::new(server),
        ];
        assert_eq!(
            links(&spans),
            vec![("frontend".into(), "backend".into(), 1, 0)]
        );
    }
}
