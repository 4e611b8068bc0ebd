//! How the CLI on the host reaches services inside the stack network: the one place that turns
//! "container C, port P" into a URL the host can open.
//!
//! **Container addresses (the default on Linux with a local engine).** A user-defined bridge
//! network is a Linux bridge on the host, so the host routes to every container address on it:
//! `http://<container ip>:<port>` reaches every service and every instance, published or not,
//! on the same port its peers use. Status, admin readers, tokens and smoke all work without
//! publishing anything but the gateway.
//!
//! **Published ports (the fallback).** Docker Desktop (macOS, Windows) runs the engine in a VM:
//! container addresses are not routable from the host, and an engine reached through
//! `DOCKER_HOST=tcp://...` runs on another machine. There the CLI can only use published ports:
//! `http://<published address>:<host port>`. The limit: only services the stack publishes are
//! reachable (the dev stack publishes the gateway alone), so commands that need an unpublished
//! service fail with [`ObserveError::NoRoute`] and a hint to publish its port.
//!
//! `PLATFORM_REACH=address|published` overrides the choice (e.g. a Linux VM whose engine is
//! remote, or to test the fallback).

use url::Url;

use super::ObserveError;
use crate::runtime::ContainerInfo;

/// The environment variable that overrides [`Route::detect`].
pub const REACH_ENV: &str = "PLATFORM_REACH";

/// How the host reaches containers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "route")]
pub enum Route {
    /// The container's address on the stack network.
    Address,
    /// A published host port; `host` is used when the binding is on all addresses.
    Published { host: String },
}

impl Route {
    /// The route for this machine: `PLATFORM_REACH` if set, else container addresses on Linux
    /// with a local engine, published ports otherwise.
    pub fn detect() -> Result<Route, String> {
        let reach = std::env::var(REACH_ENV).ok();
        let docker_host = std::env::var("DOCKER_HOST").ok();
        Route::choose(
            reach.as_deref(),
            std::env::consts::OS,
            docker_host.as_deref(),
        )
    }

    /// [`Route::detect`] from explicit inputs (pure, so every case is tested).
    pub fn choose(
        reach: Option<&str>,
        os: &str,
        docker_host: Option<&str>,
    ) -> Result<Route, String> {
        let remote = docker_host.and_then(remote_host);
        let published = || Route::Published {
            host: remote.clone().unwrap_or_else(|| "127.0.0.1".to_string()),
        };
        match reach.map(str::trim).filter(|r| !r.is_empty()) {
            Some("address") => Ok(Route::Address),
            Some("published") => Ok(published()),
            Some("auto") | None => {
                if os == "linux" && remote.is_none() {
                    Ok(Route::Address)
                } else {
                    Ok(published())
                }
            }
            Some(other) => Err(format!(
                "{REACH_ENV}={other} is not a route: use `address`, `published` or `auto`"
            )),
        }
    }

    /// A short name for status output.
    pub fn name(&self) -> &'static str {
        match self {
            Route::Address => "address",
            Route::Published { .. } => "published",
        }
    }

    /// The base URL (`http://host:port`) at which the host reaches `port` of `container`.
    pub fn base_url(
        &self,
        container: &ContainerInfo,
        network: &str,
        port: u16,
    ) -> Result<Url, ObserveError> {
        let no_route = |reason: String| ObserveError::NoRoute {
            container: container.name.clone(),
            port,
            reason,
        };
        if container.state != "running" {
            return Err(no_route(format!("the container is {}", container.state)));
        }
        let (host, port) = match self {
            Route::Address => {
                let ip = container
                    .addresses
                    .get(network)
                    .ok_or_else(|| no_route(format!("it has no address on network {network}")))?;
                (ip.clone(), port)
            }
            Route::Published { host } => {
                let binding = container
                    .ports
                    .iter()
                    .find(|p| p.container_port == port)
                    .ok_or_else(|| {
                        no_route(
                            "the port is not published, and published ports are the only route here"
                                .to_string(),
                        )
                    })?;
                let bound = binding
                    .host_ip
                    .as_deref()
                    .filter(|ip| !matches!(*ip, "0.0.0.0" | "::" | ""));
                (
                    bound.map_or_else(|| host.clone(), str::to_string),
                    binding.host_port,
                )
            }
        };
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host
        };
        Url::parse(&format!("http://{host}:{port}")).map_err(|e| no_route(e.to_string()))
    }
}

