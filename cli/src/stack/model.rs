//! The validated stack: what `up`, `build` and `show` work from. Every value here has passed
//! [`super::validate`], so users of the model need no further checks (references resolve,
//! there are no cycles, ports do not clash).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::env::Template;

/// A stack: a named set of services started together on one Docker network.
#[derive(Debug, Clone, Serialize)]
pub struct Stack {
    /// `[stack] name`; prefixes the network, volumes and containers.
    pub name: String,
    /// `[stack] description`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The file it was read from.
    pub file: PathBuf,
    /// Services by name.
    pub services: BTreeMap<String, Service>,
}

/// One service of a stack: one or more identical containers.
#[derive(Debug, Clone, Serialize)]
pub struct Service {
    /// The service name; also its DNS alias on the stack network.
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Where the image comes from.
    pub source: ImageSource,
    /// Arguments passed to the image's entrypoint (Docker's `Cmd`); empty keeps the image's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// How many containers run this service.
    pub instances: u32,
    /// The port the service listens on inside its container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Ports published on the host.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PublishedPort>,
    /// Environment, with `${...}` references still unresolved (they differ per instance).
    pub env: BTreeMap<String, Template>,
    /// Services that must be up first, and how far up.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub depends_on: BTreeMap<String, Condition>,
    /// How to tell the service is ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    /// Named volumes and bind mounts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Mount>,
    /// Memory and CPU limits.
    pub resources: Resources,
    /// What Docker does when the container's process exits.
    pub restart: Restart,
}

/// A service's restart policy, compose's `restart` and Docker's `RestartPolicy`:
/// `no`, `on-failure[:MAX_RETRIES]`, `always` or `unless-stopped`. Docker waits
/// before each restart, doubling from 100 ms up to a minute, and resets the wait
/// once a container has run for 10 s. A `docker stop` (the `stop` fault, `down`)
/// is never undone by any policy; a kill fault suspends the policy while it lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Never restart.
    No,
    /// Restart when the process exits non-zero (crash, OOM kill, SIGKILL), at most
    /// `max_retries` times in a row when given. The default, as in Kubernetes.
    OnFailure { max_retries: Option<u32> },
    /// Restart whatever the exit status (not after `docker stop`).
    Always,
    /// As `always`, and also not after the engine restarts if it was stopped.
    UnlessStopped,
}

impl Default for Restart {
    fn default() -> Restart {
        Restart::DEFAULT
    }
}

impl Restart {
    /// The default policy: restart on failure, without a retry limit.
    pub const DEFAULT: Restart = Restart::OnFailure { max_retries: None };

    /// Parses compose's syntax: `no`, `on-failure`, `on-failure:5`, `always`, `unless-stopped`.
    pub fn parse(text: &str) -> Result<Restart, String> {
        let bad = || {
            format!(
                "`{text}` is not a restart policy: use `no`, `on-failure`, `on-failure:N` (at most N restarts in a row, N 1-1000), `always` or `unless-stopped`"
            )
        };
        match text.trim() {
            "no" => Ok(Restart::No),
            "always" => Ok(Restart::Always),
            "unless-stopped" => Ok(Restart::UnlessStopped),
            "on-failure" => Ok(Restart::OnFailure { max_retries: None }),
            other => {
                let n = other.strip_prefix("on-failure:").ok_or_else(bad)?;
                match n.trim().parse::<u32>() {
                    Ok(n) if (1..=1000).contains(&n) => Ok(Restart::OnFailure {
                        max_retries: Some(n),
                    }),
                    _ => Err(bad()),
                }
            }
        }
    }
}

impl std::fmt::Display for Restart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Restart::No => f.write_str("no"),
            Restart::OnFailure { max_retries: None } => f.write_str("on-failure"),
            Restart::OnFailure {
                max_retries: Some(n),
            } => write!(f, "on-failure:{n}"),
            Restart::Always => f.write_str("always"),
            Restart::UnlessStopped => f.write_str("unless-stopped"),
        }
    }
}

/// Written as in the stack file (`"on-failure:5"`), so `stack show --json` reads like it.
impl Serialize for Restart {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Where a service's image comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageSource {
    /// A prebuilt image by reference (the `full` stack's official images).
    Image(String),
    /// Built on this machine, never pulled.
    Build(Recipe),
}

