//! A local, always-fresh view of the registry.
//!
//! [`Discovery`] keeps every application's instances in memory, fed by the
//! registry's long-poll watch endpoint (changes arrive within milliseconds)
//! with a periodic full refresh to repair any drift, and a plain-polling
//! fallback for registries without the watch endpoint (a real Eureka
//! server). [`Discovery::instances`] answers from memory and never waits
//! on the registry once a view exists; only the very first call of a
//! process may wait, bounded, for the first load.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use backoff::Backoff;
use parking_lot::RwLock;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::http::{RegistryError, RegistryHttp};
use crate::model::{ActionType, Applications, InstanceInfo, InstanceStatus, WatchResponse};

/// One reachable instance of a service, as callers need it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServiceInstance {
    pub instance_id: String,
    /// Lower-case service name.
    pub service: String,
    pub host: String,
    pub port: u16,
    pub status: InstanceStatus,
    pub metadata: std::collections::BTreeMap<String, String>,
}

impl ServiceInstance {
    /// `http://host:port`.
    pub fn base_url(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }

    fn from_info(i: &InstanceInfo) -> ServiceInstance {
        let host = if i.ip_addr.is_empty() {
            i.host_name.clone()
        } else {
            i.ip_addr.clone()
        };
        ServiceInstance {
            instance_id: i.instance_id.clone(),
            service: i.app.to_ascii_lowercase(),
            host,
            port: i.port.port,
            status: i.effective_status(),
            metadata: i.metadata.clone(),
        }
    }
}

/// Why instances could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("no view of the registry yet and it did not answer: {0}")]
    NoView(#[source] RegistryError),
}

/// Tuning of the cache.
#[derive(Debug, Clone, Copy)]
pub struct DiscoveryOptions {
    /// How long one watch long-poll may wait.
    pub watch_timeout: Duration,
    /// Every this often the whole registry is fetched again.
    pub full_refresh: Duration,
    /// Poll interval when the registry has no watch endpoint.
    pub poll_interval: Duration,
    /// How long the first `instances` call waits for the first view.
    pub first_load_wait: Duration,
}

impl Default for DiscoveryOptions {
    fn default() -> Self {
        DiscoveryOptions {
            watch_timeout: Duration::from_secs(30),
            // The watch keeps the view exact; the full fetch only repairs a
            // view that drifted anyway, and costs ~1 KB per instance.
            full_refresh: Duration::from_secs(300),
            poll_interval: Duration::from_secs(5),
            first_load_wait: Duration::from_secs(3),
        }
    }
}

/// The cached registry view; cheap to clone.
#[derive(Clone)]
pub struct Discovery {
    inner: Arc<Inner>,
}

struct Inner {
    http: RegistryHttp,
    options: DiscoveryOptions,
    /// instance id → instance, for every application; written by the
    /// watch task only.
    view: RwLock<HashMap<String, InstanceInfo>>,
    /// APP → its UP instances, derived from `view` after every change so
    /// that the per-request read (the load balancer's) is one map lookup
    /// and an `Arc` clone.
    up_by_app: RwLock<HashMap<String, Arc<[ServiceInstance]>>>,
    /// Bumped after every applied change; `subscribe` hands out receivers
    /// so callers (the gateway's balancer, the dashboard) react at once.
    changes: watch::Sender<u64>,
    /// Whether a first view has been loaded.
    loaded: watch::Sender<bool>,
    /// The watch task is started on first use, once.
    started: AtomicBool,
    /// Stops the watch task with the service.
    stop: CancellationToken,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("registry", &self.inner.http.base_url().as_str())
            .finish_non_exhaustive()
    }
}

impl Discovery {
    pub fn new(
        http: RegistryHttp,
        options: DiscoveryOptions,
        stop: CancellationToken,
    ) -> Discovery {
        Discovery {
            inner: Arc::new(Inner {
                http,
                options,
                view: RwLock::new(HashMap::new()),
                up_by_app: RwLock::new(HashMap::new()),
                changes: watch::channel(0).0,
                loaded: watch::channel(false).0,
                started: AtomicBool::new(false),
                stop,
            }),
        }
    }

    /// Starts the background watch if it is not running yet.
    pub fn start(&self) {
        // Called on every `instances` read: a plain load first keeps the
        // per-request path free of a write to this shared flag.
        if !self.inner.started.load(Ordering::Acquire)
            && !self.inner.started.swap(true, Ordering::SeqCst)
        {
            let me = self.clone();
            tokio::spawn(async move { me.watch_loop().await });
        }
    }

