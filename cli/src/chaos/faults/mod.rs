//! Faults at three layers that always revert: the library behind `platform inject`, `heal` and
//! `faults`, which the scenarios and the dashboard call too (never by shelling out).
//!
//! - Container layer, through the Docker API ([`container`]): `kill` (a signal, default KILL),
//!   `stop`, `pause`, `restart`, `disconnect` (off the stack network: a partition).
//! - Network layer, inside the container's network namespace from the host ([`network`]):
//!   `latency`, `loss`, `bandwidth`, `corrupt`, `duplicate` with `nsenter` + iproute2's `tc`;
//!   without netem, `loss` by an iptables rule and the others by an NFQUEUE [`agent`].
//! - Application layer, Chaos Monkey style ([`app`]): the kit's `/admin/faults` on every service
//!   (`app-latency`, `app-error`, `kill-app`); the service expires the fault itself.
//! - Dependency shorthands as targets: `broker`, `database`, `identity` name the services the
//!   stack's `KAFKA_BOOTSTRAP_SERVERS`, `DATABASE_URL` and `ISSUER_URL` point at.
//!
//! Every fault on every container gets a [`FaultRecord`] in the stack's [`store`] *before* it is
//! applied, so nothing applied is ever without a record, even when the injecting process is
//! killed at any point. A detached per-stack [`supervisor`] process (not the injecting one)
//! reverts each fault at its end; [`heal`] reverts now. Both verify the revert: the container
//! running and healthy, the qdisc or rule gone, the service's fault list without it.

pub mod agent;
pub mod app;
pub mod container;
pub mod network;
pub mod record;
pub mod spec;
pub mod store;
pub mod supervisor;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde::Serialize;

pub use record::{FaultRecord, Mechanism, Revert};
pub use spec::{FaultSpec, Kind, Layer, Options, Rate, Selection, SpecError};
pub use store::Store;

use crate::observe::ready::Prober;
use crate::observe::{ObserveError, Observer, Route};
use crate::runtime::{ContainerInfo, Runtime, RuntimeError};
use crate::stack::Stack;
use crate::stack::env::Reference;

/// How long a revert may take to come back healthy before heal reports a failure.
pub const HEAL_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a fault may take to become effective.
pub const EFFECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Dependency shorthands: the target name, the environment variable whose `${service}`
/// references name the dependency, and what it is.
pub const DEPENDENCIES: [(&str, &str, &str); 3] = [
    ("broker", "KAFKA_BOOTSTRAP_SERVERS", "the Kafka broker"),
    ("database", "DATABASE_URL", "the relational database"),
    ("identity", "ISSUER_URL", "the identity provider"),
];

/// What fault operations can fail with.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    /// Bad kind, option, duration or selection.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The target is neither a service of the stack nor a dependency shorthand.
    #[error(
        "unknown target `{target}` in stack `{stack}` (services: {known}; shorthands: broker, database, identity)"
    )]
    UnknownTarget {
        target: String,
        stack: String,
        known: String,
    },
    /// A shorthand that names nothing in this stack.
    #[error(
        "`{target}` ({what}) names no service in stack `{stack}`: no service sets {env} to a `${{service}}` address"
    )]
    NoDependency {
        target: String,
        what: String,
        env: String,
        stack: String,
    },
    /// `--instance N` names no running instance.
    #[error(
        "{service} has no running instance {instance} (running: {})",
        numbers(running)
    )]
    NoSuchInstance {
        service: String,
        instance: u32,
        running: Vec<u32>,
    },
    /// The service runs several instances and none was chosen.
    #[error("{service} runs {} instances ({}): choose --instance N, --all or --random", running.len(), numbers(running))]
    Ambiguous { service: String, running: Vec<u32> },
    /// Nothing of the target runs.
    #[error("{service} has no running container in stack `{stack}`")]
    NotRunning { service: String, stack: String },
    /// `heal ID` names no active fault.
    #[error("no active fault `{id}` in stack `{stack}`{}", if active.is_empty() { " (none is active)".to_string() } else { format!(" (active: {})", active.join(", ")) })]
    UnknownFault {
        id: String,
        stack: String,
        active: Vec<String>,
    },
    /// The container already has a fault of the same layer that would collide.
    #[error("{container} already has {kind} fault {id}: heal it first (`platform heal {id}`)")]
    Conflict {
        container: String,
        id: String,
        kind: Kind,
    },
    /// The kind cannot work on this machine; nothing was injected.
    #[error("cannot inject `{kind}` here: {why}")]
    Unsupported { kind: Kind, why: String },
    /// `platform up` would undo faults that stop containers on purpose.
    #[error("stack `{stack}` has faults that stop containers on purpose ({}); `up` would undo them", faults.join(", "))]
    StoppedOnPurpose { stack: String, faults: Vec<String> },
    /// A host command (nsenter, tc, iptables) failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    /// The fault was applied but could not be seen in effect; it was reverted.
    #[error("fault {id} ({kind} on {container}) did not take effect: {why}")]
    NotEffective {
        id: String,
        kind: Kind,
        container: String,
        why: String,
    },
    /// A service's fault endpoint refused or failed.
    #[error("{container}: {message}")]
    Service { container: String, message: String },
    /// Reading or writing the fault records failed.
    #[error("fault state: {message}")]
    State { message: String },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Observe(#[from] ObserveError),
}

