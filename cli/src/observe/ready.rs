//! Whether a container is ready, as every reader of container health sees it: `up`, `scale`,
//! fault heals, scenario steady-state checks, `platform status` and the dashboard all go through
//! [`Prober::health`] (or [`Prober::probe`] where the wait needs the probe's own error).
//!
//! Docker's health status alone is slow to turn healthy on engines without a health-check
//! `start_interval` (before Docker 25, API 1.44): they get the service's real `interval` (10 s in
//! the dev stack, so the running stack pays one exec per 10 s per container instead of one per
//! 500 ms), and Docker says `starting` until its first check a whole interval after the start. So
//! while Docker still says `starting`, the CLI checks the container itself from outside, over the
//! stack network, and a pass counts as healthy at once:
//!
//! - `probe` checks (our images' `<bin> --probe`): `GET /health/ready` on the service's port, the
//!   very request `--probe` sends from inside ([`PROBE_PATH`]).
//! - `exec` checks (MariaDB's `mariadb-admin ping`): a TCP connection to the service's port. There
//!   is no HTTP equivalent, and an open port is what dependants need: platform's MariaDB
//!   entrypoint provisions its databases and users on a server without networking and only then
//!   opens 3306, and the official MySQL and MongoDB entrypoints also initialise on a server that the
//!   stack network cannot reach.
//! - `http` and `tcp` checks run only here (Docker has none): they are the probe itself. So do
//!   `probe` and `exec` checks with `docker = false` (the dev stack's: an exec costs the engine
//!   about 0.1 s of CPU, and ten containers checked every 10 s kept the idle stack at ~9 % of a
//!   core; a GET from here costs next to nothing and runs only while someone looks). Readers of a
//!   container that Docker does not check get the probe's verdict as its health: `healthy` or
//!   `unhealthy`.
//!
//! The same goes for a container Docker calls `unhealthy` (a healed fault: Docker agrees only at
//! its next check, up to an `interval` later): a passing probe counts as healthy, so a heal is
//! seen at once. `up` and `scale` still give up at once on `unhealthy` ([`crate::commands::health`]).
//!
//! The target is in the container's [`labels::PROBE`] label (written by `up` from the stack
//! file), so readers that have only a container listing need no stack file.

use std::time::Duration;

use crate::runtime::{ContainerInfo, Health as DockerHealth, labels};
use crate::stack::{Check, Health};

/// The path `<bin> --probe` asks (services/kit/src/probe.rs).
pub const PROBE_PATH: &str = "/health/ready";

/// How long one probe may take: a starting container refuses at once, a ready one answers in
/// milliseconds.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the CLI checks from outside a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeTarget {
    /// `GET path` on the container's address and `port`, wanting a 2xx.
    Http { port: u16, path: String },
    /// A TCP connection to the container's address and `port`.
    Tcp { port: u16 },
}

impl ProbeTarget {
    /// The target for a service's check; `port` is the service's `port` (what `--probe` and an
    /// `exec` fallback use). `None` when the CLI has nothing to check.
    pub fn of(health: &Health, port: Option<u16>) -> Option<Self> {
        match &health.check {
            Check::Http { path, port } => Some(Self::Http {
                port: *port,
                path: path.clone(),
            }),
            Check::Tcp { port } => Some(Self::Tcp { port: *port }),
            Check::Probe => port.map(|port| Self::Http {
                port,
                path: PROBE_PATH.to_string(),
            }),
            Check::Exec { .. } => port.map(|port| Self::Tcp { port }),
        }
    }

    /// The [`labels::PROBE`] value: `http:<port><path>` or `tcp:<port>`.
    pub fn label(&self) -> String {
        match self {
            Self::Http { port, path } => format!("http:{port}{path}"),
            Self::Tcp { port } => format!("tcp:{port}"),
        }
    }

    /// Reads a [`ProbeTarget::label`] value back.
    pub fn parse(label: &str) -> Option<Self> {
        if let Some(rest) = label.strip_prefix("http:") {
            let (port, path) = rest.split_at(rest.find('/')?);
            return Some(Self::Http {
                port: port.parse().ok()?,
                path: path.to_string(),
            });
        }
        Some(Self::Tcp {
            port: label.strip_prefix("tcp:")?.parse().ok()?,
        })
    }

    /// What is checked, for progress lines.
    pub fn describe(&self) -> String {
        match self {
            Self::Http { port, path } => format!("GET :{port}{path}"),
            Self::Tcp { port } => format!("tcp :{port}"),
        }
    }
}

/// Docker's health with the CLI's probe folded in (pure): `starting` or `unhealthy` turns
/// `healthy` when the probe passed (Docker agrees at its next check). Where Docker runs no check
/// (`http`, `tcp`, `docker = false`) the probe is the whole verdict: `healthy` when it passed,
/// `unhealthy` when it failed (a container still starting says so too: it does not answer yet).
/// Anything else is Docker's word.
pub fn fold(
    docker: Option<DockerHealth>,
    probe: Option<&Result<(), String>>,
) -> Option<DockerHealth> {
    match (docker, probe) {
        (Some(DockerHealth::Starting | DockerHealth::Unhealthy) | None, Some(Ok(()))) => {
            Some(DockerHealth::Healthy)
        }
        (None, Some(Err(_))) => Some(DockerHealth::Unhealthy),
        (docker, _) => docker,
    }
}