    /// The `UP` instances of `service` (case-insensitive), from the cache.
    /// Waits for the first view only if none exists yet.
    pub async fn instances(&self, service: &str) -> Result<Arc<[ServiceInstance]>, DiscoveryError> {
        self.instances_of_app(service, &service.to_ascii_uppercase())
            .await
    }

    /// [`Discovery::instances`] with the application key (`service`
    /// upper-cased) already at hand: the load balancer keeps it, so that a
    /// pick does not upper-case the name again.
    pub(crate) async fn instances_of_app(
        &self,
        service: &str,
        app: &str,
    ) -> Result<Arc<[ServiceInstance]>, DiscoveryError> {
        self.start();
        if !*self.inner.loaded.borrow() {
            let mut rx = self.inner.loaded.subscribe();
            let wait = rx.wait_for(|l| *l);
            if tokio::time::timeout(self.inner.options.first_load_wait, wait)
                .await
                .is_err()
            {
                // No view yet: ask the registry directly, once.
                let fetched = self.inner.http.application(service).await;
                return match fetched {
                    Ok(found) => Ok(up_only(found.instance.iter()).into()),
                    Err(e) if e.is_not_found() => Ok(Arc::from(Vec::new())),
                    Err(e) => Err(DiscoveryError::NoView(e)),
                };
            }
        }
        Ok(self.cached_app(app))
    }

    /// The cached `UP` instances of `service`, without waiting at all.
    pub fn cached(&self, service: &str) -> Arc<[ServiceInstance]> {
        self.cached_app(&service.to_ascii_uppercase())
    }

    /// [`Discovery::cached`] by application key (upper case).
    pub(crate) fn cached_app(&self, app: &str) -> Arc<[ServiceInstance]> {
        self.inner
            .up_by_app
            .read()
            .get(app)
            .cloned()
            .unwrap_or_else(|| Arc::from(Vec::new()))
    }

    /// Rebuilds `up_by_app` from `view`; called with the new view after a change.
    fn rebuild_index(&self, view: &HashMap<String, InstanceInfo>) {
        let mut by_app: HashMap<String, Vec<&InstanceInfo>> = HashMap::new();
        for i in view.values() {
            by_app.entry(i.app.clone()).or_default().push(i);
        }
        let index = by_app
            .into_iter()
            .map(|(app, list)| (app, Arc::from(up_only(list.into_iter()))))
            .collect();
        *self.inner.up_by_app.write() = index;
    }

    /// Every cached instance, any status, for display.
    pub fn snapshot(&self) -> Vec<InstanceInfo> {
        self.inner.view.read().values().cloned().collect()
    }

    /// Whether a first view has been loaded.
    pub fn is_loaded(&self) -> bool {
        *self.inner.loaded.borrow()
    }

    /// A receiver that changes whenever the view changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.start();
        self.inner.changes.subscribe()
    }

    /// Applies a watch answer. The watch task calls it; it is public so
    /// that tests can give a balancer a view without running a registry.
    pub fn apply(&self, resp: &WatchResponse) {
        let mut view = self.inner.view.write();
        if resp.reset {
            view.clear();
        }
        for c in &resp.changes {
            match c.action {
                ActionType::Deleted => {
                    view.remove(&c.instance.instance_id);
                }
                ActionType::Added | ActionType::Modified => {
                    view.insert(c.instance.instance_id.clone(), c.instance.clone());
                }
            }
        }
        if resp.reset || !resp.changes.is_empty() {
            self.rebuild_index(&view);
            drop(view);
            self.inner.changes.send_modify(|v| *v += 1);
        } else {
            drop(view);
        }
        self.inner.loaded.send_replace(true);
    }

    fn apply_full(&self, apps: &Applications) {
        let fresh: HashMap<String, InstanceInfo> = apps
            .instances()
            .map(|i| (i.instance_id.clone(), i.clone()))
            .collect();
        let mut view = self.inner.view.write();
        let changed = *view != fresh;
        *view = fresh;
        if changed {
            self.rebuild_index(&view);
            drop(view);
            self.inner.changes.send_modify(|v| *v += 1);
        }
        self.inner.loaded.send_replace(true);
    }

    async fn watch_loop(self) {
        let opts = self.inner.options;
        let stop = self.inner.stop.clone();
        let mut since = 0u64;
        let mut last_full = Instant::now();
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut polling = false;
        let mut warned = false;
        loop {
            let step = async {
                if polling {
                    let r = self
                        .inner
                        .http
                        .applications()
                        .await
                        .map(|apps| self.apply_full(&apps));
                    tokio::time::sleep(opts.poll_interval).await;
                    return r;
                }
                if last_full.elapsed() >= opts.full_refresh {
                    since = 0;
                    last_full = Instant::now();
                }
                match self.inner.http.watch(since, opts.watch_timeout).await {
                    Ok(resp) => {
                        self.apply(&resp);
                        since = resp.version;
                        Ok(())
                    }
                    Err(e) if e.is_not_found() => {
                        tracing::info!("the registry has no watch endpoint; polling it instead");
                        polling = true;
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            };
            let result = tokio::select! {
                _ = stop.cancelled() => return,
                r = step => r,
            };
            match result {
                Ok(()) => {
                    backoff.reset();
                    if warned {
                        tracing::info!("registry watch recovered");
                        warned = false;
                    }
                }
                Err(e) => {
                    if !warned {
                        tracing::warn!(error = %e, "registry watch failed; serving the cached view and retrying");
                        warned = true;
                    }
                    since = 0;
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(backoff.next_wait()) => {}
                    }
                }
            }
        }
    }
}

