//! Client-side load balancing over a service's registered instances.
//!
//! A [`Balancer`] serves one upstream service. It reads the instances from
//! the watch-fed [`Discovery`] cache on every pick (so registry changes take
//! effect at once), chooses one by round robin or by power-of-two-choices on
//! in-flight requests, and ejects instances passively: a streak of connect
//! errors or 5xx answers takes an instance out of rotation for a back-off
//! that grows with each ejection (Envoy's outlier detection). That is how a
//! dead instance stops receiving traffic within a second, long before its
//! registry lease expires.
//!
//! Picks are guards: [`Pick`] counts the request as in flight until it is
//! dropped, and the caller reports the outcome with [`Pick::success`] or
//! [`Pick::failure`]. Retries ask for another instance by passing the ids
//! already tried to [`Balancer::pick_excluding`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::RwLock;
use rand::Rng;
use serde::Serialize;

use clock::Clock;

use crate::discovery::{Discovery, ServiceInstance};

/// How an instance is chosen among the healthy ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Each instance in turn.
    RoundRobin,
    /// Two instances at random, the one with fewer requests in flight wins:
    /// adapts to slow instances without global state (Mitzenmacher).
    #[default]
    PowerOfTwoChoices,
}

/// When and for how long instances are ejected.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct EjectionPolicy {
    /// Consecutive connect errors (refused, reset, timeout before a byte
    /// was answered) that eject an instance.
    pub consecutive_connect_errors: u32,
    /// Consecutive 5xx answers that eject an instance.
    pub consecutive_5xx: u32,
    /// First ejection length; the n-th ejection lasts n times as long.
    pub base_ejection: Duration,
    /// Longest ejection.
    pub max_ejection: Duration,
}

impl Default for EjectionPolicy {
    fn default() -> Self {
        EjectionPolicy {
            consecutive_connect_errors: 1,
            consecutive_5xx: 5,
            base_ejection: Duration::from_secs(2),
            max_ejection: Duration::from_secs(60),
        }
    }
}

/// What happened to a request sent through a [`Pick`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Could not connect or the connection broke before an answer.
    Connect,
    /// The instance answered with a 5xx status.
    ServerError,
    /// The call timed out waiting for an answer (counts toward the 5xx streak).
    Timeout,
}

/// Per-instance counters, shared between picks of the same instance.
#[derive(Debug, Default)]
struct Endpoint {
    in_flight: AtomicU32,
    requests: AtomicU64,
    failures: AtomicU64,
    connect_streak: AtomicU32,
    server_error_streak: AtomicU32,
    /// Epoch ms until which the instance is out of rotation (0 = never ejected).
    ejected_until: AtomicU64,
    /// How many times it has been ejected; grows the back-off, reset by a
    /// success after an ejection ended.
    ejections: AtomicU32,
    total_ejections: AtomicU64,
}

/// The state of one instance, for `/admin/upstreams` and the dashboard
/// (`Deserialize` so the platform CLI reads it with the same type).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EndpointStatus {
    pub instance_id: String,
    pub url: String,
    pub in_flight: u32,
    pub requests: u64,
    pub failures: u64,
    pub ejected: bool,
    pub ejected_for_ms: u64,
    pub ejections: u64,
}

/// A balancer for one upstream service; cheap to clone.
#[derive(Clone)]
pub struct Balancer {
    inner: Arc<Inner>,
}

struct Inner {
    service: String,
    /// `service` upper-cased, the registry's application key, computed
    /// once rather than on every pick.
    app: String,
    discovery: Discovery,
    strategy: Strategy,
    policy: EjectionPolicy,
    clock: Clock,
    /// Counters by instance id. Entries for instances that left the
    /// registry are dropped lazily in `status()`.
    endpoints: RwLock<HashMap<String, Arc<Endpoint>>>,
    /// The last instance list seen, with each instance's counters beside
    /// it: while the registry view is unchanged (the same `Arc`), a pick
    /// finds every instance's counters by position instead of by a map
    /// lookup of its id. Replaced when the discovery cache hands out a new
    /// list.
    current: RwLock<Option<Arc<Snapshot>>>,
    /// Round-robin cursor.
    next: AtomicUsize,
}

/// An instance list and the counters of each of its instances, by position.
struct Snapshot {
    instances: Arc<[ServiceInstance]>,
    endpoints: Box<[Arc<Endpoint>]>,
}

impl std::fmt::Debug for Balancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Balancer")
            .field("service", &self.inner.service)
            .field("strategy", &self.inner.strategy)
            .finish_non_exhaustive()
    }
}