fn numbers(numbers: &[u32]) -> String {
    if numbers.is_empty() {
        return "none".into();
    }
    numbers
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl FaultError {
    /// 2 for bad input (nothing was touched), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            FaultError::Spec(_)
            | FaultError::UnknownTarget { .. }
            | FaultError::NoDependency { .. }
            | FaultError::NoSuchInstance { .. }
            | FaultError::Ambiguous { .. }
            | FaultError::UnknownFault { .. } => 2,
            _ => 1,
        }
    }

    /// A next step for the user.
    pub fn hint(&self) -> Option<String> {
        match self {
            FaultError::Spec(_) => Some("`platform inject --help` lists the kinds and their options".into()),
            FaultError::UnknownTarget { .. } => Some("`platform status` shows the running services".into()),
            FaultError::NotRunning { service, .. } => Some(format!("start it with `platform up {service}`")),
            FaultError::UnknownFault { .. } => Some("`platform faults` lists the active faults".into()),
            FaultError::StoppedOnPurpose { .. } => Some(
                "`platform heal --all` reverts them now; or wait until they end (`platform faults` shows when)".into(),
            ),
            FaultError::Unsupported { .. } => Some(
                "network faults need root on the Docker host, nsenter and iproute2's tc (install.sh installs them, \
                 and iptables for the fallbacks without netem), and an engine whose containers run on this machine's kernel (not Docker Desktop or rootless Docker); \
                 container and application faults work everywhere"
                    .into(),
            ),
            FaultError::Runtime(e) => e.hint(),
            FaultError::Observe(e) => e.hint(),
            _ => None,
        }
    }
}

/// Result alias for fault operations.
pub type Result<T, E = FaultError> = std::result::Result<T, E>;

/// Which faults to heal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heal {
    /// One fault by id (every record with that id).
    Id(String),
    /// Every active fault of the stack.
    All,
}

/// How far a revert is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Reverted and the container running and healthy again (heal, the supervisor).
    Healthy,
    /// Reverted only (an inject that failed half-way undoes what it did).
    Reverted,
    /// Only what would stop the stack from being taken down (a paused container is thawed);
    /// `platform down` removes the containers, and the faults with them, next.
    Teardown,
}

/// The outcome of reverting one fault.
#[derive(Debug, Clone, Serialize)]
pub struct HealReport {
    pub id: String,
    pub kind: Kind,
    pub container: String,
    /// True when the revert was done and verified.
    pub healed: bool,
    /// What was checked (`running, healthy`, `qdisc gone`, ...), or why it failed.
    pub detail: String,
    /// From the start of the revert to verified.
    pub seconds: f64,
}

/// What fault operations work with: the Docker connection, the stack and its fault store.
#[derive(Debug, Clone)]
pub struct Ctx {
    rt: Runtime,
    stack: Stack,
    route: Route,
    store: Store,
}

impl Ctx {
    /// A context for `stack` with its store under the state directory.
    pub fn new(rt: Runtime, stack: Stack) -> Result<Ctx> {
        let route = Route::detect().map_err(ObserveError::Setting)?;
        let store = Store::for_stack(&stack.name);
        Ok(Ctx {
            rt,
            stack,
            route,
            store,
        })
    }

    /// The same with an explicit store (tests).
    pub fn with_store(rt: Runtime, stack: Stack, store: Store) -> Result<Ctx> {
        let mut ctx = Ctx::new(rt, stack)?;
        ctx.store = store;
        Ok(ctx)
    }

