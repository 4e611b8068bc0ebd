//! Self-preservation: the arithmetic behind "stop evicting, the registry's
//! own network is more likely broken than most instances dead".
//!
//! Like Eureka, the registry compares the renewals it received over a
//! window (default one minute) with the renewals it expected. Unlike
//! Eureka, which assumes every client renews every 30 s, the expectation is
//! per instance: each one is expected to renew `window / its interval`
//! times, counting only the part of the window since it registered or
//! since the registry started, so neither a fresh registry nor a fresh
//! instance looks like lost renewals. Registrations count as renewals (an
//! instance's first renewal comes one interval after it registered). Below
//! `--self-preservation-min-instances` the mode never engages: with two
//! instances one dead instance *is* half of the renewals, and it must be
//! evicted.
//!
//! With our 5 s / 15 s leases and a 60 s window, losing more than about
//! 60 % of the renewals at once (a broken registry network) engages the mode
//! before the first lease runs out; fewer losses are individual deaths and
//! are evicted within their lease.

use serde::Serialize;

/// Renewals received, counted in small time buckets over a sliding window.
#[derive(Debug)]
pub struct RenewalMeter {
    bucket_ms: u64,
    /// `(bucket number, count)`; a slot is reused when its bucket number is stale.
    slots: Vec<(u64, u64)>,
}

/// How many buckets the window is cut into: fine enough that the window's
/// ragged edge is well under 1 % of its content.
const BUCKETS: u64 = 240;

impl RenewalMeter {
    pub fn new(window_ms: u64) -> RenewalMeter {
        let bucket_ms = (window_ms / BUCKETS).max(1);
        RenewalMeter {
            bucket_ms,
            slots: vec![(u64::MAX, 0); BUCKETS as usize + 1],
        }
    }

    /// Counts one renewal (or registration) at `now_ms`.
    pub fn record(&mut self, now_ms: u64) {
        let bucket = now_ms / self.bucket_ms;
        let len = self.slots.len() as u64;
        let slot = &mut self.slots[(bucket % len) as usize];
        if slot.0 != bucket {
            *slot = (bucket, 0);
        }
        slot.1 += 1;
    }

    /// Renewals within the `window_ms` before `now_ms`.
    pub fn count(&self, now_ms: u64, window_ms: u64) -> u64 {
        let current = now_ms / self.bucket_ms;
        let span = (window_ms / self.bucket_ms).max(1);
        let oldest = current.saturating_sub(span - 1);
        self.slots
            .iter()
            .filter(|(b, _)| *b != u64::MAX && *b >= oldest && *b <= current)
            .map(|(_, n)| n)
            .sum()
    }
}

/// What one instance contributes to the expected renewals.
#[derive(Debug, Clone, Copy)]
pub struct Expectation {
    pub registered_at_ms: u64,
    pub interval_ms: u64,
}

/// Renewals the registry should have received within the window before
/// `now_ms` from these instances.
pub fn expected_renewals(
    instances: impl IntoIterator<Item = Expectation>,
    now_ms: u64,
    started_at_ms: u64,
    window_ms: u64,
) -> f64 {
    let window_start = now_ms.saturating_sub(window_ms);
    instances
        .into_iter()
        .map(|e| {
            let from = e.registered_at_ms.max(started_at_ms).max(window_start);
            let span = now_ms.saturating_sub(from);
            span as f64 / e.interval_ms.max(1) as f64
        })
        .sum()
}

/// The knobs of the decision.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PreservationPolicy {
    pub enabled: bool,
    pub threshold: f64,
    pub min_instances: usize,
}

/// One evaluation of the renewal rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Evaluation {
    /// When it was made (ms since the epoch).
    pub at_ms: u64,
    pub instances: usize,
    pub measured: u64,
    pub expected: f64,
    /// `expected × threshold`: fewer renewals than this engage self-preservation.
    pub threshold: f64,
    /// Whether self-preservation is engaged by this evaluation.
    pub preserving: bool,
}

impl PreservationPolicy {
    /// Decides whether evictions stop.
    pub fn evaluate(
        &self,
        instances: usize,
        measured: u64,
        expected: f64,
        at_ms: u64,
    ) -> Evaluation {
        let threshold = expected * self.threshold;
        let preserving = self.enabled
            && instances >= self.min_instances
            && expected > 0.0
            && (measured as f64) < threshold;
        Evaluation {
            at_ms,
            instances,
            measured,
            expected,
            threshold,
            preserving,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The meter counts what fell within the window and forgets older buckets, even after its slots wrap.
    #[test]
    fn meter_slides() {
        let mut m = RenewalMeter::new(60_000);
        for t in (0..120_000).step_by(1000) {
            m.record(1_000_000 + t);
        }
        // 120 renewals over 120 s; the last 60 s hold 60 of them.
        assert_eq!(m.count(1_000_000 + 119_000, 60_000), 60);
        assert_eq!(m.count(1_000_000 + 119_000 + 61_000, 60_000), 0);
    }

    /// An instance is expected to renew window/interval times, counting only since it (or the registry) started.
    #[test]
    fn expectation_counts_only_lived_time() {
        let e = |reg| Expectation {
            registered_at_ms: reg,
            interval_ms: 5_000,
        };
        let now = 1_000_000;
        // Registered long ago: a full window, 12 renewals.
        assert_eq!(expected_renewals([e(0)], now, 0, 60_000), 12.0);
        // Registered 10 s ago: 2.
        assert_eq!(expected_renewals([e(now - 10_000)], now, 0, 60_000), 2.0);
        // Registered long ago but the registry started 5 s ago: 1.
        assert_eq!(expected_renewals([e(0)], now, now - 5_000, 60_000), 1.0);
    }

    /// Below the minimum instance count, or when disabled, the mode never engages; otherwise it follows the threshold.
    #[test]
    fn decision() {
        let p = PreservationPolicy {
            enabled: true,
            threshold: 0.85,
            min_instances: 5,
        };
        assert!(
            !p.evaluate(2, 12, 24.0, 0).preserving,
            "two instances, one dead"
        );
        assert!(p.evaluate(10, 80, 120.0, 0).preserving);
        assert!(!p.evaluate(10, 110, 120.0, 0).preserving);
        assert!(
            !p.evaluate(10, 0, 0.0, 0).preserving,
            "nothing expected yet"
        );
        let off = PreservationPolicy {
            enabled: false,
            ..p
        };
        assert!(!off.evaluate(10, 0, 120.0, 0).preserving);
    }
}
