//! `platform status` (alias `ps`): the stack's containers with state, health, address and
//! published ports, joined to the registry's view, with drift flagged ("running but not
//! registered", "registered but no container"). Exits 1 when the stack is not running; with
//! `--json` the document is printed first, so scripts get both.

use super::Global;
use registry_client::model::Applications;

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
    view_with_apps(obs).await.0
}

/// [`view`], and what the registry answered (the dashboard shows lease ages from it).
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
