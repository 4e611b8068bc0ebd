//! The bounded in-memory span store, modelled on Zipkin's `InMemoryStorage`.
//!
//! - Spans are grouped by the lower 64 bits of their trace id, so a 64-bit
//!   id finds a 128-bit trace and the other way round. With
//!   `strict_trace_id` (Zipkin's default) lookups then keep only spans whose
//!   full trace id matches; without it (our default) they return the whole
//!   group, which Zipkin calls non-strict mode.
//! - A time index of distinct (span timestamp in ms, trace) pairs orders
//!   queries newest first and eviction oldest first, exactly as Zipkin's
//!   `spansByTraceIdTimestamp`. Spans without timestamp count as time 0.
//! - At most `max_spans` spans (parts, as received) are kept. Before a
//!   message is stored, whole traces are evicted, oldest first (the trace
//!   holding the oldest span timestamp), until its new spans fit; as in
//!   Zipkin, the new spans themselves are therefore never the victims. A
//!   message larger than the limit keeps only its newest traces.
//! - Exact duplicates of a stored span are dropped (Zipkin keeps spans in a
//!   set), so a retried upload neither grows the store nor evicts anything.
//! - Service, span-name, remote-service and autocomplete indexes are
//!   reference-counted per span and updated on eviction, so they always
//!   describe exactly the stored spans. (Zipkin's own in-memory store only
//!   drops a service's names once the service has no trace left.)
//! - Strings, endpoints and tag key lists are interned: a trace of the
//!   platform repeats the same service names, endpoints, span names, tag
//!   keys and most tag values in every span, so each is stored once (see
//!   [`Tags`]). Interned values no span uses any more are pruned after
//!   evictions.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use crate::decode::{ValidEndpoint, ValidSpan};
use crate::model::{Annotation, Endpoint, Span, Tags, TraceId};

/// Store settings.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Spans kept at most; older traces are evicted beyond it.
    pub max_spans: usize,
    /// Whether lookups by trace id must match all 128 bits (Zipkin's `STRICT_TRACE_ID`).
    pub strict_trace_id: bool,
    /// Tag keys whose values `/api/v2/autocompleteValues` lists.
    pub autocomplete_keys: Vec<String>,
}

/// What one stored message did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct InsertOutcome {
    pub stored: usize,
    pub duplicates: usize,
    pub evicted_spans: usize,
    pub evicted_traces: usize,
}

/// Counters describing the store now.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    pub spans: usize,
    pub traces: usize,
    pub services: usize,
    /// Estimated heap bytes of the stored spans (not counting interned strings twice).
    pub span_bytes: usize,
}

/// Interned strings, endpoints and tag key lists.
#[derive(Default)]
struct Interner {
    strings: HashSet<Arc<str>>,
    endpoints: HashSet<Arc<Endpoint>>,
    key_lists: HashSet<Arc<[Arc<str>]>>,
    /// Size after the last prune; the next prune waits until the sets double.
    pruned_at: usize,
}

impl Interner {
    fn str(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.strings.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.strings.insert(a.clone());
        a
    }

    fn endpoint(&mut self, e: &ValidEndpoint<'_>) -> Arc<Endpoint> {
        let ep = Endpoint {
            service_name: e.service_name.as_deref().map(|s| self.str(s)),
            ipv4: e.ipv4,
            ipv6: e.ipv6,
            port: e.port,
        };
        if let Some(a) = self.endpoints.get(&ep) {
            return a.clone();
        }
        let a = Arc::new(ep);
        self.endpoints.insert(a.clone());
        a
    }

    fn key_list(&mut self, keys: &Arc<[Arc<str>]>) -> Arc<[Arc<str>]> {
        if let Some(a) = self.key_lists.get(&**keys) {
            return a.clone();
        }
        self.key_lists.insert(keys.clone());
        keys.clone()
    }

    fn len(&self) -> usize {
        self.strings.len() + self.endpoints.len() + self.key_lists.len()
    }

    /// Drops values only the interner still holds, once it has doubled
    /// since the last prune (amortised O(1) per interned value).
    fn maybe_prune(&mut self) {
        if self.len() < 1024 || self.len() < self.pruned_at.saturating_mul(2) {
            return;
        }
        // Endpoints and key lists first: they hold strings.
        self.endpoints.retain(|e| Arc::strong_count(e) > 1);
        self.key_lists.retain(|k| Arc::strong_count(k) > 1);
        self.strings.retain(|s| Arc::strong_count(s) > 1);
        self.pruned_at = self.len();
    }
}

