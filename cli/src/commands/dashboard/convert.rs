//! What the collectors read, turned into the dashboard's view types. Pure functions, so every
//! mapping is unit-tested: the status join (the same one `platform status` prints) into
//! services and instances, Zipkin spans into traces, fault records, Docker events into timeline
//! events, container output into log lines (JSON lines of our services read for level, message
//! and trace id), the broker's snapshot into the Kafka panel's rows.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use circuit_breaker::Snapshot;
use dashboard::model::breakers::InstanceBreakers;
use dashboard::model::faults::FaultView;
use dashboard::model::kafka::{
    GroupView, KafkaSnapshot, PartitionLagView, PartitionView, TopicView,
};
use dashboard::model::logs::{Level, LogLine};
use dashboard::model::services::{InstanceEntry, Registration, ServiceEntry, ServicesSnapshot};
use dashboard::model::timeline::{Event, EventKind, Severity};
use dashboard::model::traces::{SpanView, TraceView};
use registry_client::model::{Applications, InstanceInfo};

use crate::chaos::faults::{FaultRecord, FaultSpec, Selection};
use crate::commands::scale::not_scalable;
use crate::observe::admin::InstanceRead;
use crate::observe::logs::Tagged;
use crate::observe::status::{StatusView, registers};
use crate::observe::traces::Span;
use crate::runtime::{ContainerEvent, Health};
use crate::stack::Stack;

fn health_name(h: Health) -> &'static str {
    match h {
        Health::Starting => "starting",
        Health::Healthy => "healthy",
        Health::Unhealthy => "unhealthy",
    }
}

/// When a registry entry's lease was last renewed.
fn renewed(apps: Option<&Applications>, instance_id: &str) -> Option<DateTime<Utc>> {
    let i: &InstanceInfo = apps?.instances().find(|i| i.instance_id == instance_id)?;
    let ms = i.lease_info.last_renewal_timestamp;
    (ms > 0)
        .then(|| DateTime::from_timestamp_millis(i64::try_from(ms).ok()?))
        .flatten()
}

/// The services panel's data from the status join (`apps`: what the registry answered, for
/// lease ages).
pub fn services(stack: &Stack, view: &StatusView, apps: Option<&Applications>) -> ServicesSnapshot {
    let mut by_name: Vec<ServiceEntry> = stack
        .services
        .values()
        .map(|s| ServiceEntry {
            name: s.name.clone(),
            registers: registers(stack, &s.name),
            not_scalable: not_scalable(stack, s),
            instances: Vec::new(),
            orphans: Vec::new(),
        })
        .collect();
    let entry = |list: &mut Vec<ServiceEntry>, name: &str| -> usize {
        if let Some(i) = list.iter().position(|s| s.name == name) {
            return i;
        }
        // A registration of an application the stack does not have.
        list.push(ServiceEntry {
            name: name.to_string(),
            registers: true,
            not_scalable: Some("it is not a service of this stack".into()),
            instances: Vec::new(),
            orphans: Vec::new(),
        });
        list.len() - 1
    };
    for c in &view.containers {
        let port = stack.services.get(&c.service).and_then(|s| s.port);
        let i = entry(&mut by_name, &c.service);
        let drift = view
            .drift
            .iter()
            .find(|d| {
                d.container.as_deref() == Some(c.container.as_str()) && d.instance_id.is_none()
            })
            .map(|d| d.message.clone());
        by_name[i].instances.push(InstanceEntry {
            number: c.instance,
            container: c.container.clone(),
            state: c.state.clone(),
            health: c.health.map(|h| health_name(h).to_string()),
            address: c.address.as_ref().map(|a| match port {
                Some(p) => format!("{a}:{p}"),
                None => a.clone(),
            }),
            restarts: None,
            oom_killed: false,
            registration: c.registered.as_ref().map(|r| Registration {
                instance_id: r.instance_id.clone(),
                status: r.status.clone(),
                renewed: renewed(apps, &r.instance_id),
                drift: None,
            }),
            drift,
        });
    }
    for o in &view.registered_without_container {
        let i = entry(&mut by_name, &o.service);
        let drift = view
            .drift
            .iter()
            .find(|d| d.instance_id.as_deref() == Some(o.instance_id.as_str()))
            .map(|d| d.message.clone());
        by_name[i].orphans.push(Registration {
            instance_id: o.instance_id.clone(),
            status: o.status.clone(),
            renewed: renewed(apps, &o.instance_id),
            drift,
        });
    }
    // Services of the stack that have no container yet are still listed (0/0), so the panel
    // shows the whole stack.
    ServicesSnapshot {
        services: by_name,
        registry_read: view.registry.reachable,
    }
}

/// Zipkin's all-zero parent id (OpenTelemetry's exporter writes it on roots) means no parent.
fn parent(id: Option<&str>) -> Option<String> {
    id.filter(|p| !p.is_empty() && p.chars().any(|c| c != '0'))
        .map(str::to_string)
}

