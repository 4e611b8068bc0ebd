//! One look at the live system for a check: breakers, the gateway's balancer, consumer lag,
//! notifications of the accepted orders, a login through the gateway, smoke, container health
//! and the load's counters. Each look gives a [`Reading`]: whether the condition holds now and
//! the measured figure in words, which is what the report shows next to pass or fail.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use url::Url;

use super::fault_steps::Injected;
use super::model::{Bound, Instances, Probe};
use crate::chaos::load::{Counts, Kind as LoadKind, LoadHandle};
use crate::observe::admin::{Admin, CONSUMER_SERVICE, UPSTREAMS_SERVICE};

/// The topic of order events (notification-service's default `ORDER_PLACED_TOPIC`).
const ORDER_PLACED_TOPIC: &str = "order-placed";
use crate::observe::auth::{self, Grant};
use crate::observe::{self, Observer};

/// How long an admin token is reused before a new one is fetched (they live 300 s).
const ADMIN_TOKEN_REUSE: Duration = Duration::from_secs(200);
/// Notification reads in flight at once.
const NOTIFICATION_READS: usize = 16;

/// One look.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub holds: bool,
    /// What was measured, in words ("OPEN on order-service-1", "0.4% of 812").
    pub measured: String,
}

impl Reading {
    fn new(holds: bool, measured: impl Into<String>) -> Reading {
        Reading {
            holds,
            measured: measured.into(),
        }
    }

    /// A look that could not be made (counts as not holding).
    pub fn failed(why: impl Into<String>) -> Reading {
        Reading::new(false, why)
    }
}

/// What the probes share: a fresh view of the stack, an admin token and the gateway.
pub struct Probes {
    pub obs: Observer,
    pub gateway: Url,
    admin: Option<(String, Instant)>,
    /// Orders already seen with exactly one notification.
    notified: BTreeSet<String>,
}

impl Probes {
    pub fn new(obs: Observer, gateway: Url) -> Probes {
        Probes {
            obs,
            gateway,
            admin: None,
            notified: BTreeSet::new(),
        }
    }

    /// Lists the containers again (instances come and go under faults).
    pub async fn refresh(&mut self) -> Result<(), String> {
        self.obs.refresh().await.map_err(|e| e.to_string())
    }

    /// An admin token, reused while young; a cached one is kept when the provider is down.
    async fn admin_token(&mut self) -> Result<String, String> {
        if let Some((t, at)) = &self.admin
            && at.elapsed() < ADMIN_TOKEN_REUSE
        {
            return Ok(t.clone());
        }
        match auth::fetch_token(&self.obs, &Grant::default_service()).await {
            Ok(set) => {
                let t = set.token.access_token;
                self.admin = Some((t.clone(), Instant::now()));
                Ok(t)
            }
            Err(e) => match &self.admin {
                Some((t, _)) => Ok(t.clone()),
                None => Err(format!("cannot get an admin token: {e}")),
            },
        }
    }

    /// Gets an admin token now (before faults can take the identity provider away).
    pub async fn warm_up(&mut self) -> Result<(), String> {
        self.admin_token().await.map(|_| ())
    }

