//! The api-gateway: the platform's single entrance on port 8080.
//!
//! Every request that is not one of the kit's own endpoints (`/health/*`,
//! `/metrics`, `/info`, `/admin/*`) goes through [`proxy::handle`]: the
//! first matching route ([`route`], loaded by [`routes_file`]) decides the
//! upstream service and the policy; the edge check ([`edge_auth`]) lets
//! only valid Keycloak-issued tokens with the route's roles through; an
//! instance is chosen from the registry by the kit's shared balancer, and
//! the request and its answer are streamed through a pooled hyper client.
//!
//! `main.rs` parses [`Config`], loads the routes (a bad file stops the
//! start with the file, line and key), then [`run`]s. Tests call
//! [`build`] on a [`kit::Service`] bound to port 0 and serve
//! [`Gateway::api`] and [`Gateway::admin`] themselves.
#![forbid(unsafe_code)]

pub mod admin;
pub mod edge_auth;
pub mod metrics;
pub mod pattern;
pub mod proxy;
pub mod route;
pub mod routes_file;
pub mod upstream_io;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::any;
use clap::Parser;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kit::Service;
use kit::config::{CommonArgs, HasCommon, ServiceSpec, parse_duration};
use kit::lb::{Balancer, EjectionPolicy, Strategy};

use crate::edge_auth::EdgeAuth;
use crate::metrics::{BalancerCollector, GatewayMetrics};
use crate::proxy::{Proxy, Upstream};
use crate::route::{Access, Route, RouteTable};

/// What the api-gateway is.
pub const SPEC: ServiceSpec = ServiceSpec {
    name: "api-gateway",
    default_port: 8080,
    version: env!("CARGO_PKG_VERSION"),
    registers: true,
};

/// The gateway's configuration: the kit's common options plus its own.
#[derive(Debug, Clone, Parser)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Routes file (TOML, Spring Cloud Gateway concepts) [default: the built-in routes: product, order, inventory, notifications]
    #[arg(long = "routes", env = "ROUTES_FILE")]
    pub routes: Option<PathBuf>,

    /// Longest wait for a TCP connection to an upstream instance
    #[arg(long, env = "UPSTREAM_CONNECT_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// Idle pooled upstream connections are closed after this long
    #[arg(long, env = "UPSTREAM_IDLE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Consecutive connect errors or timeouts that eject an instance from load balancing
    #[arg(long, env = "EJECT_AFTER_CONNECT_ERRORS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub eject_after_connect_errors: u32,

    /// Consecutive 5xx answers that eject an instance
    #[arg(long, env = "EJECT_AFTER_5XX", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub eject_after_5xx: u32,

    /// Length of a first ejection; the n-th in a row lasts n times as long
    #[arg(long, env = "EJECTION_BASE", default_value = "2s", value_parser = parse_duration)]
    pub ejection_base: Duration,

    /// Longest ejection
    #[arg(long, env = "EJECTION_MAX", default_value = "60s", value_parser = parse_duration)]
    pub ejection_max: Duration,

    /// Accepted bearer tokens remembered (by their exact text, until they expire, at most 60 s) so that a token's signature is verified once rather than on every request; 0 verifies every request
    #[arg(long, env = "TOKEN_CACHE_SIZE", default_value_t = 4096)]
    pub token_cache_size: usize,

    /// Request bodies up to this many bytes (with a known length) are buffered so that retryable requests can be sent again; larger ones stream and are not retried
    #[arg(long, env = "RETRY_BODY_LIMIT", default_value_t = 64 * 1024)]
    pub retry_body_limit: usize,

    /// Threads that serve connections, each with its own single-threaded runtime (like nginx's
    /// worker processes); 0: one per available CPU
    #[arg(long, env = "IO_THREADS", default_value_t = 0)]
    pub io_threads: usize,

    /// Serve /metrics and /info to anyone. Off by default: the gateway's port is the one
    /// published to users, so they need the admin role (or ADMIN_TOKEN) like /admin
    #[arg(long, env = "PUBLIC_OBSERVABILITY", default_value_t = false)]
    pub public_observability: bool,
}

impl HasCommon for Config {
    fn common(&self) -> &CommonArgs {
        &self.common
    }
}

impl Config {
    /// The configuration a test uses: `common`, built-in defaults otherwise.
    pub fn for_tests(common: CommonArgs) -> Config {
        let mut c = Config::parse_from(["api-gateway"]);
        c.common = common;
        c
    }

    /// The kit's options the gateway's service runs with: the common ones,
    /// with `/metrics` and `/info` private unless `--public-observability`.
    pub fn service_args(&self) -> CommonArgs {
        let mut common = self.common.clone();
        common.private_observability |= !self.public_observability;
        common
    }

