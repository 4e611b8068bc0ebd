//! Keeping this instance registered.
//!
//! The agent registers at start, renews the lease every renewal interval,
//! registers again when the registry answers a renewal with 404 (it
//! restarted or evicted us), and reports the instance's health as its
//! status the way Spring Cloud's `eureka.client.healthcheck.enabled` does:
//! `STARTING` until the dependency checks first pass, then `UP`, `DOWN`
//! while a check fails. At shutdown the service stops the agent and then
//! calls [`Registration::deregister`], so no renewal can race the removal.

use std::time::Duration;

use backoff::Backoff;
use tokio_util::sync::CancellationToken;

use super::http::{RegistryError, RegistryHttp, Renewal};
use super::model::{InstanceInfo, InstanceStatus};
use crate::clock::Clock;
use crate::health::Health;

/// This instance's registration.
#[derive(Debug, Clone)]
pub struct Registration {
    http: RegistryHttp,
    instance: InstanceInfo,
    clock: Clock,
}

/// Upper bound of the back-off between failed first registrations.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

impl Registration {
    pub fn new(http: RegistryHttp, instance: InstanceInfo) -> Registration {
        Registration {
            http,
            instance,
            clock: Clock::System,
        }
    }

    /// The instance as last sent to the registry.
    pub fn instance(&self) -> &InstanceInfo {
        &self.instance
    }

    fn renewal_interval(&self) -> Duration {
        Duration::from_secs(u64::from(
            self.instance.lease_info.renewal_interval_in_secs.max(1),
        ))
    }

    async fn register(&mut self, status: InstanceStatus) -> Result<(), RegistryError> {
        let now = self.clock.now_millis();
        self.instance.status = status;
        self.instance.last_dirty_timestamp = now;
        self.instance.last_updated_timestamp = now;
        self.http.register(&self.instance).await
    }

    async fn desired_status(&self, health: &Health, ever_up: bool) -> InstanceStatus {
        let deps = health.dependencies().await;
        match (deps.values().all(|c| c.status == "UP"), ever_up) {
            (true, _) => InstanceStatus::Up,
            (false, false) => InstanceStatus::Starting,
            (false, true) => InstanceStatus::Down,
        }
    }

    /// Registers and renews until `stop` is cancelled. Never returns an
    /// error: the registry being away is a state to wait out, not a failure.
    pub async fn run(mut self, health: Health, stop: CancellationToken) -> Registration {
        let app = self.instance.app.clone();
        let id = self.instance.instance_id.clone();
        let mut ever_up = false;
        let mut registered = false;
        let mut backoff = Backoff::new(Duration::from_millis(100), MAX_BACKOFF);
        let mut last_error: Option<String> = None;
        loop {
            let status = self.desired_status(&health, ever_up).await;
            ever_up |= status == InstanceStatus::Up;
            let outcome = if !registered || status != self.instance.status {
                self.register(status).await.map(|()| {
                    tracing::info!(app = %app, instance_id = %id, status = %status, "registered with the registry");
                    true
                })
            } else {
                match self.http.renew(&self.instance).await {
                    Ok(Renewal::Renewed) => Ok(true),
                    Ok(Renewal::Unknown) => {
                        tracing::warn!(app = %app, instance_id = %id, "the registry does not know this instance; registering again");
                        self.register(status).await.map(|()| true)
                    }
                    Err(e) => Err(e),
                }
            };
            let wait = match outcome {
                Ok(_) => {
                    if last_error.take().is_some() {
                        tracing::info!(app = %app, instance_id = %id, "registry reachable again");
                    }
                    registered = true;
                    health.set_registered(true);
                    backoff.reset();
                    self.renewal_interval()
                }
                Err(e) => {
                    let msg = e.to_string();
                    if last_error.as_deref() != Some(msg.as_str()) {
                        tracing::warn!(app = %app, instance_id = %id, error = %msg, "registry call failed; will retry");
                    }
                    last_error = Some(msg);
                    if registered {
                        // Keep serving: a registry outage must not take instances out of service.
                        self.renewal_interval()
                    } else {
                        backoff.next_wait()
                    }
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return self,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Removes this instance from the registry (best effort, bounded).
    pub async fn deregister(&self) {
        let cancel = self
            .http
            .cancel(&self.instance.app, &self.instance.instance_id);
        match tokio::time::timeout(Duration::from_secs(3), cancel).await {
            Ok(Ok(())) => {
                tracing::info!(instance_id = %self.instance.instance_id, "deregistered from the registry")
            }
            Ok(Err(e)) if e.is_not_found() => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "deregistration failed; the lease will expire")
            }
            Err(_) => tracing::warn!("deregistration timed out; the lease will expire"),
        }
    }
}
