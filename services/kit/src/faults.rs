//! Application-layer faults, Chaos Monkey for Spring Boot style, served by every service under
//! `/admin/faults` (admin role, like `/admin/breakers`) and applied to its own requests by a
//! middleware in the scaffold ([`crate::http::finish`]).
//!
//! - `GET /admin/faults`: the active faults ([`fault_model::AppFault`]).
//! - `POST /admin/faults` ([`fault_model::FaultRequest`]): 201 with the fault; a latency or error
//!   assault then hits `share` percent of the requests under `routes` (all API routes when
//!   empty); a kill assault answers 202 and the process exits, as if it crashed.
//! - `DELETE /admin/faults/{id}` and `DELETE /admin/faults`: remove one or all (204).
//!
//! The service expires each fault itself at its end: a timer task drops it then (and logs it),
//! and the middleware ignores a fault past its end even before the timer runs, so a fault reverts
//! even if nobody ever calls the service again. The scaffold's own endpoints (`/health`,
//! `/metrics`, `/info`, `/admin`) are never hit, so probes stay truthful and a fault can always be
//! listed and removed.
//!
//! The middleware's cost without faults is one atomic load per request.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use chrono::{DateTime, Utc};
use fault_model::{AppFault, Assault, FaultRequest};
use parking_lot::Mutex;
use rand::Rng as _;

use crate::clock::Clock;
use crate::error::Problem;
use crate::http::Json;

pub use fault_model;

/// What a kill assault does: exit the process (tests replace it).
pub type Killer = Arc<dyn Fn(&str) + Send + Sync>;

/// The process exit a kill assault uses: status 1 after a short pause, so the 202 is written.
fn exit_process(id: &str) {
    tracing::error!(
        fault = id,
        "killed by an application fault (kill assault): exiting"
    );
    let _ = std::thread::spawn(|| {
        std::thread::sleep(Duration::from_millis(100));
        crate::telemetry::output::flush();
        std::process::exit(1);
    });
}

/// A service's active application faults.
#[derive(Clone)]
pub struct Faults {
    /// The faults, in the order they were added (shared by the admin routes, the middleware
    /// and the expiry timers).
    active: Arc<Mutex<Vec<AppFault>>>,
    /// `active.len()`, read without the lock on every request.
    count: Arc<AtomicUsize>,
    clock: Clock,
    killer: Killer,
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults")
            .field("active", &self.count.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Default for Faults {
    fn default() -> Self {
        Faults::new(Clock::System)
    }
}

/// What the middleware decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Handle it normally.
    Pass,
    /// Wait this long, then handle it.
    Delay(Duration),
    /// Answer this status instead, after the delay (zero when none hit).
    Fail(StatusCode, Duration),
}

impl Faults {
    /// No faults; kill assaults exit the process.
    pub fn new(clock: Clock) -> Faults {
        Faults {
            active: Arc::default(),
            count: Arc::default(),
            clock,
            killer: Arc::new(exit_process),
        }
    }

    /// The same with another kill action (tests).
    pub fn with_killer(mut self, killer: Killer) -> Faults {
        self.killer = killer;
        self
    }

    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(i64::try_from(self.clock.now_millis()).unwrap_or(i64::MAX))
            .unwrap_or_default()
    }

    /// Drops faults past their end at `now`, logging each; returns how many remain.
    pub fn expire(&self) -> usize {
        let now = self.now();
        let mut active = self.active.lock();
        active.retain(|f| {
            let keep = f.active_at(now);
            if !keep {
                tracing::info!(fault = %f.id, hits = f.hits, "application fault ended");
            }
            keep
        });
        self.count.store(active.len(), Ordering::Relaxed);
        active.len()
    }

    /// The active faults.
    pub fn list(&self) -> Vec<AppFault> {
        self.expire();
        self.active.lock().clone()
    }

