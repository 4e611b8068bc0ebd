//! Carries out what the dashboard asks for, through the same libraries the commands use —
//! never by running `platform`: scaling through [`crate::commands::scale`] (the runtime),
//! faults through [`crate::chaos::faults`] (words validated by `FaultSpec::from_words`, as
//! `platform inject` validates its arguments), traces through the collector's API, logs
//! through the runtime. Each request runs as its own task and answers with
//! [`Update::ActionDone`]; long ones (scaling waits for health and registration) never block
//! the screen.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use dashboard::model::logs::LogTarget;
use dashboard::model::timeline::{Event, EventKind, Severity};
use dashboard::{Action, Request, Update};
use futures::FutureExt as _;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::convert;
use super::feed::Ctx;
use crate::chaos::faults::{self, FaultSpec, Heal};
use crate::chaos::load::fixture::check_target;
use crate::chaos::load::{self, Fixture, FixtureOptions, LoadConfig, LoadHandle, Mix};
use crate::chaos::scenario::{self, report};
use crate::commands::scale::{self, ScaleError};
use crate::observe::logs;
use crate::observe::traces::Collector;
use crate::runtime::LogOptions;

/// How long a scale from the dashboard waits for new instances (as `platform scale`).
const SCALE_TIMEOUT: Duration = Duration::from_secs(120);
/// Lines of each container's past output shown when following starts.
const LOG_TAIL: u64 = 200;
/// How long lines are held to merge instances in time order.
const LOG_DELAY: Duration = Duration::from_millis(250);

/// How often a running load's progress line is refreshed.
const LOAD_PROGRESS: Duration = Duration::from_secs(1);

/// One kind of task of which at most one runs at a time (a load, a scenario). The running task
/// holds the slot ([`Held`]) until it has ended, sent its last update, or panicked.
#[derive(Debug, Default, Clone)]
pub(crate) struct Slot(Arc<AtomicBool>);

/// A taken [`Slot`]; dropping it frees the slot, also when the task holding it panics.
#[derive(Debug)]
pub(crate) struct Held(Arc<AtomicBool>);

impl Slot {
    /// The slot, unless a task holds it.
    pub(crate) fn take(&self) -> Option<Held> {
        (!self.0.swap(true, Ordering::AcqRel)).then(|| Held(self.0.clone()))
    }

    /// Whether a task holds it.
    pub(crate) fn busy(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The dashboard's load: at most one, stopped by `:load stop` but held until its task has
/// finished (its summary and the blanked progress line sent), so a new `:load` cannot start
/// while the old one still winds down and blank the new one's line.
#[derive(Debug, Default)]
pub(crate) struct LoadSlot {
    slot: Slot,
    stop: Option<CancellationToken>,
}

impl LoadSlot {
    /// A new load's stop token (a child of `parent`) and its hold on the slot.
    pub(crate) fn start(
        &mut self,
        parent: &CancellationToken,
    ) -> Result<(CancellationToken, Held), String> {
        let Some(held) = self.slot.take() else {
            return Err(if self.stop.as_ref().is_some_and(|t| t.is_cancelled()) {
                "the last load is still stopping; try again in a moment".into()
            } else {
                "a load is already running (`:load stop` stops it)".into()
            });
        };
        let stop = parent.child_token();
        self.stop = Some(stop.clone());
        Ok((stop, held))
    }

    /// `:load stop`.
    pub(crate) fn stop(&mut self) -> Result<String, String> {
        match &self.stop {
            Some(t) if self.slot.busy() && !t.is_cancelled() => {
                t.cancel();
                Ok("stopping the load".into())
            }
            Some(_) if self.slot.busy() => Err("the load is already stopping".into()),
            _ => Err("no load started here is running".into()),
        }
    }
}

/// Takes requests until the channel closes (the dashboard left). The load and scenario tasks
/// go to `tasks`, which the dashboard awaits (bounded) after cancelling on exit, so a
/// scenario's cleanup (the heal of what it injected) and a load's stop finish first.
pub async fn run(ctx: Ctx, mut requests: mpsc::UnboundedReceiver<Request>, tasks: TaskTracker) {
    let mut logs_task: Option<JoinHandle<()>> = None;
    let mut load = LoadSlot::default();
    let scenario_slot = Slot::default();
    while let Some(request) = requests.recv().await {
        let id = request.id;
        match request.action {
            Action::Load {
                rate,
                duration,
                mix,
            } => match load.start(&ctx.cancel) {
                Ok((stop, held)) => {
                    tasks.spawn(run_load(ctx.clone(), id, rate, duration, mix, stop, held));
                }
                Err(e) => ctx.send(done(id, Err(e))),
            },
            Action::StopLoad => ctx.send(done(id, load.stop())),
            Action::Scenario { file, .. } => {
                let Some(held) = scenario_slot.take() else {
                    ctx.send(done(id, Err("a scenario is already running".into())));
                    continue;
                };
                let ctx = ctx.clone();
                tasks.spawn(async move {
                    // Freed however the task ends (a panic of the runner included).
                    let _held = held;
                    let result = std::panic::AssertUnwindSafe(run_scenario(&ctx, &file))
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|_| Err("the scenario runner panicked".into()));
                    ctx.send(Update::Scenario(None));
                    ctx.send(done(id, result));
                });
            }
            Action::FollowLogs { target } => {
                if let Some(t) = logs_task.take() {
                    t.abort();
                }
                if let Some(target) = target {
                    let label = target.label();
                    logs_task = Some(tokio::spawn(follow_logs(ctx.clone(), target)));
                    ctx.send(done(id, Ok(format!("following {label}"))));
                }
            }
            action => {
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    let result = carry_out(&ctx, action).await;
                    // Containers may have changed: look again now rather than in 2 s.
                    ctx.wake.notify_one();
                    ctx.send(done(id, result));
                });
            }
        }
    }
    if let Some(t) = logs_task {
        t.abort();
    }
}

