//! Container-layer faults through the Docker API (what Pumba's `kill`, `stop`, `pause` and
//! `restart` do, plus a partition): each `apply` returns once the engine shows the fault in
//! effect, each `revert` is idempotent (it checks the state before acting), because the
//! supervisor and `platform heal` may both reach the same record.

use std::time::Duration;

use super::record::{FaultRecord, Revert};
use super::spec::Kind;
use super::{EFFECT_TIMEOUT, FaultError, Result, wait_until};
use crate::runtime::{ContainerInfo, Runtime};

/// Signals after which the container is expected to exit (others, such as HUP, only have to
/// be delivered).
const FATAL: [&str; 6] = ["KILL", "TERM", "INT", "QUIT", "ABRT", "USR2"];

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
            let signal = rec.options.signal.clone().unwrap_or_else(|| "KILL".into());
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
            let grace = Duration::from_millis(rec.options.grace_ms.unwrap_or(10_000));
            rt.stop_container(&name, grace).await?;
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

/// Undoes a container-layer fault (kill-app's crash too); returns what was checked.
pub async fn revert(rt: &Runtime, rec: &FaultRecord, info: &ContainerInfo) -> Result<String> {
    match rec.kind {
        Kind::Kill | Kind::Stop | Kind::KillApp => {
            if info.state == "paused" {
                rt.unpause_container(&rec.container).await?;
            } else if info.state != "running" {
                rt.start_container(&rec.container).await?;
            }
            Ok("started".into())
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
