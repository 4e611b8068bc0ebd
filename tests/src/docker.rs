//! Docker's own view of a stack, read through the engine API (bollard) rather than through the
//! CLI: the tests check what `platform` says against what the engine has. The label contract is
//! issue 7's: every container, network and volume `platform` makes carries `platform.stack`;
//! containers also carry `platform.service` and `platform.instance`; images it builds carry
//! `platform.image`. Nothing here changes a container or network; the benchmark removes only
//! images with `platform.image` that no container uses, and never forces.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use bollard::Docker;
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListImagesOptionsBuilder, ListNetworksOptionsBuilder,
    ListVolumesOptionsBuilder, RemoveImageOptionsBuilder, StatsOptionsBuilder,
};
use futures::StreamExt as _;

/// The stack a container, network or volume belongs to.
pub const STACK_LABEL: &str = "platform.stack";
/// The service a container runs.
pub const SERVICE_LABEL: &str = "platform.service";
/// The instance number of a container within its service.
pub const INSTANCE_LABEL: &str = "platform.instance";
/// On images built by `platform`: the recipe's image name.
pub const IMAGE_LABEL: &str = "platform.image";

/// Connects to `$DOCKER_HOST` or the local socket and negotiates the API version down to the
/// engine's (Docker 20.10 speaks 1.41; bollard defaults to newer).
pub async fn connect() -> anyhow::Result<Docker> {
    let docker = Docker::connect_with_defaults().context("connect to Docker")?;
    tokio::time::timeout(Duration::from_secs(5), docker.negotiate_version())
        .await
        .context("Docker did not answer within 5 s")?
        .context("negotiate the Docker API version (is the engine running?)")
}

/// One container of a stack.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Container {
    pub service: String,
    pub instance: u32,
    pub name: String,
    pub id: String,
    /// `running`, `exited`, `created`, ...
    pub state: String,
}

/// Everything that carries one stack's label.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owned {
    /// Sorted by service and instance.
    pub containers: Vec<Container>,
    pub networks: Vec<String>,
    pub volumes: Vec<String>,
}

impl Owned {
    /// True when nothing carries the label.
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty() && self.networks.is_empty() && self.volumes.is_empty()
    }

    /// The containers of `service`.
    pub fn of(&self, service: &str) -> Vec<&Container> {
        self.containers
            .iter()
            .filter(|c| c.service == service)
            .collect()
    }

    /// Container ids by name.
    pub fn ids(&self) -> BTreeMap<String, String> {
        self.containers
            .iter()
            .map(|c| (c.name.clone(), c.id.clone()))
            .collect()
    }
}

fn label_filter(key: &str, value: Option<&str>) -> HashMap<&'static str, Vec<String>> {
    let filter = match value {
        Some(v) => format!("{key}={v}"),
        None => key.to_string(),
    };
    HashMap::from([("label", vec![filter])])
}

/// Every container (running or not), network and volume labelled `platform.stack=<stack>`.
pub async fn owned(docker: &Docker, stack: &str) -> anyhow::Result<Owned> {
    let filters = label_filter(STACK_LABEL, Some(stack));
    let containers = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .context("list containers")?;
    let mut containers: Vec<Container> = containers
        .into_iter()
        .map(|c| {
            let labels = c.labels.unwrap_or_default();
            Container {
                service: labels.get(SERVICE_LABEL).cloned().unwrap_or_default(),
                instance: labels
                    .get(INSTANCE_LABEL)
                    .and_then(|i| i.parse().ok())
                    .unwrap_or(0),
                name: c
                    .names
                    .unwrap_or_default()
                    .first()
                    .map(|n| n.trim_start_matches('/').to_string())
                    .unwrap_or_default(),
                id: c.id.unwrap_or_default(),
                state: c.state.map(|s| s.to_string()).unwrap_or_default(),
            }
        })
        .collect();
    containers.sort();
    let mut networks: Vec<String> = docker
        .list_networks(Some(
            ListNetworksOptionsBuilder::new().filters(&filters).build(),
        ))
        .await
        .context("list networks")?
        .into_iter()
        .filter_map(|n| n.name)
        .collect();
    networks.sort();
    let mut volumes: Vec<String> = docker
        .list_volumes(Some(
            ListVolumesOptionsBuilder::new().filters(&filters).build(),
        ))
        .await
        .context("list volumes")?
        .volumes
        .unwrap_or_default()
        .into_iter()
        .map(|v| v.name)
        .collect();
    volumes.sort();
    Ok(Owned {
        containers,
        networks,
        volumes,
    })
}

