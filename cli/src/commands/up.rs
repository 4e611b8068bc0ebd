//! `platform up [SERVICE...]`: converge Docker to the stack. Builds or finds the images, makes
//! the network and volumes, then starts services wave by wave in dependency order and waits for
//! each wave to be ready (healthy when it has a probe, running otherwise) with a live line per
//! service. Re-running converges: containers whose spec is unchanged are kept, changed ones are
//! replaced, surplus instances removed. When a service fails, its last log lines are shown and
//! what this run created is removed again.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use super::Global;
use super::health::{self, Readiness};
use crate::observe::ready::ProbeTarget;
use crate::paths::Workspace;
use crate::runtime::build::{Builder, context::hex};
use crate::runtime::{
    ContainerSpec, HealthcheckSpec, LogOptions, MountSpec, PortSpec, Runtime, labels,
};
use crate::stack::{Check, ImageSource, Mount, Recipe, Service, Stack, StackError, StackFile};
use crate::{Error, Result};

/// `platform up` arguments.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Services to start, with their dependencies (default: the whole stack).
    pub services: Vec<String>,
    /// Rebuild our binaries (`cargo build --release`) and their images first.
    #[arg(long)]
    pub build: bool,
    /// Give up on a service that is not ready after this long.
    #[arg(long, default_value = "180s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// On failure, leave what this run created in place for inspection.
    #[arg(long)]
    pub keep_on_failure: bool,
    /// Publish every published port on this host address instead of the one the stack file
    /// gives (the dev stack publishes the gateway on 127.0.0.1 only; `0.0.0.0` makes it
    /// reachable from other machines).
    #[arg(long, env = "PLATFORM_PUBLISH_ADDRESS", value_name = "IP")]
    pub publish_address: Option<std::net::IpAddr>,
}

/// Applies `--publish-address`: every published port of the stack binds `ip`.
pub fn publish_on(stack: &mut Stack, ip: std::net::IpAddr) {
    for service in stack.services.values_mut() {
        for p in &mut service.ports {
            p.host_ip = Some(ip.to_string());
        }
    }
}

/// The containers of one service as `up` wants them.
#[derive(Debug, Clone)]
pub struct Planned {
    pub service: String,
    pub specs: Vec<ContainerSpec>,
}

/// The container specs for `service` from `image`, one per instance, each labelled with the
/// hash of its spec.
pub fn plan_service(stack: &Stack, service: &Service, image: &str) -> Planned {
    let specs = (1..=service.instances)
        .map(|index| {
            let mut spec = ContainerSpec {
                name: stack.container_name(&service.name, index),
                image: image.to_string(),
                stack: stack.name.clone(),
                service: service.name.clone(),
                instance: index,
                cmd: service.command.clone(),
                env: service
                    .env
                    .iter()
                    .map(|(k, v)| (k.clone(), v.render(stack, &service.name, index)))
                    .collect(),
                network: stack.network_name(),
                aliases: vec![service.name.clone()],
                ports: service
                    .ports
                    .iter()
                    .map(|p| PortSpec {
                        host_ip: p.host_ip.clone(),
                        host_port: p.host_port,
                        container_port: p.container_port,
                    })
                    .collect(),
                mounts: service
                    .volumes
                    .iter()
                    .map(|m| match m {
                        Mount::Volume {
                            name,
                            target,
                            read_only,
                        } => MountSpec::Volume {
                            name: stack.volume_name(name),
                            target: target.clone(),
                            read_only: *read_only,
                        },
                        Mount::Bind {
                            source,
                            target,
                            read_only,
                        } => MountSpec::Bind {
                            source: source.display().to_string(),
                            target: target.clone(),
                            read_only: *read_only,
                        },
                    })
                    .collect(),
                healthcheck: docker_healthcheck(service),
                memory_bytes: service.resources.memory_bytes,
                cpus: service.resources.cpus,
                restart: service.restart,
                // What the CLI probes while Docker's check still says starting.
                labels: service
                    .health
                    .as_ref()
                    .and_then(|h| ProbeTarget::of(h, service.port))
                    .map(|t| BTreeMap::from([(labels::PROBE.to_string(), t.label())]))
                    .unwrap_or_default(),
            };
            let hash = spec_hash(&spec);
            spec.labels.insert(labels::SPEC_HASH.to_string(), hash);
            spec
        })
        .collect();
    Planned {
        service: service.name.clone(),
        specs,
    }
}

