//! The scenario's side of faults: its `inject` and `heal` steps call the fault library
//! (`crate::chaos::faults`, the same code `platform inject`/`heal`/`faults` run; never a
//! `platform` child process) and keep what it returns, so cleanup can heal exactly the faults
//! this scenario made and `leaves_balancer` knows which instances were hit.
//!
//! Every fault is injected with an end: the step's `--duration` when it gives one, else the
//! time left in the scenario, so the fault supervisor reverts it even if this process dies.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::chaos::faults::{self, Ctx, FaultSpec, Heal};
use crate::observe::Observer;
use crate::stack::Stack;

/// One fault on one container, as the fault library recorded it.
#[derive(Debug, Clone, Serialize)]
pub struct Injected {
    pub id: String,
    pub kind: String,
    pub service: String,
    pub instance: u32,
    pub container: String,
    /// The container's address on the stack network before the fault (a killed container
    /// loses it; the balancer still lists it by URL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    pub ends: DateTime<Utc>,
}

/// Validates an `inject` step's words as `platform inject` does (kind, options, duration,
/// selection), and its target against `stack`.
pub fn check_words(stack: &Stack, words: &[String]) -> Result<(), String> {
    let spec = FaultSpec::from_words(words).map_err(|e| e.to_string())?;
    faults::resolve_target(stack, &spec.target).map_err(|e| e.to_string())?;
    Ok(())
}

/// The words with `--duration` set to `left` when they give none.
pub fn with_duration(words: &[String], left: Duration) -> Vec<String> {
    let mut out = words.to_vec();
    if !words
        .iter()
        .any(|w| w == "--duration" || w.starts_with("--duration="))
    {
        out.push("--duration".into());
        out.push(format!("{}s", left.as_secs().max(1)));
    }
    out
}

/// Injects the fault the words describe; returns once it is effective.
pub async fn inject(
    obs: &Observer,
    words: &[String],
    left: Duration,
) -> Result<Vec<Injected>, String> {
    let spec = FaultSpec::from_words(&with_duration(words, left)).map_err(|e| e.to_string())?;
    let ctx = Ctx::from_observer(obs);
    let network = obs.stack().network_name();
    let records = faults::inject(&ctx, &spec).await.map_err(|e| match e {
        faults::FaultError::Unsupported { .. } => format!("{UNSUPPORTED}{e}"),
        e => with_hint(&e),
    })?;
    Ok(records
        .into_iter()
        .map(|r| Injected {
            address: obs
                .containers()
                .iter()
                .find(|c| c.name == r.container)
                .and_then(|c| c.addresses.get(&network).cloned()),
            id: r.id,
            kind: r.kind.to_string(),
            service: r.service,
            instance: r.instance,
            container: r.container,
            ends: r.ends,
        })
        .collect())
}

/// Starts the error of a fault this machine cannot inject (no netem in the kernel, no root):
/// the scenario is then skipped with that reason, not failed.
pub const UNSUPPORTED: &str = "cannot run here: ";

fn with_hint(e: &faults::FaultError) -> String {
    match e.hint() {
        Some(h) => format!("{e} ({h})"),
        None => e.to_string(),
    }
}

/// Heals the faults with these ids and verifies the revert; returns one line per fault. A
/// fault that ended meanwhile (reverted at its duration) is skipped; a revert that fails is an
/// error naming it.
pub async fn heal(obs: &Observer, ids: &[String]) -> Result<Vec<String>, String> {
    let ctx = Ctx::from_observer(obs);
    let mut lines = Vec::new();
    let mut failed = Vec::new();
    for id in ids {
        match faults::heal(&ctx, Heal::Id(id.clone())).await {
            Ok(reports) => {
                for r in reports {
                    let line = format!(
                        "{} {} on {}: {} ({:.1}s)",
                        r.id, r.kind, r.container, r.detail, r.seconds
                    );
                    if r.healed {
                        lines.push(line);
                    } else {
                        failed.push(line);
                    }
                }
            }
            Err(faults::FaultError::UnknownFault { .. }) => {}
            Err(e) => failed.push(format!("{id}: {}", with_hint(&e))),
        }
    }
    if failed.is_empty() {
        Ok(lines)
    } else {
        Err(format!("not healed: {}", failed.join("; ")))
    }
}

/// The ids among `ids` that are still active.
pub async fn active(obs: &Observer, ids: &[String]) -> Result<Vec<String>, String> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let ctx = Ctx::from_observer(obs);
    let records = faults::list(&ctx).await.map_err(|e| with_hint(&e))?;
    let mut active: Vec<String> = records
        .into_iter()
        .map(|r| r.id)
        .filter(|id| ids.contains(id))
        .collect();
    active.sort();
    active.dedup();
    Ok(active)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A step without `--duration` gets the time left in the scenario; one with it keeps it.
    #[test]
    fn durations() {
        let w: Vec<String> = ["stop", "inventory-service"].map(String::from).to_vec();
        assert_eq!(
            with_duration(&w, Duration::from_secs(90)),
            ["stop", "inventory-service", "--duration", "90s"]
        );
        let w: Vec<String> = ["stop", "x", "--duration=30s"].map(String::from).to_vec();
        assert_eq!(with_duration(&w, Duration::from_secs(90)), w);
    }
}