    /// Connection-serving threads: `--io-threads`, or one per available CPU.
    pub fn io_threads(&self) -> usize {
        match self.io_threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        }
    }

    fn ejection_policy(&self) -> EjectionPolicy {
        EjectionPolicy {
            consecutive_connect_errors: self.eject_after_connect_errors,
            consecutive_5xx: self.eject_after_5xx,
            base_ejection: self.ejection_base,
            max_ejection: self.ejection_max.max(self.ejection_base),
        }
    }
}

/// Why the gateway cannot start with this configuration.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Routes(#[from] routes_file::RoutesError),
    #[error(
        "route `{route}` requires a token but no issuer is configured: set ISSUER_URL (--issuer-url) to the identity provider's realm, or make the route public"
    )]
    NoIssuer { route: String },
}

/// Loads the routes the configuration names (or the built-in ones).
pub fn load_routes(config: &Config) -> Result<Vec<Route>, StartError> {
    Ok(routes_file::load(config.routes.as_deref())?)
}

/// A gateway ready to be served.
#[derive(Debug, Clone)]
pub struct Gateway {
    proxy: Arc<Proxy>,
}

impl Gateway {
    /// The proxying router (everything but the kit's own endpoints).
    pub fn api(&self) -> Router {
        Router::new()
            .route("/", any(proxy::handle))
            .route("/{*path}", any(proxy::handle))
            .with_state(self.proxy.clone())
    }

    /// `/admin/routes` and `/admin/upstreams`.
    pub fn admin(&self) -> Router {
        admin::router(self.proxy.clone())
    }

    /// The balancer of an upstream service (tests and the admin view).
    pub fn balancer(&self, service: &str) -> Option<&Balancer> {
        self.proxy.upstreams.get(service).map(|u| &u.balancer)
    }
}

/// Builds the gateway for `service` from `routes`: metrics, balancers (one
/// per upstream service, all on the service's discovery cache), the pooled
/// upstream client and the edge token check.
pub fn build(
    config: &Config,
    mut routes: Vec<Route>,
    service: &Service,
) -> Result<Gateway, StartError> {
    let validator = service.jwt_validator().cloned();
    if validator.is_none()
        && let Some(r) = routes.iter().find(|r| r.access != Access::Public)
    {
        return Err(StartError::NoIssuer {
            route: r.id.clone(),
        });
    }
    let metrics = GatewayMetrics::register(service.metrics());
    for r in &mut routes {
        r.metrics = metrics.route(&r.id);
    }
    let table = RouteTable::new(routes);
    let discovery = service.discovery().clone();
    discovery.start();
    let policy = config.ejection_policy();
    let upstreams: BTreeMap<String, Upstream> = table
        .upstreams()
        .into_iter()
        .map(|name| {
            let balancer = Balancer::new(&name, discovery.clone(), Strategy::default(), policy);
            let metrics = metrics.upstream(&name);
            (name, Upstream { balancer, metrics })
        })
        .collect();
    service
        .metrics()
        .register_collector(Box::new(BalancerCollector {
            balancers: upstreams
                .iter()
                .map(|(k, u)| (k.clone(), u.balancer.clone()))
                .collect(),
        }));
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(config.connect_timeout));
    connector.enforce_http(true);
    // One pooled client per connection-serving thread: an upstream
    // connection's task runs on the thread that opened it, and a request
    // served on another thread would wake it across threads.
    let clients = (0..config.io_threads())
        .map(|_| {
            Client::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .pool_idle_timeout(config.idle_timeout)
                .build(upstream_io::Connector::new(connector.clone()))
        })
        .collect();
    tracing::info!(
        routes = table.routes().len(),
        upstreams = ?upstreams.keys().collect::<Vec<_>>(),
        "routes loaded"
    );
    Ok(Gateway {
        proxy: Arc::new(Proxy {
            clients,
            routes: table,
            upstreams,
            auth: EdgeAuth::new(
                validator,
                config.token_cache_size,
                kit::clock::Clock::System,
            ),
            retry_body_limit: config.retry_body_limit,
            listen_port: service.port(),
        }),
    })
}

/// Runs the gateway until shutdown.
pub async fn run(config: Config, routes: Vec<Route>) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let service = Service::bind(&SPEC, config.service_args())
        .await
        .context("starting the api-gateway")?;
    let mut service = service;
    service.set_io_threads(config.io_threads());
    let gateway = build(&config, routes, &service)?;
    service
        .serve(gateway.api(), gateway.admin())
        .await
        .context("serving")?;
    Ok(())
}