    /// The context of an [`Observer`] (the dashboard holds one).
    pub fn from_observer(obs: &Observer) -> Ctx {
        Ctx {
            rt: obs.runtime().clone(),
            stack: obs.stack().clone(),
            route: obs.route().clone(),
            store: Store::for_stack(&obs.stack().name),
        }
    }

    pub fn runtime(&self) -> &Runtime {
        &self.rt
    }

    pub fn stack(&self) -> &Stack {
        &self.stack
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A fresh look at the stack's containers, for reaching services.
    pub async fn observer(&self) -> Result<Observer> {
        Ok(Observer::with_route(self.rt.clone(), self.stack.clone(), self.route.clone()).await?)
    }
}

/// The service `target` names: a service of the stack, or a dependency shorthand.
pub fn resolve_target(stack: &Stack, target: &str) -> Result<String> {
    if stack.services.contains_key(target) {
        return Ok(target.to_string());
    }
    if let Some((_, env, what)) = DEPENDENCIES.iter().find(|(name, _, _)| *name == target) {
        let mut found: BTreeSet<&str> = BTreeSet::new();
        for service in stack.services.values() {
            if let Some(t) = service.env.get(*env) {
                for r in t.references() {
                    if let Reference::ServiceHost(n) = r
                        && stack.services.contains_key(n.as_str())
                    {
                        found.insert(n);
                    }
                }
            }
        }
        // One dependency per shorthand: the one most services use is first alphabetically
        // among equals, which is deterministic; stacks here have one of each.
        return found.into_iter().next().map(str::to_string).ok_or_else(|| {
            FaultError::NoDependency {
                target: target.to_string(),
                what: (*what).to_string(),
                env: (*env).to_string(),
                stack: stack.name.clone(),
            }
        });
    }
    Err(FaultError::UnknownTarget {
        target: target.to_string(),
        stack: stack.name.clone(),
        known: stack.service_names().join(", "),
    })
}

/// The running containers `selection` picks out of `running` (sorted by instance).
pub fn select<'a>(
    service: &str,
    running: &'a [ContainerInfo],
    selection: Selection,
    random: impl FnOnce(usize) -> usize,
) -> Result<Vec<&'a ContainerInfo>> {
    let numbers: Vec<u32> = running.iter().map(|c| c.instance).collect();
    match selection {
        Selection::Only => match running {
            [one] => Ok(vec![one]),
            _ => Err(FaultError::Ambiguous {
                service: service.to_string(),
                running: numbers,
            }),
        },
        Selection::Instance(n) => running
            .iter()
            .find(|c| c.instance == n)
            .map(|c| vec![c])
            .ok_or(FaultError::NoSuchInstance {
                service: service.to_string(),
                instance: n,
                running: numbers,
            }),
        Selection::All => Ok(running.iter().collect()),
        Selection::Random => Ok(vec![&running[random(running.len()) % running.len()]]),
    }
}