/// One service's names, counted per stored span.
#[derive(Default)]
struct ServiceIndex {
    spans: usize,
    span_names: HashMap<Arc<str>, usize>,
    remote_services: HashMap<Arc<str>, usize>,
}

/// The spans sharing the lower 64 bits of a trace id.
#[derive(Default)]
struct TraceEntry {
    spans: Vec<Arc<Span>>,
}

/// The store; wrap it in a lock to share it.
pub struct Store {
    config: StoreConfig,
    traces: HashMap<u64, TraceEntry>,
    /// (span timestamp in ms, lower 64 bits of trace id), one per distinct pair.
    by_time: BTreeSet<(u64, u64)>,
    span_count: usize,
    span_bytes: usize,
    services: HashMap<Arc<str>, ServiceIndex>,
    autocomplete_keys: HashSet<String>,
    autocomplete: HashMap<Arc<str>, HashMap<Arc<str>, usize>>,
    interner: Interner,
}

fn dec(map: &mut HashMap<Arc<str>, usize>, key: &str) {
    if let Some(c) = map.get_mut(key) {
        *c -= 1;
        if *c == 0 {
            map.remove(key);
        }
    }
}

/// Heap bytes a span owns beyond what it shares through the interner.
fn span_heap_bytes(s: &Span) -> usize {
    std::mem::size_of::<Span>()
        + 16 // Arc counts
        + s.annotations.len() * std::mem::size_of::<Annotation>()
        + s.tags.len() * std::mem::size_of::<Arc<str>>()
}