/// The names of every stack that labels a container, network or volume on this engine.
pub async fn stack_names(docker: &Docker) -> anyhow::Result<BTreeSet<String>> {
    let filters = label_filter(STACK_LABEL, None);
    let mut names = BTreeSet::new();
    for c in docker
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .context("list containers")?
    {
        names.extend(c.labels.unwrap_or_default().remove(STACK_LABEL));
    }
    for n in docker
        .list_networks(Some(
            ListNetworksOptionsBuilder::new().filters(&filters).build(),
        ))
        .await
        .context("list networks")?
    {
        names.extend(n.labels.unwrap_or_default().remove(STACK_LABEL));
    }
    for mut v in docker
        .list_volumes(Some(
            ListVolumesOptionsBuilder::new().filters(&filters).build(),
        ))
        .await
        .context("list volumes")?
        .volumes
        .unwrap_or_default()
    {
        names.extend(v.labels.remove(STACK_LABEL));
    }
    Ok(names)
}

/// A container's memory as the stats API reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// Resident memory of the container's processes: anonymous memory plus mapped files (the
    /// binary and its libraries), cgroup v1 `rss + mapped_file`, v2 `anon + file_mapped`. This
    /// is what `ps` calls RSS (VmRSS; the benchmark cross-checks it with [`proc_rss`]) and the
    /// figure to set against a JVM's RSS.
    pub rss_bytes: u64,
    /// The anonymous part alone (heap, stacks): cgroup v1 `rss`, v2 `anon`.
    pub anon_bytes: u64,
    /// What `docker stats` shows: usage minus the inactive page cache.
    pub usage_bytes: u64,
    /// The highest usage the container's cgroup has seen (page cache included), where the
    /// engine reports it (cgroup v1 `max_usage`; cgroup v2 has no such figure in the stats).
    pub peak_bytes: Option<u64>,
}

/// One stats sample (`stream=false&one-shot=true`: no second sample for CPU, so it is quick).
async fn one_shot(
    docker: &Docker,
    container: &str,
) -> anyhow::Result<bollard::models::ContainerStatsResponse> {
    let options = StatsOptionsBuilder::new()
        .stream(false)
        .one_shot(true)
        .build();
    docker
        .stats(container, Some(options))
        .next()
        .await
        .with_context(|| format!("no stats for {container}"))?
        .with_context(|| format!("read stats of {container}"))
}

/// The CPU time (user + system, seconds) the container's processes have used so far: its
/// cgroup's usage (every process in it, health-check execs included). Read from the cgroup's own
/// file where the daemon's layout is known ([`cgroup_cpu_seconds`]), which costs the daemon
/// nothing; otherwise from the stats API. One stats call costs dockerd, containerd and the
/// container's shim a few milliseconds of CPU: reading ten containers twice in a 20 s window
/// doubled what the idle dev stack's daemon processes appeared to use.
pub async fn cpu_seconds(docker: &Docker, container: &str) -> anyhow::Result<f64> {
    if let Some(s) = cgroup_cpu_seconds(container) {
        return Ok(s);
    }
    let stats = one_shot(docker, container).await?;
    let ns = stats
        .cpu_stats
        .and_then(|c| c.cpu_usage)
        .and_then(|u| u.total_usage)
        .with_context(|| format!("no CPU usage in the stats of {container}"))?;
    Ok(ns as f64 / 1e9)
}

/// The CPU seconds of the container with the full id `id`, from its cgroup's file: cgroup v1
/// with the cgroupfs driver (`cpuacct/docker/<id>/cpuacct.usage`, nanoseconds), or cgroup v2
/// with the cgroupfs or the systemd driver (`cpu.stat`'s `usage_usec`). `None` for a short id or
/// another layout.
pub fn cgroup_cpu_seconds(id: &str) -> Option<f64> {
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let root = Path::new("/sys/fs/cgroup");
    if let Ok(text) =
        std::fs::read_to_string(root.join(format!("cpuacct/docker/{id}/cpuacct.usage")))
    {
        return text.trim().parse::<u64>().ok().map(|ns| ns as f64 / 1e9);
    }
    [
        format!("docker/{id}"),
        format!("system.slice/docker-{id}.scope"),
    ]
    .iter()
    .find_map(|dir| std::fs::read_to_string(root.join(dir).join("cpu.stat")).ok())
    .and_then(|stat| {
        stat.lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .and_then(|v| v.trim().parse::<u64>().ok())
    })
    .map(|us| us as f64 / 1e6)
}

