//! Running one scenario: the steady state before (nothing is injected unless it holds), the
//! steps in order with the live timeline, then cleanup that always runs — stop the load, heal
//! every fault this scenario injected and still active, restore scaled services — and the
//! steady state again. Ctrl-C and the scenario's timeout cancel the steps (a step in the middle
//! of a Docker call finishes it first), never the cleanup.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::fault_steps::{self, Injected};
use super::model::{Check, HealWhich, Probe, Scenario, Since, Step};
use super::probe::{LoadCheck, Probes, Reading, kinds_filter, load_check, load_reading};
use super::report::{CheckResult, Event, Phase, ScenarioReport, StepOutcome, StepResult};
use crate::chaos::load::{self, Fixture, FixtureOptions, LoadConfig, LoadHandle};
use crate::observe::Observer;

/// How often a check looks again while it waits.
const POLL: Duration = Duration::from_millis(200);
/// Longest cleanup of one scale restore.
const SCALE_TIMEOUT: Duration = Duration::from_secs(150);

/// Why the run stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Interrupted,
    TimedOut,
}

/// The runner's state for one scenario.
struct Runner<'a> {
    scenario: &'a Scenario,
    probes: Probes,
    started: Instant,
    cancel: CancellationToken,
    load: Option<LoadHandle>,
    load_started: Option<Instant>,
    last_inject: Option<Instant>,
    last_heal: Option<Instant>,
    /// Every fault injected, in order.
    injected: Vec<Injected>,
    /// The faults of the last `inject` step.
    last_injected: Vec<Injected>,
    /// Services scaled, with how many instances ran before the first scale.
    scaled: BTreeMap<String, u32>,
    checks: Vec<CheckResult>,
    steps: Vec<StepResult>,
    timeline: Vec<Event>,
    /// Why the scenario cannot run on this machine (a fault kind it does not support).
    skipped: Option<String>,
    on_event: &'a (dyn Fn(&Event) + Sync),
}

/// Runs `scenario` on the stack `obs` looks at; `on_event` sees each timeline line as it
/// happens; `stop` is cancelled by Ctrl-C (and tells which).
pub async fn run(
    scenario: &Scenario,
    obs: Observer,
    gateway: url::Url,
    interrupt: CancellationToken,
    on_event: &(dyn Fn(&Event) + Sync),
) -> ScenarioReport {
    let started = Instant::now();
    let cancel = interrupt.child_token();
    let timer = {
        let cancel = cancel.clone();
        let timeout = scenario.timeout;
        tokio::spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(timeout) => { cancel.cancel(); true }
                () = cancel.cancelled() => false,
            }
        })
    };
    let mut r = Runner {
        scenario,
        probes: Probes::new(obs, gateway),
        started,
        cancel: cancel.clone(),
        load: None,
        load_started: None,
        last_inject: None,
        last_heal: None,
        injected: Vec::new(),
        last_injected: Vec::new(),
        scaled: BTreeMap::new(),
        checks: Vec::new(),
        steps: Vec::new(),
        timeline: Vec::new(),
        skipped: None,
        on_event,
    };
    r.event(format!(
        "scenario {} ({}): {}",
        scenario.name, scenario.file, scenario.description
    ));
    if let Err(e) = r.probes.warm_up().await {
        r.event(format!("warning: {e}"));
    }
    let steady_before = r.steady(Phase::Before).await;
    if steady_before {
        for (i, step) in scenario.steps.iter().enumerate() {
            if r.cancel.is_cancelled() {
                r.skip(i, step, "the run was stopped");
                continue;
            }
            if !r.step(i, step).await {
                for (j, later) in scenario.steps.iter().enumerate().skip(i + 1) {
                    r.skip(j, later, "an earlier step failed");
                }
                break;
            }
        }
    } else {
        r.event("the steady state does not hold: nothing is injected".to_string());
        for (i, step) in scenario.steps.iter().enumerate() {
            r.skip(i, step, "the steady state did not hold before");
        }
    }
    let interrupted = interrupt.is_cancelled();
    let timed_out = !interrupted && cancel.is_cancelled();
    timer.abort();
    if interrupted {
        r.event(
            "interrupted: healing every fault of the scenario (Ctrl-C again is ignored until done)"
                .to_string(),
        );
    } else if timed_out {
        r.event(format!(
            "the scenario's timeout ({}) is reached: stopping and healing",
            humantime::format_duration(scenario.timeout)
        ));
    }
    let cleanup = r.cleanup().await;
    let load = match r.load.take() {
        Some(h) => Some(h.finish(true).await),
        None => None,
    };
    if steady_before && !interrupted {
        // The steady state again, with a fresh cancellation (the timeout may have fired).
        r.cancel = interrupt.child_token();
        r.steady(Phase::After).await;
    }
    let passed = r.skipped.is_none()
        && !interrupted
        && !timed_out
        && r.checks.iter().all(|c| c.passed)
        && r.steps.iter().all(|s| s.outcome == StepOutcome::Done);
    ScenarioReport {
        name: scenario.name.clone(),
        file: scenario.file.clone(),
        description: scenario.description.clone(),
        passed,
        interrupted,
        timed_out,
        skipped: r.skipped,
        seconds: started.elapsed().as_secs_f64(),
        checks: r.checks,
        steps: r.steps,
        cleanup,
        timeline: r.timeline,
        load,
    }
}

