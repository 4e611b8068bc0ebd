//! Liveness and readiness.
//!
//! Live means the process answers. Ready means it can do its job: every
//! registered dependency check passes, registration with the registry
//! succeeded (for services that register) and shutdown has not begun.
//! The answer is shaped like Spring Boot's actuator health so the tools our
//! users know read it: `{"status":"UP","components":{"db":{"status":"UP"}}}`.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
type CheckFn = Arc<dyn Fn() -> CheckFuture + Send + Sync>;

/// How long one dependency check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The readiness state of one service instance; cheap to clone.
#[derive(Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

struct Inner {
    /// Dependency checks, added by the service at start (database, broker...).
    checks: RwLock<Vec<(String, CheckFn)>>,
    /// Whether readiness waits for registration (services that register).
    needs_registration: bool,
    /// Set by the registration task once the registry accepted us.
    registered: AtomicBool,
    /// Set when shutdown begins, so load balancers stop sending traffic.
    draining: AtomicBool,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("registered", &self.inner.registered.load(Ordering::Relaxed))
            .field("draining", &self.inner.draining.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// One component's state in a health report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentHealth {
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The body of `/health/ready`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    pub status: String,
    pub components: BTreeMap<String, ComponentHealth>,
}

impl HealthReport {
    pub fn is_up(&self) -> bool {
        self.status == "UP"
    }
}

impl Health {
    pub fn new(needs_registration: bool) -> Health {
        Health {
            inner: Arc::new(Inner {
                checks: RwLock::new(Vec::new()),
                needs_registration,
                registered: AtomicBool::new(false),
                draining: AtomicBool::new(false),
            }),
        }
    }

    /// Adds a named dependency check, e.g. `SELECT 1` against the database.
    pub fn add_check<F, Fut>(&self, name: &str, check: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let f: CheckFn = Arc::new(move || Box::pin(check()));
        self.inner.checks.write().push((name.to_string(), f));
    }

    pub fn set_registered(&self, registered: bool) {
        self.inner.registered.store(registered, Ordering::SeqCst);
    }

    pub fn set_draining(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    /// Runs the dependency checks only (what registration reports as UP/DOWN).
    pub async fn dependencies(&self) -> BTreeMap<String, ComponentHealth> {
        let checks: Vec<(String, CheckFn)> = self.inner.checks.read().clone();
        let results = futures::future::join_all(checks.into_iter().map(|(name, f)| async move {
            let outcome = match tokio::time::timeout(CHECK_TIMEOUT, f()).await {
                Ok(Ok(())) => ComponentHealth {
                    status: "UP".into(),
                    detail: None,
                },
                Ok(Err(e)) => ComponentHealth {
                    status: "DOWN".into(),
                    detail: Some(e),
                },
                Err(_) => ComponentHealth {
                    status: "DOWN".into(),
                    detail: Some(format!("no answer within {}s", CHECK_TIMEOUT.as_secs())),
                },
            };
            (name, outcome)
        }))
        .await;
        results.into_iter().collect()
    }

    /// The full readiness report.
    pub async fn readiness(&self) -> HealthReport {
        let mut components = self.dependencies().await;
        if self.inner.needs_registration {
            let registered = self.inner.registered.load(Ordering::SeqCst);
            components.insert(
                "registry".into(),
                ComponentHealth {
                    status: if registered { "UP" } else { "DOWN" }.into(),
                    detail: (!registered).then(|| "not registered with the registry yet".into()),
                },
            );
        }
        if self.is_draining() {
            components.insert(
                "shutdown".into(),
                ComponentHealth {
                    status: "DOWN".into(),
                    detail: Some("shutting down".into()),
                },
            );
        }
        let up = components.values().all(|c| c.status == "UP");
        HealthReport {
            status: if up { "UP" } else { "DOWN" }.into(),
            components,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ready needs every check up and registration done; draining turns it down again.
    #[tokio::test]
    async fn readiness_follows_checks_registration_and_drain() {
        let h = Health::new(true);
        let flag = Arc::new(AtomicBool::new(false));
        let f2 = flag.clone();
        h.add_check("db", move || {
            let ok = f2.load(Ordering::SeqCst);
            async move {
                if ok {
                    Ok(())
                } else {
                    Err("connection refused".into())
                }
            }
        });
        let r = h.readiness().await;
        assert!(!r.is_up());
        assert_eq!(
            r.components["db"].detail.as_deref(),
            Some("connection refused")
        );
        flag.store(true, Ordering::SeqCst);
        assert!(!h.readiness().await.is_up(), "still unregistered");
        h.set_registered(true);
        assert!(h.readiness().await.is_up());
        h.set_draining();
        assert!(!h.readiness().await.is_up());
    }
}