/// The container's memory from one stats sample.
pub async fn memory(docker: &Docker, container: &str) -> anyhow::Result<Memory> {
    let stats = one_shot(docker, container).await?;
    let mem = stats.memory_stats.unwrap_or_default();
    let table = mem.stats.unwrap_or_default();
    let get = |keys: &[&str]| keys.iter().find_map(|k| table.get(*k).copied());
    let anon_bytes = get(&["total_rss", "rss", "anon"]).unwrap_or(0);
    let mapped = get(&["total_mapped_file", "mapped_file", "file_mapped"]).unwrap_or(0);
    let cache = get(&["total_inactive_file", "inactive_file"]).unwrap_or(0);
    Ok(Memory {
        rss_bytes: anon_bytes + mapped,
        anon_bytes,
        usage_bytes: mem.usage.unwrap_or(0).saturating_sub(cache),
        peak_bytes: mem.max_usage.filter(|&b| b > 0),
    })
}

/// VmRSS of a container's main process from `/proc` (a local Linux engine only), to cross-check
/// [`memory`].
pub async fn proc_rss(docker: &Docker, container: &str) -> anyhow::Result<u64> {
    let pid = docker
        .inspect_container(container, None)
        .await
        .with_context(|| format!("inspect {container}"))?
        .state
        .and_then(|s| s.pid)
        .filter(|&p| p > 0)
        .with_context(|| format!("{container} has no process"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no VmRSS in /proc/{pid}/status"))?;
    Ok(kib * 1024)
}

/// An image built by `platform` (it has `platform.image`).
#[derive(Debug, Clone)]
pub struct Image {
    pub id: String,
    pub name: String,
    pub tags: Vec<String>,
    pub size_bytes: i64,
}

/// Every image labelled `platform.image`, including untagged leftovers of rebuilds.
pub async fn platform_images(docker: &Docker) -> anyhow::Result<Vec<Image>> {
    let filters = label_filter(IMAGE_LABEL, None);
    let list = docker
        .list_images(Some(
            ListImagesOptionsBuilder::new()
                .all(false)
                .filters(&filters)
                .build(),
        ))
        .await
        .context("list images")?;
    Ok(list
        .into_iter()
        .map(|i| Image {
            name: i.labels.get(IMAGE_LABEL).cloned().unwrap_or_default(),
            id: i.id,
            tags: i.repo_tags,
            size_bytes: i.size,
        })
        .collect())
}

/// Removes every `platform.image` image that no container uses (never forced: Docker refuses
/// images in use, and those stay). Returns the images that are left.
pub async fn remove_platform_images(docker: &Docker) -> anyhow::Result<Vec<Image>> {
    // Children before parents (the MariaDB image is built on its base): repeat until no
    // removal succeeds.
    loop {
        let images = platform_images(docker).await?;
        let mut removed = 0;
        for image in &images {
            let options = RemoveImageOptionsBuilder::new()
                .force(false)
                .noprune(false)
                .build();
            let result = if image.tags.is_empty() {
                docker.remove_image(&image.id, Some(options), None).await
            } else {
                let mut last = Ok(Vec::new());
                for tag in &image.tags {
                    last = docker.remove_image(tag, Some(options.clone()), None).await;
                }
                last
            };
            if result.is_ok() {
                removed += 1;
            }
        }
        if removed == 0 {
            return Ok(images);
        }
    }
}

/// What the engine says about one container: state, health and its main process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// `running`, `paused`, `exited`, ...
    pub status: String,
    /// `healthy`, `starting`, `unhealthy`, or empty without a health check.
    pub health: String,
    /// The main process's pid on the host (0 when not running).
    pub pid: i64,
    pub started_at: String,
    /// DNS aliases by network the container is attached to.
    pub networks: BTreeMap<String, Vec<String>>,
    /// Times the engine restarted it under its restart policy.
    pub restart_count: i64,
    /// Whether the kernel's OOM killer ended its last run.
    pub oom_killed: bool,
}

impl State {
    /// Running, and healthy when it has a health check.
    pub fn is_ready(&self) -> bool {
        self.status == "running" && (self.health.is_empty() || self.health == "healthy")
    }
}

/// The engine's view of container `name`.
pub async fn state(docker: &Docker, name: &str) -> anyhow::Result<State> {
    let c = docker
        .inspect_container(name, None)
        .await
        .with_context(|| format!("inspect {name}"))?;
    let s = c.state.unwrap_or_default();
    let networks = c
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.aliases.unwrap_or_default()))
        .collect();
    Ok(State {
        status: s.status.map(|x| x.to_string()).unwrap_or_default(),
        health: s
            .health
            .and_then(|h| h.status)
            .map(|h| h.to_string())
            .filter(|h| h != "none")
            .unwrap_or_default(),
        pid: s.pid.unwrap_or(0),
        started_at: s.started_at.unwrap_or_default(),
        networks,
        restart_count: c.restart_count.unwrap_or(0),
        oom_killed: s.oom_killed.unwrap_or(false),
    })
}

