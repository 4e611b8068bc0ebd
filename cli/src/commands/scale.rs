//! `platform scale SERVICE N [--timeout]`: runs exactly N instances of a stateless service.
//!
//! New instances are made from the stack's container spec (the same [`up::plan_service`] as
//! `up`, numbered `-1..-N` with `platform.instance`) on the image the running instances use,
//! and the command returns once each is healthy **and** UP in the registry, or fails after the
//! timeout naming what was missing, showing the new instances' last output and removing them.
//! Surplus instances (highest numbers first) get SIGTERM, which makes the kit leave the
//! registry; the CLI waits until the registry no longer lists them (deregistering them itself
//! if the lease is still there), then stops and removes them. Running it again converges: N
//! running instances are left alone.
//!
//! Only stateless services scale: a service with a named volume (MariaDB, the broker, the product
//! store) would share its data files; one that others reach at a fixed address (the registry,
//! identity provider, trace collector) would split its in-memory state behind one DNS name; one
//! that publishes a host port cannot bind it twice; one that does not register would get no
//! traffic from the balancers. Those are refused with the reason (exit code 2).
//!
//! A later `platform up` converges back to the stack file's `instances`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use clap::Args;
use registry_client::model::{InstanceInfo, InstanceStatus};
use serde::Serialize;

use super::Global;
use super::health;
use super::up::{self, Planned};
use crate::observe::Observer;
use crate::observe::registry::{self as reg, RegistryWatch};
use crate::observe::status::registers;
use crate::runtime::{ContainerInfo, Runtime};
use crate::stack::env::Reference;
use crate::stack::{Mount, Service, Stack, StackFile};
use crate::{Result, output};

/// The most instances `scale` starts for one service: the stack file's own limit
/// (`instances` in a stack file is 1 to this), so both say the same.
pub const MAX_INSTANCES: u32 = crate::stack::validate::MAX_INSTANCES as u32;

/// `platform scale` arguments.
#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// A stateless service of the stack (e.g. order-service).
    pub service: String,
    /// How many instances should run (0 stops them all).
    #[arg(value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_INSTANCES)))]
    pub instances: u32,
    /// Give up when new instances are not healthy and registered after this long.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// Why scaling did not happen or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    /// The service must not run more than one instance.
    #[error("`{service}` cannot be scaled: {reason}")]
    NotScalable {
        service: String,
        reason: String,
        /// The services of the stack that can.
        scalable: Vec<String>,
    },
    /// Nothing runs to take the image from.
    #[error("`{service}` has no running instance to scale from")]
    NotUp { service: String, stack: String },
    /// New instances did not get ready in time.
    #[error("{service}: {what}")]
    NotReady { service: String, what: String },
}

impl ScaleError {
    /// A next step for the user.
    pub fn hint(&self) -> Option<String> {
        match self {
            ScaleError::NotScalable { scalable, .. } if scalable.is_empty() => {
                Some("no service of this stack can be scaled".to_string())
            }
            ScaleError::NotScalable { scalable, .. } => Some(format!(
                "the stateless services of this stack scale: {}",
                scalable.join(", ")
            )),
            ScaleError::NotUp { service, .. } => {
                Some(format!("start it with `platform up {service}`"))
            }
            ScaleError::NotReady { service, .. } => Some(format!(
                "the new instances were removed again; `platform logs {service}` shows the rest, \
                 a longer --timeout gives slow starts more time"
            )),
        }
    }

    /// Usage errors exit 2, the rest 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            ScaleError::NotScalable { .. } => 2,
            _ => 1,
        }
    }
}

/// What `scale --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleView {
    pub service: String,
    pub before: usize,
    pub instances: u32,
    /// Containers this run started.
    pub started: Vec<String>,
    /// Containers this run removed.
    pub removed: Vec<String>,
    pub seconds: f64,
}

/// Why `service` must not run more than one instance, if it must not.
pub fn not_scalable(stack: &Stack, service: &Service) -> Option<String> {
    if let Some(reason) = shares_state(stack, service) {
        return Some(reason);
    }
    if let Some(p) = service.ports.first() {
        return Some(format!(
            "it publishes host port {}, which a second instance cannot bind",
            p.host_port
        ));
    }
    if !registers(stack, &service.name) {
        return Some(
            "it does not register with the registry, so no balancer would send work to more instances"
                .to_string(),
        );
    }
    None
}