/// A local image recipe.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case", tag = "recipe")]
pub enum Recipe {
    /// One of this workspace's binaries (`cargo build --release`), in a FROM-scratch image.
    Binary {
        /// Binary (and package) name, e.g. `order-service`.
        name: String,
    },
    /// A Kafka-API broker binary that install.sh puts in `.tools/bin` (`nisshi`, or `tansu`
    /// for comparisons), in a FROM-scratch image.
    Broker {
        /// `nisshi` or `tansu` (see [`BROKERS`]).
        name: String,
    },
    /// MariaDB on a Debian root made with debootstrap.
    Mariadb,
}

impl Recipe {
    /// The short name used in image names and on the command line.
    pub fn image_name(&self) -> &str {
        match self {
            Recipe::Binary { name } => name,
            Recipe::Broker { name } => name,
            Recipe::Mariadb => "mariadb",
        }
    }
}

/// The brokers a `recipe` can name: install.sh installs them into `.tools/bin`.
pub const BROKERS: [&str; 2] = ["nisshi", "tansu"];

/// A host port mapped to a container port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublishedPort {
    /// Host address to bind; `None` binds all addresses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
    pub host_port: u16,
    pub container_port: u16,
}

/// How far a dependency must be before a dependant starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// Its containers are running.
    Started,
    /// Its health probe passes.
    Healthy,
}

/// A readiness probe and its timing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Health {
    pub check: Check,
    #[serde(with = "humantime_serde_compat")]
    pub interval: Duration,
    #[serde(with = "humantime_serde_compat")]
    pub timeout: Duration,
    pub retries: u32,
    #[serde(with = "humantime_serde_compat")]
    pub start_period: Duration,
    /// How often the probe runs while the container is starting (Docker's `start_interval`:
    /// within `start_period`, until the first success); `interval` when not given.
    #[serde(with = "humantime_serde_compat")]
    pub start_interval: Duration,
    /// Whether Docker runs the check inside the container (`probe` and `exec`; the default). With
    /// `docker = false` Docker runs nothing and `platform` checks the container from outside over
    /// the stack network, as kubelet's HTTP probes do: `GET /health/ready` for `probe`, a TCP
    /// connection to the service's port for `exec`. Always `false` for `http` and `tcp`, which
    /// Docker cannot run.
    pub docker: bool,
}

impl Health {
    /// Whether the check runs inside the container, by Docker (an exec at every check).
    pub fn run_by_docker(&self) -> bool {
        self.docker && matches!(self.check, Check::Probe | Check::Exec { .. })
    }
}

/// What a probe does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// Docker runs `<binary> --probe` inside the container (our services; no shell needed).
    Probe,
    /// The CLI sends `GET path` to the container and wants a 2xx.
    Http { path: String, port: u16 },
    /// The CLI opens a TCP connection to the container's port.
    Tcp { port: u16 },
    /// Docker runs this command inside the container (official images that ship a client).
    Exec { command: Vec<String> },
}

/// A volume or bind mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Mount {
    /// A Docker volume owned by the stack; survives `down` unless `--volumes`.
    Volume {
        name: String,
        target: String,
        read_only: bool,
    },
    /// A host path (relative paths resolve against the stack file's directory).
    Bind {
        source: PathBuf,
        target: String,
        read_only: bool,
    },
}

/// Container limits; `None` leaves Docker's default (unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Resources {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
}

/// The Docker network every container of the stack named `stack` joins.
pub fn network_name(stack: &str) -> String {
    format!("platform-{stack}")
}

impl Stack {
    /// The Docker network every container of the stack joins.
    pub fn network_name(&self) -> String {
        network_name(&self.name)
    }

    /// The Docker name of a stack volume.
    pub fn volume_name(&self, volume: &str) -> String {
        format!("platform-{}-{volume}", self.name)
    }

    /// The container name of instance `index` (1-based) of `service`; also its host name on the
    /// stack network, which is what `${self.host}` expands to.
    pub fn container_name(&self, service: &str, index: u32) -> String {
        format!("platform-{}-{service}-{index}", self.name)
    }

    /// Service names in file order is not kept by TOML tables; this is alphabetical.
    pub fn service_names(&self) -> Vec<&str> {
        self.services.keys().map(String::as_str).collect()
    }
}

/// Durations as humantime text ("2s", "1m 30s") in JSON, so golden files stay readable.
mod humantime_serde_compat {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}