/// The health check Docker runs, for probes that run inside the container. HTTP and TCP
/// probes, and `probe`/`exec` checks with `docker = false`, are run by the CLI from outside
/// (official images may have no client to run; an exec costs the engine about 0.1 s of CPU); for
/// those the image's own HEALTHCHECK is switched off (an empty command: Docker's `NONE`), so the
/// stack's check is the only one and no exec runs in the container for nothing.
fn docker_healthcheck(service: &Service) -> Option<HealthcheckSpec> {
    let health = service.health.as_ref()?;
    let command = match (&health.check, &service.source) {
        // `docker = false`: the CLI checks from outside, as for `http` and `tcp`.
        _ if !health.run_by_docker() => Vec::new(),
        (Check::Probe, ImageSource::Build(Recipe::Binary { name })) => {
            vec![format!("/app/{name}"), "--probe".to_string()]
        }
        (Check::Exec { command }, _) => command.clone(),
        (Check::Http { .. } | Check::Tcp { .. }, _) => Vec::new(),
        _ => return None,
    };
    Some(HealthcheckSpec {
        command,
        interval: health.interval,
        timeout: health.timeout,
        retries: health.retries,
        start_period: health.start_period,
        start_interval: health.start_interval,
    })
}

/// A stable hash of everything that defines a container.
fn spec_hash(spec: &ContainerSpec) -> String {
    let mut h = Sha256::new();
    h.update(format!("{spec:?}").as_bytes());
    hex(&h.finalize())[..16].to_string()
}

fn workspace() -> Result<Workspace> {
    Workspace::locate().map_err(|searched| {
        StackError::NoWorkspace {
            searched: searched.iter().map(|p| p.display().to_string()).collect(),
        }
        .into()
    })
}

/// The image each selected service runs, building what is missing.
async fn images(
    rt: &Runtime,
    stack: &Stack,
    selected: &BTreeSet<String>,
    args: &UpArgs,
    bars: &MultiProgress,
) -> Result<BTreeMap<String, String>> {
    let mut builder = Builder::new(rt, workspace()?);
    let mut by_recipe: BTreeMap<Recipe, String> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for name in selected {
        let service = stack.service(name)?;
        let image = match &service.source {
            ImageSource::Image(image) => {
                if !rt.image_exists(image).await? {
                    return Err(Error::ImageMissing {
                        image: image.clone(),
                        service: name.clone(),
                    });
                }
                image.clone()
            }
            ImageSource::Build(recipe) => {
                if let Some(tag) = by_recipe.get(recipe) {
                    tag.clone()
                } else {
                    let missing_binary = builder.binary_path(recipe).is_some_and(|p| !p.is_file());
                    builder.cargo = args.build || missing_binary;
                    let bar = bars.add(spinner(recipe.image_name()));
                    let progress = super::build::BarProgress::new(bar.clone(), false);
                    let built = builder.build(recipe, false, &progress).await;
                    bar.finish_and_clear();
                    let built = built?;
                    if built.built {
                        let line = format!("built {} ({:.1}s)", built.tag, built.seconds);
                        if bar.is_hidden() {
                            eprintln!("{line}");
                        } else {
                            let _ = bars.println(line);
                        }
                    }
                    by_recipe.insert(recipe.clone(), built.tag.clone());
                    built.tag
                }
            }
        };
        out.insert(name.clone(), image);
    }
    Ok(out)
}

