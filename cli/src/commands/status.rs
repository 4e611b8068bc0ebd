//! `platform status` (alias `ps`): the stack's containers with state, health, address and
//! published ports, joined to the registry's view, with drift flagged ("running but not
//! registered", "registered but no container"), and each consumer group's lag per partition
//! read from the broker. Exits 1 when the stack is not running; with
//! `--json` the document is printed first, so scripts get both.

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

/// Reads the registry (when the stack runs) and joins it to the containers.
pub async fn view(obs: &Observer) -> StatusView {
    let stack = obs.stack();
    let route = obs.route().name();
    if !obs.is_running() {
        return StatusView::join(
            stack,
            route,
            obs.containers(),
            Err((None, "the stack is not running".to_string())),
        );
    }
    // The registry and the broker are read at the same time: each may take its timeout.
    let (registry, kafka) = tokio::join!(registry::applications(obs), kafka(obs));
    let view = match registry {
        Ok((url, apps)) => {
            StatusView::join(stack, route, obs.containers(), Ok((url.as_str(), &apps)))
        }
        Err(e) => {
            let url = registry::client(obs).ok().map(|c| c.base_url().to_string());
            StatusView::join(
                stack,
                route,
                obs.containers(),
                Err((url.as_deref(), e.to_string())),
            )
        }
    };
    match kafka {
        Some(k) => view.with_kafka(k),
        None => view,
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