/// Whether a span failed: Zipkin's `error` tag, or an HTTP status of 500 or more.
fn failed(s: &Span) -> bool {
    s.tags.contains_key("error")
        || s.tags
            .get("http.status_code")
            .or_else(|| s.tags.get("http.response.status_code"))
            .and_then(|c| c.parse::<u16>().ok())
            .is_some_and(|c| c >= 500)
}

/// One trace's spans.
pub fn trace(spans: &[Span]) -> Option<TraceView> {
    let id = spans.first()?.trace_id.clone();
    Some(TraceView {
        id,
        spans: spans
            .iter()
            .map(|s| SpanView {
                id: s.id.clone(),
                parent_id: parent(s.parent_id.as_deref()),
                service: s.service().unwrap_or("?").to_string(),
                name: s.name.clone().unwrap_or_else(|| "?".into()),
                kind: s.kind.clone(),
                start_us: s.timestamp.unwrap_or(0),
                duration_us: s.duration.unwrap_or(0),
                error: failed(s),
            })
            .collect(),
    })
}

/// The fault records as rows (one per affected instance).
pub fn faults(records: &[FaultRecord]) -> Vec<FaultView> {
    records
        .iter()
        .map(|r| {
            let spec = FaultSpec {
                kind: r.kind,
                target: r.target.clone(),
                selection: Selection::Instance(r.instance),
                duration: (r.ends - r.started).to_std().unwrap_or_default(),
                options: r.options.clone(),
            };
            FaultView {
                id: r.id.clone(),
                kind: r.kind.to_string(),
                target: r.target.clone(),
                instance: format!("{}-{}", r.service, r.instance),
                options: spec.option_words().join(" "),
                started: r.started,
                ends: r.ends,
            }
        })
        .collect()
}

/// A Docker event as a timeline event; health-check execs and other noise give `None`.
pub fn event(e: &ContainerEvent) -> Option<Event> {
    let who = if e.service.is_empty() {
        e.container.clone()
    } else {
        format!("{}-{}", e.service, e.instance)
    };
    let (severity, text) = match e.action.as_str() {
        a if a.starts_with("exec_") => return None,
        "create" => (Severity::Info, format!("{who} created")),
        "start" => (Severity::Good, format!("{who} started")),
        "restart" => (Severity::Warning, format!("{who} restarted")),
        "die" => match e.exit_code {
            Some(0) => (Severity::Info, format!("{who} exited (0)")),
            Some(code) => (Severity::Bad, format!("{who} exited ({code})")),
            None => (Severity::Bad, format!("{who} exited")),
        },
        "oom" => (Severity::Bad, format!("{who} killed: out of memory")),
        "kill" => (
            Severity::Warning,
            format!(
                "{who} sent SIG{}",
                e.signal
                    .as_deref()
                    .map(signal_name)
                    .unwrap_or_else(|| "?".into())
            ),
        ),
        "stop" => (Severity::Warning, format!("{who} stopped")),
        "pause" => (Severity::Bad, format!("{who} paused")),
        "unpause" => (Severity::Good, format!("{who} unpaused")),
        "destroy" => (Severity::Info, format!("{who} removed")),
        // Health changes come from platform's own view ([`health_changes`]): Docker's status
        // alone says `starting`/`unhealthy` for up to an interval after the fact, and has none for
        // containers it does not check (the dev stack's `docker = false`).
        a if a.starts_with("health_status") => return None,
        "network_disconnect" | "disconnect" => (Severity::Bad, format!("{who} disconnected")),
        "network_connect" | "connect" => (Severity::Good, format!("{who} connected")),
        other => (Severity::Info, format!("{who} {other}")),
    };
    Some(Event {
        at: DateTime::from_timestamp_nanos(e.time_nanos),
        kind: EventKind::Container,
        severity,
        text,
    })
}

/// Timeline events for containers whose health changed since the last look, as every reader of
/// health sees it (Docker's status with the CLI's probe folded in, `observe::ready`): `healthy`
/// and `unhealthy` transitions. `seen` holds each container's health from the last look and is
/// updated; a container seen for the first time gives no event (its start already did).
pub fn health_changes(
    seen: &mut HashMap<String, Option<Health>>,
    view: &StatusView,
    at: DateTime<Utc>,
) -> Vec<Event> {
    let mut events = Vec::new();
    let mut now = HashMap::with_capacity(view.containers.len());
    for c in &view.containers {
        // Only a running container's health means anything (a stopped one has none).
        let health = (c.state == "running").then_some(c.health).flatten();
        if let Some(before) = seen.get(&c.container)
            && *before != health
        {
            let who = format!("{}-{}", c.service, c.instance);
            match health {
                Some(Health::Healthy) => events.push(Event {
                    at,
                    kind: EventKind::Container,
                    severity: Severity::Good,
                    text: format!("{who} healthy"),
                }),
                Some(Health::Unhealthy) => events.push(Event {
                    at,
                    kind: EventKind::Container,
                    severity: Severity::Bad,
                    text: format!("{who} unhealthy"),
                }),
                Some(Health::Starting) | None => {}
            }
        }
        now.insert(c.container.clone(), health);
    }
    *seen = now;
    events
}