    /// Adds a fault (validated), replacing one with the same id.
    pub fn add(&self, request: FaultRequest) -> Result<AppFault, Problem> {
        request
            .validate()
            .map_err(|e| Problem::bad_request(e.to_string()).with("field", e.field))?;
        self.expire();
        let now = self.now();
        let id = request
            .id
            .clone()
            .unwrap_or_else(|| format!("a-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
        let fault = AppFault {
            id,
            assault: request.assault,
            share: request.share,
            routes: request.routes,
            started: now,
            ends: now
                + chrono::Duration::milliseconds(
                    i64::try_from(request.duration_ms).unwrap_or(i64::MAX),
                ),
            hits: 0,
        };
        let mut active = self.active.lock();
        active.retain(|f| f.id != fault.id);
        if active.len() >= fault_model::MAX_ACTIVE {
            return Err(Problem::conflict(format!(
                "{} application faults are active, the most a service holds: remove one first",
                active.len()
            )));
        }
        active.push(fault.clone());
        self.count.store(active.len(), Ordering::Relaxed);
        Ok(fault)
    }

    /// Removes fault `id`; false when there was none.
    pub fn remove(&self, id: &str) -> bool {
        let mut active = self.active.lock();
        let before = active.len();
        active.retain(|f| f.id != id);
        self.count.store(active.len(), Ordering::Relaxed);
        active.len() != before
    }

    /// Removes every fault; returns how many there were.
    pub fn clear(&self) -> usize {
        let mut active = self.active.lock();
        let n = active.len();
        active.clear();
        self.count.store(0, Ordering::Relaxed);
        n
    }

    /// What happens to a request for `path`, with `roll` giving a number in `[0, 100)` per
    /// fault (random in service, fixed in tests) and `pick` a latency in a range.
    pub fn decide(
        &self,
        path: &str,
        mut roll: impl FnMut() -> f64,
        mut pick: impl FnMut(u64, u64) -> u64,
    ) -> Decision {
        if self.count.load(Ordering::Relaxed) == 0 || fault_model::exempt(path) {
            return Decision::Pass;
        }
        let now = self.now();
        let mut delay = Duration::ZERO;
        let mut fail = None;
        let mut active = self.active.lock();
        for f in active.iter_mut() {
            if !f.active_at(now) || !f.covers(path) || roll() >= f.share {
                continue;
            }
            match f.assault {
                Assault::Latency { min_ms, max_ms } => {
                    f.hits += 1;
                    delay += Duration::from_millis(pick(min_ms, max_ms));
                }
                Assault::Error { status } if fail.is_none() => {
                    f.hits += 1;
                    fail = StatusCode::from_u16(status).ok();
                }
                _ => {}
            }
        }
        match (fail, delay) {
            (Some(status), d) => Decision::Fail(status, d),
            (None, d) if d.is_zero() => Decision::Pass,
            (None, d) => Decision::Delay(d),
        }
    }

    /// Drops the fault at its end (the service expires it by itself, see the module docs).
    fn expire_at_end(&self, fault: &AppFault) {
        if self.clock.is_manual() {
            return;
        }
        let wait = (fault.ends - self.now()).to_std().unwrap_or(Duration::ZERO);
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            me.expire();
        });
    }
}

/// The admin routes (merged under `/admin` by the scaffold, behind the admin guard).
pub fn admin_router(faults: Faults) -> Router {
    Router::new()
        .route("/faults", get(list).post(add).delete(clear))
        .route("/faults/{id}", delete(remove))
        .with_state(faults)
}

async fn list(State(f): State<Faults>) -> Json<Vec<AppFault>> {
    Json(f.list())
}

async fn add(
    State(f): State<Faults>,
    Json(request): Json<FaultRequest>,
) -> Result<Response, Problem> {
    let fault = f.add(request)?;
    tracing::warn!(fault = %fault.id, assault = ?fault.assault, share = fault.share, routes = ?fault.routes, ends = %fault.ends, "application fault injected");
    if fault.assault == Assault::Kill {
        f.remove(&fault.id);
        (f.killer)(&fault.id);
        return Ok((StatusCode::ACCEPTED, Json(fault)).into_response());
    }
    f.expire_at_end(&fault);
    Ok((StatusCode::CREATED, Json(fault)).into_response())
}

async fn remove(State(f): State<Faults>, Path(id): Path<String>) -> Result<StatusCode, Problem> {
    if f.remove(&id) {
        tracing::info!(fault = %id, "application fault removed");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::not_found(format!(
            "no active application fault `{id}`"
        )))
    }
}

async fn clear(State(f): State<Faults>) -> StatusCode {
    let n = f.clear();
    if n > 0 {
        tracing::info!(removed = n, "application faults removed");
    }
    StatusCode::NO_CONTENT
}

/// The middleware: delays or fails requests the active faults hit.
pub async fn assault(State(f): State<Faults>, req: Request, next: Next) -> Response {
    assault_then(&f, req, next).await
}

