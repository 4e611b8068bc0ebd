//! `/admin/registry` (behind the kit's admin auth) and the registry's
//! Prometheus metrics.
//!
//! Both read the registry at request/scrape time, so there is no second
//! set of numbers to keep in step: instance gauges by application and
//! status, the totals (registrations, renewals, cancellations, evictions),
//! the measured and expected renewals, the self-preservation flag and the
//! watch clients waiting.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use serde_json::{Value, json};

use crate::AppState;
use crate::registry::Registry;

/// `GET /admin/registry`.
pub async fn registry(State(s): State<AppState>) -> Json<Value> {
    let r = &s.registry;
    let stats = r.stats();
    let pres = r.preservation();
    let opts = r.options();
    let now = r.clock().now_millis();
    let by_app: serde_json::Map<String, Value> = {
        let mut m = serde_json::Map::new();
        for ((app, status), n) in &stats.by_app_status {
            let entry = m.entry(app.clone()).or_insert_with(|| json!({}));
            entry[status.as_str()] = json!(n);
        }
        m
    };
    Json(json!({
        "config": {
            "evictionIntervalMs": s.eviction_interval.as_millis() as u64,
            "maxWatchTimeoutMs": s.max_watch_timeout.as_millis() as u64,
            "registry": opts,
        },
        "uptimeMs": now.saturating_sub(r.started_at()),
        "version": stats.version,
        "applications": stats.applications,
        "instances": stats.instances,
        "instancesByApp": by_app,
        "renewals": {
            "windowMs": opts.renewal_window_ms,
            "measured": pres.last.map(|e| e.measured),
            "expected": pres.last.map(|e| e.expected),
            "threshold": pres.last.map(|e| e.threshold),
            "evaluatedAtMs": pres.last.map(|e| e.at_ms),
        },
        "selfPreservation": pres,
        "totals": {
            "registrations": stats.registrations,
            "renewals": stats.renewals,
            "renewalsUnknown": stats.renewals_unknown,
            "cancellations": stats.cancellations,
            "evictions": stats.evictions,
            "statusUpdates": stats.status_updates,
        },
        "changeLog": stats.change_log_len,
        "watchersWaiting": stats.watchers,
    }))
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppStatus {
    app: String,
    status: String,
}

/// Encodes the registry's figures at each scrape.
#[derive(Debug)]
pub struct RegistryCollector(pub Arc<Registry>);

impl Collector for RegistryCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let stats = self.0.stats();
        let pres = self.0.preservation();

        let g = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "discovery_instances",
            "Registered instances by application and status",
            None,
            g.metric_type(),
        )?;
        for ((app, status), n) in &stats.by_app_status {
            let labels = AppStatus {
                app: app.clone(),
                status: status.as_str().to_string(),
            };
            ConstGauge::new(*n as i64).encode(family.encode_family(&labels)?)?;
        }

        for (name, help, v) in [
            (
                "discovery_registrations",
                "Registrations accepted",
                stats.registrations,
            ),
            (
                "discovery_renewals",
                "Lease renewals accepted",
                stats.renewals,
            ),
            (
                "discovery_renewals_unknown",
                "Renewals answered 404 (unknown instance: the client registers again)",
                stats.renewals_unknown,
            ),
            (
                "discovery_cancellations",
                "Instances that deregistered",
                stats.cancellations,
            ),
            (
                "discovery_evictions",
                "Instances evicted because their lease expired",
                stats.evictions,
            ),
            (
                "discovery_status_updates",
                "Status overrides and metadata changes",
                stats.status_updates,
            ),
            (
                "discovery_self_preservation_entered",
                "Times the registry entered self-preservation",
                pres.times_entered,
            ),
        ] {
            let c = ConstCounter::new(v);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }

        let last = pres.last;
        for (name, help, v) in [
            (
                "discovery_self_preservation",
                "1 while self-preservation stops evictions",
                if pres.active { 1.0 } else { 0.0 },
            ),
            (
                "discovery_renewals_measured_window",
                "Renewals received in the last self-preservation window",
                last.map(|e| e.measured as f64).unwrap_or(0.0),
            ),
            (
                "discovery_renewals_expected_window",
                "Renewals expected in the last self-preservation window",
                last.map(|e| e.expected).unwrap_or(0.0),
            ),
            (
                "discovery_watchers_waiting",
                "Watch long-polls currently waiting",
                stats.watchers as f64,
            ),
            (
                "discovery_registry_version",
                "Current registry version",
                stats.version as f64,
            ),
        ] {
            let g = ConstGauge::new(v);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        Ok(())
    }
}