/// Runs the CLI's probes (one pooled HTTP client).
#[derive(Debug, Clone)]
pub struct Prober {
    http: reqwest::Client,
    /// Whether container addresses can be reached from here (`false` on a published-ports route:
    /// then only Docker's status counts).
    reachable: bool,
}

impl Prober {
    /// A prober; `reachable` says whether container addresses on the stack network can be reached.
    pub fn new(reachable: bool) -> Self {
        Self {
            http: reqwest::Client::builder()
                .connect_timeout(PROBE_TIMEOUT)
                .timeout(PROBE_TIMEOUT)
                .build()
                .unwrap_or_default(),
            reachable,
        }
    }

    /// The CLI's probe of `info`, when one is due: the container runs, has an address on its
    /// stack's network and a [`labels::PROBE`] target, and Docker does not say healthy
    /// (`starting`, `unhealthy`, or no Docker check at all). `None` when not due.
    pub async fn probe(&self, info: &ContainerInfo) -> Option<Result<(), String>> {
        if !self.reachable || info.state != "running" || info.health == Some(DockerHealth::Healthy)
        {
            return None;
        }
        let target = ProbeTarget::parse(info.labels.get(labels::PROBE)?)?;
        let ip = info
            .addresses
            .get(&crate::stack::network_name(&info.stack))?;
        Some(match target {
            ProbeTarget::Http { port, path } => {
                let url = format!("http://{ip}:{port}{path}");
                match self.http.get(&url).send().await {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(format!("answered {}", r.status())),
                    Err(e) => Err(e.to_string()),
                }
            }
            ProbeTarget::Tcp { port } => {
                let connect = tokio::net::TcpStream::connect((ip.as_str(), port));
                match tokio::time::timeout(PROBE_TIMEOUT, connect).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
                }
            }
        })
    }

    /// The container's health as every reader sees it: Docker's, except that `starting` and
    /// `unhealthy` are `healthy` once the CLI's own probe passes, and that a container Docker
    /// does not check is as healthy as the CLI's probe says ([`fold`]). Probes only then.
    pub async fn health(&self, info: &ContainerInfo) -> Option<DockerHealth> {
        if info.health == Some(DockerHealth::Healthy) {
            return info.health;
        }
        fold(info.health, self.probe(info).await.as_ref())
    }

    /// [`Prober::health`] of every container, written into each (probes run concurrently).
    pub async fn settle(&self, containers: &mut [ContainerInfo]) {
        let healths = futures::future::join_all(containers.iter().map(|c| self.health(c))).await;
        for (c, h) in containers.iter_mut().zip(healths) {
            c.health = h;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(check: Check) -> Health {
        Health {
            check,
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            retries: 3,
            start_period: Duration::ZERO,
            start_interval: Duration::from_millis(500),
            docker: true,
        }
    }

    /// Each check's target, and the label round trip.
    #[test]
    fn targets() {
        let probe = ProbeTarget::of(&health(Check::Probe), Some(8080)).unwrap();
        assert_eq!(probe.label(), "http:8080/health/ready");
        let exec = health(Check::Exec {
            command: vec!["mariadb-admin".into(), "ping".into()],
        });
        assert_eq!(
            ProbeTarget::of(&exec, Some(3306)),
            Some(ProbeTarget::Tcp { port: 3306 })
        );
        // Without a service port there is nothing to ask.
        assert_eq!(ProbeTarget::of(&exec, None), None);
        assert_eq!(ProbeTarget::of(&health(Check::Probe), None), None);
        let http = ProbeTarget::of(
            &health(Check::Http {
                path: "/health".into(),
                port: 9411,
            }),
            Some(1),
        )
        .unwrap();
        assert_eq!(http.label(), "http:9411/health");
        let tcp = ProbeTarget::of(&health(Check::Tcp { port: 9092 }), None).unwrap();
        assert_eq!(tcp.describe(), "tcp :9092");
        for t in [probe, http, tcp, ProbeTarget::Tcp { port: 3306 }] {
            assert_eq!(ProbeTarget::parse(&t.label()), Some(t));
        }
        for bad in ["", "http:8080", "http:x/y", "tcp:", "tcp:99999", "udp:53"] {
            assert_eq!(ProbeTarget::parse(bad), None, "{bad}");
        }
    }

    /// `starting` and `unhealthy` give way to a passing probe; a failing one changes nothing.
    #[test]
    fn folding() {
        use DockerHealth::*;
        let ok = Ok(());
        let failed = Err("connection refused".to_string());
        assert_eq!(fold(Some(Starting), Some(&ok)), Some(Healthy));
        assert_eq!(fold(Some(Starting), Some(&failed)), Some(Starting));
        assert_eq!(fold(Some(Starting), None), Some(Starting));
        assert_eq!(fold(Some(Unhealthy), Some(&ok)), Some(Healthy));
        assert_eq!(fold(Some(Unhealthy), Some(&failed)), Some(Unhealthy));
        assert_eq!(fold(Some(Healthy), Some(&failed)), Some(Healthy));
        // No Docker check (`http`, `tcp`, `docker = false`): the CLI's probe is the verdict;
        // without a probe target there is no health status at all.
        assert_eq!(fold(None, Some(&ok)), Some(Healthy));
        assert_eq!(fold(None, Some(&failed)), Some(Unhealthy));
        assert_eq!(fold(None, None), None);
    }
}
