//! One service's pod (containers, probes, resources, mounts, init containers), the workload that
//! runs it (Deployment or StatefulSet), its Service and, when exposed, its Ingress.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::env::{self, PodEnv};
use super::{Context, Exposure, Files, Issue, files_name};
use crate::stack::{Check, ImageSource, Mount, Recipe, Restart, Service};

/// The volume of the pod that holds the ConfigMap of mounted files.
const FILES_VOLUME: &str = "files";
/// The volume of the pod that holds the Secret of mounted files.
const SECRET_FILES_VOLUME: &str = "secret-files";
/// Shortest start-up budget the startup probe gets, whatever the stack's retries say: a pod on
/// a busy node starts slower than a container on an idle laptop.
const MIN_STARTUP: Duration = Duration::from_secs(30);

/// `app.kubernetes.io/component`: what part of the system a service is.
pub(crate) fn component(service: &Service) -> &'static str {
    match &service.source {
        // Our Kafka-API broker is a binary of the workspace like the services, but a broker.
        ImageSource::Build(Recipe::Binary { name }) if name == "kafka-broker" => "broker",
        ImageSource::Build(Recipe::Binary { .. }) => "service",
        ImageSource::Build(Recipe::Broker { .. }) => "broker",
        ImageSource::Build(Recipe::Mariadb) => "database",
        ImageSource::Image(_) => "infrastructure",
    }
}

/// Whether a service keeps data on named volumes: it runs as a StatefulSet whose pods each get
/// their own PersistentVolumeClaims.
fn is_stateful(service: &Service) -> bool {
    service
        .volumes
        .iter()
        .any(|m| matches!(m, Mount::Volume { .. }))
}

/// A service's pod, and what the workload around it needs.
pub(crate) struct Pod {
    /// It keeps data on named volumes: a StatefulSet with claim templates.
    stateful: bool,
    replicas: u32,
    spec: Value,
    claims: Vec<Value>,
    /// Secret environment values.
    secret: BTreeMap<String, String>,
}

impl Pod {
    /// The pod of `ctx`'s service; what has no Kubernetes form goes to `issues`.
    pub(crate) fn build(ctx: &Context<'_>, files: &Files, issues: &mut Vec<Issue>) -> Pod {
        let service = ctx.service;
        let stateful = is_stateful(service);
        let PodEnv { entries, secret } = env::pod_env(ctx, stateful, issues);
        restart_issue(service, issues);

        let mut container = json!({
            "name": service.name,
            "image": image(ctx),
            "env": entries,
        });
        if !service.command.is_empty() {
            // Docker's Cmd: the image's entrypoint stays, as in `up`.
            container["args"] = json!(service.command);
        }
        let ports = container_ports(service);
        if !ports.is_empty() {
            container["ports"] = json!(
                ports
                    .iter()
                    .map(
                        |p| json!({ "name": port_name(*p), "containerPort": p, "protocol": "TCP" })
                    )
                    .collect::<Vec<_>>()
            );
        }
        for (field, probe) in probes(service) {
            container[field] = probe;
        }
        if let Some(resources) = resources(service) {
            container["resources"] = resources;
        }

        let mut mounts = Vec::new();
        let mut claims = BTreeMap::new();
        for mount in &service.volumes {
            if let Mount::Volume {
                name,
                target,
                read_only,
            } = mount
            {
                let volume = dns_name(name);
                // A directory inside the claim, not its root: a fresh filesystem's root holds
                // `lost+found`, which `mysqld --initialize` and Kafka's log dirs refuse.
                mounts.push(json!({ "name": volume, "mountPath": target, "subPath": "data", "readOnly": read_only }));
                claims.insert(volume.clone(), claim(&volume, &ctx.options.volume_size));
            }
        }
        let mut volumes = Vec::new();
        for (secret_files, volume) in [(false, FILES_VOLUME), (true, SECRET_FILES_VOLUME)] {
            let mut used = false;
            for (key, target, _, _) in files.entries.iter().filter(|e| e.3 == secret_files) {
                used = true;
                mounts.push(json!({ "name": volume, "mountPath": target, "subPath": key, "readOnly": true }));
            }
            if used {
                volumes.push(if secret_files {
                    json!({ "name": volume, "secret": { "secretName": files_name(&service.name) } })
                } else {
                    json!({ "name": volume, "configMap": { "name": files_name(&service.name) } })
                });
            }
        }
        if !mounts.is_empty() {
            container["volumeMounts"] = json!(mounts);
        }

        // No `<SERVICE>_PORT`-style variables for every Service of the namespace (a Docker
        // network has none, and apache/kafka reads every `KAFKA_*` variable as its
        // configuration), and no API token: nothing here talks to the Kubernetes API.
        let mut spec = json!({
            "containers": [container],
            "restartPolicy": "Always",
            "enableServiceLinks": false,
            "automountServiceAccountToken": false,
        });
        let init = init_containers(ctx, issues);
        if !init.is_empty() {
            spec["initContainers"] = json!(init);
        }
        if !volumes.is_empty() {
            spec["volumes"] = json!(volumes);
        }
        Pod {
            stateful,
            replicas: ctx
                .options
                .scale
                .get(&service.name)
                .copied()
                .unwrap_or(service.instances),
            spec,
            claims: claims.into_values().collect(),
            secret,
        }
    }