    /// The breaker `name` of every running instance of `service`, against `want`. A state
    /// counts as reached when the breaker is in it now, or (for OPEN and HALF_OPEN, which
    /// may be brief) moved to it at or after `since_ms` (ms since the epoch).
    pub async fn breaker(
        &mut self,
        service: &str,
        name: &str,
        want: circuit_breaker::State,
        instances: Instances,
        since_ms: u64,
    ) -> Reading {
        if let Err(e) = self.refresh().await {
            return Reading::failed(e);
        }
        let token = match self.admin_token().await {
            Ok(t) => t,
            Err(e) => return Reading::failed(e),
        };
        let reads = Admin::with_token(&self.obs, token).breakers(service).await;
        if reads.is_empty() {
            return Reading::failed(format!("no running instance of {service}"));
        }
        let mut parts = Vec::new();
        let mut reached = 0;
        for r in &reads {
            let Some(b) = r
                .value
                .as_ref()
                .and_then(|v| v.iter().find(|b| b.name == name))
            else {
                parts.push(format!(
                    "{}: {}",
                    r.instance,
                    r.error.as_deref().unwrap_or("no such breaker")
                ));
                continue;
            };
            let transient = matches!(
                want,
                circuit_breaker::State::Open | circuit_breaker::State::HalfOpen
            );
            let moved = b
                .transitions
                .iter()
                .find(|t| transient && t.to == want && t.at_ms >= since_ms);
            if b.state == want || moved.is_some() {
                reached += 1;
            }
            let mut text = format!("{} {}", r.instance, b.state);
            if let Some(t) = moved
                && b.state != want
            {
                text.push_str(&format!(" (was {want} at {}: {})", t.at, t.reason));
            } else if let Some(t) = b.transitions.last() {
                text.push_str(&format!(" ({})", t.reason));
            }
            text.push_str(&format!(
                ", failure rate {}%, slow {}%",
                b.metrics.failure_rate, b.metrics.slow_call_rate
            ));
            parts.push(text);
        }
        let holds = match instances {
            Instances::All => reached == reads.len(),
            Instances::Any => reached > 0,
        };
        Reading::new(holds, parts.join("; "))
    }

    /// Whether the faulted instances are out of the gateway's balancer for `service`: every
    /// entry whose instance id names a faulted container (or whose URL has its address) is
    /// ejected, or no such entry is left.
    pub async fn leaves_balancer(&mut self, service: &str, faulted: &[Injected]) -> Reading {
        if faulted.is_empty() {
            return Reading::failed("the last inject hit no instance");
        }
        if let Err(e) = self.refresh().await {
            return Reading::failed(e);
        }
        let token = match self.admin_token().await {
            Ok(t) => t,
            Err(e) => return Reading::failed(e),
        };
        let reads = Admin::with_token(&self.obs, token)
            .upstreams(UPSTREAMS_SERVICE)
            .await;
        let mut parts = Vec::new();
        let mut in_balancer = 0;
        let mut read_any = false;
        for r in &reads {
            let Some(upstreams) = &r.value else {
                parts.push(format!(
                    "{}: {}",
                    r.instance,
                    r.error.as_deref().unwrap_or("no answer")
                ));
                continue;
            };
            read_any = true;
            let Some(up) = upstreams.get(service) else {
                parts.push(format!("{}: no upstream {service}", r.instance));
                continue;
            };
            for f in faulted {
                let entry = up.instances.iter().find(|e| {
                    e.instance_id == f.container
                        || e.instance_id.starts_with(&format!("{}:", f.container))
                        || f.address.as_ref().is_some_and(|a| {
                            Url::parse(&e.url)
                                .ok()
                                .and_then(|u| u.host_str().map(|h| h == a))
                                .unwrap_or(false)
                        })
                });
                match entry {
                    None => parts.push(format!("{}: gone", f.container)),
                    Some(e) if e.ejected => parts.push(format!(
                        "{}: ejected ({} ms left, {} failures)",
                        f.container, e.ejected_for_ms, e.failures
                    )),
                    Some(e) => {
                        in_balancer += 1;
                        parts.push(format!(
                            "{}: still balanced ({} requests, {} failures)",
                            f.container, e.requests, e.failures
                        ));
                    }
                }
            }
        }
        Reading::new(read_any && in_balancer == 0, parts.join("; "))
    }