/// Injects `spec`: one record per container hit, returned once every fault is in effect.
/// Validation (target, instance, preconditions of the layer, collisions) happens before
/// anything is touched; a fault that fails to take effect is reverted and its record removed.
pub async fn inject(ctx: &Ctx, spec: &FaultSpec) -> Result<Vec<FaultRecord>> {
    let service = resolve_target(&ctx.stack, &spec.target)?;
    let all = ctx
        .rt
        .list_containers(Some(&ctx.stack.name), Some(&service))
        .await?;
    // A fault whose container is stopped or paused on purpose still counts as running here,
    // so that asking for the same container again names the fault in the way.
    let mut running: Vec<ContainerInfo> = all
        .into_iter()
        .filter(|c| c.state == "running" || c.state == "paused")
        .collect();
    running.sort_by_key(|c| c.instance);
    if running.is_empty() && !matches!(spec.selection, Selection::Instance(_)) {
        return Err(FaultError::NotRunning {
            service,
            stack: ctx.stack.name.clone(),
        });
    }
    let chosen = select(&service, &running, spec.selection, |n| {
        usize::try_from(uuid::Uuid::new_v4().as_u128() % n as u128).unwrap_or(0)
    })?;
    let active = ctx.store.load_all()?;
    for c in &chosen {
        if let Some(r) = active
            .iter()
            .find(|r| r.container == c.name && collides(r.kind, spec.kind))
        {
            return Err(FaultError::Conflict {
                container: c.name.clone(),
                id: r.id.clone(),
                kind: r.kind,
            });
        }
    }
    let preflight = match spec.kind.layer() {
        Layer::Network => Some(network::preflight(&ctx.rt, spec.kind).await?),
        _ => None,
    };
    let admin = match spec.kind.layer() {
        Layer::Application => Some(app::AdminClient::connect(ctx).await?),
        _ => None,
    };
    let network = ctx.stack.network_name();
    let mut records = Vec::new();
    let mut failure = None;
    for c in chosen {
        let now = Utc::now();
        let duration = chrono::Duration::from_std(spec.duration).unwrap_or(chrono::Duration::MAX);
        let mut rec = FaultRecord {
            id: record::new_id(),
            stack: ctx.stack.name.clone(),
            kind: spec.kind,
            target: spec.target.clone(),
            service: service.clone(),
            instance: c.instance,
            container: c.name.clone(),
            options: spec.options.clone(),
            started: now,
            ends: now + duration,
            intended_stop: spec.kind.intended_stop(),
            revert: Revert::Container {
                network: network.clone(),
                aliases: vec![service.clone()],
            },
            stack_file: Some(ctx.stack.file.display().to_string()),
            attempts: 0,
            last_error: None,
            remaining_ms: None,
        };
        if !spec.kind.one_shot() {
            // Recorded before anything is touched, so that a process killed half-way leaves a
            // record the supervisor reverts. Until the fault is in effect its end is pushed out
            // by the time it may take to get there, so the supervisor never reverts mid-apply.
            rec.ends =
                now + duration + chrono::Duration::from_std(EFFECT_TIMEOUT).unwrap_or_default();
            ctx.store.save(&rec)?;
            supervisor::ensure(&ctx.store)?;
        }
        let applied = match spec.kind.layer() {
            Layer::Container => container::apply(&ctx.rt, &mut rec).await,
            Layer::Network => {
                let tools = preflight.as_ref().expect("network preflight ran");
                network::apply(tools, &mut rec, &network, &ctx.rt, ctx.store.dir()).await
            }
            Layer::Application => {
                let admin = admin.as_ref().expect("admin client made");
                app::apply(ctx, admin, &mut rec, spec.duration).await
            }
        };
        match applied {
            Ok(()) => {
                // The duration counts from the moment the fault is in effect.
                let effective = Utc::now();
                rec.started = effective;
                rec.ends = if spec.kind.one_shot() {
                    effective
                } else {
                    effective + duration
                };
                if !spec.kind.one_shot() {
                    ctx.store.save(&rec)?;
                }
                records.push(rec);
            }
            Err(e) => {
                // Undo whatever part of it happened, then forget it.
                if !spec.kind.one_shot() {
                    let _ = revert_one(ctx, &rec, Verify::Reverted).await;
                    ctx.store.remove(&rec.id)?;
                }
                failure = Some(e);
                break;
            }
        }
    }
    match failure {
        Some(e) if records.is_empty() => Err(e),
        Some(e) => {
            // Earlier instances are in effect: revert them too, so a failed inject leaves
            // nothing behind.
            for r in &records {
                let _ = revert_one(ctx, r, Verify::Reverted).await;
            }
            Err(e)
        }
        None => Ok(records.into_iter().map(|r| r.at(Utc::now())).collect()),
    }
}

/// True when a fault of kind `new` cannot be added to a container that has `existing`.
fn collides(existing: Kind, new: Kind) -> bool {
    match (existing.layer(), new.layer()) {
        // One root qdisc (or loss rule) per container.
        (Layer::Network, Layer::Network) => true,
        // Stopping, pausing or cutting off a container twice would make the first revert
        // undo the second.
        (Layer::Container, Layer::Container) => true,
        (Layer::Application, _) | (_, Layer::Application) => {
            existing == Kind::KillApp || new == Kind::KillApp
        }
        _ => false,
    }
}

/// The active faults of the stack with their time left, oldest first. Restarts the supervisor
/// when faults exist and none runs (after a reboot, or if it was killed).
pub async fn list(ctx: &Ctx) -> Result<Vec<FaultRecord>> {
    let records = ctx.store.load_all()?;
    if !records.is_empty() {
        supervisor::ensure(&ctx.store)?;
    }
    let now = Utc::now();
    Ok(records.into_iter().map(|r| r.at(now)).collect())
}

/// Containers that are out of service on purpose right now (restart policies must leave them
/// alone): names of containers with an active fault whose record says `intended_stop`.
pub fn intended_stops(store: &Store) -> Result<BTreeSet<String>> {
    Ok(store
        .load_all()?
        .into_iter()
        .filter(|r| r.intended_stop)
        .map(|r| r.container)
        .collect())
}