/// Runs `program args` inside the network namespace of host pid `pid` (root only), returning
/// its stdout.
pub fn in_netns(pid: i64, program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new("nsenter")
        .args(["--target", &pid.to_string(), "--net", "--", program])
        .args(args)
        .output()
        .with_context(|| format!("run nsenter {program}"))?;
    anyhow::ensure!(
        out.status.success(),
        "nsenter -t {pid} -n {program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `platform fault-agent` processes alive on this host (not zombies) whose command line
/// contains `needle`: `(pid, command line)`.
pub fn fault_agents(needle: &str) -> Vec<(i64, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i64>().ok())
        .filter_map(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let zombie = stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z'));
            (cmd.split(' ').any(|w| w == "fault-agent") && cmd.contains(needle) && !zombie)
                .then_some((pid, cmd.trim().to_string()))
        })
        .collect()
}

/// Traces of network faults left in a running container's namespace: root qdiscs other than
/// the default (`noqueue`), iptables rules marked `platform-fault:` or sending to an NFQUEUE,
/// a bound NFQUEUE, and fault agents living in that namespace.
pub fn network_leftovers(pid: i64) -> anyhow::Result<Vec<String>> {
    let mut found = Vec::new();
    let qdiscs: serde_json::Value =
        serde_json::from_str(in_netns(pid, "tc", &["-j", "qdisc", "show"])?.trim())
            .context("read tc's JSON")?;
    for q in qdiscs.as_array().into_iter().flatten() {
        let root = q.get("root").and_then(|r| r.as_bool()) == Some(true);
        let kind = q.get("kind").and_then(|k| k.as_str()).unwrap_or_default();
        let dev = q.get("dev").and_then(|k| k.as_str()).unwrap_or_default();
        if root && kind != "noqueue" && dev != "lo" {
            found.push(format!("{kind} qdisc on {dev}"));
        }
    }
    if let Ok(rules) = in_netns(pid, "iptables", &["-w", "5", "-S", "OUTPUT"]) {
        found.extend(
            rules
                .lines()
                .filter(|l| l.contains("platform-fault:") || l.contains("NFQUEUE"))
                .map(|l| format!("iptables rule `{l}`")),
        );
    }
    // The namespace's bound queues (the file exists where the kernel has nfnetlink_queue).
    if let Ok(table) = std::fs::read_to_string(format!("/proc/{pid}/net/netfilter/nfnetlink_queue"))
    {
        found.extend(
            table
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| format!("NFQUEUE bound: `{}`", l.trim())),
        );
    }
    if let Ok(ns) = std::fs::read_link(format!("/proc/{pid}/ns/net")) {
        found.extend(
            fault_agents("")
                .into_iter()
                .filter(|(p, _)| {
                    std::fs::read_link(format!("/proc/{p}/ns/net"))
                        .ok()
                        .as_ref()
                        == Some(&ns)
                })
                .map(|(p, cmd)| format!("fault agent {p} `{cmd}`")),
        );
    }
    Ok(found)
}

/// Everything a stack's faults could have left behind: containers not running and ready,
/// network faults in the running ones' namespaces, and fault agents of its containers anywhere.
/// Empty when the stack is whole.
pub async fn fault_leftovers(docker: &Docker, stack: &str) -> anyhow::Result<Vec<String>> {
    let mut found: Vec<String> = fault_agents(&format!("--container platform-{stack}-"))
        .into_iter()
        .map(|(p, cmd)| format!("fault agent {p} `{cmd}`"))
        .collect();
    for c in owned(docker, stack).await?.containers {
        let s = state(docker, &c.name).await?;
        if !s.is_ready() {
            found.push(format!("{} is {} {}", c.name, s.status, s.health));
        }
        if s.status == "running" {
            found.extend(
                network_leftovers(s.pid)?
                    .into_iter()
                    .map(|l| format!("{}: {l}", c.name)),
            );
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    /// Only a full container id names a cgroup: a short id or a name is refused before any
    /// path is built from it.
    #[test]
    fn cgroup_reads_need_a_full_id() {
        for id in [
            "",
            "abc123",
            "platform-dev-mariadb-1",
            &"g".repeat(64),
            &"0".repeat(65),
        ] {
            assert_eq!(super::cgroup_cpu_seconds(id), None, "{id}");
        }
        assert_eq!(
            super::cgroup_cpu_seconds(&"0".repeat(64)),
            None,
            "no such container"
        );
    }
}