    /// The Secret of the service's secret environment values, if it has any.
    pub(crate) fn secret(&self, ctx: &Context<'_>) -> Option<Value> {
        (!self.secret.is_empty()).then(|| {
            json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "Opaque",
                "metadata": ctx.metadata(&env::secret_name(&ctx.service.name)),
                "stringData": self.secret,
            })
        })
    }

    /// The Deployment or StatefulSet that runs the pod.
    pub(crate) fn workload(&self, ctx: &Context<'_>) -> Value {
        let mut spec = json!({
            "replicas": self.replicas,
            "selector": { "matchLabels": ctx.selector() },
            "template": {
                "metadata": { "labels": ctx.labels() },
                "spec": self.spec,
            },
        });
        let kind = if self.stateful {
            spec["serviceName"] = json!(ctx.service.name);
            spec["volumeClaimTemplates"] = json!(self.claims);
            "StatefulSet"
        } else {
            "Deployment"
        };
        json!({
            "apiVersion": "apps/v1",
            "kind": kind,
            "metadata": ctx.metadata(&ctx.service.name),
            "spec": spec,
        })
    }
}

/// A restart policy Kubernetes cannot keep: its workloads always restart their containers.
fn restart_issue(service: &Service, issues: &mut Vec<Issue>) {
    let lost = match service.restart {
        Restart::No => "`no`: a Deployment or StatefulSet always restarts its containers",
        Restart::OnFailure {
            max_retries: Some(_),
        } => "a retry limit: a Deployment or StatefulSet restarts its containers without one",
        Restart::OnFailure { max_retries: None } | Restart::Always | Restart::UnlessStopped => {
            return;
        }
    };
    issues.push(Issue {
        service: service.name.clone(),
        key: format!("services.{}.restart", service.name),
        message: format!(
            "`{}` has no Kubernetes form ({lost}); rendered as restartPolicy Always",
            service.restart
        ),
    });
}

/// A secret of the stack in `command` or an `exec` health check would stand in the pod spec
/// for anyone who can read it: only a variable can come from a Secret. Unlike an [`Issue`],
/// there is no approximate rendering of it: `allow_lossy` does not turn it into a warning.
pub(crate) fn secrets_in_commands(ctx: &Context<'_>, found: &mut Vec<Issue>) {
    let service = ctx.service;
    let health = match service.health.as_ref().map(|h| &h.check) {
        Some(Check::Exec { command }) => command.as_slice(),
        _ => &[],
    };
    for (key, args) in [
        ("command", service.command.as_slice()),
        ("health.exec", health),
    ] {
        if args.iter().any(|a| ctx.scan.contains_secret(a)) {
            found.push(Issue {
                service: service.name.clone(),
                key: format!("services.{}.{key}", service.name),
                message: "contains a secret value, which would stand in the pod spec as plain text; pass it in an environment variable instead".to_string(),
            });
        }
    }
}

/// The image a pod runs: official images as named, ours under the user's registry prefix.
fn image(ctx: &Context<'_>) -> String {
    match &ctx.service.source {
        ImageSource::Image(image) => image.clone(),
        ImageSource::Build(recipe) => format!(
            "{}{}:{}",
            ctx.options.image_prefix,
            recipe.image_name(),
            ctx.options.image_tag
        ),
    }
}

