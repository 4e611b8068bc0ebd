//! The Docker facade: the only module that talks to the engine. It wraps bollard behind a few
//! typed operations (networks, volumes, containers, health, logs, stats, exec, images, local
//! builds), negotiates the API version with the engine (20.10 speaks 1.41, bollard defaults to
//! newer), and enforces the ownership rule: anything it stops, removes or changes must carry
//! platform's labels.

pub mod build;
mod error;
pub mod labels;

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerUpdateBody, EndpointSettings, HealthConfig, HealthStatusEnum,
    HostConfig, Mount, MountType, NetworkCreateRequest, NetworkingConfig, PortBinding,
    RestartPolicy, RestartPolicyNameEnum, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, EventsOptionsBuilder, InspectNetworkOptions,
    KillContainerOptionsBuilder, ListContainersOptionsBuilder, ListImagesOptionsBuilder,
    ListNetworksOptionsBuilder, ListVolumesOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder, RemoveVolumeOptionsBuilder,
    StatsOptionsBuilder, StopContainerOptionsBuilder,
};
use futures::{Stream, StreamExt, TryStreamExt};
use serde::Serialize;

pub use crate::stack::Restart;

pub use error::{RuntimeError, is_not_found};

/// Result alias for Docker operations.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// How long to wait for the engine to answer the first request before calling it unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The oldest engine API this CLI is written against (Docker Engine 20.10).
pub const MINIMUM_API: (usize, usize) = (1, 41);

/// A connection to the Docker engine.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// bollard's client, already negotiated down to the engine's API version. Cloning it is
    /// cheap and shares one connection pool, so commands clone the `Runtime` freely.
    docker: Docker,
    /// The engine address, for messages.
    host: String,
}

/// What `platform version` shows about the engine.
#[derive(Debug, Clone, Serialize)]
pub struct EngineVersion {
    /// The engine's release, e.g. `20.10.24`.
    pub version: String,
    /// The engine's API version, e.g. `1.41`.
    pub api_version: String,
    /// The API version this client negotiated down to.
    pub client_api_version: String,
}

/// Everything needed to create one container of a stack.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub stack: String,
    pub service: String,
    pub instance: u32,
    /// Docker `Cmd`; empty keeps the image's.
    pub cmd: Vec<String>,
    pub env: Vec<(String, String)>,
    pub network: String,
    /// DNS names on `network` besides the container name (the service name).
    pub aliases: Vec<String>,
    pub ports: Vec<PortSpec>,
    pub mounts: Vec<MountSpec>,
    pub healthcheck: Option<HealthcheckSpec>,
    pub memory_bytes: Option<u64>,
    pub cpus: Option<f64>,
    /// What Docker does when the process exits (also kept in the [`labels::RESTART`] label).
    pub restart: Restart,
    /// Labels besides the ownership ones (e.g. the spec hash `up` compares on re-runs).
    pub labels: std::collections::BTreeMap<String, String>,
}

/// A published port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
    pub host_port: u16,
    pub container_port: u16,
}

/// A volume or bind mount of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSpec {
    Volume {
        name: String,
        target: String,
        read_only: bool,
    },
    Bind {
        source: String,
        target: String,
        read_only: bool,
    },
}

/// A Docker-run health check (exec form, no shell); an empty command switches the image's own
/// HEALTHCHECK off (`NONE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthcheckSpec {
    pub command: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub start_period: Duration,
    /// Probe period while starting (within `start_period`, until the first success).
    pub start_interval: Duration,
}

/// A container of ours as the engine sees it.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub image: String,
    pub stack: String,
    pub service: String,
    pub instance: u32,
    /// `created`, `running`, `exited`, ...
    pub state: String,
    /// Docker's health status when the container has a health check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    /// The container's IP addresses by network.
    pub addresses: HashMap<String, String>,
    /// All the container's labels.
    #[serde(skip)]
    pub labels: HashMap<String, String>,
    pub ports: Vec<PortSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// How often Docker's restart policy has restarted it since it was created.
    pub restart_count: u64,
    /// Whether the kernel's OOM killer ended its last run (Docker's `State.OOMKilled`).
    pub oom_killed: bool,
}

impl ContainerInfo {
    /// Running, and healthy where it has a health check. Readers take `health` from
    /// `observe::ready` (`Observer`'s containers have it), where a container Docker still calls
    /// `starting` is healthy once the CLI's own probe passes.
    pub fn is_ready(&self) -> bool {
        self.state == "running" && matches!(self.health, None | Some(Health::Healthy))
    }
}

/// Docker's view of a container's health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Starting,
    Healthy,
    Unhealthy,
}

/// Which output stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// One line of container output, with Docker's timestamp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    pub stream: LogStream,
    /// RFC 3339 with nanoseconds, as Docker writes it; sorts lexically in time order.
    pub timestamp: String,
    pub text: String,
}

