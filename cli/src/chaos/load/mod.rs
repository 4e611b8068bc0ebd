//! The load engine: open-loop, constant-rate HTTP load through the published gateway, shared by
//! `platform load`, the scenarios' `load` steps and the dashboard.
//!
//! **Open loop, no coordinated omission.** Request `i` is due at `start + i / rate`, whatever
//! happened to earlier ones: the scheduler ([`engine`]) sends every request at its due time and
//! measures its latency *from that due time*, so a stalled system shows as the latency its
//! users would see (wrk2's and Gil Tene's point), not as fewer, faster samples. Requests that
//! cannot even be started because `max_in_flight` are outstanding are counted as `dropped`
//! (failures), never silently skipped. Requests go over at most `connections` keep-alive
//! connections (wrk2's `-c`); a request due while all are busy waits for one, and that wait is
//! part of its latency, so a stall never becomes a storm of new connections.
//!
//! **Real traffic.** Every request but `health` carries a real access token from the stack's
//! identity provider, for several users in turn ([`fixture::TokenPool`]), refreshed before it
//! expires (refresh-token grant, else a new login; an old token stays in use while the
//! provider is down, which is what the identity-outage scenario checks). Orders go to products
//! and stock the run creates for itself ([`fixture::Fixture::prepare`]), each with its own
//! `Idempotency-Key`.
//!
//! **Bounded.** At most [`MAX_RATE`] requests per second, [`MAX_DURATION`], [`MAX_REQUESTS`]
//! in all and `max_in_flight` at once; every request has a timeout; the target must be on the
//! loopback or on an address of the stack's own containers ([`fixture::check_target`]).
//!
//! **Results.** Latencies go into an HdrHistogram (microseconds, 3 significant digits), answers
//! are counted by status, fallback answers (503 problem+json with [`FALLBACK_DETAIL`]) apart,
//! transport failures by cause, and every second of intended send time keeps its own counts
//! ([`report::Counts`]) so scenarios can ask for the error rate over any window. While running,
//! [`LoadHandle::progress`] reads live counters; [`LoadHandle::finish`] gives the serde
//! [`LoadReport`].

pub mod engine;
pub mod fixture;
mod http;
pub mod report;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use engine::{LoadHandle, Progress, start};
pub use fixture::{Fixture, FixtureOptions, TokenPool, User};
pub use report::{AcceptedOrder, Counts, LoadReport};

/// order-service's fallback answer when inventory cannot be asked: 503 problem+json with
/// exactly this `detail` (the seed's words; order-service's `FALLBACK_DETAIL`).
pub const FALLBACK_DETAIL: &str = "Service is temporarily unavailable";

/// Highest rate accepted (requests per second).
pub const MAX_RATE: f64 = 50_000.0;
/// Longest run accepted.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// Most requests one run may send.
pub const MAX_REQUESTS: u64 = 10_000_000;
/// Most requests outstanding at once, whatever `--max-in-flight` says.
pub const MAX_IN_FLIGHT: usize = 10_000;

/// What a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// `POST /api/order` with one line on a product of the run, and an `Idempotency-Key`.
    Orders,
    /// `GET /api/product/{id}` of a product of the run.
    Products,
    /// `GET /api/inventory/{sku}` of a product of the run.
    Stock,
    /// `GET /api/order?page=0&size=5`: the user's latest orders.
    OrderReads,
    /// `GET /health/live` of the gateway itself, without a token.
    Health,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 5] = [
        Kind::Orders,
        Kind::Products,
        Kind::Stock,
        Kind::OrderReads,
        Kind::Health,
    ];

    /// The name in `--mix` and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Orders => "orders",
            Kind::Products => "products",
            Kind::Stock => "stock",
            Kind::OrderReads => "order-reads",
            Kind::Health => "health",
        }
    }

    /// Whether the request is idempotent (a GET), i.e. one the gateway may retry elsewhere.
    pub fn idempotent(self) -> bool {
        !matches!(self, Kind::Orders)
    }

    /// Whether the request needs a user's token.
    pub fn needs_token(self) -> bool {
        !matches!(self, Kind::Health)
    }

    /// Whether the request needs the run's products.
    pub fn needs_products(self) -> bool {
        matches!(self, Kind::Orders | Kind::Products | Kind::Stock)
    }

    fn index(self) -> usize {
        Kind::ALL.iter().position(|k| *k == self).unwrap_or(0)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Kind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s.trim())
            .ok_or_else(|| {
                format!(
                    "unknown request kind `{}`: use {}",
                    s.trim(),
                    Kind::ALL.map(Kind::name).join(", ")
                )
            })
    }
}

