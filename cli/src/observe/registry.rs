//! The registry's view of the stack, through the kit's client so the CLI and the services read
//! the same Eureka JSON: a one-off `GET /eureka/apps` ([`applications`]), and a live view fed by
//! the registry's watch endpoint ([`RegistryWatch`], the kit's [`Discovery`]) for commands that
//! wait for instances to come or go.
//!
//! Instances register under their container name (`ADVERTISE_HOST = ${self.host}` in the
//! stacks), which the host cannot resolve; [`container_of`] maps an instance back to its
//! container so the CLI reaches it through [`super::Observer`].

use std::time::Duration;

use registry_client::discovery::DiscoveryOptions;
use registry_client::model::{Applications, InstanceInfo};
use registry_client::{Discovery, RegistryError, RegistryHttp};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::{ObserveError, Observer, Result};
use crate::runtime::ContainerInfo;

/// The stack's registry, reachable from the host.
pub fn client(obs: &Observer) -> Result<RegistryHttp> {
    let url = obs.resolve(&obs.registry_url_in_network()?)?;
    Ok(RegistryHttp::new(url, obs.http().clone()))
}

/// Everything the registry holds, and the URL it was read from.
pub async fn applications(obs: &Observer) -> Result<(Url, Applications)> {
    let http = client(obs)?;
    let url = http.base_url().clone();
    let apps = http
        .applications()
        .await
        .map_err(|e| registry_error(&url, e))?;
    Ok((url, apps))
}

/// A kit registry error as an [`ObserveError`].
pub fn registry_error(url: &Url, e: RegistryError) -> ObserveError {
    let what = "read the registry".to_string();
    match e {
        RegistryError::Status { status, body, .. } => ObserveError::Status {
            what,
            url: url.to_string(),
            status: status.as_u16(),
            body,
        },
        RegistryError::Decode { detail, .. } => ObserveError::Decode {
            what,
            url: url.to_string(),
            message: detail,
        },
        other => ObserveError::Unreachable {
            what,
            url: url.to_string(),
            message: other.to_string(),
        },
    }
}

/// The container a registered instance runs in: its host name is the container name (how our
/// stacks advertise), else its instance id starts with the container name, else its address is
/// the container's address on the stack network.
pub fn container_of<'a>(
    instance: &InstanceInfo,
    containers: &'a [ContainerInfo],
    network: &str,
) -> Option<&'a ContainerInfo> {
    containers
        .iter()
        .find(|c| c.name == instance.host_name)
        .or_else(|| {
            containers.iter().find(|c| {
                instance
                    .instance_id
                    .strip_prefix(c.name.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(':'))
            })
        })
        .or_else(|| {
            containers.iter().find(|c| {
                !instance.ip_addr.is_empty() && c.addresses.get(network) == Some(&instance.ip_addr)
            })
        })
}

/// A live view of the registry, kept fresh by the watch endpoint (changes arrive within
/// milliseconds); stops when dropped.
pub struct RegistryWatch {
    discovery: Discovery,
    /// Stops the kit's watch task when the view is dropped.
    stop: CancellationToken,
    /// Bumped by the watch task after every change, so waiters wake at once.
    changes: watch::Receiver<u64>,
}

impl RegistryWatch {
    /// Starts watching the registry `http` talks to.
    pub fn start(http: RegistryHttp) -> Self {
        let stop = CancellationToken::new();
        let options = DiscoveryOptions {
            watch_timeout: Duration::from_secs(10),
            full_refresh: Duration::from_secs(30),
            poll_interval: Duration::from_millis(500),
            first_load_wait: Duration::from_secs(3),
        };
        let discovery = Discovery::new(http, options, stop.clone());
        let changes = discovery.subscribe();
        Self {
            discovery,
            stop,
            changes,
        }
    }

    /// Every instance, any status, as last seen; empty until the first answer.
    pub fn snapshot(&self) -> Vec<InstanceInfo> {
        self.discovery.snapshot()
    }

    /// Waits for the next change of the view (forever once the watch task stopped).
    pub async fn changed(&mut self) {
        if self.changes.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Waits until `check` returns `Some` for the current view, or `timeout` passes; on
    /// timeout returns the last view so the caller can say what was missing.
    pub async fn wait_until<T>(
        &mut self,
        timeout: Duration,
        mut check: impl FnMut(&[InstanceInfo]) -> Option<T>,
    ) -> std::result::Result<T, Vec<InstanceInfo>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.discovery.is_loaded()
                && let Some(v) = check(&self.snapshot())
            {
                return Ok(v);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(self.snapshot());
            }
            // Wake on a change, and at least twice a second (the first load is not a change
            // when the registry is empty).
            tokio::select! {
                _ = self.changes.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }
}

impl Drop for RegistryWatch {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn container(name: &str, ip: &str) -> ContainerInfo {
        ContainerInfo {
            id: name.into(),
            name: name.into(),
            image: String::new(),
            stack: "dev".into(),
            service: "order-service".into(),
            instance: 1,
            state: "running".into(),
            health: None,
            addresses: HashMap::from([("platform-dev".to_string(), ip.to_string())]),
            labels: HashMap::new(),
            ports: vec![],
            exit_code: None,
            restart_count: 0,
            oom_killed: false,
        }
    }

    /// Instances find their container by host name, by instance-id prefix (not a longer
    /// container name that shares it), or by address; a stranger matches nothing.
    #[test]
    fn maps_instances_to_containers() {
        let containers = vec![
            container("platform-dev-order-service-1", "172.20.0.7"),
            container("platform-dev-order-service-10", "172.20.0.8"),
        ];
        let by_host = InstanceInfo::new(
            "order-service",
            "x",
            "platform-dev-order-service-10",
            "platform-dev-order-service-10",
            8082,
        );
        assert_eq!(
            container_of(&by_host, &containers, "platform-dev").map(|c| c.id.as_str()),
            Some("platform-dev-order-service-10")
        );
        let by_id = InstanceInfo::new(
            "order-service",
            "platform-dev-order-service-1:order-service:8082",
            "elsewhere",
            "",
            8082,
        );
        assert_eq!(
            container_of(&by_id, &containers, "platform-dev").map(|c| c.id.as_str()),
            Some("platform-dev-order-service-1")
        );
        let by_ip = InstanceInfo::new("order-service", "i", "h", "172.20.0.8", 8082);
        assert_eq!(
            container_of(&by_ip, &containers, "platform-dev").map(|c| c.id.as_str()),
            Some("platform-dev-order-service-10")
        );
        let stranger = InstanceInfo::new("order-service", "i", "h", "10.0.0.1", 8082);
        assert!(container_of(&stranger, &containers, "platform-dev").is_none());
    }
}