/// Reverts faults now and verifies each revert; a verified revert removes the record. Returns
/// one report per record (failures included); fails only when `which` names no fault.
pub async fn heal(ctx: &Ctx, which: Heal) -> Result<Vec<HealReport>> {
    heal_with(ctx, which, Verify::Healthy).await
}

/// [`heal`] with a choice of verification (`platform down` reverts without waiting for health).
pub async fn heal_with(ctx: &Ctx, which: Heal, verify: Verify) -> Result<Vec<HealReport>> {
    let records = ctx.store.load_all()?;
    let chosen: Vec<FaultRecord> = match &which {
        Heal::All => records,
        Heal::Id(id) => {
            let hit: Vec<FaultRecord> = records.iter().filter(|r| &r.id == id).cloned().collect();
            if hit.is_empty() {
                return Err(FaultError::UnknownFault {
                    id: id.clone(),
                    stack: ctx.stack.name.clone(),
                    active: records.into_iter().map(|r| r.id).collect(),
                });
            }
            hit
        }
    };
    let reverts = chosen.iter().map(|r| revert_and_forget(ctx, r, verify));
    Ok(futures::future::join_all(reverts).await)
}

/// Reverts one record, verifies it, and removes the record when that worked.
async fn revert_and_forget(ctx: &Ctx, r: &FaultRecord, verify: Verify) -> HealReport {
    let start = Instant::now();
    let outcome = revert_one(ctx, r, verify).await;
    let seconds = start.elapsed().as_secs_f64();
    let (healed, detail) = match outcome {
        Ok(detail) => match ctx.store.remove(&r.id) {
            Ok(()) => (true, detail),
            Err(e) => (false, format!("reverted ({detail}) but {e}")),
        },
        Err(e) => (false, e.to_string()),
    };
    HealReport {
        id: r.id.clone(),
        kind: r.kind,
        container: r.container.clone(),
        healed,
        detail,
        seconds,
    }
}

/// Undoes one fault and checks it, returning what was verified. A container that no longer
/// exists has nothing left to revert.
pub async fn revert_one(ctx: &Ctx, r: &FaultRecord, verify: Verify) -> Result<String> {
    let info = match ctx.rt.inspect_container(&r.container).await {
        Ok(info) => info,
        Err(RuntimeError::NotFound { .. }) => {
            if r.kind.layer() == Layer::Network {
                network::stop_agents(r).await?;
            }
            return Ok("container gone, nothing to revert".into());
        }
        Err(e) => return Err(e.into()),
    };
    if verify == Verify::Teardown {
        if r.kind.layer() == Layer::Network {
            // The container and its rule go next; its NFQUEUE agent (if any) is a host process.
            network::stop_agents(r).await?;
        }
        if info.state == "paused" {
            ctx.rt.unpause_container(&r.container).await?;
            return Ok("unpaused for teardown".into());
        }
        return Ok("removed with the container".into());
    }
    let mut checked = match r.kind.layer() {
        Layer::Container => container::revert(&ctx.rt, r, &info).await?,
        Layer::Network => network::revert(&ctx.rt, r, &info).await?,
        Layer::Application => app::revert(ctx, r, &info).await?,
    };
    if verify == Verify::Healthy {
        wait_healthy(&ctx.rt, &r.container, HEAL_TIMEOUT).await?;
        checked.push_str(", running and healthy");
    }
    Ok(checked)
}

/// Before `platform down`: reverts what would hinder the teardown and forgets every fault of
/// the stack (their containers are removed next). Failures are reported, not fatal.
pub async fn heal_for_teardown(rt: &Runtime, stack: &Stack) -> Result<Vec<HealReport>> {
    let ctx = Ctx::new(rt.clone(), stack.clone())?;
    if ctx.store.load_all()?.is_empty() {
        return Ok(Vec::new());
    }
    heal_with(&ctx, Heal::All, Verify::Teardown).await
}

/// Fails when faults stop containers of the stack on purpose: `platform up` would start them
/// again and undo the fault behind its record's back.
pub fn refuse_if_stopped_on_purpose(stack: &Stack) -> Result<()> {
    let store = Store::for_stack(&stack.name);
    let stopped: Vec<FaultRecord> = store
        .load_all()?
        .into_iter()
        .filter(|r| r.intended_stop)
        .collect();
    if stopped.is_empty() {
        return Ok(());
    }
    Err(FaultError::StoppedOnPurpose {
        stack: stack.name.clone(),
        faults: stopped
            .iter()
            .map(|r| format!("{} {} on {}", r.id, r.kind, r.container))
            .collect(),
    })
}