fn up_only<'a>(instances: impl Iterator<Item = &'a InstanceInfo>) -> Vec<ServiceInstance> {
    let mut v: Vec<ServiceInstance> = instances
        .filter(|i| i.effective_status() == InstanceStatus::Up && i.port.enabled)
        .map(ServiceInstance::from_info)
        .collect();
    v.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Change;

    fn disc() -> Discovery {
        let http = RegistryHttp::new(
            url::Url::parse("http://127.0.0.1:1").unwrap(),
            reqwest::Client::new(),
        );
        Discovery::new(http, DiscoveryOptions::default(), CancellationToken::new())
    }

    fn inst(app: &str, id: &str, status: InstanceStatus) -> InstanceInfo {
        let mut i = InstanceInfo::new(app, id, "h", "10.0.0.1", 80);
        i.status = status;
        i
    }

    /// Watch answers add, modify and delete instances; only UP ones are offered; a reset replaces the view.
    #[test]
    fn applies_watch_changes() {
        let d = disc();
        let rx = d.inner.changes.subscribe();
        d.apply(&WatchResponse {
            version: 3,
            reset: true,
            changes: vec![
                Change {
                    action: ActionType::Added,
                    instance: inst("order-service", "o1", InstanceStatus::Up),
                },
                Change {
                    action: ActionType::Added,
                    instance: inst("order-service", "o2", InstanceStatus::Starting),
                },
                Change {
                    action: ActionType::Added,
                    instance: inst("inventory-service", "i1", InstanceStatus::Up),
                },
            ],
        });
        assert!(d.is_loaded());
        assert_eq!(d.cached("ORDER-service").len(), 1);
        d.apply(&WatchResponse {
            version: 4,
            reset: false,
            changes: vec![
                Change {
                    action: ActionType::Modified,
                    instance: inst("order-service", "o2", InstanceStatus::Up),
                },
                Change {
                    action: ActionType::Deleted,
                    instance: inst("inventory-service", "i1", InstanceStatus::Up),
                },
            ],
        });
        let ids: Vec<_> = d
            .cached("order-service")
            .iter()
            .map(|i| i.instance_id.clone())
            .collect();
        assert_eq!(ids, ["o1", "o2"]);
        assert!(d.cached("inventory-service").is_empty());
        assert_eq!(*rx.borrow(), 2);
        d.apply(&WatchResponse {
            version: 9,
            reset: true,
            changes: vec![],
        });
        assert!(d.cached("order-service").is_empty());
    }

    /// An instance with an OUT_OF_SERVICE override is not offered even though it reports UP.
    #[test]
    fn override_hides_instance() {
        let d = disc();
        let mut i = inst("a", "1", InstanceStatus::Up);
        i.overridden_status = InstanceStatus::OutOfService;
        d.apply(&WatchResponse {
            version: 1,
            reset: true,
            changes: vec![Change {
                action: ActionType::Added,
                instance: i,
            }],
        });
        assert!(d.cached("a").is_empty());
        assert_eq!(d.snapshot().len(), 1);
    }
}