/// Docker reports signals by number (`9`) or name (`SIGKILL`, `KILL`).
fn signal_name(s: &str) -> String {
    match s.trim_start_matches("SIG") {
        "9" => "KILL".into(),
        "15" => "TERM".into(),
        "2" => "INT".into(),
        "19" => "STOP".into(),
        "18" => "CONT".into(),
        other => other.to_string(),
    }
}

/// Fields of our services' JSON lines that the panel shows elsewhere or not at all.
const SKIPPED_FIELDS: [&str; 7] = [
    "timestamp",
    "level",
    "target",
    "message",
    "trace_id",
    "span_id",
    "span",
];

/// A line of container output: our services' JSON lines give level, message, trace id and
/// the other fields as `key=value`; other lines are kept as they are, with a level when they
/// start with one.
pub fn log_line(t: &Tagged) -> LogLine {
    let text = t.text.trim_end();
    if text.starts_with('{')
        && let Ok(serde_json::Value::Object(obj)) = serde_json::from_str::<serde_json::Value>(text)
    {
        let s = |k: &str| obj.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let mut message = s("message").unwrap_or_default();
        // Sorted by name: serde_json keeps the line's order or sorts depending on a feature
        // another crate of the workspace may switch on; the panel must not depend on that.
        let mut fields: Vec<_> = obj
            .iter()
            .filter(|(k, _)| !SKIPPED_FIELDS.contains(&k.as_str()))
            .collect();
        fields.sort_by(|a, b| a.0.cmp(b.0));
        for (k, v) in fields {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            message.push_str(&format!(" {k}={v}"));
        }
        return LogLine {
            at: t.at,
            instance: t.instance.clone(),
            level: s("level").as_deref().and_then(Level::parse),
            text: message.trim().to_string(),
            trace_id: s("trace_id").filter(|id| !id.is_empty()),
        };
    }
    let first = text.split_whitespace().next().unwrap_or("");
    LogLine {
        at: t.at,
        instance: t.instance.clone(),
        level: Level::parse(first.trim_matches(|c: char| !c.is_ascii_alphabetic())),
        text: text.to_string(),
        trace_id: text
            .split_once("trace_id=")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .map(str::to_string),
    }
}

/// The broker's snapshot as the Kafka panel's rows.
pub fn kafka(s: &kafka_lag::Snapshot) -> KafkaSnapshot {
    KafkaSnapshot {
        broker: s.broker.clone(),
        topics: s
            .topics
            .iter()
            .filter(|t| !t.internal)
            .map(|t| TopicView {
                name: t.name.clone(),
                partitions: t
                    .partitions
                    .iter()
                    .map(|p| PartitionView {
                        partition: p.partition,
                        low_watermark: p.low_watermark,
                        high_watermark: p.high_watermark,
                    })
                    .collect(),
            })
            .collect(),
        groups: s
            .groups
            .iter()
            .map(|g| GroupView {
                group: g.group_id.clone(),
                state: g.state.clone(),
                members: g.members.len(),
                total_lag: g.total_lag,
                unassigned: g.unassigned,
                partitions: g
                    .partitions
                    .iter()
                    .map(|p| PartitionLagView {
                        topic: p.topic.clone(),
                        partition: p.partition,
                        committed: p.committed,
                        high_watermark: p.high_watermark,
                        lag: p.lag,
                        owner: p.owner.clone(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// `/admin/breakers` reads as the breakers panel's input.
pub fn breakers(reads: Vec<InstanceRead<Vec<Snapshot>>>) -> Vec<InstanceBreakers> {
    reads
        .into_iter()
        .map(|r| InstanceBreakers {
            instance: r.instance,
            read: match (r.value, r.error) {
                (Some(v), _) => Ok(v),
                (None, e) => Err(e.unwrap_or_else(|| "no answer".into())),
            },
        })
        .collect()
}

/// Resource figures by container name.
pub fn stats(
    reads: Vec<(String, crate::runtime::Stats)>,
) -> HashMap<String, dashboard::model::services::ContainerStats> {
    reads
        .into_iter()
        .map(|(name, s)| {
            (
                name,
                dashboard::model::services::ContainerStats {
                    cpu_percent: s.cpu_percent,
                    memory_bytes: s.memory_bytes,
                    memory_limit_bytes: s.memory_limit_bytes,
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests;
