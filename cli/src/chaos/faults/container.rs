//! Container-layer faults through the Docker API (what Pumba's `kill`, `stop`, `pause` and
//! `restart` do, plus a partition): each `apply` returns once the engine shows the fault in
//! effect, each `revert` is idempotent (it checks the state before acting), because the
//! supervisor and `platform heal` may both reach the same record.
//!
//! Restart policies: a container killed by a fatal signal exits non-zero, which Docker's
//! `on-failure` (the stacks' default), `always` and `unless-stopped` policies all undo within a
//! fraction of a second. A kill fault is a stop on purpose, so it suspends the container's
//! policy (`docker update --restart no`) before the signal and its revert puts back the
//! stack's policy (kept in the container's `platform.restart` label) before starting it again.
//! `docker stop` needs nothing: Docker never restarts a container it was told to stop. A pause
//! stops no process. `kill-app` is a crash, not a stop: the policy restarting it is the point.

use std::time::Duration;

use super::record::{FaultRecord, Revert};
use super::spec::Kind;
use super::{EFFECT_TIMEOUT, FaultError, Result, wait_until};
use crate::runtime::{ContainerInfo, Restart, Runtime};

/// Signals after which the container is expected to exit (others, such as HUP, only have to
/// be delivered).
const FATAL: [&str; 6] = ["KILL", "TERM", "INT", "QUIT", "ABRT", "USR2"];

/// The signal a kill fault sends (`KILL` unless the options say otherwise).
fn kill_signal(rec: &FaultRecord) -> String {
    rec.options.signal.clone().unwrap_or_else(|| "KILL".into())
}

/// How long a `stop` fault's `docker stop` waits between SIGTERM and SIGKILL when the fault
/// names no `--grace` (Docker's own default; the `stop` kind's description says 10s).
const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);

/// The grace period a stop fault gives the container (`--grace`, else [`DEFAULT_STOP_GRACE`]).
fn stop_grace(rec: &FaultRecord) -> Duration {
    rec.options
        .grace_ms
        .map_or(DEFAULT_STOP_GRACE, Duration::from_millis)
}

/// Whether a fault must suspend the container's restart policy while it lasts: only a kill by
/// a signal that ends the process (see the module docs).
pub fn suspends_restart(kind: Kind, signal: &str) -> bool {
    kind == Kind::Kill && FATAL.contains(&signal)
}

/// Applies a container-layer fault to `rec.container`.
pub async fn apply(rt: &Runtime, rec: &mut FaultRecord) -> Result<()> {
    let name = rec.container.clone();
    let state = |want: &'static [&'static str]| {
        let name = name.clone();
        async move {
            let info = rt.inspect_container(&name).await?;
            Ok(want.contains(&info.state.as_str()))
        }
    };
    let not_effective = |why: String| FaultError::NotEffective {
        id: rec.id.clone(),
        kind: rec.kind,
        container: name.clone(),
        why,
    };
    match rec.kind {
        Kind::Kill => {
            let signal = kill_signal(rec);
            if suspends_restart(rec.kind, &signal) {
                rt.set_restart_policy(&name, Restart::No).await?;
            }
            rt.kill_container(&name, &format!("SIG{signal}")).await?;
            if FATAL.contains(&signal.as_str())
                && !wait_until(EFFECT_TIMEOUT, || state(&["exited", "dead"])).await?
            {
                return Err(not_effective(format!(
                    "still running {}s after SIG{signal}",
                    EFFECT_TIMEOUT.as_secs()
                )));
            }
        }
        Kind::Stop => {
            rt.stop_container(&name, stop_grace(rec)).await?;
            if !wait_until(EFFECT_TIMEOUT, || state(&["exited", "dead"])).await? {
                return Err(not_effective("still running after docker stop".into()));
            }
        }
        Kind::Pause => {
            rt.pause_container(&name).await?;
            if !wait_until(EFFECT_TIMEOUT, || state(&["paused"])).await? {
                return Err(not_effective("not paused after docker pause".into()));
            }
        }
        Kind::Restart => {
            let before = rt.container_facts(&name).await?.started_at;
            rt.restart_container(&name).await?;
            let restarted = wait_until(EFFECT_TIMEOUT, || async {
                let facts = rt.container_facts(&name).await?;
                Ok(facts.running && facts.started_at != before)
            })
            .await?;
            if !restarted {
                return Err(not_effective(
                    "not running again after docker restart".into(),
                ));
            }
        }
        Kind::Disconnect => {
            let Revert::Container { network, .. } = &rec.revert else {
                return Err(not_effective("record has no network".into()));
            };
            let network = network.clone();
            let facts = rt.container_facts(&name).await?;
            let aliases = facts.aliases.get(&network).cloned().unwrap_or_default();
            rec.revert = Revert::Container {
                network: network.clone(),
                aliases: aliases
                    .into_iter()
                    // Docker adds the short container id as an alias by itself on connect.
                    .filter(|a| !facts.id.starts_with(a.as_str()))
                    .collect(),
            };
            rt.disconnect_network(&name, &network).await?;
            let cut = wait_until(EFFECT_TIMEOUT, || async {
                let info = rt.inspect_container(&name).await?;
                Ok(!info.addresses.contains_key(&network))
            })
            .await?;
            if !cut {
                return Err(not_effective(format!("still attached to {network}")));
            }
        }
        other => {
            return Err(not_effective(format!(
                "{other} is not a container-layer fault"
            )));
        }
    }
    Ok(())
}

