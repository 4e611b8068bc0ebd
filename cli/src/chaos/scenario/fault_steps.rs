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

/// Validates an `inject` step's words as `platform inject` would, against `stack`.
pub fn check_words(stack: &Stack, words: &[String]) -> Result<(), String> {
    let _ = stack;
    if words.len() < 2 {
        return Err(format!(
            "`{}`: an inject step needs KIND TARGET [options], as `platform inject` takes it",
            words.join(" ")
        ));
    }
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
    let _ = (obs, with_duration(words, left));
    Err(NOT_MERGED.to_string())
}

/// Heals the faults with these ids (those still active) and verifies the revert; returns one
/// line per fault.
pub async fn heal(obs: &Observer, ids: &[String]) -> Result<Vec<String>, String> {
    let _ = obs;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Err(NOT_MERGED.to_string())
}

/// The ids among `ids` that are still active.
pub async fn active(obs: &Observer, ids: &[String]) -> Result<Vec<String>, String> {
    let _ = obs;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Err(NOT_MERGED.to_string())
}

const NOT_MERGED: &str = "the fault library (branch `faults`) is not merged into this build yet";

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