/// The host of a `tcp://` or `http(s)://` engine address that is not this machine.
fn remote_host(docker_host: &str) -> Option<String> {
    let url = Url::parse(docker_host).ok()?;
    if !matches!(url.scheme(), "tcp" | "http" | "https" | "ssh") {
        return None;
    }
    let host = url.host_str()?.trim_matches(['[', ']']).to_string();
    (!matches!(host.as_str(), "localhost" | "127.0.0.1" | "::1")).then_some(host)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::runtime::PortSpec;

    fn container(state: &str) -> ContainerInfo {
        ContainerInfo {
            id: "abc".into(),
            name: "platform-dev-api-gateway-1".into(),
            image: "platform/api-gateway:1".into(),
            stack: "dev".into(),
            service: "api-gateway".into(),
            instance: 1,
            state: state.into(),
            health: None,
            addresses: HashMap::from([("platform-dev".to_string(), "172.20.0.5".to_string())]),
            labels: HashMap::new(),
            ports: vec![PortSpec {
                host_ip: Some("0.0.0.0".into()),
                host_port: 18080,
                container_port: 8080,
            }],
            exit_code: None,
            restart_count: 0,
            oom_killed: false,
        }
    }

    /// Linux with a local socket routes to container addresses; macOS, Windows and remote
    /// engines use published ports (on the engine's host when it is remote); the variable wins.
    #[test]
    fn chooses_the_route() {
        let local = Some("unix:///var/run/docker.sock");
        assert_eq!(Route::choose(None, "linux", local), Ok(Route::Address));
        assert_eq!(Route::choose(None, "linux", None), Ok(Route::Address));
        let loopback = Route::Published {
            host: "127.0.0.1".into(),
        };
        assert_eq!(Route::choose(None, "macos", local), Ok(loopback.clone()));
        assert_eq!(Route::choose(None, "windows", None), Ok(loopback.clone()));
        assert_eq!(
            Route::choose(None, "linux", Some("tcp://10.0.0.7:2375")),
            Ok(Route::Published {
                host: "10.0.0.7".into()
            })
        );
        assert_eq!(
            Route::choose(None, "linux", Some("tcp://127.0.0.1:2375")),
            Ok(Route::Address)
        );
        assert_eq!(
            Route::choose(Some("published"), "linux", local),
            Ok(loopback)
        );
        assert_eq!(
            Route::choose(Some("address"), "macos", local),
            Ok(Route::Address)
        );
        assert!(Route::choose(Some("tunnel"), "linux", local).is_err());
    }

    /// Addresses give `ip:port`; published ports give the binding (all-address bindings on the
    /// route's host); an unpublished port or a stopped container is a `NoRoute` saying why.
    #[test]
    fn base_urls() {
        let c = container("running");
        assert_eq!(
            Route::Address
                .base_url(&c, "platform-dev", 8080)
                .unwrap()
                .as_str(),
            "http://172.20.0.5:8080/"
        );
        assert!(matches!(
            Route::Address.base_url(&c, "other-net", 8080),
            Err(ObserveError::NoRoute { .. })
        ));
        let published = Route::Published {
            host: "127.0.0.1".into(),
        };
        assert_eq!(
            published
                .base_url(&c, "platform-dev", 8080)
                .unwrap()
                .as_str(),
            "http://127.0.0.1:18080/"
        );
        let err = published
            .base_url(&c, "platform-dev", 8082)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not published"), "{err}");
        let mut bound = c.clone();
        bound.ports[0].host_ip = Some("::1".into());
        assert_eq!(
            published
                .base_url(&bound, "platform-dev", 8080)
                .unwrap()
                .as_str(),
            "http://[::1]:18080/"
        );
        let err = Route::Address
            .base_url(&container("exited"), "platform-dev", 8080)
            .unwrap_err()
            .to_string();
        assert!(err.contains("is exited"), "{err}");
    }
}