/// Options for reading logs.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub follow: bool,
    /// Unix seconds; lines before it are skipped.
    pub since: Option<i64>,
    /// Only the last N lines.
    pub tail: Option<u64>,
}

/// A container's process and network facts ([`Runtime::container_facts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerFacts {
    pub id: String,
    /// The main process's pid in the host's pid namespace, while it runs.
    pub pid: Option<i64>,
    pub running: bool,
    /// RFC 3339, as Docker reports it; changes on every start.
    pub started_at: String,
    /// DNS aliases by network.
    pub aliases: HashMap<String, Vec<String>>,
}

/// What the engine says about itself ([`Runtime::engine_facts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineFacts {
    /// e.g. `Debian GNU/Linux 12 (bookworm)` or `Docker Desktop`.
    pub operating_system: String,
    /// e.g. `name=seccomp,profile=default`, `name=rootless`.
    pub security_options: Vec<String>,
}

/// A snapshot of a container's resource use.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stats {
    /// Memory in use, excluding the page cache (what `docker stats` shows).
    pub memory_bytes: u64,
    pub memory_limit_bytes: u64,
    /// CPU use over the last sample interval, 100 = one core.
    pub cpu_percent: f64,
}

/// One event of a container of ours, from the engine's event stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerEvent {
    /// Docker's action: `create`, `start`, `die`, `kill`, `oom`, `stop`, `pause`, `unpause`,
    /// `restart`, `destroy`, `health_status: healthy`, ...
    pub action: String,
    /// The container's name.
    pub container: String,
    pub service: String,
    pub instance: u32,
    /// `die`: the exit code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// `kill`: the signal sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// When it happened, nanoseconds since the epoch.
    pub time_nanos: i64,
}

/// The result of a command run inside a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
}

/// An image built by platform.
#[derive(Debug, Clone, Serialize)]
pub struct ImageInfo {
    pub id: String,
    pub tags: Vec<String>,
    /// The `platform.image` label.
    pub name: String,
    /// The `platform.content-hash` label.
    pub content_hash: String,
    /// Unix seconds.
    pub created: i64,
    pub size_bytes: i64,
}

