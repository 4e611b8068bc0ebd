//! Waiting for a container to be ready: Docker's own health status for probes that run inside
//! the container (`probe`, `exec`), the CLI's HTTP or TCP probe against the container's address
//! on the stack network for the others, and "running" for services without a probe. While
//! Docker still says `starting`, the CLI's probe of the same target ([`crate::observe::ready`])
//! counts too, so readiness is seen at once even where Docker checks only every `interval`. A
//! container that exits or turns unhealthy fails at once instead of running out the clock.

use std::fmt;
use std::time::Duration;

use crate::observe::ready::{ProbeTarget, Prober};
use crate::runtime::{Health as DockerHealth, Runtime, RuntimeError};
use crate::stack::{Check, Health};

/// How far a container got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Not ready yet.
    Starting,
    /// Running; the service has no probe.
    Running,
    /// Its probe passes.
    Healthy,
}

impl fmt::Display for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Readiness::Starting => "starting",
            Readiness::Running => "running",
            Readiness::Healthy => "healthy",
        })
    }
}

/// Why a container did not become ready.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("{container} exited (code {code})")]
    Exited { container: String, code: i64 },
    #[error("{container} is unhealthy: its probe kept failing")]
    Unhealthy { container: String },
    #[error("{container} was not ready after {after:?} (last: {last})")]
    Timeout {
        container: String,
        after: Duration,
        last: String,
    },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// One look at a container, as input to [`assess`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// Docker's state (`running`, `exited`, ...).
    pub state: String,
    pub exit_code: Option<i64>,
    /// Docker's health status, for checks Docker runs.
    pub docker_health: Option<DockerHealth>,
    /// The outcome of the CLI's own HTTP/TCP probe, when it ran one.
    pub probe: Option<Result<(), String>>,
    /// What that probe checks (the container's [`crate::runtime::labels::PROBE`] label), for the
    /// progress text.
    pub target: Option<ProbeTarget>,
}

/// What to do after an observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Ready(Readiness),
    /// Keep waiting; the text says what we wait for.
    Wait(String),
    /// Give up now.
    Fail(FailReason),
}

/// Why waiting is pointless.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailReason {
    Exited(i64),
    Unhealthy,
}

/// Decides from one observation (pure, so every case is unit-tested).
pub fn assess(health: Option<&Health>, o: &Observation) -> Step {
    match o.state.as_str() {
        "exited" | "dead" => return Step::Fail(FailReason::Exited(o.exit_code.unwrap_or(-1))),
        // Docker is restarting it under its restart policy: it already exited while starting,
        // and waiting would only watch it crash again until the timeout.
        "restarting" => return Step::Fail(FailReason::Exited(o.exit_code.unwrap_or(-1))),
        "running" => {}
        other => return Step::Wait(format!("container {other}")),
    }
    let Some(health) = health else {
        return Step::Ready(Readiness::Running);
    };
    let what = match &health.check {
        Check::Probe | Check::Exec { .. } if health.run_by_docker() => match o.docker_health {
            Some(DockerHealth::Healthy) => return Step::Ready(Readiness::Healthy),
            Some(DockerHealth::Unhealthy) => return Step::Fail(FailReason::Unhealthy),
            // Docker has not checked yet (or not passed yet): the CLI's probe may say ready.
            Some(DockerHealth::Starting) | None => "health check starting".to_string(),
        },
        // Checked by the CLI: the target the probe used (`probe` and `exec` checks from outside
        // take the service's port, which only the container's label has here).
        _ => o
            .target
            .clone()
            .or_else(|| ProbeTarget::of(health, None))
            .map_or_else(
                || "its probe (the container has no probe label)".to_string(),
                |t| t.describe(),
            ),
    };
    match &o.probe {
        Some(Ok(())) => Step::Ready(Readiness::Healthy),
        Some(Err(e)) => Step::Wait(format!("{what}: {e}")),
        None => Step::Wait(what),
    }
}

