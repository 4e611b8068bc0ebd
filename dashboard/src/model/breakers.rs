//! The breakers panel's data: for each order-service instance, each circuit breaker's admin
//! snapshot (the breaker crate's own type, as `/admin/breakers` serves it) and a history of its
//! failure rate for the sparkline. New transitions found in a snapshot become timeline events.

use std::collections::BTreeMap;

use circuit_breaker::{Snapshot, State, Transition};

use super::history::History;

/// One instance's `/admin/breakers`, or why it could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceBreakers {
    /// `order-service-2`.
    pub instance: String,
    pub read: Result<Vec<Snapshot>, String>,
}

/// What the panel keeps per instance.
#[derive(Debug, Clone, Default)]
pub struct InstanceState {
    /// The last snapshots read (kept when a later read fails).
    pub breakers: Vec<Snapshot>,
    /// Why the last read failed, if it did.
    pub error: Option<String>,
    /// Failure rate in percent per breaker, one sample per read.
    pub history: BTreeMap<String, History>,
    /// The newest transition already reported per breaker (ms since the epoch), so each
    /// transition makes one timeline event.
    seen: BTreeMap<String, u64>,
}

/// A transition seen for the first time.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTransition {
    pub instance: String,
    pub breaker: String,
    pub transition: Transition,
}

/// Every instance's breakers.
#[derive(Debug, Clone, Default)]
pub struct Breakers {
    pub by_instance: BTreeMap<String, InstanceState>,
}

impl Breakers {
    /// Takes a round of reads (one per running instance); instances not in it are gone.
    /// Returns the transitions not seen before (none for an instance's first read: its past is
    /// not news).
    pub fn apply(&mut self, reads: Vec<InstanceBreakers>) -> Vec<NewTransition> {
        let mut fresh = Vec::new();
        self.by_instance
            .retain(|name, _| reads.iter().any(|r| &r.instance == name));
        for read in reads {
            let first = !self.by_instance.contains_key(&read.instance);
            let state = self.by_instance.entry(read.instance.clone()).or_default();
            match read.read {
                Ok(snapshots) => {
                    state.error = None;
                    for s in &snapshots {
                        state
                            .history
                            .entry(s.name.clone())
                            .or_default()
                            .push(failure_rate(s));
                        let seen = state.seen.entry(s.name.clone()).or_insert(0);
                        let newest = s.transitions.iter().map(|t| t.at_ms).max().unwrap_or(0);
                        if !first {
                            fresh.extend(s.transitions.iter().filter(|t| t.at_ms > *seen).map(
                                |t| NewTransition {
                                    instance: read.instance.clone(),
                                    breaker: s.name.clone(),
                                    transition: t.clone(),
                                },
                            ));
                        }
                        *seen = (*seen).max(newest);
                    }
                    state.breakers = snapshots;
                }
                Err(e) => {
                    state.error = Some(e);
                    for h in state.history.values_mut() {
                        h.push(None);
                    }
                }
            }
        }
        fresh
    }

    /// The state of `breaker` on `instance`, when known.
    pub fn state(&self, instance: &str, breaker: &str) -> Option<State> {
        self.by_instance
            .get(instance)?
            .breakers
            .iter()
            .find(|b| b.name == breaker)
            .map(|b| b.state)
    }

    pub fn is_empty(&self) -> bool {
        self.by_instance.is_empty()
    }
}

/// The failure rate as a whole percentage, or `None` while the window holds fewer calls than
/// the breaker's minimum (the breaker reports -1 then).
pub fn failure_rate(s: &Snapshot) -> Option<u64> {
    rate(s.metrics.failure_rate)
}

/// The slow-call rate, like [`failure_rate`].
pub fn slow_call_rate(s: &Snapshot) -> Option<u64> {
    rate(s.metrics.slow_call_rate)
}

fn rate(r: f32) -> Option<u64> {
    (r >= 0.0).then(|| r.round().clamp(0.0, 100.0) as u64)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use circuit_breaker::{BreakerConfig, Totals, WindowMetrics};

    /// A breaker snapshot with the given state, failure rate and transitions (ms, from, to).
    pub(crate) fn snapshot(
        name: &str,
        state: State,
        failure_rate: f32,
        transitions: &[(u64, State, State)],
    ) -> Snapshot {
        Snapshot {
            name: name.into(),
            state,
            state_since: "2025-01-01T12:00:00Z".into(),
            config: BreakerConfig::default(),
            metrics: WindowMetrics {
                failure_rate,
                slow_call_rate: 0.0,
                number_of_buffered_calls: 10,
                number_of_failed_calls: (failure_rate / 10.0).max(0.0) as u32,
                number_of_successful_calls: 10 - (failure_rate / 10.0).max(0.0) as u32,
                number_of_slow_calls: 0,
                number_of_slow_successful_calls: 0,
                number_of_slow_failed_calls: 0,
                number_of_not_permitted_calls: 0,
            },
            totals: Totals::default(),
            half_open_permits_left: None,
            remaining_wait_ms: None,
            transition_counts: BTreeMap::new(),
            transitions: transitions
                .iter()
                .map(|(ms, from, to)| Transition {
                    from: *from,
                    to: *to,
                    at: format!("t{ms}"),
                    at_ms: *ms,
                    reason: "failure rate 60.0% >= 50.0%".into(),
                })
                .collect(),
        }
    }

    fn read(instance: &str, s: Vec<Snapshot>) -> InstanceBreakers {
        InstanceBreakers {
            instance: instance.into(),
            read: Ok(s),
        }
    }

    /// Transitions are reported once, never from an instance's first read; a failed read keeps
    /// the last snapshot and leaves a gap in the history; instances gone are dropped.
    #[test]
    fn transitions_once_and_history() {
        let mut b = Breakers::default();
        let old = (1, State::Closed, State::Open);
        let first = b.apply(vec![read(
            "o-1",
            vec![snapshot("inventory", State::Open, 60.0, &[old])],
        )]);
        assert!(first.is_empty());
        let new = (5, State::Open, State::HalfOpen);
        let second = b.apply(vec![read(
            "o-1",
            vec![snapshot("inventory", State::HalfOpen, -1.0, &[old, new])],
        )]);
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].transition.to, State::HalfOpen);
        assert!(
            b.apply(vec![read(
                "o-1",
                vec![snapshot("inventory", State::HalfOpen, -1.0, &[old, new])]
            )])
            .is_empty()
        );
        b.apply(vec![InstanceBreakers {
            instance: "o-1".into(),
            read: Err("refused".into()),
        }]);
        let s = &b.by_instance["o-1"];
        assert_eq!(s.error.as_deref(), Some("refused"));
        assert_eq!(b.state("o-1", "inventory"), Some(State::HalfOpen));
        assert_eq!(
            s.history["inventory"].last(4).collect::<Vec<_>>(),
            vec![Some(60), None, None, None]
        );
        b.apply(vec![]);
        assert!(b.is_empty());
    }
}
