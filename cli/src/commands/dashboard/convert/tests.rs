//! The mappings from what the collectors read to what the dashboard draws.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use registry_client::model::{Application, InstanceInfo, InstanceStatus};

use super::*;
use crate::chaos::faults::{Kind, Options, Revert};
use crate::runtime::{ContainerInfo, LogStream};

const STACK: &str = r#"
[stack]
name = "t"
[services.discovery-server]
image = "r"
port = 8761
[services.order-service]
image = "o"
port = 8082
env = { REGISTRY_URL = "http://${discovery-server}:8761" }
[services.db]
image = "m"
port = 3306
volumes = ["db-data:/data"]
"#;

fn stack() -> Stack {
    crate::stack::validate::validate(STACK, Path::new("t.toml"), "t.toml")
        .stack
        .expect("valid test stack")
}

fn container(service: &str, n: u32) -> ContainerInfo {
    let name = format!("platform-t-{service}-{n}");
    ContainerInfo {
        id: name.clone(),
        name,
        image: String::new(),
        stack: "t".into(),
        service: service.into(),
        instance: n,
        state: "running".into(),
        health: Some(Health::Healthy),
        addresses: HashMap::from([("platform-t".to_string(), format!("10.0.0.{n}"))]),
        labels: HashMap::new(),
        ports: vec![],
        exit_code: None,
        restart_count: 0,
        oom_killed: false,
    }
}

fn registered(n: u32, renewed_ms: u64) -> InstanceInfo {
    let host = format!("platform-t-order-service-{n}");
    let mut i = InstanceInfo::new(
        "ORDER-SERVICE",
        &format!("{host}:order-service:8082"),
        &host,
        &host,
        8082,
    );
    i.status = InstanceStatus::Up;
    i.lease_info.last_renewal_timestamp = renewed_ms;
    i
}

/// Containers become instances with address and port, registrations carry their lease's
/// renewal time, drift lands on the instance or the orphan it is about, and the stack's
/// scaling rules come along.
#[test]
fn services_from_the_status_join() {
    let s = stack();
    let containers = vec![
        container("db", 1),
        container("discovery-server", 1),
        container("order-service", 1),
        container("order-service", 2),
    ];
    let apps = Applications {
        versions_delta: 1,
        apps_hashcode: String::new(),
        application: vec![Application {
            name: "ORDER-SERVICE".into(),
            instance: vec![registered(1, 1_735_732_797_000), registered(7, 0)],
        }],
    };
    let view = StatusView::join(&s, "address", &containers, Ok(("http://r:8761", &apps)));
    let snap = services(&s, &view, Some(&apps));
    assert!(snap.registry_read);
    let order = snap.service("order-service").unwrap();
    assert!(order.registers);
    assert_eq!(order.not_scalable, None);
    assert_eq!(order.instances.len(), 2);
    let one = &order.instances[0];
    assert_eq!(one.address.as_deref(), Some("10.0.0.1:8082"));
    assert_eq!(one.health.as_deref(), Some("healthy"));
    let reg = one.registration.as_ref().unwrap();
    assert_eq!(reg.status, "UP");
    assert_eq!(
        reg.renewed,
        DateTime::from_timestamp_millis(1_735_732_797_000)
    );
    let two = &order.instances[1];
    assert!(two.registration.is_none());
    assert!(
        two.drift
            .as_deref()
            .unwrap()
            .contains("running but not registered")
    );
    assert_eq!(order.orphans.len(), 1);
    assert!(
        order.orphans[0]
            .drift
            .as_deref()
            .unwrap()
            .contains("no container")
    );
    assert_eq!(order.orphans[0].renewed, None);
    let db = snap.service("db").unwrap();
    assert!(db.not_scalable.as_deref().unwrap().contains("stateful"));
    assert!(!db.registers);
}

fn span(id: &str, parent: Option<&str>, tags: &[(&str, &str)]) -> Span {
    Span {
        trace_id: "abc".into(),
        id: id.into(),
        parent_id: parent.map(str::to_string),
        name: Some("get /x".into()),
        kind: Some("SERVER".into()),
        timestamp: Some(10),
        duration: Some(5),
        local_endpoint: Some(crate::observe::traces::Endpoint {
            service_name: Some("svc".into()),
        }),
        remote_endpoint: None,
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    }
}

/// An all-zero parent id is no parent; `error` tags and 5xx statuses mark failures; an empty
/// trace gives nothing.
#[test]
fn traces_from_spans() {
    let t = trace(&[
        span(
            "1",
            Some("0000000000000000"),
            &[("http.status_code", "503")],
        ),
        span("2", Some("1"), &[("error", "timeout")]),
        span("3", Some("1"), &[("http.status_code", "200")]),
    ])
    .unwrap();
    assert_eq!(t.id, "abc");
    assert_eq!(t.spans[0].parent_id, None);
    assert_eq!(t.spans[1].parent_id.as_deref(), Some("1"));
    assert!(t.spans[0].error && t.spans[1].error && !t.spans[2].error);
    assert_eq!(t.root().unwrap().id, "1");
    assert!(trace(&[]).is_none());
}