/// Waits until the container runs and its health check (if any) says healthy, as
/// [`Prober::health`] reads it (the CLI's own probe while Docker still says `starting`).
pub async fn wait_healthy(rt: &Runtime, container: &str, limit: Duration) -> Result<()> {
    let start = Instant::now();
    let prober = Prober::new(true);
    loop {
        let mut info = rt.inspect_container(container).await?;
        info.health = prober.health(&info).await;
        if info.is_ready() {
            return Ok(());
        }
        if start.elapsed() > limit {
            return Err(FaultError::State {
                message: format!(
                    "{container} is {}{} after {}s",
                    info.state,
                    info.health
                        .map(|h| format!(" ({h:?})").to_lowercase())
                        .unwrap_or_default(),
                    limit.as_secs()
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls `check` every 100 ms until it is true, failing with `why` after `limit`.
pub(crate) async fn wait_until<F, Fut>(limit: Duration, mut check: F) -> Result<bool>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let start = Instant::now();
    loop {
        if check().await? {
            return Ok(true);
        }
        if start.elapsed() > limit {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack() -> Stack {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../stacks/dev.toml"))
                .unwrap();
        crate::stack::validate::validate(&text, std::path::Path::new("dev.toml"), "dev.toml")
            .stack
            .unwrap()
    }

    fn containers(instances: &[u32]) -> Vec<ContainerInfo> {
        instances
            .iter()
            .map(|&i| ContainerInfo {
                id: String::new(),
                name: format!("platform-dev-order-service-{i}"),
                image: String::new(),
                stack: "dev".into(),
                service: "order-service".into(),
                instance: i,
                state: "running".into(),
                health: None,
                addresses: Default::default(),
                labels: Default::default(),
                ports: vec![],
                exit_code: None,
                restart_count: 0,
                oom_killed: false,
            })
            .collect()
    }

    /// Services resolve to themselves; the shorthands to what the dev stack's environment
    /// points at; anything else is an error listing the services (exit 2).
    #[test]
    fn targets_resolve() {
        let s = stack();
        assert_eq!(
            resolve_target(&s, "order-service").unwrap(),
            "order-service"
        );
        assert_eq!(resolve_target(&s, "broker").unwrap(), "kafka");
        assert_eq!(resolve_target(&s, "database").unwrap(), "mariadb");
        assert_eq!(resolve_target(&s, "identity").unwrap(), "identity-provider");
        let e = resolve_target(&s, "ordr-service").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("order-service"), "{e}");
    }

    /// Selection picks the only instance, instance N, all or one at random, and explains
    /// when the choice is impossible.
    #[test]
    fn selection_over_instances() {
        let one = containers(&[1]);
        let three = containers(&[1, 2, 3]);
        let names = |v: Vec<&ContainerInfo>| v.iter().map(|c| c.instance).collect::<Vec<_>>();
        assert_eq!(
            names(select("s", &one, Selection::Only, |_| 0).unwrap()),
            [1]
        );
        let e = select("s", &three, Selection::Only, |_| 0).unwrap_err();
        assert!(e.to_string().contains("choose --instance N"), "{e}");
        assert_eq!(e.exit_code(), 2);
        assert_eq!(
            names(select("s", &three, Selection::Instance(2), |_| 0).unwrap()),
            [2]
        );
        let e = select("s", &three, Selection::Instance(5), |_| 0).unwrap_err();
        assert!(e.to_string().contains("running: 1, 2, 3"), "{e}");
        assert_eq!(
            names(select("s", &three, Selection::All, |_| 0).unwrap()),
            [1, 2, 3]
        );
        assert_eq!(
            names(select("s", &three, Selection::Random, |n| n + 1).unwrap()),
            [2]
        );
    }

    /// Faults of one layer on one container collide (one qdisc, one stop); kill-app collides
    /// with everything; a network fault and an application fault coexist.
    #[test]
    fn collisions() {
        assert!(collides(Kind::Latency, Kind::Loss));
        assert!(collides(Kind::Pause, Kind::Stop));
        assert!(!collides(Kind::Latency, Kind::AppError));
        assert!(!collides(Kind::AppLatency, Kind::AppError));
        assert!(collides(Kind::KillApp, Kind::AppError));
        assert!(!collides(Kind::Latency, Kind::Pause));
    }
}
