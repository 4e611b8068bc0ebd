//! `/admin/routes` and `/admin/upstreams`: what the gateway routes and how
//! its upstreams are doing.
//!
//! `/admin/routes` follows Spring Cloud Gateway's actuator
//! (`/actuator/gateway/routes`: `route_id`, `uri`, `order`, predicates,
//! filters) and adds the policy fields (access, timeout, retry, strategy).
//! `/admin/upstreams` reads the shared balancers' per-instance state. Both
//! sit in the admin router, so the kit's admin guard (the `admin` realm
//! role) protects them.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use kit::http::Json;
use kit::lb::{EndpointStatus, Strategy};
use serde::Serialize;

use crate::proxy::Proxy;
use crate::route::RouteView;

/// One upstream service as `/admin/upstreams` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamView {
    /// The balancer's own default strategy (routes may choose another).
    pub strategy: Strategy,
    /// Routes that send to this service.
    pub routes: Vec<String>,
    pub instances: Vec<EndpointStatus>,
}

/// The admin endpoints (mounted under `/admin` by the kit).
pub fn router(proxy: Arc<Proxy>) -> Router {
    Router::new()
        .route("/routes", get(routes))
        .route("/upstreams", get(upstreams))
        .with_state(proxy)
}

async fn routes(State(proxy): State<Arc<Proxy>>) -> Json<Vec<RouteView>> {
    Json(proxy.routes.routes().iter().map(|r| r.view()).collect())
}

async fn upstreams(State(proxy): State<Arc<Proxy>>) -> Json<BTreeMap<String, UpstreamView>> {
    let views = proxy
        .upstreams
        .iter()
        .map(|(name, u)| {
            let routes = proxy
                .routes
                .routes()
                .iter()
                .filter(|r| &r.upstream == name)
                .map(|r| r.id.clone())
                .collect();
            (
                name.clone(),
                UpstreamView {
                    strategy: u.balancer.strategy(),
                    routes,
                    instances: u.balancer.status(),
                },
            )
        })
        .collect();
    Json(views)
}