/// Beyond a stop's grace period, how long the engine may take to report the container exited.
const STOP_SETTLE: Duration = Duration::from_secs(3);

/// How long after `rec` was injected a stop or kill it sent may still be under way in the
/// engine: a `docker stop` waits for the grace period before SIGKILL, and the engine carries it
/// out even when the client that asked is gone (an injecting CLI killed right after writing the
/// record). Zero once that time has passed.
fn in_flight_for(rec: &FaultRecord) -> Duration {
    let window = match rec.kind {
        Kind::Stop => stop_grace(rec) + STOP_SETTLE,
        Kind::Kill if FATAL.contains(&kill_signal(rec).as_str()) => STOP_SETTLE,
        _ => return Duration::ZERO,
    };
    let since = (chrono::Utc::now() - rec.started)
        .to_std()
        .unwrap_or(Duration::ZERO);
    window.saturating_sub(since)
}

/// Undoes a container-layer fault (kill-app's crash too); returns what was checked.
pub async fn revert(rt: &Runtime, rec: &FaultRecord, info: &ContainerInfo) -> Result<String> {
    match rec.kind {
        Kind::Kill | Kind::Stop | Kind::KillApp => {
            // Running, but a stop or kill of this fault may still be on its way (its injector
            // died before seeing the effect): wait for it to land, then start the container
            // again, or the heal would report success on a container about to exit.
            let mut info = info.clone();
            let wait = in_flight_for(rec);
            if info.state == "running" && !wait.is_zero() {
                let name = rec.container.clone();
                let exited = wait_until(wait, || {
                    let name = name.clone();
                    async move {
                        let now = rt.inspect_container(&name).await?;
                        Ok(now.state != "running")
                    }
                })
                .await?;
                if exited {
                    info = rt.inspect_container(&rec.container).await?;
                }
            }
            // The stack's policy first, so the process started next is covered from the start.
            let restored = if suspends_restart(rec.kind, &kill_signal(rec)) {
                let policy = rt.restore_restart_policy(&rec.container).await?;
                format!(", restart policy {policy} restored")
            } else {
                String::new()
            };
            if info.state == "paused" {
                rt.unpause_container(&rec.container).await?;
            } else if info.state != "running" {
                rt.start_container(&rec.container).await?;
            }
            Ok(format!("started{restored}"))
        }
        Kind::Pause => {
            if info.state == "paused" {
                rt.unpause_container(&rec.container).await?;
            }
            Ok("unpaused".into())
        }
        Kind::Restart => Ok("restarted".into()),
        Kind::Disconnect => {
            let Revert::Container { network, aliases } = &rec.revert else {
                return Ok("nothing recorded to reconnect".into());
            };
            if !info.addresses.contains_key(network) {
                rt.connect_network(&rec.container, network, aliases).await?;
            }
            let back = wait_until(EFFECT_TIMEOUT, || async {
                let info = rt.inspect_container(&rec.container).await?;
                Ok(info.addresses.contains_key(network))
            })
            .await?;
            if !back {
                return Err(FaultError::State {
                    message: format!("{} is not back on {network}", rec.container),
                });
            }
            Ok(format!("reconnected to {network}"))
        }
        other => Err(FaultError::State {
            message: format!("{other} is not a container-layer fault"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::tests::record;
    use super::*;

    /// A stop may still land until its grace period (plus the engine's settling time) has
    /// passed since the fault started, a fatal kill for the settling time; a pause, a HUP or an
    /// old fault never make the revert wait.
    #[test]
    fn how_long_a_stop_or_kill_may_still_be_under_way() {
        let at = |kind: Kind, grace_ms: Option<u64>, signal: Option<&str>, ago_s: i64| {
            let mut r = record(
                "f-1",
                chrono::Utc::now() - chrono::Duration::seconds(ago_s),
                60,
            );
            r.kind = kind;
            r.options.grace_ms = grace_ms;
            r.options.signal = signal.map(String::from);
            in_flight_for(&r)
        };
        let stop = at(Kind::Stop, None, None, 0);
        assert!(
            stop > Duration::from_secs(12) && stop <= Duration::from_secs(13),
            "{stop:?}"
        );
        let short = at(Kind::Stop, Some(1000), None, 0);
        assert!(
            short > Duration::from_secs(3) && short <= Duration::from_secs(4),
            "{short:?}"
        );
        assert_eq!(at(Kind::Stop, None, None, 20), Duration::ZERO);
        assert!(at(Kind::Kill, None, None, 0) > Duration::from_secs(2));
        assert_eq!(at(Kind::Kill, None, Some("HUP"), 0), Duration::ZERO);
        assert_eq!(at(Kind::Pause, None, None, 0), Duration::ZERO);
    }

    /// Only kills by a fatal signal suspend the restart policy; stop, pause, restart and
    /// kill-app leave it alone.
    #[test]
    fn which_faults_suspend_the_restart_policy() {
        for signal in FATAL {
            assert!(suspends_restart(Kind::Kill, signal), "SIG{signal}");
        }
        assert!(
            !suspends_restart(Kind::Kill, "HUP"),
            "HUP does not end the process"
        );
        for kind in [
            Kind::Stop,
            Kind::Pause,
            Kind::Restart,
            Kind::KillApp,
            Kind::Disconnect,
        ] {
            assert!(!suspends_restart(kind, "KILL"), "{kind}");
        }
    }
}
