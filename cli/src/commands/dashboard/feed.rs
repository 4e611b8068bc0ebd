//! The background collectors that feed the dashboard. Each is a task with its own cadence that
//! reads one backend through [`crate::observe`] or [`crate::runtime`], turns what it read into
//! [`Update`]s ([`super::convert`]) and sends them down one channel; the UI loop applies them to
//! the state model. A backend that fails is reported as unreachable (the panel says since when)
//! and asked again at the next turn; nothing here ends the dashboard.
//!
//! | collector | reads | cadence |
//! | --- | --- | --- |
//! | services | Docker's containers, the registry (`GET /eureka/apps`), joined as `platform status` does | on a registry watch change, a Docker event, or every 2 s |
//! | stats | Docker stats of every running container | every 2 s (each sample takes Docker ~1 s) |
//! | events | Docker's event stream of the stack's containers | as they happen |
//! | breakers | order-service's `/admin/breakers`, every instance | every 500 ms |
//! | broker | topics, groups, committed offsets and watermarks from the broker | every second |
//! | traces | the collector's Zipkin API, last 15 minutes | every 2 s |
//! | faults | the stack's fault records | every second |
//!
//! The services collector owns the [`Observer`] (the stack's containers and how to reach
//! them) and publishes each fresh one on a watch channel the others read. A collector that
//! panics (a bug) is reported in the timeline and started again.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use dashboard::Update;
use dashboard::model::sources::Source;
use dashboard::model::timeline::{Event, EventKind, Severity};
use futures::StreamExt;
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::convert;
use crate::chaos::faults;
use crate::observe::admin::{Admin, BREAKERS_SERVICE};
use crate::observe::auth::{self, Grant};
use crate::observe::registry::{self, RegistryWatch};
use crate::observe::traces::{Collector, TraceQuery};
use crate::observe::{Observer, Route};
use crate::runtime::Runtime;
use crate::stack::Stack;

/// How often the services collector looks again without a change signal.
const SERVICES_EVERY: Duration = Duration::from_secs(2);
const STATS_EVERY: Duration = Duration::from_secs(2);
const BREAKERS_EVERY: Duration = Duration::from_millis(500);
const TRACES_EVERY: Duration = Duration::from_secs(2);
const FAULTS_EVERY: Duration = Duration::from_secs(1);
const BROKER_EVERY: Duration = Duration::from_secs(1);
/// After this long an admin token is fetched again (tokens of the dev realm live minutes).
const TOKEN_REFRESH: Duration = Duration::from_secs(60);
/// How far back the traces panel looks.
const TRACE_LOOKBACK: Duration = Duration::from_secs(15 * 60);
/// How many traces the panel keeps.
const TRACE_LIMIT: u32 = 40;
/// Longest wait for one container's stats.
const STATS_TIMEOUT: Duration = Duration::from_secs(5);

/// What every collector shares.
#[derive(Clone)]
pub struct Ctx {
    pub stack: Stack,
    /// Where updates go (the UI loop, or the snapshot).
    pub tx: mpsc::UnboundedSender<Update>,
    /// The latest look at the stack, published by the services collector.
    pub observer: watch::Receiver<Option<Observer>>,
    /// Wakes the services collector (a Docker event arrived, an action changed containers).
    pub wake: Arc<Notify>,
    pub cancel: CancellationToken,
}

impl Ctx {
    /// Sends an update; a closed channel means the dashboard is leaving.
    pub fn send(&self, update: Update) {
        let _ = self.tx.send(update);
    }

    fn up(&self, source: Source) {
        self.send(Update::Reached {
            source,
            at: Utc::now(),
        });
    }

    fn down(&self, source: Source, error: impl ToString, address: Option<String>) {
        self.send(Update::Unreachable {
            source,
            at: Utc::now(),
            error: error.to_string(),
            address,
        });
    }

    /// The latest observer, waiting for the first one.
    pub async fn observer(&self) -> Option<Observer> {
        let mut rx = self.observer.clone();
        loop {
            if let Some(o) = rx.borrow_and_update().clone() {
                return Some(o);
            }
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
                () = self.cancel.cancelled() => return None,
            }
        }
    }

    /// Sleeps `d`, or less when the dashboard leaves; false when it left.
    async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(d) => true,
            () = self.cancel.cancelled() => false,
        }
    }
}

/// Starts every collector; they stop when `ctx.cancel` is cancelled. `route` is how the host
/// reaches containers; `observer_tx` is where the services collector publishes.
pub fn start(ctx: &Ctx, route: Route, observer_tx: watch::Sender<Option<Observer>>) {
    let observer_tx = Arc::new(observer_tx);
    supervise(ctx, "services", move |c| {
        services(c, route.clone(), observer_tx.clone())
    });
    supervise(ctx, "stats", stats);
    supervise(ctx, "events", events);
    supervise(ctx, "breakers", breakers);
    supervise(ctx, "broker", broker);
    supervise(ctx, "traces", traces);
    supervise(ctx, "faults", fault_records);
}

