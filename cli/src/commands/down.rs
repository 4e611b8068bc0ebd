//! `platform down [--volumes]`: stops the stack's containers with SIGTERM (SIGKILL after the
//! timeout), dependants before their dependencies so services deregister while the registry is
//! still there, then removes the containers and the network. Volumes, and so data, survive
//! unless `--volumes`. Only objects labelled with the stack are touched.

use std::collections::BTreeSet;
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use super::Global;
use crate::runtime::{ContainerInfo, Runtime};
use crate::stack::{Stack, StackError, StackFile};
use crate::{Result, output};

/// `platform down` arguments.
#[derive(Debug, Args)]
pub struct DownArgs {
    /// Also remove the stack's volumes (all its data).
    #[arg(long)]
    pub volumes: bool,
    /// How long each container gets to stop after SIGTERM before SIGKILL.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// What `down` removed.
#[derive(Debug, Serialize)]
pub struct DownView {
    pub stack: String,
    pub containers: Vec<String>,
    pub networks: Vec<String>,
    pub volumes: Vec<String>,
}

/// Groups containers into stop order: services no longer in the stack first, then the stack's
/// waves in reverse.
pub fn stop_order(stack: &Stack, containers: &[ContainerInfo]) -> Vec<Vec<String>> {
    let known: BTreeSet<&str> = stack.services.keys().map(String::as_str).collect();
    let mut groups = Vec::new();
    let strays: Vec<String> = containers
        .iter()
        .filter(|c| !known.contains(c.service.as_str()))
        .map(|c| c.name.clone())
        .collect();
    if !strays.is_empty() {
        groups.push(strays);
    }
    for wave in stack.waves().iter().rev() {
        let group: Vec<String> = containers
            .iter()
            .filter(|c| wave.contains(&c.service))
            .map(|c| c.name.clone())
            .collect();
        if !group.is_empty() {
            groups.push(group);
        }
    }
    groups
}

pub async fn run(g: &Global, args: DownArgs) -> Result<()> {
    let stack = match StackFile::resolve(&g.stack).and_then(|f| f.load()) {
        Ok(stack) => stack,
        // No usable file, but the name may still label containers (a deleted or broken stack
        // file): take them down in one group by label alone.
        Err(e @ (StackError::NotFound { .. } | StackError::Invalid { .. }))
            if crate::stack::validate::is_name(&g.stack) =>
        {
            eprintln!(
                "{e}\ntaking down whatever is labelled platform.stack={}",
                g.stack
            );
            Stack {
                name: g.stack.clone(),
                description: None,
                file: Default::default(),
                services: Default::default(),
            }
        }
        Err(e) => return Err(e.into()),
    };
    let rt = Runtime::connect().await?;
    // Faults first: a paused container would not stop, and their records go with the stack.
    let reverted = crate::chaos::faults::heal_for_teardown(&rt, &stack)
        .await
        .unwrap_or_else(|e| {
            eprintln!("warning: cannot revert the stack's faults before taking it down: {e}");
            Vec::new()
        });
    for r in reverted {
        if r.healed {
            eprintln!(
                "fault {} ({} on {}): {}",
                r.id, r.kind, r.container, r.detail
            );
        } else {
            eprintln!(
                "warning: fault {} ({} on {}) could not be reverted: {}",
                r.id, r.kind, r.container, r.detail
            );
        }
    }
    let view = down(&rt, &stack, &args).await?;
    if g.json {
        output::json(&view)
    } else {
        let volumes = if args.volumes {
            format!(", {}", count(view.volumes.len(), "volume"))
        } else {
            " (volumes kept; --volumes removes them)".to_string()
        };
        crate::outln!(
            "stack {} is down: removed {}, {}{volumes}",
            view.stack,
            count(view.containers.len(), "container"),
            count(view.networks.len(), "network"),
        );
        Ok(())
    }
}

/// `1 container`, `2 containers`.
fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Stops and removes everything of `stack` (volumes only with `args.volumes`).
pub async fn down(rt: &Runtime, stack: &Stack, args: &DownArgs) -> Result<DownView> {
    let containers = rt.list_containers(Some(&stack.name), None).await?;
    for group in stop_order(stack, &containers) {
        let stops = group
            .iter()
            .map(|name| rt.stop_container(name, args.timeout));
        for r in futures::future::join_all(stops).await {
            r?;
        }
    }
    for c in &containers {
        rt.remove_container(&c.name).await?;
    }
    let networks = rt.list_networks(Some(&stack.name)).await?;
    for n in &networks {
        rt.remove_network(n).await?;
    }
    let volumes = if args.volumes {
        let vols = rt.list_volumes(Some(&stack.name)).await?;
        for v in &vols {
            rt.remove_volume(v).await?;
        }
        vols
    } else {
        Vec::new()
    };
    Ok(DownView {
        stack: stack.name.clone(),
        containers: containers.into_iter().map(|c| c.name).collect(),
        networks,
        volumes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn container(service: &str, instance: u32) -> ContainerInfo {
        ContainerInfo {
            id: String::new(),
            name: format!("{service}-{instance}"),
            image: String::new(),
            stack: "t".into(),
            service: service.into(),
            instance,
            state: "running".into(),
            health: None,
            addresses: HashMap::new(),
            labels: HashMap::new(),
            ports: vec![],
            exit_code: None,
            restart_count: 0,
            oom_killed: false,
        }
    }

    /// Containers stop dependants first: strays (services gone from the file), then the
    /// waves in reverse, so the registry outlives the services that deregister from it.
    #[test]
    fn dependants_stop_first() {
        let text = "[stack]\nname = \"t\"\n\
            [services.registry]\nimage = \"x\"\n\
            [services.app]\nimage = \"x\"\ndepends_on = { registry = \"started\" }\n";
        let stack =
            crate::stack::validate::validate(text, std::path::Path::new("t.toml"), "t.toml")
                .stack
                .unwrap();
        let containers = vec![
            container("registry", 1),
            container("app", 1),
            container("app", 2),
            container("old", 1),
        ];
        assert_eq!(
            stop_order(&stack, &containers),
            vec![
                vec!["old-1".to_string()],
                vec!["app-1".to_string(), "app-2".to_string()],
                vec!["registry-1".to_string()],
            ]
        );
    }
}
