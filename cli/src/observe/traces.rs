//! The trace collector's Zipkin v2 API (`/api/v2/trace/{id}`, `/api/v2/traces`), found where
//! the services export spans (their `ZIPKIN_ENDPOINT`), and links to its UI
//! (`http://<collector>/zipkin/traces/{id}`). The span model keeps the fields the CLI shows;
//! Zipkin's JSON has more and they are ignored.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use url::Url;

use super::{ObserveError, Observer, Result};

/// One span as Zipkin's API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Span {
    pub trace_id: String,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `CLIENT`, `SERVER`, `PRODUCER`, `CONSUMER`; absent for local spans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Start, microseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
    /// Microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_endpoint: Option<Endpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_endpoint: Option<Endpoint>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// A span's endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
}

impl Span {
    /// The service that recorded the span.
    pub fn service(&self) -> Option<&str> {
        self.local_endpoint.as_ref()?.service_name.as_deref()
    }
}

/// The services that recorded spans of a trace.
pub fn services(spans: &[Span]) -> BTreeSet<String> {
    spans
        .iter()
        .filter_map(|s| s.service().map(str::to_string))
        .collect()
}

/// Span names by service, for reports (`order-service: POST /api/order, ...`).
pub fn span_names(spans: &[Span]) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in spans {
        out.entry(s.service().unwrap_or("?").to_string())
            .or_default()
            .insert(s.name.clone().unwrap_or_default());
    }
    out
}

/// Which of `wanted` recorded no span.
pub fn missing_services<'a>(spans: &[Span], wanted: &[&'a str]) -> Vec<&'a str> {
    let seen = services(spans);
    wanted
        .iter()
        .copied()
        .filter(|w| !seen.contains(*w))
        .collect()
}

/// `GET /api/v2/traces` filters.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceQuery {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub span_name: Option<String>,
    /// Zipkin's `annotationQuery` (`http.route=/api/order and error`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotation_query: Option<String>,
    /// Milliseconds back from now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lookback: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// The stack's trace collector, reachable from the host.
#[derive(Debug, Clone)]
pub struct Collector {
    base: Url,
}

impl Collector {
    /// The collector the services export to.
    pub fn of(obs: &Observer) -> Result<Self> {
        let endpoint = obs.zipkin_endpoint_in_network()?;
        let mut base = endpoint.clone();
        base.set_path("/");
        base.set_query(None);
        Ok(Self {
            base: obs.resolve(&base)?,
        })
    }

    /// A collector at a known base URL.
    pub fn at(base: Url) -> Self {
        Self { base }
    }

    /// The collector's base URL as reached from the host.
    pub fn base(&self) -> &Url {
        &self.base
    }

    fn url(&self, path: &str) -> Result<Url> {
        self.base
            .join(path)
            .map_err(|e| ObserveError::Setting(format!("bad collector path {path}: {e}")))
    }

    /// The collector's UI as the host's browser opens it: the collector's port published on
    /// the host (`http://127.0.0.1:9411`; the dev stack publishes it on loopback), else the
    /// address the CLI reaches it at.
    pub fn ui_base(&self, obs: &Observer) -> Option<Url> {
        let endpoint = obs.zipkin_endpoint_in_network().ok()?;
        let service = endpoint.host_str()?;
        let port = endpoint.port_or_known_default()?;
        let published = obs.running(service).into_iter().find_map(|c| {
            c.ports.iter().find(|p| p.container_port == port).map(|p| {
                let host = match p.host_ip.as_deref() {
                    None | Some("" | "0.0.0.0" | "::") => "127.0.0.1",
                    Some(ip) => ip,
                };
                format!("http://{host}:{}/", p.host_port)
            })
        });
        match published {
            Some(u) => Url::parse(&u).ok(),
            None => Some(self.base.clone()),
        }
    }

    /// The UI page of a trace.
    pub fn link(&self, trace_id: &str) -> String {
        format!(
            "{}/zipkin/traces/{trace_id}",
            self.base.as_str().trim_end_matches('/')
        )
    }

    /// The spans of one trace; `None` when the collector has none (yet).
    pub async fn trace(&self, obs: &Observer, trace_id: &str) -> Result<Option<Vec<Span>>> {
        let url = self.url(&format!("api/v2/trace/{trace_id}"))?;
        let what = "read a trace";
        let res = super::send(what, &url, obs.http().get(url.clone())).await?;
        if res.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let res = super::expect_success(what, &url, res).await?;
        super::read_json(what, &url, res).await.map(Some)
    }

    /// Recent traces matching `query`, newest first.
    pub async fn traces(&self, obs: &Observer, query: &TraceQuery) -> Result<Vec<Vec<Span>>> {
        let mut url = self.url("api/v2/traces")?;
        let pairs = serde_json::to_value(query)
            .ok()
            .and_then(|v| v.as_object().cloned())
            .unwrap_or_default();
        for (k, v) in pairs {
            let v = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            url.query_pairs_mut().append_pair(&k, &v);
        }
        obs.get_json("list traces", &url, None).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans() -> Vec<Span> {
        serde_json::from_str(
            r#"[
            {"traceId":"t","id":"1","name":"post /api/order","kind":"SERVER","timestamp":1,"duration":9,
             "localEndpoint":{"serviceName":"api-gateway","ipv4":"10.0.0.2"},"tags":{"http.status_code":"201"}},
            {"traceId":"t","id":"2","parentId":"1","name":"post /api/order","kind":"SERVER",
             "localEndpoint":{"serviceName":"order-service"}},
            {"traceId":"t","id":"3","parentId":"2","name":"insert orders","localEndpoint":{"serviceName":"order-service"}},
            {"traceId":"t","id":"4","parentId":"2"}
        ]"#,
        )
        .unwrap()
    }

    /// Zipkin's JSON reads with unknown fields ignored; services and gaps are found by
    /// `localEndpoint.serviceName`.
    #[test]
    fn services_and_gaps() {
        let s = spans();
        assert_eq!(
            services(&s).into_iter().collect::<Vec<_>>(),
            vec!["api-gateway", "order-service"]
        );
        assert_eq!(
            missing_services(&s, &["api-gateway", "order-service", "inventory-service"]),
            vec!["inventory-service"]
        );
        let names = span_names(&s);
        assert_eq!(names["order-service"].len(), 2);
        assert!(names.contains_key("?"));
    }

    /// Links point at the UI's trace page; queries use Zipkin's parameter names.
    #[test]
    fn links_and_queries() {
        let c = Collector::at(Url::parse("http://10.0.0.3:9411/").unwrap());
        assert_eq!(c.link("abc"), "http://10.0.0.3:9411/zipkin/traces/abc");
        let q = TraceQuery {
            service_name: Some("order-service".into()),
            limit: Some(5),
            ..TraceQuery::default()
        };
        let v = serde_json::to_value(&q).unwrap();
        assert_eq!(v["serviceName"], "order-service");
        assert_eq!(v["limit"], 5);
        assert!(v.get("lookback").is_none());
    }
}