/// Shares of each kind, e.g. `orders=80,products=20`. Requests follow a fixed, evenly spread
/// cycle (smooth weighted round robin), so any stretch of the run has the mix's proportions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    weights: Vec<(Kind, u32)>,
    /// One cycle of kinds, `sum(weights)` long.
    cycle: Vec<Kind>,
}

/// Largest sum of weights (the cycle's length).
const MAX_MIX_TOTAL: u32 = 10_000;

impl Mix {
    /// A mix from explicit weights (zero weights are dropped).
    pub fn new(weights: Vec<(Kind, u32)>) -> Result<Mix, String> {
        let mut seen = Vec::new();
        for (k, _) in &weights {
            if seen.contains(k) {
                return Err(format!("`{k}` is named twice in the mix"));
            }
            seen.push(*k);
        }
        let weights: Vec<(Kind, u32)> = weights.into_iter().filter(|(_, w)| *w > 0).collect();
        let total: u64 = weights.iter().map(|(_, w)| u64::from(*w)).sum();
        if total == 0 {
            return Err("the mix has no request kind with a weight above 0".to_string());
        }
        if total > u64::from(MAX_MIX_TOTAL) {
            return Err(format!(
                "the mix's weights add up to {total}; use at most {MAX_MIX_TOTAL} (they are shares, e.g. orders=80,products=20)"
            ));
        }
        // Smooth weighted round robin (nginx): each turn every kind gains its weight and the
        // richest pays the total, which spreads each kind evenly over the cycle.
        let mut current: Vec<i64> = vec![0; weights.len()];
        let mut cycle = Vec::with_capacity(total as usize);
        for _ in 0..total {
            for (c, (_, w)) in current.iter_mut().zip(&weights) {
                *c += i64::from(*w);
            }
            let best = (0..weights.len())
                .max_by_key(|&i| (current[i], std::cmp::Reverse(i)))
                .unwrap_or(0);
            current[best] -= total as i64;
            cycle.push(weights[best].0);
        }
        Ok(Mix { weights, cycle })
    }

    /// Only `kind`.
    pub fn only(kind: Kind) -> Mix {
        Mix {
            weights: vec![(kind, 1)],
            cycle: vec![kind],
        }
    }

    /// The kind of request number `i`.
    pub fn pick(&self, i: u64) -> Kind {
        self.cycle[(i % self.cycle.len() as u64) as usize]
    }

    /// The kinds with a weight, with it.
    pub fn weights(&self) -> &[(Kind, u32)] {
        &self.weights
    }

    /// The share of `kind` (0 to 1).
    pub fn share(&self, kind: Kind) -> f64 {
        let total: u32 = self.weights.iter().map(|(_, w)| w).sum();
        let w = self
            .weights
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(0, |(_, w)| *w);
        f64::from(w) / f64::from(total.max(1))
    }

    /// Whether any kind needs a token.
    pub fn needs_tokens(&self) -> bool {
        self.weights.iter().any(|(k, _)| k.needs_token())
    }

    /// Whether any kind needs the run's products.
    pub fn needs_products(&self) -> bool {
        self.weights.iter().any(|(k, _)| k.needs_products())
    }
}

impl Default for Mix {
    /// `orders=80,products=20`.
    fn default() -> Self {
        Mix::new(vec![(Kind::Orders, 80), (Kind::Products, 20)])
            .unwrap_or_else(|_| Mix::only(Kind::Orders))
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .weights
            .iter()
            .map(|(k, w)| format!("{k}={w}"))
            .collect();
        f.write_str(&parts.join(","))
    }
}

impl FromStr for Mix {
    type Err = String;

    /// `orders=80,products=20`; a kind without `=N` has weight 1.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut weights = Vec::new();
        for part in s.split(',').map(str::trim) {
            if part.is_empty() {
                return Err(format!(
                    "`{s}` is not a mix: write kind=weight pairs separated by commas, e.g. orders=80,products=20"
                ));
            }
            let (kind, weight) = match part.split_once('=') {
                Some((k, w)) => {
                    let w: u32 = w.trim().parse().map_err(|_| {
                        format!(
                            "`{}` is not a weight in `{part}`: use a whole number",
                            w.trim()
                        )
                    })?;
                    (k, w)
                }
                None => (part, 1),
            };
            weights.push((kind.parse::<Kind>()?, weight));
        }
        Mix::new(weights)
    }
}