/// A chosen instance; the request counts as in flight until this is dropped.
pub struct Pick {
    /// The list the instance was chosen from (shared, not copied).
    snapshot: Arc<Snapshot>,
    index: usize,
    balancer: Balancer,
}

impl std::fmt::Debug for Pick {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pick")
            .field("instance", self.instance())
            .finish_non_exhaustive()
    }
}

impl Pick {
    /// The chosen instance.
    pub fn instance(&self) -> &ServiceInstance {
        &self.snapshot.instances[self.index]
    }

    fn endpoint(&self) -> &Endpoint {
        &self.snapshot.endpoints[self.index]
    }

    /// `http://host:port` of the chosen instance.
    pub fn base_url(&self) -> String {
        self.instance().base_url()
    }

    /// The request succeeded (any answer below 500).
    pub fn success(self) {
        self.record_success();
    }

    /// The request failed; may eject the instance.
    pub fn failure(self, kind: Failure) {
        self.record_failure(kind);
    }

    /// Like [`Pick::success`], but keeps the pick: a proxy reports the
    /// verdict when the answer's head arrives and keeps the request in
    /// flight until its body has been streamed (so power-of-two-choices
    /// sees long downloads).
    pub fn record_success(&self) {
        let e = self.endpoint();
        e.connect_streak.store(0, Ordering::Relaxed);
        e.server_error_streak.store(0, Ordering::Relaxed);
        let now = self.balancer.inner.clock.now_millis();
        if e.ejections.load(Ordering::Relaxed) > 0 && e.ejected_until.load(Ordering::Relaxed) <= now
        {
            e.ejections.store(0, Ordering::Relaxed);
        }
    }

    /// Like [`Pick::failure`], but keeps the pick (see [`Pick::record_success`]).
    pub fn record_failure(&self, kind: Failure) {
        self.balancer
            .record_failure(self.instance(), self.endpoint(), kind);
    }
}

