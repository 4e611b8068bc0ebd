//! A dev stack as the collectors would report it, built through [`Model::apply`] so tests
//! exercise the same path as the live dashboard: ten services (two order-service instances),
//! breakers, a consumer group with lag, traces (one failed), a timeline and logs, all at a fixed
//! time so snapshots are stable.

use chrono::{DateTime, Utc};
use circuit_breaker::State;

use crate::app::{App, Catalog, KindInfo, ScenarioInfo};
use crate::model::breakers::InstanceBreakers;
use crate::model::breakers::tests::snapshot as breaker;
use crate::model::kafka::{GroupView, KafkaSnapshot, PartitionLagView, PartitionView, TopicView};
use crate::model::logs::{Level, LogLine, LogTarget};
use crate::model::services::{
    ContainerStats, InstanceEntry, Registration, ServiceEntry, ServicesSnapshot,
};
use crate::model::sources::Source;
use crate::model::traces::tests::order_trace;
use crate::model::{Model, Update};

/// 2025-01-01T12:00:00Z.
pub const T0: i64 = 1_735_732_800;

/// `T0 + s` seconds.
pub fn t(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(T0 + s, 0).expect("valid time")
}

fn instance(service: &str, n: u32, ip: &str, port: u16, registers: bool) -> InstanceEntry {
    let container = format!("platform-dev-{service}-{n}");
    InstanceEntry {
        number: n,
        container: container.clone(),
        state: "running".into(),
        health: Some("healthy".into()),
        address: Some(format!("{ip}:{port}")),
        restarts: Some(0),
        oom_killed: false,
        registration: registers.then(|| Registration {
            instance_id: format!("{container}:{service}:{port}"),
            status: "UP".into(),
            renewed: Some(t(-3)),
            drift: None,
        }),
        drift: None,
    }
}

fn service(
    name: &str,
    registers: bool,
    not_scalable: Option<&str>,
    port: u16,
    ips: &[&str],
) -> ServiceEntry {
    ServiceEntry {
        name: name.into(),
        registers,
        not_scalable: not_scalable.map(str::to_string),
        instances: ips
            .iter()
            .enumerate()
            .map(|(i, ip)| instance(name, i as u32 + 1, ip, port, registers))
            .collect(),
        orphans: Vec::new(),
    }
}

/// The dev stack's services, as the status join reports them.
pub fn services() -> ServicesSnapshot {
    ServicesSnapshot {
        registry_read: true,
        services: vec![
            service(
                "api-gateway",
                true,
                Some("it publishes host port 8080, which a second instance cannot bind"),
                8080,
                &["172.20.0.8"],
            ),
            service(
                "discovery-server",
                false,
                Some("identity-provider, ... reach it at its fixed address"),
                8761,
                &["172.20.0.2"],
            ),
            service(
                "identity-provider",
                true,
                Some("it is reached at its fixed address"),
                8180,
                &["172.20.0.3"],
            ),
            service("inventory-service", true, None, 8083, &["172.20.0.9"]),
            service(
                "kafka",
                false,
                Some("it is stateful: it keeps its data on volume `kafka-data`"),
                9092,
                &["172.20.0.5"],
            ),
            service(
                "mariadb",
                false,
                Some("it is stateful: it keeps its data on volume `mariadb-data`"),
                3306,
                &["172.20.0.6"],
            ),
            service("notification-service", true, None, 8084, &["172.20.0.11"]),
            service(
                "order-service",
                true,
                None,
                8082,
                &["172.20.0.10", "172.20.0.12"],
            ),
            service(
                "product-service",
                true,
                Some("it is stateful: it keeps its data on volume `product-data`"),
                8081,
                &["172.20.0.7"],
            ),
            service(
                "trace-collector",
                true,
                Some("it is reached at its fixed address"),
                9411,
                &["172.20.0.4"],
            ),
        ],
    }
}

fn stats(services: &ServicesSnapshot) -> Update {
    let mut map = std::collections::HashMap::new();
    for (i, s) in services.services.iter().enumerate() {
        for inst in &s.instances {
            map.insert(
                inst.container.clone(),
                ContainerStats {
                    cpu_percent: 0.5 + i as f64 * 0.7,
                    memory_bytes: (6 + i as u64 * 3) * 1024 * 1024,
                    memory_limit_bytes: 64 * 1024 * 1024,
                },
            );
        }
    }
    Update::Stats(map)
}

/// A round of breaker reads with `state` and `rate` on every order-service instance.
pub fn breakers(state: State, rate: f32, transitions: &[(u64, State, State)]) -> Update {
    Update::Breakers(
        ["order-service-1", "order-service-2"]
            .iter()
            .map(|i| InstanceBreakers {
                instance: i.to_string(),
                read: Ok(vec![breaker("inventory-service", state, rate, transitions)]),
            })
            .collect(),
    )
}

