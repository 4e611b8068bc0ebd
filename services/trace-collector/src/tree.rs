//! The span tree of one trace: Zipkin's `SpanNode.Builder`, used by the
//! dependency linker and by the waterfall page.
//!
//! Spans are merged first ([`merge_trace`]); then each is placed under its
//! parent. A shared server span sits under the client span with the same
//! id; a local span under a shared server span on the same host. The first
//! span without a parent is the root; other orphans (headless or
//! depth-first reporting) hang from the root, or from a synthetic root when
//! no span is a root. Children are ordered by timestamp.
//!
//! The tree lives in an arena (`Vec<Node>`); bad input (cycles, duplicate
//! ids) can never make a node appear twice or loop the traversal.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::merge::merge_trace;
use crate::model::{Endpoint, Span};

/// One node; `span` is `None` only for a synthetic root.
#[derive(Debug)]
pub struct Node {
    pub span: Option<Arc<Span>>,
    pub parent: Option<usize>,
    pub children: Vec<usize>,
}

/// A trace as a tree.
#[derive(Debug)]
pub struct SpanTree {
    pub nodes: Vec<Node>,
    pub root: usize,
}

/// How Zipkin keys spans while building the tree: by id, or (for shared
/// server spans) by id and local endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Id(u64),
    Shared(u64, Option<Endpoint>),
}

fn create_key(id: u64, shared: bool, endpoint: Option<&Endpoint>) -> Key {
    if shared {
        Key::Shared(id, endpoint.cloned())
    } else {
        Key::Id(id)
    }
}

/// An insertion-ordered map with Java `LinkedHashMap` semantics (re-putting
/// a key keeps its position), which the tree's child order depends on.
#[derive(Default)]
struct Linked<V> {
    index: HashMap<Key, usize>,
    entries: Vec<Option<(Key, V)>>,
}

impl<V> Linked<V> {
    fn put(&mut self, k: Key, v: V) {
        match self.index.get(&k) {
            Some(&i) => {
                if let Some(e) = self.entries[i].as_mut() {
                    e.1 = v;
                }
            }
            None => {
                self.index.insert(k.clone(), self.entries.len());
                self.entries.push(Some((k, v)));
            }
        }
    }
    fn contains(&self, k: &Key) -> bool {
        self.index.contains_key(k)
    }
    fn remove(&mut self, k: &Key) {
        if let Some(i) = self.index.remove(k) {
            self.entries[i] = None;
        }
    }
    fn iter(&self) -> impl Iterator<Item = &(Key, V)> {
        self.entries.iter().flatten()
    }
}

impl SpanTree {
    /// Builds the tree of one trace's spans (not empty).
    pub fn build(spans: &[Arc<Span>]) -> SpanTree {
        let cleaned = merge_trace(spans);
        let mut nodes: Vec<Node> = Vec::with_capacity(cleaned.len() + 1);
        let mut span_to_parent: Linked<Option<Key>> = Linked::default();
        let mut key_to_node: HashMap<Key, usize> = HashMap::new();
        let mut root: Option<usize> = None;

        // Index every span first, so that processing knows all relationships.
        for s in &cleaned {
            if s.shared {
                // A shared server span is classified by endpoint: several
                // servers may answer one client span id.
                span_to_parent.put(
                    create_key(s.id, true, s.local_endpoint.as_deref()),
                    Some(Key::Id(s.id)),
                );
            } else {
                let parent = (s.parent_id != 0).then_some(Key::Id(s.parent_id));
                span_to_parent.put(Key::Id(s.id), parent);
            }
        }

        for s in &cleaned {
            let endpoint = s.local_endpoint.as_deref();
            let key = create_key(s.id, s.shared, endpoint);
            let no_endpoint_key = if endpoint.is_some() {
                create_key(s.id, s.shared, None)
            } else {
                key.clone()
            };
            let mut parent: Option<Key> = None;
            if s.shared {
                parent = Some(Key::Id(s.id));
            } else if s.parent_id != 0 {
                // Most specific first: a child of a shared server span on this host.
                let shared_parent = create_key(s.parent_id, true, endpoint);
                if span_to_parent.contains(&shared_parent) {
                    span_to_parent.put(no_endpoint_key.clone(), Some(shared_parent.clone()));
                    parent = Some(shared_parent);
                } else {
                    parent = Some(Key::Id(s.parent_id));
                }
            }

            let node = nodes.len();
            nodes.push(Node {
                span: Some(s.clone()),
                parent: None,
                children: Vec::new(),
            });
            if parent.is_none() && root.is_none() {
                root = Some(node);
                span_to_parent.remove(&no_endpoint_key);
            } else if s.shared {
                key_to_node.insert(key, node);
                key_to_node.insert(no_endpoint_key, node);
            } else {
                key_to_node.insert(no_endpoint_key, node);
            }
        }

        let root = match root {
            Some(r) => r,
            None => {
                nodes.push(Node {
                    span: None,
                    parent: None,
                    children: Vec::new(),
                });
                nodes.len() - 1
            }
        };

        for (child_key, parent_key) in span_to_parent.iter() {
            let Some(&child) = key_to_node.get(child_key) else {
                continue;
            };
            if child == root || nodes[child].parent.is_some() {
                continue;
            }
            let parent = parent_key
                .as_ref()
                .and_then(|k| key_to_node.get(k).copied())
                .filter(|p| *p != child && !is_descendant(&nodes, *p, child))
                .unwrap_or(root);
            nodes[child].parent = Some(parent);
            nodes[parent].children.push(child);
        }

        // Siblings by timestamp (stable, like Collections.sort).
        let mut queue = vec![root];
        while let Some(n) = queue.pop() {
            let mut children = std::mem::take(&mut nodes[n].children);
            children.sort_by_key(|c| nodes[*c].span.as_ref().map(|s| s.timestamp).unwrap_or(0));
            queue.extend(children.iter().copied());
            nodes[n].children = children;
        }
        SpanTree { nodes, root }
    }