/// Why more instances of `service` would split its state, wherever they run (Docker or
/// Kubernetes): it keeps data on a volume, or others reach it by its fixed name.
pub fn shares_state(stack: &Stack, service: &Service) -> Option<String> {
    if let Some(volume) = service.volumes.iter().find_map(|m| match m {
        Mount::Volume { name, .. } => Some(name),
        Mount::Bind { .. } => None,
    }) {
        return Some(format!(
            "it is stateful: it keeps its data on volume `{volume}`, which instances cannot share"
        ));
    }
    let mut referrers: Vec<&str> = stack
        .services
        .values()
        .filter(|s| s.name != service.name)
        .filter(|s| {
            s.env.values().any(|t| {
                t.references().any(|r| {
                    matches!(r, Reference::ServiceHost(n) | Reference::ServicePort(n) if *n == service.name)
                })
            })
        })
        .map(|s| s.name.as_str())
        .collect();
    referrers.sort_unstable();
    if !referrers.is_empty() {
        return Some(format!(
            "{} reach it at its fixed address `{}` instead of through the registry, so more \
             instances would split its state behind one name",
            referrers.join(", "),
            service.name
        ));
    }
    None
}

/// What a scale run has to do: instances to start and containers to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes {
    /// Instance numbers in 1..=N without a running container (a stopped one is replaced).
    pub start: Vec<u32>,
    /// Containers numbered above N, highest first.
    pub remove: Vec<String>,
    /// Stopped containers numbered 1..=N, replaced by new ones.
    pub replace: Vec<String>,
}

/// Compares what runs with N (pure, so every case is tested).
pub fn changes(current: &[ContainerInfo], n: u32) -> Changes {
    let running: BTreeSet<u32> = current
        .iter()
        .filter(|c| c.state == "running")
        .map(|c| c.instance)
        .collect();
    let start = (1..=n).filter(|i| !running.contains(i)).collect();
    let mut above: Vec<&ContainerInfo> = current.iter().filter(|c| c.instance > n).collect();
    above.sort_by_key(|c| std::cmp::Reverse(c.instance));
    let replace = current
        .iter()
        .filter(|c| c.instance <= n && c.state != "running")
        .map(|c| c.name.clone())
        .collect();
    Changes {
        start,
        remove: above.into_iter().map(|c| c.name.clone()).collect(),
        replace,
    }
}

pub async fn run(g: &Global, args: ScaleArgs) -> Result<()> {
    let stack = StackFile::resolve(&g.stack)?.load()?;
    let service = stack.service(&args.service)?.clone();
    if let Some(reason) = not_scalable(&stack, &service) {
        let scalable = stack
            .services
            .values()
            .filter(|s| not_scalable(&stack, s).is_none())
            .map(|s| s.name.clone())
            .collect();
        return Err(ScaleError::NotScalable {
            service: service.name.clone(),
            reason,
            scalable,
        }
        .into());
    }
    let rt = Runtime::connect().await?;
    let obs = Observer::new(rt.clone(), stack.clone()).await?;
    obs.require_running()?;
    let view = scale(&obs, &service, args.instances, args.timeout, !g.json).await?;
    if g.json {
        output::json(&view)
    } else {
        crate::outln!("{}", summary(&view));
        Ok(())
    }
}

/// `order-service: 2 instances running (started ...) in 8.2s`.
pub fn summary(view: &ScaleView) -> String {
    let mut text = format!(
        "{}: {} instance{} running",
        view.service,
        view.instances,
        if view.instances == 1 { "" } else { "s" }
    );
    if view.started.is_empty() && view.removed.is_empty() {
        text.push_str(" (unchanged)");
        return text;
    }
    let mut parts = Vec::new();
    if !view.started.is_empty() {
        parts.push(format!("started {}", view.started.join(", ")));
    }
    if !view.removed.is_empty() {
        parts.push(format!("removed {}", view.removed.join(", ")));
    }
    text.push_str(&format!(" ({}) in {:.1}s", parts.join("; "), view.seconds));
    text
}

