//! A running service instance: listener, registry, health, metrics,
//! background tasks and graceful shutdown, in one place.
//!
//! A service's `main.rs` is one call, [`main`], which does in order:
//! 1. parse the configuration ([`crate::config::parse`]: exits 2 on bad
//!    input, the service's own checks included);
//! 2. `--probe`: answer the container health check and exit
//!    ([`crate::probe::exit_if_probe`]); `--wait-for HOST:PORT` (checked by `parse` before
//!    anything else, as it needs none of the configuration): wait for dependencies and exit
//!    ([`crate::wait`]);
//! 3. set up telemetry ([`crate::telemetry::init`] with
//!    [`HasCommon::telemetry`]), before the runtime: the Zipkin exporter's
//!    blocking client cannot be built inside it (NOTES.md);
//! 4. start the multi-threaded runtime ([`runtime`]);
//! 5. [`Service::bind`], then the service's `run(config, service)`, which
//!    does the domain setup (pools, health checks, background tasks via
//!    [`Service::spawn`]) and ends in [`Service::serve`].
//!
//! ```ignore
//! fn main() -> anyhow::Result<()> {
//!     Ok(kit::service::main(&SPEC, my_service::run)?)
//! }
//! ```
//! A service that must bind itself (it changes the common options first)
//! uses [`main_unbound`]. Tests do step 5 alone with
//! [`CommonArgs::for_tests`] (port 0) and stop the service by cancelling
//! [`Service::shutdown_token`].
//!
//! Shutdown order, and why: (1) readiness turns DOWN and the instance
//! leaves the registry, so balancers stop choosing it; (2) the listener
//! stops accepting and in-flight requests drain, bounded by
//! `--shutdown-timeout`; (3) background tasks (relays, consumers) are told
//! to stop and awaited, bounded by the same timeout.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use clap::{CommandFactory, FromArgMatches};

use crate::auth::{AdminAuth, JwtValidator};
use crate::config::{CommonArgs, HasCommon, ServiceSpec, route_ip_towards};
use crate::health::Health;
use crate::http::{Info, Scaffold, finish};
use crate::metrics::Metrics;
use crate::registry::agent::Registration;
use crate::registry::discovery::{Discovery, DiscoveryOptions};
use crate::registry::http::RegistryHttp;
use crate::registry::model::{InstanceInfo, LeaseInfo};

/// Failure to start or run the service scaffold.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// Why a service binary stopped with an error (see [`main`]).
#[derive(Debug, thiserror::Error)]
pub enum MainError {
    #[error("setting up telemetry")]
    Telemetry(#[source] crate::telemetry::TelemetryError),
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// The service's own `run` failed; its error, unchanged.
    #[error(transparent)]
    Run(Box<dyn std::error::Error + Send + Sync>),
}

/// The whole `main` of a service binary (see the module docs): parse,
/// probe, telemetry, runtime, bind, then `run(config, service)` until it
/// returns.
pub fn main<C, F, Fut, E>(spec: &ServiceSpec, run: F) -> Result<(), MainError>
where
    C: CommandFactory + FromArgMatches + HasCommon,
    F: FnOnce(C, Service) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let spec = *spec;
    start(&spec, move |config: C| async move {
        let service = Service::bind(&spec, config.common().clone()).await?;
        run(config, service)
            .await
            .map_err(|e| MainError::Run(e.into()))
    })
}

/// [`main`] for a service that binds its listener itself inside `run`
/// (for instance with common options it changed first).
pub fn main_unbound<C, F, Fut, E>(spec: &ServiceSpec, run: F) -> Result<(), MainError>
where
    C: CommandFactory + FromArgMatches + HasCommon,
    F: FnOnce(C) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    start(spec, move |config: C| async move {
        run(config).await.map_err(|e| MainError::Run(e.into()))
    })
}

