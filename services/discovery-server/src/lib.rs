//! discovery-server: the platform's service registry.
//!
//! It speaks the subset of the Eureka REST API that real Eureka clients use
//! ([`api`], JSON and, for clients that read it, XML: [`xml`]), keeps
//! instances in memory with leases, a version counter and a change log
//! ([`registry`]), evicts expired leases in the background ([`evictor`])
//! unless self-preservation says the registry's own network is the likely
//! culprit ([`preservation`]), offers a long-poll watch so clients see
//! changes within milliseconds ([`watch`]), and shows a status page at `/`
//! ([`page`]) and its figures at `/admin/registry` and `/metrics`
//! ([`admin`]). It does not register with itself. Writes can be closed to
//! all but holders of the registry's credentials ([`write_auth`]), as
//! Spring Cloud users close Eureka's.
//!
//! `main.rs` only parses the configuration and calls [`run`]; tests build
//! the same service in-process with [`build`], [`router`] and
//! [`admin_router`] on port 0 and a manual clock.
#![forbid(unsafe_code)]

pub mod admin;
pub mod api;
pub mod config;
pub mod error;
pub mod evictor;
pub mod page;
pub mod preservation;
pub mod registry;
pub mod watch;
pub mod write_auth;
pub mod xml;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::get;
use kit::Service;
use kit::clock::Clock;
use tokio_util::sync::CancellationToken;

pub use config::{Config, SPEC};
pub use registry::{Registry, RegistryOptions};
pub use write_auth::WriteAuth;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    /// Cancelled at shutdown so waiting watchers answer at once.
    pub shutdown: CancellationToken,
    pub max_watch_timeout: Duration,
    pub eviction_interval: Duration,
    pub version: &'static str,
    /// What writes need; `None`: they are open (Eureka's default).
    pub write_auth: Option<WriteAuth>,
}

/// Creates the registry, registers its metrics and starts the evictor.
pub fn build(config: &Config, clock: Clock, service: &Service) -> AppState {
    let registry = Arc::new(Registry::new(
        RegistryOptions::from(&config.registry),
        clock,
    ));
    service
        .metrics()
        .register_collector(Box::new(admin::RegistryCollector(registry.clone())));
    service.spawn(
        "evictor",
        evictor::run(
            registry.clone(),
            config.registry.eviction_interval,
            service.shutdown_token(),
        ),
    );
    AppState {
        registry,
        shutdown: service.shutdown_token(),
        max_watch_timeout: config.registry.max_watch_timeout,
        eviction_interval: config.registry.eviction_interval,
        version: SPEC.version,
        write_auth: WriteAuth::from_common(&config.common, service.jwt_validator().cloned()),
    }
}

/// The public routes: the Eureka API, the watch and the status page.
/// Writes pass [`write_auth::guard`] first, before their bodies are read.
pub fn router(state: AppState) -> Router {
    api::routes()
        .route("/", get(page::status_page))
        .route_layer(from_fn_with_state(state.clone(), write_auth::guard))
        .with_state(state)
}

/// Routes mounted under `/admin` (the kit puts them behind admin auth).
pub fn admin_router(state: AppState) -> Router {
    Router::new()
        .route("/registry", get(admin::registry))
        .with_state(state)
}

/// Runs the discovery-server on `service` until SIGTERM/SIGINT.
pub async fn run(config: Config, service: Service) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let state = build(&config, Clock::System, &service);
    tracing::info!(
        eviction_interval = ?config.registry.eviction_interval,
        self_preservation = config.registry.self_preservation,
        threshold = config.registry.renewal_percent_threshold,
        min_instances = config.registry.self_preservation_min_instances,
        writes = match &state.write_auth {
            Some(a) if a.accepts_jwt() => "HTTP Basic or a service-role JWT",
            Some(_) => "HTTP Basic",
            None => "open",
        },
        "registry ready"
    );
    service
        .serve(router(state.clone()), admin_router(state))
        .await
        .context("serving the registry")
}
