//! What a load run measured: counts by outcome ([`Counts`]), latency percentiles from the
//! HdrHistogram ([`Latency`]), per request kind and in all ([`LoadReport`]), and the text
//! `platform load` prints.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::Kind;

/// Serializes a duration as fractional seconds.
pub fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An answer with this status; `fallback` when it is order-service's fallback
    /// (503 problem+json with the fallback detail).
    Answer { status: u16, fallback: bool },
    /// No answer: the request timed out.
    Timeout,
    /// No answer: the connection could not be made.
    Connect,
    /// No answer: the connection broke, or the body could not be read.
    Broken,
    /// No answer: what came back is not HTTP/1.1 (a malformed or oversized head, bad chunked
    /// framing, bytes after the answer).
    Protocol,
    /// Not sent: too many requests were outstanding.
    Dropped,
}

impl Outcome {
    /// Whether the request succeeded (2xx).
    pub fn is_ok(self) -> bool {
        matches!(self, Outcome::Answer { status, .. } if (200..300).contains(&status))
    }
}

/// Requests by how they ended; the unit of every window a scenario asks about.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Requests that ended (answered, failed or dropped).
    pub total: u64,
    /// 2xx answers.
    pub ok: u64,
    /// 4xx answers.
    pub client_errors: u64,
    /// order-service's fallback: 503 problem+json "Service is temporarily unavailable".
    pub fallback: u64,
    /// 503 answers that are not the fallback (e.g. the gateway's "no instance").
    pub unavailable_other: u64,
    /// 500 answers: never acceptable for a dependency outage.
    pub internal: u64,
    /// Other 5xx answers (502, 504, ...).
    pub server_other: u64,
    /// Requests that got no answer (timeout, refused, broken).
    pub transport: u64,
    /// Requests not sent because too many were outstanding.
    pub dropped: u64,
}

impl Counts {
    /// Adds one request's outcome.
    pub fn add(&mut self, outcome: Outcome) {
        self.total += 1;
        match outcome {
            Outcome::Answer { status, fallback } => match status {
                200..=299 => self.ok += 1,
                400..=499 => self.client_errors += 1,
                503 if fallback => self.fallback += 1,
                503 => self.unavailable_other += 1,
                500 => self.internal += 1,
                _ => self.server_other += 1,
            },
            Outcome::Timeout | Outcome::Connect | Outcome::Broken | Outcome::Protocol => {
                self.transport += 1
            }
            Outcome::Dropped => self.dropped += 1,
        }
    }

    /// Adds another set of counts.
    pub fn merge(&mut self, other: &Counts) {
        self.total += other.total;
        self.ok += other.ok;
        self.client_errors += other.client_errors;
        self.fallback += other.fallback;
        self.unavailable_other += other.unavailable_other;
        self.internal += other.internal;
        self.server_other += other.server_other;
        self.transport += other.transport;
        self.dropped += other.dropped;
    }

    /// Requests that did not succeed; the fallback is left out when `fallback_ok`.
    pub fn failed(&self, fallback_ok: bool) -> u64 {
        let fallback = if fallback_ok { self.fallback } else { 0 };
        self.total - self.ok - fallback
    }

    /// Failed requests in percent of all (0 when there were none).
    pub fn error_rate(&self, fallback_ok: bool) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            100.0 * self.failed(fallback_ok) as f64 / self.total as f64
        }
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Answers measured (transport failures and dropped requests have no latency).
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Latency {
    /// Reads a histogram of microseconds.
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            count: h.len(),
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

/// A new latency histogram: 1 µs to 1 h, 3 significant digits (values above are clamped).
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant histogram bounds are valid")
}

/// One accepted order (201), for the exactly-once notification check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AcceptedOrder {
    pub order_number: String,
    /// Index of the user (in the run's user list) who placed it.
    pub user: usize,
}

/// One request kind's results.
#[derive(Debug, Clone, Serialize)]
pub struct KindReport {
    pub kind: Kind,
    /// Requests of this kind that ended.
    pub counts: Counts,
    pub latency_ms: Latency,
    /// Answers by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests without an answer, by cause (`timeout`, `connect`, `broken`).
    pub transport_errors: BTreeMap<String, u64>,
}

/// Token use of the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TokenReport {
    /// Users whose tokens were used.
    pub users: Vec<String>,
    /// Tokens obtained by logging in.
    pub logins: u64,
    /// Tokens renewed with the refresh-token grant.
    pub refreshes: u64,
    /// Failed renewals (the old token stayed in use).
    pub failures: u64,
    /// The last renewal failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
}

/// One second of intended send time.
#[derive(Debug, Clone, Serialize)]
pub struct SecondReport {
    /// Seconds since the start.
    pub second: u64,
    pub counts: Counts,
    /// Slowest answer of the second, in milliseconds.
    pub max_ms: f64,
}

/// The whole run, as `platform load --json` prints it and scenarios keep it.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// The gateway's base URL.
    pub target: String,
    pub config: super::LoadConfig,
    /// Requests the schedule held (rate × duration, fewer when stopped early).
    pub scheduled: u64,
    /// Requests actually sent.
    pub sent: u64,
    /// Seconds from the first due time to the last answer.
    pub elapsed_s: f64,
    /// Sent requests per second over the sending time.
    pub achieved_rate: f64,
    /// Answers per second over the whole run.
    pub throughput: f64,
    /// Whether the run was stopped before its duration.
    pub stopped_early: bool,
    pub counts: Counts,
    /// Failed requests in percent (fallback answers count as failed).
    pub error_rate_pct: f64,
    pub latency_ms: Latency,
    /// Answers by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests without an answer, by cause.
    pub transport_errors: BTreeMap<String, u64>,
    /// Per request kind (only kinds of the mix).
    pub kinds: Vec<KindReport>,
    pub tokens: TokenReport,
    /// Products the run created (SKU codes).
    pub products: Vec<String>,
    /// Orders accepted (201).
    pub orders_accepted: u64,
    /// Counts per second of intended send time.
    pub timeline: Vec<SecondReport>,
}

