//! Readers of the running system: the only module that reads the stack's services for display
//! and checks (ARCHITECTURE.md). Commands (`status`, `logs`, `scale`, `token`, `smoke`) and the
//! dashboard take what they show from here.
//!
//! [`Observer`] holds one look at the stack's containers (from [`crate::runtime`]) and knows how
//! to reach each of them from the host ([`reach`]). Where things are comes from the stack file,
//! never from hard-coded addresses: the registry is what services' `REGISTRY_URL` names, the
//! identity provider their `ISSUER_URL`, the trace collector their `ZIPKIN_ENDPOINT`; a URL whose
//! host is a service or container name is rewritten to a reachable address by [`Observer::resolve`].
//!
//! - [`registry`]: the registry's view (`GET /eureka/apps`, and the watch endpoint through
//!   the registry client's [`registry_client::Discovery`]).
//! - [`status`]: containers joined to the registry's view, with drift.
//! - [`logs`]: container output of all instances merged in time order.
//! - [`auth`]: access tokens from the stack's identity provider.
//! - [`admin`]: the services' admin endpoints (breakers, consumer reports, upstreams).
//! - [`kafka`]: the broker's topics, groups and lag per partition (kafka-lag).
//! - [`traces`]: the trace collector's Zipkin API.

pub mod admin;
pub mod auth;
mod error;
pub mod kafka;
pub mod logs;
pub mod reach;
pub mod ready;
pub mod registry;
pub mod status;
pub mod traces;

use std::time::Duration;

use serde::de::DeserializeOwned;
use url::Url;

pub use error::ObserveError;
pub use reach::Route;

use crate::runtime::{ContainerInfo, Runtime};
use crate::stack::Stack;

/// Result alias for readers of the running system.
pub type Result<T, E = ObserveError> = std::result::Result<T, E>;

/// The environment variable naming the registry, as the kit reads it.
pub const REGISTRY_URL_ENV: &str = "REGISTRY_URL";
/// The environment variable naming the token issuer, as the kit reads it.
pub const ISSUER_URL_ENV: &str = "ISSUER_URL";
/// The environment variable naming the span endpoint, as the kit reads it.
pub const ZIPKIN_ENDPOINT_ENV: &str = "ZIPKIN_ENDPOINT";

/// How long a connection to a service may take before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a whole request to a service may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One look at a running stack, and the means to read its services.
#[derive(Debug, Clone)]
pub struct Observer {
    rt: Runtime,
    stack: Stack,
    route: Route,
    /// One pooled client for every read, so repeated reads reuse connections.
    http: reqwest::Client,
    /// The stack's containers (running or not) at the last [`Observer::refresh`], with their
    /// health as [`ready::Prober::health`] reads it.
    containers: Vec<ContainerInfo>,
    /// Checks containers that Docker still calls `starting` ([`ready`]).
    prober: ready::Prober,
}

impl Observer {
    /// Lists the stack's containers and picks the route to them ([`Route::detect`]).
    pub async fn new(rt: Runtime, stack: Stack) -> Result<Self> {
        let route = Route::detect().map_err(ObserveError::Setting)?;
        Self::with_route(rt, stack, route).await
    }

