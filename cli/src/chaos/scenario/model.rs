//! A scenario after validation: what the runner executes. Every value here has been checked
//! ([`super::parse`]), so the runner never meets a bad duration, kind or probe.

use std::time::Duration;

use serde::Serialize;

use crate::chaos::load::{Kind as LoadKind, Mix};

/// One scenario file.
#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    /// The file as the user named it.
    pub file: String,
    /// The whole run (steps and the steady state after) is stopped and healed after this.
    #[serde(serialize_with = "crate::chaos::load::report::seconds")]
    pub timeout: Duration,
    /// Checked before anything is injected and again after every fault is healed.
    pub steady_state: SteadyState,
    pub steps: Vec<Step>,
}

/// The system's normal behaviour.
#[derive(Debug, Clone, Serialize)]
pub struct SteadyState {
    /// How long the check after heal may take to hold again.
    #[serde(serialize_with = "crate::chaos::load::report::seconds")]
    pub within: Duration,
    pub checks: Vec<Check>,
}

/// One step, in file order.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Start background load (the scenario's only one); returns at once.
    Load(LoadStep),
    /// Do nothing for a while.
    Wait {
        #[serde(serialize_with = "crate::chaos::load::report::seconds")]
        duration: Duration,
    },
    /// Inject a fault, written as `platform inject` takes it.
    Inject {
        /// The words after `platform inject`.
        words: Vec<String>,
    },
    /// Heal faults this scenario injected.
    Heal { which: HealWhich },
    /// Run N instances of a service (restored when the scenario ends).
    Scale { service: String, instances: u32 },
    /// Wait for a condition; the scenario stops (and heals) when it does not come.
    WaitUntil(Check),
    /// Record whether a condition holds (within its time), with the measured figure.
    Assert(Check),
}

impl Step {
    /// A short line for the timeline: `inject stop inventory-service --all`.
    pub fn describe(&self) -> String {
        match self {
            Step::Load(l) => format!(
                "load {} req/s for {} ({})",
                l.rate,
                humantime::format_duration(l.duration),
                l.mix
            ),
            Step::Wait { duration } => format!("wait {}", humantime::format_duration(*duration)),
            Step::Inject { words } => format!("inject {}", words.join(" ")),
            Step::Heal { which } => format!(
                "heal {}",
                match which {
                    HealWhich::All => "all",
                    HealWhich::Last => "last",
                }
            ),
            Step::Scale { service, instances } => format!("scale {service} {instances}"),
            Step::WaitUntil(c) => format!("wait until {}", c.describe()),
            Step::Assert(c) => format!("assert {}", c.describe()),
        }
    }
}

/// The scenario's load.
#[derive(Debug, Clone, Serialize)]
pub struct LoadStep {
    pub rate: f64,
    #[serde(serialize_with = "crate::chaos::load::report::seconds")]
    pub duration: Duration,
    pub mix: Mix,
    pub max_in_flight: usize,
    pub connections: usize,
}

/// Which faults a `heal` step reverts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealWhich {
    /// Every fault the scenario injected that is still active.
    All,
    /// The faults of the last `inject` step.
    Last,
}

/// From when a check measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Since {
    /// The check's own start.
    Step,
    /// The end of the last `inject` step (the fault effective).
    Inject,
    /// The end of the last `heal` step (or the end of the last fault, reverted by its duration).
    Heal,
    /// The start of the load.
    Load,
}

impl Since {
    pub fn name(self) -> &'static str {
        match self {
            Since::Step => "step",
            Since::Inject => "inject",
            Since::Heal => "heal",
            Since::Load => "load",
        }
    }
}

/// A comparison of a number.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    AtMost(f64),
    Below(f64),
    Above(f64),
}

impl Bound {
    pub fn holds(self, x: f64) -> bool {
        match self {
            Bound::AtMost(b) => x <= b,
            Bound::Below(b) => x < b,
            Bound::Above(b) => x > b,
        }
    }

    pub fn describe(self) -> String {
        match self {
            Bound::AtMost(b) => format!("<= {}", trim(b)),
            Bound::Below(b) => format!("< {}", trim(b)),
            Bound::Above(b) => format!("> {}", trim(b)),
        }
    }
}

fn trim(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x}")
    }
}

/// Which instances a breaker check looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Instances {
    /// Every running instance must be in the state.
    All,
    /// At least one instance must be.
    Any,
}

