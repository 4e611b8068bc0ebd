//! The gateway's own Prometheus metrics, per route and per upstream.
//!
//! Route and upstream handles are looked up once, when the routes are
//! loaded, and kept on the route: the request path then only increments
//! counters (no label hashing per request). Instance figures (requests,
//! failures, in-flight, ejections) already live in the shared balancer, so
//! a collector reads them from [`kit::lb::Balancer::status`] at scrape time
//! instead of counting twice.

use std::collections::BTreeMap;
use std::time::Duration;

use kit::lb::Balancer;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatusLabels {
    route: String,
    /// `2xx`, `4xx`...: classes keep the label space small and fixed.
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceLabels {
    service: String,
    instance: String,
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn latency_histogram() -> Histogram {
    // 100 µs .. ~3.3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// One route's metric handles.
#[derive(Clone, Debug)]
pub struct RouteMetrics {
    by_class: [Counter; 5],
    duration: Histogram,
    retries: Counter,
}

impl Default for RouteMetrics {
    /// Handles not registered anywhere (routes parsed before the service exists).
    fn default() -> Self {
        RouteMetrics {
            by_class: Default::default(),
            duration: latency_histogram(),
            retries: Counter::default(),
        }
    }
}

impl RouteMetrics {
    /// A request answered with `status` after `elapsed` (answer head).
    pub fn observe(&self, status: u16, elapsed: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].inc();
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// One retry on this route.
    pub fn retried(&self) {
        self.retries.inc();
    }
}

/// One upstream service's metric handles.
#[derive(Clone, Debug)]
pub struct UpstreamMetrics {
    pub duration: Histogram,
    pub retries: Counter,
}

/// The families, registered with the service's registry.
#[derive(Clone, Debug)]
pub struct GatewayMetrics {
    route_requests: Family<RouteStatusLabels, Counter>,
    route_duration: Family<RouteLabels, Histogram>,
    route_retries: Family<RouteLabels, Counter>,
    upstream_duration: Family<ServiceLabels, Histogram>,
    upstream_retries: Family<ServiceLabels, Counter>,
}

impl GatewayMetrics {
    /// Registers the families with `metrics`.
    pub fn register(metrics: &kit::metrics::Metrics) -> GatewayMetrics {
        let g = GatewayMetrics {
            route_requests: Family::default(),
            route_duration: Family::new_with_constructor(latency_histogram),
            route_retries: Family::default(),
            upstream_duration: Family::new_with_constructor(latency_histogram),
            upstream_retries: Family::default(),
        };
        metrics.register(
            "gateway_route_requests",
            "Requests answered per route, by status class",
            g.route_requests.clone(),
        );
        metrics.register(
            "gateway_route_duration_seconds",
            "Time from request to answer head, per route (auth, balancing, retries included)",
            g.route_duration.clone(),
        );
        metrics.register(
            "gateway_route_retries",
            "Retries on another instance, per route",
            g.route_retries.clone(),
        );
        metrics.register(
            "gateway_upstream_duration_seconds",
            "Time from sending to an instance to its answer head, per upstream service and attempt",
            g.upstream_duration.clone(),
        );
        metrics.register(
            "gateway_upstream_retries",
            "Retries on another instance, per upstream service",
            g.upstream_retries.clone(),
        );
        g
    }

    /// Handles for route `id`.
    pub fn route(&self, id: &str) -> RouteMetrics {
        let by_class = CLASSES.map(|status| {
            self.route_requests
                .get_or_create(&RouteStatusLabels {
                    route: id.to_string(),
                    status,
                })
                .clone()
        });
        let labels = RouteLabels {
            route: id.to_string(),
        };
        RouteMetrics {
            by_class,
            duration: self.route_duration.get_or_create(&labels).clone(),
            retries: self.route_retries.get_or_create(&labels).clone(),
        }
    }

    /// Handles for upstream `service`.
    pub fn upstream(&self, service: &str) -> UpstreamMetrics {
        let labels = ServiceLabels {
            service: service.to_string(),
        };
        UpstreamMetrics {
            duration: self.upstream_duration.get_or_create(&labels).clone(),
            retries: self.upstream_retries.get_or_create(&labels).clone(),
        }
    }
}

/// Reads the balancers' per-instance figures at scrape time.
#[derive(Debug)]
pub struct BalancerCollector {
    /// Service name → its balancer (the same ones the proxy uses).
    pub balancers: BTreeMap<String, Balancer>,
}

impl Collector for BalancerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let rows: Vec<(InstanceLabels, kit::lb::EndpointStatus)> = self
            .balancers
            .iter()
            .flat_map(|(service, b)| {
                b.status().into_iter().map(move |s| {
                    (
                        InstanceLabels {
                            service: service.clone(),
                            instance: s.instance_id.clone(),
                        },
                        s,
                    )
                })
            })
            .collect();
        type Pick = fn(&kit::lb::EndpointStatus) -> u64;
        let counters: [(&str, &str, Pick); 3] = [
            (
                "gateway_upstream_instance_requests",
                "Requests sent to an instance (attempts, retries included)",
                |s| s.requests,
            ),
            (
                "gateway_upstream_instance_failures",
                "Connect errors, timeouts and 5xx answers from an instance",
                |s| s.failures,
            ),
            (
                "gateway_upstream_instance_ejections",
                "Times an instance was ejected from load balancing",
                |s| s.ejections,
            ),
        ];
        for (name, help, pick) in counters {
            let probe = ConstCounter::new(0u64);
            let mut family = encoder.encode_descriptor(name, help, None, probe.metric_type())?;
            for (labels, s) in &rows {
                ConstCounter::new(pick(s)).encode(family.encode_family(labels)?)?;
            }
        }
        type PickG = fn(&kit::lb::EndpointStatus) -> i64;
        let gauges: [(&str, &str, PickG); 2] = [
            (
                "gateway_upstream_instance_in_flight",
                "Requests in flight to an instance",
                |s| i64::from(s.in_flight),
            ),
            (
                "gateway_upstream_instance_ejected",
                "1 while an instance is ejected",
                |s| i64::from(s.ejected),
            ),
        ];
        for (name, help, pick) in gauges {
            let probe = ConstGauge::new(0i64);
            let mut family = encoder.encode_descriptor(name, help, None, probe.metric_type())?;
            for (labels, s) in &rows {
                ConstGauge::new(pick(s)).encode(family.encode_family(labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Route handles count by status class and appear under the route's label.
    #[test]
    fn route_metrics_render() {
        let m = kit::metrics::Metrics::new();
        let g = GatewayMetrics::register(&m);
        let r = g.route("product");
        r.observe(200, Duration::from_millis(2));
        r.observe(204, Duration::from_millis(2));
        r.observe(503, Duration::from_millis(2));
        r.retried();
        let text = m.render();
        assert!(
            text.contains(r#"gateway_route_requests_total{route="product",status="2xx"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"gateway_route_requests_total{route="product",status="5xx"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"gateway_route_retries_total{route="product"} 1"#),
            "{text}"
        );
    }
}
