//! `platform status`'s model: the stack's containers (state, health, address, published ports)
//! joined to the registry's view, and the drift between the two: a container that runs but
//! is not registered, an instance that is registered but whose container stopped or does not
//! exist. The join is pure ([`StatusView::join`]) so every case is unit-tested.
//!
//! Which services should be in the registry comes from the stack: those whose environment sets
//! `REGISTRY_URL` (the kit registers unless `REGISTRY_DISABLED=true`). The infrastructure
//! (registry, database, broker) never registers and is never drift.

use registry_client::model::{Applications, InstanceInfo};
use serde::Serialize;

use super::REGISTRY_URL_ENV;
use super::kafka::KafkaSummary;
use super::registry::container_of;
use crate::output;
use crate::runtime::{ContainerInfo, Health, PortSpec};
use crate::stack::Stack;

/// The kit's switch that keeps a service out of the registry.
const REGISTRY_DISABLED_ENV: &str = "REGISTRY_DISABLED";

/// What `platform status --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct StatusView {
    pub stack: String,
    /// True when at least one container runs.
    pub running: bool,
    /// How the CLI reaches containers: `address` or `published`.
    pub route: String,
    pub registry: RegistrySummary,
    /// Every container of the stack, by service and instance.
    pub containers: Vec<ContainerStatus>,
    /// Services of the stack file without any container.
    pub not_created: Vec<String>,
    /// Registry entries that match no running container.
    pub registered_without_container: Vec<RegisteredInstance>,
    /// Disagreements between Docker and the registry.
    pub drift: Vec<Drift>,
    /// Consumer groups and their lag, read from the broker (when the stack has one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaSummary>,
}

/// How reading the registry went.
#[derive(Debug, Clone, Serialize)]
pub struct RegistrySummary {
    /// Where it was read, when the stack says where it is.
    pub url: Option<String>,
    pub reachable: bool,
    /// Why it could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Registered instances (all applications).
    pub instances: usize,
}

/// One container with its registry entry.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerStatus {
    pub service: String,
    pub instance: u32,
    pub container: String,
    /// Docker's state: `running`, `exited`, `created`, ...
    pub state: String,
    /// Docker's health check status, when the container has one.
    pub health: Option<Health>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// Restarts by Docker's restart policy since the container was created.
    pub restarts: u64,
    /// Whether the kernel's OOM killer ended the container's last run.
    pub oom_killed: bool,
    /// The address on the stack network.
    pub address: Option<String>,
    /// Published host ports.
    pub ports: Vec<PortSpec>,
    /// Whether the stack has this service register with the registry.
    pub registers: bool,
    /// Its registry entry, when there is one.
    pub registered: Option<Registered>,
}

/// A registry entry matched to a container.
#[derive(Debug, Clone, Serialize)]
pub struct Registered {
    pub instance_id: String,
    /// The effective status: `UP`, `DOWN`, `STARTING`, `OUT_OF_SERVICE`, `UNKNOWN`.
    pub status: String,
}

/// A registry entry without a running container.
#[derive(Debug, Clone, Serialize)]
pub struct RegisteredInstance {
    /// The application, lower-case as services name it.
    pub service: String,
    pub instance_id: String,
    pub status: String,
    pub host_name: String,
    /// The container it belongs to, when that exists but does not run.
    pub container: Option<String>,
}

/// One disagreement between Docker and the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    pub kind: DriftKind,
    pub service: String,
    pub container: Option<String>,
    pub instance_id: Option<String>,
    /// The sentence `status` prints.
    pub message: String,
}

/// The kinds of drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    /// The container runs, the service should register, the registry does not list it.
    RunningNotRegistered,
    /// The registry lists it, its container exists but does not run.
    RegisteredNotRunning,
    /// The registry lists it and no container of the stack matches.
    RegisteredNoContainer,
}

/// Whether `service` of `stack` should appear in the registry.
pub fn registers(stack: &Stack, service: &str) -> bool {
    stack.services.get(service).is_some_and(|s| {
        s.env.contains_key(REGISTRY_URL_ENV)
            && !s
                .env
                .get(REGISTRY_DISABLED_ENV)
                .is_some_and(|v| v.raw().trim().eq_ignore_ascii_case("true"))
    })
}

