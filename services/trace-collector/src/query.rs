//! The `/api/v2/traces` query: Zipkin's `QueryRequest`, its parameter
//! rules and its `test` of a trace.
//!
//! `annotationQuery` is Zipkin's little language: terms joined by ` and `;
//! `key=value` requires a tag with that value, a bare `word` requires an
//! annotation with that value or a tag with that key. All terms must match
//! spans of the trace (of `serviceName`'s spans, when given).

use std::sync::Arc;

use serde::Deserialize;

use crate::model::Span;

/// Query parameters of `/api/v2/traces` as received.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TracesParams {
    pub service_name: Option<String>,
    pub remote_service_name: Option<String>,
    pub span_name: Option<String>,
    pub annotation_query: Option<String>,
    pub min_duration: Option<i64>,
    pub max_duration: Option<i64>,
    pub end_ts: Option<i64>,
    pub lookback: Option<i64>,
    pub limit: Option<i64>,
}

/// A validated query.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryRequest {
    pub service_name: Option<String>,
    pub remote_service_name: Option<String>,
    pub span_name: Option<String>,
    /// Terms in order; an empty value means "annotation or tag key".
    pub annotation_query: Vec<(String, String)>,
    pub min_duration: Option<u64>,
    pub max_duration: Option<u64>,
    /// Epoch milliseconds.
    pub end_ts: i64,
    /// Milliseconds.
    pub lookback: i64,
    pub limit: usize,
}

/// Zipkin's `parseAnnotationQuery`. A bare word never replaces a `key=value`
/// term for the same key; a later `key=value` wins. Empty terms are skipped.
pub fn parse_annotation_query(q: &str) -> Vec<(String, String)> {
    let mut terms: Vec<(String, String)> = Vec::new();
    for term in q.splitn(100, " and ") {
        match term.find('=') {
            None => {
                let key = term.trim();
                if !key.is_empty() && !terms.iter().any(|(k, _)| k == key) {
                    terms.push((key.to_string(), String::new()));
                }
            }
            Some(idx) => {
                let key = term[..idx].trim();
                let value = term[idx + 1..].trim();
                if key.is_empty() {
                    continue;
                }
                match terms.iter_mut().find(|(k, _)| k == key) {
                    Some(t) => t.1 = value.to_string(),
                    None => terms.push((key.to_string(), value.to_string())),
                }
            }
        }
    }
    terms
}

impl QueryRequest {
    /// Applies defaults (`endTs` now, `lookback` the configured default,
    /// `limit` 10) and Zipkin's checks, with Zipkin's messages.
    pub fn from_params(
        p: &TracesParams,
        now_ms: i64,
        default_lookback: i64,
    ) -> Result<QueryRequest, String> {
        let norm = |s: &Option<String>| {
            s.as_ref()
                .map(|v| v.to_lowercase())
                .filter(|v| !v.is_empty())
        };
        let end_ts = p.end_ts.unwrap_or(now_ms);
        let lookback = p.lookback.unwrap_or(default_lookback);
        let limit = p.limit.unwrap_or(10);
        if end_ts <= 0 {
            return Err("endTs <= 0".into());
        }
        if limit <= 0 {
            return Err("limit <= 0".into());
        }
        if lookback <= 0 {
            return Err("lookback <= 0".into());
        }
        match (p.min_duration, p.max_duration) {
            (Some(min), max) => {
                if min <= 0 {
                    return Err("minDuration <= 0".into());
                }
                if let Some(max) = max
                    && max < min
                {
                    return Err("maxDuration < minDuration".into());
                }
            }
            (None, Some(_)) => return Err("maxDuration is only valid with minDuration".into()),
            (None, None) => {}
        }
        Ok(QueryRequest {
            service_name: norm(&p.service_name),
            remote_service_name: norm(&p.remote_service_name),
            span_name: norm(&p.span_name).filter(|s| s != "all"),
            annotation_query: p
                .annotation_query
                .as_deref()
                .map(parse_annotation_query)
                .unwrap_or_default(),
            min_duration: p.min_duration.map(|v| v as u64),
            max_duration: p.max_duration.map(|v| v.max(0) as u64),
            end_ts,
            lookback,
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
        })
    }

    /// The first millisecond of the window.
    pub fn begin_ts(&self) -> i64 {
        self.end_ts.saturating_sub(self.lookback)
    }