impl Drop for Pick {
    fn drop(&mut self) {
        // A pick dropped without a verdict (the caller gave up) counts as
        // neither success nor failure.
        self.endpoint().in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Balancer {
    pub fn new(
        service: &str,
        discovery: Discovery,
        strategy: Strategy,
        policy: EjectionPolicy,
    ) -> Balancer {
        Balancer::with_clock(service, discovery, strategy, policy, Clock::System)
    }

    /// A balancer whose ejection times follow `clock` (tests).
    pub fn with_clock(
        service: &str,
        discovery: Discovery,
        strategy: Strategy,
        policy: EjectionPolicy,
        clock: Clock,
    ) -> Balancer {
        Balancer {
            inner: Arc::new(Inner {
                service: service.to_ascii_lowercase(),
                app: service.to_ascii_uppercase(),
                discovery,
                strategy,
                policy,
                clock,
                endpoints: RwLock::new(HashMap::new()),
                current: RwLock::new(None),
                next: AtomicUsize::new(0),
            }),
        }
    }

    /// The upstream service's name.
    pub fn service(&self) -> &str {
        &self.inner.service
    }

    pub fn strategy(&self) -> Strategy {
        self.inner.strategy
    }

    /// Chooses an instance, or `None` when the service has no UP instance.
    pub fn pick(&self) -> Option<Pick> {
        self.pick_excluding(&[])
    }

    /// Chooses an instance not in `tried` (for retries); falls back to a
    /// tried one only when nothing else exists.
    pub fn pick_excluding(&self, tried: &[String]) -> Option<Pick> {
        self.pick_excluding_with(self.inner.strategy, tried)
    }

    /// Like [`Balancer::pick_excluding`] with another strategy than the
    /// balancer's own: the gateway chooses the strategy per route while
    /// every route to a service shares one balancer, so an instance's
    /// in-flight count and ejection are the same whichever route asks.
    pub fn pick_excluding_with(&self, strategy: Strategy, tried: &[String]) -> Option<Pick> {
        let all = self.inner.discovery.cached_app(&self.inner.app);
        self.pick_from(all, tried, strategy)
    }

    /// Like [`Balancer::pick_excluding`], but waits for the first registry
    /// view when the process has none yet.
    pub async fn pick_ready(&self, tried: &[String]) -> Option<Pick> {
        self.pick_ready_with(self.inner.strategy, tried).await
    }

    /// [`Balancer::pick_ready`] with a per-call strategy (see
    /// [`Balancer::pick_excluding_with`]).
    pub async fn pick_ready_with(&self, strategy: Strategy, tried: &[String]) -> Option<Pick> {
        let all = self
            .inner
            .discovery
            .instances_of_app(&self.inner.service, &self.inner.app)
            .await
            .ok()?;
        self.pick_from(all, tried, strategy)
    }

    fn endpoint(&self, id: &str) -> Arc<Endpoint> {
        if let Some(e) = self.inner.endpoints.read().get(id) {
            return e.clone();
        }
        self.inner
            .endpoints
            .write()
            .entry(id.to_string())
            .or_default()
            .clone()
    }

    /// `all` with each instance's counters, reusing the last snapshot
    /// while the discovery cache hands out the same list.
    fn snapshot(&self, all: Arc<[ServiceInstance]>) -> Arc<Snapshot> {
        if let Some(s) = self.inner.current.read().as_ref()
            && Arc::ptr_eq(&s.instances, &all)
        {
            return s.clone();
        }
        let endpoints = all.iter().map(|i| self.endpoint(&i.instance_id)).collect();
        let snapshot = Arc::new(Snapshot {
            instances: all,
            endpoints,
        });
        *self.inner.current.write() = Some(snapshot.clone());
        snapshot
    }

    /// Chooses among `all`: instances not in `tried` (all of them when
    /// every one was tried), of those the ones not ejected (all of them
    /// when every one is: panic mode, as Envoy), then by `strategy`.
    /// Works on positions, without building candidate lists: this runs for
    /// every proxied request.
    fn pick_from(
        &self,
        all: Arc<[ServiceInstance]>,
        tried: &[String],
        strategy: Strategy,
    ) -> Option<Pick> {
        if all.is_empty() {
            return None;
        }
        let s = self.snapshot(all);
        let n = s.instances.len();
        let now = self.inner.clock.now_millis();
        let fresh = |i: usize| !tried.contains(&s.instances[i].instance_id);
        let healthy = |i: usize| s.endpoints[i].ejected_until.load(Ordering::Relaxed) <= now;
        let every_one_tried = !(0..n).any(fresh);
        let in_pool = |i: usize| every_one_tried || fresh(i);
        let none_healthy = !(0..n).any(|i| in_pool(i) && healthy(i));
        let candidate = |i: &usize| in_pool(*i) && (none_healthy || healthy(*i));
        let count = (0..n).filter(candidate).count();
        // The k-th candidate (k < count).
        let nth = |k: usize| (0..n).filter(candidate).nth(k).unwrap_or(0);
        let chosen = match (strategy, count) {
            (_, 1) => nth(0),
            (Strategy::RoundRobin, c) => nth(self.inner.next.fetch_add(1, Ordering::Relaxed) % c),
            (Strategy::PowerOfTwoChoices, c) => {
                let mut rng = rand::thread_rng();
                let a = rng.gen_range(0..c);
                let mut b = rng.gen_range(0..c - 1);
                if b >= a {
                    b += 1;
                }
                let (ia, ib) = (nth(a), nth(b));
                let load = |i: usize| s.endpoints[i].in_flight.load(Ordering::Relaxed);
                if load(ib) < load(ia) { ib } else { ia }
            }
        };
        let endpoint = &s.endpoints[chosen];
        endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
        endpoint.requests.fetch_add(1, Ordering::Relaxed);
        Some(Pick {
            snapshot: s,
            index: chosen,
            balancer: self.clone(),
        })
    }

    fn record_failure(&self, instance: &ServiceInstance, e: &Endpoint, kind: Failure) {
        e.failures.fetch_add(1, Ordering::Relaxed);
        let policy = &self.inner.policy;
        let eject = match kind {
            Failure::Connect => {
                e.connect_streak.fetch_add(1, Ordering::Relaxed) + 1
                    >= policy.consecutive_connect_errors
            }
            // A timeout says the instance is slow (or the route's timeout is
            // tight), not that it is gone: it counts like a 5xx, so one slow
            // answer does not eject an instance the way a refused connection does.
            Failure::ServerError | Failure::Timeout => {
                e.server_error_streak.fetch_add(1, Ordering::Relaxed) + 1 >= policy.consecutive_5xx
            }
        };
        let now = self.inner.clock.now_millis();
        if eject && e.ejected_until.load(Ordering::Relaxed) <= now {
            let n = e.ejections.fetch_add(1, Ordering::Relaxed) + 1;
            let length = policy
                .base_ejection
                .saturating_mul(n)
                .min(policy.max_ejection);
            e.ejected_until
                .store(now + length.as_millis() as u64, Ordering::Relaxed);
            e.total_ejections.fetch_add(1, Ordering::Relaxed);
            e.connect_streak.store(0, Ordering::Relaxed);
            e.server_error_streak.store(0, Ordering::Relaxed);
            tracing::warn!(
                service = %self.inner.service,
                instance_id = %instance.instance_id,
                failure = ?kind,
                ejected_for_ms = length.as_millis() as u64,
                "instance ejected from load balancing"
            );
        }
    }

    /// The state of every current instance.
    pub fn status(&self) -> Vec<EndpointStatus> {
        let all = self.inner.discovery.cached_app(&self.inner.app);
        let now = self.inner.clock.now_millis();
        {
            // Forget counters of instances that left the registry.
            let mut eps = self.inner.endpoints.write();
            eps.retain(|id, _| all.iter().any(|i| &i.instance_id == id));
        }
        all.iter()
            .map(|i| {
                let e = self.endpoint(&i.instance_id);
                let until = e.ejected_until.load(Ordering::Relaxed);
                EndpointStatus {
                    instance_id: i.instance_id.clone(),
                    url: i.base_url(),
                    in_flight: e.in_flight.load(Ordering::Relaxed),
                    requests: e.requests.load(Ordering::Relaxed),
                    failures: e.failures.load(Ordering::Relaxed),
                    ejected: until > now,
                    ejected_for_ms: until.saturating_sub(now),
                    ejections: e.total_ejections.load(Ordering::Relaxed),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::RegistryHttp;
    use crate::model::{ActionType, Change, InstanceInfo, WatchResponse};
    use tokio_util::sync::CancellationToken;

    fn discovery_with(n: usize) -> Discovery {
        let http = RegistryHttp::new(
            url::Url::parse("http://127.0.0.1:1").unwrap(),
            reqwest::Client::new(),
        );
        let d = Discovery::new(http, Default::default(), CancellationToken::new());
        let changes = (0..n)
            .map(|k| Change {
                action: ActionType::Added,
                instance: InstanceInfo::new(
                    "inv",
                    &format!("i{k}"),
                    "h",
                    "10.0.0.1",
                    9000 + k as u16,
                ),
            })
            .collect();
        d.apply(&WatchResponse {
            version: 1,
            reset: true,
            changes,
        });
        d
    }

    /// Round robin visits every instance in turn.
    #[test]
    fn round_robin_cycles() {
        let b = Balancer::new(
            "inv",
            discovery_with(3),
            Strategy::RoundRobin,
            EjectionPolicy::default(),
        );
        let ids: Vec<String> = (0..6)
            .map(|_| b.pick().unwrap().instance().instance_id.clone())
            .collect();
        assert_eq!(ids, ["i0", "i1", "i2", "i0", "i1", "i2"]);
    }

    /// Power of two choices avoids the instance with many requests in flight.
    #[test]
    fn p2c_prefers_less_loaded() {
        let b = Balancer::new(
            "inv",
            discovery_with(2),
            Strategy::PowerOfTwoChoices,
            EjectionPolicy::default(),
        );
        let held: Vec<Pick> = (0..10)
            .filter_map(|_| b.pick_excluding(&["i1".to_string()]))
            .collect();
        assert!(held.iter().all(|p| p.instance().instance_id == "i0"));
        for _ in 0..20 {
            let p = b.pick().unwrap();
            assert_eq!(p.instance().instance_id, "i1");
            p.success();
        }
    }

    /// A connect error ejects at once; the ejection grows on repeat and ends with time.
    #[test]
    fn connect_error_ejects_with_growing_backoff() {
        let clock = Clock::manual(1_000_000);
        let b = Balancer::with_clock(
            "inv",
            discovery_with(2),
            Strategy::RoundRobin,
            EjectionPolicy::default(),
            clock.clone(),
        );
        let p = b.pick_excluding(&["i1".into()]).unwrap();
        assert_eq!(p.instance().instance_id, "i0");
        p.failure(Failure::Connect);
        for _ in 0..10 {
            assert_eq!(b.pick().unwrap().instance().instance_id, "i1");
        }
        let s = b.status();
        assert!(s.iter().find(|e| e.instance_id == "i0").unwrap().ejected);
        clock.advance(Duration::from_secs(2));
        let p = b.pick_excluding(&["i1".into()]).unwrap();
        p.failure(Failure::Connect);
        let st = b
            .status()
            .into_iter()
            .find(|e| e.instance_id == "i0")
            .unwrap();
        assert_eq!(
            st.ejected_for_ms, 4_000,
            "second ejection lasts twice as long"
        );
        assert_eq!(st.ejections, 2);
    }

    /// 5xx answers eject only after a streak; a success breaks the streak.
    #[test]
    fn server_errors_need_a_streak() {
        let b = Balancer::new(
            "inv",
            discovery_with(1),
            Strategy::RoundRobin,
            EjectionPolicy::default(),
        );
        for _ in 0..4 {
            b.pick().unwrap().failure(Failure::ServerError);
        }
        b.pick().unwrap().success();
        for _ in 0..4 {
            b.pick().unwrap().failure(Failure::ServerError);
        }
        assert!(!b.status()[0].ejected);
        b.pick().unwrap().failure(Failure::ServerError);
        assert!(b.status()[0].ejected);
    }

    /// With every instance ejected, picks still succeed (panic mode) rather than fail all traffic.
    #[test]
    fn panic_mode_when_all_ejected() {
        let b = Balancer::new(
            "inv",
            discovery_with(2),
            Strategy::RoundRobin,
            EjectionPolicy::default(),
        );
        b.pick_excluding(&["i1".into()])
            .unwrap()
            .failure(Failure::Connect);
        b.pick_excluding(&["i0".into()])
            .unwrap()
            .failure(Failure::Connect);
        assert!(b.pick().is_some());
    }

    /// A per-call strategy overrides the balancer's; both share one set of counters and ejections.
    #[test]
    fn per_call_strategy_shares_state() {
        let b = Balancer::new(
            "inv",
            discovery_with(3),
            Strategy::PowerOfTwoChoices,
            EjectionPolicy::default(),
        );
        let ids: Vec<String> = (0..6)
            .map(|_| {
                b.pick_excluding_with(Strategy::RoundRobin, &[])
                    .unwrap()
                    .instance()
                    .instance_id
                    .clone()
            })
            .collect();
        assert_eq!(ids, ["i0", "i1", "i2", "i0", "i1", "i2"]);
        b.pick_excluding(&["i0".into(), "i2".into()])
            .unwrap()
            .failure(Failure::Connect);
        for _ in 0..10 {
            let p = b.pick_excluding_with(Strategy::RoundRobin, &[]).unwrap();
            assert_ne!(p.instance().instance_id, "i1", "ejected for every strategy");
        }
    }

    /// A pick that records its verdict stays in flight until dropped (a streamed body).
    #[test]
    fn recorded_verdict_keeps_the_pick_in_flight() {
        let b = Balancer::new(
            "inv",
            discovery_with(1),
            Strategy::RoundRobin,
            EjectionPolicy::default(),
        );
        let p = b.pick().unwrap();
        p.record_success();
        assert_eq!(b.status()[0].in_flight, 1);
        drop(p);
        assert_eq!(b.status()[0].in_flight, 0);
        let p = b.pick().unwrap();
        p.record_failure(Failure::Connect);
        assert!(b.status()[0].ejected);
        assert_eq!(b.status()[0].in_flight, 1);
    }

    /// Retries get an instance not yet tried; in-flight counts return to zero when picks drop.
    #[test]
    fn retries_exclude_tried_and_inflight_balances() {
        let b = Balancer::new(
            "inv",
            discovery_with(3),
            Strategy::PowerOfTwoChoices,
            EjectionPolicy::default(),
        );
        let first = b.pick().unwrap();
        let tried = vec![first.instance().instance_id.clone()];
        let second = b.pick_excluding(&tried).unwrap();
        assert_ne!(first.instance().instance_id, second.instance().instance_id);
        drop(first);
        drop(second);
        assert!(b.status().iter().all(|e| e.in_flight == 0));
        assert!(
            Balancer::new(
                "none",
                discovery_with(0),
                Strategy::RoundRobin,
                EjectionPolicy::default()
            )
            .pick()
            .is_none()
        );
    }

    /// One timeout does not eject (it counts toward the 5xx streak); a refused connection does.
    #[test]
    fn timeout_counts_like_a_server_error() {
        let b = Balancer::new(
            "inv",
            discovery_with(1),
            Strategy::RoundRobin,
            EjectionPolicy::default(),
        );
        b.pick().unwrap().failure(Failure::Timeout);
        assert!(!b.status()[0].ejected);
        for _ in 0..4 {
            b.pick().unwrap().failure(Failure::Timeout);
        }
        assert!(b.status()[0].ejected);
    }
}