impl StatusView {
    /// Joins `containers` to the registry's content (`Ok((url, apps))`) or to why it could not
    /// be read (`Err((url, message))`); drift is only computed when the registry answered.
    pub fn join(
        stack: &Stack,
        route: &str,
        containers: &[ContainerInfo],
        registry: std::result::Result<(&str, &Applications), (Option<&str>, String)>,
    ) -> Self {
        let network = stack.network_name();
        let instances: Vec<&InstanceInfo> = match &registry {
            Ok((_, apps)) => apps.instances().collect(),
            Err(_) => Vec::new(),
        };
        let summary = match &registry {
            Ok((url, _)) => RegistrySummary {
                url: Some(url.to_string()),
                reachable: true,
                error: None,
                instances: instances.len(),
            },
            Err((url, e)) => RegistrySummary {
                url: url.map(str::to_string),
                reachable: false,
                error: Some(e.clone()),
                instances: 0,
            },
        };
        let mut drift = Vec::new();

        // Each registry entry goes to one container (or to none).
        let matched: Vec<(&InstanceInfo, Option<&ContainerInfo>)> = instances
            .iter()
            .map(|i| (*i, container_of(i, containers, &network)))
            .collect();

        let mut rows = Vec::new();
        for c in containers {
            let entry = matched
                .iter()
                .find(|(_, m)| m.is_some_and(|m| m.id == c.id))
                .map(|(i, _)| Registered {
                    instance_id: i.instance_id.clone(),
                    status: i.effective_status().to_string(),
                });
            let should = registers(stack, &c.service);
            if registry.is_ok() && c.state == "running" && should && entry.is_none() {
                let starting = c.health == Some(Health::Starting);
                drift.push(Drift {
                    kind: DriftKind::RunningNotRegistered,
                    service: c.service.clone(),
                    container: Some(c.name.clone()),
                    instance_id: None,
                    message: format!(
                        "{}: running but not registered{}",
                        super::instance_label(c),
                        if starting { " (still starting)" } else { "" }
                    ),
                });
            }
            rows.push(ContainerStatus {
                service: c.service.clone(),
                instance: c.instance,
                container: c.name.clone(),
                state: c.state.clone(),
                health: c.health,
                exit_code: (c.state != "running").then_some(c.exit_code).flatten(),
                restarts: c.restart_count,
                oom_killed: c.oom_killed,
                address: c.addresses.get(&network).cloned(),
                ports: c.ports.clone(),
                registers: should,
                registered: entry,
            });
        }

        let mut orphans = Vec::new();
        for (i, c) in &matched {
            if c.is_some_and(|c| c.state == "running") {
                continue;
            }
            let service = i.app.to_ascii_lowercase();
            let label = if i.instance_id.is_empty() {
                i.host_name.clone()
            } else {
                i.instance_id.clone()
            };
            let (kind, message) = match c {
                Some(c) => (
                    DriftKind::RegisteredNotRunning,
                    format!(
                        "{label}: registered but its container {} is {}",
                        c.name, c.state
                    ),
                ),
                None => (
                    DriftKind::RegisteredNoContainer,
                    format!("{label}: registered but no container"),
                ),
            };
            drift.push(Drift {
                kind,
                service: service.clone(),
                container: c.map(|c| c.name.clone()),
                instance_id: Some(i.instance_id.clone()),
                message,
            });
            orphans.push(RegisteredInstance {
                service,
                instance_id: i.instance_id.clone(),
                status: i.effective_status().to_string(),
                host_name: i.host_name.clone(),
                container: c.map(|c| c.name.clone()),
            });
        }
        orphans.sort_by(|a, b| (&a.service, &a.instance_id).cmp(&(&b.service, &b.instance_id)));
        drift.sort_by(|a, b| {
            (&a.service, a.kind, &a.container, &a.instance_id).cmp(&(
                &b.service,
                b.kind,
                &b.container,
                &b.instance_id,
            ))
        });
        let not_created = stack
            .services
            .keys()
            .filter(|s| !containers.iter().any(|c| &c.service == *s))
            .cloned()
            .collect();
        StatusView {
            stack: stack.name.clone(),
            running: containers.iter().any(|c| c.state == "running"),
            route: route.to_string(),
            registry: summary,
            containers: rows,
            not_created,
            registered_without_container: orphans,
            drift,
            kafka: None,
        }
    }

