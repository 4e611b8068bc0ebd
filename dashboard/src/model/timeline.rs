//! One timeline of everything that happened while the dashboard watched: registry changes,
//! breaker transitions, container events, faults, scenario steps, load runs, actions and
//! backends going away or coming back. Newest last, bounded.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};

/// How many events the timeline keeps.
pub const TIMELINE: usize = 1000;

/// Where an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    Registry,
    Breaker,
    Container,
    Fault,
    Scenario,
    Load,
    Action,
    Backend,
}

impl EventKind {
    /// The tag printed before the event.
    pub fn tag(self) -> &'static str {
        match self {
            EventKind::Registry => "registry",
            EventKind::Breaker => "breaker",
            EventKind::Container => "docker",
            EventKind::Fault => "fault",
            EventKind::Scenario => "scenario",
            EventKind::Load => "load",
            EventKind::Action => "action",
            EventKind::Backend => "backend",
        }
    }
}

/// How an event is coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Info,
    /// Something recovered.
    Good,
    Warning,
    Bad,
}

/// One thing that happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub at: DateTime<Utc>,
    pub kind: EventKind,
    pub severity: Severity,
    pub text: String,
}

/// The bounded timeline.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    events: VecDeque<Event>,
}

impl Timeline {
    /// Adds an event, dropping the oldest beyond [`TIMELINE`]. Events are kept in time order
    /// even when a collector reports one a little late.
    pub fn push(&mut self, event: Event) {
        if self.events.len() == TIMELINE {
            self.events.pop_front();
        }
        let at = self.events.partition_point(|e| e.at <= event.at);
        self.events.insert(at, event);
    }

    /// Oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Event> + ExactSizeIterator {
        self.events.iter()
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A late event is put in its place, not at the end.
    #[test]
    fn keeps_time_order() {
        let t = |s| DateTime::from_timestamp(s, 0).unwrap();
        let ev = |s, text: &str| Event {
            at: t(s),
            kind: EventKind::Container,
            severity: Severity::Info,
            text: text.into(),
        };
        let mut tl = Timeline::default();
        tl.push(ev(1, "a"));
        tl.push(ev(3, "c"));
        tl.push(ev(2, "b"));
        let texts: Vec<&str> = tl.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(texts, vec!["a", "b", "c"]);
    }
}