/// The service's port and the container ports it publishes, sorted, without repeats.
fn container_ports(service: &Service) -> Vec<u16> {
    let mut ports: Vec<u16> = service
        .port
        .into_iter()
        .chain(service.ports.iter().map(|p| p.container_port))
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

fn port_name(port: u16) -> String {
    format!("tcp-{port}")
}

/// A name Kubernetes accepts for a volume: lowercase letters, digits and `-`.
fn dns_name(name: &str) -> String {
    let s: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    s.trim_matches('-').chars().take(63).collect()
}

fn claim(name: &str, size: &str) -> Value {
    json!({
        "metadata": { "name": name },
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": { "requests": { "storage": size } },
        },
    })
}

/// Whole seconds, rounded up, at least 1 (Kubernetes probes count in seconds).
fn seconds(d: Duration) -> u64 {
    d.as_millis().div_ceil(1000).max(1) as u64
}

/// The startup, readiness and liveness probes from the stack's health check.
///
/// - startup: the liveness check, as often as the stack's `start_interval` (its `interval` when
///   not given), allowed `retries` failures after `start_period` (what `up` waits for), at least
///   [`MIN_STARTUP`];
/// - readiness: the readiness check (`/health/ready` for our services) every `interval`, out of
///   the Service's endpoints after 3 failures;
/// - liveness: the liveness check (`/health/live`; the port for an HTTP-checked official image,
///   so a slow dependency never gets it restarted) every `interval` but at most every 10 s,
///   restarted after 3 failures.
fn probes(service: &Service) -> Vec<(&'static str, Value)> {
    let Some(health) = &service.health else {
        return Vec::new();
    };
    let (ready, live) = match &health.check {
        Check::Probe => match (service.port, &service.source) {
            (Some(port), _) => (
                json!({ "httpGet": { "path": "/health/ready", "port": port } }),
                json!({ "httpGet": { "path": "/health/live", "port": port } }),
            ),
            (None, ImageSource::Build(recipe)) => {
                let exec = json!({ "exec": { "command": [format!("/app/{}", recipe.image_name()), "--probe"] } });
                (exec.clone(), exec)
            }
            (None, ImageSource::Image(_)) => return Vec::new(),
        },
        Check::Http { path, port } => (
            json!({ "httpGet": { "path": path, "port": port } }),
            json!({ "tcpSocket": { "port": port } }),
        ),
        Check::Tcp { port } => {
            let tcp = json!({ "tcpSocket": { "port": port } });
            (tcp.clone(), tcp)
        }
        Check::Exec { command } => {
            let exec = json!({ "exec": { "command": command } });
            (exec.clone(), exec)
        }
    };
    let period = seconds(health.interval);
    let start_period = seconds(health.start_interval);
    let timeout = seconds(health.timeout);
    let budget = (health.start_period.as_secs_f64() / start_period as f64).ceil() as u64
        + u64::from(health.retries);
    let startup = budget.max(MIN_STARTUP.as_secs().div_ceil(start_period));
    let with = |mut handler: Value, period: u64, failures: u64| {
        handler["periodSeconds"] = json!(period);
        handler["timeoutSeconds"] = json!(timeout);
        handler["failureThreshold"] = json!(failures);
        handler
    };
    vec![
        ("startupProbe", with(live.clone(), start_period, startup)),
        ("readinessProbe", with(ready, period, 3)),
        ("livenessProbe", with(live, period.max(10), 3)),
    ]
}

/// Requests and limits from `resources`: Docker's limits are hard and reserved, so the
/// request equals the limit (a pod is scheduled only where its memory is there).
fn resources(service: &Service) -> Option<Value> {
    let mut amounts = serde_json::Map::new();
    if let Some(bytes) = service.resources.memory_bytes {
        amounts.insert("memory".to_string(), json!(memory(bytes)));
    }
    if let Some(cpus) = service.resources.cpus {
        amounts.insert(
            "cpu".to_string(),
            json!(format!("{}m", (cpus * 1000.0).round() as u64)),
        );
    }
    (!amounts.is_empty()).then(|| json!({ "limits": amounts, "requests": amounts }))
}