/// Scales `service` to `n` instances (see the module docs); `progress` prints each step to
/// stderr.
pub async fn scale(
    obs: &Observer,
    service: &Service,
    n: u32,
    timeout: Duration,
    progress: bool,
) -> Result<ScaleView> {
    let started_at = Instant::now();
    let stack = obs.stack();
    let rt = obs.runtime();
    let current: Vec<ContainerInfo> = obs
        .containers()
        .iter()
        .filter(|c| c.service == service.name)
        .cloned()
        .collect();
    let before = current.iter().filter(|c| c.state == "running").count();
    let plan = changes(&current, n);
    let say = |line: String| {
        if progress {
            eprintln!("{line}");
        }
    };
    let mut view = ScaleView {
        service: service.name.clone(),
        before,
        instances: n,
        started: Vec::new(),
        removed: Vec::new(),
        seconds: 0.0,
    };
    if plan.start.is_empty() && plan.remove.is_empty() {
        return Ok(view);
    }
    let mut watch = RegistryWatch::start(reg::client(obs)?);

    for name in &plan.remove {
        say(format!("{name}: leaving the registry (SIGTERM)"));
        remove_instance(obs, &mut watch, name).await?;
        view.removed.push(name.clone());
    }

    if !plan.start.is_empty() {
        // The image the service runs now (a stopped instance's when none runs), so scaling
        // never rebuilds and new instances match the old ones.
        let image = current
            .iter()
            .min_by_key(|c| (c.state != "running", c.instance))
            .map(|c| c.image.clone())
            .ok_or_else(|| ScaleError::NotUp {
                service: service.name.clone(),
                stack: stack.name.clone(),
            })?;
        let mut wanted = service.clone();
        wanted.instances = n;
        let full = up::plan_service(stack, &wanted, &image);
        let plan_new = Planned {
            service: service.name.clone(),
            specs: full
                .specs
                .into_iter()
                .filter(|s| plan.start.contains(&s.instance))
                .collect(),
        };
        for old in &plan.replace {
            rt.remove_container(old).await?;
        }
        for spec in &plan_new.specs {
            say(format!("{}: starting", spec.name));
            rt.create_container(spec).await?;
            rt.start_container(&spec.name).await?;
        }
        let names: Vec<String> = plan_new.specs.iter().map(|s| s.name.clone()).collect();
        let ready = wait_new(obs, service, &names, &mut watch, timeout, &say).await;
        if let Err(e) = ready {
            up::print_last_logs(rt, &plan_new).await;
            for name in &names {
                let _ = rt.remove_container(name).await;
            }
            return Err(e);
        }
        view.started = names;
    }
    view.seconds = started_at.elapsed().as_secs_f64();
    Ok(view)
}

/// Waits until every new container is healthy and, when the service registers, UP in the
/// registry.
async fn wait_new(
    obs: &Observer,
    service: &Service,
    names: &[String],
    watch: &mut RegistryWatch,
    timeout: Duration,
    say: &impl Fn(String),
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let waits = names.iter().map(|name| {
        health::wait_ready(
            obs.runtime(),
            name,
            service.health.as_ref(),
            timeout,
            |_| {},
        )
    });
    for (name, result) in names.iter().zip(futures::future::join_all(waits).await) {
        match result {
            Ok(r) => say(format!("{name}: {r}")),
            Err(e) => {
                return Err(ScaleError::NotReady {
                    service: service.name.clone(),
                    what: format!("{name} did not become ready: {e}"),
                }
                .into());
            }
        }
    }
    if !registers(obs.stack(), &service.name) {
        return Ok(());
    }
    let left = deadline.saturating_duration_since(Instant::now());
    let outcome = watch
        .wait_until(left, |instances| {
            let missing: Vec<&String> = names
                .iter()
                .filter(|n| !instances.iter().any(|i| is_up_instance_of(i, n)))
                .collect();
            missing.is_empty().then_some(())
        })
        .await;
    match outcome {
        Ok(()) => {
            for name in names {
                say(format!("{name}: registered"));
            }
            Ok(())
        }
        Err(last) => {
            let missing: Vec<String> = names
                .iter()
                .filter(|n| !last.iter().any(|i| is_up_instance_of(i, n)))
                .map(|n| match last.iter().find(|i| i.host_name == **n) {
                    Some(i) => format!("{n} (registered as {})", i.effective_status()),
                    None => format!("{n} (not registered)"),
                })
                .collect();
            Err(ScaleError::NotReady {
                service: service.name.clone(),
                what: format!(
                    "healthy but not UP in the registry after {timeout:?}: {}",
                    missing.join(", ")
                ),
            }
            .into())
        }
    }
}

/// True when `i` is the registry entry of container `name` and it is UP.
fn is_up_instance_of(i: &InstanceInfo, name: &str) -> bool {
    belongs_to(i, name) && i.effective_status() == InstanceStatus::Up
}