/// Polls `container` until [`assess`] says ready, fails, or `timeout` passes. `on_status`
/// receives what is being waited for, for the progress line.
pub async fn wait_ready(
    rt: &Runtime,
    container: &str,
    health: Option<&Health>,
    timeout: Duration,
    on_status: impl Fn(&str),
) -> Result<Readiness, HealthError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let poll = health
        .map(|h| {
            h.start_interval
                .min(h.interval)
                .min(Duration::from_millis(250))
        })
        .unwrap_or(Duration::from_millis(100))
        .max(Duration::from_millis(50));
    // `up` reaches containers by their address, as the stack's CLI-run checks always did.
    let prober = Prober::new(true);
    loop {
        let info = rt.inspect_container(container).await?;
        let probe = match health {
            Some(_) => prober.probe(&info).await,
            None => None,
        };
        let observation = Observation {
            state: info.state.clone(),
            exit_code: info.exit_code,
            docker_health: info.health,
            probe,
            target: info
                .labels
                .get(crate::runtime::labels::PROBE)
                .and_then(|l| ProbeTarget::parse(l)),
        };
        match assess(health, &observation) {
            Step::Ready(r) => return Ok(r),
            Step::Fail(FailReason::Exited(code)) => {
                return Err(HealthError::Exited {
                    container: container.to_string(),
                    code,
                });
            }
            Step::Fail(FailReason::Unhealthy) => {
                return Err(HealthError::Unhealthy {
                    container: container.to_string(),
                });
            }
            Step::Wait(what) => {
                on_status(&what);
                if tokio::time::Instant::now() >= deadline {
                    return Err(HealthError::Timeout {
                        container: container.to_string(),
                        after: timeout,
                        last: what,
                    });
                }
            }
        }
        tokio::time::sleep(poll).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(check: Check) -> Health {
        Health {
            check,
            interval: Duration::from_millis(500),
            timeout: Duration::from_secs(2),
            retries: 10,
            start_period: Duration::ZERO,
            start_interval: Duration::from_millis(500),
            docker: true,
        }
    }

    fn obs(state: &str) -> Observation {
        Observation {
            state: state.into(),
            exit_code: None,
            docker_health: None,
            probe: None,
            target: None,
        }
    }

    /// Without a probe, running is ready; created is not yet; exited fails with its code.
    #[test]
    fn no_probe() {
        assert_eq!(
            assess(None, &obs("running")),
            Step::Ready(Readiness::Running)
        );
        assert!(matches!(assess(None, &obs("created")), Step::Wait(_)));
        let mut o = obs("exited");
        o.exit_code = Some(3);
        assert_eq!(assess(None, &o), Step::Fail(FailReason::Exited(3)));
        // Crashed and being restarted by its restart policy: fails at once too.
        let mut o = obs("restarting");
        o.exit_code = Some(2);
        assert_eq!(
            assess(Some(&health(Check::Probe)), &o),
            Step::Fail(FailReason::Exited(2))
        );
    }

    /// Docker-run checks follow Docker's health status; unhealthy fails at once.
    #[test]
    fn docker_checks() {
        let h = health(Check::Probe);
        let mut o = obs("running");
        assert!(matches!(assess(Some(&h), &o), Step::Wait(_)));
        o.docker_health = Some(DockerHealth::Starting);
        assert!(matches!(assess(Some(&h), &o), Step::Wait(_)));
        o.docker_health = Some(DockerHealth::Healthy);
        assert_eq!(assess(Some(&h), &o), Step::Ready(Readiness::Healthy));
        o.docker_health = Some(DockerHealth::Unhealthy);
        assert_eq!(assess(Some(&h), &o), Step::Fail(FailReason::Unhealthy));
    }

    /// While Docker still says starting, the CLI's own probe of the same target decides; it
    /// never overrides Docker's unhealthy.
    #[test]
    fn docker_checks_with_cli_probe() {
        for h in [
            health(Check::Probe),
            health(Check::Exec {
                command: vec!["ping".into()],
            }),
        ] {
            let mut o = obs("running");
            o.docker_health = Some(DockerHealth::Starting);
            o.probe = Some(Err("connection refused".into()));
            match assess(Some(&h), &o) {
                Step::Wait(w) => assert!(w.contains("starting") && w.contains("refused"), "{w}"),
                other => panic!("{other:?}"),
            }
            o.probe = Some(Ok(()));
            assert_eq!(assess(Some(&h), &o), Step::Ready(Readiness::Healthy));
            o.docker_health = Some(DockerHealth::Unhealthy);
            assert_eq!(assess(Some(&h), &o), Step::Fail(FailReason::Unhealthy));
            // Not running: no probe result makes it ready.
            let mut created = obs("created");
            created.probe = Some(Ok(()));
            assert!(matches!(assess(Some(&h), &created), Step::Wait(_)));
        }
    }

    /// CLI-run probes are ready when the probe passed, and say why they wait otherwise.
    #[test]
    fn cli_probes() {
        let h = health(Check::Http {
            path: "/health".into(),
            port: 9411,
        });
        let mut o = obs("running");
        o.probe = Some(Err("connection refused".into()));
        match assess(Some(&h), &o) {
            Step::Wait(w) => assert!(w.contains(":9411/health") && w.contains("refused"), "{w}"),
            other => panic!("{other:?}"),
        }
        o.probe = Some(Ok(()));
        assert_eq!(assess(Some(&h), &o), Step::Ready(Readiness::Healthy));
        let t = health(Check::Tcp { port: 9092 });
        assert_eq!(assess(Some(&t), &o), Step::Ready(Readiness::Healthy));
        // A dead container fails even if a stale probe result says otherwise.
        let mut dead = obs("dead");
        dead.probe = Some(Ok(()));
        assert!(matches!(assess(Some(&t), &dead), Step::Fail(_)));
        // `docker = false`: `probe` and `exec` checks are the CLI's, whatever Docker says (it
        // has no check, so it says nothing).
        for check in [
            Check::Probe,
            Check::Exec {
                command: vec!["ping".into()],
            },
        ] {
            let h = Health {
                docker: false,
                ..health(check)
            };
            let mut o = obs("running");
            o.probe = Some(Err("connection refused".into()));
            match assess(Some(&h), &o) {
                Step::Wait(w) => assert!(w.contains("refused"), "{w}"),
                other => panic!("{other:?}"),
            }
            o.probe = None;
            assert!(matches!(assess(Some(&h), &o), Step::Wait(_)));
            // The progress text names the target from the container's label.
            o.target = ProbeTarget::of(&h, Some(3306));
            let want = match h.check {
                Check::Probe => "GET :3306/health/ready",
                _ => "tcp :3306",
            };
            assert_eq!(assess(Some(&h), &o), Step::Wait(want.to_string()));
            o.probe = Some(Ok(()));
            assert_eq!(assess(Some(&h), &o), Step::Ready(Readiness::Healthy));
        }
    }
}