impl Serialize for Mix {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// Parses a rate: `200`, `200/s`, `12000/min`.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let (number, per) = match t.split_once('/') {
        Some((n, unit)) => {
            let per = match unit.trim() {
                "s" | "sec" | "second" => 1.0,
                "m" | "min" | "minute" => 60.0,
                other => {
                    return Err(format!(
                        "`{other}` is not a rate unit in `{t}`: use /s or /min"
                    ));
                }
            };
            (n.trim(), per)
        }
        None => (t, 1.0),
    };
    let n: f64 = number
        .parse()
        .map_err(|_| format!("`{t}` is not a rate: use requests per second, e.g. 200 or 200/s"))?;
    let rate = n / per;
    if !rate.is_finite() || rate <= 0.0 {
        return Err(format!("the rate must be above 0, got `{t}`"));
    }
    if rate > MAX_RATE {
        return Err(format!(
            "{rate} requests/s is above the limit of {MAX_RATE}/s"
        ));
    }
    Ok(rate)
}

/// Connections `platform load` opens at most when not told: enough for every request in flight
/// at the rates and latencies of the shipped scenarios (100 orders/s answered within 2 s), few
/// enough that a stall of the system under test does not turn into a storm of new connections
/// (each a new connection through Docker's userland proxy and the gateway) just as it recovers.
pub const DEFAULT_CONNECTIONS: usize = 256;

/// The mix `platform load` sends when none is given.
pub const DEFAULT_MIX: &str = "orders=80,products=20";

/// What to send.
#[derive(Debug, Clone, Serialize)]
pub struct LoadConfig {
    /// Requests per second.
    pub rate: f64,
    /// How long to send for.
    #[serde(serialize_with = "report::seconds")]
    pub duration: Duration,
    pub mix: Mix,
    /// Most requests outstanding at once; a request due while this many are outstanding is
    /// counted as dropped.
    pub max_in_flight: usize,
    /// Most connections open at once (over all driver threads, like wrk2's `-c`); a request due
    /// while every one is busy waits for one, its latency still counted from its due time.
    pub connections: usize,
    /// Longest wait for one whole answer.
    #[serde(serialize_with = "report::seconds")]
    pub timeout: Duration,
    /// Keep the number and user of every accepted order (for the exactly-once check).
    pub record_orders: bool,
}

impl LoadConfig {
    /// `rate` per second for `duration` with `mix`; 1024 in flight over at most
    /// [`DEFAULT_CONNECTIONS`] connections, 10 s timeout.
    pub fn new(rate: f64, duration: Duration, mix: Mix) -> LoadConfig {
        LoadConfig {
            rate,
            duration,
            mix,
            max_in_flight: 1024,
            connections: DEFAULT_CONNECTIONS,
            timeout: Duration::from_secs(10),
            record_orders: false,
        }
    }

    /// The number of requests the run sends when it is not stopped early.
    pub fn planned(&self) -> u64 {
        (self.rate * self.duration.as_secs_f64()).round() as u64
    }

    /// The orders among [`LoadConfig::planned`] requests, by the mix's share.
    pub fn planned_orders(&self) -> u64 {
        (self.planned() as f64 * self.mix.share(Kind::Orders)).ceil() as u64
    }

    /// Checks the bounds.
    pub fn validate(&self) -> Result<(), LoadError> {
        let bad = |m: String| Err(LoadError::Config(m));
        if !self.rate.is_finite() || self.rate <= 0.0 || self.rate > MAX_RATE {
            return bad(format!(
                "the rate must be above 0 and at most {MAX_RATE}/s, got {}",
                self.rate
            ));
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return bad(format!(
                "the duration must be above 0 and at most {}, got {}",
                humantime::format_duration(MAX_DURATION),
                humantime::format_duration(self.duration)
            ));
        }
        if self.planned() > MAX_REQUESTS {
            return bad(format!(
                "{} requests/s for {} is {} requests, above the limit of {MAX_REQUESTS}",
                self.rate,
                humantime::format_duration(self.duration),
                self.planned()
            ));
        }
        if self.planned() == 0 {
            return bad(format!(
                "{} requests/s for {} sends no request",
                self.rate,
                humantime::format_duration(self.duration)
            ));
        }
        if self.max_in_flight == 0 || self.max_in_flight > MAX_IN_FLIGHT {
            return bad(format!(
                "max in flight must be 1 to {MAX_IN_FLIGHT}, got {}",
                self.max_in_flight
            ));
        }
        if self.connections == 0 || self.connections > MAX_IN_FLIGHT {
            return bad(format!(
                "connections must be 1 to {MAX_IN_FLIGHT}, got {}",
                self.connections
            ));
        }
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(300) {
            return bad(format!(
                "the request timeout must be above 0 and at most 5m, got {}",
                humantime::format_duration(self.timeout)
            ));
        }
        Ok(())
    }
}