impl LoadReport {
    /// The text `platform load` prints.
    pub fn render(&self) -> String {
        let c = &self.config;
        let mut t = format!(
            "load: {} req/s for {} through {} ({}){}\n",
            trim_float(c.rate),
            humantime::format_duration(c.duration),
            self.target,
            c.mix,
            if self.tokens.users.is_empty() {
                String::new()
            } else {
                format!(", {} users", self.tokens.users.len())
            }
        );
        t.push_str(&format!(
            "  sent       {} of {} scheduled ({:.1}/s){}; answered {} ({:.1}/s) in {:.1}s\n",
            self.sent,
            self.scheduled,
            self.achieved_rate,
            if self.stopped_early {
                ", stopped early"
            } else {
                ""
            },
            self.latency_ms.count,
            self.throughput,
            self.elapsed_s
        ));
        t.push_str(&format!(
            "  latency    {}\n",
            latency_line(&self.latency_ms)
        ));
        t.push_str(&format!("  answers    {}\n", statuses_line(&self.statuses)));
        t.push_str(&format!(
            "  fallback   {} (503 \"{}\")\n",
            self.counts.fallback,
            super::FALLBACK_DETAIL
        ));
        let mut failures = Vec::new();
        for (cause, n) in &self.transport_errors {
            failures.push(format!("{cause}: {n}"));
        }
        if self.counts.dropped > 0 {
            failures.push(format!(
                "dropped (too many in flight): {}",
                self.counts.dropped
            ));
        }
        t.push_str(&format!(
            "  no answer  {}\n",
            if failures.is_empty() {
                "none".to_string()
            } else {
                failures.join(", ")
            }
        ));
        t.push_str(&format!(
            "  errors     {:.2}% ({} of {} not 2xx)\n",
            self.error_rate_pct,
            self.counts.failed(false),
            self.counts.total
        ));
        if !self.tokens.users.is_empty() {
            t.push_str(&format!(
                "  tokens     {} logins, {} refreshes, {} failed renewals ({})\n",
                self.tokens.logins,
                self.tokens.refreshes,
                self.tokens.failures,
                self.tokens.users.join(", ")
            ));
        }
        if self.kinds.len() > 1 {
            t.push_str("  by kind\n");
            for k in &self.kinds {
                t.push_str(&format!(
                    "    {:<12} {:>7}  {}  {}\n",
                    k.kind.name(),
                    k.counts.total,
                    latency_line(&k.latency_ms),
                    statuses_line(&k.statuses)
                ));
            }
        }
        t
    }
}

fn trim_float(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

/// `p50 1.2ms  p90 ...` for a latency summary.
pub fn latency_line(l: &Latency) -> String {
    if l.count == 0 {
        return "no answers".to_string();
    }
    format!(
        "p50 {:.2}ms  p90 {:.2}ms  p99 {:.2}ms  max {:.2}ms",
        l.p50, l.p90, l.p99, l.max
    )
}

fn statuses_line(statuses: &BTreeMap<u16, u64>) -> String {
    if statuses.is_empty() {
        return "none".to_string();
    }
    statuses
        .iter()
        .map(|(s, n)| format!("{s}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each outcome lands in its own class; the error rate counts the fallback unless told not
    /// to.
    #[test]
    fn counts_classify() {
        let mut c = Counts::default();
        for o in [
            Outcome::Answer {
                status: 201,
                fallback: false,
            },
            Outcome::Answer {
                status: 503,
                fallback: true,
            },
            Outcome::Answer {
                status: 503,
                fallback: false,
            },
            Outcome::Answer {
                status: 500,
                fallback: false,
            },
            Outcome::Answer {
                status: 502,
                fallback: false,
            },
            Outcome::Answer {
                status: 409,
                fallback: false,
            },
            Outcome::Timeout,
            Outcome::Dropped,
        ] {
            c.add(o);
        }
        assert_eq!(
            (
                c.ok,
                c.fallback,
                c.unavailable_other,
                c.internal,
                c.server_other
            ),
            (1, 1, 1, 1, 1)
        );
        assert_eq!(
            (c.client_errors, c.transport, c.dropped, c.total),
            (1, 1, 1, 8)
        );
        assert_eq!(c.failed(false), 7);
        assert_eq!(c.failed(true), 6);
        assert!((c.error_rate(false) - 87.5).abs() < 1e-9);
        assert_eq!(Counts::default().error_rate(false), 0.0);
    }

    /// Percentiles come from the histogram in milliseconds.
    #[test]
    fn latency_from_histogram() {
        let mut h = histogram();
        for us in 1..=1000u64 {
            h.record(us * 1000).unwrap();
        }
        let l = Latency::of(&h);
        assert_eq!(l.count, 1000);
        assert!((l.p50 - 500.0).abs() < 1.0, "{l:?}");
        assert!((l.p99 - 990.0).abs() < 1.0, "{l:?}");
        assert!((l.max - 1000.0).abs() < 1.0, "{l:?}");
        assert_eq!(Latency::of(&histogram()), Latency::default());
    }
}