impl Runner<'_> {
    fn at(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    fn event(&mut self, text: String) {
        let e = Event {
            at_s: self.at(),
            text,
        };
        (self.on_event)(&e);
        self.timeline.push(e);
    }

    fn skip(&mut self, index: usize, step: &Step, why: &str) {
        self.steps.push(StepResult {
            index,
            step: step.describe(),
            outcome: StepOutcome::Skipped,
            detail: why.to_string(),
            seconds: 0.0,
        });
    }

    /// The steady state's checks; true when all hold (within the steady state's time).
    async fn steady(&mut self, phase: Phase) -> bool {
        let within = self.scenario.steady_state.within;
        let checks = self.scenario.steady_state.checks.clone();
        let mut all = true;
        for check in &checks {
            let mut c = check.clone();
            c.within = within.max(check.within);
            let result = self.check(&c, phase, None).await;
            all &= result;
        }
        all
    }

    /// Runs one step; false when it failed (the remaining steps are skipped).
    async fn step(&mut self, index: usize, step: &Step) -> bool {
        let t0 = Instant::now();
        let describe = step.describe();
        self.event(format!("step {} {}", index + 1, describe));
        let result: Result<String, String> = match step {
            Step::Load(l) => self.start_load(l).await,
            Step::Wait { duration } => {
                tokio::select! {
                    () = tokio::time::sleep(*duration) => Ok(String::new()),
                    () = self.cancel.cancelled() => Err("stopped".into()),
                }
            }
            Step::Inject { words } => self.inject(words).await,
            Step::Heal { which } => self.heal(*which).await,
            Step::Scale { service, instances } => self.scale(service, *instances).await,
            Step::WaitUntil(c) => {
                if self.check(c, Phase::Step, None).await {
                    Ok(String::new())
                } else {
                    Err(format!("`{}` did not come", c.title))
                }
            }
            Step::Assert(c) => {
                self.check(c, Phase::Step, Some(index)).await;
                // An assertion's failure is recorded, not a reason to stop.
                Ok(String::new())
            }
        };
        let seconds = t0.elapsed().as_secs_f64();
        match result {
            Ok(detail) => {
                if !detail.is_empty() {
                    self.event(format!("  {detail}"));
                }
                self.steps.push(StepResult {
                    index,
                    step: describe,
                    outcome: StepOutcome::Done,
                    detail,
                    seconds,
                });
                true
            }
            Err(detail) if detail.starts_with(fault_steps::UNSUPPORTED) => {
                self.event(format!("  step {} SKIPPED: {detail}", index + 1));
                self.skipped = Some(detail.clone());
                self.steps.push(StepResult {
                    index,
                    step: describe,
                    outcome: StepOutcome::Skipped,
                    detail,
                    seconds,
                });
                false
            }
            Err(detail) if self.cancel.is_cancelled() => {
                self.event(format!("  step {} stopped: {detail}", index + 1));
                self.steps.push(StepResult {
                    index,
                    step: describe,
                    outcome: StepOutcome::Skipped,
                    detail: format!("stopped (Ctrl-C or the scenario's timeout): {detail}"),
                    seconds,
                });
                false
            }
            Err(detail) => {
                self.event(format!("  step {} FAILED: {detail}", index + 1));
                self.steps.push(StepResult {
                    index,
                    step: describe,
                    outcome: StepOutcome::Failed,
                    detail,
                    seconds,
                });
                false
            }
        }
    }

    async fn start_load(&mut self, l: &super::model::LoadStep) -> Result<String, String> {
        let mut config = LoadConfig::new(l.rate, l.duration, l.mix.clone());
        config.max_in_flight = l.max_in_flight;
        config.connections = l.connections;
        config.record_orders = true;
        let opts = FixtureOptions {
            gateway: Some(self.probes.gateway.clone()),
            ..FixtureOptions::default()
        };
        let fixture = Fixture::prepare(&self.probes.obs, &config, &opts)
            .await
            .map_err(|e| e.to_string())?;
        let products = fixture.products.len();
        let handle = load::start(config, fixture).map_err(|e| e.to_string())?;
        self.load_started = Some(handle.started());
        self.load = Some(handle);
        Ok(format!("load started ({products} products with stock)"))
    }

    async fn inject(&mut self, words: &[String]) -> Result<String, String> {
        let left = self
            .scenario
            .timeout
            .saturating_sub(self.started.elapsed())
            .max(Duration::from_secs(1));
        let _ = self.probes.refresh().await;
        let faults = fault_steps::inject(&self.probes.obs, words, left).await?;
        self.last_inject = Some(Instant::now());
        let text = faults
            .iter()
            .map(|f| {
                format!(
                    "{} on {} (until {})",
                    f.id,
                    f.container,
                    f.ends.format("%H:%M:%S")
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        self.injected.extend(faults.iter().cloned());
        self.last_injected = faults;
        Ok(format!("fault effective: {text}"))
    }

    async fn heal(&mut self, which: HealWhich) -> Result<String, String> {
        let ids = self.ids(match which {
            HealWhich::All => &self.injected,
            HealWhich::Last => &self.last_injected,
        });
        let active = fault_steps::active(&self.probes.obs, &ids).await?;
        let lines = fault_steps::heal(&self.probes.obs, &active).await?;
        self.last_heal = Some(Instant::now());
        Ok(if lines.is_empty() {
            "nothing left to heal".to_string()
        } else {
            format!("healed: {}", lines.join("; "))
        })
    }

    fn ids(&self, faults: &[Injected]) -> Vec<String> {
        let mut ids: Vec<String> = faults.iter().map(|f| f.id.clone()).collect();
        ids.dedup();
        ids
    }

    async fn scale(&mut self, service: &str, n: u32) -> Result<String, String> {
        self.probes.refresh().await?;
        let svc = self
            .probes
            .obs
            .stack()
            .service(service)
            .map_err(|e| e.to_string())?
            .clone();
        let before = self.probes.obs.running(service).len() as u32;
        self.scaled
            .entry(service.to_string())
            .or_insert(before.max(1));
        let view = crate::commands::scale::scale(&self.probes.obs, &svc, n, SCALE_TIMEOUT, false)
            .await
            .map_err(|e| e.to_string())?;
        Ok(format!(
            "{service}: {} → {} instances in {:.1}s",
            view.before, view.instances, view.seconds
        ))
    }

    /// Where a check's windows and `within` start.
    fn anchor(&self, since: Since, start: Instant) -> Instant {
        match since {
            Since::Step => start,
            Since::Inject => self.last_inject.unwrap_or(start),
            Since::Heal => self.last_heal.or(self.last_inject).unwrap_or(start),
            Since::Load => self.load_started.unwrap_or(start),
        }
    }

    /// Polls a check until it holds or its time is up; records it (unless it is a wait).
    async fn check(&mut self, c: &Check, phase: Phase, step: Option<usize>) -> bool {
        let start = Instant::now();
        let anchor = self.anchor(c.since, start);
        let deadline = anchor + c.within;
        let mut reading;
        loop {
            reading = self.read(c, anchor).await;
            if reading.holds || Instant::now() >= deadline || self.cancel.is_cancelled() {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                () = self.cancel.cancelled() => {}
            }
        }
        let seconds = anchor.elapsed().as_secs_f64();
        let recorded = phase != Phase::Step || step.is_some();
        let mark = if reading.holds { "ok  " } else { "FAIL" };
        let label = match phase {
            Phase::Before => "steady before",
            Phase::After => "steady after",
            Phase::Step if step.is_some() => "assert",
            Phase::Step => "waited",
        };
        self.event(format!(
            "  {mark} {label}: {} — {} ({seconds:.2}s{})",
            c.title,
            reading.measured,
            if c.since == Since::Step {
                String::new()
            } else {
                format!(" after {}", c.since.name())
            }
        ));
        if recorded {
            self.checks.push(CheckResult {
                phase,
                step,
                title: c.title.clone(),
                passed: reading.holds,
                measured: reading.measured.clone(),
                seconds,
                at_s: self.at(),
            });
        }
        reading.holds
    }

    /// One look for a check.
    async fn read(&mut self, c: &Check, anchor: Instant) -> Reading {
        let since_ms = epoch_ms_of(anchor);
        let now = Instant::now();
        match &c.probe {
            Probe::Breaker {
                service,
                breaker,
                state,
                instances,
            } => {
                self.probes
                    .breaker(service, breaker, *state, *instances, since_ms)
                    .await
            }
            Probe::Fallback { .. } | Probe::ErrorRate { .. } | Probe::Failures { .. } => {
                match load_check(&c.probe) {
                    Some((kinds, check)) => self.load_counts(anchor, now, kinds, check),
                    None => Reading::failed("not a load check"),
                }
            }
            Probe::LeavesBalancer { service } => {
                let faulted = self.last_injected.clone();
                self.probes.leaves_balancer(service, &faulted).await
            }
            Probe::Lag { bound } => self.probes.lag(*bound).await,
            Probe::NotifiedOnce => match self.load.as_ref() {
                Some(h) => {
                    // The borrow checker wants the handle and the probes apart.
                    let probes = &mut self.probes;
                    probes.notified_once(h).await
                }
                None => Reading::failed("no load"),
            },
            Probe::Login { status } => self.probes.login(*status).await,
            Probe::Smoke => {
                let left = (anchor + c.within).saturating_duration_since(Instant::now());
                self.probes.smoke(left).await
            }
            Probe::Healthy => self.probes.healthy().await,
            Probe::LoadDone => match &self.load {
                Some(h) => {
                    let p = h.progress();
                    Reading {
                        holds: p.done,
                        measured: format!(
                            "{} of {} sent, {} in flight",
                            p.sent, p.planned, p.in_flight
                        ),
                    }
                }
                None => Reading::failed("no load"),
            },
            Probe::FaultsOver => {
                let ids = self.ids(&self.injected);
                match fault_steps::active(&self.probes.obs, &ids).await {
                    Ok(active) if active.is_empty() => {
                        self.last_heal.get_or_insert_with(Instant::now);
                        Reading {
                            holds: true,
                            measured: format!("{} faults over", ids.len()),
                        }
                    }
                    Ok(active) => Reading::failed(format!("still active: {}", active.join(", "))),
                    Err(e) => Reading::failed(e),
                }
            }
        }
    }

    fn load_counts(
        &self,
        from: Instant,
        to: Instant,
        kinds: &[load::Kind],
        what: LoadCheck,
    ) -> Reading {
        match &self.load {
            Some(h) => load_reading(&h.counts_between(from, to, kinds_filter(kinds)), what),
            None => Reading::failed("no load"),
        }
    }

    /// Always runs: stop the load, heal this scenario's faults, restore scaled services.
    async fn cleanup(&mut self) -> Vec<String> {
        let mut done = Vec::new();
        if let Some(h) = &self.load
            && !h.is_done()
        {
            h.stop();
            done.push("load stopped".to_string());
        }
        let ids = self.ids(&self.injected);
        if !ids.is_empty() {
            let _ = self.probes.refresh().await;
            match fault_steps::active(&self.probes.obs, &ids).await {
                Ok(active) if active.is_empty() => {}
                Ok(active) => match fault_steps::heal(&self.probes.obs, &active).await {
                    Ok(lines) => {
                        for l in lines {
                            done.push(format!("healed {l}"));
                        }
                    }
                    Err(e) => done.push(format!("HEAL FAILED: {e}")),
                },
                Err(e) => match fault_steps::heal(&self.probes.obs, &ids).await {
                    Ok(lines) => done.extend(lines.into_iter().map(|l| format!("healed {l}"))),
                    Err(e2) => done.push(format!("HEAL FAILED: {e}; {e2}")),
                },
            }
        }
        let scaled = std::mem::take(&mut self.scaled);
        for (service, n) in scaled {
            let _ = self.probes.refresh().await;
            let svc = match self.probes.obs.stack().service(&service) {
                Ok(s) => s.clone(),
                Err(e) => {
                    done.push(format!("cannot restore {service}: {e}"));
                    continue;
                }
            };
            match crate::commands::scale::scale(&self.probes.obs, &svc, n, SCALE_TIMEOUT, false)
                .await
            {
                Ok(v) => done.push(format!("{service} back to {} instances", v.instances)),
                Err(e) => done.push(format!("cannot restore {service} to {n} instances: {e}")),
            }
        }
        for d in &done {
            let line = format!("cleanup: {d}");
            self.event(line);
        }
        done
    }
}

/// Milliseconds since the epoch of an `Instant` (for comparing with breaker transitions).
fn epoch_ms_of(at: Instant) -> u64 {
    let ago = Instant::now().saturating_duration_since(at);
    let now = chrono::Utc::now().timestamp_millis().max(0) as u64;
    now.saturating_sub(ago.as_millis() as u64)
}