fn spinner(prefix: &str) -> ProgressBar {
    let style = ProgressStyle::with_template("{spinner} {prefix:<22} {wide_msg} {elapsed:>4}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let bar = ProgressBar::new_spinner()
        .with_style(style)
        .with_prefix(prefix.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// What this run created, to remove again if it fails.
#[derive(Debug, Default)]
struct Created {
    network: Option<String>,
    volumes: Vec<String>,
    containers: Vec<String>,
}

pub async fn run(g: &Global, args: UpArgs) -> Result<()> {
    let file = StackFile::resolve(&g.stack)?;
    let mut stack = file.load()?;
    if let Some(ip) = args.publish_address {
        publish_on(&mut stack, ip);
    }
    for name in &args.services {
        stack.service(name)?;
    }
    let waves = if args.services.is_empty() {
        stack.waves()
    } else {
        stack.waves_for(&args.services)
    };
    let selected: BTreeSet<String> = waves.iter().flatten().cloned().collect();
    if let Some(missing) = missing_bind_sources(&stack, &selected).first() {
        return Err(Error::MissingFile {
            path: missing.clone(),
            what: "a bind mount source of the stack".to_string(),
        });
    }
    crate::chaos::faults::refuse_if_stopped_on_purpose(&stack)?;
    let rt = Runtime::connect().await?;
    let bars = MultiProgress::new();
    let started = tokio::time::Instant::now();
    let images = images(&rt, &stack, &selected, &args, &bars).await?;

    let mut created = Created::default();
    let result = converge(&rt, &stack, &waves, &images, &args, &bars, &mut created).await;
    if let Err(e) = result {
        if !args.keep_on_failure {
            undo(&rt, &created).await;
        }
        return Err(e);
    }
    let summary = format!(
        "stack {} is up: {} services ready in {:.1}s",
        stack.name,
        selected.len(),
        started.elapsed().as_secs_f64()
    );
    if g.json {
        let containers = rt.list_containers(Some(&stack.name), None).await?;
        crate::output::json(&containers)?;
    } else {
        crate::outln!("{summary}");
        for (name, svc) in &stack.services {
            if !selected.contains(name) {
                continue;
            }
            for p in &svc.ports {
                crate::outln!(
                    "  {name}: http://{}:{}",
                    p.host_ip.as_deref().unwrap_or("localhost"),
                    p.host_port
                );
            }
        }
    }
    Ok(())
}

async fn converge(
    rt: &Runtime,
    stack: &Stack,
    waves: &[Vec<String>],
    images: &BTreeMap<String, String>,
    args: &UpArgs,
    bars: &MultiProgress,
    created: &mut Created,
) -> Result<()> {
    let network = stack.network_name();
    if rt
        .list_networks(Some(&stack.name))
        .await?
        .contains(&network)
    {
        rt.ensure_network(&network, &stack.name).await?;
    } else {
        rt.ensure_network(&network, &stack.name).await?;
        created.network = Some(network.clone());
    }
    let existing_volumes: BTreeSet<String> = rt
        .list_volumes(Some(&stack.name))
        .await?
        .into_iter()
        .collect();
    let wanted_volumes: BTreeSet<String> = waves
        .iter()
        .flatten()
        .flat_map(|s| stack.services[s].volumes.iter())
        .filter_map(|m| match m {
            Mount::Volume { name, .. } => Some(stack.volume_name(name)),
            Mount::Bind { .. } => None,
        })
        .collect();
    for v in &wanted_volumes {
        rt.ensure_volume(v, &stack.name).await?;
        if !existing_volumes.contains(v) {
            created.volumes.push(v.clone());
        }
    }
    for wave in waves {
        let mut bar_of = BTreeMap::new();
        for name in wave {
            let bar = bars.add(spinner(name));
            bar.set_message("starting");
            bar_of.insert(name.clone(), bar);
        }
        // Create and start the whole wave, then wait for all of it.
        let mut planned = Vec::new();
        for name in wave {
            let service = &stack.services[name];
            let plan = plan_service(stack, service, &images[name]);
            ensure_service(rt, &plan, created).await?;
            planned.push((service, plan));
        }
        let waits = planned.iter().map(|(service, plan)| {
            let bar = bar_of[&service.name].clone();
            async move {
                let since = tokio::time::Instant::now();
                let result = wait_service(rt, service, plan, args.timeout, &bar).await;
                let line = match &result {
                    Ok(r) => format!("{r} ({:.1}s)", since.elapsed().as_secs_f64()),
                    Err(e) => format!("failed: {e}"),
                };
                // Without a terminal the bars are hidden: say it in the log instead.
                if bar.is_hidden() {
                    eprintln!("{}: {line}", service.name);
                }
                match &result {
                    Ok(_) => bar.finish_with_message(line),
                    Err(_) => bar.abandon_with_message(line),
                }
                result
            }
        });
        let results = futures::future::join_all(waits).await;
        for ((service, plan), result) in planned.iter().zip(results) {
            if let Err(e) = result {
                eprintln!("{} did not become ready", service.name);
                print_last_logs(rt, plan).await;
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Makes the service's containers match the plan: keep unchanged running ones, start
/// unchanged stopped ones, replace changed ones, remove surplus instances.
async fn ensure_service(rt: &Runtime, plan: &Planned, created: &mut Created) -> Result<()> {
    let current = rt
        .list_containers(Some(&plan.specs[0].stack), Some(&plan.service))
        .await?;
    let wanted: BTreeSet<&str> = plan.specs.iter().map(|s| s.name.as_str()).collect();
    for c in &current {
        if !wanted.contains(c.name.as_str()) {
            rt.stop_container(&c.name, Duration::from_secs(10)).await?;
            rt.remove_container(&c.name).await?;
        }
    }
    for spec in &plan.specs {
        let existing = current.iter().find(|c| c.name == spec.name);
        let same = existing
            .is_some_and(|c| c.labels.get(labels::SPEC_HASH) == spec.labels.get(labels::SPEC_HASH));
        match existing {
            Some(c) if same && c.state == "running" => continue,
            Some(_) if same => {}
            Some(c) => {
                rt.stop_container(&c.name, Duration::from_secs(10)).await?;
                rt.remove_container(&c.name).await?;
                rt.create_container(spec).await?;
                created.containers.push(spec.name.clone());
            }
            None => {
                rt.create_container(spec).await?;
                created.containers.push(spec.name.clone());
            }
        }
        rt.start_container(&spec.name).await?;
    }
    Ok(())
}

async fn wait_service(
    rt: &Runtime,
    service: &Service,
    plan: &Planned,
    timeout: Duration,
    bar: &ProgressBar,
) -> Result<Readiness> {
    let mut last = Readiness::Starting;
    for spec in &plan.specs {
        last = health::wait_ready(rt, &spec.name, service.health.as_ref(), timeout, |msg| {
            bar.set_message(msg.to_string())
        })
        .await?;
    }
    Ok(last)
}

/// Shows the last lines a failed service wrote, leaving out its health probe's own requests
/// (a service that is not ready logs each refused probe, which would hide the reason).
pub(crate) async fn print_last_logs(rt: &Runtime, plan: &Planned) {
    for spec in &plan.specs {
        let options = LogOptions {
            tail: Some(300),
            ..LogOptions::default()
        };
        let lines: Vec<String> = rt
            .logs(&spec.name, &options)
            .filter_map(|l| async move { l.ok().map(|l| l.text) })
            .filter(|t| futures::future::ready(!t.contains("/health/")))
            .collect()
            .await;
        if lines.is_empty() {
            continue;
        }
        eprintln!(
            "last output of {} (health probe requests left out):",
            spec.name
        );
        for line in &lines[lines.len().saturating_sub(20)..] {
            eprintln!("  {line}");
        }
    }
}

/// Removes what a failed run created (containers, then volumes and the network).
async fn undo(rt: &Runtime, created: &Created) {
    for c in created.containers.iter().rev() {
        let _ = rt.remove_container(c).await;
    }
    for v in &created.volumes {
        let _ = rt.remove_volume(v).await;
    }
    if let Some(n) = &created.network {
        let _ = rt.remove_network(n).await;
    }
    if !created.containers.is_empty() || created.network.is_some() {
        eprintln!(
            "removed what this run created ({} containers{}); `platform down` removes the rest",
            created.containers.len(),
            if created.network.is_some() {
                ", the network"
            } else {
                ""
            }
        );
    }
}

/// Bind mount sources that do not exist: checked before anything starts, because Docker
/// would otherwise create them as empty directories.
pub fn missing_bind_sources(stack: &Stack, selected: &BTreeSet<String>) -> Vec<PathBuf> {
    selected
        .iter()
        .flat_map(|s| stack.services[s].volumes.iter())
        .filter_map(|m| match m {
            Mount::Bind { source, .. } if !source.exists() => Some(source.clone()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dev stack publishes the gateway on the loopback only; `--publish-address` moves every
    /// published port to the address given, and the containers' specs follow.
    #[test]
    fn publish_address_overrides_the_stack() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../stacks/dev.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let report = crate::stack::validate::validate(&text, &path, "dev.toml");
        let mut stack = report.stack.expect("dev stack is valid");
        let gateway = &stack.services["api-gateway"];
        assert_eq!(gateway.ports[0].host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(gateway.restart, crate::stack::Restart::DEFAULT);
        publish_on(&mut stack, "0.0.0.0".parse().unwrap());
        let gateway = &stack.services["api-gateway"];
        assert_eq!(gateway.ports[0].host_ip.as_deref(), Some("0.0.0.0"));
        let plan = plan_service(&stack, gateway, "platform/api-gateway:x");
        assert_eq!(plan.specs[0].ports[0].host_ip.as_deref(), Some("0.0.0.0"));
        assert_eq!(plan.specs[0].restart, crate::stack::Restart::DEFAULT);
        assert!(
            stack
                .services
                .values()
                .flat_map(|s| &s.ports)
                .all(|p| p.host_ip.as_deref() == Some("0.0.0.0"))
        );
    }
}