    /// Adds what the broker said about consumer groups.
    pub fn with_kafka(mut self, kafka: KafkaSummary) -> Self {
        self.kafka = Some(kafka);
        self
    }

    /// The human rendering: a summary line, a table of containers, then drift.
    pub fn to_text(&self) -> String {
        let running = self
            .containers
            .iter()
            .filter(|c| c.state == "running")
            .count();
        let mut text = format!(
            "stack {}: {running} of {} containers running",
            self.stack,
            self.containers.len()
        );
        match (&self.registry.url, self.registry.reachable) {
            (Some(url), true) => text.push_str(&format!(
                "; registry {url}: {} instances\n",
                self.registry.instances
            )),
            _ => text.push_str(&format!(
                "; registry not read: {}\n",
                self.registry.error.as_deref().unwrap_or("unknown")
            )),
        }
        if self.containers.is_empty() {
            return text;
        }
        let mut rows = vec![
            [
                "SERVICE", "#", "STATE", "HEALTH", "RESTARTS", "ADDRESS", "PORTS", "REGISTRY",
            ]
            .map(String::from)
            .to_vec(),
        ];
        for c in &self.containers {
            let mut state = match c.exit_code {
                Some(code) => format!("{} ({code})", c.state),
                None => c.state.clone(),
            };
            if c.oom_killed {
                state.push_str(" OOM-killed");
            }
            let health = match c.health {
                Some(Health::Healthy) => "healthy",
                Some(Health::Starting) => "starting",
                Some(Health::Unhealthy) => "unhealthy",
                None => "-",
            };
            let ports = ports_text(&c.ports);
            let registry = match (&c.registered, c.registers) {
                (Some(r), _) => r.status.clone(),
                (None, true) if self.registry.reachable => "missing".to_string(),
                (None, true) => "?".to_string(),
                (None, false) => "-".to_string(),
            };
            rows.push(vec![
                c.service.clone(),
                c.instance.to_string(),
                state,
                health.to_string(),
                c.restarts.to_string(),
                c.address.clone().unwrap_or_else(|| "-".into()),
                ports,
                registry,
            ]);
        }
        text.push('\n');
        text.push_str(&output::table(&rows));
        if !self.not_created.is_empty() {
            text.push_str(&format!("\nnot created: {}\n", self.not_created.join(", ")));
        }
        if !self.drift.is_empty() {
            text.push_str("\ndrift:\n");
            for d in &self.drift {
                text.push_str(&format!("  ! {}\n", d.message));
            }
        }
        match &self.kafka {
            Some(k) if k.reachable => {
                text.push_str(&format!(
                    "\nconsumer lag (broker {}):\n",
                    k.broker.as_deref().unwrap_or("?")
                ));
                if k.groups.is_empty() {
                    text.push_str("  no consumer groups\n");
                } else {
                    text.push_str(&output::table(&k.rows()));
                }
            }
            Some(k) => text.push_str(&format!(
                "\nconsumer lag not read: {}\n",
                k.error.as_deref().unwrap_or("unknown")
            )),
            None => {}
        }
        text
    }
}