/// Runs `collector` until the dashboard leaves, starting it again if it panics.
fn supervise<F, Fut>(ctx: &Ctx, name: &'static str, collector: F)
where
    F: Fn(Ctx) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let ctx = ctx.clone();
    tokio::spawn(async move {
        loop {
            let run = tokio::spawn(collector(ctx.clone()));
            match run.await {
                Err(e) if e.is_panic() => {
                    let text =
                        format!("the {name} collector crashed (a bug) and is restarted: {e}");
                    tracing::error!("{text}");
                    ctx.send(Update::Event(Event {
                        at: Utc::now(),
                        kind: EventKind::Backend,
                        severity: Severity::Bad,
                        text,
                    }));
                    if !ctx.pause(Duration::from_secs(1)).await {
                        return;
                    }
                }
                _ => return,
            }
        }
    });
}

/// Containers joined to the registry; owns and publishes the observer.
async fn services(c: Ctx, route: Route, observer_tx: Arc<watch::Sender<Option<Observer>>>) {
    let mut obs: Option<Observer> = None;
    let mut watch: Option<(String, RegistryWatch)> = None;
    let mut healths = std::collections::HashMap::new();
    loop {
        let fresh = match obs.take() {
            Some(mut o) => o.refresh().await.map(|()| o),
            None => match Runtime::connect().await {
                Ok(rt) => Observer::with_route(rt, c.stack.clone(), route.clone()).await,
                Err(e) => Err(e.into()),
            },
        };
        match fresh {
            Ok(o) => {
                c.up(Source::Docker);
                let (view, apps) = crate::commands::status::view_with_apps(&o).await;
                for event in convert::health_changes(&mut healths, &view, chrono::Utc::now()) {
                    c.send(Update::Event(event));
                }
                match (&view.registry.reachable, &view.registry.error) {
                    (true, _) => c.up(Source::Registry),
                    (false, error) => c.down(
                        Source::Registry,
                        error.as_deref().unwrap_or("not read"),
                        view.registry.url.clone(),
                    ),
                }
                c.send(Update::Services(convert::services(
                    o.stack(),
                    &view,
                    apps.as_ref(),
                )));
                // Keep a watch on the registry the stack uses, so changes show at once.
                match registry::client(&o) {
                    Ok(http) => {
                        let url = http.base_url().to_string();
                        if watch.as_ref().is_none_or(|(u, _)| *u != url) {
                            watch = Some((url, RegistryWatch::start(http)));
                        }
                    }
                    Err(_) => watch = None,
                }
                observer_tx.send_replace(Some(o.clone()));
                obs = Some(o);
            }
            Err(e) => {
                let message = e.to_string();
                c.down(Source::Docker, &message, None);
                c.down(
                    Source::Registry,
                    "the stack's containers are unknown while Docker is unreachable",
                    None,
                );
                observer_tx.send_replace(None);
                watch = None;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(SERVICES_EVERY) => {}
            () = c.wake.notified() => {}
            () = async {
                match watch.as_mut() {
                    Some((_, w)) => w.changed().await,
                    None => std::future::pending().await,
                }
            } => {}
            () = c.cancel.cancelled() => return,
        }
    }
}

/// Docker stats of every running container.
async fn stats(c: Ctx) {
    loop {
        let Some(obs) = c.observer().await else {
            return;
        };
        let rt = obs.runtime();
        let reads = obs
            .containers()
            .iter()
            .filter(|x| x.state == "running")
            .map(|x| async move {
                match tokio::time::timeout(STATS_TIMEOUT, rt.stats(&x.name)).await {
                    Ok(Ok(s)) => Some((x.name.clone(), s)),
                    _ => None,
                }
            });
        let read: Vec<_> = futures::future::join_all(reads)
            .await
            .into_iter()
            .flatten()
            .collect();
        c.send(Update::Stats(convert::stats(read)));
        if !c.pause(STATS_EVERY).await {
            return;
        }
    }
}

/// Docker's event stream of the stack's containers.
async fn events(c: Ctx) {
    loop {
        let Some(obs) = c.observer().await else {
            return;
        };
        let mut stream = Box::pin(obs.runtime().events(&c.stack.name));
        loop {
            let next = tokio::select! {
                n = stream.next() => n,
                () = c.cancel.cancelled() => return,
            };
            match next {
                Some(Ok(e)) => {
                    if let Some(event) = convert::event(&e) {
                        c.send(Update::Event(event));
                    }
                    // Containers changed: the services collector looks again now.
                    if !e.action.starts_with("exec_") {
                        c.wake.notify_one();
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "Docker's event stream failed; reconnecting");
                    break;
                }
                None => break,
            }
        }
        if !c.pause(Duration::from_secs(2)).await {
            return;
        }
    }
}

/// `/admin/breakers` of every order-service instance, with an admin token kept for a minute.
async fn breakers(c: Ctx) {
    let mut token: Option<(String, Instant)> = None;
    loop {
        let Some(obs) = c.observer().await else {
            return;
        };
        if obs.running(BREAKERS_SERVICE).is_empty() {
            c.down(
                Source::Breakers,
                format!("no {BREAKERS_SERVICE} instance is running"),
                None,
            );
            c.send(Update::Breakers(Vec::new()));
        } else {
            if token
                .as_ref()
                .is_none_or(|(_, at)| at.elapsed() > TOKEN_REFRESH)
            {
                match auth::fetch_token(&obs, &Grant::default_service()).await {
                    Ok(set) => token = Some((set.token.access_token, Instant::now())),
                    Err(e) => {
                        c.down(
                            Source::Breakers,
                            format!("cannot get an admin token: {e}"),
                            None,
                        );
                        token = None;
                    }
                }
            }
            if let Some((t, _)) = &token {
                let reads = Admin::with_token(&obs, t.clone())
                    .breakers(BREAKERS_SERVICE)
                    .await;
                match reads.iter().find(|r| r.value.is_some()) {
                    Some(_) => c.up(Source::Breakers),
                    None => {
                        let error = reads
                            .iter()
                            .find_map(|r| r.error.clone())
                            .unwrap_or_else(|| "no answer".into());
                        c.down(Source::Breakers, error, None);
                        // A token the services no longer accept is fetched again.
                        token = None;
                    }
                }
                c.send(Update::Breakers(convert::breakers(reads)));
            }
        }
        if !c.pause(BREAKERS_EVERY).await {
            return;
        }
    }
}

/// Topics, groups and lag from the broker, through one kafka-lag client kept while the
/// broker's address stays the same (its connection is reused).
async fn broker(c: Ctx) {
    let mut client: Option<kafka_lag::BrokerClient> = None;
    loop {
        let Some(obs) = c.observer().await else {
            return;
        };
        match obs.broker_address() {
            Err(e) => {
                client = None;
                c.down(Source::Broker, e, None);
            }
            Ok(addr) => {
                if client.as_ref().is_none_or(|b| b.addr() != addr) {
                    client = obs.broker().ok();
                }
                match &client {
                    None => c.down(Source::Broker, "cannot make a broker client", Some(addr)),
                    Some(b) => match b.snapshot().await {
                        Ok(s) => {
                            c.up(Source::Broker);
                            c.send(Update::Kafka(convert::kafka(&s)));
                        }
                        Err(e) => c.down(Source::Broker, e, Some(addr)),
                    },
                }
            }
        }
        if !c.pause(BROKER_EVERY).await {
            return;
        }
    }
}

/// Recent traces from the collector's Zipkin API.
async fn traces(c: Ctx) {
    let query = TraceQuery {
        lookback: Some(TRACE_LOOKBACK.as_millis() as u64),
        limit: Some(TRACE_LIMIT),
        ..TraceQuery::default()
    };
    loop {
        let Some(obs) = c.observer().await else {
            return;
        };
        match Collector::of(&obs) {
            Err(e) => c.down(Source::Traces, e, None),
            Ok(collector) => match collector.traces(&obs, &query).await {
                Ok(list) => {
                    c.up(Source::Traces);
                    c.send(Update::Traces {
                        list: list.iter().filter_map(|t| convert::trace(t)).collect(),
                        ui_base: collector.ui_base(&obs).map(|u| u.to_string()),
                    });
                }
                Err(e) => c.down(Source::Traces, e, Some(collector.base().to_string())),
            },
        }
        if !c.pause(TRACES_EVERY).await {
            return;
        }
    }
}

/// The stack's active faults.
async fn fault_records(c: Ctx) {
    loop {
        let Some(obs) = c.observer().await else {
            return;
        };
        let ctx = faults::Ctx::from_observer(&obs);
        match faults::list(&ctx).await {
            Ok(records) => {
                c.up(Source::Faults);
                c.send(Update::Faults(convert::faults(&records)));
            }
            Err(e) => c.down(Source::Faults, e, None),
        }
        if !c.pause(FAULTS_EVERY).await {
            return;
        }
    }
}