impl Runtime {
    /// Connects to `$DOCKER_HOST` (or the default socket) and negotiates the API version down
    /// to the engine's, failing with [`RuntimeError::Unreachable`] when nothing answers.
    pub async fn connect() -> Result<Self> {
        let host = std::env::var("DOCKER_HOST")
            .unwrap_or_else(|_| "unix:///var/run/docker.sock".to_string());
        let unreachable = |message: String| RuntimeError::Unreachable {
            host: host.clone(),
            message,
        };
        let docker = Docker::connect_with_defaults().map_err(|e| unreachable(e.to_string()))?;
        let docker = match tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version()).await {
            Err(_) => return Err(unreachable(format!("no answer within {CONNECT_TIMEOUT:?}"))),
            Ok(Err(e)) => return Err(unreachable(e.to_string())),
            Ok(Ok(d)) => d,
        };
        let version = docker.client_version();
        if (version.major_version, version.minor_version) < MINIMUM_API {
            return Err(RuntimeError::TooOld {
                host,
                api: format!("{}.{}", version.major_version, version.minor_version),
                minimum: format!("{}.{}", MINIMUM_API.0, MINIMUM_API.1),
            });
        }
        Ok(Self { docker, host })
    }

    /// Whether the engine takes a health check's start interval (API 1.44, Docker 25).
    pub fn has_start_interval(&self) -> bool {
        let v = self.docker.client_version();
        (v.major_version, v.minor_version) >= (1, 44)
    }

    /// The engine address in use.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The underlying client, for the image builders in [`build`].
    pub(crate) fn docker(&self) -> &Docker {
        &self.docker
    }

    /// The engine's release and API versions.
    pub async fn version(&self) -> Result<EngineVersion> {
        let v = self
            .docker
            .version()
            .await
            .map_err(|e| RuntimeError::docker("read the engine version", e))?;
        let client = self.docker.client_version();
        Ok(EngineVersion {
            version: v.version.unwrap_or_default(),
            api_version: v.api_version.unwrap_or_default(),
            client_api_version: format!("{}.{}", client.major_version, client.minor_version),
        })
    }

    // ---------------------------------------------------------------- networks

    /// Creates the stack's bridge network, or checks that the existing one is ours.
    pub async fn ensure_network(&self, name: &str, stack: &str) -> Result<()> {
        match self
            .docker
            .inspect_network(name, None::<InspectNetworkOptions>)
            .await
        {
            Ok(net) => {
                if has_stack_label(net.labels.as_ref()) {
                    Ok(())
                } else {
                    Err(RuntimeError::NotOurs {
                        kind: "network",
                        name: name.to_string(),
                    })
                }
            }
            Err(e) if is_not_found(&e) => {
                let request = NetworkCreateRequest {
                    name: name.to_string(),
                    driver: Some("bridge".to_string()),
                    labels: Some(labels::for_stack(stack)),
                    ..Default::default()
                };
                self.docker
                    .create_network(request)
                    .await
                    .map_err(|e| RuntimeError::docker(format!("create network {name}"), e))?;
                Ok(())
            }
            Err(e) => Err(RuntimeError::docker(format!("inspect network {name}"), e)),
        }
    }

    /// Removes a network of ours; a missing one is fine.
    pub async fn remove_network(&self, name: &str) -> Result<()> {
        match self
            .docker
            .inspect_network(name, None::<InspectNetworkOptions>)
            .await
        {
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(RuntimeError::docker(format!("inspect network {name}"), e)),
            Ok(net) if !has_stack_label(net.labels.as_ref()) => {
                return Err(RuntimeError::NotOurs {
                    kind: "network",
                    name: name.to_string(),
                });
            }
            Ok(_) => {}
        }
        match self.docker.remove_network(name).await {
            Err(e) if is_not_found(&e) => Ok(()),
            r => r.map_err(|e| RuntimeError::docker(format!("remove network {name}"), e)),
        }
    }

    /// Names of our networks, of one stack or of all.
    pub async fn list_networks(&self, stack: Option<&str>) -> Result<Vec<String>> {
        let filters = HashMap::from([("label", vec![labels::filter(labels::STACK, stack)])]);
        let nets = self
            .docker
            .list_networks(Some(
                ListNetworksOptionsBuilder::new().filters(&filters).build(),
            ))
            .await
            .map_err(|e| RuntimeError::docker("list networks", e))?;
        let mut names: Vec<String> = nets.into_iter().filter_map(|n| n.name).collect();
        names.sort();
        Ok(names)
    }

    // ----------------------------------------------------------------- volumes

    /// Creates a named volume of the stack, or checks that the existing one is ours.
    pub async fn ensure_volume(&self, name: &str, stack: &str) -> Result<()> {
        match self.docker.inspect_volume(name).await {
            Ok(v) if v.labels.contains_key(labels::STACK) => Ok(()),
            Ok(_) => Err(RuntimeError::NotOurs {
                kind: "volume",
                name: name.to_string(),
            }),
            Err(e) if is_not_found(&e) => {
                let request = VolumeCreateRequest {
                    name: Some(name.to_string()),
                    labels: Some(labels::for_stack(stack)),
                    ..Default::default()
                };
                self.docker
                    .create_volume(request)
                    .await
                    .map_err(|e| RuntimeError::docker(format!("create volume {name}"), e))?;
                Ok(())
            }
            Err(e) => Err(RuntimeError::docker(format!("inspect volume {name}"), e)),
        }
    }

    /// Removes a volume of ours; a missing one is fine.
    pub async fn remove_volume(&self, name: &str) -> Result<()> {
        match self.docker.inspect_volume(name).await {
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(RuntimeError::docker(format!("inspect volume {name}"), e)),
            Ok(v) if !v.labels.contains_key(labels::STACK) => {
                return Err(RuntimeError::NotOurs {
                    kind: "volume",
                    name: name.to_string(),
                });
            }
            Ok(_) => {}
        }
        match self
            .docker
            .remove_volume(name, Some(RemoveVolumeOptionsBuilder::new().build()))
            .await
        {
            Err(e) if is_not_found(&e) => Ok(()),
            r => r.map_err(|e| RuntimeError::docker(format!("remove volume {name}"), e)),
        }
    }

    /// Names of our volumes, of one stack or of all.
    pub async fn list_volumes(&self, stack: Option<&str>) -> Result<Vec<String>> {
        let filters = HashMap::from([("label", vec![labels::filter(labels::STACK, stack)])]);
        let list = self
            .docker
            .list_volumes(Some(
                ListVolumesOptionsBuilder::new().filters(&filters).build(),
            ))
            .await
            .map_err(|e| RuntimeError::docker("list volumes", e))?;
        let mut names: Vec<String> = list
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.name)
            .collect();
        names.sort();
        Ok(names)
    }

    // -------------------------------------------------------------- containers

    /// Creates (does not start) a container from `spec`, labelled as ours.
    pub async fn create_container(&self, spec: &ContainerSpec) -> Result<String> {
        let body = container_body(spec, self.has_start_interval());
        let options = CreateContainerOptionsBuilder::new()
            .name(&spec.name)
            .build();
        let created = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| RuntimeError::docker(format!("create container {}", spec.name), e))?;
        Ok(created.id)
    }

    /// Starts a container of ours.
    pub async fn start_container(&self, name: &str) -> Result<()> {
        self.ensure_ours(name).await?;
        self.docker
            .start_container(name, None)
            .await
            .map_err(|e| RuntimeError::docker(format!("start container {name}"), e))
    }

    /// Sends SIGTERM, then SIGKILL after `timeout` (Docker's stop).
    pub async fn stop_container(&self, name: &str, timeout: Duration) -> Result<()> {
        self.ensure_ours(name).await?;
        let options = StopContainerOptionsBuilder::new()
            .t(i32::try_from(timeout.as_secs()).unwrap_or(i32::MAX))
            .build();
        match self.docker.stop_container(name, Some(options)).await {
            // 304: already stopped.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            r => r.map_err(|e| RuntimeError::docker(format!("stop container {name}"), e)),
        }
    }

    /// Sends `signal` (e.g. `SIGKILL`) to a container of ours.
    pub async fn kill_container(&self, name: &str, signal: &str) -> Result<()> {
        self.ensure_ours(name).await?;
        let options = KillContainerOptionsBuilder::new().signal(signal).build();
        self.docker
            .kill_container(name, Some(options))
            .await
            .map_err(|e| RuntimeError::docker(format!("kill container {name}"), e))
    }

    /// Freezes every process of a container of ours (Docker's pause).
    pub async fn pause_container(&self, name: &str) -> Result<()> {
        self.ensure_ours(name).await?;
        self.docker
            .pause_container(name)
            .await
            .map_err(|e| RuntimeError::docker(format!("pause container {name}"), e))
    }

    /// Thaws a paused container of ours.
    pub async fn unpause_container(&self, name: &str) -> Result<()> {
        self.ensure_ours(name).await?;
        self.docker
            .unpause_container(name)
            .await
            .map_err(|e| RuntimeError::docker(format!("unpause container {name}"), e))
    }

    /// Changes the restart policy of a container of ours in place (`docker update --restart`).
    pub async fn set_restart_policy(&self, name: &str, restart: Restart) -> Result<()> {
        self.ensure_ours(name).await?;
        let body = ContainerUpdateBody {
            restart_policy: Some(restart_policy(restart)),
            ..Default::default()
        };
        self.docker
            .update_container(name, body)
            .await
            .map_err(|e| RuntimeError::docker(format!("update restart policy of {name}"), e))
    }

    /// Puts back the restart policy the stack gave a container of ours (its
    /// [`labels::RESTART`] label; the default policy for containers made before the label).
    /// Returns the policy set.
    pub async fn restore_restart_policy(&self, name: &str) -> Result<Restart> {
        let info = self.inspect_container(name).await?;
        let restart = info
            .labels
            .get(labels::RESTART)
            .and_then(|r| Restart::parse(r).ok())
            .unwrap_or_default();
        self.set_restart_policy(name, restart).await?;
        Ok(restart)
    }

    /// Docker's restart of a container of ours (stop with the default grace, then start).
    pub async fn restart_container(&self, name: &str) -> Result<()> {
        self.ensure_ours(name).await?;
        self.docker
            .restart_container(name, None)
            .await
            .map_err(|e| RuntimeError::docker(format!("restart container {name}"), e))
    }

    /// Cuts a container of ours off `network` (forcefully, so a paused one works too).
    pub async fn disconnect_network(&self, name: &str, network: &str) -> Result<()> {
        self.ensure_ours(name).await?;
        let request = bollard::models::NetworkDisconnectRequest {
            container: name.to_string(),
            force: Some(true),
        };
        self.docker
            .disconnect_network(network, request)
            .await
            .map_err(|e| RuntimeError::docker(format!("disconnect {name} from {network}"), e))
    }

    /// Attaches a container of ours to `network` with DNS `aliases`.
    pub async fn connect_network(
        &self,
        name: &str,
        network: &str,
        aliases: &[String],
    ) -> Result<()> {
        self.ensure_ours(name).await?;
        let request = bollard::models::NetworkConnectRequest {
            container: name.to_string(),
            endpoint_config: Some(EndpointSettings {
                aliases: Some(aliases.to_vec()),
                ..Default::default()
            }),
        };
        self.docker
            .connect_network(network, request)
            .await
            .map_err(|e| RuntimeError::docker(format!("connect {name} to {network}"), e))
    }

    /// What fault injection needs beyond [`ContainerInfo`]: the main process's pid on the
    /// host, when it last started, and its DNS aliases per network.
    pub async fn container_facts(&self, name: &str) -> Result<ContainerFacts> {
        let c = match self.docker.inspect_container(name, None).await {
            Ok(c) => c,
            Err(e) if is_not_found(&e) => {
                return Err(RuntimeError::NotFound {
                    kind: "container",
                    name: name.to_string(),
                });
            }
            Err(e) => return Err(RuntimeError::docker(format!("inspect container {name}"), e)),
        };
        let ours = c
            .config
            .as_ref()
            .and_then(|cfg| cfg.labels.as_ref())
            .is_some_and(|l| l.contains_key(labels::STACK));
        if !ours {
            return Err(RuntimeError::NotOurs {
                kind: "container",
                name: name.to_string(),
            });
        }
        let state = c.state.as_ref();
        let aliases = c
            .network_settings
            .as_ref()
            .and_then(|n| n.networks.as_ref())
            .map(|nets| {
                nets.iter()
                    .map(|(k, v)| (k.clone(), v.aliases.clone().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        Ok(ContainerFacts {
            id: c.id.unwrap_or_default(),
            pid: state.and_then(|s| s.pid).filter(|p| *p > 0),
            running: state.and_then(|s| s.running).unwrap_or(false),
            started_at: state.and_then(|s| s.started_at.clone()).unwrap_or_default(),
            aliases,
        })
    }

    /// The engine's operating system and security options (Docker Desktop and rootless
    /// engines show there), for checks of what can work from this host.
    pub async fn engine_facts(&self) -> Result<EngineFacts> {
        let info = self
            .docker
            .info()
            .await
            .map_err(|e| RuntimeError::docker("read the engine's info", e))?;
        Ok(EngineFacts {
            operating_system: info.operating_system.unwrap_or_default(),
            security_options: info.security_options.unwrap_or_default(),
        })
    }

    /// Removes a container of ours (forcefully, so a running one is killed); a missing one is
    /// fine.
    pub async fn remove_container(&self, name: &str) -> Result<()> {
        match self.ensure_ours(name).await {
            Err(RuntimeError::NotFound { .. }) => return Ok(()),
            r => r?,
        }
        let options = RemoveContainerOptionsBuilder::new().force(true).build();
        match self.docker.remove_container(name, Some(options)).await {
            Err(e) if is_not_found(&e) => Ok(()),
            r => r.map_err(|e| RuntimeError::docker(format!("remove container {name}"), e)),
        }
    }

    /// Inspects a container of ours.
    pub async fn inspect_container(&self, name: &str) -> Result<ContainerInfo> {
        let c = match self.docker.inspect_container(name, None).await {
            Ok(c) => c,
            Err(e) if is_not_found(&e) => {
                return Err(RuntimeError::NotFound {
                    kind: "container",
                    name: name.to_string(),
                });
            }
            Err(e) => return Err(RuntimeError::docker(format!("inspect container {name}"), e)),
        };
        let labels = c
            .config
            .as_ref()
            .and_then(|cfg| cfg.labels.clone())
            .unwrap_or_default();
        if !labels.contains_key(labels::STACK) {
            return Err(RuntimeError::NotOurs {
                kind: "container",
                name: name.to_string(),
            });
        }
        let state = c.state.as_ref();
        let health = state
            .and_then(|s| s.health.as_ref())
            .and_then(|h| h.status)
            .and_then(health_of);
        let settings = c.network_settings.as_ref();
        let addresses = settings
            .and_then(|n| n.networks.as_ref())
            .map(|nets| {
                nets.iter()
                    .filter_map(|(k, v)| {
                        v.ip_address
                            .clone()
                            .filter(|ip| !ip.is_empty())
                            .map(|ip| (k.clone(), ip))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let ports = settings
            .and_then(|n| n.ports.as_ref())
            .map(ports_of)
            .unwrap_or_default();
        Ok(ContainerInfo {
            id: c.id.unwrap_or_default(),
            name: c
                .name
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string(),
            image: c.config.and_then(|cfg| cfg.image).unwrap_or_default(),
            stack: labels.get(labels::STACK).cloned().unwrap_or_default(),
            service: labels.get(labels::SERVICE).cloned().unwrap_or_default(),
            instance: labels
                .get(labels::INSTANCE)
                .and_then(|i| i.parse().ok())
                .unwrap_or(0),
            state: state
                .and_then(|s| s.status)
                .map(|s| s.to_string())
                .unwrap_or_default(),
            health,
            addresses,
            ports,
            exit_code: state.and_then(|s| s.exit_code),
            restart_count: c
                .restart_count
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0),
            oom_killed: state.and_then(|s| s.oom_killed).unwrap_or(false),
            labels,
        })
    }

    /// Our containers (running or not), of one stack or of all, optionally of one service,
    /// sorted by service and instance.
    pub async fn list_containers(
        &self,
        stack: Option<&str>,
        service: Option<&str>,
    ) -> Result<Vec<ContainerInfo>> {
        let mut label_filters = vec![labels::filter(labels::STACK, stack)];
        if let Some(s) = service {
            label_filters.push(labels::filter(labels::SERVICE, Some(s)));
        }
        let filters = HashMap::from([("label", label_filters)]);
        let list = self
            .docker
            .list_containers(Some(
                ListContainersOptionsBuilder::new()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .map_err(|e| RuntimeError::docker("list containers", e))?;
        let mut out = Vec::new();
        for summary in list {
            let Some(id) = summary.id else { continue };
            match self.inspect_container(&id).await {
                Ok(info) => out.push(info),
                // Removed between list and inspect.
                Err(RuntimeError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| {
            (&a.stack, &a.service, a.instance).cmp(&(&b.stack, &b.service, b.instance))
        });
        Ok(out)
    }

    /// Fails unless `name` exists and carries our labels.
    async fn ensure_ours(&self, name: &str) -> Result<()> {
        self.inspect_container(name).await.map(|_| ())
    }

    /// The container's health: Docker's health check status when it has one, otherwise
    /// `None` (the caller probes from outside).
    pub async fn health(&self, name: &str) -> Result<Option<Health>> {
        Ok(self.inspect_container(name).await?.health)
    }

    /// The container events of `stack` as they happen (from now on); the stream ends when the
    /// engine closes it.
    pub fn events(&self, stack: &str) -> impl Stream<Item = Result<ContainerEvent>> + use<> {
        let filters = HashMap::from([
            ("type", vec!["container".to_string()]),
            ("label", vec![labels::filter(labels::STACK, Some(stack))]),
        ]);
        let options = EventsOptionsBuilder::new().filters(&filters).build();
        self.docker
            .events(Some(options))
            .map_err(|e| RuntimeError::docker("read engine events", e))
            .try_filter_map(|m| async move { Ok(container_event(m)) })
    }

    /// The container's output as a stream of lines with timestamps.
    pub fn logs(
        &self,
        name: &str,
        options: &LogOptions,
    ) -> impl Stream<Item = Result<LogLine>> + use<> {
        let mut builder = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .follow(options.follow);
        if let Some(since) = options.since {
            builder = builder.since(i32::try_from(since).unwrap_or(i32::MAX));
        }
        if let Some(tail) = options.tail {
            builder = builder.tail(&tail.to_string());
        }
        let name = name.to_string();
        let action = format!("read logs of {name}");
        self.docker
            .logs(&name, Some(builder.build()))
            .map_err(move |e| RuntimeError::docker(action.clone(), e))
            .map_ok(|out| {
                let (stream, bytes) = match out {
                    bollard::container::LogOutput::StdErr { message } => {
                        (LogStream::Stderr, message)
                    }
                    other => (LogStream::Stdout, other.into_bytes()),
                };
                let text = String::from_utf8_lossy(&bytes);
                let text = text.strip_suffix('\n').unwrap_or(&text);
                let (timestamp, text) = text.split_once(' ').unwrap_or(("", text));
                LogLine {
                    stream,
                    timestamp: timestamp.to_string(),
                    text: text.to_string(),
                }
            })
    }

    /// One resource sample (memory without page cache, CPU over Docker's ~1 s sample).
    pub async fn stats(&self, name: &str) -> Result<Stats> {
        let options = StatsOptionsBuilder::new().stream(false).build();
        let mut stream = self.docker.stats(name, Some(options));
        let s = match stream.next().await {
            Some(r) => r.map_err(|e| RuntimeError::docker(format!("read stats of {name}"), e))?,
            None => {
                return Err(RuntimeError::NotFound {
                    kind: "container",
                    name: name.to_string(),
                });
            }
        };
        let mem = s.memory_stats.unwrap_or_default();
        let stats = mem.stats.unwrap_or_default();
        // cgroup v2 reports inactive_file, v1 total_inactive_file; docker stats subtracts it.
        let cache = stats
            .get("inactive_file")
            .or_else(|| stats.get("total_inactive_file"))
            .copied()
            .unwrap_or(0);
        let usage = mem.usage.unwrap_or(0).saturating_sub(cache);
        let cpu = s.cpu_stats.unwrap_or_default();
        let pre = s.precpu_stats.unwrap_or_default();
        let total = |c: &bollard::models::ContainerCpuStats| {
            c.cpu_usage
                .as_ref()
                .and_then(|u| u.total_usage)
                .unwrap_or(0)
        };
        let cpu_delta = total(&cpu).saturating_sub(total(&pre)) as f64;
        let system_delta = cpu
            .system_cpu_usage
            .unwrap_or(0)
            .saturating_sub(pre.system_cpu_usage.unwrap_or(0)) as f64;
        let cpus = f64::from(cpu.online_cpus.unwrap_or(1).max(1));
        let cpu_percent = if system_delta > 0.0 {
            cpu_delta / system_delta * cpus * 100.0
        } else {
            0.0
        };
        Ok(Stats {
            memory_bytes: usage,
            memory_limit_bytes: mem.limit.unwrap_or(0),
            cpu_percent,
        })
    }

    /// Runs `command` inside a running container of ours and collects its output.
    pub async fn exec(&self, name: &str, command: &[&str]) -> Result<ExecOutput> {
        self.ensure_ours(name).await?;
        let exec = self
            .docker
            .create_exec(
                name,
                bollard::models::ExecConfig {
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(command.iter().map(|s| s.to_string()).collect()),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| RuntimeError::docker(format!("exec in {name}"), e))?;
        let started = self
            .docker
            .start_exec(&exec.id, None)
            .await
            .map_err(|e| RuntimeError::docker(format!("exec in {name}"), e))?;
        let (mut stdout, mut stderr) = (String::new(), String::new());
        if let bollard::exec::StartExecResults::Attached { mut output, .. } = started {
            while let Some(chunk) = output.next().await {
                match chunk.map_err(|e| RuntimeError::docker(format!("exec in {name}"), e))? {
                    bollard::container::LogOutput::StdErr { message } => {
                        stderr.push_str(&String::from_utf8_lossy(&message));
                    }
                    other => stdout.push_str(&String::from_utf8_lossy(&other.into_bytes())),
                }
            }
        }
        let inspect = self
            .docker
            .inspect_exec(&exec.id)
            .await
            .map_err(|e| RuntimeError::docker(format!("exec in {name}"), e))?;
        Ok(ExecOutput {
            exit_code: inspect.exit_code.unwrap_or(-1),
            stdout,
            stderr,
        })
    }

    // ------------------------------------------------------------------ images

    /// Our images (those with a `platform.image` label), optionally of one name.
    pub async fn list_images(&self, name: Option<&str>) -> Result<Vec<ImageInfo>> {
        let filters = HashMap::from([("label", vec![labels::filter(labels::IMAGE, name)])]);
        let list = self
            .docker
            .list_images(Some(
                ListImagesOptionsBuilder::new().filters(&filters).build(),
            ))
            .await
            .map_err(|e| RuntimeError::docker("list images", e))?;
        let mut out: Vec<ImageInfo> = list
            .into_iter()
            .map(|i| ImageInfo {
                name: i.labels.get(labels::IMAGE).cloned().unwrap_or_default(),
                content_hash: i
                    .labels
                    .get(labels::CONTENT_HASH)
                    .cloned()
                    .unwrap_or_default(),
                id: i.id,
                tags: i.repo_tags,
                created: i.created,
                size_bytes: i.size,
            })
            .collect();
        out.sort_by(|a, b| (&a.name, b.created).cmp(&(&b.name, a.created)));
        Ok(out)
    }

    /// True when an image with this exact tag exists.
    pub async fn image_exists(&self, tag: &str) -> Result<bool> {
        match self.docker.inspect_image(tag).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(RuntimeError::docker(format!("inspect image {tag}"), e)),
        }
    }

    /// Removes an image of ours by tag or id (refuses images without `platform.image`).
    pub async fn remove_image(&self, tag: &str) -> Result<()> {
        let image = match self.docker.inspect_image(tag).await {
            Ok(i) => i,
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(RuntimeError::docker(format!("inspect image {tag}"), e)),
        };
        let ours = image
            .config
            .and_then(|c| c.labels)
            .is_some_and(|l| l.contains_key(labels::IMAGE));
        if !ours {
            return Err(RuntimeError::NotOurs {
                kind: "image",
                name: tag.to_string(),
            });
        }
        match self
            .docker
            .remove_image(tag, Some(RemoveImageOptionsBuilder::new().build()), None)
            .await
        {
            Err(e) if is_not_found(&e) => Ok(()),
            r => r
                .map(|_| ())
                .map_err(|e| RuntimeError::docker(format!("remove image {tag}"), e)),
        }
    }
}

/// A container event of the engine, when it is one of ours with a name.
fn container_event(m: bollard::models::EventMessage) -> Option<ContainerEvent> {
    let attributes = m.actor?.attributes.unwrap_or_default();
    let container = attributes.get("name")?.clone();
    Some(ContainerEvent {
        action: m.action.unwrap_or_default(),
        service: attributes.get(labels::SERVICE).cloned().unwrap_or_default(),
        instance: attributes
            .get(labels::INSTANCE)
            .and_then(|i| i.parse().ok())
            .unwrap_or(0),
        exit_code: attributes.get("exitCode").and_then(|c| c.parse().ok()),
        signal: attributes.get("signal").cloned(),
        time_nanos: m
            .time_nano
            .or(m.time.map(|s| s.saturating_mul(1_000_000_000)))
            .unwrap_or(0),
        container,
    })
}

fn has_stack_label(labels: Option<&HashMap<String, String>>) -> bool {
    labels.is_some_and(|l| l.contains_key(labels::STACK))
}

fn health_of(status: HealthStatusEnum) -> Option<Health> {
    match status {
        HealthStatusEnum::STARTING => Some(Health::Starting),
        HealthStatusEnum::HEALTHY => Some(Health::Healthy),
        HealthStatusEnum::UNHEALTHY => Some(Health::Unhealthy),
        HealthStatusEnum::EMPTY | HealthStatusEnum::NONE => None,
    }
}

fn ports_of(map: &bollard::models::PortMap) -> Vec<PortSpec> {
    let mut out = Vec::new();
    for (key, bindings) in map {
        let Some(container_port) = key.split('/').next().and_then(|p| p.parse().ok()) else {
            continue;
        };
        for b in bindings.iter().flatten() {
            if let Some(host_port) = b.host_port.as_deref().and_then(|p| p.parse().ok()) {
                out.push(PortSpec {
                    host_ip: b.host_ip.clone().filter(|ip| !ip.is_empty()),
                    host_port,
                    container_port,
                });
            }
        }
    }
    out.sort_by_key(|p| (p.container_port, p.host_port));
    out
}

/// Docker's form of a restart policy (`MaximumRetryCount` 0 is "no limit").
fn restart_policy(restart: Restart) -> RestartPolicy {
    let (name, max) = match restart {
        Restart::No => (RestartPolicyNameEnum::NO, None),
        Restart::OnFailure { max_retries } => (
            RestartPolicyNameEnum::ON_FAILURE,
            Some(i64::from(max_retries.unwrap_or(0))),
        ),
        Restart::Always => (RestartPolicyNameEnum::ALWAYS, None),
        Restart::UnlessStopped => (RestartPolicyNameEnum::UNLESS_STOPPED, None),
    };
    RestartPolicy {
        name: Some(name),
        maximum_retry_count: max,
    }
}

/// Docker counts health check durations in nanoseconds.
fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// The interval, retries and start interval an engine is given for `h`. Engines from API 1.44
/// (Docker 25) probe every `start_interval` while a container starts and every `interval` after.
/// Older ones have no start interval: they get the real `interval` and `retries` too, so the
/// running stack pays one exec per `interval` per container (not one per start interval, which
/// cost the idle dev stack about 0.7 of a core, BENCHMARKS.md `deployed`), and Docker's verdict
/// keeps its meaning. Docker then says `starting` until its first check an `interval` after the
/// start; the CLI probes the container itself meanwhile (`observe::ready`), so `up` and heals
/// still see it ready at once.
fn engine_health_timing(
    h: &HealthcheckSpec,
    start_interval: bool,
) -> (Duration, u32, Option<Duration>) {
    (
        h.interval,
        h.retries,
        start_interval.then_some(h.start_interval),
    )
}

/// The create request for `spec` (pure, so it is unit-tested without an engine).
fn container_body(spec: &ContainerSpec, start_interval: bool) -> ContainerCreateBody {
    let mut port_bindings: bollard::models::PortMap = HashMap::new();
    let mut exposed = Vec::new();
    for p in &spec.ports {
        let key = format!("{}/tcp", p.container_port);
        exposed.push(key.clone());
        port_bindings
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: p.host_ip.clone(),
                host_port: Some(p.host_port.to_string()),
            });
    }
    let mounts = spec
        .mounts
        .iter()
        .map(|m| match m {
            MountSpec::Volume {
                name,
                target,
                read_only,
            } => Mount {
                typ: Some(MountType::VOLUME),
                source: Some(name.clone()),
                target: Some(target.clone()),
                read_only: Some(*read_only),
                ..Default::default()
            },
            MountSpec::Bind {
                source,
                target,
                read_only,
            } => Mount {
                typ: Some(MountType::BIND),
                source: Some(source.clone()),
                target: Some(target.clone()),
                read_only: Some(*read_only),
                ..Default::default()
            },
        })
        .collect();
    let healthcheck = spec.healthcheck.as_ref().map(|h| {
        let (interval, retries, start) = engine_health_timing(h, start_interval);
        if h.command.is_empty() {
            return HealthConfig {
                test: Some(vec!["NONE".to_string()]),
                ..Default::default()
            };
        }
        HealthConfig {
            test: Some(
                std::iter::once("CMD".to_string())
                    .chain(h.command.iter().cloned())
                    .collect(),
            ),
            interval: Some(nanos(interval)),
            timeout: Some(nanos(h.timeout)),
            retries: Some(i64::from(retries)),
            start_period: Some(nanos(h.start_period)),
            start_interval: start.map(nanos),
        }
    });
    let endpoint = EndpointSettings {
        aliases: Some(spec.aliases.clone()),
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        hostname: Some(spec.name.clone()),
        cmd: (!spec.cmd.is_empty()).then(|| spec.cmd.clone()),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some({
            let mut l = labels::for_container(&spec.stack, &spec.service, spec.instance);
            l.insert(labels::RESTART.to_string(), spec.restart.to_string());
            l.extend(spec.labels.clone());
            l
        }),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        healthcheck,
        host_config: Some(HostConfig {
            network_mode: Some(spec.network.clone()),
            port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
            mounts: Some(mounts),
            memory: spec
                .memory_bytes
                .map(|m| i64::try_from(m).unwrap_or(i64::MAX)),
            nano_cpus: spec.cpus.map(|c| (c * 1e9) as i64),
            restart_policy: Some(restart_policy(spec.restart)),
            init: Some(false),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(spec.network.clone(), endpoint)])),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