/// The broker with `lag` messages waiting on partition 1.
pub fn kafka(lag: i64) -> Update {
    let partitions = (0..3)
        .map(|p| PartitionView {
            partition: p,
            low_watermark: 0,
            high_watermark: 400 + i64::from(p) * 10 + if p == 1 { lag } else { 0 },
        })
        .collect();
    Update::Kafka(KafkaSnapshot {
        broker: "172.20.0.5:9092".into(),
        topics: vec![
            TopicView {
                name: "order-placed".into(),
                partitions,
            },
            TopicView {
                name: "order-placed.DLT".into(),
                partitions: vec![PartitionView {
                    partition: 0,
                    low_watermark: 0,
                    high_watermark: 0,
                }],
            },
        ],
        groups: vec![GroupView {
            group: "notification-service".into(),
            state: "Stable".into(),
            members: 1,
            total_lag: lag,
            unassigned: 0,
            partitions: (0..3)
                .map(|p| PartitionLagView {
                    topic: "order-placed".into(),
                    partition: p,
                    committed: Some(400 + i64::from(p) * 10),
                    high_watermark: 400 + i64::from(p) * 10 + if p == 1 { lag } else { 0 },
                    lag: if p == 1 { lag } else { 0 },
                    owner: Some("notification-service-1".into()),
                })
                .collect(),
        }],
    })
}

/// Three traces, 2 s apart; the middle one failed.
pub fn traces() -> Update {
    let mut list = Vec::new();
    for (i, id) in ["4bf92f3577b34da6", "a3ce929d0e0e4736", "00f067aa0ba902b7"]
        .iter()
        .enumerate()
    {
        let mut tr = order_trace(id, i == 1);
        for s in &mut tr.spans {
            s.start_us = (T0 as u64 - 10 + 2 * i as u64) * 1_000_000 + (s.start_us % 1_000_000_000);
        }
        list.push(tr);
    }
    Update::Traces {
        list,
        ui_base: Some("http://127.0.0.1:9411".into()),
    }
}

fn log(s: i64, instance: &str, level: Level, text: &str, trace: Option<&str>) -> LogLine {
    LogLine {
        at: t(s),
        instance: instance.into(),
        level: Some(level),
        text: text.into(),
        trace_id: trace.map(str::to_string),
    }
}

/// What the CLI offers: the fault kinds, durations and scenarios.
pub fn catalog() -> Catalog {
    Catalog {
        kinds: [
            ("kill", "send a signal (default KILL); restarted at the end"),
            ("stop", "stop the container (SIGTERM, then SIGKILL)"),
            ("pause", "freeze every process"),
            ("disconnect", "cut it off the stack network"),
            ("latency", "add network delay"),
            ("app-error", "answer HTTP errors"),
        ]
        .iter()
        .map(|(n, s)| KindInfo {
            name: n.to_string(),
            summary: s.to_string(),
        })
        .collect(),
        shorthands: vec!["broker".into(), "database".into(), "identity".into()],
        inject_flags: vec!["--all".into(), "--duration".into(), "--instance".into()],
        durations: ["30s", "1m", "2m", "5m"].map(String::from).to_vec(),
        scenarios: vec![ScenarioInfo {
            name: "inventory-down".into(),
            file: "stacks/scenarios/inventory-down.toml".into(),
            description: "inventory-service stopped: breaker opens, 503 fallback".into(),
        }],
    }
}

/// The healthy dev stack, every backend reached, at `T0`.
pub fn app() -> App {
    let mut app = App::new(Model::new("dev", t(-30)), catalog(), None);
    for s in Source::ALL {
        app.apply(Update::Reached {
            source: s,
            at: t(-30),
        });
    }
    let snapshot = services();
    app.apply(stats(&snapshot));
    app.apply(Update::Services(snapshot));
    for (i, rate) in [0.0, 0.0, 10.0, 0.0, 20.0, 0.0].iter().enumerate() {
        app.apply(Update::Tick(t(-12 + i as i64 * 2)));
        app.apply(breakers(State::Closed, *rate, &[]));
        app.apply(kafka([0, 0, 3, 8, 2, 0][i]));
    }
    app.apply(traces());
    app.apply(Update::Tick(t(0)));
    let target = LogTarget {
        service: "order-service".into(),
        instance: None,
    };
    app.model.logs.retarget(Some(target.clone()));
    app.apply(Update::Logs {
        target,
        lines: vec![
            log(
                -9,
                "order-service-1",
                Level::Info,
                "order placed order_number=b1e5 items=2",
                Some("4bf92f3577b34da6"),
            ),
            log(
                -7,
                "order-service-2",
                Level::Warn,
                "inventory call failed: connection refused",
                Some("a3ce929d0e0e4736"),
            ),
            log(
                -7,
                "order-service-2",
                Level::Info,
                "fallback: Service is temporarily unavailable",
                Some("a3ce929d0e0e4736"),
            ),
            log(
                -5,
                "order-service-1",
                Level::Debug,
                "outbox relay published 1 event",
                None,
            ),
            log(
                -2,
                "order-service-1",
                Level::Info,
                "order placed order_number=c7d2 items=1",
                Some("ffffffffffffffff"),
            ),
        ],
    });
    app
}
