//! Exponential back-off with full jitter: how long to wait before the next
//! attempt at something that failed (the registry, the identity provider's
//! keys, a database, the broker, an upstream).
//!
//! The n-th wait is drawn uniformly from `[0, min(max, first × factorⁿ)]`
//! ("full jitter", from the AWS Architecture Blog's *Exponential Backoff and
//! Jitter*): the ceiling grows exponentially as usual, but the wait itself is
//! random below it. Without the jitter every instance that lost the registry
//! at the same moment retries at the same moments and re-registers in
//! lockstep when it comes back; with it, their attempts spread over the whole
//! window while the expected total wait stays half of the plain schedule.
//!
//! ```
//! use std::time::Duration;
//! let mut b = backoff::Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
//! let first = b.next_wait(); // somewhere in 0..=100ms
//! let second = b.next_wait(); // somewhere in 0..=200ms
//! assert!(first <= Duration::from_millis(100) && second <= Duration::from_millis(200));
//! b.reset(); // after a success: start from the first ceiling again
//! ```
#![forbid(unsafe_code)]

use std::time::Duration;

/// An exponential back-off schedule with full jitter, and how far along it
/// the caller is. Cheap to copy; one per retry loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Ceiling of the first wait.
    first: Duration,
    /// Largest ceiling.
    max: Duration,
    /// Growth of the ceiling per attempt.
    factor: u32,
    /// Waits handed out since the last [`Backoff::reset`].
    attempt: u32,
}

impl Backoff {
    /// A schedule whose ceiling starts at `first` and doubles up to `max`
    /// (`max` below `first` caps every wait at `max`).
    pub const fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max,
            factor: 2,
            attempt: 0,
        }
    }

    /// The same schedule growing by `factor` per attempt (at least 1).
    pub const fn with_factor(mut self, factor: u32) -> Backoff {
        self.factor = if factor == 0 { 1 } else { factor };
        self
    }

    /// The ceiling of wait number `n` (0-based): `min(max, first × factorⁿ)`.
    pub fn ceiling(&self, n: u32) -> Duration {
        let growth = self.factor.checked_pow(n).unwrap_or(u32::MAX);
        self.first.saturating_mul(growth).min(self.max)
    }

    /// Wait number `n` (0-based), drawn uniformly from `[0, ceiling(n)]`.
    /// For callers that count attempts themselves (the gateway's retries).
    pub fn wait(&self, n: u32) -> Duration {
        full_jitter(self.ceiling(n))
    }

    /// The next wait, and one step further along the schedule.
    pub fn next_wait(&mut self) -> Duration {
        let w = self.wait(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        w
    }

    /// Back to the first ceiling (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Waits handed out since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

/// A duration drawn uniformly from `[0, ceiling]`, with microsecond resolution.
fn full_jitter(ceiling: Duration) -> Duration {
    let micros = u64::try_from(ceiling.as_micros()).unwrap_or(u64::MAX);
    if micros == 0 {
        return Duration::ZERO;
    }
    use rand::Rng as _;
    Duration::from_micros(rand::thread_rng().gen_range(0..=micros))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// The ceiling doubles from `first` and stops at `max`; a factor of 0 is read as 1; huge attempt numbers saturate.
    #[test]
    fn ceiling_grows_exponentially_to_the_cap() {
        let b = Backoff::new(100 * MS, 1000 * MS);
        let c: Vec<Duration> = (0..6).map(|n| b.ceiling(n)).collect();
        assert_eq!(
            c,
            [100 * MS, 200 * MS, 400 * MS, 800 * MS, 1000 * MS, 1000 * MS]
        );
        assert_eq!(b.ceiling(u32::MAX), 1000 * MS);
        let b3 = b.with_factor(3);
        assert_eq!(b3.ceiling(2), 900 * MS);
        assert_eq!(b.with_factor(0).ceiling(5), 100 * MS);
        assert_eq!(
            Backoff::new(9 * MS, MS).ceiling(0),
            MS,
            "max below first caps"
        );
    }

    /// Every wait lies within its ceiling, the waits are spread (not one fixed value), and reset starts over.
    #[test]
    fn waits_are_jittered_below_the_ceiling() {
        let mut b = Backoff::new(100 * MS, 400 * MS);
        for n in 0..50 {
            let w = b.next_wait();
            assert!(
                w <= b.ceiling(n),
                "wait {n}: {w:?} above {:?}",
                b.ceiling(n)
            );
        }
        assert_eq!(b.attempts(), 50);
        b.reset();
        assert_eq!(b.attempts(), 0);
        // 200 draws from 0..=400ms: all equal would mean no jitter (chance ~ 400000^-199).
        let draws: Vec<Duration> = (0..200).map(|_| b.wait(5)).collect();
        let distinct: std::collections::BTreeSet<&Duration> = draws.iter().collect();
        assert!(
            distinct.len() > 100,
            "only {} distinct waits",
            distinct.len()
        );
        let mean = draws.iter().sum::<Duration>() / 200;
        assert!(
            mean > 100 * MS && mean < 300 * MS,
            "mean {mean:?} is not near 200ms"
        );
    }

    /// A zero ceiling waits zero.
    #[test]
    fn zero_ceiling_is_no_wait() {
        assert_eq!(
            Backoff::new(Duration::ZERO, Duration::ZERO).wait(3),
            Duration::ZERO
        );
    }
}