/// What preparing or running load can fail with.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A bound or setting is out of range.
    #[error("{0}")]
    Config(String),
    /// The target is not on the loopback or the stack's network.
    #[error("{0}")]
    Target(String),
    /// Setting up users, products or stock failed.
    #[error("load setup: {step}: {message}")]
    Setup { step: String, message: String },
    /// Reading the stack failed.
    #[error(transparent)]
    Observe(#[from] crate::observe::ObserveError),
}

impl LoadError {
    /// A next step for the user.
    pub fn hint(&self) -> Option<String> {
        match self {
            LoadError::Observe(e) => e.hint(),
            LoadError::Setup { .. } => Some(
                "`platform smoke` checks the stack end to end; `platform status` shows what runs"
                    .to_string(),
            ),
            LoadError::Target(_) => Some(
                "load goes to the published gateway on this machine (or --gateway with a loopback address)"
                    .to_string(),
            ),
            LoadError::Config(_) => None,
        }
    }

    /// 2 for bad settings (usage), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            LoadError::Config(_) | LoadError::Target(_) => 2,
            _ => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mix parses from kind=weight pairs, spreads kinds evenly over its cycle and prints back
    /// the same text.
    #[test]
    fn mixes() {
        let m: Mix = "orders=80,products=20".parse().unwrap();
        assert_eq!(m.to_string(), "orders=80,products=20");
        let first_ten: Vec<Kind> = (0..10).map(|i| m.pick(i)).collect();
        assert_eq!(
            first_ten.iter().filter(|k| **k == Kind::Products).count(),
            2,
            "{first_ten:?}"
        );
        assert_eq!((0..100).filter(|i| m.pick(*i) == Kind::Orders).count(), 80);
        assert!((m.share(Kind::Products) - 0.2).abs() < 1e-9);
        let h: Mix = "health".parse().unwrap();
        assert!(!h.needs_tokens() && !h.needs_products());
        assert_eq!(h.pick(7), Kind::Health);
    }

    /// Bad mixes name what is wrong: unknown kinds (listing the known ones), bad weights,
    /// repeats and all-zero mixes.
    #[test]
    fn bad_mixes() {
        let e = "orders=80,carts=20".parse::<Mix>().unwrap_err();
        assert!(
            e.contains("unknown request kind `carts`") && e.contains("order-reads"),
            "{e}"
        );
        assert!(
            "orders=x"
                .parse::<Mix>()
                .unwrap_err()
                .contains("not a weight")
        );
        assert!(
            "orders=1,orders=2"
                .parse::<Mix>()
                .unwrap_err()
                .contains("twice")
        );
        assert!("orders=0".parse::<Mix>().unwrap_err().contains("above 0"));
        assert!(
            "orders=1,,"
                .parse::<Mix>()
                .unwrap_err()
                .contains("not a mix")
        );
        assert!(
            "orders=99999"
                .parse::<Mix>()
                .unwrap_err()
                .contains("at most")
        );
    }

    /// Rates read as per second or per minute, and stay within the bounds.
    #[test]
    fn rates() {
        assert_eq!(parse_rate("200").unwrap(), 200.0);
        assert_eq!(parse_rate("200/s").unwrap(), 200.0);
        assert_eq!(parse_rate("120/min").unwrap(), 2.0);
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("-3").is_err());
        assert!(parse_rate("1e9").unwrap_err().contains("limit"));
        assert!(parse_rate("5/h").unwrap_err().contains("unit"));
        assert!(parse_rate("fast").is_err());
    }

    /// The configuration's bounds: total requests, duration, in-flight and timeout.
    #[test]
    fn config_bounds() {
        let ok = LoadConfig::new(100.0, Duration::from_secs(10), Mix::default());
        assert!(ok.validate().is_ok());
        assert_eq!(ok.planned(), 1000);
        let mut c = ok.clone();
        c.duration = Duration::from_secs(3 * 3600);
        assert!(c.validate().is_err());
        let mut c = ok.clone();
        c.rate = 50_000.0;
        c.duration = Duration::from_secs(3000);
        assert!(c.validate().unwrap_err().to_string().contains("requests"));
        let mut c = ok.clone();
        c.max_in_flight = 0;
        assert!(c.validate().is_err());
        let mut c = ok;
        c.rate = 0.01;
        c.duration = Duration::from_secs(1);
        assert!(c.validate().unwrap_err().to_string().contains("no request"));
    }
}