impl Store {
    pub fn new(config: StoreConfig) -> Store {
        let autocomplete_keys = config.autocomplete_keys.iter().cloned().collect();
        Store {
            config,
            traces: HashMap::new(),
            by_time: BTreeSet::new(),
            span_count: 0,
            span_bytes: 0,
            services: HashMap::new(),
            autocomplete_keys,
            autocomplete: HashMap::new(),
            interner: Interner::default(),
        }
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    pub fn stats(&self) -> StoreStats {
        StoreStats {
            spans: self.span_count,
            traces: self.traces.len(),
            services: self.services.len(),
            span_bytes: self.span_bytes,
        }
    }

    /// Stores a validated message, evicting the oldest traces to stay
    /// within the limit.
    pub fn insert(&mut self, batch: Vec<ValidSpan<'_>>) -> InsertOutcome {
        let mut outcome = InsertOutcome::default();
        let spans: Vec<Arc<Span>> = batch
            .into_iter()
            .map(|v| Arc::new(self.intern(v)))
            .collect();
        // Room for the spans not already stored (a retried upload needs none),
        // made before storing so the new spans are never the ones evicted.
        let fresh = spans.iter().filter(|s| !self.contains(s)).count();
        while self.span_count + fresh > self.config.max_spans && !self.traces.is_empty() {
            let (spans, _) = self.evict_oldest();
            outcome.evicted_spans += spans;
            outcome.evicted_traces += 1;
        }
        for span in spans {
            if self.add(span) {
                outcome.stored += 1;
            } else {
                outcome.duplicates += 1;
            }
        }
        // Only a message larger than the whole store (or one re-sending spans
        // of the trace just evicted) gets here.
        while self.span_count > self.config.max_spans && !self.traces.is_empty() {
            let (spans, _) = self.evict_oldest();
            outcome.evicted_spans += spans;
            outcome.evicted_traces += 1;
        }
        if outcome.evicted_traces > 0 {
            self.interner.maybe_prune();
        }
        outcome
    }

    /// Whether this exact span is stored.
    fn contains(&self, span: &Span) -> bool {
        self.traces
            .get(&span.trace_id.low)
            .is_some_and(|e| e.spans.iter().any(|s| s.id == span.id && **s == *span))
    }

    fn intern(&mut self, v: ValidSpan<'_>) -> Span {
        let i = &mut self.interner;
        let mut span = Span {
            trace_id: v.trace_id,
            parent_id: v.parent_id,
            id: v.id,
            kind: v.kind,
            name: v.name.as_deref().map(|n| i.str(n)),
            timestamp: v.timestamp,
            duration: v.duration,
            local_endpoint: v.local_endpoint.as_ref().map(|e| i.endpoint(e)),
            remote_endpoint: v.remote_endpoint.as_ref().map(|e| i.endpoint(e)),
            annotations: v
                .annotations
                .iter()
                .map(|(ts, value)| Annotation {
                    timestamp: *ts,
                    value: i.str(value),
                })
                .collect(),
            tags: Tags::default(),
            debug: v.debug,
            shared: v.shared,
        };
        let tags = Tags::from_pairs(
            v.tags
                .iter()
                .map(|(k, val)| (i.str(k), i.str(val)))
                .collect(),
        );
        let keys = i.key_list(tags.keys());
        span.tags = tags.with_keys(keys);
        span.normalise();
        span
    }

    /// Adds a span unless the same span is already stored.
    fn add(&mut self, span: Arc<Span>) -> bool {
        let low = span.trace_id.low;
        if self.contains(&span) {
            return false;
        }
        self.by_time.insert((span.timestamp / 1000, low));
        if let Some(service) = span
            .local_endpoint
            .as_ref()
            .and_then(|e| e.service_name.clone())
        {
            let idx = self.services.entry(service).or_default();
            idx.spans += 1;
            if let Some(r) = span
                .remote_endpoint
                .as_ref()
                .and_then(|e| e.service_name.clone())
            {
                *idx.remote_services.entry(r).or_insert(0) += 1;
            }
            if let Some(n) = &span.name {
                *idx.span_names.entry(n.clone()).or_insert(0) += 1;
            }
        }
        if !self.autocomplete_keys.is_empty() {
            for (k, v) in span.tags.iter() {
                if self.autocomplete_keys.contains(&**k) {
                    *self
                        .autocomplete
                        .entry(k.clone())
                        .or_default()
                        .entry(v.clone())
                        .or_insert(0) += 1;
                }
            }
        }
        self.span_count += 1;
        self.span_bytes += span_heap_bytes(&span);
        self.traces.entry(low).or_default().spans.push(span);
        true
    }

    /// Removes the trace holding the oldest span; returns (spans, 1).
    fn evict_oldest(&mut self) -> (usize, usize) {
        let Some(&(_, low)) = self.by_time.first() else {
            return (0, 0);
        };
        let Some(entry) = self.traces.remove(&low) else {
            // Defensive: an index entry without its trace.
            self.by_time.pop_first();
            return (0, 0);
        };
        let n = entry.spans.len();
        for span in entry.spans {
            self.by_time.remove(&(span.timestamp / 1000, low));
            if let Some(service) = span.local_service_name() {
                let orphaned = match self.services.get_mut(service) {
                    Some(idx) => {
                        idx.spans -= 1;
                        if let Some(r) = span.remote_service_name() {
                            dec(&mut idx.remote_services, r);
                        }
                        if let Some(name) = &span.name {
                            dec(&mut idx.span_names, name);
                        }
                        idx.spans == 0
                    }
                    None => false,
                };
                if orphaned {
                    self.services.remove(service);
                }
            }
            if !self.autocomplete_keys.is_empty() {
                for (k, v) in span.tags.iter() {
                    if let Some(values) = self.autocomplete.get_mut(&**k) {
                        dec(values, v);
                        if values.is_empty() {
                            self.autocomplete.remove(&**k);
                        }
                    }
                }
            }
            self.span_count -= 1;
            self.span_bytes = self.span_bytes.saturating_sub(span_heap_bytes(&span));
        }
        (n, 1)
    }

    // -----------------------------------------------------------------------
    // reads

    /// Local service names, sorted.
    pub fn service_names(&self) -> Vec<Arc<str>> {
        let mut v: Vec<Arc<str>> = self.services.keys().cloned().collect();
        v.sort();
        v
    }

    /// Span names recorded by a service (lower-cased query), sorted.
    pub fn span_names(&self, service: &str) -> Vec<Arc<str>> {
        self.names_of(service, |i| &i.span_names)
    }

    /// Remote service names a service called, sorted.
    pub fn remote_service_names(&self, service: &str) -> Vec<Arc<str>> {
        self.names_of(service, |i| &i.remote_services)
    }

    fn names_of(
        &self,
        service: &str,
        pick: impl Fn(&ServiceIndex) -> &HashMap<Arc<str>, usize>,
    ) -> Vec<Arc<str>> {
        if service.is_empty() {
            return Vec::new();
        }
        let service = service.to_lowercase();
        let mut v: Vec<Arc<str>> = self
            .services
            .get(service.as_str())
            .map(|i| pick(i).keys().cloned().collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Known values of an autocomplete key, sorted.
    pub fn autocomplete_values(&self, key: &str) -> Vec<Arc<str>> {
        let mut v: Vec<Arc<str>> = self
            .autocomplete
            .get(key)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// The spans of one trace (raw parts), honouring strict trace ids.
    pub fn trace(&self, id: TraceId) -> Vec<Arc<Span>> {
        let Some(entry) = self.traces.get(&id.low) else {
            return Vec::new();
        };
        if self.config.strict_trace_id {
            entry
                .spans
                .iter()
                .filter(|s| s.trace_id == id)
                .cloned()
                .collect()
        } else {
            entry.spans.clone()
        }
    }

    /// Several traces (for `/api/v2/traceMany`); unknown ids are skipped.
    pub fn traces(&self, ids: &[TraceId]) -> Vec<Vec<Arc<Span>>> {
        let mut seen_low = HashSet::new();
        let mut out = Vec::new();
        for id in ids {
            // Ids sharing their lower 64 bits are served together from one group.
            if !seen_low.insert(id.low) {
                continue;
            }
            let Some(entry) = self.traces.get(&id.low) else {
                continue;
            };
            if self.config.strict_trace_id {
                for group in group_by_trace_id(&entry.spans) {
                    if ids.contains(&group[0].trace_id) {
                        out.push(group);
                    }
                }
            } else {
                out.push(entry.spans.clone());
            }
        }
        out
    }

    /// Lower trace ids with a span in `[begin_ms, end_ms]`, newest first,
    /// unique, lazily (a query with a limit stops early).
    fn low_ids_in_range(&self, begin_ms: i64, end_ms: i64) -> impl Iterator<Item = u64> + '_ {
        let range = (end_ms >= 0 && end_ms >= begin_ms).then(|| {
            let begin = begin_ms.max(0) as u64;
            self.by_time
                .range((begin, 0)..=(end_ms as u64, u64::MAX))
                .rev()
        });
        let mut seen = HashSet::new();
        range
            .into_iter()
            .flatten()
            .filter_map(move |&(_, low)| seen.insert(low).then_some(low))
    }

    /// Traces matching a query, newest first, at most `limit` (strict
    /// grouping may add the other groups of the last trace, as in Zipkin).
    pub fn query(&self, q: &crate::query::QueryRequest) -> Vec<Vec<Arc<Span>>> {
        if let Some(s) = &q.service_name
            && !self.services.contains_key(s.as_str())
        {
            return Vec::new();
        }
        let mut out = Vec::new();
        for low in self.low_ids_in_range(q.begin_ts(), q.end_ts) {
            if out.len() >= q.limit {
                break;
            }
            let Some(entry) = self.traces.get(&low) else {
                continue;
            };
            if !q.test(&entry.spans) {
                continue;
            }
            if self.config.strict_trace_id {
                for group in group_by_trace_id(&entry.spans) {
                    if q.test(&group) {
                        out.push(group);
                    }
                }
            } else {
                out.push(entry.spans.clone());
            }
        }
        out
    }

    /// The spans of every trace with a span in the window, newest trace
    /// first (for dependency linking, which ignores the upper 64 bits like Zipkin).
    pub fn traces_in_range(&self, end_ms: i64, lookback_ms: i64) -> Vec<Vec<Arc<Span>>> {
        self.low_ids_in_range(end_ms.saturating_sub(lookback_ms), end_ms)
            .filter_map(|low| self.traces.get(&low).map(|e| e.spans.clone()))
            .collect()
    }

    /// The newest traces (by their newest span), for the index page.
    pub fn recent_low_ids(&self, limit: usize) -> Vec<u64> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for &(_, low) in self.by_time.iter().rev() {
            if out.len() >= limit {
                break;
            }
            if seen.insert(low) {
                out.push(low);
            }
        }
        out
    }
}

/// Splits spans into groups of equal full trace id, in first-seen order.
fn group_by_trace_id(spans: &[Arc<Span>]) -> Vec<Vec<Arc<Span>>> {
    let mut groups: Vec<Vec<Arc<Span>>> = Vec::new();
    for s in spans {
        match groups.iter_mut().find(|g| g[0].trace_id == s.trace_id) {
            Some(g) => g.push(s.clone()),
            None => groups.push(vec![s.clone()]),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::decode_json;

    fn store(max: usize, strict: bool) -> Store {
        Store::new(StoreConfig {
            max_spans: max,
            strict_trace_id: strict,
            autocomplete_keys: vec!["env".into()],
        })
    }

    fn put(s: &mut Store, json: &str) -> InsertOutcome {
        s.insert(decode_json(json.as_bytes(), crate::decode::Limits::default()).unwrap())
    }

    fn span_json(trace: &str, id: u64, service: &str, name: &str, ts_ms: u64) -> String {
        format!(
            r#"{{"traceId":"{trace}","id":"{id:x}","name":"{name}","timestamp":{},"localEndpoint":{{"serviceName":"{service}"}},"remoteEndpoint":{{"serviceName":"{service}-db"}},"tags":{{"env":"{service}-env"}}}}"#,
            ts_ms * 1000
        )
    }

    /// At the limit the trace with the oldest span goes first, whole, and every index forgets it.
    #[test]
    fn evicts_oldest_trace_and_keeps_indexes_consistent() {
        let mut s = store(4, false);
        put(
            &mut s,
            &format!(
                "[{},{}]",
                span_json("a", 1, "old", "get", 10),
                span_json("a", 2, "shared", "old-op", 11)
            ),
        );
        put(
            &mut s,
            &format!(
                "[{},{}]",
                span_json("b", 1, "new", "get", 20),
                span_json("b", 2, "shared", "new-op", 21)
            ),
        );
        assert_eq!(s.stats().spans, 4);
        let out = put(
            &mut s,
            &format!("[{}]", span_json("c", 1, "newest", "get", 30)),
        );
        assert_eq!(
            out,
            InsertOutcome {
                stored: 1,
                duplicates: 0,
                evicted_spans: 2,
                evicted_traces: 1
            }
        );
        assert_eq!(s.stats().spans, 3);
        assert!(s.trace(TraceId { high: 0, low: 0xa }).is_empty());
        let names: Vec<String> = s.service_names().iter().map(|n| n.to_string()).collect();
        assert_eq!(names, vec!["new", "newest", "shared"]);
        let ops: Vec<String> = s
            .span_names("shared")
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(ops, vec!["new-op"], "span names of evicted spans are gone");
        assert!(s.remote_service_names("old").is_empty());
        assert!(
            s.autocomplete_values("env")
                .iter()
                .all(|v| &**v != "old-env")
        );
        assert_eq!(s.by_time.len(), 3);
    }

    /// Re-sending a span stores it once; a message bigger than the store keeps its newest traces.
    #[test]
    fn dedupes_and_bounds_oversized_messages() {
        let mut s = store(2, false);
        let one = format!("[{}]", span_json("a", 1, "x", "get", 10));
        put(&mut s, &one);
        let out = put(&mut s, &one);
        assert_eq!(out.duplicates, 1);
        assert_eq!(s.stats().spans, 1);
        let big = format!(
            "[{},{},{}]",
            span_json("b", 1, "x", "get", 20),
            span_json("c", 1, "x", "get", 30),
            span_json("d", 1, "x", "get", 40)
        );
        put(&mut s, &big);
        assert_eq!(s.stats().spans, 2);
        assert_eq!(s.stats().traces, 2);
        assert!(!s.trace(TraceId { high: 0, low: 0xd }).is_empty());
    }

    /// A 64-bit id finds a 128-bit trace unless strict trace ids are on.
    #[test]
    fn lenient_and_strict_lookup() {
        for strict in [false, true] {
            let mut s = store(10, strict);
            put(
                &mut s,
                &format!(
                    "[{}]",
                    span_json("48485a3953bb6124463ac35c9f6413ad", 1, "x", "get", 1)
                ),
            );
            let short = s.trace(TraceId {
                high: 0,
                low: 0x463ac35c9f6413ad,
            });
            assert_eq!(short.is_empty(), strict, "strict={strict}");
            let full = s.trace(TraceId {
                high: 0x48485a3953bb6124,
                low: 0x463ac35c9f6413ad,
            });
            assert_eq!(full.len(), 1);
        }
    }

    /// Interned strings no stored span uses are pruned after evictions.
    #[test]
    fn prunes_interned_strings() {
        let mut s = store(10, false);
        for i in 0..3000u64 {
            put(
                &mut s,
                &format!(
                    "[{}]",
                    span_json(
                        &format!("{:x}", i + 1),
                        1,
                        &format!("svc{i}"),
                        &format!("op{i}"),
                        i + 1
                    )
                ),
            );
        }
        assert_eq!(s.stats().spans, 10);
        assert!(
            s.interner.len() < 2500,
            "interner holds {}",
            s.interner.len()
        );
    }
}