    /// Total lag of the notification consumer group, read from the broker itself (committed
    /// offset against high watermark per partition, [`crate::observe::kafka`]), so it is true while the
    /// consumer is down or cut off. Group and topic are notification-service's
    /// `KAFKA_GROUP_ID` and `ORDER_PLACED_TOPIC` in the stack, else their defaults.
    pub async fn lag(&mut self, bound: Bound) -> Reading {
        if let Err(e) = self.refresh().await {
            return Reading::failed(e);
        }
        let env = |key: &str, default: &str| {
            self.obs
                .stack()
                .services
                .get(CONSUMER_SERVICE)
                .and_then(|s| s.env.get(key))
                .map(|t| t.render(self.obs.stack(), CONSUMER_SERVICE, 1))
                .unwrap_or_else(|| default.to_string())
        };
        let group = env("KAFKA_GROUP_ID", CONSUMER_SERVICE);
        let topic = env("ORDER_PLACED_TOPIC", ORDER_PLACED_TOPIC);
        match self.obs.group_lag(&group, &[&topic]).await {
            Ok(lag) => {
                let per: Vec<String> = lag
                    .partitions
                    .iter()
                    .map(|p| format!("p{}={}", p.partition, p.lag))
                    .collect();
                Reading::new(
                    bound.holds(lag.total_lag as f64),
                    format!(
                        "lag {} of group {group} on {topic} ({}), {} members",
                        lag.total_lag,
                        per.join(" "),
                        lag.members.len()
                    ),
                )
            }
            Err(e) => Reading::failed(format!("cannot read lag from the broker: {e}")),
        }
    }

    /// Whether every accepted order of the load has exactly one notification (read through
    /// the gateway with the token of the user who placed it).
    pub async fn notified_once(&mut self, load: &LoadHandle) -> Reading {
        let orders = load.accepted_orders();
        if orders.is_empty() {
            return Reading::failed("the load has no accepted order to check");
        }
        let Some(tokens) = load.tokens() else {
            return Reading::failed("the load has no users");
        };
        let todo: Vec<_> = orders
            .iter()
            .filter(|o| !self.notified.contains(&o.order_number))
            .collect();
        let base = self.gateway.as_str().trim_end_matches('/').to_string();
        let http = self.obs.http().clone();
        let mut counts: BTreeMap<String, Result<u64, String>> = BTreeMap::new();
        for chunk in todo.chunks(NOTIFICATION_READS) {
            let reads = chunk.iter().map(|o| {
                let url = format!(
                    "{base}/api/notifications?orderNumber={}&size=5",
                    o.order_number
                );
                let token = tokens.token_of(o.user);
                let http = http.clone();
                async move {
                    let r = async {
                        let url = Url::parse(&url).map_err(|e| e.to_string())?;
                        let req = http.get(url.clone()).bearer_auth(&*token);
                        let page: serde_json::Value =
                            observe::send_json("read notifications", &url, req)
                                .await
                                .map_err(|e| e.to_string())?;
                        Ok::<u64, String>(page["total"].as_u64().unwrap_or(0))
                    }
                    .await;
                    (o.order_number.clone(), r)
                }
            });
            for (n, r) in futures::future::join_all(reads).await {
                counts.insert(n, r);
            }
        }
        let mut missing = Vec::new();
        let mut doubled = Vec::new();
        let mut errors = Vec::new();
        for (n, r) in counts {
            match r {
                Ok(1) => {
                    self.notified.insert(n);
                }
                Ok(0) => missing.push(n),
                Ok(c) => doubled.push(format!("{n} ({c})")),
                Err(e) => errors.push(e),
            }
        }
        let total = orders.len();
        let once = self.notified.len();
        let mut text = format!("{once} of {total} accepted orders notified exactly once");
        if !missing.is_empty() {
            text.push_str(&format!(
                "; {} without notification (e.g. {})",
                missing.len(),
                sample(&missing)
            ));
        }
        if !doubled.is_empty() {
            text.push_str(&format!(
                "; {} notified more than once: {}",
                doubled.len(),
                sample(&doubled)
            ));
        }
        if !errors.is_empty() {
            text.push_str(&format!("; {} reads failed ({})", errors.len(), errors[0]));
        }
        Reading::new(once == total && doubled.is_empty(), text)
    }