/// What a check reads from the live system.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "probe", rename_all = "snake_case")]
pub enum Probe {
    /// A circuit breaker's state on the instances of a service.
    Breaker {
        service: String,
        breaker: String,
        state: circuit_breaker::State,
        instances: Instances,
    },
    /// Order answers while inventory is out: 503 problem+json with the fallback detail, at
    /// least `min` of them; never a 500, another 5xx or no answer; no other 503 unless
    /// `unavailable_ok` (the gateway's "no instance" when the service itself is down too).
    Fallback {
        min: u64,
        kinds: Vec<LoadKind>,
        unavailable_ok: bool,
    },
    /// The load's failed requests in percent, over the window.
    ErrorRate {
        bound: Bound,
        kinds: Vec<LoadKind>,
        fallback_ok: bool,
    },
    /// The load's failed requests, counted, over the window.
    Failures {
        bound: Bound,
        kinds: Vec<LoadKind>,
        fallback_ok: bool,
    },
    /// The instances the last `inject` hit are out of the gateway's balancer for `service`
    /// (ejected or gone).
    LeavesBalancer { service: String },
    /// Total consumer lag of the notification group, from the broker.
    Lag { bound: Bound },
    /// Every order the load got accepted has exactly one notification.
    NotifiedOnce,
    /// A new login (password grant) through the gateway answers this status, as problem+json
    /// when it is an error.
    Login { status: u16 },
    /// `platform smoke` passes.
    Smoke,
    /// Every container of the stack runs and is healthy.
    Healthy,
    /// The load has ended.
    LoadDone,
    /// Every fault the scenario injected is over (healed, or reverted at its end).
    FaultsOver,
}

/// A condition on the live system, with how long it may take to hold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub probe: Probe,
    /// How long to poll for it (zero: look once).
    #[serde(serialize_with = "crate::chaos::load::report::seconds")]
    pub within: Duration,
    /// Where `within` and load windows start.
    pub since: Since,
    /// The name in reports (given, or made from the probe).
    pub title: String,
}

impl Check {
    /// What the check expects, in words.
    pub fn describe(&self) -> String {
        self.title.clone()
    }

    /// A title made from the probe.
    pub fn default_title(probe: &Probe, within: Duration, since: Since) -> String {
        let kinds = |k: &[LoadKind]| {
            if k.is_empty() {
                "all requests".to_string()
            } else {
                k.iter().map(|k| k.name()).collect::<Vec<_>>().join("+")
            }
        };
        let what = match probe {
            Probe::Breaker {
                service,
                breaker,
                state,
                instances,
            } => format!(
                "breaker {breaker} of {} {service} is {state}",
                match instances {
                    Instances::All => "every",
                    Instances::Any => "some",
                }
            ),
            Probe::Fallback {
                min,
                kinds: k,
                unavailable_ok,
            } => format!(
                "{} answers are the 503 fallback (at least {min}){}, never 500",
                kinds(k),
                if *unavailable_ok {
                    " or another 503"
                } else {
                    ""
                }
            ),
            Probe::ErrorRate {
                bound, kinds: k, ..
            } => format!("error rate of {} {}%", kinds(k), bound.describe()),
            Probe::Failures {
                bound, kinds: k, ..
            } => format!("failed {} {}", kinds(k), bound.describe()),
            Probe::LeavesBalancer { service } => {
                format!("the faulted {service} instance leaves the gateway's balancer")
            }
            Probe::Lag { bound } => format!("consumer lag {}", bound.describe()),
            Probe::NotifiedOnce => "every accepted order has exactly one notification".into(),
            Probe::Login { status } => format!("a new login through the gateway answers {status}"),
            Probe::Smoke => "smoke passes".into(),
            Probe::Healthy => "every container running and healthy".into(),
            Probe::LoadDone => "the load is done".into(),
            Probe::FaultsOver => "every fault of the scenario is over".into(),
        };
        let mut t = what;
        if !within.is_zero() {
            t.push_str(&format!(" within {}", humantime::format_duration(within)));
        }
        if since != Since::Step {
            t.push_str(&format!(" (since {})", since.name()));
        }
        t
    }

    /// Whether the probe reads the scenario's load (and so needs a `load` step before it).
    pub fn needs_load(&self) -> bool {
        matches!(
            self.probe,
            Probe::Fallback { .. }
                | Probe::ErrorRate { .. }
                | Probe::Failures { .. }
                | Probe::NotifiedOnce
                | Probe::LoadDone
        )
    }
}