/// How long a SIGTERMed instance gets to leave the registry before the CLI removes its entry.
const DEREGISTER_WAIT: Duration = Duration::from_secs(10);
/// How long it gets to drain and exit after that, before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// SIGTERM → wait until the registry drops it (cancel the lease if it does not) → stop →
/// remove.
async fn remove_instance(obs: &Observer, watch: &mut RegistryWatch, name: &str) -> Result<()> {
    let rt = obs.runtime();
    let running = obs
        .containers()
        .iter()
        .any(|c| c.name == name && c.state == "running");
    if running {
        rt.kill_container(name, "SIGTERM").await?;
        let gone = watch
            .wait_until(DEREGISTER_WAIT, |instances| {
                (!instances.iter().any(|i| belongs_to(i, name))).then_some(())
            })
            .await;
        if let Err(last) = gone {
            // The kit could not deregister (e.g. it was killed): remove the lease ourselves.
            let http = reg::client(obs)?;
            for i in last.iter().filter(|i| belongs_to(i, name)) {
                if let Err(e) = http.cancel(&i.app, &i.instance_id).await
                    && !e.is_not_found()
                {
                    return Err(reg::registry_error(http.base_url(), e).into());
                }
            }
        }
        rt.stop_container(name, STOP_TIMEOUT).await?;
    }
    rt.remove_container(name).await?;
    Ok(())
}

/// True when `i` is the registry entry of container `name` (by host name or instance-id prefix).
fn belongs_to(i: &InstanceInfo, name: &str) -> bool {
    i.host_name == name
        || i.instance_id
            .strip_prefix(name)
            .is_some_and(|r| r.is_empty() || r.starts_with(':'))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use super::*;

    fn container(n: u32, state: &str) -> ContainerInfo {
        ContainerInfo {
            id: format!("id{n}"),
            name: format!("platform-dev-order-service-{n}"),
            image: "platform/order-service:abc".into(),
            stack: "dev".into(),
            service: "order-service".into(),
            instance: n,
            state: state.into(),
            health: None,
            addresses: HashMap::new(),
            labels: HashMap::new(),
            ports: vec![],
            exit_code: None,
            restart_count: 0,
            oom_killed: false,
        }
    }

    /// Up: the missing numbers start; down: the highest go first; equal: nothing; a stopped
    /// instance inside 1..=N is replaced.
    #[test]
    fn computes_changes() {
        let one = vec![container(1, "running")];
        assert_eq!(changes(&one, 3).start, vec![2, 3]);
        assert!(changes(&one, 3).remove.is_empty());
        let three = vec![
            container(1, "running"),
            container(2, "running"),
            container(3, "running"),
        ];
        let down = changes(&three, 1);
        assert!(down.start.is_empty());
        assert_eq!(
            down.remove,
            vec![
                "platform-dev-order-service-3",
                "platform-dev-order-service-2"
            ]
        );
        assert_eq!(
            changes(&three, 3),
            Changes {
                start: vec![],
                remove: vec![],
                replace: vec![]
            }
        );
        let gap = vec![container(1, "running"), container(2, "exited")];
        let c = changes(&gap, 2);
        assert_eq!(c.start, vec![2]);
        assert_eq!(c.replace, vec!["platform-dev-order-service-2"]);
        assert_eq!(changes(&three, 0).remove.len(), 3);
    }

    /// In the dev stack the domain services behind the gateway scale; MariaDB and the broker (kafka) are
    /// refused as stateful, the registry and stand-ins as fixed addresses, the product store
    /// for its volume, the gateway for its published port.
    #[test]
    fn only_stateless_services_scale() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../stacks/dev.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let stack = crate::stack::validate::validate(&text, &path, "dev.toml")
            .stack
            .unwrap();
        let why = |s: &str| not_scalable(&stack, &stack.services[s]);
        for ok in ["order-service", "inventory-service", "notification-service"] {
            assert_eq!(why(ok), None, "{ok}");
        }
        assert!(why("mariadb").unwrap().contains("stateful"));
        assert!(why("kafka").unwrap().contains("volume `kafka-data`"));
        assert!(why("product-service").unwrap().contains("volume"));
        assert!(why("discovery-server").unwrap().contains("fixed address"));
        assert!(why("identity-provider").unwrap().contains("fixed address"));
        assert!(why("trace-collector").unwrap().contains("fixed address"));
        assert!(why("api-gateway").unwrap().contains("host port 8080"));
    }

    /// Registry entries belong to a container by host name or instance-id prefix, not by a
    /// longer container name.
    #[test]
    fn registry_entries_of_a_container() {
        let i = InstanceInfo::new(
            "order-service",
            "platform-dev-order-service-1:order-service:8082",
            "platform-dev-order-service-1",
            "platform-dev-order-service-1",
            8082,
        );
        assert!(belongs_to(&i, "platform-dev-order-service-1"));
        assert!(!belongs_to(&i, "platform-dev-order-service-10"));
        assert!(is_up_instance_of(&i, "platform-dev-order-service-1"));
        let mut down = i.clone();
        down.status = InstanceStatus::Down;
        assert!(!is_up_instance_of(&down, "platform-dev-order-service-1"));
    }
}
