//! The breakers' `/metrics`, with Resilience4j's metric names.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::{BreakerRegistry, State, WindowMetrics};

/// Encodes every breaker at scrape time with Resilience4j's metric names.
#[derive(Debug)]
pub(super) struct BreakerCollector(pub(super) BreakerRegistry);

impl Collector for BreakerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let snaps = self.0.snapshots();
        if snaps.is_empty() {
            return Ok(());
        }
        {
            let mut e = encoder.encode_descriptor(
                "resilience4j_circuitbreaker_state",
                "1 for the breaker's current state, 0 for the others",
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for s in &snaps {
                for st in State::ALL {
                    let g = ConstGauge::new((s.state == st) as i64);
                    g.encode(
                        e.encode_family(&[("name", s.name.as_str()), ("state", st.label())])?,
                    )?;
                }
            }
        }
        {
            let mut e = encoder.encode_descriptor(
                "resilience4j_circuitbreaker_calls",
                "Calls by outcome since start (successful, failed, ignored, not_permitted; slow ones included in successful/failed)",
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for s in &snaps {
                let t = s.totals;
                for (kind, v) in [
                    ("successful", t.successful + t.slow_successful),
                    ("failed", t.failed + t.slow_failed),
                    ("ignored", t.ignored),
                    ("not_permitted", t.not_permitted),
                ] {
                    ConstCounter::new(v)
                        .encode(e.encode_family(&[("name", s.name.as_str()), ("kind", kind)])?)?;
                }
            }
        }
        {
            let mut e = encoder.encode_descriptor(
                "resilience4j_circuitbreaker_slow_calls",
                "Slow calls since start, by outcome",
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for s in &snaps {
                for (kind, v) in [
                    ("successful", s.totals.slow_successful),
                    ("failed", s.totals.slow_failed),
                ] {
                    ConstCounter::new(v)
                        .encode(e.encode_family(&[("name", s.name.as_str()), ("kind", kind)])?)?;
                }
            }
        }
        for (metric, help, pick) in [
            (
                "resilience4j_circuitbreaker_failure_rate",
                "Failure rate of the sliding window in percent (-1 below the minimum number of calls)",
                (|m: &WindowMetrics| m.failure_rate) as fn(&WindowMetrics) -> f32,
            ),
            (
                "resilience4j_circuitbreaker_slow_call_rate",
                "Slow-call rate of the sliding window in percent (-1 below the minimum number of calls)",
                |m: &WindowMetrics| m.slow_call_rate,
            ),
        ] {
            let mut e = encoder.encode_descriptor(
                metric,
                help,
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for s in &snaps {
                ConstGauge::new(pick(&s.metrics) as f64)
                    .encode(e.encode_family(&[("name", s.name.as_str())])?)?;
            }
        }
        {
            let mut e = encoder.encode_descriptor(
                "resilience4j_circuitbreaker_buffered_calls",
                "Calls in the sliding window, by outcome",
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for s in &snaps {
                for (kind, v) in [
                    ("successful", s.metrics.number_of_successful_calls),
                    ("failed", s.metrics.number_of_failed_calls),
                ] {
                    ConstGauge::new(v as i64)
                        .encode(e.encode_family(&[("name", s.name.as_str()), ("kind", kind)])?)?;
                }
            }
        }
        {
            let mut e = encoder.encode_descriptor(
                "resilience4j_circuitbreaker_transitions",
                "State transitions since start",
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for s in &snaps {
                for (pair, n) in &s.transition_counts {
                    let (from, to) = pair.split_once("->").unwrap_or((pair.as_str(), ""));
                    ConstCounter::new(*n).encode(e.encode_family(&[
                        ("name", s.name.as_str()),
                        ("from", from),
                        ("to", to),
                    ])?)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{BreakerConfig, CircuitBreaker};
    use super::*;
    use crate::metrics::Metrics;

    /// The registry exports Resilience4j-named metrics, including the state gauge and transitions.
    #[test]
    fn metrics_export() {
        let m = Metrics::new();
        let r = BreakerRegistry::new(&m);
        let b = CircuitBreaker::new(
            "inv",
            BreakerConfig {
                sliding_window_size: 4,
                minimum_number_of_calls: 4,
                wait_duration_in_open_state: std::time::Duration::from_secs(5),
                ..Default::default()
            },
        );
        r.add(b.clone());
        for _ in 0..4 {
            b.try_acquire().unwrap().failure();
        }
        let _ = b.try_acquire();
        let text = m.render();
        for needle in [
            r#"resilience4j_circuitbreaker_state{name="inv",state="open"} 1"#,
            r#"resilience4j_circuitbreaker_state{name="inv",state="closed"} 0"#,
            r#"resilience4j_circuitbreaker_calls_total{name="inv",kind="failed"} 4"#,
            r#"resilience4j_circuitbreaker_calls_total{name="inv",kind="not_permitted"} 1"#,
            r#"resilience4j_circuitbreaker_transitions_total{name="inv",from="CLOSED",to="OPEN"} 1"#,
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        let snaps = r.snapshots();
        let json = serde_json::to_value(&snaps).unwrap();
        assert_eq!(json[0]["state"], "OPEN");
        assert_eq!(json[0]["config"]["slidingWindowType"], "COUNT_BASED");
        assert_eq!(json[0]["config"]["waitDurationInOpenStateMs"], 5000);
        assert_eq!(json[0]["transitions"][0]["to"], "OPEN");
    }
}