/// Steps 1 to 4 of the module docs, then `run` on the runtime.
fn start<C, F, Fut>(spec: &ServiceSpec, run: F) -> Result<(), MainError>
where
    C: CommandFactory + FromArgMatches + HasCommon,
    F: FnOnce(C) -> Fut,
    Fut: Future<Output = Result<(), MainError>>,
{
    // `parse` first handles `--wait-for` (an init container that only waits has none of the
    // configuration).
    let config: C = crate::config::parse(spec);
    crate::probe::exit_if_probe(spec, config.common());
    // Held until `main` returns: dropping it flushes the queued spans.
    let _telemetry =
        crate::telemetry::init(spec, config.telemetry()).map_err(MainError::Telemetry)?;
    runtime()?.block_on(run(config))
}

std::thread_local! {
    static IO_THREAD: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// The index of the connection-serving thread this code runs on (see
/// [`Service::set_io_threads`]), `None` elsewhere.
pub fn io_thread() -> Option<usize> {
    IO_THREAD.with(std::cell::Cell::get)
}

/// Serves `app` from `listener` on `threads` threads, each with a
/// single-threaded runtime of its own accepting from a clone of the
/// listener, until `stop` (then each drains its connections). The task
/// returned ends when every thread has; the first error is its result.
fn serve_on_threads(
    listener: TcpListener,
    app: Router,
    threads: usize,
    stop: CancellationToken,
) -> Result<tokio::task::JoinHandle<std::io::Result<()>>, ServiceError> {
    let listener = listener.into_std().map_err(ServiceError::Serve)?;
    let mut finished = Vec::with_capacity(threads);
    for index in 0..threads {
        let listener = listener.try_clone().map_err(ServiceError::Serve)?;
        let app = app.clone();
        let stop = stop.clone();
        let (done, finished_rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(format!("io-{index}"))
            .spawn(move || {
                IO_THREAD.with(|t| t.set(Some(index)));
                let served = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .and_then(|runtime| {
                        runtime.block_on(async move {
                            let listener = TcpListener::from_std(listener)?;
                            axum::serve(
                                crate::http::head_errors::ProblemListener(listener),
                                crate::http::head_errors::WithConnectInfo(app),
                            )
                            .with_graceful_shutdown(async move { stop.cancelled().await })
                            .await
                        })
                    });
                let _ = done.send(served);
            })
            .map_err(ServiceError::Serve)?;
        finished.push(finished_rx);
    }
    Ok(tokio::spawn(async move {
        let mut result = Ok(());
        for rx in finished {
            let served = rx.await.unwrap_or_else(|_| {
                Err(std::io::Error::other(
                    "a connection-serving thread panicked",
                ))
            });
            if result.is_ok() {
                result = served;
            }
        }
        result
    }))
}

/// The multi-threaded tokio runtime services run on.
pub fn runtime() -> Result<tokio::runtime::Runtime, ServiceError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ServiceError::Runtime)
}

/// One service instance, bound and ready to serve.
pub struct Service {
    spec: ServiceSpec,
    common: CommonArgs,
    listener: TcpListener,
    port: u16,
    instance_id: String,
    advertise_host: String,
    metrics: Metrics,
    health: Health,
    /// Cancelled on SIGTERM/SIGINT or by a test; every background task
    /// watches a child of it.
    shutdown: CancellationToken,
    /// Background tasks awaited at shutdown so none is cut mid-write.
    tasks: TaskTracker,
    admin: AdminAuth,
    /// Application faults injected through `/admin/faults`.
    faults: crate::faults::Faults,
    http: reqwest::Client,
    registry: RegistryHttp,
    discovery: Discovery,
    started_at: chrono::DateTime<chrono::Utc>,
    /// Threads that serve connections, each with its own single-threaded
    /// runtime (see [`Service::set_io_threads`]); 0 or 1: the caller's runtime.
    io_threads: usize,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("service", &self.spec.name)
            .field("instance_id", &self.instance_id)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Service {
    /// Binds the listener and prepares registry, health and metrics.
    pub async fn bind(spec: &ServiceSpec, common: CommonArgs) -> Result<Service, ServiceError> {
        let addr = SocketAddr::new(common.bind, common.port_or(spec));
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServiceError::Bind { addr, source })?;
        let port = listener
            .local_addr()
            .map_err(|source| ServiceError::Bind { addr, source })?
            .port();
        let advertise_host = common
            .advertise_host
            .clone()
            .unwrap_or_else(|| route_ip_towards(&common.registry_url).to_string());
        let instance_id = common
            .instance_id
            .clone()
            .unwrap_or_else(|| format!("{advertise_host}:{}:{port}", spec.name));
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(ServiceError::HttpClient)?;
        let admin = AdminAuth::from_common(&common, &http);
        let shutdown = CancellationToken::new();
        let mut registry = RegistryHttp::new(common.registry_url.clone(), http.clone());
        if let Some(credentials) = common.registry_credentials() {
            registry = registry.with_credentials(credentials);
        }
        let discovery = Discovery::new(
            registry.clone(),
            DiscoveryOptions::default(),
            shutdown.child_token(),
        );
        let registers = spec.registers && !common.no_register;
        tracing::info!(service = spec.name, version = spec.version, %instance_id, port, "listening");
        Ok(Service {
            spec: *spec,
            health: Health::new(registers),
            common,
            listener,
            port,
            instance_id,
            advertise_host,
            metrics: Metrics::new(),
            shutdown,
            tasks: TaskTracker::new(),
            admin,
            faults: crate::faults::Faults::default(),
            http,
            registry,
            discovery,
            started_at: chrono::Utc::now(),
            io_threads: 0,
        })
    }

