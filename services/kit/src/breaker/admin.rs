//! A service's breakers ([`BreakerRegistry`]) and their `/admin/breakers`
//! router.

use std::sync::Arc;

use axum::Router;
use axum::extract::State as AxumState;
use axum::routing::{get, post};
use parking_lot::RwLock;

use super::metrics::BreakerCollector;
use super::{CircuitBreaker, Snapshot, StateChange};
use crate::error::Problem;
use crate::http::{Json, Path};
use crate::metrics::Metrics;

/// A service's breakers, for `/admin/breakers` and `/metrics`.
#[derive(Clone, Default)]
pub struct BreakerRegistry {
    /// Written at start-up when breakers are created, read by every scrape
    /// and admin request.
    breakers: Arc<RwLock<Vec<CircuitBreaker>>>,
}

impl std::fmt::Debug for BreakerRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.breakers.read().iter().map(|b| b.name().to_string()))
            .finish()
    }
}

impl BreakerRegistry {
    /// An empty registry whose breakers appear in `metrics`.
    pub fn new(metrics: &Metrics) -> BreakerRegistry {
        let r = BreakerRegistry::default();
        metrics.register_collector(Box::new(BreakerCollector(r.clone())));
        r
    }

    /// Adds a breaker (replacing one of the same name).
    pub fn add(&self, breaker: CircuitBreaker) {
        let mut list = self.breakers.write();
        list.retain(|b| b.name() != breaker.name());
        list.push(breaker);
    }

    /// The breaker called `name`.
    pub fn get(&self, name: &str) -> Option<CircuitBreaker> {
        self.breakers
            .read()
            .iter()
            .find(|b| b.name() == name)
            .cloned()
    }

    /// Snapshots of every breaker, by name.
    pub fn snapshots(&self) -> Vec<Snapshot> {
        let mut v: Vec<Snapshot> = self.breakers.read().iter().map(|b| b.snapshot()).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }
}

/// `GET /breakers`, `GET /breakers/{name}` and `POST /breakers/{name}/state`,
/// to be merged into a service's admin router (so they sit under `/admin`,
/// behind the admin token).
pub fn admin_router(registry: BreakerRegistry) -> Router {
    Router::new()
        .route("/breakers", get(list_breakers))
        .route("/breakers/{name}", get(one_breaker))
        .route("/breakers/{name}/state", post(change_state))
        .with_state(registry)
}

async fn list_breakers(AxumState(r): AxumState<BreakerRegistry>) -> Json<Vec<Snapshot>> {
    Json(r.snapshots())
}

async fn one_breaker(
    AxumState(r): AxumState<BreakerRegistry>,
    Path(name): Path<String>,
) -> Result<Json<Snapshot>, Problem> {
    r.get(&name)
        .map(|b| Json(b.snapshot()))
        .ok_or_else(|| Problem::not_found(format!("no circuit breaker named '{name}'")))
}

async fn change_state(
    AxumState(r): AxumState<BreakerRegistry>,
    Path(name): Path<String>,
    Json(change): Json<StateChange>,
) -> Result<Json<Snapshot>, Problem> {
    let b = r
        .get(&name)
        .ok_or_else(|| Problem::not_found(format!("no circuit breaker named '{name}'")))?;
    b.transition_to(change.state);
    Ok(Json(b.snapshot()))
}
