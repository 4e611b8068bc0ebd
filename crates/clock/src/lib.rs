//! A clock that tests can drive.
//!
//! Leases, breakers and back-offs read time through [`Clock`] so that tests
//! move time forward explicitly instead of sleeping. Wall-clock milliseconds
//! are used because the Eureka wire format carries epoch timestamps.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Wall-clock time source: the system clock, or a manual one for tests.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The operating system's clock.
    #[default]
    System,
    /// Time that only moves when [`Clock::advance`] is called. Shared between
    /// clones so a test and the code under test see the same instant.
    Manual(Arc<AtomicU64>),
}

impl Clock {
    /// A manual clock starting at `start_millis` since the epoch.
    pub fn manual(start_millis: u64) -> Clock {
        Clock::Manual(Arc::new(AtomicU64::new(start_millis)))
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_millis(&self) -> u64 {
        match self {
            Clock::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            Clock::Manual(t) => t.load(Ordering::SeqCst),
        }
    }

    /// Moves a manual clock forward; does nothing to the system clock.
    pub fn advance(&self, by: Duration) {
        if let Clock::Manual(t) = self {
            t.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
        }
    }

    /// Whether this is a manual (test) clock.
    pub fn is_manual(&self) -> bool {
        matches!(self, Clock::Manual(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A manual clock moves only when advanced, and clones share it.
    #[test]
    fn manual_clock_is_shared_and_explicit() {
        let c = Clock::manual(1_000);
        let c2 = c.clone();
        c.advance(Duration::from_secs(2));
        assert_eq!(c2.now_millis(), 3_000);
        assert!(Clock::System.now_millis() > 1_600_000_000_000);
    }
}