/// Published ports as `8080->8080` (all addresses, IPv4 and IPv6 shown once) or
/// `127.0.0.1:18080->8080`.
fn ports_text(ports: &[PortSpec]) -> String {
    let mut shown: Vec<String> = Vec::new();
    for p in ports {
        let text = match p.host_ip.as_deref() {
            None | Some("0.0.0.0" | "::" | "") => format!("{}->{}", p.host_port, p.container_port),
            Some(ip) => format!("{ip}:{}->{}", p.host_port, p.container_port),
        };
        if !shown.contains(&text) {
            shown.push(text);
        }
    }
    if shown.is_empty() {
        "-".to_string()
    } else {
        shown.join(",")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use registry_client::model::{Application, InstanceStatus};

    use super::*;

    const STACK: &str = r#"
[stack]
name = "t"
[services.discovery-server]
image = "r"
port = 8761
[services.order-service]
image = "o"
port = 8082
instances = 3
env = { REGISTRY_URL = "http://${discovery-server}:8761" }
[services.quiet]
image = "q"
port = 1
env = { REGISTRY_URL = "http://${discovery-server}:8761", REGISTRY_DISABLED = "true" }
[services.db]
image = "m"
"#;

    fn stack() -> Stack {
        let report = crate::stack::validate::validate(STACK, Path::new("t.toml"), "t.toml");
        report.stack.expect("valid test stack")
    }

    fn container(service: &str, n: u32, state: &str, health: Option<Health>) -> ContainerInfo {
        let name = format!("platform-t-{service}-{n}");
        ContainerInfo {
            id: name.clone(),
            name,
            image: String::new(),
            stack: "t".into(),
            service: service.into(),
            instance: n,
            state: state.into(),
            health,
            addresses: if state == "running" {
                HashMap::from([("platform-t".to_string(), format!("10.0.0.{n}"))])
            } else {
                HashMap::new()
            },
            labels: HashMap::new(),
            ports: vec![],
            exit_code: (state != "running").then_some(137),
            restart_count: 0,
            oom_killed: false,
        }
    }

    fn registered(service: &str, n: u32, status: InstanceStatus) -> InstanceInfo {
        let host = format!("platform-t-{service}-{n}");
        let mut i = InstanceInfo::new(service, &format!("{host}:{service}:1"), &host, &host, 1);
        i.status = status;
        i
    }

    fn apps(instances: Vec<InstanceInfo>) -> Applications {
        let mut by_app: std::collections::BTreeMap<String, Vec<InstanceInfo>> = Default::default();
        for i in instances {
            by_app.entry(i.app.clone()).or_default().push(i);
        }
        Applications {
            versions_delta: 1,
            apps_hashcode: String::new(),
            application: by_app
                .into_iter()
                .map(|(name, instance)| Application { name, instance })
                .collect(),
        }
    }

    /// Only services that set REGISTRY_URL (and do not disable it) are expected to register.
    #[test]
    fn who_registers() {
        let s = stack();
        assert!(registers(&s, "order-service"));
        assert!(!registers(&s, "quiet"), "REGISTRY_DISABLED=true");
        assert!(!registers(&s, "discovery-server"));
        assert!(!registers(&s, "db"));
        assert!(!registers(&s, "not-in-stack"));
    }

    /// Each kind of drift is found once: a running unregistered instance (starting ones say
    /// so), an entry whose container exited, an entry without any container. Infrastructure
    /// that never registers and matched instances are not drift.
    #[test]
    fn finds_drift() {
        let s = stack();
        let containers = vec![
            container("db", 1, "running", Some(Health::Healthy)),
            container("discovery-server", 1, "running", None),
            container("order-service", 1, "running", Some(Health::Healthy)),
            container("order-service", 2, "running", Some(Health::Starting)),
            container("order-service", 3, "exited", None),
            container("quiet", 1, "running", None),
        ];
        let reg = apps(vec![
            registered("order-service", 1, InstanceStatus::Up),
            registered("order-service", 3, InstanceStatus::Up),
            registered("order-service", 9, InstanceStatus::Down),
        ]);
        let v = StatusView::join(&s, "address", &containers, Ok(("http://r:8761", &reg)));
        let kinds: Vec<(DriftKind, Option<&str>)> = v
            .drift
            .iter()
            .map(|d| (d.kind, d.container.as_deref()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (
                    DriftKind::RunningNotRegistered,
                    Some("platform-t-order-service-2")
                ),
                (
                    DriftKind::RegisteredNotRunning,
                    Some("platform-t-order-service-3")
                ),
                (DriftKind::RegisteredNoContainer, None),
            ]
        );
        assert!(
            v.drift[0]
                .message
                .ends_with("running but not registered (still starting)")
        );
        assert!(
            v.drift[1].message.contains("is exited"),
            "{}",
            v.drift[1].message
        );
        assert!(v.drift[2].message.ends_with("registered but no container"));
        assert_eq!(v.registered_without_container.len(), 2);
        let one = &v.containers[2];
        assert_eq!(one.container, "platform-t-order-service-1");
        assert_eq!(one.registered.as_ref().unwrap().status, "UP");
        assert_eq!(one.address.as_deref(), Some("10.0.0.1"));
        assert_eq!(v.containers[4].exit_code, Some(137));
        assert!(v.running);
        assert!(v.not_created.is_empty());
        let text = v.to_text();
        assert!(
            text.contains("! order-service-2: running but not registered"),
            "{text}"
        );
        assert!(text.contains("exited (137)"), "{text}");
    }

    /// Restarts and OOM kills are shown per container, in the text table and the JSON.
    #[test]
    fn shows_restarts_and_oom_kills() {
        let s = stack();
        let mut gateway = container("order-service", 1, "running", None);
        gateway.restart_count = 3;
        let mut killed = container("order-service", 2, "exited", None);
        killed.oom_killed = true;
        let v = StatusView::join(
            &s,
            "host",
            &[gateway, killed],
            Err((None, "the stack is not running".to_string())),
        );
        assert_eq!(
            (v.containers[0].restarts, v.containers[0].oom_killed),
            (3, false)
        );
        assert_eq!(
            (v.containers[1].restarts, v.containers[1].oom_killed),
            (0, true)
        );
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["containers"][0]["restarts"], 3);
        assert_eq!(json["containers"][1]["oom_killed"], true);
        let text = v.to_text();
        let header = text.lines().find(|l| l.starts_with("SERVICE")).unwrap();
        assert!(header.contains("RESTARTS"), "{text}");
        let row = |n: &str| {
            text.lines()
                .find(|l| l.starts_with("order-service") && l.split_whitespace().nth(1) == Some(n))
                .unwrap_or_else(|| panic!("row {n} in {text}"))
                .split_whitespace()
                .collect::<Vec<_>>()
        };
        assert_eq!(row("1")[2..4], ["running", "-"], "{text}");
        assert_eq!(row("1")[4], "3", "{text}");
        assert_eq!(row("2")[2..5], ["exited", "(137)", "OOM-killed"], "{text}");
    }

    /// A port published on all IPv4 and IPv6 addresses shows once; a bound one names its address.
    #[test]
    fn port_text() {
        let p = |ip: Option<&str>, host: u16| PortSpec {
            host_ip: ip.map(str::to_string),
            host_port: host,
            container_port: 8080,
        };
        assert_eq!(ports_text(&[]), "-");
        assert_eq!(
            ports_text(&[p(Some("0.0.0.0"), 8080), p(Some("::"), 8080)]),
            "8080->8080"
        );
        assert_eq!(
            ports_text(&[p(Some("127.0.0.1"), 18080)]),
            "127.0.0.1:18080->8080"
        );
    }

    /// Without an answer from the registry nothing is called drift, and the reason is shown.
    #[test]
    fn unreadable_registry_is_not_drift() {
        let s = stack();
        let containers = vec![container("order-service", 1, "running", None)];
        let v = StatusView::join(
            &s,
            "address",
            &containers,
            Err((Some("http://r:8761"), "connection refused".into())),
        );
        assert!(v.drift.is_empty());
        assert!(!v.registry.reachable);
        assert_eq!(v.registry.error.as_deref(), Some("connection refused"));
        assert!(
            v.to_text()
                .contains("registry not read: connection refused")
        );
        assert!(v.to_text().contains('?'));
        assert_eq!(v.not_created, vec!["db", "discovery-server", "quiet"]);
    }

    /// No containers: not running, every service not created.
    #[test]
    fn stopped_stack() {
        let s = stack();
        let v = StatusView::join(&s, "address", &[], Err((None, "not running".into())));
        assert!(!v.running);
        assert_eq!(v.not_created.len(), 4);
    }
}
