//! Carries out what the dashboard asks for, through the same libraries the commands use —
//! never by running `platform`: scaling through [`crate::commands::scale`] (the runtime),
//! faults through [`crate::chaos::faults`] (words validated by `FaultSpec::from_words`, as
//! `platform inject` validates its arguments), traces through the collector's API, logs
//! through the runtime. Each request runs as its own task and answers with
//! [`Update::ActionDone`]; long ones (scaling waits for health and registration) never block
//! the screen.

use std::time::Duration;

use dashboard::model::logs::LogTarget;
use dashboard::{Action, Request, Update};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::convert;
use super::feed::Ctx;
use crate::chaos::faults::{self, FaultSpec, Heal};
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

/// Takes requests until the channel closes (the dashboard left).
pub async fn run(ctx: Ctx, mut requests: mpsc::UnboundedReceiver<Request>) {
    let mut logs_task: Option<JoinHandle<()>> = None;
    while let Some(request) = requests.recv().await {
        let id = request.id;
        match request.action {
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
        Action::Scenario { .. } | Action::Load { .. } | Action::StopLoad => {
            Err("scenarios and load are not available in this build yet".into())
        }
        Action::FollowLogs { .. } => Ok(String::new()),
    }
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