/// Bytes as a Kubernetes quantity, in the largest binary unit that divides them.
fn memory(bytes: u64) -> String {
    for (unit, size) in [("Gi", 1u64 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)] {
        if bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

/// One init container per dependency, waiting until its Service accepts connections. A
/// stateless dependency's Service has endpoints only for ready pods, so this waits for
/// `healthy`; a stateful one's headless Service names its pod before it is ready (see
/// [`service`]), so this waits until its port accepts connections.
///
/// Our services wait with their own binary (`--wait-for HOST:PORT`, in their FROM-scratch image,
/// which has no shell); an image without that mode waits in `--wait-image` (busybox by default,
/// with `sh` and `nc`; a cluster without access to public images needs it mirrored).
fn init_containers(ctx: &Context<'_>, issues: &mut Vec<Issue>) -> Vec<Value> {
    let own_binary = matches!(
        ctx.service.source,
        ImageSource::Build(Recipe::Binary { .. })
    );
    let mut out = Vec::new();
    for dep in ctx.service.depends_on.keys() {
        let Some(port) = ctx.stack.services.get(dep).and_then(|s| s.port) else {
            issues.push(Issue {
                service: ctx.service.name.clone(),
                key: format!("services.{}.depends_on.{dep}", ctx.service.name),
                message: format!(
                    "`{dep}` has no port, so no Service to wait for; the pod starts without waiting"
                ),
            });
            continue;
        };
        let mut init = if own_binary {
            json!({
                "image": image(ctx),
                "args": ["--wait-for", format!("{dep}:{port}")],
            })
        } else {
            let script = format!(
                "until nc -z -w 2 {dep} {port}; do echo waiting for {dep}:{port}; sleep 2; done"
            );
            json!({
                "image": ctx.options.wait_image,
                "command": ["sh", "-c", script],
            })
        };
        init["name"] = json!(format!("wait-for-{dep}"));
        init["resources"] = json!({
            "limits": { "memory": "32Mi", "cpu": "50m" },
            "requests": { "memory": "32Mi", "cpu": "50m" },
        });
        out.push(init);
    }
    out
}

/// The Service in front of the pods, one port per container port (none without ports).
///
/// A stateless service gets a ClusterIP Service: one stable address balancing over its ready
/// pods. A stateful one gets a headless Service (its StatefulSet's governing Service) that
/// resolves to the pod itself, ready or not, on every port, as the service's name does on the
/// Docker network: the broker reaches its own controller port through its name while starting.
pub(crate) fn service(ctx: &Context<'_>) -> Option<Value> {
    let ports = container_ports(ctx.service);
    if ports.is_empty() {
        return None;
    }
    let mut spec = json!({
        "selector": ctx.selector(),
        "ports": ports.iter().map(|p| json!({
            "name": port_name(*p),
            "port": p,
            "targetPort": p,
            "protocol": "TCP",
        })).collect::<Vec<_>>(),
    });
    if is_stateful(ctx.service) && !ctx.exposed {
        spec["clusterIP"] = json!("None");
        spec["publishNotReadyAddresses"] = json!(true);
    }
    spec["type"] = json!(
        if ctx.exposed && ctx.options.exposure == Exposure::LoadBalancer {
            "LoadBalancer"
        } else {
            "ClusterIP"
        }
    );
    Some(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": ctx.metadata(&ctx.service.name),
        "spec": spec,
    }))
}

/// An Ingress sending every path to the exposed service's port.
pub(crate) fn ingress(ctx: &Context<'_>, host: Option<&str>, class: Option<&str>) -> Value {
    let port = ctx.service.port.unwrap_or_default();
    let mut rule = json!({
        "http": { "paths": [{
            "path": "/",
            "pathType": "Prefix",
            "backend": { "service": { "name": ctx.service.name, "port": { "number": port } } },
        }] },
    });
    if let Some(host) = host {
        rule["host"] = json!(host);
    }
    let mut spec = json!({ "rules": [rule] });
    if let Some(class) = class {
        spec["ingressClassName"] = json!(class);
    }
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": ctx.metadata(&ctx.service.name),
        "spec": spec,
    })
}