    /// Zipkin's `QueryRequest.test`: whether a trace (its raw spans, any
    /// order) matches. The trace's time is its root span's timestamp, or
    /// else its earliest; a trace without timestamps never matches.
    pub fn test(&self, spans: &[Arc<Span>]) -> bool {
        let mut timestamp = 0u64;
        for s in spans {
            if s.timestamp == 0 {
                continue;
            }
            if s.parent_id == 0 {
                timestamp = s.timestamp;
                break;
            }
            if timestamp == 0 || timestamp > s.timestamp {
                timestamp = s.timestamp;
            }
        }
        let ts = i128::from(timestamp);
        if timestamp == 0
            || ts < i128::from(self.begin_ts()) * 1000
            || ts > i128::from(self.end_ts) * 1000
        {
            return false;
        }

        let mut tested_duration = self.min_duration.is_none() && self.max_duration.is_none();
        let mut service_matched = self.service_name.is_none();
        let mut remote_matched = self.remote_service_name.is_none();
        let mut name_matched = self.span_name.is_none();
        let mut remaining: Vec<&(String, String)> = self.annotation_query.iter().collect();

        for s in spans {
            if let Some(service) = &self.service_name
                && s.local_service_name() != Some(service.as_str())
            {
                continue;
            }
            service_matched = true;
            for a in s.annotations.iter() {
                remaining.retain(|(k, v)| !(v.is_empty() && **k == *a.value));
            }
            for (k, v) in s.tags.iter() {
                remaining.retain(|(qk, qv)| !(**qk == **k && (qv.is_empty() || **qv == **v)));
            }
            if !remote_matched && self.remote_service_name.as_deref() == s.remote_service_name() {
                remote_matched = true;
            }
            if !name_matched && self.span_name.as_deref() == s.name.as_deref() {
                name_matched = true;
            }
            if !tested_duration {
                tested_duration = match (self.min_duration, self.max_duration) {
                    (Some(min), Some(max)) => s.duration >= min && s.duration <= max,
                    (Some(min), None) => s.duration >= min,
                    _ => false,
                };
            }
        }
        service_matched && remote_matched && name_matched && remaining.is_empty() && tested_duration
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Annotation, Endpoint, TraceId};

    /// The annotation query language splits on " and ", lets key=value win over bare words, and trims.
    #[test]
    fn parses_annotation_query() {
        assert_eq!(
            parse_annotation_query("http.uri=/foo and retried and error and http.uri = /bar"),
            vec![
                ("http.uri".to_string(), "/bar".to_string()),
                ("retried".to_string(), String::new()),
                ("error".to_string(), String::new()),
            ]
        );
        assert_eq!(
            parse_annotation_query("a=1 and a"),
            vec![("a".to_string(), "1".to_string())]
        );
        assert!(parse_annotation_query(" and ").is_empty());
    }

    /// Parameter checks answer with Zipkin's messages.
    #[test]
    fn validates_like_zipkin() {
        let check = |p: TracesParams| QueryRequest::from_params(&p, 1_000, 86_400_000);
        let err = |p: TracesParams| check(p).unwrap_err();
        assert_eq!(
            err(TracesParams {
                limit: Some(0),
                ..Default::default()
            }),
            "limit <= 0"
        );
        assert_eq!(
            err(TracesParams {
                end_ts: Some(0),
                ..Default::default()
            }),
            "endTs <= 0"
        );
        assert_eq!(
            err(TracesParams {
                lookback: Some(-1),
                ..Default::default()
            }),
            "lookback <= 0"
        );
        assert_eq!(
            err(TracesParams {
                max_duration: Some(5),
                ..Default::default()
            }),
            "maxDuration is only valid with minDuration"
        );
        assert_eq!(
            err(TracesParams {
                min_duration: Some(5),
                max_duration: Some(4),
                ..Default::default()
            }),
            "maxDuration < minDuration"
        );
        let q = check(TracesParams {
            service_name: Some("Frontend".into()),
            span_name: Some("all".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(q.service_name.as_deref(), Some("frontend"));
        assert_eq!(q.span_name, None);
        assert_eq!(q.limit, 10);
        assert_eq!(q.end_ts, 1_000);
    }

    fn span(id: u64, parent: u64, service: &str, ts: u64, dur: u64) -> Span {
        Span {
            trace_id: TraceId { high: 0, low: 1 },
            id,
            parent_id: parent,
            timestamp: ts,
            duration: dur,
            local_endpoint: Some(Arc::new(Endpoint {
                service_name: Some(service.into()),
                ..Endpoint::default()
            })),
            ..Span::default()
        }
    }

    /// A trace matches when its service's spans carry the queried tags, annotations, names and durations.
    #[test]
    fn tests_traces_like_zipkin() {
        let now_us = 1_000_000_000;
        let mut b = span(2, 1, "backend", now_us + 10, 500);
        b.tags = crate::model::Tags::from_pairs(vec![("http.path".into(), "/api".into())]);
        b.annotations = vec![Annotation {
            timestamp: 1,
            value: "retried".into(),
        }]
        .into_boxed_slice();
        b.name = Some("get".into());
        let trace = vec![Arc::new(span(1, 0, "frontend", now_us, 1000)), Arc::new(b)];
        let q = |aq: &str, service: Option<&str>, min: Option<i64>| {
            QueryRequest::from_params(
                &TracesParams {
                    service_name: service.map(String::from),
                    annotation_query: Some(aq.to_string()),
                    min_duration: min,
                    end_ts: Some(1_000_000),
                    lookback: Some(1),
                    ..Default::default()
                },
                0,
                1,
            )
            .unwrap()
            .test(&trace)
        };
        assert!(q("http.path=/api and retried", None, None));
        assert!(q("http.path", Some("backend"), None));
        assert!(
            !q("http.path", Some("frontend"), None),
            "tags of other services do not count"
        );
        assert!(!q("http.path=/other", None, None));
        assert!(q("", Some("frontend"), Some(1000)));
        assert!(!q("", Some("backend"), Some(1000)));
        assert!(!q("", Some("nobody"), None));
        let outside = QueryRequest::from_params(
            &TracesParams {
                end_ts: Some(999),
                lookback: Some(1),
                ..Default::default()
            },
            0,
            1,
        )
        .unwrap();
        assert!(!outside.test(&trace), "root timestamp outside the window");
    }
}
