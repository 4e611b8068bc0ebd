//! `platform status` (alias `ps`): the stack's containers with state, health, address and
//! published ports, joined to the registry's view, with drift flagged ("running but not
//! registered", "registered but no container"), and each consumer group's lag per partition
//! read from the broker. Exits 1 when the stack is not running; with
//! `--json` the document is printed first, so scripts get both.

use registry_client::model::Applications;

use super::Global;
use crate::observe::kafka::{self, KafkaSummary};
use crate::observe::status::StatusView;
use crate::observe::{ObserveError, Observer, registry};
use crate::runtime::Runtime;
use crate::stack::StackFile;
use crate::{Error, Result, output};

pub async fn run(g: &Global) -> Result<()> {
    let stack = StackFile::resolve(&g.stack)?.load()?;
    let rt = Runtime::connect().await?;
    let obs = Observer::new(rt, stack).await?;
    let view = view(&obs).await;
    if g.json {
        output::json(&view)?;
    } else {
        crate::out!("{}", view.to_text());
    }
    if view.running {
        Ok(())
    } else if g.json {
        Err(Error::Reported)
    } else {
        Err(ObserveError::NotRunning {
            stack: obs.stack().name.clone(),
        }
        .into())
    }
}

/// Reads the registry and the broker (when the stack runs) and joins them to the containers.
pub async fn view(obs: &Observer) -> StatusView {
    // The registry and the broker are read at the same time: each may take its timeout.
    let ((view, _), kafka) = tokio::join!(view_with_apps(obs), kafka(obs));
    match kafka {
        Some(k) if view.running => view.with_kafka(k),
        _ => view,
    }
}

/// The containers joined to the registry (no broker read), and what the registry answered:
/// the dashboard shows lease ages from it and reads the broker on its own cadence.
pub async fn view_with_apps(obs: &Observer) -> (StatusView, Option<Applications>) {
    let stack = obs.stack();
    let route = obs.route().name();
    if !obs.is_running() {
        let view = StatusView::join(
            stack,
            route,
            obs.containers(),
            Err((None, "the stack is not running".to_string())),
        );
        return (view, None);
    }
    match registry::applications(obs).await {
        Ok((url, apps)) => {
            let view = StatusView::join(stack, route, obs.containers(), Ok((url.as_str(), &apps)));
            (view, Some(apps))
        }
        Err(e) => {
            let url = registry::client(obs).ok().map(|c| c.base_url().to_string());
            let view = StatusView::join(
                stack,
                route,
                obs.containers(),
                Err((url.as_deref(), e.to_string())),
            );
            (view, None)
        }
    }
}

/// Consumer groups and lag from the stack's broker; `None` when the stack has no broker.
async fn kafka(obs: &Observer) -> Option<KafkaSummary> {
    obs.env_value(kafka::BOOTSTRAP_ENV)?;
    let broker = obs.broker_address().ok();
    Some(KafkaSummary::from_result(
        broker,
        obs.kafka_snapshot().await,
    ))
}