    /// Like [`Observer::new`] with an explicit route.
    pub async fn with_route(rt: Runtime, stack: Stack, route: Route) -> Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| ObserveError::Setting(format!("cannot make an HTTP client: {e}")))?;
        let prober = ready::Prober::new(matches!(route, Route::Address));
        let mut me = Self {
            rt,
            stack,
            route,
            http,
            containers: Vec::new(),
            prober,
        };
        me.refresh().await?;
        Ok(me)
    }

    /// Lists the containers again, with their health as [`ready::Prober::health`] reads it.
    pub async fn refresh(&mut self) -> Result<()> {
        let mut containers = self
            .rt
            .list_containers(Some(&self.stack.name), None)
            .await?;
        self.prober.settle(&mut containers).await;
        self.containers = containers;
        Ok(())
    }

    pub fn runtime(&self) -> &Runtime {
        &self.rt
    }

    pub fn stack(&self) -> &Stack {
        &self.stack
    }

    pub fn route(&self) -> &Route {
        &self.route
    }

    /// The shared HTTP client (3 s connect, 10 s per request).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Every container of the stack at the last refresh, by service and instance.
    pub fn containers(&self) -> &[ContainerInfo] {
        &self.containers
    }

    /// True when at least one container of the stack runs.
    pub fn is_running(&self) -> bool {
        self.containers.iter().any(|c| c.state == "running")
    }

    /// Fails with [`ObserveError::NotRunning`] unless the stack runs.
    pub fn require_running(&self) -> Result<()> {
        if self.is_running() {
            Ok(())
        } else {
            Err(ObserveError::NotRunning {
                stack: self.stack.name.clone(),
            })
        }
    }

    /// The running containers of `service`, ready ones (healthy, or without a health check)
    /// first, then by instance.
    pub fn running(&self, service: &str) -> Vec<&ContainerInfo> {
        let mut list: Vec<&ContainerInfo> = self
            .containers
            .iter()
            .filter(|c| c.service == service && c.state == "running")
            .collect();
        list.sort_by_key(|c| (!c.is_ready(), c.instance));
        list
    }

    /// The base URL of one container on its service's port.
    pub fn container_url(&self, container: &ContainerInfo) -> Result<Url> {
        let port = self
            .stack
            .services
            .get(&container.service)
            .and_then(|s| s.port)
            .ok_or_else(|| ObserveError::NoRoute {
                container: container.name.clone(),
                port: 0,
                reason: format!("the stack gives service `{}` no `port`", container.service),
            })?;
        self.route
            .base_url(container, &self.stack.network_name(), port)
    }

    /// The base URL of a ready instance of `service`.
    pub fn service_url(&self, service: &str) -> Result<Url> {
        let container = self
            .running(service)
            .into_iter()
            .next()
            .ok_or_else(|| self.no_instance(service))?;
        self.container_url(container)
    }

    /// Each running instance of `service` with its base URL (or why it cannot be reached).
    pub fn instance_urls(&self, service: &str) -> Vec<(&ContainerInfo, Result<Url>)> {
        let mut list = self.running(service);
        list.sort_by_key(|c| c.instance);
        list.into_iter()
            .map(|c| (c, self.container_url(c)))
            .collect()
    }

    fn no_instance(&self, service: &str) -> ObserveError {
        ObserveError::NoInstance {
            service: service.to_string(),
            stack: self.stack.name.clone(),
        }
    }

    /// Rewrites a URL as the stack's services use it (host = a service's DNS name or a
    /// container name) into one the host can open; other URLs are returned unchanged.
    pub fn resolve(&self, in_network: &Url) -> Result<Url> {
        let Some(host) = in_network.host_str() else {
            return Ok(in_network.clone());
        };
        let network = self.stack.network_name();
        let container = if let Some(service) = self.stack.services.get(host) {
            *self
                .running(&service.name)
                .first()
                .ok_or_else(|| self.no_instance(&service.name))?
        } else if let Some(c) = self.containers.iter().find(|c| c.name == host) {
            c
        } else {
            return Ok(in_network.clone());
        };
        let port = in_network
            .port_or_known_default()
            .or_else(|| self.stack.services.get(&container.service)?.port)
            .unwrap_or(80);
        let base = self.route.base_url(container, &network, port)?;
        let mut url = in_network.clone();
        // Both are http(s) URLs with a host, so these cannot fail; keep the original if they do.
        let _ = url.set_host(base.host_str());
        let _ = url.set_port(base.port());
        Ok(url)
    }

    /// The value of `key` in the environment of the first service (by name) that sets it,
    /// rendered for its first instance, with that service's name.
    pub fn env_value(&self, key: &str) -> Option<(String, String)> {
        self.stack.services.values().find_map(|s| {
            s.env
                .get(key)
                .map(|t| (s.name.clone(), t.render(&self.stack, &s.name, 1)))
        })
    }

    /// The URL in `key` of the stack's environment, as the services use it.
    fn env_url(&self, key: &'static str, what: &'static str) -> Result<Url> {
        let (service, value) = self
            .env_value(key)
            .ok_or_else(|| ObserveError::NotConfigured {
                stack: self.stack.name.clone(),
                what,
                env: key,
            })?;
        Url::parse(&value).map_err(|e| {
            ObserveError::Setting(format!(
                "{key} of service `{service}` is not a URL ({value}): {e}"
            ))
        })
    }

    /// The registry's URL as the services use it (their `REGISTRY_URL`).
    pub fn registry_url_in_network(&self) -> Result<Url> {
        self.env_url(REGISTRY_URL_ENV, "the registry")
    }

    /// The token issuer as the services check it (their `ISSUER_URL`).
    pub fn issuer_in_network(&self) -> Result<Url> {
        self.env_url(ISSUER_URL_ENV, "the identity provider")
    }

    /// The span endpoint the services export to (their `ZIPKIN_ENDPOINT`).
    pub fn zipkin_endpoint_in_network(&self) -> Result<Url> {
        self.env_url(ZIPKIN_ENDPOINT_ENV, "the trace collector")
    }

    /// `GET url` with an optional bearer token, expecting 2xx and JSON of type `T`.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        what: &str,
        url: &Url,
        bearer: Option<&str>,
    ) -> Result<T> {
        let mut req = self.http.get(url.clone());
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        send_json(what, url, req).await
    }
}

/// Sends a request, expects 2xx and reads its JSON body as `T`.
pub async fn send_json<T: DeserializeOwned>(
    what: &str,
    url: &Url,
    req: reqwest::RequestBuilder,
) -> Result<T> {
    let res = send(what, url, req).await?;
    let res = expect_success(what, url, res).await?;
    read_json(what, url, res).await
}

/// Sends a request, turning transport failures into [`ObserveError::Unreachable`].
pub async fn send(
    what: &str,
    url: &Url,
    req: reqwest::RequestBuilder,
) -> Result<reqwest::Response> {
    req.send().await.map_err(|e| ObserveError::Unreachable {
        what: what.to_string(),
        url: url.to_string(),
        message: error_chain(&e),
    })
}

/// Passes 2xx answers; others become [`ObserveError::Status`] with the start of the body.
pub async fn expect_success(
    what: &str,
    url: &Url,
    res: reqwest::Response,
) -> Result<reqwest::Response> {
    if res.status().is_success() {
        return Ok(res);
    }
    let status = res.status().as_u16();
    let body = res.text().await.unwrap_or_default();
    Err(ObserveError::Status {
        what: what.to_string(),
        url: url.to_string(),
        status,
        body: body.chars().take(300).collect(),
    })
}

/// Reads a JSON body as `T`.
pub async fn read_json<T: DeserializeOwned>(
    what: &str,
    url: &Url,
    res: reqwest::Response,
) -> Result<T> {
    let decode = |message: String| ObserveError::Decode {
        what: what.to_string(),
        url: url.to_string(),
        message,
    };
    let bytes = res.bytes().await.map_err(|e| decode(error_chain(&e)))?;
    serde_json::from_slice(&bytes).map_err(|e| decode(e.to_string()))
}

/// reqwest's message with its causes ("error sending request: connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// How an instance is named in output: `order-service-2`.
pub fn instance_label(c: &ContainerInfo) -> String {
    format!("{}-{}", c.service, c.instance)
}