/// A fault record shows as its id, kind, instance and options as `platform inject` writes
/// them.
#[test]
fn faults_from_records() {
    let start = DateTime::from_timestamp(1_735_732_800, 0).unwrap();
    let record = FaultRecord {
        id: "f-0a1b2c3d".into(),
        stack: "t".into(),
        kind: Kind::Latency,
        target: "inventory-service".into(),
        service: "inventory-service".into(),
        instance: 2,
        container: "platform-t-inventory-service-2".into(),
        options: Options {
            delay_ms: Some(200),
            jitter_ms: Some(0),
            ..Options::default()
        },
        started: start,
        ends: start + chrono::Duration::seconds(60),
        intended_stop: false,
        revert: Revert::Container {
            network: "platform-t".into(),
            aliases: vec![],
        },
        stack_file: None,
        attempts: 0,
        last_error: None,
        remaining_ms: None,
    };
    let rows = faults(&[record]);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].id, "f-0a1b2c3d");
    assert_eq!(rows[0].kind, "latency");
    assert_eq!(rows[0].instance, "inventory-service-2");
    assert_eq!(rows[0].options, "--delay 200ms");
    assert_eq!((rows[0].ends - rows[0].started).num_seconds(), 60);
}

fn docker(action: &str, exit: Option<i64>, signal: Option<&str>) -> ContainerEvent {
    ContainerEvent {
        action: action.into(),
        container: "platform-t-order-service-2".into(),
        service: "order-service".into(),
        instance: 2,
        exit_code: exit,
        signal: signal.map(str::to_string),
        time_nanos: 1_735_732_800_000_000_000,
    }
}

/// Docker events read as sentences about the instance; health-check execs are dropped.
#[test]
fn events_from_docker() {
    let e = event(&docker("die", Some(137), None)).unwrap();
    assert_eq!(e.text, "order-service-2 exited (137)");
    assert_eq!(e.severity, Severity::Bad);
    assert_eq!(e.at.timestamp(), 1_735_732_800);
    assert_eq!(
        event(&docker("kill", None, Some("9"))).unwrap().text,
        "order-service-2 sent SIGKILL"
    );
    // Health transitions come from platform's view (`health_changes`), not Docker's events.
    assert!(event(&docker("health_status: healthy", None, None)).is_none());
    assert!(event(&docker("exec_start: /probe", None, None)).is_none());
    assert_eq!(
        event(&docker("oom", None, None)).unwrap().text,
        "order-service-2 killed: out of memory"
    );
}

/// Health transitions as platform sees them: healthy and unhealthy, never for a first sight.
#[test]
fn health_transitions() {
    let s = stack();
    let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    let look = |healths: &[Option<Health>]| {
        let containers: Vec<_> = healths
            .iter()
            .enumerate()
            .map(|(i, h)| ContainerInfo {
                health: *h,
                ..container("order-service", i as u32 + 1)
            })
            .collect();
        StatusView::join(&s, "address", &containers, Err((None, "not read".into())))
    };
    let mut seen = HashMap::new();
    let first = health_changes(&mut seen, &look(&[Some(Health::Healthy), None]), at);
    assert!(first.is_empty(), "{first:?}");
    let texts = |v: Vec<Event>| {
        v.into_iter()
            .map(|e| (e.severity, e.text))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        texts(health_changes(
            &mut seen,
            &look(&[Some(Health::Unhealthy), Some(Health::Healthy)]),
            at
        )),
        vec![
            (Severity::Bad, "order-service-1 unhealthy".to_string()),
            (Severity::Good, "order-service-2 healthy".to_string())
        ]
    );
    // Unchanged: nothing; starting: nothing.
    let again = look(&[Some(Health::Unhealthy), Some(Health::Healthy)]);
    assert!(health_changes(&mut seen, &again, at).is_empty());
    let starting = look(&[Some(Health::Starting), Some(Health::Healthy)]);
    assert!(health_changes(&mut seen, &starting, at).is_empty());
    assert_eq!(
        texts(health_changes(
            &mut seen,
            &look(&[Some(Health::Healthy)]),
            at
        )),
        vec![(Severity::Good, "order-service-1 healthy".to_string())]
    );
}

fn tagged(text: &str) -> Tagged {
    let mut t = crate::observe::logs::Tagger::new("order-service-1", "c");
    t.tag(crate::runtime::LogLine {
        stream: LogStream::Stdout,
        timestamp: "2025-01-01T12:00:00.5Z".into(),
        text: text.into(),
    })
}

/// Our JSON lines give level, message, fields and trace id; plain lines keep their text and
/// a leading level; a `trace_id=` in text is found too.
#[test]
fn log_lines() {
    let l = log_line(&tagged(
        r#"{"timestamp":"2025-01-01T12:00:00.5Z","level":"WARN","target":"order_service","message":"inventory call failed","error":"timeout","attempt":2,"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7"}"#,
    ));
    assert_eq!(l.level, Some(Level::Warn));
    assert_eq!(l.text, "inventory call failed attempt=2 error=timeout");
    assert_eq!(
        l.trace_id.as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    assert_eq!(l.instance, "order-service-1");
    let plain = log_line(&tagged("2025-01-01 ERROR boom trace_id=abc span_id=def"));
    assert_eq!(plain.level, None);
    assert_eq!(plain.trace_id.as_deref(), Some("abc"));
    let leveled = log_line(&tagged("INFO ready on :8082"));
    assert_eq!(leveled.level, Some(Level::Info));
    assert_eq!(log_line(&tagged("{not json")).text, "{not json");
}