/// What [`assault`] does, for a middleware that runs it as part of its own
/// work (the scaffold's `observe`: one middleware layer less per request).
pub async fn assault_then(f: &Faults, req: Request, next: Next) -> Response {
    let decision = f.decide(
        req.uri().path(),
        || rand::thread_rng().gen_range(0.0..100.0),
        |min, max| rand::thread_rng().gen_range(min..=max),
    );
    match decision {
        Decision::Pass => next.run(req).await,
        Decision::Delay(d) => {
            tokio::time::sleep(d).await;
            next.run(req).await
        }
        Decision::Fail(status, d) => {
            tokio::time::sleep(d).await;
            Problem::with_detail(
                status,
                "injected by an application fault (platform inject app-error)",
            )
            .kind("injected-fault")
            .instance(req.uri().path())
            .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(assault: Assault, share: f64, routes: &[&str], ms: u64) -> FaultRequest {
        FaultRequest {
            id: None,
            assault,
            share,
            routes: routes.iter().map(|r| r.to_string()).collect(),
            duration_ms: ms,
        }
    }

    /// A fault hits only its share of the requests on its routes, never the scaffold's
    /// endpoints; latencies of several faults add up; an error wins over latency.
    #[test]
    fn decides_by_share_and_route() {
        let f = Faults::new(Clock::manual(1_000_000));
        assert_eq!(f.decide("/api/x", || 0.0, |a, _| a), Decision::Pass);
        f.add(request(
            Assault::Latency {
                min_ms: 100,
                max_ms: 300,
            },
            50.0,
            &["/api/inventory"],
            10_000,
        ))
        .unwrap();
        assert_eq!(
            f.decide("/api/inventory/sku", || 10.0, |_, b| b),
            Decision::Delay(Duration::from_millis(300))
        );
        assert_eq!(
            f.decide("/api/inventory", || 60.0, |_, b| b),
            Decision::Pass
        );
        assert_eq!(f.decide("/api/order", || 10.0, |_, b| b), Decision::Pass);
        assert_eq!(f.decide("/health/ready", || 0.0, |_, b| b), Decision::Pass);
        f.add(request(
            Assault::Latency {
                min_ms: 50,
                max_ms: 50,
            },
            100.0,
            &[],
            10_000,
        ))
        .unwrap();
        assert_eq!(
            f.decide("/api/inventory", || 10.0, |a, _| a),
            Decision::Delay(Duration::from_millis(150))
        );
        f.add(request(Assault::Error { status: 503 }, 100.0, &[], 10_000))
            .unwrap();
        assert_eq!(
            f.decide("/api/order", || 10.0, |a, _| a),
            Decision::Fail(StatusCode::SERVICE_UNAVAILABLE, Duration::from_millis(50))
        );
        assert!(f.list().iter().all(|x| x.hits > 0));
    }

    /// The service drops a fault at its end by itself: a millisecond before, it still hits;
    /// at the end it is gone from the list and from the decisions.
    #[test]
    fn expires_at_its_end() {
        let clock = Clock::manual(1_000_000);
        let f = Faults::new(clock.clone());
        f.add(request(Assault::Error { status: 500 }, 100.0, &[], 2_000))
            .unwrap();
        clock.advance(Duration::from_millis(1_999));
        assert!(matches!(
            f.decide("/api", || 0.0, |a, _| a),
            Decision::Fail(..)
        ));
        assert_eq!(f.list().len(), 1);
        clock.advance(Duration::from_millis(1));
        assert_eq!(f.decide("/api", || 0.0, |a, _| a), Decision::Pass);
        assert!(f.list().is_empty());
    }

    /// Ids are kept, replaced when reused, and removable; bad requests are refused with the
    /// field named; the number of faults is bounded.
    #[test]
    fn add_replace_remove_and_bounds() {
        let f = Faults::new(Clock::manual(1_000_000));
        let mut r = request(Assault::Kill, 100.0, &[], 1_000);
        r.assault = Assault::Error { status: 500 };
        r.id = Some("f-1".into());
        f.add(r.clone()).unwrap();
        f.add(r.clone()).unwrap();
        assert_eq!(f.list().len(), 1);
        assert!(f.remove("f-1"));
        assert!(!f.remove("f-1"));
        let bad = f
            .add(request(Assault::Error { status: 200 }, 100.0, &[], 1_000))
            .unwrap_err();
        assert_eq!(bad.status_code(), StatusCode::BAD_REQUEST);
        for _ in 0..fault_model::MAX_ACTIVE {
            f.add(request(Assault::Error { status: 500 }, 100.0, &[], 1_000))
                .unwrap();
        }
        let full = f
            .add(request(Assault::Error { status: 500 }, 100.0, &[], 1_000))
            .unwrap_err();
        assert_eq!(full.status_code(), StatusCode::CONFLICT);
        assert_eq!(f.clear(), fault_model::MAX_ACTIVE);
    }
}
