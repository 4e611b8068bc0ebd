//! A bounded series of samples for sparklines (a breaker's failure rate, a group's total lag):
//! the newest `capacity` values, oldest first. Samples are whole numbers because ratatui's
//! sparkline draws `u64` bars; a gap (no reading) is kept as `None` so an outage shows as an
//! empty stretch instead of a made-up value.

use std::collections::VecDeque;

/// How many samples a history keeps: two minutes at one sample a second, wider than any panel
/// at 80 columns.
pub const HISTORY: usize = 120;

/// The newest samples of one figure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    samples: VecDeque<Option<u64>>,
    capacity: usize,
}

impl Default for History {
    fn default() -> Self {
        Self::with_capacity(HISTORY)
    }
}

impl History {
    /// An empty history of at most `capacity` samples.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            samples: VecDeque::with_capacity(capacity),
            capacity: capacity.max(1),
        }
    }

    /// Adds a sample (or a gap), dropping the oldest when full.
    pub fn push(&mut self, sample: Option<u64>) {
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    /// The newest `n` samples, oldest first.
    pub fn last(&self, n: usize) -> impl Iterator<Item = Option<u64>> + '_ {
        let skip = self.samples.len().saturating_sub(n);
        self.samples.iter().skip(skip).copied()
    }

    /// The newest sample that is not a gap.
    pub fn latest(&self) -> Option<u64> {
        self.samples.iter().rev().find_map(|s| *s)
    }

    /// The largest sample kept.
    pub fn max(&self) -> Option<u64> {
        self.samples.iter().filter_map(|s| *s).max()
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The history keeps the newest samples in order and gaps as gaps.
    #[test]
    fn keeps_the_newest() {
        let mut h = History::with_capacity(3);
        for s in [Some(1), None, Some(3), Some(4)] {
            h.push(s);
        }
        assert_eq!(h.last(10).collect::<Vec<_>>(), vec![None, Some(3), Some(4)]);
        assert_eq!(h.last(1).collect::<Vec<_>>(), vec![Some(4)]);
        assert_eq!(h.latest(), Some(4));
        assert_eq!(h.max(), Some(4));
        assert_eq!(h.len(), 3);
    }
}