    /// The port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn spec(&self) -> &ServiceSpec {
        &self.spec
    }

    pub fn common(&self) -> &CommonArgs {
        &self.common
    }

    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn health(&self) -> &Health {
        &self.health
    }

    /// The admin authentication the scaffold applies to `/admin`.
    pub fn admin_auth(&self) -> &AdminAuth {
        &self.admin
    }

    /// Replaces the admin authentication chosen from the common options;
    /// for a service that checks admin tokens itself (the identity provider
    /// validates them with its own keys).
    pub fn set_admin_auth(&mut self, admin: AdminAuth) {
        self.admin = admin;
    }

    /// Serves connections on `n` threads (n > 1), each running its own
    /// single-threaded runtime and accepting from the same listener, like
    /// nginx's worker processes; background tasks stay on the caller's
    /// runtime. A connection and everything its requests start (the tasks
    /// of upstream connections made on that thread included) then stay on
    /// one thread: the multi-threaded scheduler's wake-ups and work
    /// stealing between workers cost a proxy about a quarter of its CPU per
    /// request (BENCHMARKS.md, gateway). [`io_thread`] tells a request which
    /// thread it runs on, so per-thread resources can be chosen.
    pub fn set_io_threads(&mut self, n: usize) {
        self.io_threads = n;
    }

    /// The service's application faults (`/admin/faults`).
    pub fn faults(&self) -> &crate::faults::Faults {
        &self.faults
    }

    /// Replaces the fault set (tests give one whose kill assault does not exit the process).
    pub fn set_faults(&mut self, faults: crate::faults::Faults) {
        self.faults = faults;
    }

    /// The validator for `--issuer-url`, when configured: share it (one JWKS
    /// cache per process) to protect other routes.
    pub fn jwt_validator(&self) -> Option<&JwtValidator> {
        self.admin.validator()
    }

    /// A shared HTTP client (pooled connections) for calls to peers.
    pub fn http_client(&self) -> &reqwest::Client {
        &self.http
    }

    /// The registry's REST API.
    pub fn registry(&self) -> &RegistryHttp {
        &self.registry
    }

    /// The cached view of the registry, for finding peers.
    pub fn discovery(&self) -> &Discovery {
        &self.discovery
    }

    /// Cancelled when the service shuts down. Cancel it to stop the service.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Runs a background task that is awaited at shutdown. The future
    /// should finish soon after `shutdown_token()` is cancelled.
    pub fn spawn<F>(&self, name: &'static str, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(async move {
            fut.await;
            tracing::debug!(task = name, "background task stopped");
        });
    }

    /// The instance as it registers itself.
    pub fn instance_info(&self) -> InstanceInfo {
        let mut i = InstanceInfo::new(
            self.spec.name,
            &self.instance_id,
            &self.advertise_host,
            &self.advertise_host,
            self.port,
        );
        i.lease_info = LeaseInfo {
            renewal_interval_in_secs: self.common.lease_renewal_interval.as_secs().max(1) as u32,
            duration_in_secs: self.common.lease_duration.as_secs().max(2) as u32,
            ..LeaseInfo::default()
        };
        i.metadata
            .insert("version".into(), self.spec.version.into());
        i
    }

    /// Serves `api` and `admin` (mounted under `/admin`) with the standard
    /// endpoints until SIGTERM/SIGINT or the shutdown token, then shuts
    /// down in order (see the module docs).
    pub async fn serve(self, api: Router, admin: Router) -> Result<(), ServiceError> {
        let info = Info {
            service: self.spec.name.to_string(),
            version: self.spec.version.to_string(),
            instance_id: self.instance_id.clone(),
            started_at: self.started_at.to_rfc3339(),
        };
        let hard_stop = CancellationToken::new();
        let app = finish(
            api,
            admin,
            Scaffold {
                metrics: self.metrics.clone(),
                health: self.health.clone(),
                info: Arc::new(info),
                admin: self.admin.clone(),
                max_body_bytes: self.common.max_body_bytes,
                private_observability: self.common.private_observability,
                hard_stop: hard_stop.clone(),
                faults: self.faults.clone(),
            },
        );

        tokio::spawn(crate::shutdown::cancel_on_signal(self.shutdown.clone()));
        if let Some(validator) = self.admin.validator() {
            self.spawn(
                "jwks-refresh",
                validator.clone().keep_fresh(self.shutdown.child_token()),
            );
        }

        let registration = if self.spec.registers && !self.common.no_register {
            let stop = CancellationToken::new();
            let reg = Registration::new(self.registry.clone(), self.instance_info());
            let task = tokio::spawn(reg.run(self.health.clone(), stop.clone()));
            Some((stop, task))
        } else {
            None
        };

        let stop_accepting = CancellationToken::new();
        let server = if self.io_threads > 1 {
            serve_on_threads(self.listener, app, self.io_threads, stop_accepting.clone())?
        } else {
            let stop_accepting = stop_accepting.clone();
            tokio::spawn(async move {
                // Through ProblemListener: hyper's own 400/414/431 answers get problem+json
                // bodies. Its connections are not TcpListener's, so the peer address is put
                // into each request here (what into_make_service_with_connect_info does).
                axum::serve(
                    crate::http::head_errors::ProblemListener(self.listener),
                    crate::http::head_errors::WithConnectInfo(app),
                )
                .with_graceful_shutdown(async move { stop_accepting.cancelled().await })
                .await
            })
        };

        let mut server = server;
        let early_exit = tokio::select! {
            _ = self.shutdown.cancelled() => None,
            r = &mut server => Some(r),
        };
        self.shutdown.cancel();
        self.health.set_draining();

        // (1) leave the registry first so nobody picks this instance any more.
        if let Some((stop, task)) = registration {
            stop.cancel();
            if let Ok(reg) = task.await {
                reg.deregister().await;
            }
        }

        // (2) stop accepting, drain in-flight requests, bounded.
        let timeout = self.common.shutdown_timeout;
        let served = match early_exit {
            Some(r) => r,
            None => {
                stop_accepting.cancel();
                match tokio::time::timeout(timeout, &mut server).await {
                    Ok(r) => r,
                    Err(_) => {
                        tracing::warn!(timeout = ?timeout, "in-flight requests did not drain in time; answering them 503");
                        hard_stop.cancel();
                        // Give the 503s a moment to be written, then stop waiting.
                        match tokio::time::timeout(Duration::from_secs(1), &mut server).await {
                            Ok(r) => r,
                            Err(_) => {
                                server.abort();
                                Ok(Ok(()))
                            }
                        }
                    }
                }
            }
        };

        // (3) background tasks.
        self.tasks.close();
        if tokio::time::timeout(timeout, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("background tasks did not stop in time");
        }
        tracing::info!(service = self.spec.name, "stopped");
        match served {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ServiceError::Serve(e)),
            Err(join) => Err(ServiceError::Serve(std::io::Error::other(join.to_string()))),
        }
    }
}