    /// Nodes breadth-first; a synthetic root is skipped (its children start).
    pub fn breadth_first(&self) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.nodes.len());
        let mut queue: VecDeque<usize> = VecDeque::new();
        if self.nodes[self.root].span.is_none() {
            queue.extend(self.nodes[self.root].children.iter().copied());
        } else {
            queue.push_back(self.root);
        }
        while let Some(n) = queue.pop_front() {
            out.push(n);
            queue.extend(self.nodes[n].children.iter().copied());
        }
        out
    }

    /// Nodes depth-first (the waterfall's row order) with their depth; a
    /// synthetic root is skipped and its children are at depth 0.
    pub fn depth_first(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::with_capacity(self.nodes.len());
        let mut stack: Vec<(usize, usize)> = Vec::new();
        if self.nodes[self.root].span.is_none() {
            for c in self.nodes[self.root].children.iter().rev() {
                stack.push((*c, 0));
            }
        } else {
            stack.push((self.root, 0));
        }
        while let Some((n, depth)) = stack.pop() {
            out.push((n, depth));
            for c in self.nodes[n].children.iter().rev() {
                stack.push((*c, depth + 1));
            }
        }
        out
    }

    /// The span of a node (`None` for a synthetic root).
    pub fn span(&self, n: usize) -> Option<&Arc<Span>> {
        self.nodes[n].span.as_ref()
    }
}

/// Whether `node` lies under `ancestor` (guards against cycles in bad data).
fn is_descendant(nodes: &[Node], node: usize, ancestor: usize) -> bool {
    let mut cur = nodes[node].parent;
    let mut steps = 0;
    while let Some(p) = cur {
        if p == ancestor {
            return true;
        }
        steps += 1;
        if steps > nodes.len() {
            return true;
        }
        cur = nodes[p].parent;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Kind, TraceId};

    fn span(id: u64, parent: u64, ts: u64) -> Span {
        Span {
            trace_id: TraceId { high: 0, low: 1 },
            id,
            parent_id: parent,
            timestamp: ts,
            ..Span::default()
        }
    }

    fn ids(tree: &SpanTree, order: &[usize]) -> Vec<u64> {
        order
            .iter()
            .map(|n| tree.span(*n).map(|s| s.id).unwrap_or(0))
            .collect()
    }

    /// Children sort by timestamp; a shared server span hangs under its client; orphans go to the root.
    #[test]
    fn builds_like_zipkin() {
        let ep = |n: &str| {
            Some(Arc::new(Endpoint {
                service_name: Some(n.into()),
                ..Endpoint::default()
            }))
        };
        let spans = vec![
            Arc::new(span(1, 0, 10)),
            Arc::new(Span {
                kind: Some(Kind::Client),
                local_endpoint: ep("a"),
                ..span(3, 1, 30)
            }),
            Arc::new(Span {
                kind: Some(Kind::Server),
                shared: true,
                local_endpoint: ep("b"),
                ..span(3, 1, 31)
            }),
            Arc::new(Span {
                local_endpoint: ep("b"),
                ..span(4, 3, 32)
            }),
            Arc::new(span(2, 1, 20)),
            Arc::new(span(9, 8, 5)), // parent 8 never arrived
        ];
        let tree = SpanTree::build(&spans);
        let bfs = tree.breadth_first();
        assert_eq!(ids(&tree, &bfs), vec![1, 9, 2, 3, 3, 4]);
        let dfs = tree.depth_first();
        let shaped: Vec<(u64, usize)> = dfs
            .iter()
            .map(|(n, d)| (tree.span(*n).unwrap().id, *d))
            .collect();
        assert_eq!(shaped, vec![(1, 0), (9, 1), (2, 1), (3, 1), (3, 2), (4, 3)]);
    }

    /// Without any root span the tree gets a synthetic root; cycles do not loop.
    #[test]
    fn headless_and_cyclic_input() {
        let spans = vec![Arc::new(span(2, 3, 1)), Arc::new(span(3, 2, 2))];
        let tree = SpanTree::build(&spans);
        assert!(tree.span(tree.root).is_none());
        assert!(tree.breadth_first().len() <= 2);
        assert!(tree.depth_first().len() <= 2);
    }
}