    /// A new login (password grant, the dev realm's alice) through the gateway.
    pub async fn login(&mut self, want: u16) -> Reading {
        let issuer = match self.obs.issuer_in_network() {
            Ok(i) => i,
            Err(e) => return Reading::failed(e.to_string()),
        };
        let url = match self.gateway.join(&format!(
            "{}/protocol/openid-connect/token",
            issuer.path().trim_start_matches('/').trim_end_matches('/')
        )) {
            Ok(u) => u,
            Err(e) => return Reading::failed(e.to_string()),
        };
        let req = self.obs.http().post(url.clone()).form(&[
            ("grant_type", "password"),
            ("client_id", auth::CLI_CLIENT),
            ("username", "alice"),
            ("password", "alice"),
        ]);
        let res = match observe::send("log in through the gateway", &url, req).await {
            Ok(r) => r,
            Err(e) => return Reading::failed(e.to_string()),
        };
        let status = res.status().as_u16();
        let ctype = res
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = res.text().await.unwrap_or_default();
        let problem = ctype.starts_with("application/problem+json");
        let detail = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                v.get("detail")
                    .or_else(|| v.get("error"))
                    .and_then(|d| d.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_default();
        let holds = status == want && (status < 400 || problem);
        Reading::new(
            holds,
            format!(
                "{status} {}{}",
                if ctype.is_empty() {
                    "(no content type)"
                } else {
                    &ctype
                },
                if detail.is_empty() {
                    String::new()
                } else {
                    format!(": {detail}")
                }
            ),
        )
    }

    /// `platform smoke` within `limit`.
    pub async fn smoke(&mut self, limit: Duration) -> Reading {
        if let Err(e) = self.refresh().await {
            return Reading::failed(e);
        }
        let report = crate::commands::smoke::smoke(
            self.obs.clone(),
            Some(self.gateway.clone()),
            limit.max(Duration::from_secs(20)),
            |_| {},
        )
        .await;
        if report.passed {
            Reading::new(true, format!("smoke passed in {:.1}s", report.seconds))
        } else {
            let failed = report
                .steps
                .iter()
                .find(|s| s.outcome == crate::commands::smoke::Outcome::Failed);
            Reading::failed(match failed {
                Some(s) => format!("smoke failed at `{}`: {}", s.name, s.detail),
                None => "smoke failed".to_string(),
            })
        }
    }

    /// Every container of the stack running, and healthy where it has a check.
    pub async fn healthy(&mut self) -> Reading {
        if let Err(e) = self.refresh().await {
            return Reading::failed(e);
        }
        let bad: Vec<String> = self
            .obs
            .containers()
            .iter()
            .filter(|c| !c.is_ready())
            .map(|c| {
                format!(
                    "{} {}{}",
                    c.name,
                    c.state,
                    c.health
                        .as_ref()
                        .map(|h| format!(" ({h:?})").to_lowercase())
                        .unwrap_or_default()
                )
            })
            .collect();
        let n = self.obs.containers().len();
        if bad.is_empty() {
            Reading::new(true, format!("{n} containers running and healthy"))
        } else {
            Reading::failed(format!(
                "{} of {n} not ready: {}",
                bad.len(),
                bad.join(", ")
            ))
        }
    }
}

/// The load's counts over a window, against what a check wants.
pub fn load_reading(counts: &Counts, what: LoadCheck) -> Reading {
    let window = format!(
        "{} requests: {} ok, {} fallback, {} other 503, {} × 500, {} other 5xx, {} 4xx, {} without answer, {} dropped",
        counts.total,
        counts.ok,
        counts.fallback,
        counts.unavailable_other,
        counts.internal,
        counts.server_other,
        counts.client_errors,
        counts.transport,
        counts.dropped
    );
    match what {
        LoadCheck::Fallback {
            min,
            unavailable_ok,
        } => {
            let holds = counts.fallback >= min
                && counts.internal == 0
                && counts.server_other == 0
                && counts.transport == 0
                && (unavailable_ok || counts.unavailable_other == 0);
            Reading::new(holds, window)
        }
        LoadCheck::ErrorRate { bound, fallback_ok } => {
            let rate = counts.error_rate(fallback_ok);
            Reading::new(
                counts.total > 0 && bound.holds(rate),
                format!("{rate:.2}% failed of {window}"),
            )
        }
        LoadCheck::Failures { bound, fallback_ok } => {
            let n = counts.failed(fallback_ok);
            Reading::new(bound.holds(n as f64), format!("{n} failed of {window}"))
        }
    }
}

/// What a load check compares.
#[derive(Debug, Clone, Copy)]
pub enum LoadCheck {
    Fallback { min: u64, unavailable_ok: bool },
    ErrorRate { bound: Bound, fallback_ok: bool },
    Failures { bound: Bound, fallback_ok: bool },
}

/// What a probe that reads the load's counts compares, and over which kinds.
pub fn load_check(probe: &Probe) -> Option<(&[LoadKind], LoadCheck)> {
    match probe {
        Probe::Fallback {
            min,
            kinds,
            unavailable_ok,
        } => Some((
            kinds,
            LoadCheck::Fallback {
                min: *min,
                unavailable_ok: *unavailable_ok,
            },
        )),
        Probe::ErrorRate {
            bound,
            kinds,
            fallback_ok,
        } => Some((
            kinds,
            LoadCheck::ErrorRate {
                bound: *bound,
                fallback_ok: *fallback_ok,
            },
        )),
        Probe::Failures {
            bound,
            kinds,
            fallback_ok,
        } => Some((
            kinds,
            LoadCheck::Failures {
                bound: *bound,
                fallback_ok: *fallback_ok,
            },
        )),
        _ => None,
    }
}

/// The kinds a load check looks at (`None`: all).
pub fn kinds_filter(kinds: &[LoadKind]) -> Option<&[LoadKind]> {
    (!kinds.is_empty()).then_some(kinds)
}

fn sample(items: &[String]) -> String {
    let mut s: Vec<&str> = items.iter().take(3).map(String::as_str).collect();
    if items.len() > 3 {
        s.push("...");
    }
    s.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::load::report::Outcome;

    fn counts(outcomes: &[Outcome]) -> Counts {
        let mut c = Counts::default();
        for o in outcomes {
            c.add(*o);
        }
        c
    }

    /// The fallback check wants fallback answers and no 500 or other 503; the figure lists
    /// every class.
    #[test]
    fn fallback_check() {
        let fb = Outcome::Answer {
            status: 503,
            fallback: true,
        };
        let ok = counts(&[fb, fb]);
        assert!(
            load_reading(
                &ok,
                LoadCheck::Fallback {
                    min: 1,
                    unavailable_ok: false
                }
            )
            .holds
        );
        let with_500 = counts(&[
            fb,
            Outcome::Answer {
                status: 500,
                fallback: false,
            },
        ]);
        let r = load_reading(
            &with_500,
            LoadCheck::Fallback {
                min: 1,
                unavailable_ok: false,
            },
        );
        assert!(!r.holds);
        assert!(r.measured.contains("1 × 500"), "{}", r.measured);
        assert!(
            !load_reading(
                &counts(&[]),
                LoadCheck::Fallback {
                    min: 1,
                    unavailable_ok: false
                }
            )
            .holds
        );
    }

    /// Error rates compare in percent; an empty window never passes a rate check.
    #[test]
    fn error_rate_check() {
        let ok = Outcome::Answer {
            status: 200,
            fallback: false,
        };
        let c = counts(&[ok, ok, ok, Outcome::Timeout]);
        let r = load_reading(
            &c,
            LoadCheck::ErrorRate {
                bound: Bound::AtMost(30.0),
                fallback_ok: false,
            },
        );
        assert!(
            r.holds && r.measured.starts_with("25.00% failed"),
            "{}",
            r.measured
        );
        assert!(
            !load_reading(
                &c,
                LoadCheck::ErrorRate {
                    bound: Bound::Below(25.0),
                    fallback_ok: false
                }
            )
            .holds
        );
        assert!(
            !load_reading(
                &Counts::default(),
                LoadCheck::ErrorRate {
                    bound: Bound::AtMost(1.0),
                    fallback_ok: false
                }
            )
            .holds
        );
        assert!(
            load_reading(
                &c,
                LoadCheck::Failures {
                    bound: Bound::AtMost(1.0),
                    fallback_ok: false
                }
            )
            .holds
        );
    }
}