fn done(id: u64, result: Result<String, String>) -> Update {
    Update::ActionDone { id, result }
}

/// One action; `Ok` says what was done, `Err` why not (as the CLI would print it).
async fn carry_out(ctx: &Ctx, action: Action) -> Result<String, String> {
    let mut obs = ctx
        .observer()
        .await
        .ok_or_else(|| "the dashboard is leaving".to_string())?;
    match action {
        Action::Scale { service, instances } => {
            // The freshest container list: scale decides from it what to start and stop.
            obs.refresh().await.map_err(|e| e.to_string())?;
            let stack = obs.stack();
            let svc = stack.service(&service).map_err(|e| e.to_string())?.clone();
            if let Some(reason) = scale::not_scalable(stack, &svc) {
                return Err(ScaleError::NotScalable {
                    service,
                    reason,
                    scalable: Vec::new(),
                }
                .to_string());
            }
            if instances > scale::MAX_INSTANCES {
                return Err(format!(
                    "at most {} instances per service",
                    scale::MAX_INSTANCES
                ));
            }
            let view = scale::scale(&obs, &svc, instances, SCALE_TIMEOUT, false)
                .await
                .map_err(|e| e.to_string())?;
            Ok(scale::summary(&view))
        }
        Action::Inject { words } => {
            let spec = FaultSpec::from_words(&words).map_err(|e| e.to_string())?;
            let records = faults::inject(&faults::Ctx::from_observer(&obs), &spec)
                .await
                .map_err(|e| e.to_string())?;
            let on: Vec<String> = records
                .iter()
                .map(|r| format!("{} on {}-{}", r.id, r.service, r.instance))
                .collect();
            Ok(format!("injected {}", on.join(", ")))
        }
        Action::Heal { id } => {
            let which = id.map_or(Heal::All, Heal::Id);
            let reports = faults::heal(&faults::Ctx::from_observer(&obs), which)
                .await
                .map_err(|e| e.to_string())?;
            if reports.is_empty() {
                return Ok("no active fault".into());
            }
            let failed: Vec<String> = reports
                .iter()
                .filter(|r| !r.healed)
                .map(|r| format!("{} on {}: {}", r.id, r.container, r.detail))
                .collect();
            if failed.is_empty() {
                Ok(format!("healed {} ({})", reports.len(), reports[0].detail))
            } else {
                Err(format!("not healed: {}", failed.join("; ")))
            }
        }
        Action::OpenTrace { id } => {
            let result = match Collector::of(&obs) {
                Ok(c) => c
                    .trace(&obs, &id)
                    .await
                    .map(|spans| spans.and_then(|s| convert::trace(&s)))
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let outcome = match &result {
                Ok(Some(t)) => Ok(format!("{} spans", t.spans.len())),
                Ok(None) => Err("the collector has no such trace".to_string()),
                Err(e) => Err(e.clone()),
            };
            ctx.send(Update::Trace { id, result });
            outcome
        }
        // Handled by `run`, which keeps their state.
        Action::Scenario { .. } | Action::Load { .. } | Action::StopLoad => Ok(String::new()),
        Action::FollowLogs { .. } => Ok(String::new()),
    }
}

/// `platform load` from the dashboard: the same engine and fixture, its progress line in the
/// status bar every second, its summary in the timeline at the end.
async fn run_load(
    ctx: Ctx,
    id: u64,
    rate: String,
    duration: String,
    mix: Option<String>,
    stop: CancellationToken,
    // Released when this task ends: after its last update.
    _held: Held,
) {
    let handle = match start_load(&ctx, &rate, &duration, mix.as_deref()).await {
        Ok(h) => h,
        Err(e) => {
            stop.cancel();
            ctx.send(done(id, Err(e)));
            return;
        }
    };
    let c = handle.config();
    ctx.send(done(
        id,
        Ok(format!(
            "sending {} req/s for {} ({})",
            c.rate,
            humantime::format_duration(c.duration),
            c.mix
        )),
    ));
    let mut tick = tokio::time::interval(LOAD_PROGRESS);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let stopped = loop {
        tokio::select! {
            () = stop.cancelled() => break true,
            () = handle.done() => break false,
            _ = tick.tick() => ctx.send(Update::Load(Some(handle.progress().line()))),
        }
    };
    let report = handle.finish(stopped).await;
    stop.cancel();
    let failed = report
        .counts
        .total
        .saturating_sub(report.counts.ok + report.counts.client_errors);
    ctx.send(Update::Event(Event {
        at: Utc::now(),
        kind: EventKind::Load,
        severity: if failed == 0 {
            Severity::Good
        } else {
            Severity::Warning
        },
        text: format!(
            "load{}: {} sent, {} ok, {} fallback, {} failed, p50 {:.1} ms, p99 {:.1} ms",
            if stopped { " (stopped)" } else { "" },
            report.sent,
            report.counts.ok,
            report.counts.fallback,
            failed,
            report.latency_ms.p50,
            report.latency_ms.p99
        ),
    }));
    ctx.send(Update::Load(None));
}

/// Validates the words as `platform load` does and starts the engine.
async fn start_load(
    ctx: &Ctx,
    rate: &str,
    duration: &str,
    mix: Option<&str>,
) -> Result<LoadHandle, String> {
    let rate = load::parse_rate(rate)?;
    let duration = humantime::parse_duration(duration).map_err(|e| format!("`{duration}`: {e}"))?;
    let mix: Mix = mix.unwrap_or(load::DEFAULT_MIX).parse()?;
    let config = LoadConfig::new(rate, duration, mix);
    config.validate().map_err(|e| e.to_string())?;
    let obs = ctx
        .observer()
        .await
        .ok_or_else(|| "the dashboard is leaving".to_string())?;
    let fixture = Fixture::prepare(&obs, &config, &FixtureOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    load::start(config, fixture).map_err(|e| e.to_string())
}

/// `platform scenario run FILE` from the dashboard: the same runner, its current step in the
/// status bar and every step in the timeline; leaving the dashboard stops it, and the runner
/// heals what it injected.
async fn run_scenario(ctx: &Ctx, file: &str) -> Result<String, String> {
    let mut obs = ctx
        .observer()
        .await
        .ok_or_else(|| "the dashboard is leaving".to_string())?;
    let scenarios =
        scenario::load_all(&[PathBuf::from(file)], obs.stack()).map_err(|e| e.to_string())?;
    let gateway = crate::commands::smoke::gateway_url(&obs).map_err(|e| e.to_string())?;
    check_target(&gateway, &obs)
        .await
        .map_err(|e| e.to_string())?;
    let mut outcomes = Vec::new();
    let mut failures = Vec::new();
    for s in &scenarios {
        obs.refresh().await.map_err(|e| e.to_string())?;
        let on_event = |e: &report::Event| {
            ctx.send(Update::Scenario(Some(format!(
                "{} {:.0}s: {}",
                s.name, e.at_s, e.text
            ))));
            ctx.send(Update::Event(Event {
                at: Utc::now(),
                kind: EventKind::Scenario,
                severity: Severity::Info,
                text: e.text.clone(),
            }));
        };
        let report = scenario::run::run(
            s,
            obs.clone(),
            gateway.clone(),
            ctx.cancel.child_token(),
            &on_event,
        )
        .await;
        match (&report.skipped, report.passed) {
            (Some(why), _) => outcomes.push(format!("{} skipped: {why}", s.name)),
            (None, true) => outcomes.push(format!("{} passed", s.name)),
            (None, false) => failures.extend(
                report
                    .failures()
                    .into_iter()
                    .map(|f| format!("{}: {f}", s.name)),
            ),
        }
    }
    if failures.is_empty() {
        Ok(outcomes.join("; "))
    } else {
        Err(failures.join("; "))
    }
}

/// After the dashboard cancelled its work on exit: waits for the load and scenario tasks in
/// `tasks` to end (a scenario heals what it injected, a load stops), at most `bound`; true when
/// they all ended. No task is added after this.
pub async fn wind_down(tasks: &TaskTracker, bound: Duration) -> bool {
    tasks.close();
    tokio::time::timeout(bound, tasks.wait()).await.is_ok()
}

/// Follows the output of `target`'s containers until aborted or they all stop.
async fn follow_logs(ctx: Ctx, target: LogTarget) {
    let Some(obs) = ctx.observer().await else {
        return;
    };
    let containers: Vec<_> = obs
        .containers()
        .iter()
        .filter(|c| c.service == target.service)
        .filter(|c| target.instance.is_none_or(|n| c.instance == n))
        .cloned()
        .collect();
    if containers.is_empty() {
        ctx.send(Update::LogsEnded {
            target: target.clone(),
            error: Some(format!("no container of {}", target.label())),
        });
        return;
    }
    let options = LogOptions {
        follow: true,
        since: None,
        tail: Some(LOG_TAIL),
    };
    let stop = ctx.cancel.clone();
    let result = logs::follow(
        obs.runtime(),
        &containers,
        &options,
        LOG_DELAY,
        async move { stop.cancelled().await },
        |lines| {
            ctx.send(Update::Logs {
                target: target.clone(),
                lines: lines.iter().map(convert::log_line).collect(),
            });
        },
    )
    .await;
    ctx.send(Update::LogsEnded {
        target: target.clone(),
        error: result.err().map(|e| e.to_string()),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slot is held until its task ends, also when that task panics.
    #[tokio::test]
    async fn a_slot_is_freed_when_its_task_ends_or_panics() {
        let slot = Slot::default();
        let held = slot.take().unwrap();
        assert!(slot.busy() && slot.take().is_none());
        let task = tokio::spawn(async move {
            let _held = held;
            panic!("the runner panicked");
        });
        assert!(task.await.is_err());
        assert!(!slot.busy());
        assert!(slot.take().is_some());
    }

    /// `:load stop` cancels the load but a new `:load` waits until the old task has finished
    /// (before, the stop freed it at once, and the old task's last `Update::Load(None)` blanked
    /// the new load's line).
    #[test]
    fn a_new_load_waits_for_the_stopped_one_to_finish() {
        let parent = CancellationToken::new();
        let mut load = LoadSlot::default();
        assert!(load.stop().is_err(), "nothing runs yet");
        let (stop, held) = load.start(&parent).unwrap();
        assert!(load.start(&parent).unwrap_err().contains("already running"));
        assert_eq!(load.stop(), Ok("stopping the load".to_string()));
        assert!(stop.is_cancelled());
        assert!(load.stop().unwrap_err().contains("already stopping"));
        assert!(load.start(&parent).unwrap_err().contains("still stopping"));
        drop(held);
        let (next, _held) = load.start(&parent).unwrap();
        assert!(!next.is_cancelled());
        parent.cancel();
        assert!(next.is_cancelled(), "a child of the dashboard's token");
    }

    /// On exit the dashboard cancels, then waits for a scenario's cleanup (here: a heal that
    /// takes 300 ms after the cancel), bounded: a task that does not end is given up on.
    #[tokio::test]
    async fn wind_down_awaits_the_cleanup_within_its_bound() {
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        let healed = Arc::new(AtomicBool::new(false));
        let (token, flag) = (cancel.clone(), healed.clone());
        tasks.spawn(async move {
            token.cancelled().await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            flag.store(true, Ordering::Release);
        });
        cancel.cancel();
        assert!(wind_down(&tasks, Duration::from_secs(10)).await);
        assert!(healed.load(Ordering::Acquire));

        let stuck = TaskTracker::new();
        stuck.spawn(tokio::time::sleep(Duration::from_secs(60)));
        let started = std::time::Instant::now();
        assert!(!wind_down(&stuck, Duration::from_millis(200)).await);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
